//! `allowed_call plain|gated|reads N`: N calls of a small function, plain or gated (the
//! policy allows it outright; memory store and audit sink), in one current-thread runtime.
//! `reads` is gated too, by a rule that reads an argument before it allows the call, as a
//! policy file's condition on the arguments does. `sha256 N` hashes one SHA-256 block's
//! message N times, as the gate hashes a call (`Digest::of`): the baseline that tells how
//! many blocks a gated call's SHA-256 instructions are.
//!
//! Run under callgrind twice with different N; the difference, divided by the difference
//! in N, is the instructions one call costs, the set-up cancelled out (`.ci/instructions`).
//! `allowed_call time N` times N of each instead, interleaved in rounds of 10,000, and
//! prints the time per call of both, over all rounds and in each one's fastest round;
//! `allowed_call time-reads N` the same with `reads`'s rule.

use std::hint::black_box;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::{CodePolicy, Context, Gate, Principal, Verdict, requires_approval, scope};

/// The body the bench in `benches/gate_overhead.rs` uses: format a line from the arguments.
fn body(service: &str, replicas: u32) -> String {
    format!("scaled {service} to {replicas} replicas")
}

async fn plain(service: &str, replicas: u32) -> Result<String, approvals::Error> {
    Ok(body(service, replicas))
}

#[requires_approval(policy = "scale")]
async fn gated(service: &str, replicas: u32) -> Result<String, approvals::Error> {
    Ok(body(service, replicas))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: allowed_call plain|gated|reads|sha256|time|time-reads N";
    let mode = args.next().ok_or(usage)?;
    let n: u32 = args.next().ok_or(usage)?.parse()?;
    if mode == "sha256" {
        // 55 bytes: the longest message that SHA-256's padding keeps in one block.
        let message = [b'x'; 55];
        for _ in 0..n {
            black_box(approvals::Digest::of(black_box(&message)));
        }
        return Ok(());
    }
    let policy = if mode.ends_with("reads") {
        CodePolicy::new().rule("scale", |action, _| {
            Ok(match action.args["replicas"].as_u64() {
                Some(0..=10) => Verdict::allow("a-few-replicas"),
                _ => Verdict::deny("many-replicas", "more than 10 replicas"),
            })
        })
    } else {
        CodePolicy::new().allow("scale")
    };
    let gate = Gate::builder()
        .policy(policy)
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .default_context(Context::new(Principal::agent("bench-bot")))
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    if mode.starts_with("time") {
        return rt.block_on(scope::with_gate(gate, time(n)));
    }
    // Kept past the end, not dropped: dropping the gate frees every record its memory sink
    // keeps (about 490 instructions a record), which is the sink's end, not a call's cost,
    // and would be counted as one in the difference between two runs.
    std::mem::forget(gate.clone());
    rt.block_on(scope::with_gate(gate, async move {
        for _ in 0..n {
            let out = match mode.as_str() {
                "plain" => plain(black_box("api"), black_box(3)).await,
                "gated" | "reads" => gated(black_box("api"), black_box(3)).await,
                _ => return Err(usage.into()),
            };
            black_box(out?);
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }))
}

/// Times `n` plain and `n` gated calls, interleaved in rounds so that both see the same
/// machine; prints the time per call of each and the difference.
async fn time(n: u32) -> Result<(), Box<dyn std::error::Error>> {
    use std::time::{Duration, Instant};
    let (mut p, mut g) = (Duration::ZERO, Duration::ZERO);
    // The fastest round of each: the machine's noise only ever slows a round.
    let (mut p_min, mut g_min) = (Duration::MAX, Duration::MAX);
    let round = 10_000.min(n.max(1));
    for _ in 0..n.div_ceil(round) {
        let t = Instant::now();
        for _ in 0..round {
            black_box(plain(black_box("api"), black_box(3)).await?);
        }
        let took = t.elapsed();
        (p, p_min) = (p + took, p_min.min(took));
        let t = Instant::now();
        for _ in 0..round {
            black_box(gated(black_box("api"), black_box(3)).await?);
        }
        let took = t.elapsed();
        (g, g_min) = (g + took, g_min.min(took));
    }
    let calls = f64::from(n.div_ceil(round) * round);
    let ns = |d: Duration| d.as_nanos() as f64 / calls;
    let ns_round = |d: Duration| d.as_nanos() as f64 / f64::from(round);
    println!(
        "allowed_call: plain {:.0} ns/call, gated {:.0} ns/call; the gate adds {:.2} µs \
         (fastest round of {round}: plain {:.0} ns/call, gated {:.0} ns/call, the gate adds {:.2} µs)",
        ns(p),
        ns(g),
        (ns(g) - ns(p)) / 1000.0,
        ns_round(p_min),
        ns_round(g_min),
        (ns_round(g_min) - ns_round(p_min)) / 1000.0
    );
    Ok(())
}

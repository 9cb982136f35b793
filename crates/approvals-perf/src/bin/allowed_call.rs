//! `allowed_call plain|gated N`: N calls of a small function, plain or gated (the policy
//! allows it outright; memory store and audit sink), in one current-thread runtime.
//!
//! Run under callgrind twice with different N; the difference, divided by the difference
//! in N, is the instructions one call costs, the set-up cancelled out.

use std::hint::black_box;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::{CodePolicy, Context, Gate, Principal, requires_approval, scope};

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
    let usage = "usage: allowed_call plain|gated N";
    let mode = args.next().ok_or(usage)?;
    let n: u32 = args.next().ok_or(usage)?.parse()?;
    let gate = Gate::builder()
        .policy(CodePolicy::new().allow("scale"))
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .default_context(Context::new(Principal::agent("bench-bot")))
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(scope::with_gate(gate, async move {
        for _ in 0..n {
            let out = match mode.as_str() {
                "plain" => plain(black_box("api"), black_box(3)).await,
                "gated" => gated(black_box("api"), black_box(3)).await,
                _ => return Err(usage.into()),
            };
            black_box(out?);
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }))
}

//! What the gate costs in front of a call the policy allows outright: the same function,
//! plain and gated (Allow verdict, memory audit sink), measured in the same process.
//!
//! `cargo bench --bench gate_overhead` prints both and their ratio.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::{CodePolicy, Context, Gate, Principal, requires_approval, scope};
use criterion::{Criterion, criterion_group, criterion_main};

/// A small, realistic privileged body: format a line from its arguments.
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

/// The time `n` gated calls take, one after another, under the scope's gate.
async fn gated_calls(n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        black_box(
            gated(black_box("api"), black_box(3))
                .await
                .expect("allowed"),
        );
    }
    start.elapsed()
}

fn gate() -> (Gate, Arc<MemoryAudit>) {
    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(CodePolicy::new().allow("scale"))
        .store(MemoryStore::new())
        .audit(audit.clone())
        .default_context(Context::new(Principal::agent("bench-bot")))
        .build()
        .expect("gate builds");
    (gate, audit)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("gate_overhead");
    group.bench_function("plain", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(plain(black_box("api"), black_box(3)).await) })
    });
    group.bench_function("gated_allow", |b| {
        // A fresh audit log per sample batch keeps memory flat across iterations.
        b.to_async(&rt).iter_custom(|iters| async move {
            let (gate, _audit) = gate();
            scope::with_gate(gate, gated_calls(iters)).await
        })
    });
    group.finish();

    // The ratio, from one more interleaved run of both in this process.
    let (gate, _audit) = gate();
    let n: u32 = 200_000;
    let (p, g) = rt.block_on(scope::with_gate(gate, async {
        let start = Instant::now();
        for _ in 0..n {
            black_box(plain(black_box("api"), black_box(3)).await.expect("plain"));
        }
        let p = start.elapsed();
        (p, gated_calls(u64::from(n)).await)
    }));
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(n);
    println!(
        "gate_overhead: plain {:.0} ns/call, gated (allow + memory audit) {:.0} ns/call, ratio {:.1}x, overhead {:.2} µs/call",
        per(p),
        per(g),
        per(g) / per(p),
        (per(g) - per(p)) / 1000.0
    );

    // The same gated call with what an operator turns on: a Prometheus recorder for every
    // metric, and a subscriber that records every span and event at info (formatted, then
    // discarded). Measured right after one more run without them, in this process; then
    // each alone, so that what telemetry adds can be told apart: the subscriber alone
    // before the recorder is installed (it cannot be taken away again), the recorder alone
    // after.
    let (gate, _audit) = crate::gate();
    let timed = || rt.block_on(scope::with_gate(gate.clone(), gated_calls(u64::from(n))));
    let subscriber = || {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish()
    };
    let off = timed();
    let tracing_alone = tracing::subscriber::with_default(subscriber(), timed);
    let _recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the recorder installs");
    let metrics_alone = timed();
    let on = tracing::subscriber::with_default(subscriber(), timed);
    println!(
        "gate_overhead: gated {:.0} ns/call without telemetry, {:.0} ns/call with metrics and tracing on, ratio {:.2}x; tracing alone {:.0} ns/call (+{:.0}), metrics alone {:.0} ns/call (+{:.0})",
        per(off),
        per(on),
        per(on) / per(off),
        per(tracing_alone),
        per(tracing_alone) - per(off),
        per(metrics_alone),
        per(metrics_alone) - per(off),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

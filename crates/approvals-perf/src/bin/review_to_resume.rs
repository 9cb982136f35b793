//! `review_to_resume [ROUNDS]` (default 2,000): how long after a reviewer's approval the
//! waiting call's body starts, inside one process (memory store and sink, a two-worker
//! runtime). Each round: one gated call waits; the clock starts when the review is
//! submitted and stops when the body starts. The baseline, interleaved round by round: the
//! same hand-off without the gate (a oneshot sent from the submitting task to a waiting
//! one). Prints p50, p99 and max of both, and their ratio: first with the reviews submitted
//! from the thread that blocks on the runtime, then from a task on it (as a server's review
//! handler submits them).
//!
//! ```sh
//! cargo run --release -p approvals-perf --bin review_to_resume
//! ```

use std::time::{Duration, Instant};

use approvals::requires_approval;
use approvals::{Principal, Review, scope};
use tokio::sync::{mpsc, oneshot};

tokio::task_local! {
    static STARTED: mpsc::UnboundedSender<Instant>;
}

#[requires_approval(policy = "export")]
async fn export_customer(customer: u64) -> Result<(), approvals::Error> {
    let _ = STARTED.try_with(|s| s.send(Instant::now()));
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let i = (last as f64 * p).round() as usize;
    sorted.get(i.min(last)).copied().unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rounds: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2000);
    let rt = approvals_perf::runtime()?;
    let (gate, audit) = approvals_perf::export_gate()?;
    // From the thread that blocks on the runtime: each hand-off between it and a worker
    // wakes a thread.
    let (gated, plain) = rt.block_on(measure(gate.clone(), audit.clone(), rounds))?;
    report(rounds, "from the blocked thread", gated, plain);
    // From a task on the runtime, as a server's review handler runs: the woken call may run
    // on the worker that woke it.
    let (gated, plain) = rt.block_on(rt.spawn(measure(gate, audit, rounds)))??;
    report(rounds, "from a task", gated, plain);
    Ok(())
}

type Rounds = (Vec<Duration>, Vec<Duration>);

/// `rounds` rounds, each one gated call approved and one plain hand-off: how long each
/// took from the approval (or the send) to the body (or the waiter) starting.
async fn measure(
    gate: approvals::Gate,
    audit: std::sync::Arc<approvals::memory::MemoryAudit>,
    rounds: u64,
) -> Result<Rounds, Box<dyn std::error::Error + Send + Sync>> {
    let alice = Principal::human("alice");
    let mut gated = Vec::new();
    let mut plain = Vec::new();
    for round in 0..rounds {
        // The gate: a call waits; once it is waiting, approve it and time the resume.
        let (tx, mut started) = mpsc::unbounded_channel();
        // How many records there are (`wait_for`'s condition sees them; it holds at once).
        let records = std::sync::atomic::AtomicUsize::new(0);
        audit
            .wait_for(|r| {
                records.store(r.len(), std::sync::atomic::Ordering::Relaxed);
                true
            })
            .await;
        let records = records.into_inner();
        let call =
            tokio::spawn(STARTED.scope(tx, scope::with_gate(gate.clone(), export_customer(round))));
        audit.wait_for(|r| r.len() > records).await;
        let open = gate.pending().await?;
        let request = open.first().ok_or("no request is waiting")?;
        let review = Review::approve(request, alice.clone(), gate.clock().now());
        let sent = Instant::now();
        gate.submit_review(review).await?;
        let resumed = started.recv().await.ok_or("the body never started")?;
        gated.push(resumed.saturating_duration_since(sent));
        call.await??;

        // The baseline: the same hand-off from this task to a waiting one, no gate.
        let (tx, rx) = oneshot::channel::<()>();
        let (back, mut woke) = mpsc::unbounded_channel();
        let waiter = tokio::spawn(async move {
            if rx.await.is_ok() {
                let _ = back.send(Instant::now());
            }
        });
        tokio::task::yield_now().await;
        let sent = Instant::now();
        tx.send(()).map_err(|()| "the waiter is gone")?;
        let resumed = woke.recv().await.ok_or("the waiter never woke")?;
        plain.push(resumed.saturating_duration_since(sent));
        waiter.await?;
    }
    Ok((gated, plain))
}

/// Prints p50, p99 and max of both, and their ratio.
fn report(rounds: u64, from: &str, mut gated: Vec<Duration>, mut plain: Vec<Duration>) {
    gated.sort();
    plain.sort();
    let (g50, g99) = (percentile(&gated, 0.50), percentile(&gated, 0.99));
    let (p50, p99) = (percentile(&plain, 0.50), percentile(&plain, 0.99));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "review_to_resume, {rounds} rounds {from}: approval to body p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; \
         hand-off without the gate p50 {:.1} µs, p99 {:.1} µs; ratio p50 {:.1}x, p99 {:.1}x",
        us(g50),
        us(g99),
        us(gated.last().copied().unwrap_or_default()),
        us(p50),
        us(p99),
        us(g50) / us(p50).max(0.001),
        us(g99) / us(p99).max(0.001),
    );
}

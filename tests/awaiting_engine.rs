//! The gate decides alike whether its policy engine and audit sink answer at once (code, a
//! policy file, memory: judged on the spot) or await (judged out of line): the same calls
//! through an engine and a sink that await end the same way and leave the same records.

mod common;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::memory::MemoryAudit;
use approvals::{
    Action, AuditError, AuditEvent, AuditReceipt, AuditSink, CodePolicy, Context, PolicyEngine,
    PolicyError, Verdict, requires_approval,
};
use async_trait::async_trait;
use common::*;

/// `common::policy()`'s rules, judged only after yielding to the runtime: an engine without
/// `evaluate_now`.
struct AwaitingEngine(CodePolicy);

#[async_trait]
impl PolicyEngine for AwaitingEngine {
    async fn evaluate(&self, action: &Action, context: &Context) -> Result<Verdict, PolicyError> {
        tokio::task::yield_now().await;
        self.0.evaluate(action, context).await
    }
}

/// A memory log appended to only after yielding to the runtime: a sink without `append_now`.
struct AwaitingSink(Arc<MemoryAudit>);

#[async_trait]
impl AuditSink for AwaitingSink {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        tokio::task::yield_now().await;
        self.0.append(event).await
    }
}

#[requires_approval(policy = "read", name = "dashboards::read", skip(runs))]
async fn read(runs: Arc<AtomicUsize>) -> Result<(), approvals::Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[requires_approval(policy = "drop", name = "db::drop", skip(runs))]
async fn drop_table(runs: Arc<AtomicUsize>) -> Result<(), approvals::Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[requires_approval(policy = "unlisted", name = "db::vacuum", skip(runs))]
async fn vacuum(runs: Arc<AtomicUsize>) -> Result<(), approvals::Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// What one harness made of the same calls: each call's outcome, the names of the records
/// of the calls made one after another (in order), and those of the approved call (sorted:
/// its delivery is recorded concurrently with the review).
async fn scenario(
    h: &Harness,
    log: &MemoryAudit,
) -> (Vec<String>, Vec<&'static str>, Vec<&'static str>) {
    let outcome = |r: Result<(), approvals::Error>| match r {
        Ok(()) => "ran".to_owned(),
        Err(e) => e.to_string(),
    };
    let mut outcomes = vec![
        outcome(h.run(read(h.runs.clone())).await),
        outcome(h.run(drop_table(h.runs.clone())).await),
        outcome(h.run(vacuum(h.runs.clone())).await),
    ];
    let in_order = log
        .records()
        .iter()
        .map(|r| r.event.name())
        .collect::<Vec<_>>();

    let call = h.spawn(export(7, h.runs.clone()));
    h.next().await.approve_as("alice").await.unwrap();
    outcomes.push(match call.await.unwrap() {
        Ok(n) => format!("ran with {n}"),
        Err(e) => e.to_string(),
    });
    outcomes.push(format!("bodies run: {}", h.runs()));
    let mut approved = log.records()[in_order.len()..]
        .iter()
        .map(|r| r.event.name())
        .collect::<Vec<_>>();
    approved.sort_unstable();
    (outcomes, in_order, approved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_and_a_sink_that_await_decide_as_those_that_answer_at_once() {
    let at_once = Harness::new();
    let expected = scenario(&at_once, &at_once.audit).await;

    let log = Arc::new(MemoryAudit::new());
    let awaiting = Harness::with(|b| {
        b.policy(AwaitingEngine(policy()))
            .audit(AwaitingSink(log.clone()))
    });
    let got = scenario(&awaiting, &log).await;
    // Nothing went to the harness's own log: every record went through the awaiting sink.
    assert!(awaiting.audit.records().is_empty());

    assert_eq!(got, expected);
    // And what they agree on is what the rules say: allowed, refused by policy, failed
    // closed on a policy the engine does not know, approved and run once.
    let (outcomes, in_order, approved) = got;
    assert_eq!(outcomes[0], "ran");
    assert!(
        outcomes[1].contains("agents never drop tables"),
        "{}",
        outcomes[1]
    );
    assert!(outcomes[2].contains("unlisted"), "{}", outcomes[2]);
    assert_eq!(outcomes[3], "ran with 7");
    assert_eq!(outcomes[4], "bodies run: 2");
    assert_eq!(in_order, ["allowed", "policy_denied"]);
    for name in ["requested", "decided", "started", "finished"] {
        assert!(approved.contains(&name), "{name} missing from {approved:?}");
    }
}

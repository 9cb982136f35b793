//! A gated call really waits: it is pending until a human approves, then completes.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_waits_until_approved_then_runs_once() {
    let h = Harness::new();
    let call = h.spawn(export(500, h.runs.clone()));

    let req = h.next().await;
    assert_eq!(req.request.action.args, serde_json::json!({"limit": 500}));
    assert!(h.request(&req).await.is_pending());
    assert!(!call.is_finished(), "the call must wait for a human");
    assert_eq!(h.runs(), 0, "the body must not run before approval");

    req.approve_as("alice")
        .await
        .expect("alice is a data owner");
    assert_eq!(call.await.unwrap().unwrap(), 500);
    assert_eq!(h.runs(), 1);
    assert_eq!(
        h.event_names(),
        [
            "requested",
            "notified",
            "review_accepted",
            "decided",
            "started",
            "finished"
        ]
    );
}

#[tokio::test]
async fn allowed_call_runs_at_once_and_is_audited() {
    let h = Harness::new();
    let out = h.run(read(h.runs.clone())).await;
    assert_eq!(out.unwrap(), "ok");
    assert_eq!(h.runs(), 1);
    assert_eq!(h.event_names(), ["allowed"]);
}

#[tokio::test]
async fn policy_denial_names_the_rule_and_the_body_never_runs() {
    let h = Harness::new();
    let err = h
        .run(drop_table("customers", h.runs.clone()))
        .await
        .unwrap_err();
    let denial = err.denial().expect("a denial");
    assert_eq!(
        denial.by,
        approvals::DeniedBy::Policy {
            rule: "drop".into()
        }
    );
    assert_eq!(denial.reason.as_deref(), Some("agents never drop tables"));
    assert_eq!(h.runs(), 0);
    assert_eq!(h.event_names(), ["policy_denied"]);
}

#[approvals::requires_approval(policy = "read", skip(runs))]
async fn read(
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Result<&'static str, approvals::Error> {
    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok("ok")
}

#[approvals::requires_approval(policy = "drop", skip(runs))]
async fn drop_table(
    name: &str,
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(), approvals::Error> {
    let _ = name;
    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

//! Rule 8: a failure of any part means the body does not run, and the error says which.

mod common;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::memory::MemoryAudit;
use approvals::mock::MockApprover;
use approvals::store::{Attach, Change, Store};
use approvals::{
    ApprovalRequest, AuditError, AuditEvent, AuditReceipt, AuditSink, CodePolicy, Context,
    Decision, Error, IfUndelivered, PolicyError, Principal, RequestId, Requirement, StoreError,
    Timestamp, requires_approval, scope,
};
use async_trait::async_trait;
use common::*;

/// Delegates to a memory log, but fails the append of one kind of event.
struct FailOn(&'static str, Arc<MemoryAudit>);

#[async_trait]
impl AuditSink for FailOn {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        if event.name() == self.0 {
            return Err(AuditError::new("test", "disk full"));
        }
        self.1.append(event).await
    }
}

/// A store whose backend is down.
struct DownStore;

fn down() -> StoreError {
    StoreError::unavailable("test", "connection refused")
}

#[async_trait]
impl Store for DownStore {
    async fn create_or_attach(&self, _: ApprovalRequest) -> Result<Attach, StoreError> {
        Err(down())
    }
    async fn get(&self, _: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
        Err(down())
    }
    async fn update(&self, _: RequestId, _: Change<'_>) -> Result<ApprovalRequest, StoreError> {
        Err(down())
    }
    async fn wait_for_change(&self, _: RequestId, _: u64) -> Result<ApprovalRequest, StoreError> {
        Err(down())
    }
    async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        Err(down())
    }
    async fn due(&self, _: Timestamp) -> Result<Vec<RequestId>, StoreError> {
        Err(down())
    }
    async fn insert_grant(&self, _: approvals::Grant) -> Result<(), StoreError> {
        Err(down())
    }
    async fn grants_for(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Vec<approvals::Grant>, StoreError> {
        Err(down())
    }
    async fn update_grant(
        &self,
        _: approvals::GrantId,
        _: approvals::store::GrantChange<'_>,
    ) -> Result<approvals::Grant, StoreError> {
        Err(down())
    }
    async fn grants(&self) -> Result<Vec<approvals::Grant>, StoreError> {
        Err(down())
    }
}

#[tokio::test]
async fn policy_engine_error() {
    let policy = CodePolicy::new().rule("export", |action, _| {
        Err(PolicyError::Evaluation {
            policy: action.policy.to_string(),
            message: "CEL error".into(),
        })
    });
    let h = Harness::with_policy(policy);
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    assert!(matches!(err, Error::Policy(PolicyError::Evaluation { .. })));
    assert!(err.to_string().starts_with("policy engine failed"), "{err}");
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn unknown_policy_is_an_error_not_an_allow() {
    let h = Harness::with_policy(CodePolicy::new().allow("read"));
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    assert!(
        matches!(err, Error::Policy(PolicyError::UnknownPolicy(ref p)) if p == "export"),
        "{err}"
    );
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn requirement_nobody_can_fill_is_a_policy_error() {
    let h = Harness::with_policy(CodePolicy::new().require("export", Requirement::new("empty")));
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    assert!(err.to_string().contains("names no approvers"), "{err}");

    let zero = Requirement::new("zero").factor(approvals::Factor::group("sre", 0));
    let h = Harness::with_policy(CodePolicy::new().require("export", zero));
    assert!(matches!(
        h.run(export(1, h.runs.clone())).await,
        Err(Error::Policy(_))
    ));

    let unknown_channel = one_data_owner().channel("pager");
    let h = Harness::with_policy(CodePolicy::new().require("export", unknown_channel));
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    assert!(
        err.to_string().contains("no approver of that name"),
        "{err}"
    );
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn audit_failure_on_an_allowed_call() {
    let log = Arc::new(MemoryAudit::new());
    let h = Harness::with(|b| b.policy(policy()).audit(FailOn("allowed", log)));
    let runs = h.runs.clone();
    let err = h.run(read(runs)).await.unwrap_err();
    assert!(matches!(err, Error::Audit(_)));
    assert_eq!(err.to_string(), "audit sink failed: test: disk full");
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn audit_failure_on_request_cancels_it() {
    let log = Arc::new(MemoryAudit::new());
    let h = Harness::with(|b| b.audit(FailOn("requested", log.clone())));
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    assert!(matches!(err, Error::Audit(_)), "{err}");
    assert_eq!(h.runs(), 0);
    assert!(
        h.gate.pending().await.unwrap().is_empty(),
        "the request was cancelled"
    );
    assert!(
        h.mock.try_next().is_none(),
        "nobody was asked to approve an unaudited request"
    );
    let names: Vec<_> = log.records().iter().map(|r| r.event.name()).collect();
    assert_eq!(names, ["decided"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_failure_when_starting_stops_the_approved_body() {
    let log = Arc::new(MemoryAudit::new());
    let h = Harness::with(|b| b.audit(FailOn("started", log.clone())));
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;
    req.approve_as("alice").await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Audit(_)), "{err}");
    assert_eq!(h.runs(), 0);
    // The permit is spent and recorded as failed, not left in doubt.
    let after = h.request(&req).await;
    assert!(matches!(
        after.execution,
        approvals::Execution::Finished { ok: false, .. }
    ));
}

#[tokio::test]
async fn approver_delivery_failure_cancels_the_request() {
    let h = Harness::with(|b| b.approver(MockApprover::failing("slack is down").named("slack")));
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    match &err {
        Error::Delivery { channel, source } => {
            assert_eq!(channel, "slack");
            assert_eq!(source.message, "slack is down");
        }
        other => panic!("expected a delivery error, got {other}"),
    }
    assert_eq!(h.runs(), 0);
    let names = h.event_names();
    assert!(names.contains(&"notify_failed"), "{names:?}");
    let decided = h
        .records()
        .into_iter()
        .rev()
        .find(|r| r.event.name() == "decided")
        .unwrap();
    assert!(matches!(
        decided.event.kind,
        approvals::EventKind::Decided {
            decision: Decision::Cancelled { .. }
        }
    ));
}

/// `export` needs one data owner; under `if_undelivered = wait`, on `channels` only.
fn tolerant_policy(channels: &[&str]) -> CodePolicy {
    let mut req = one_data_owner().if_undelivered(IfUndelivered::Wait);
    for c in channels {
        req = req.channel(*c);
    }
    CodePolicy::new().require("export", req)
}

#[tokio::test]
async fn undelivered_wait_keeps_the_request_on_the_channels_that_delivered() {
    let h = Harness::with(|b| {
        b.policy(tolerant_policy(&[]))
            .approver(MockApprover::failing("slack is down").named("slack"))
    });
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;
    req.approve_as("alice").await.unwrap();
    call.await.unwrap().unwrap();
    assert_eq!(h.runs(), 1);
    let names = h.event_names();
    let failed = names.iter().position(|n| *n == "notify_failed");
    let notified = names.iter().position(|n| *n == "notified");
    assert!(
        failed.is_some() && notified.is_some(),
        "both the failure and the delivery are audited: {names:?}"
    );
    let failure = h
        .records()
        .into_iter()
        .find_map(|r| match r.event.kind {
            approvals::EventKind::NotifyFailed { channel, error } => Some((channel, error)),
            _ => None,
        })
        .unwrap();
    assert_eq!(failure, ("slack".into(), "slack is down".into()));
}

#[tokio::test]
async fn undelivered_wait_fails_closed_when_no_channel_delivered() {
    let h = Harness::with(|b| {
        b.policy(tolerant_policy(&["slack", "teams"]))
            .approver(MockApprover::failing("slack is down").named("slack"))
            .approver(MockApprover::failing("teams is down").named("teams"))
    });
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    match &err {
        // The first failure is the one reported; both are audited.
        Error::Delivery { channel, .. } => assert_eq!(channel, "slack"),
        other => panic!("expected a delivery error, got {other}"),
    }
    assert_eq!(h.runs(), 0);
    assert!(h.gate.pending().await.unwrap().is_empty());
    let names = h.event_names();
    assert_eq!(
        names.iter().filter(|n| **n == "notify_failed").count(),
        2,
        "{names:?}"
    );
    let reason = h
        .records()
        .into_iter()
        .find_map(|r| match r.event.kind {
            approvals::EventKind::Decided {
                decision: Decision::Cancelled { reason, .. },
            } => Some(reason),
            _ => None,
        })
        .expect("the request is cancelled");
    assert!(reason.contains("no channel delivered"), "{reason}");
}

#[tokio::test]
async fn store_failure() {
    let h = Harness::with(|b| b.store(DownStore));
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "approval store failed: test: the database is unavailable: connection refused"
    );
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn no_gate_anywhere() {
    let runs = Arc::new(AtomicUsize::new(0));
    let err = scope::with_context(agent(), export(1, runs.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoGate));
    assert!(
        err.to_string().contains("set_global_gate"),
        "the message says what to do"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_context_and_no_default() {
    let h = Harness::new();
    let err = scope::with_gate(h.gate.clone(), export(1, h.runs.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoContext));
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn a_default_context_serves_code_without_a_scope() {
    let h = Harness::with(|b| b.policy(policy()).default_context(agent()));
    let out = scope::with_gate(h.gate.clone(), read(h.runs.clone())).await;
    assert_eq!(out.unwrap(), "ok");
}

#[tokio::test]
async fn a_default_context_that_fails_its_check_is_refused_on_every_call() {
    // The gate checks its default context once, when it is built, and a call that uses a
    // default that passed is not checked again; one that failed is checked, and refused, on
    // every call, as a context the caller gives would be.
    let bad = Context::new(Principal::agent("ops bot\u{202e}"));
    let h = Harness::with(|b| b.policy(policy()).default_context(bad));
    for _ in 0..2 {
        let err = scope::with_gate(h.gate.clone(), read(h.runs.clone()))
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Context(_)), "{err}");
    }
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn unrecordable_argument() {
    let h = Harness::new();
    let mut weird = HashMap::new();
    weird.insert((1u8, 2u8), "tuple keys are not JSON keys");
    let err = h.run(export_map(weird, h.runs.clone())).await.unwrap_err();
    assert!(matches!(&err, Error::Arguments(a) if a.arg == "m"), "{err}");
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn a_sync_gated_fn_refuses_to_block_a_current_thread_runtime() {
    let h = Harness::new();
    let runs = h.runs.clone();
    let err = h.run(async move { read_sync(runs) }).await.unwrap_err();
    assert!(matches!(err, Error::CannotBlock), "{err}");
    assert_eq!(h.runs(), 0);
}

#[requires_approval(policy = "read", skip(runs))]
async fn read(runs: Arc<AtomicUsize>) -> Result<&'static str, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok("ok")
}

#[requires_approval(policy = "read", skip(runs))]
fn read_sync(runs: Arc<AtomicUsize>) -> Result<&'static str, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok("ok")
}

#[requires_approval(policy = "read", skip(runs))]
async fn export_map(
    m: HashMap<(u8, u8), &'static str>,
    runs: Arc<AtomicUsize>,
) -> Result<(), Error> {
    let _ = m;
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_review_for_an_unknown_request_is_an_error() {
    let h = Harness::new();
    let id = RequestId::generate();
    let review = approvals::Review {
        request_id: id,
        digest: approvals::Digest([0; 32]),
        reviewer: approvals::Principal::human("alice"),
        decision: approvals::ReviewDecision::Approve,
        comment: None,
        at: Timestamp::from_unix_micros(0),
        evidence: approvals::Evidence::Mock,
        grant: None,
        set: None,
    };
    let err = h.gate.submit_review(review).await.unwrap_err();
    assert!(matches!(err, approvals::SubmitError::Store(StoreError::UnknownRequest(r)) if r == id));
    assert!(h.records().is_empty());
}

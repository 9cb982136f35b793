//! A reviewer approves a call with changed arguments (issue 21): the edit is a new call,
//! with its own digest, judged by the policy afresh and approved under its own reviews; the
//! body runs once, with the new values; the original never runs; the audit trail links them.

mod common;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::file::{FileAudit, FileAuditOptions, read_checkpoints};
use approvals::{
    AuditRecord, CodePolicy, Decision, EditRefusal, Error, EventKind, Factor, Refusal, Requirement,
    Verdict, requires_approval,
};
use common::*;
use serde_json::json;

/// `limit` and `table` are recorded; only `limit` may be edited.
#[requires_approval(
    policy = "export",
    name = "billing::export",
    skip(runs),
    editable(limit)
)]
async fn export(limit: u32, table: String, runs: Arc<AtomicUsize>) -> Result<(u32, String), Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok((limit, table))
}

/// The same function, blocking.
#[requires_approval(
    policy = "export",
    name = "billing::export_sync",
    skip(runs),
    editable(limit)
)]
fn export_sync(limit: u32, runs: Arc<AtomicUsize>) -> Result<u32, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(limit)
}

/// Says what edit it runs under, as its body sees it.
#[requires_approval(policy = "export", name = "billing::export_seen", editable(limit))]
async fn export_seen(limit: u32) -> Result<(u32, Option<String>), Error> {
    let edit = approvals::scope::current_edit();
    Ok((
        limit,
        edit.map(|e| format!("{}: {}", e.by.id, e.changes[0])),
    ))
}

/// The same, blocking.
#[requires_approval(policy = "export", name = "billing::export_seen_sync", editable(limit))]
fn export_seen_sync(limit: u32) -> Result<(u32, Option<String>), Error> {
    let edit = approvals::scope::current_edit();
    Ok((limit, edit.map(|e| e.by.id.to_string())))
}

/// One data owner for up to 10,000 rows; two data owners above; never above a million.
fn limits() -> CodePolicy {
    CodePolicy::new().rule("export", |action, _| {
        let limit = action.args["limit"].as_u64().unwrap_or(u64::MAX);
        Ok(if limit > 1_000_000 {
            Verdict::deny("too-many-rows", "never more than a million rows")
        } else if limit > 10_000 {
            Verdict::require(
                Requirement::new("big-export")
                    .factor(Factor::group("data-owners", 2))
                    .expires_in(EXPIRY),
            )
        } else {
            Verdict::RequireApproval(Box::new(one_data_owner()))
        })
    })
}

/// A harness whose gate writes a real signed log file, so each test can verify it.
struct Signed {
    h: Harness,
    path: std::path::PathBuf,
    verifier: approvals::note::NoteVerifier,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Signed {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl Signed {
    fn new(policy: CodePolicy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let signer = approvals::note::NoteSigner::generate("edits.test").unwrap();
        let mut options = FileAuditOptions::new("edits.test/approvals", signer.clone());
        options.checkpoint_every = 3;
        let audit = FileAudit::open(&path, options).unwrap();
        let h = Harness::with(|b| b.policy(policy).audit(audit));
        Self {
            h,
            path,
            verifier: signer.verifier(),
            _dir: dir,
        }
    }

    /// Every record, once the log and its checkpoints verify.
    fn records(&self) -> Vec<AuditRecord> {
        let bytes = std::fs::read(&self.path).unwrap();
        let checkpoints = read_checkpoints(&self.path).unwrap();
        approvals::verify::verify_log(&bytes, &checkpoints, &self.verifier)
            .expect("the audit log verifies");
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The names of the records of request `id`, in order.
    fn names_of(&self, id: approvals::RequestId) -> Vec<&'static str> {
        self.records()
            .iter()
            .filter(|r| r.event.request_id == Some(id))
            .map(|r| r.event.name())
            .collect()
    }

    fn refusals(&self) -> Vec<Refusal> {
        self.records()
            .into_iter()
            .filter_map(|r| match r.event.kind {
                EventKind::ReviewRefused { refusal, .. } => Some(refusal),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_edit_runs_once_with_the_new_values_and_the_original_never_runs() {
    let h = Signed::new(policy());
    let call = h.spawn(export(5_000, "customers".into(), h.runs.clone()));
    let original = h.next().await;
    let edit = original
        .edit_as("alice", json!({"limit": 500}))
        .await
        .unwrap();

    // A new call: its own request and digest, linked to the original.
    assert_ne!(edit.id, original.request.id);
    assert_ne!(edit.action.digest, original.request.action.digest);
    assert_eq!(
        edit.action.args,
        json!({"limit": 500, "table": "customers"})
    );
    let of = edit
        .edit_of
        .as_ref()
        .expect("the edit says where it came from");
    assert_eq!(of.original, original.request.id);
    assert_eq!(of.by.id, "alice");
    assert_eq!(
        (of.changes[0].from.clone(), of.changes[0].to.clone()),
        (json!(5_000), json!(500))
    );
    // One data owner is enough for 500 rows, and alice's proposal is her approval.
    assert!(matches!(edit.decision(), Some(Decision::Approved { by, .. }) if by[0].id == "alice"));

    assert_eq!(call.await.unwrap().unwrap(), (500, "customers".to_owned()));
    assert_eq!(h.runs(), 1, "the body ran once, with the edited value");
    let before = h.request(&original).await;
    assert!(matches!(before.decision(), Some(Decision::Edited { edit: e, .. }) if *e == edit.id));
    assert_eq!(
        before.execution,
        approvals::Execution::NotStarted,
        "the original never ran"
    );

    // The trail: the original is decided as edited (by alice, what changed, into which
    // request); the edit was requested with a link back, approved, started and finished.
    assert_eq!(
        h.names_of(original.request.id),
        ["requested", "notified", "decided"]
    );
    assert_eq!(
        h.names_of(edit.id),
        [
            "requested",
            "review_accepted",
            "decided",
            "started",
            "finished"
        ]
    );
    let records = h.records();
    let decided = records
        .iter()
        .find(|r| r.event.request_id == Some(original.request.id) && r.event.name() == "decided")
        .unwrap();
    assert_eq!(decided.event.actor.as_ref().unwrap().id, "alice");
    assert!(matches!(&decided.event.kind,
        EventKind::Decided { decision: Decision::Edited { edit: e, changes, .. } }
            if *e == edit.id && changes[0].arg == "limit"));
    let requested = records
        .iter()
        .find(|r| r.event.request_id == Some(edit.id) && r.event.name() == "requested")
        .unwrap();
    assert!(matches!(&requested.event.kind,
        EventKind::Requested { edit_of: Some(of), .. } if of.original == original.request.id));
    assert_eq!(requested.event.action.digest, edit.action.digest);

    // The identical call, made again, is a new request: its caller was told the outcome.
    let again = h.spawn(export(5_000, "customers".into(), h.runs.clone()));
    let second = h.next().await;
    assert_ne!(second.request.id, original.request.id);
    second.deny_as("bob", "enough for today").await.unwrap();
    assert!(again.await.unwrap().unwrap_err().denial().is_some());
    assert_eq!(h.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_needs_its_own_quorum_when_the_policy_asks_more_of_it() {
    let h = Signed::new(limits());
    let call = h.spawn(export(5_000, "customers".into(), h.runs.clone()));
    let original = h.next().await;
    // Raising the limit moves the call under the two-owner rule: alice's proposal is one.
    let edit = original
        .edit_as("alice", json!({"limit": 50_000}))
        .await
        .unwrap();
    assert!(edit.is_pending());
    assert_eq!(edit.requirement.rule, "one-data-owner + big-export");
    let delivered = h.next().await;
    assert_eq!(
        delivered.request.id, edit.id,
        "the edit is delivered to reviewers"
    );
    assert!(!call.is_finished());

    // alice cannot count twice; dana is who the agent acts for.
    let err = delivered.approve_as("alice").await.unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::Duplicate { .. })),
        "{err}"
    );
    let err = delivered.approve_as("dana").await.unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::SelfApproval { .. })),
        "{err}"
    );
    assert_eq!(h.runs(), 0);

    let approved = delivered.approve_as("bob").await.unwrap();
    assert!(matches!(approved.decision(), Some(Decision::Approved { by, .. }) if by.len() == 2));
    assert_eq!(call.await.unwrap().unwrap().0, 50_000);
    assert_eq!(h.runs(), 1);
    h.names_of(edit.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_into_a_denied_call_is_denied_and_the_request_stays_open() {
    let h = Signed::new(limits());
    let call = h.spawn(export(5_000, "customers".into(), h.runs.clone()));
    let original = h.next().await;
    let err = original
        .edit_as("alice", json!({"limit": 5_000_000}))
        .await
        .unwrap_err();
    match err.refusal() {
        Some(Refusal::Edit {
            refusal: EditRefusal::Denied { rule, reason },
        }) => {
            assert_eq!(rule, "too-many-rows");
            assert_eq!(reason, "never more than a million rows");
        }
        other => panic!("expected the policy's denial, got {other:?}"),
    }
    // Bad edits: refused with the reason; the request stays open and nothing is created.
    let err = original
        .edit_as("alice", json!({"table": "staff"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::Edit { refusal: EditRefusal::NotEditable { arg, .. } }) if arg == "table"),
        "{err}"
    );
    let err = original
        .edit_as("alice", json!({"limit": "all"}))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "review refused: `limit` takes a whole number, not negative, not a string"
    );
    // The requester's side may not edit: ops-bot acts for dana.
    let err = original
        .edit_as("dana", json!({"limit": 10}))
        .await
        .unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::SelfApproval { .. })),
        "{err}"
    );
    assert_eq!(h.refusals().len(), 4, "each refusal is audited");
    assert!(h.request(&original).await.is_pending());
    assert!(h.mock.try_next().is_none(), "no edit was made");

    original.approve_as("bob").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap().0, 5_000);
    assert_eq!(h.runs(), 1);
    h.names_of(original.request.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_after_expiry_or_a_decision_is_refused_and_audited() {
    let h = Signed::new(policy());
    let call = h.spawn(export(5_000, "customers".into(), h.runs.clone()));
    let original = h.next().await;
    original.deny_as("bob", "no").await.unwrap();
    let err = original
        .edit_as("alice", json!({"limit": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::AlreadyDecided { .. })),
        "{err}"
    );
    assert!(call.await.unwrap().is_err());

    let call = h.spawn(export(7, "customers".into(), h.runs.clone()));
    let late = h.next().await;
    h.clock.advance(EXPIRY);
    let err = late
        .edit_as("alice", json!({"limit": 1}))
        .await
        .unwrap_err();
    // Whether the edit or the waiting call notices the expiry first, the edit is refused
    // as late.
    assert!(
        matches!(err.refusal(), Some(Refusal::Expired { .. }))
            || matches!(err.refusal(), Some(Refusal::AlreadyDecided { decision }) if decision == "expired"),
        "{err}"
    );
    assert!(matches!(call.await.unwrap(), Err(Error::Expired { .. })));
    assert_eq!(h.refusals().len(), 2);
    assert_eq!(h.runs(), 0);
    h.names_of(late.request.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_edit_runs_nothing() {
    let h = Signed::new(limits());
    let call = h.spawn(export(5_000, "customers".into(), h.runs.clone()));
    let original = h.next().await;
    original
        .edit_as("alice", json!({"limit": 20_000}))
        .await
        .unwrap();
    let edit = h.next().await;
    edit.deny_as("bob", "not that many either").await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(err.denial(), Some(d) if d.request_id == Some(edit.request.id)),
        "{err}"
    );
    assert_eq!(h.runs(), 0, "neither the original nor the edit ran");
}

#[test]
fn a_blocking_function_runs_with_the_edited_value_too() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(async { Signed::new(policy()) });
    let (gate, runs) = (h.gate.clone(), h.runs.clone());
    let call = rt.spawn_blocking(move || {
        approvals::scope::with_gate_sync(gate, || {
            approvals::scope::with_context_sync(agent(), || export_sync(9_999, runs))
        })
    });
    rt.block_on(async {
        let original = h.next().await;
        original.edit_as("bob", json!({"limit": 99})).await.unwrap();
        assert_eq!(call.await.unwrap().unwrap(), 99);
    });
    assert_eq!(h.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_sees_who_changed_what_and_a_call_run_as_asked_sees_no_edit() {
    let h = Signed::new(policy());
    let call = h.spawn(export_seen(5_000));
    h.next()
        .await
        .edit_as("alice", json!({"limit": 500}))
        .await
        .unwrap();
    assert_eq!(
        call.await.unwrap().unwrap(),
        (500, Some("alice: limit: 5000 → 500".to_owned()))
    );
    let call = h.spawn(export_seen(5_000));
    h.next().await.approve_as("bob").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), (5_000, None));
    assert!(
        approvals::scope::current_edit().is_none(),
        "only inside the body"
    );
}

#[test]
fn a_blocking_body_sees_its_edit_too() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(async { Signed::new(policy()) });
    let gate = h.gate.clone();
    let call = rt.spawn_blocking(move || {
        approvals::scope::with_gate_sync(gate, || {
            approvals::scope::with_context_sync(agent(), || export_seen_sync(9_999))
        })
    });
    rt.block_on(async {
        h.next()
            .await
            .edit_as("bob", json!({"limit": 99}))
            .await
            .unwrap();
        assert_eq!(call.await.unwrap().unwrap(), (99, Some("bob".to_owned())));
    });
}

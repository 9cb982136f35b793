//! A reviewer sends a call back with what to change (issue 21): the caller gets a typed
//! answer it can read, distinct from a denial; nothing runs; the changed call is a new call,
//! judged afresh.

mod common;
use approvals::{Decision, Error, Refusal};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_sent_back_tells_its_caller_what_to_change_and_does_not_run() {
    let h = Harness::new();
    let call = h.spawn(export(50_000, h.runs.clone()));
    let req = h.next().await;
    let decided = req
        .request_changes_as("alice", "500 rows, not 50,000")
        .await
        .unwrap();
    match decided.decision() {
        Some(Decision::ChangesRequested { by, message, .. }) => {
            assert_eq!(by.id, "alice");
            assert_eq!(message, "500 rows, not 50,000");
        }
        other => panic!("expected changes requested, got {other:?}"),
    }

    let err = call.await.unwrap().unwrap_err();
    match &err {
        Error::ChangesRequested {
            request_id,
            by,
            message,
        } => {
            assert_eq!(*request_id, req.request.id);
            assert_eq!(by, "alice");
            assert_eq!(message, "500 rows, not 50,000");
        }
        other => panic!("expected ChangesRequested, got {other:?}"),
    }
    assert!(err.denial().is_none(), "sent back is not denied");
    assert_eq!(
        err.model_text(),
        format!(
            "Not run: alice asked for changes to approval request {}: 500 rows, not 50,000. \
             Change the call as asked and make it again; the changed call is judged afresh.",
            req.request.id
        )
    );
    assert_eq!(h.runs(), 0, "nothing ran");
    let names = h.event_names();
    assert_eq!(
        names[names.len() - 2..],
        ["review_accepted", "decided"],
        "{names:?}"
    );

    // The changed call is another call: its own request, approved, run once.
    let call = h.spawn(export(500, h.runs.clone()));
    let changed = h.next().await;
    assert_ne!(changed.request.id, req.request.id);
    assert_ne!(changed.request.action.digest, req.request.action.digest);
    changed.approve_as("alice").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 500);
    assert_eq!(h.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_call_made_again_asks_again() {
    let h = Harness::new();
    let call = h.spawn(export(50_000, h.runs.clone()));
    let first = h.next().await;
    first
        .request_changes_as("bob", "ask for fewer rows")
        .await
        .unwrap();
    assert!(matches!(
        call.await.unwrap(),
        Err(Error::ChangesRequested { .. })
    ));
    // Its caller was told: the identical call starts a new request rather than joining the
    // one sent back (and being sent back again without anyone looking).
    let call = h.spawn(export(50_000, h.runs.clone()));
    let second = h.next().await;
    assert_ne!(second.request.id, first.request.id);
    assert!(h.request(&second).await.is_pending());
    second
        .deny_as("alice", "no exports this week")
        .await
        .unwrap();
    assert!(call.await.unwrap().unwrap_err().denial().is_some());
    assert_eq!(h.runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_changes_needs_a_message_and_a_reviewer_who_counts() {
    let h = Harness::new();
    let call = h.spawn(export(50_000, h.runs.clone()));
    let req = h.next().await;

    let err = req.request_changes_as("alice", "   ").await.unwrap_err();
    assert_eq!(err.refusal(), Some(&Refusal::NoChangesGiven));
    let err = req
        .request_changes_as("erin", "fewer rows")
        .await
        .unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::NotEligible { .. })),
        "{err}"
    );
    // dana is who the agent acts for: her word would not count for it, either way.
    let err = req
        .request_changes_as("dana", "fewer rows")
        .await
        .unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::SelfApproval { .. })),
        "{err}"
    );
    assert_eq!(h.refusals().len(), 3, "each refusal is audited");
    assert!(h.request(&req).await.is_pending(), "the request stays open");
    assert!(!call.is_finished());

    req.approve_as("bob").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 50_000);
    assert_eq!(h.runs(), 1);
}

//! `defer`: fail at once with Pending; the identical call re-attaches and runs once approved.

mod common;
use approvals::Error;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_call_returns_pending_then_runs_after_approval() {
    let h = Harness::new();
    let err = h.run(export_deferred(9, h.runs.clone())).await.unwrap_err();
    let Error::Pending { request_id } = err else {
        panic!("expected Pending, got {err}")
    };
    assert_eq!(h.runs(), 0);

    // Polling before a decision re-attaches to the same request.
    let again = h.run(export_deferred(9, h.runs.clone())).await.unwrap_err();
    assert_eq!(again.request_id(), Some(request_id));
    assert_eq!(h.gate.pending().await.unwrap().len(), 1);

    let req = h.next().await;
    assert_eq!(req.request.id, request_id);
    req.approve_as("alice").await.unwrap();
    assert_eq!(h.run(export_deferred(9, h.runs.clone())).await.unwrap(), 9);
    assert_eq!(h.runs(), 1);

    // The approval is used: the next identical call is a new request.
    let next = h.run(export_deferred(9, h.runs.clone())).await.unwrap_err();
    assert!(matches!(next, Error::Pending { request_id: id } if id != request_id));
    assert_eq!(h.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_caller_learns_of_a_denial_once() {
    let h = Harness::new();
    let first = h.run(export_deferred(9, h.runs.clone())).await.unwrap_err();
    h.next()
        .await
        .deny_as("bob", "no exports this week")
        .await
        .unwrap();

    let told = h.run(export_deferred(9, h.runs.clone())).await.unwrap_err();
    assert_eq!(told.request_id(), first.request_id());
    assert_eq!(
        told.denial().unwrap().reason.as_deref(),
        Some("no exports this week")
    );

    // Having been told, asking again is a new request.
    let fresh = h.run(export_deferred(9, h.runs.clone())).await.unwrap_err();
    assert!(matches!(fresh, Error::Pending { .. }));
    assert_ne!(fresh.request_id(), first.request_id());
    assert_eq!(h.runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_call_re_attaches_to_a_deferred_request() {
    let h = Harness::new();
    let pending = h.run(export_deferred(4, h.runs.clone())).await.unwrap_err();
    let waiting = h.spawn(export(4, h.runs.clone()));
    let req = h.next().await;
    assert_eq!(Some(req.request.id), pending.request_id());
    req.approve_as("alice").await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 4);
    assert_eq!(h.runs(), 1);
}

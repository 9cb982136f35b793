//! Rule 6: after expiry nothing can approve; Expired is never reported as Denied; reviews
//! after a final state are refused and audited.

mod common;
use std::time::Duration;

use approvals::{Decision, Error, Refusal};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_expires_and_the_body_never_runs() {
    let h = Harness::new();
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;

    h.clock.advance(EXPIRY - Duration::from_secs(1));
    req.approve_as("dana").await.unwrap_err(); // refused, and time has not run out yet
    assert!(h.request(&req).await.is_pending());

    h.clock.advance(Duration::from_secs(1));
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::Expired { request_id, .. } if request_id == req.request.id),
        "{err}"
    );
    assert!(err.denial().is_none(), "an expiry is not a denial");
    assert_eq!(h.runs(), 0);
    assert!(matches!(
        h.request(&req).await.decision(),
        Some(Decision::Expired { .. })
    ));

    let late = req.approve_as("alice").await.unwrap_err();
    assert_eq!(
        late.refusal(),
        Some(&Refusal::AlreadyDecided {
            decision: "expired".into()
        })
    );
    assert_eq!(h.runs(), 0);
    let names = h.event_names();
    assert_eq!(names.iter().filter(|n| **n == "decided").count(), 1);
    assert_eq!(names.last(), Some(&"review_refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_arriving_after_expiry_expires_the_request_even_with_no_waiter() {
    let h = Harness::new();
    let call = h.spawn(export_deferred(1, h.runs.clone()));
    assert!(matches!(call.await.unwrap(), Err(Error::Pending { .. })));
    let req = h.next().await;

    h.clock.advance(EXPIRY);
    let err = req.approve_as("alice").await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Expired { .. })));
    assert!(matches!(
        h.request(&req).await.decision(),
        Some(Decision::Expired { .. })
    ));
    assert_eq!(h.runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_due_sweeps_requests_nobody_waits_for() {
    let h = Harness::new();
    assert!(h.run(export_deferred(1, h.runs.clone())).await.is_err());
    assert!(h.run(export_deferred(2, h.runs.clone())).await.is_err());
    assert_eq!(h.gate.expire_due().await.unwrap(), 0);
    h.clock.advance(EXPIRY);
    assert_eq!(h.gate.expire_due().await.unwrap(), 2);
    assert_eq!(
        h.gate.expire_due().await.unwrap(),
        0,
        "each request expires once"
    );
    assert!(h.gate.pending().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_after_approval_are_refused_and_audited() {
    let h = Harness::new();
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;
    req.approve_as("alice").await.unwrap();
    call.await.unwrap().unwrap();
    let err = req.deny_as("bob", "too late").await.unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(&Refusal::AlreadyDecided {
            decision: "approved".into()
        })
    );
    assert_eq!(h.event_names().last(), Some(&"review_refused"));
    assert_eq!(h.runs(), 1);
}

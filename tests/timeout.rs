//! `timeout`: the caller stops waiting; the request stays open for a later identical call.

mod common;
use std::time::Duration;

use approvals::Error;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_gives_up_but_the_request_stays_open() {
    let h = Harness::new();
    let call = h.spawn(export_patiently(3, h.runs.clone()));
    let req = h.next().await;
    h.clock.advance(Duration::from_secs(29));
    assert!(!call.is_finished());
    h.clock.advance(Duration::from_secs(1));
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::TimedOut { request_id, waited } if request_id == req.request.id && waited == Duration::from_secs(30)),
        "{err}"
    );
    assert!(h.request(&req).await.is_pending());
    assert_eq!(h.runs(), 0);

    // Approved later; the identical call re-attaches and runs.
    req.approve_as("alice").await.unwrap();
    assert_eq!(h.run(export_patiently(3, h.runs.clone())).await.unwrap(), 3);
    assert_eq!(h.runs(), 1);
    assert!(h.mock.try_next().is_none(), "no second request");
}

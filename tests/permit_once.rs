//! Rule 7: an approval yields one permit; identical calls racing run the body once.

mod common;
use approvals::Error;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_racing_calls_share_one_request_and_run_once() {
    let h = Harness::new();
    let calls: Vec<_> = (0..8).map(|_| h.spawn(export(7, h.runs.clone()))).collect();
    let req = h.next().await;
    // The first caller created the request; wait until the other seven have joined it.
    h.audit
        .wait_for(|r| r.iter().filter(|r| r.event.name() == "attached").count() == 7)
        .await;
    assert_eq!(
        h.event_names()
            .iter()
            .filter(|n| **n == "requested")
            .count(),
        1
    );

    req.approve_as("alice").await.unwrap();
    let mut ran = 0;
    let mut already = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(7) => ran += 1,
            Err(Error::AlreadyRan { request_id }) => {
                assert_eq!(request_id, req.request.id);
                already += 1;
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((ran, already), (1, 7));
    assert_eq!(h.runs(), 1);
    assert!(h.mock.try_next().is_none(), "no second request was made");
    assert_eq!(
        h.event_names().iter().filter(|n| **n == "started").count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_run_the_identical_call_asks_again() {
    let h = Harness::new();
    let first = h.spawn(export(7, h.runs.clone()));
    h.next().await.approve_as("alice").await.unwrap();
    first.await.unwrap().unwrap();

    let second = h.spawn(export(7, h.runs.clone()));
    let again = h.next().await;
    assert!(
        !second.is_finished(),
        "a used approval must not cover a new call"
    );
    again.approve_as("bob").await.unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(h.runs(), 2);
}

//! Rule 5: a review of a different call (another digest) is refused.

mod common;
use approvals::{Clock, Digest, Principal, Refusal, Review};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_for_another_digest_is_refused_and_audited() {
    let h = Harness::new();
    let call = h.spawn(export(500, h.runs.clone()));
    let req = h.next().await;

    // alice saw a message for `export(5000)`: its digest is not this request's.
    let other = approvals::Action::builder("billing::export", "export")
        .arg("limit", &5000)
        .build()
        .unwrap();
    let mut review = Review::approve(&req.request, Principal::human("alice"), h.clock.now());
    review.digest = other.digest;
    let err = req.submit(review).await.unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(&Refusal::DigestMismatch {
            expected: req.request.action.digest,
            got: other.digest
        })
    );
    let mut zero = Review::approve(&req.request, Principal::human("bob"), h.clock.now());
    zero.digest = Digest([0; 32]);
    assert!(matches!(
        req.submit(zero).await.unwrap_err().refusal(),
        Some(Refusal::DigestMismatch { .. })
    ));

    assert!(h.request(&req).await.is_pending());
    assert!(!call.is_finished());
    assert_eq!(h.runs(), 0);
    assert_eq!(h.refusals().len(), 2);
    req.approve_as("alice").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_arguments_are_different_requests() {
    let h = Harness::new();
    let small = h.spawn(export(1, h.runs.clone()));
    let first = h.next().await;
    let big = h.spawn(export(1_000_000, h.runs.clone()));
    let second = h.next().await;
    assert_ne!(first.request.id, second.request.id);
    assert_ne!(first.request.action.digest, second.request.action.digest);

    second.approve_as("alice").await.unwrap();
    assert_eq!(big.await.unwrap().unwrap(), 1_000_000);
    assert!(
        !small.is_finished(),
        "approving one call must not approve another"
    );
    first.deny_as("alice", "too small to bother").await.unwrap();
    assert!(small.await.unwrap().is_err());
    assert_eq!(h.runs(), 1);
}

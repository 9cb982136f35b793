//! Rule 5: a review of a different call (another digest) is refused.

mod common;
use approvals::{Clock, Digest, Principal, Refusal, Review, requires_approval};
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

/// SHA-256 over the documented encoding of a call, written out here by hand.
fn documented(text: &str) -> Digest {
    use sha2::Digest as _;
    Digest(sha2::Sha256::digest(text.as_bytes()).into())
}

#[requires_approval(policy = "read")]
async fn plain_names(limit: u32, r#type: &str, größe: u8) -> Result<u32, approvals::Error> {
    Ok(limit + u32::from(größe) + r#type.len() as u32)
}

#[requires_approval(policy = "read", name = "reports::\"weekly\"\\export")]
async fn quoted_name(limit: u32) -> Result<u32, approvals::Error> {
    Ok(limit)
}

#[requires_approval(policy = "read")]
async fn no_arguments() -> Result<u32, approvals::Error> {
    Ok(1)
}

/// A gated function writes the end of its digest's encoding (its name and policy) at
/// compile time, and each argument's name is checked by the compiler: the digest is still
/// SHA-256 of the documented bytes, for names that need no escape and for a name that does
/// (which is written on each call, as before). Raw and non-ASCII identifiers are recorded
/// as their names.
#[tokio::test]
async fn a_gated_call_is_digested_over_the_documented_bytes() {
    let h = Harness::new();
    h.spawn(async {
        plain_names(7, "full", 2).await.unwrap();
        quoted_name(3).await.unwrap();
        no_arguments().await.unwrap();
    })
    .await
    .unwrap();
    let digests: Vec<Digest> = h.records().iter().map(|r| r.event.action.digest).collect();
    assert_eq!(
        digests,
        [
            documented(
                r#"{"args":{"größe":2,"limit":7,"type":"full"},"name":"digest::plain_names","policy":"read"}"#
            ),
            documented(
                r#"{"args":{"limit":3},"name":"reports::\"weekly\"\\export","policy":"read"}"#
            ),
            documented(r#"{"args":{},"name":"digest::no_arguments","policy":"read"}"#),
        ]
    );
}

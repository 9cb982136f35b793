//! Rule 1: the requester and the principal it acts for never count as reviewers.

mod common;
use approvals::{Principal, Refusal, ReviewDecision, SelfRole};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_and_on_behalf_of_are_refused_and_audited() {
    let h = Harness::new();
    let call = h.spawn(export(10, h.runs.clone()));
    let req = h.next().await;

    // dana is a data owner, but ops-bot is acting for her.
    let err = req.approve_as("dana").await.unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(&Refusal::SelfApproval {
            reviewer: "dana".into(),
            role: SelfRole::OnBehalfOf
        })
    );
    // The agent itself.
    let err = req
        .review(Principal::agent("ops-bot"), ReviewDecision::Approve, None)
        .await
        .unwrap_err();
    assert!(matches!(
        err.refusal(),
        Some(Refusal::SelfApproval {
            role: SelfRole::Requester,
            ..
        })
    ));
    // The same id under another kind is the same party.
    let err = req
        .review(Principal::human("ops-bot"), ReviewDecision::Approve, None)
        .await
        .unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::SelfApproval { .. })));

    assert!(h.request(&req).await.is_pending());
    assert!(!call.is_finished());
    assert_eq!(h.runs(), 0);
    assert_eq!(h.refusals().len(), 3, "every attempt is in the audit trail");

    req.approve_as("bob").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 10);
    assert_eq!(h.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_denial_does_not_count_either() {
    let h = Harness::new();
    let call = h.spawn(export(10, h.runs.clone()));
    let req = h.next().await;
    assert!(req.deny_as("dana", "changed my mind").await.is_err());
    assert!(
        h.request(&req).await.is_pending(),
        "a party's denial must not decide"
    );
    req.approve_as("alice").await.unwrap();
    assert!(call.await.unwrap().is_ok());
}

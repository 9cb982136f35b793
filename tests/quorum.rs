//! Rule 3: one review per reviewer; one person fills at most one factor.

mod common;
use approvals::{CodePolicy, DeniedBy, Factor, Principal, Refusal, Requirement};
use common::*;

fn two_sre_one_security() -> CodePolicy {
    CodePolicy::new().require(
        "export",
        Requirement::new("two-sre-one-security")
            .factor(Factor::group("sre", 2))
            .factor(Factor::group("security", 1)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_distinct_people_whatever_the_order() {
    // alice is in sre and security. Arriving first, she must end up filling security so
    // that bob and carol can fill sre.
    let h = Harness::with_policy(two_sre_one_security());
    let call = h.spawn(export(3, h.runs.clone()));
    let req = h.next().await;

    req.approve_as("alice").await.unwrap();
    req.approve_as("bob").await.unwrap();
    let progress = approvals::tally::progress(&h.request(&req).await);
    assert_eq!(
        progress.approvers().len(),
        2,
        "two of three slots are filled"
    );
    assert!(!progress.complete());
    assert!(!call.is_finished());
    assert_eq!(h.runs(), 0);

    // carol is only in sre: a first-come assignment (alice→sre) would leave security empty.
    req.approve_as("carol").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 3);
    let decided = h.request(&req).await;
    let approvers = match decided.decision() {
        Some(approvals::Decision::Approved { by, .. }) => by.clone(),
        other => panic!("expected approval, got {other:?}"),
    };
    assert_eq!(approvers.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_cannot_fill_two_factors() {
    let policy = CodePolicy::new().require(
        "export",
        Requirement::new("sre-and-security")
            .factor(Factor::group("sre", 1))
            .factor(Factor::group("security", 1)),
    );
    let h = Harness::with_policy(policy);
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;
    req.approve_as("alice").await.unwrap();
    assert!(
        h.request(&req).await.is_pending(),
        "alice alone fills only one factor"
    );
    assert!(!call.is_finished());
    req.approve_as("erin").await.unwrap();
    assert!(call.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_review_by_the_same_person_is_refused() {
    let h = Harness::with_policy(two_sre_one_security());
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;
    req.approve_as("bob").await.unwrap();
    let err = req.approve_as("bob").await.unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(&Refusal::Duplicate {
            reviewer: "bob".into()
        })
    );
    // A change of mind is a second review too.
    assert!(req.deny_as("bob", "second thoughts").await.is_err());
    assert_eq!(h.refusals().len(), 2);
    assert!(h.request(&req).await.is_pending());

    // Any eligible denial ends it (rule 4).
    req.deny_as("erin", "not during the freeze").await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    let denial = err.denial().unwrap();
    assert_eq!(
        denial.by,
        DeniedBy::Reviewer {
            reviewer: Principal::human("erin")
        }
    );
    assert_eq!(denial.reason.as_deref(), Some("not during the freeze"));
    assert_eq!(h.runs(), 0);
}

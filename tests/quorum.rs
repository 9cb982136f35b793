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

/// Reviewers are named in the order they approved, not the order of the factors they fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_are_listed_in_the_order_they_approved() {
    let h = Harness::with_policy(
        CodePolicy::new().require(
            "export",
            Requirement::new("sre-then-security")
                .factor(Factor::group("sre", 1))
                .factor(Factor::group("security", 1)),
        ),
    );
    let call = h.spawn(export(3, h.runs.clone()));
    let req = h.next().await;
    // erin fills security (the second factor) before bob fills sre (the first).
    req.approve_as("erin").await.unwrap();
    let decided = req.approve_as("bob").await.unwrap();
    call.await.unwrap().unwrap();
    let Some(approvals::Decision::Approved { by, .. }) = decided.decision() else {
        panic!("{decided:?}")
    };
    let ids: Vec<&str> = by.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["erin", "bob"]);
    assert_eq!(
        decided.decision().unwrap().to_string(),
        "approved by erin, bob"
    );
}

/// Durations in what the API and the audit log show carry their unit in their name.
#[test]
fn durations_name_their_unit_and_old_records_still_read() {
    let r = Requirement::new("r")
        .factor(Factor::group("sre", 1))
        .expires_in(std::time::Duration::from_secs(90));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["expires_in_ms"], 90_000);
    assert!(json.get("expires_in").is_none());
    let mut old = json.clone();
    let ms = old
        .as_object_mut()
        .unwrap()
        .remove("expires_in_ms")
        .unwrap();
    old["expires_in"] = ms;
    let read: Requirement = serde_json::from_value(old).unwrap();
    assert_eq!(read.expires_in, std::time::Duration::from_secs(90));
}

//! Rule 2: a reviewer counts only if eligible for a factor at the time of review.

mod common;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use approvals::{CodePolicy, Directory, Factor, Refusal, Requirement};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_outside_every_factor_is_refused() {
    let h = Harness::new();
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;
    let err = req.approve_as("mallory").await.unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::NotEligible { reviewer, .. }) if reviewer == "mallory")
    );
    // carol is in sre, not data-owners.
    assert!(matches!(
        req.approve_as("carol").await.unwrap_err().refusal(),
        Some(Refusal::NotEligible { .. })
    ));
    // A non-eligible denial does not end the request either.
    assert!(req.deny_as("mallory", "no").await.is_err());
    assert!(h.request(&req).await.is_pending());
    assert_eq!(h.refusals().len(), 3);
    req.approve_as("bob").await.unwrap();
    assert!(call.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_people_are_eligible_without_a_group() {
    let policy = CodePolicy::new().require(
        "export",
        Requirement::new("named").factor(Factor::people(["mallory"], 1)),
    );
    let h = Harness::with_policy(policy);
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;
    assert!(
        req.approve_as("alice").await.is_err(),
        "alice is not listed"
    );
    req.approve_as("mallory").await.unwrap();
    assert!(call.await.unwrap().is_ok());
}

/// A directory whose membership a test changes while a request waits.
#[derive(Debug, Default)]
struct ChangingDirectory(Mutex<BTreeSet<String>>);

impl Directory for ChangingDirectory {
    fn groups_of(&self, id: &str) -> BTreeSet<String> {
        if self.0.lock().unwrap().contains(id) {
            BTreeSet::from(["data-owners".to_owned()])
        } else {
            BTreeSet::new()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_is_judged_when_the_review_arrives() {
    let dir = Arc::new(ChangingDirectory::default());
    dir.0.lock().unwrap().insert("bob".into());
    let h = Harness::with(|b| b.directory(dir.clone()));
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await;

    // bob leaves the group after the request was made, before he reviews.
    dir.0.lock().unwrap().remove("bob");
    assert!(matches!(
        req.approve_as("bob").await.unwrap_err().refusal(),
        Some(Refusal::NotEligible { .. })
    ));
    // erin joins, and her review counts.
    dir.0.lock().unwrap().insert("erin".into());
    let after = req.approve_as("erin").await.unwrap();
    assert_eq!(
        after.reviews[0].groups,
        BTreeSet::from(["data-owners".to_owned()])
    );
    assert!(call.await.unwrap().is_ok());
}

//! `tally::may_still_approve`: who could move a pending request forward now, by the same rules
//! a real review meets, checked against answers written out by hand.

use std::collections::BTreeSet;
use std::time::Duration;

use approvals_core::tally::{self, may_still_approve};
use approvals_core::{
    Action, ApprovalRequest, Context, Factor, Principal, RecordedReview, Requirement, Review,
    Timestamp,
};

/// "2 from sre and 1 from security", asked by ops-bot for dana.
fn request() -> ApprovalRequest {
    let action = Action::builder("deploy", "deploys").build().unwrap();
    let requirement = Requirement::new("r")
        .factor(Factor::group("sre", 2))
        .factor(Factor::group("security", 1))
        .expires_in(Duration::from_secs(60));
    ApprovalRequest::new(
        action,
        Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human("dana")),
        requirement,
        Timestamp::from_unix_micros(0),
    )
}

fn groups(g: &[&str]) -> BTreeSet<String> {
    g.iter().map(|s| (*s).to_owned()).collect()
}

/// alice: sre and security; bob, carol: sre; erin: security; dana: sre (but the request is
/// for her); frank: neither.
fn candidates() -> Vec<(&'static str, BTreeSet<String>)> {
    vec![
        ("alice", groups(&["sre", "security"])),
        ("bob", groups(&["sre"])),
        ("carol", groups(&["sre"])),
        ("dana", groups(&["sre"])),
        ("erin", groups(&["security"])),
        ("frank", groups(&[])),
    ]
}

fn approve(r: &mut ApprovalRequest, who: &str, g: &[&str]) {
    let review = Review::approve(r, Principal::human(who), Timestamp::from_unix_micros(1));
    let applied = tally::apply_review(
        r,
        RecordedReview {
            review,
            groups: groups(g),
        },
        Timestamp::from_unix_micros(1),
    );
    assert!(applied.verdict.is_ok(), "{who}: {:?}", applied.verdict);
}

#[test]
fn only_eligible_people_whose_approval_fills_a_place() {
    let now = Timestamp::from_unix_micros(2);
    let mut r = request();
    // Nobody has approved: every eligible person but dana (whom it is for) and frank.
    assert_eq!(
        may_still_approve(&r, candidates(), now),
        ["alice", "bob", "carol", "erin"]
    );
    // bob and carol fill sre; only a security approver still helps, and bob and carol
    // have reviewed already.
    approve(&mut r, "bob", &["sre"]);
    approve(&mut r, "carol", &["sre"]);
    assert_eq!(may_still_approve(&r, candidates(), now), ["alice", "erin"]);
    // Once approved, nobody.
    approve(&mut r, "erin", &["security"]);
    assert!(!r.is_pending());
    assert!(may_still_approve(&r, candidates(), now).is_empty());
}

#[test]
fn nobody_after_expiry() {
    let r = request();
    let later = Timestamp::from_unix_micros(61_000_000);
    assert!(may_still_approve(&r, candidates(), later).is_empty());
}

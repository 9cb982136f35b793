//! Property tests of the rules, against an independent brute-force answer.

use std::collections::BTreeSet;

use approvals_core::tally::{Tally, tally};
use approvals_core::{
    Action, Context, Eligible, Evidence, Factor, Principal, RecordedReview, RequestId, Requirement,
    Review, ReviewDecision, Timestamp,
};
use proptest::prelude::*;

const PEOPLE: [&str; 6] = ["alice", "bob", "carol", "dana", "erin", "ops-bot"];
const GROUPS: [&str; 3] = ["sre", "security", "data"];

fn context() -> Context {
    // ops-bot asks on dana's behalf: neither may count.
    Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human("dana"))
}

fn factor() -> impl Strategy<Value = Factor> {
    let group = prop::sample::select(GROUPS.to_vec()).prop_map(|g| Eligible::Group(g.into()));
    let people = prop::sample::subsequence(PEOPLE.to_vec(), 1..4)
        .prop_map(|p| Eligible::People(p.into_iter().map(String::from).collect()));
    (prop_oneof![group, people], 1u32..3).prop_map(|(from, count)| Factor { from, count })
}

fn requirement() -> impl Strategy<Value = Requirement> {
    prop::collection::vec(factor(), 1..4).prop_map(|factors| Requirement {
        factors,
        ..Requirement::new("prop")
    })
}

fn review() -> impl Strategy<Value = RecordedReview> {
    (
        prop::sample::select(PEOPLE.to_vec()),
        prop::sample::subsequence(GROUPS.to_vec(), 0..4),
        prop::sample::select(vec![
            ReviewDecision::Approve,
            ReviewDecision::Approve,
            ReviewDecision::Approve,
            ReviewDecision::Approve,
            ReviewDecision::Approve,
            ReviewDecision::Deny,
            ReviewDecision::RequestChanges,
        ]),
    )
        .prop_map(|(who, groups, decision)| RecordedReview {
            review: Review {
                request_id: RequestId::generate(),
                digest: Action::builder("f", "p").build().unwrap().digest,
                reviewer: Principal::human(who),
                decision,
                comment: None,
                at: Timestamp::from_unix_micros(0),
                evidence: Evidence::Mock,
                grant: None,
                set: None,
            },
            groups: groups.into_iter().map(String::from).collect(),
        })
}

fn admits(f: &Factor, r: &RecordedReview) -> bool {
    match &f.from {
        Eligible::Group(g) => r.groups.contains(g),
        Eligible::People(p) => p.iter().any(|id| *id == r.review.reviewer.id),
    }
}

/// The reviews that count: first review per person, not a party, eligible somewhere.
fn counted<'a>(req: &Requirement, reviews: &'a [RecordedReview]) -> Vec<&'a RecordedReview> {
    let mut seen = BTreeSet::new();
    reviews
        .iter()
        .filter(|r| !["ops-bot", "dana"].contains(&r.review.reviewer.id.as_str()))
        .filter(|r| req.factors.iter().any(|f| admits(f, r)))
        .filter(|r| seen.insert(r.review.reviewer.id.clone()))
        .collect()
}

/// Brute force: can the approvers fill every slot, each person at most one slot?
fn fillable(req: &Requirement, approvers: &[&RecordedReview]) -> bool {
    let slots: Vec<&Factor> = req
        .factors
        .iter()
        .flat_map(|f| std::iter::repeat_n(f, f.count as usize))
        .collect();
    fn go(slots: &[&Factor], approvers: &[&RecordedReview], used: &mut Vec<bool>) -> bool {
        let Some((first, rest)) = slots.split_first() else {
            return true;
        };
        for i in 0..approvers.len() {
            if !used[i] && admits(first, approvers[i]) {
                used[i] = true;
                if go(rest, approvers, used) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    go(&slots, approvers, &mut vec![false; approvers.len()])
}

const EXPIRES: i64 = 1_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn tally_matches_brute_force(req in requirement(), reviews in prop::collection::vec(review(), 0..8), late in any::<bool>()) {
        let now = Timestamp::from_unix_micros(if late { EXPIRES } else { 0 });
        let t = tally(&req, &context(), &reviews, Timestamp::from_unix_micros(EXPIRES), now);
        let counted = counted(&req, &reviews);
        // The first counted review that is not an approval decides, whichever it is.
        let turned_down = counted.iter().find(|r| r.review.decision != ReviewDecision::Approve).map(|r| r.review.decision);
        let approvers: Vec<_> = counted.into_iter().filter(|r| r.review.decision == ReviewDecision::Approve).collect();
        let expected = if turned_down == Some(ReviewDecision::Deny) {
            "denied"
        } else if turned_down == Some(ReviewDecision::RequestChanges) {
            "changes_requested"
        } else if fillable(&req, &approvers) {
            "approved"
        } else if late {
            "expired"
        } else {
            "pending"
        };
        let got = match &t {
            Tally::Pending(_) => "pending",
            Tally::Approved(_) => "approved",
            Tally::Denied { .. } => "denied",
            Tally::ChangesRequested { .. } => "changes_requested",
            Tally::Expired => "expired",
        };
        prop_assert_eq!(got, expected);

        if let Tally::Approved(p) = &t {
            // Each approver fills one slot of a factor they are eligible for.
            let ids: Vec<_> = p.approvers().into_iter().map(|a| a.id).collect();
            let distinct: BTreeSet<_> = ids.iter().collect();
            prop_assert_eq!(distinct.len(), ids.len());
            prop_assert!(!ids.iter().any(|id| id == "ops-bot" || id == "dana"));
        }
    }

    #[test]
    fn parties_to_the_request_never_change_the_outcome(req in requirement(), reviews in prop::collection::vec(review(), 0..8)) {
        let ctx = context();
        let at = Timestamp::from_unix_micros(EXPIRES);
        let now = Timestamp::from_unix_micros(0);
        let without: Vec<_> = reviews.iter().filter(|r| ctx.is_party(&r.review.reviewer).is_none()).cloned().collect();
        prop_assert_eq!(tally(&req, &ctx, &reviews, at, now), tally(&req, &ctx, &without, at, now));
    }

    #[test]
    fn the_order_of_approvals_does_not_matter(req in requirement(), reviews in prop::collection::vec(review(), 0..8)) {
        let ctx = context();
        let at = Timestamp::from_unix_micros(EXPIRES);
        let now = Timestamp::from_unix_micros(0);
        // Approvals only, one per person (with duplicates, which review counts depends on
        // order by design: the first).
        let mut seen = BTreeSet::new();
        let approvals: Vec<_> = reviews.into_iter()
            .filter(|r| r.review.decision == ReviewDecision::Approve)
            .filter(|r| seen.insert(r.review.reviewer.id.clone()))
            .collect();
        let mut reversed = approvals.clone();
        reversed.reverse();
        let a = matches!(tally(&req, &ctx, &approvals, at, now), Tally::Approved(_));
        let b = matches!(tally(&req, &ctx, &reversed, at, now), Tally::Approved(_));
        prop_assert_eq!(a, b);
    }
}

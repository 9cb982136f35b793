//! Quorums: who fills which factor (a maximum matching), the state reviews put a request
//! in, whether a requirement can be met at all, and who could still help.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::policy::{Factor, Requirement};
use crate::principal::{Context, Principal, id_key};
use crate::request::{ApprovalRequest, RecordedReview, ReviewDecision};

use super::admission::admit;

/// How far a request has come: per factor, who fills it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// One entry per factor of the requirement, in order.
    pub factors: Vec<FactorProgress>,
}

/// One factor and the approvers assigned to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorProgress {
    /// The factor.
    pub factor: Factor,
    /// Approvers whose approval fills it.
    pub filled_by: Vec<Principal>,
}

impl Progress {
    /// Whether every factor is filled.
    pub fn complete(&self) -> bool {
        self.factors
            .iter()
            .all(|f| f.filled_by.len() >= f.factor.count as usize)
    }

    /// What is still needed, e.g. `1 more from sre; 1 more of alice, bob`.
    pub fn still_needed(&self) -> String {
        let parts: Vec<String> = self
            .factors
            .iter()
            .filter(|f| f.filled_by.len() < f.factor.count as usize)
            .map(|f| {
                let more = f.factor.count as usize - f.filled_by.len();
                let rest = f.factor.to_string();
                let tail = rest.split_once(' ').map_or("", |(_, t)| t);
                format!("{more} more {tail}")
            })
            .collect();
        parts.join("; ")
    }

    /// Everyone who fills a factor.
    pub fn approvers(&self) -> Vec<Principal> {
        self.factors
            .iter()
            .flat_map(|f| f.filled_by.iter().cloned())
            .collect()
    }
}

/// `who`, in the order their reviews were accepted (not the order of the factors they fill).
pub(crate) fn in_review_order(
    mut who: Vec<Principal>,
    reviews: &[RecordedReview],
) -> Vec<Principal> {
    who.sort_by_key(|p| {
        reviews
            .iter()
            .position(|r| r.review.reviewer.same_party(p))
            .unwrap_or(usize::MAX)
    });
    who
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.complete() {
            f.write_str("complete")
        } else {
            f.write_str(&self.still_needed())
        }
    }
}

/// The state a set of reviews puts a request in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// Not decided; `Progress` says what is filled.
    Pending(Progress),
    /// Every factor filled.
    Approved(Progress),
    /// An eligible reviewer denied.
    Denied {
        /// The first eligible denial.
        by: Principal,
        /// Its comment.
        reason: Option<String>,
        /// When it was made.
        at: Timestamp,
    },
    /// An eligible reviewer sent the call back with what to change.
    ChangesRequested {
        /// The first eligible reviewer to do so.
        by: Principal,
        /// What to change.
        message: String,
        /// When it was asked.
        at: Timestamp,
    },
    /// The expiry passed with no decision.
    Expired,
}

/// Whether a reviewer counts at all: not a party to the request, eligible for some factor.
pub(crate) fn counts(requirement: &Requirement, context: &Context, r: &RecordedReview) -> bool {
    context.is_party(&r.review.reviewer).is_none()
        && requirement
            .factors
            .iter()
            .any(|f| f.admits(&r.review.reviewer.id, &r.groups))
}

/// The pure tally: the state `reviews` put a request in at `now`.
///
/// Reviews from parties to the request, from reviewers eligible for no factor, and second
/// reviews by the same reviewer are ignored here even if a store let them in.
///
/// ```
/// use approvals_core::tally::{tally, Tally};
/// use approvals_core::{Context, Factor, Principal, Requirement, Timestamp};
/// let req = Requirement::new("r").factor(Factor::people(["alice"], 1));
/// let ctx = Context::new(Principal::agent("bot"));
/// let t = tally(&req, &ctx, &[], Timestamp::from_unix_micros(10), Timestamp::from_unix_micros(0));
/// assert!(matches!(t, Tally::Pending(_)));
/// ```
pub fn tally(
    requirement: &Requirement,
    context: &Context,
    reviews: &[RecordedReview],
    expires_at: Timestamp,
    now: Timestamp,
) -> Tally {
    let mut seen = BTreeSet::new();
    let counted: Vec<&RecordedReview> = reviews
        .iter()
        .filter(|r| counts(requirement, context, r))
        .filter(|r| seen.insert(id_key(&r.review.reviewer.id)))
        .collect();

    // The first counted review that turns the call down decides: a denial, or a request
    // for changes.
    if let Some(d) = counted
        .iter()
        .find(|r| r.review.decision != ReviewDecision::Approve)
    {
        let (by, at) = (d.review.reviewer.clone(), d.review.at);
        return match d.review.decision {
            ReviewDecision::RequestChanges => Tally::ChangesRequested {
                by,
                message: d.review.comment.clone().unwrap_or_default(),
                at,
            },
            _ => Tally::Denied {
                by,
                reason: d.review.comment.clone(),
                at,
            },
        };
    }

    let approvals: Vec<&RecordedReview> = counted
        .into_iter()
        .filter(|r| r.review.decision == ReviewDecision::Approve)
        .collect();
    let progress = assign(requirement, &approvals);
    if progress.complete() {
        Tally::Approved(progress)
    } else if now >= expires_at {
        Tally::Expired
    } else {
        Tally::Pending(progress)
    }
}

/// Assigns approvers to factor slots with a maximum bipartite matching (Kuhn's augmenting
/// paths). "2 from sre, 1 from security" with alice in both, bob and carol in sre is filled
/// by alice→security whatever order the three approved in. Sizes are tiny (people × slots),
/// so the simple algorithm is the right one.
pub(crate) fn assign(requirement: &Requirement, approvals: &[&RecordedReview]) -> Progress {
    let people: Vec<(&str, &BTreeSet<String>)> = approvals
        .iter()
        .map(|r| (r.review.reviewer.id.as_str(), &r.groups))
        .collect();
    let (slots, slot_owner) = matching(requirement, &people);
    let mut factors: Vec<FactorProgress> = requirement
        .factors
        .iter()
        .map(|f| FactorProgress {
            factor: f.clone(),
            filled_by: Vec::new(),
        })
        .collect();
    for (slot, owner) in slot_owner.iter().enumerate() {
        if let Some(p) = owner {
            factors[slots[slot]]
                .filled_by
                .push(approvals[*p].review.reviewer.clone());
        }
    }
    Progress { factors }
}

/// The maximum matching of `people` (id, groups) to the requirement's slots: one slot per
/// required approval. Returns each slot's factor index and its owner (an index into `people`).
pub(crate) fn matching(
    requirement: &Requirement,
    people: &[(&str, &BTreeSet<String>)],
) -> (Vec<usize>, Vec<Option<usize>>) {
    let slots: Vec<usize> = requirement
        .factors
        .iter()
        .enumerate()
        .flat_map(|(i, f)| std::iter::repeat_n(i, f.count as usize))
        .collect();
    let admits = |person: usize, slot: usize| {
        let (id, groups) = people[person];
        requirement.factors[slots[slot]].admits(id, groups)
    };
    let mut slot_owner: Vec<Option<usize>> = vec![None; slots.len()];
    for person in 0..people.len() {
        let mut visited = vec![false; slots.len()];
        augment(person, &admits, &mut slot_owner, &mut visited);
    }
    (slots, slot_owner)
}

/// Whether the requirement can be met at all by `candidates` (id → groups): everyone who
/// could possibly approve, as the directory lists them now. The requester and the
/// on_behalf_of principal are left out (rule 1). On failure, says which factor cannot be
/// filled and why, so the call can be denied at once instead of waiting for its expiry.
///
/// ```
/// use std::collections::{BTreeMap, BTreeSet};
/// use approvals_core::tally::feasible;
/// use approvals_core::{Context, Factor, Principal, Requirement};
/// let req = Requirement::new("r").factor(Factor::group("owners", 1));
/// let ctx = Context::new(Principal::agent("bot")).on_behalf_of(Principal::human("dana"));
/// let owners: BTreeSet<String> = ["owners".to_string()].into();
/// let only_dana = BTreeMap::from([("dana".to_string(), owners.clone())]);
/// assert!(feasible(&req, &ctx, &only_dana).is_err());
/// let with_alice = BTreeMap::from([("dana".to_string(), owners.clone()), ("alice".to_string(), owners)]);
/// assert!(feasible(&req, &ctx, &with_alice).is_ok());
/// ```
pub fn feasible(
    requirement: &Requirement,
    context: &Context,
    candidates: &std::collections::BTreeMap<String, BTreeSet<String>>,
) -> Result<(), String> {
    let excluded: Vec<String> = candidates
        .keys()
        .filter_map(|id| context.role_of(id).map(|role| format!("{id} ({role})")))
        .collect();
    let people: Vec<(&str, &BTreeSet<String>)> = candidates
        .iter()
        .filter(|(id, _)| context.role_of(id).is_none())
        .map(|(id, g)| (id.as_str(), g))
        .collect();
    let (slots, owners) = matching(requirement, &people);
    if owners.iter().all(Option::is_some) {
        return Ok(());
    }
    let short: Vec<String> = requirement
        .factors
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            slots
                .iter()
                .zip(&owners)
                .any(|(f, o)| f == i && o.is_none())
        })
        .map(|(_, f)| {
            let eligible: Vec<&str> = people
                .iter()
                .filter(|(id, g)| f.admits(id, g))
                .map(|(id, _)| *id)
                .collect();
            let who = if eligible.is_empty() {
                "nobody".to_owned()
            } else {
                eligible.join(", ")
            };
            format!("{f} (eligible: {who})")
        })
        .collect();
    let mut reason = format!(
        "rule `{}` can never be approved: not enough distinct eligible people for {}",
        requirement.rule,
        short.join(" and ")
    );
    if !excluded.is_empty() {
        reason.push_str(&format!("; excluded: {}", excluded.join(", ")));
    }
    Err(reason)
}

pub(crate) fn augment(
    person: usize,
    admits: &dyn Fn(usize, usize) -> bool,
    slot_owner: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for slot in 0..slot_owner.len() {
        if visited[slot] || !admits(person, slot) {
            continue;
        }
        visited[slot] = true;
        let free = match slot_owner[slot] {
            None => true,
            Some(other) => augment(other, admits, slot_owner, visited),
        };
        if free {
            slot_owner[slot] = Some(person);
            return true;
        }
    }
    false
}

/// The progress of a pending request (who fills what, what is still needed).
pub fn progress(request: &ApprovalRequest) -> Progress {
    let approvals: Vec<&RecordedReview> = request
        .reviews
        .iter()
        .filter(|r| r.review.decision == ReviewDecision::Approve)
        .filter(|r| counts(&request.requirement, &request.context, r))
        .collect();
    assign(&request.requirement, &approvals)
}

/// Who could still move a pending request forward by approving it now: of `candidates`
/// (principal id and directory groups), those the rules would admit and whose approval would
/// fill a place no one else fills yet. The answer comes from the same rules as a real review
/// (self-approval, eligibility, one review each, distinct people per factor).
pub fn may_still_approve<'a>(
    request: &ApprovalRequest,
    candidates: impl IntoIterator<Item = (&'a str, BTreeSet<String>)>,
    now: Timestamp,
) -> Vec<String> {
    if !request.is_pending() {
        return Vec::new();
    }
    let filled = progress(request).approvers().len();
    let mut out = Vec::new();
    for (id, groups) in candidates {
        let review = crate::request::Review::approve(request, Principal::human(id), now);
        let recorded = RecordedReview { review, groups };
        if admit(request, &recorded, now).is_err() {
            continue;
        }
        let mut after = request.clone();
        after.reviews.push(recorded);
        if progress(&after).approvers().len() > filled {
            out.push(id.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

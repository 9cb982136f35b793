//! The rules of approval, in one place.
//!
//! Everything here is pure: no I/O, no clock, no locks. Every [`Store`](crate::Store) calls
//! these functions inside its own transaction, so no backend re-implements a rule:
//!
//! 1. A reviewer who is the requester or the on_behalf_of principal never counts.
//! 2. A reviewer counts only if eligible for a factor, judged by the groups recorded with the
//!    review (looked up by the gate at the time of review).
//! 3. One review per reviewer; one person fills at most one factor. Factors are filled by a
//!    maximum bipartite matching, so the outcome does not depend on the order of arrival.
//! 4. Any eligible Deny ends the request as Denied; Approved when every factor is filled.
//! 5. A review whose digest differs from the request's is refused.
//! 6. After expiry nothing can approve: the request is Expired. Reviews after a final state
//!    are refused.
//! 7. An approved request yields one permit ([`start`]); the body runs at most once.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::Digest;
use crate::clock::Timestamp;
use crate::grant::{GrantRefusal, GrantTerms};
use crate::policy::{Factor, Requirement};
use crate::principal::{Context, Principal, SelfRole, id_key};
use crate::request::{
    ApprovalRequest, Decision, Execution, RecordedReview, RequestState, ReviewDecision,
};

/// Why a review was refused. Refused reviews change nothing and are audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// The reviewer is the requester or acts as the principal the request is for.
    #[error("self-approval: {reviewer} is {role}, and may not review it")]
    SelfApproval {
        /// The reviewer's id.
        reviewer: String,
        /// Which side of the request they are on.
        role: SelfRole,
    },
    /// The reviewer is not eligible for any factor of the requirement.
    #[error("{reviewer} is not eligible to review this request (needs {needed})")]
    NotEligible {
        /// The reviewer's id.
        reviewer: String,
        /// What the requirement asks for, in words.
        needed: String,
    },
    /// The reviewer already reviewed this request.
    #[error("{reviewer} has already reviewed this request")]
    Duplicate {
        /// The reviewer's id.
        reviewer: String,
    },
    /// The review approves a different call than the one requested.
    #[error("the review is for digest {got}, the request is for {expected}")]
    DigestMismatch {
        /// The request's digest.
        expected: Digest,
        /// The digest in the review.
        got: Digest,
    },
    /// The request was already decided.
    #[error("the request is already {decision}")]
    AlreadyDecided {
        /// `approved`, `denied`, `expired` or `cancelled`.
        decision: String,
    },
    /// The request expired before the review arrived.
    #[error("the request expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
    },
    /// The review asked for a standing grant the policy does not allow.
    #[error("{refusal}")]
    Grant {
        /// Why the grant was refused.
        refusal: GrantRefusal,
    },
}

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
fn in_review_order(mut who: Vec<Principal>, reviews: &[RecordedReview]) -> Vec<Principal> {
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
    /// The expiry passed with no decision.
    Expired,
}

/// Whether a reviewer counts at all: not a party to the request, eligible for some factor.
fn counts(requirement: &Requirement, context: &Context, r: &RecordedReview) -> bool {
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

    if let Some(d) = counted
        .iter()
        .find(|r| r.review.decision == ReviewDecision::Deny)
    {
        return Tally::Denied {
            by: d.review.reviewer.clone(),
            reason: d.review.comment.clone(),
            at: d.review.at,
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
fn assign(requirement: &Requirement, approvals: &[&RecordedReview]) -> Progress {
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
fn matching(
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

fn augment(
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

/// Checks whether `review` may be applied to `request` at `now`, without changing anything.
pub fn admit(
    request: &ApprovalRequest,
    review: &RecordedReview,
    now: Timestamp,
) -> Result<(), Refusal> {
    let r = &review.review;
    if let Some(d) = request.decision() {
        return Err(Refusal::AlreadyDecided {
            decision: d.word().to_owned(),
        });
    }
    if now >= request.expires_at || r.at >= request.expires_at {
        return Err(Refusal::Expired {
            expires_at: request.expires_at,
        });
    }
    if r.digest != request.action.digest {
        return Err(Refusal::DigestMismatch {
            expected: request.action.digest,
            got: r.digest,
        });
    }
    if let Some(role) = request.context.is_party(&r.reviewer) {
        return Err(Refusal::SelfApproval {
            reviewer: r.reviewer.id.clone(),
            role,
        });
    }
    let req = &request.requirement;
    if !req
        .factors
        .iter()
        .any(|f| f.admits(&r.reviewer.id, &review.groups))
    {
        let needed: Vec<String> = req.factors.iter().map(ToString::to_string).collect();
        return Err(Refusal::NotEligible {
            reviewer: r.reviewer.id.clone(),
            needed: needed.join(" and "),
        });
    }
    if request
        .reviews
        .iter()
        .any(|prior| prior.review.reviewer.same_party(&r.reviewer))
    {
        return Err(Refusal::Duplicate {
            reviewer: r.reviewer.id.clone(),
        });
    }
    if let Some(terms) = &r.grant {
        if r.decision != ReviewDecision::Approve {
            return Err(Refusal::Grant {
                refusal: GrantRefusal::OnDenial,
            });
        }
        terms
            .within(&req.grants)
            .map_err(|refusal| Refusal::Grant { refusal })?;
    }
    Ok(())
}

/// The standing grant an approved request carries: issued only if every approver whose
/// approval filled a factor asked for one, with the tightest terms among them (shortest
/// duration, fewest uses, every condition joined with `&&`). `None` otherwise.
pub fn grant_terms(request: &ApprovalRequest) -> Option<GrantTerms> {
    let Some(Decision::Approved { by, .. }) = request.decision() else {
        return None;
    };
    let mut terms: Option<GrantTerms> = None;
    for approver in by {
        let asked = request
            .reviews
            .iter()
            .find(|r| r.review.reviewer.same_party(approver))?
            .review
            .grant
            .as_ref()?;
        terms = Some(match terms {
            None => asked.clone(),
            Some(t) => GrantTerms {
                duration: t.duration.min(asked.duration),
                uses: t.uses.min(asked.uses),
                when: match (t.when, &asked.when) {
                    (None, w) => w.clone(),
                    (w, None) => w,
                    (Some(a), Some(b)) if a == *b => Some(a),
                    (Some(a), Some(b)) => Some(format!("({a}) && ({b})")),
                },
            },
        });
    }
    terms.filter(|t| t.within(&request.requirement.grants).is_ok())
}

/// Fires every escalation step that is due at `now`: returns their indices. Only the call
/// that moves `request.escalated` fires a step, so racing waiters notify once.
pub fn escalate(request: &mut ApprovalRequest, now: Timestamp) -> Vec<usize> {
    let mut fired = Vec::new();
    while request.is_pending() && now < request.expires_at {
        match request.next_escalation() {
            Some(at) if at <= now => {
                fired.push(request.escalated as usize);
                request.escalated += 1;
            }
            _ => break,
        }
    }
    if !fired.is_empty() {
        request.version += 1;
    }
    fired
}

/// Sends the reminder due at `now`, if any: returns its number (from 1). Reminders missed
/// while nobody was running are not sent in a burst: one is sent, and the count catches up.
pub fn remind(request: &mut ApprovalRequest, now: Timestamp) -> Option<u32> {
    if !request.is_pending() || now >= request.expires_at {
        return None;
    }
    request.next_reminder().filter(|at| *at <= now)?;
    let r = request.requirement.reminders?;
    let elapsed = now.duration_since(request.created_at);
    let periods =
        u32::try_from(elapsed.as_millis() / r.every.as_millis().max(1)).unwrap_or(u32::MAX);
    let caught_up = r.max.map_or(periods, |m| periods.min(m));
    request.reminded = caught_up.max(request.reminded + 1);
    request.version += 1;
    Some(request.reminded)
}

/// What applying a review did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `Ok` if the review was accepted, else why it was refused.
    pub verdict: Result<(), Refusal>,
    /// The decision this call made final, if it made one (an approval completing the
    /// requirement, a denial, or an expiry discovered on the way).
    pub decided: Option<Decision>,
}

/// Applies `review` to `request`: admits it or refuses it, records it, and re-tallies.
///
/// Bumps `request.version` whenever the request changed; a store persists the request and
/// wakes waiters exactly when the version moved.
pub fn apply_review(
    request: &mut ApprovalRequest,
    review: RecordedReview,
    now: Timestamp,
) -> Applied {
    if let Err(refusal) = admit(request, &review, now) {
        // A review that arrives after expiry also records the expiry.
        let decided = match refusal {
            Refusal::Expired { .. } => expire(request, now),
            _ => None,
        };
        return Applied {
            verdict: Err(refusal),
            decided,
        };
    }
    request.reviews.push(review);
    request.version += 1;
    let decided = match tally(
        &request.requirement,
        &request.context,
        &request.reviews,
        request.expires_at,
        now,
    ) {
        Tally::Pending(_) => None,
        Tally::Approved(progress) => Some(Decision::Approved {
            at: now,
            by: in_review_order(progress.approvers(), &request.reviews),
        }),
        Tally::Denied { by, reason, .. } => Some(Decision::Denied {
            at: now,
            by,
            reason,
        }),
        Tally::Expired => Some(Decision::Expired { at: now }),
    };
    if let Some(d) = &decided {
        request.state = RequestState::Decided(d.clone());
    }
    Applied {
        verdict: Ok(()),
        decided,
    }
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

/// Marks a pending request Expired if `now` is at or past its expiry.
pub fn expire(request: &mut ApprovalRequest, now: Timestamp) -> Option<Decision> {
    if !request.is_pending() || now < request.expires_at {
        return None;
    }
    let d = Decision::Expired { at: now };
    request.state = RequestState::Decided(d.clone());
    request.version += 1;
    Some(d)
}

/// Cancels a request that is pending, or approved but not started.
pub fn cancel(
    request: &mut ApprovalRequest,
    by: Option<Principal>,
    reason: &str,
    now: Timestamp,
) -> Option<Decision> {
    let cancellable = match &request.state {
        RequestState::Pending => true,
        RequestState::Decided(Decision::Approved { .. }) => {
            request.execution == Execution::NotStarted
        }
        RequestState::Decided(_) => false,
    };
    if !cancellable {
        return None;
    }
    let d = Decision::Cancelled {
        at: now,
        by,
        reason: reason.to_owned(),
    };
    request.state = RequestState::Decided(d.clone());
    request.version += 1;
    Some(d)
}

/// Why a permit was not granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PermitRefusal {
    /// The request is not approved.
    #[error("the request is not approved")]
    NotApproved,
    /// The one permit was already taken: the body has run or is running elsewhere.
    #[error("the approved call already ran (or is running) under this request")]
    AlreadyUsed,
}

/// Takes the one permit of an approved request (rule 7).
pub fn start(request: &mut ApprovalRequest, now: Timestamp) -> Result<(), PermitRefusal> {
    if !matches!(
        request.state,
        RequestState::Decided(Decision::Approved { .. })
    ) {
        return Err(PermitRefusal::NotApproved);
    }
    if request.execution != Execution::NotStarted {
        return Err(PermitRefusal::AlreadyUsed);
    }
    request.execution = Execution::Started { at: now };
    request.version += 1;
    Ok(())
}

/// Records that the body finished.
pub fn finish(request: &mut ApprovalRequest, ok: bool, now: Timestamp) {
    if let Execution::Started { at } = request.execution {
        request.execution = Execution::Finished {
            started_at: at,
            at: now,
            ok,
        };
        request.version += 1;
    }
}

/// Whether `fresh`, a new call, is the same call as `existing` made under the same terms:
/// the same digest (action, policy, arguments), the same parties (requester and
/// `on_behalf_of`, compared as [`same_id`](crate::principal::same_id) compares ids), the
/// same labels, and the same requirement (rule, factors and policy version). Only then may
/// the approvals given to `existing` serve `fresh`: never to a call judged under a stronger
/// requirement (`env=prod` after an approval for `env=staging`), and never to a call made
/// on behalf of one of its approvers.
pub fn same_call(existing: &ApprovalRequest, fresh: &ApprovalRequest) -> bool {
    let (a, b) = (&existing.context, &fresh.context);
    let same_behalf = match (&a.on_behalf_of, &b.on_behalf_of) {
        (None, None) => true,
        (Some(x), Some(y)) => x.same_party(y),
        _ => false,
    };
    existing.action.digest == fresh.action.digest
        && a.requester.same_party(&b.requester)
        && same_behalf
        && a.labels == b.labels
        && same_terms(&existing.requirement, &fresh.requirement)
}

/// Whether two requirements are the same terms of approval: rule, factors, policy version.
fn same_terms(a: &Requirement, b: &Requirement) -> bool {
    a.rule == b.rule && a.factors == b.factors && a.policy_version == b.policy_version
}

/// Whether an identical call may join `request` in its present state: while it is pending;
/// approved and not yet finished (its permit unused, or taken by a body that is running or
/// whose process died mid-call, "in doubt", which must never be run again automatically);
/// or decided against without any caller having been told yet.
pub fn joinable(request: &ApprovalRequest) -> bool {
    match &request.state {
        RequestState::Pending => true,
        RequestState::Decided(Decision::Approved { .. }) => {
            !matches!(request.execution, Execution::Finished { .. })
        }
        RequestState::Decided(_) => !request.outcome_reported,
    }
}

/// Whether the new call `fresh` re-attaches to `existing` instead of asking again: it is the
/// [`same_call`] and `existing` is [`joinable`].
pub fn attachable(existing: &ApprovalRequest, fresh: &ApprovalRequest) -> bool {
    same_call(existing, fresh) && joinable(existing)
}

/// Records that the caller of a request decided against (denied, expired, cancelled) has
/// been told: from now on the identical call asks again instead of joining it. Changes
/// nothing for a request that is pending or approved, or already reported.
pub fn report(request: &mut ApprovalRequest) {
    let negative = matches!(
        request.state,
        RequestState::Decided(
            Decision::Denied { .. } | Decision::Expired { .. } | Decision::Cancelled { .. }
        )
    );
    if negative && !request.outcome_reported {
        request.outcome_reported = true;
        request.version += 1;
    }
}

/// Cancels a request whose caller is being told right now that it failed to start (its
/// request could not be audited or delivered): the next identical call asks again instead
/// of re-attaching to learn of the cancellation.
pub fn abandon(request: &mut ApprovalRequest, reason: &str, now: Timestamp) -> Option<Decision> {
    let d = cancel(request, None, reason, now)?;
    request.outcome_reported = true;
    Some(d)
}

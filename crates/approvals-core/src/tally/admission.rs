//! Review admission: whether a review may count, and applying it.

use serde::{Deserialize, Serialize};

use crate::action::Digest;
use crate::clock::Timestamp;
use crate::grant::GrantRefusal;
use crate::principal::SelfRole;
use crate::request::{ApprovalRequest, Decision, RecordedReview, RequestState, ReviewDecision};

use super::lifecycle::expire;
use super::quorum::{Tally, in_review_order, tally};

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
    /// A request for changes did not say what to change.
    #[error("asking for changes needs a message saying what to change")]
    NoChangesGiven,
    /// The review proposes an edit the rules refuse (see
    /// [`EditRefusal`](super::edit::EditRefusal)); the request stays open.
    #[error("{refusal}")]
    Edit {
        /// Why the edit was refused.
        refusal: super::edit::EditRefusal,
    },
    /// The review asked for a standing grant the policy does not allow.
    #[error("{refusal}")]
    Grant {
        /// Why the grant was refused.
        refusal: GrantRefusal,
    },
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
            reviewer: r.reviewer.id.to_string(),
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
            reviewer: r.reviewer.id.to_string(),
            needed: needed.join(" and "),
        });
    }
    if request
        .reviews
        .iter()
        .any(|prior| prior.review.reviewer.same_party(&r.reviewer))
    {
        return Err(Refusal::Duplicate {
            reviewer: r.reviewer.id.to_string(),
        });
    }
    if r.decision == ReviewDecision::RequestChanges
        && r.comment.as_deref().is_none_or(|c| c.trim().is_empty())
    {
        return Err(Refusal::NoChangesGiven);
    }
    // An edit is a new call: it is proposed through `edit::check`, never tallied as an
    // approval of this one.
    if r.set.is_some() {
        return Err(Refusal::Edit {
            refusal: super::edit::EditRefusal::NotHere,
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
        Tally::ChangesRequested { by, message, .. } => Some(Decision::ChangesRequested {
            at: now,
            by,
            message,
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

//! A request's life after it is made: delivery, escalation and reminders, expiry and
//! cancellation, the one permit and the outcome, and which new call may join it.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::policy::Requirement;
use crate::principal::Principal;
use crate::request::{ApprovalRequest, Decision, Delivery, Execution, RequestState};

/// Records that a channel delivered the request, so the channel can show its outcome later.
/// Nothing else changes; a delivery is recorded in every state (a quick reviewer on another
/// channel may have decided it meanwhile).
pub fn record_delivery(request: &mut ApprovalRequest, delivery: Delivery) {
    request.deliveries.push(delivery);
    request.version += 1;
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
pub(crate) fn same_terms(a: &Requirement, b: &Requirement) -> bool {
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

/// Records that the caller of a request decided against (denied, sent back for changes,
/// expired, cancelled) has
/// been told: from now on the identical call asks again instead of joining it. Changes
/// nothing for a request that is pending or approved, or already reported.
pub fn report(request: &mut ApprovalRequest) {
    let negative = matches!(
        request.state,
        RequestState::Decided(
            Decision::Denied { .. }
                | Decision::ChangesRequested { .. }
                | Decision::Edited { .. }
                | Decision::Expired { .. }
                | Decision::Cancelled { .. }
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

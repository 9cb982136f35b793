//! A reviewer approves a call with changed arguments: the edit becomes a request of its own.
//!
//! The rules are in [`tally::edit`]; this is their I/O, in an order that fails closed:
//!
//! 1. check the proposal against the original request (who, which arguments, what kinds);
//! 2. judge the edited call with the policy (a denial refuses the edit; the original stays
//!    open);
//! 3. make the edited call's request, carrying [`EditOf`] (audited as `requested`);
//! 4. decide the original as [`Decision::Edited`]: if it was decided meanwhile, the edit is
//!    withdrawn and the proposal refused;
//! 5. record the proposer's approval of the edit, which may complete it;
//! 6. deliver the edit on its channels, if it still needs approvals.
//!
//! A caller waiting on the original wakes at step 4 and follows the edit.

use super::Gate;
use crate::audit::{ActionRef, AuditEvent, EventKind};
use crate::error::{StoreError, SubmitError};
use crate::policy::Verdict;
use crate::request::{ApprovalRequest, EditOf, RecordedReview, Review};
use crate::tally::Refusal;
use crate::tally::edit::{self, EditRefusal};

impl Gate {
    /// [`Gate::submit_review`] for a review that approves with new values (`review.set`).
    /// Returns the edited call's request.
    pub(super) async fn propose_edit(
        &self,
        current: ApprovalRequest,
        recorded: RecordedReview,
    ) -> Result<ApprovalRequest, SubmitError> {
        let inner = &self.inner;
        let review = &recorded.review;
        let now = inner.clock.now();
        let changes = match edit::check(&current, &recorded, now) {
            Ok(c) => c,
            Err(refusal) => return Err(self.refuse_edit(&current, review, refusal).await),
        };
        let set = changes
            .iter()
            .map(|c| (c.arg.clone(), c.to.clone()))
            .collect();
        let action = match current.action.with_args(&set) {
            Ok(a) => a,
            Err(e) => {
                let refusal = EditRefusal::Invalid { message: e.message };
                return Err(self.refuse_edit(&current, review, refusal.into()).await);
            }
        };
        // Judged afresh, as any call is: an edit into a denied call is denied, and what the
        // policy asks of the edited call is added to what the original needed.
        let judged = inner
            .policy
            .evaluate_with_shadow(&action, &current.context)
            .await;
        // A rule in shadow mode is judged for the edited call as for any call, and recorded.
        if let Ok((_, Some(shadow))) = &judged {
            let (kind, policy_version) = super::authorize::shadow_record(shadow);
            let event = AuditEvent {
                at: now,
                request_id: None,
                action: ActionRef::from(&action),
                actor: Some(current.context.requester.clone()),
                policy_version,
                kind,
            };
            self.audit(event).await?;
        }
        let judged = match judged.map(|(verdict, _)| verdict) {
            Ok(Verdict::Deny { rule, reason, .. }) => {
                let refusal = EditRefusal::Denied {
                    rule: rule.to_string(),
                    reason,
                };
                return Err(self.refuse_edit(&current, review, refusal.into()).await);
            }
            Ok(Verdict::Allow { .. }) => None,
            Ok(Verdict::RequireApproval(r)) => Some(r),
            Err(e) => {
                let refusal = EditRefusal::Invalid {
                    message: format!("the policy could not judge it: {e}"),
                };
                return Err(self.refuse_edit(&current, review, refusal.into()).await);
            }
        };
        let requirement = edit::requirement(&current.requirement, judged.as_deref());
        let problem = super::authorize::check_requirement(&action, &requirement)
            .map_err(|e| e.to_string())
            .and_then(|()| self.feasible(&requirement, &current.context));
        let channels = match problem.and_then(|()| {
            self.channels_for(&action, &requirement)
                .map_err(|e| e.to_string())
        }) {
            Ok(c) => c,
            Err(reason) => {
                let refusal = EditRefusal::Infeasible { reason };
                return Err(self.refuse_edit(&current, review, refusal.into()).await);
            }
        };

        // The edited call's request: the original's parties, its own digest and requirement,
        // no later expiry than the original's.
        let mut fresh = ApprovalRequest::new(action, current.context.clone(), requirement, now);
        fresh.expires_at = fresh.expires_at.min(current.expires_at);
        fresh.callback = current.callback.clone();
        fresh.edit_of = Some(Box::new(EditOf {
            original: current.id,
            original_digest: current.action.digest,
            by: review.reviewer.clone(),
            changes: changes.clone(),
            at: now,
        }));
        let made = {
            let _order = self.order(&fresh).await;
            let attach = inner.store.create_or_attach(fresh).await?;
            let r = &attach.request;
            let kind = if attach.created {
                super::authorize::requested(r)
            } else {
                EventKind::Attached
            };
            let proposer = Some(review.reviewer.clone());
            self.audit(self.event(r, proposer, kind)).await?;
            attach
        };
        let edit_id = made.request.id;

        // The original is decided as edited; if someone decided it first, the edit goes.
        let by = review.reviewer.clone();
        let (_, superseded) = self
            .decide(current.id, |r, now| {
                edit::supersede(r, &by, edit_id, &changes, now)
            })
            .await
            .map_err(into_submit)?;
        if superseded.is_none() {
            if made.created {
                self.cancel_quietly(edit_id, "the original request was decided first")
                    .await;
            }
            let decision = inner
                .store
                .get(current.id)
                .await?
                .and_then(|r| r.decision().map(|d| d.word().to_owned()))
                .unwrap_or_else(|| "decided".into());
            return Err(SubmitError::Refused(Refusal::AlreadyDecided { decision }));
        }

        // The proposer's approval is the first of the edit's own.
        let approval = Review {
            request_id: edit_id,
            digest: made.request.action.digest,
            set: None,
            ..review.clone()
        };
        let request = match self.submit_review(approval).await {
            Ok(r) => r,
            // Already approved by them (an identical edit joined), or decided meanwhile: the
            // edit stands as it is.
            Err(SubmitError::Refused(_)) => inner
                .store
                .get(edit_id)
                .await?
                .ok_or(StoreError::UnknownRequest(edit_id))?,
            Err(e) => return Err(e),
        };
        // Approved by the proposal alone: the original's channels already show the edit.
        if !made.created || !request.is_pending() {
            return Ok(request);
        }
        match self.announce(request, &channels).await {
            Ok(r) => Ok(r),
            Err((e, reason)) => {
                self.cancel_quietly(edit_id, &reason).await;
                Err(into_submit(e))
            }
        }
    }

    /// Audits a refused proposal on the original request and returns the refusal. A
    /// proposal that arrives after expiry records the expiry too.
    async fn refuse_edit(
        &self,
        current: &ApprovalRequest,
        review: &Review,
        refusal: Refusal,
    ) -> SubmitError {
        if matches!(refusal, Refusal::Expired { .. }) {
            if let Err(e) = self.expire(current.id).await {
                return into_submit(e);
            }
        }
        let kind = EventKind::ReviewRefused {
            review: Box::new(review.clone()),
            refusal: refusal.clone(),
        };
        let _order = self.order(current).await;
        let reviewer = Some(review.reviewer.clone());
        if let Err(e) = self.audit(self.event(current, reviewer, kind)).await {
            return SubmitError::Audit(e);
        }
        SubmitError::Refused(refusal)
    }
}

/// A gate error met while proposing an edit, as a review's error.
fn into_submit(e: crate::Error) -> SubmitError {
    match e {
        crate::Error::Store(e) => SubmitError::Store(e),
        crate::Error::Audit(e) => SubmitError::Audit(e),
        other => SubmitError::Invalid {
            message: other.to_string(),
        },
    }
}

//! The only way a review gets in.

use super::Gate;
use crate::audit::EventKind;
use crate::clock::Timestamp;
use crate::error::{StoreError, SubmitError};
use crate::grant::{Grant, GrantId, GrantRefusal, GrantTerms};
use crate::request::{ApprovalRequest, RecordedReview, RequestId, Review};
use crate::tally::{self, Applied, Refusal};

/// The most bytes of a review's comment.
pub const MAX_COMMENT_BYTES: usize = 4096;

impl Gate {
    /// Records an attempt to review `request_id` that could not be authenticated (an unknown
    /// chat user, a bad, stale or replayed signature). Nothing about the request changes.
    ///
    /// Anyone can make such an attempt, so what is recorded is bounded: the claimed name and
    /// the reason are cut to a few hundred characters, and per request and channel at most
    /// [`UNAUTHENTICATED_PER_MINUTE`](super::UNAUTHENTICATED_PER_MINUTE) attempts a minute
    /// are recorded one by one; the rest are counted, and the next one recorded says how
    /// many were left out (`suppressed`).
    ///
    /// Returns `Ok(false)` when nothing was recorded: no such request, or a repeat counted
    /// into the next record.
    pub async fn record_unauthenticated(
        &self,
        request_id: RequestId,
        channel: &str,
        claimed: Option<&str>,
        reason: &str,
    ) -> Result<bool, SubmitError> {
        let Some(request) = self.inner.store.get(request_id).await? else {
            return Ok(false);
        };
        let now = self.inner.clock.now();
        let Some(suppressed) = self.inner.unauthenticated.admit(request_id, channel, now) else {
            return Ok(false);
        };
        let kind = EventKind::ReviewUnauthenticated {
            channel: bounded(channel, 32),
            claimed: claimed.map(|c| bounded(c, 128)),
            reason: bounded(reason, 512),
            suppressed,
        };
        let _order = self.order(&request).await;
        self.audit(self.event(&request, None, kind)).await?;
        Ok(true)
    }

    /// Submits a review. The reviewer's groups are looked up in the gate's directory now, and
    /// core's rules decide whether it counts. Accepted and refused reviews are both audited.
    ///
    /// Returns the request as it stands afterwards, or why the review was refused.
    pub async fn submit_review(&self, mut review: Review) -> Result<ApprovalRequest, SubmitError> {
        let inner = &self.inner;
        if let Some(c) = &review.comment {
            if c.len() > MAX_COMMENT_BYTES {
                return Err(SubmitError::Invalid {
                    message: format!(
                        "the comment is {} bytes; the most is {MAX_COMMENT_BYTES}",
                        c.len()
                    ),
                });
            }
        }
        // The reviewer as the directory names them: another spelling or identity of a person
        // is that person, for eligibility and for the self-approval rule alike. A name the
        // directory cannot tell apart stays as given and counts for nobody's group.
        if let Ok(Some(person)) =
            super::authorize::resolve_party(&*inner.directory, "reviewer", &review.reviewer)
        {
            review.reviewer = person;
        }
        let current = inner
            .store
            .get(review.request_id)
            .await?
            .ok_or(StoreError::UnknownRequest(review.request_id))?;
        let groups = inner.directory.groups_of(&review.reviewer.id);
        let recorded = RecordedReview {
            review: review.clone(),
            groups,
        };
        if review.set.is_some() {
            return Box::pin(self.propose_edit(current, recorded)).await;
        }
        // A grant's condition must be one the policy engine understands before it is kept.
        let bad_condition = review
            .grant
            .as_ref()
            .and_then(|g| g.when.as_deref())
            .and_then(|w| inner.policy.check_condition(w).err())
            .map(|e| Refusal::Grant {
                refusal: GrantRefusal::BadCondition {
                    message: e.to_string(),
                },
            });
        let (request, applied) = {
            let _order = self.order(&current).await;
            let now = inner.clock.now();
            let mut applied: Option<Applied> = None;
            // The review's record and, if it decided the request, the decision's, committed
            // with the change.
            let request = self
                .update_recorded::<SubmitError>(review.request_id, &mut |r| {
                    let a = match &bad_condition {
                        Some(refusal) => Applied {
                            verdict: Err(refusal.clone()),
                            decided: None,
                        },
                        None => tally::apply_review(r, recorded.clone(), now),
                    };
                    let kind = match &a.verdict {
                        Ok(()) => EventKind::ReviewAccepted {
                            review: Box::new(review.clone()),
                        },
                        Err(refusal) => EventKind::ReviewRefused {
                            review: Box::new(review.clone()),
                            refusal: refusal.clone(),
                        },
                    };
                    let mut records = vec![self.event(r, Some(review.reviewer.clone()), kind)];
                    records.extend(a.decided.iter().map(|d| self.decision_event(r, d)));
                    applied = Some(a);
                    records
                })
                .await?;
            let applied = applied.ok_or_else(|| StoreError::Invariant {
                backend: "store".into(),
                message: "the store did not apply the review".into(),
            })?;
            if let Some(d) = &applied.decided {
                crate::telemetry::decided(&request, d);
                if let Some(terms) = tally::grant_terms(&request) {
                    self.issue_grant(&request, terms, now).await?;
                }
            }
            (request, applied)
        };
        if applied.verdict.is_ok() {
            for delivery in &request.deliveries {
                for a in self.approvers_named(&delivery.channel) {
                    if let Err(e) = a.reviewed(&request, &recorded, delivery).await {
                        tracing::warn!(channel = %delivery.channel, error = %e,
                            "could not show the review on the channel");
                    }
                }
            }
        }
        if let Some(d) = &applied.decided {
            self.show_decision(&request, d).await;
        }
        applied.verdict.map_err(SubmitError::Refused)?;
        Ok(request)
    }
}

impl Gate {
    /// Issues the standing grant an approval carried, and audits it.
    async fn issue_grant(
        &self,
        request: &ApprovalRequest,
        terms: GrantTerms,
        now: Timestamp,
    ) -> Result<(), SubmitError> {
        let by = match request.decision() {
            Some(crate::Decision::Approved { by, .. }) => by.clone(),
            _ => return Ok(()),
        };
        let grant = Grant {
            id: GrantId::generate(),
            requester: request.context.requester.clone(),
            on_behalf_of: request.context.on_behalf_of.clone(),
            action: request.action.name.to_string(),
            policy: request.action.policy.to_string(),
            when: terms.when,
            granted_by: by,
            from_request: request.id,
            from_digest: request.action.digest,
            policy_version: request.requirement.policy_version.to_string(),
            created_at: now,
            expires_at: now.saturating_add(terms.duration),
            max_uses: terms.uses,
            uses: 0,
            revoked: None,
        };
        self.inner.store.insert_grant(grant.clone()).await?;
        let kind = EventKind::GrantIssued {
            grant: Box::new(grant),
        };
        self.audit(self.event(request, None, kind)).await?;
        Ok(())
    }
}

/// `s` cut to at most `max` characters, marking the cut and the original length.
fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}… ({} bytes in all)", s.len())
}

//! The only way a review gets in.

use super::Gate;
use crate::audit::EventKind;
use crate::error::{StoreError, SubmitError};
use crate::request::{ApprovalRequest, RecordedReview, Review};
use crate::tally::{self, Applied};

impl Gate {
    /// Submits a review. The reviewer's groups are looked up in the gate's directory now, and
    /// core's rules decide whether it counts. Accepted and refused reviews are both audited.
    ///
    /// Returns the request as it stands afterwards, or why the review was refused.
    pub async fn submit_review(&self, review: Review) -> Result<ApprovalRequest, SubmitError> {
        let inner = &self.inner;
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
        let (request, applied) = {
            let _order = self.order(&current).await;
            let now = inner.clock.now();
            let mut applied: Option<Applied> = None;
            let request = inner
                .store
                .update(review.request_id, &mut |r| {
                    applied = Some(tally::apply_review(r, recorded.clone(), now));
                })
                .await?;
            let applied = applied.ok_or_else(|| StoreError::Backend {
                backend: "store".into(),
                message: "the store did not apply the review".into(),
            })?;
            let kind = match &applied.verdict {
                Ok(()) => EventKind::ReviewAccepted {
                    review: review.clone(),
                },
                Err(refusal) => EventKind::ReviewRefused {
                    review: review.clone(),
                    refusal: refusal.clone(),
                },
            };
            let reviewer = Some(review.reviewer.clone());
            self.audit(self.event(&request, reviewer, kind)).await?;
            if let Some(d) = &applied.decided {
                self.audit_decision(&request, d).await?;
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

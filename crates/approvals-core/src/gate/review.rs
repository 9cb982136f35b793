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
        let groups = inner.directory.groups_of(&review.reviewer.id);
        let recorded = RecordedReview {
            review: review.clone(),
            groups,
        };
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
        let reviewer = Some(review.reviewer.clone());
        match &applied.verdict {
            Ok(()) => {
                let kind = EventKind::ReviewAccepted {
                    review: review.clone(),
                };
                self.audit(self.event(&request, reviewer, kind)).await?;
                for delivery in &request.deliveries {
                    for a in inner
                        .approvers
                        .iter()
                        .filter(|a| a.name() == delivery.channel)
                    {
                        if let Err(e) = a.reviewed(&request, &recorded, delivery).await {
                            tracing::warn!(channel = %delivery.channel, error = %e,
                                "could not show the review on the channel");
                        }
                    }
                }
            }
            Err(refusal) => {
                let kind = EventKind::ReviewRefused {
                    review: review.clone(),
                    refusal: refusal.clone(),
                };
                self.audit(self.event(&request, reviewer, kind)).await?;
            }
        }
        if let Some(d) = &applied.decided {
            self.record_decision(&request, d).await?;
        }
        applied.verdict.map_err(SubmitError::Refused)?;
        Ok(request)
    }
}

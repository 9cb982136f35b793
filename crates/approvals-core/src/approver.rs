//! Channels that take a request to people.

use async_trait::async_trait;

use crate::error::ApproverError;
use crate::gate::Gate;
use crate::request::{ApprovalRequest, Decision, Delivery, RecordedReview};

/// Takes requests to the people who can review them, and shows them the outcome.
///
/// `notify` receives the gate so that channels that are also an inbound path (a terminal
/// prompt, a test's mock handle) can submit the reviews they collect through
/// [`Gate::submit_review`], the only way a review gets in.
#[async_trait]
pub trait Approver: Send + Sync {
    /// The channel's name, as policies refer to it (`slack`, `terminal`, `mock`).
    fn name(&self) -> &str;

    /// Delivers a new request. An error is audited as `notify_failed`; under the
    /// requirement's default [`IfUndelivered::Fail`](crate::IfUndelivered) it fails the call
    /// closed (the request is cancelled and the body does not run), under `Wait` the request
    /// stays open on the channels that did deliver it, if any did.
    async fn notify(
        &self,
        request: &ApprovalRequest,
        gate: &Gate,
    ) -> Result<Delivery, ApproverError>;

    /// A review was accepted (for example, post it as a thread reply).
    async fn reviewed(
        &self,
        _request: &ApprovalRequest,
        _review: &RecordedReview,
        _delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        Ok(())
    }

    /// The request is still waiting: remind the reviewers (reminder `number`, from 1) where it
    /// was delivered. An error is logged; the request keeps waiting.
    async fn remind(
        &self,
        _request: &ApprovalRequest,
        _delivery: &Delivery,
        _number: u32,
    ) -> Result<(), ApproverError> {
        Ok(())
    }

    /// The request was decided; update what reviewers see.
    async fn resolved(
        &self,
        _request: &ApprovalRequest,
        _decision: &Decision,
        _delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        Ok(())
    }
}

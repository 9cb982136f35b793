//! Observers: told of what happens to requests once it is recorded, for what is not a
//! channel (a requester's callback, metrics). An observer cannot change anything.

use async_trait::async_trait;

use crate::request::{ApprovalRequest, Decision};

/// Told of every decision the gate makes, after its audit record is written and the
/// channels have been told. Add one with [`Gate::observe`](crate::Gate::observe).
///
/// A slow observer delays the call that made the decision: send anything slow to the
/// background, as `approvals`' callback sender does.
#[async_trait]
pub trait Observer: Send + Sync {
    /// `request` was decided (approved, denied, expired or cancelled).
    async fn decided(&self, request: &ApprovalRequest, decision: &Decision);
}

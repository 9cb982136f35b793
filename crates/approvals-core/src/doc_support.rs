//! Stand-ins for doc examples of this crate, which cannot depend on the backends.
#![allow(missing_docs)]

use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditReceipt, AuditSink};
use crate::clock::Timestamp;
use crate::error::{AuditError, StoreError};
use crate::grant::{Grant, GrantId};
use crate::request::{ApprovalRequest, RequestId};
use crate::store::{Attach, Change, GrantChange, Store};

#[derive(Debug)]
pub struct NullStore;

fn unsupported() -> StoreError {
    StoreError::Unsupported {
        backend: "null".into(),
        operation: "keeping requests".into(),
    }
}

#[async_trait]
impl Store for NullStore {
    async fn create_or_attach(&self, _: ApprovalRequest) -> Result<Attach, StoreError> {
        Err(unsupported())
    }
    async fn get(&self, _: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
        Ok(None)
    }
    async fn update(&self, id: RequestId, _: Change<'_>) -> Result<ApprovalRequest, StoreError> {
        Err(StoreError::UnknownRequest(id))
    }
    async fn wait_for_change(&self, id: RequestId, _: u64) -> Result<ApprovalRequest, StoreError> {
        Err(StoreError::UnknownRequest(id))
    }
    async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        Ok(Vec::new())
    }
    async fn due(&self, _: Timestamp) -> Result<Vec<RequestId>, StoreError> {
        Ok(Vec::new())
    }
    async fn insert_grant(&self, _: Grant) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn grants_for(&self, _: &str, _: &str, _: &str) -> Result<Vec<Grant>, StoreError> {
        Ok(Vec::new())
    }
    async fn update_grant(&self, id: GrantId, _: GrantChange<'_>) -> Result<Grant, StoreError> {
        Err(StoreError::UnknownGrant(id))
    }
    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        Ok(Vec::new())
    }
}

#[derive(Debug)]
pub struct NullAudit;

#[async_trait]
impl AuditSink for NullAudit {
    async fn append(&self, _: AuditEvent) -> Result<AuditReceipt, AuditError> {
        Ok(AuditReceipt { seq: 0 })
    }
}

/// An audit event for examples and tests: the start of a call to `deploy`.
pub fn sample_event() -> AuditEvent {
    AuditEvent {
        at: Timestamp::from_unix_micros(0),
        request_id: None,
        action: crate::audit::ActionRef {
            name: "deploy".into(),
            policy: "deploys".into(),
            digest: crate::action::Digest([0; 32]),
        },
        actor: None,
        policy_version: "code".into(),
        kind: crate::audit::EventKind::Started,
    }
}

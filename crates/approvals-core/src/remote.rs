//! A gate that judges nothing itself: it asks a central approval service (`approvals
//! serve`), which judges each call under its policy, with its store, audit log and channels.
//! The transport lives in a backend (`approvals::http::RemoteGate`); core only says what it
//! must do.

use std::time::Duration;

use async_trait::async_trait;

use crate::action::Action;
use crate::error::Error;
use crate::gate::{CallOptions, Gate, Permit};
use crate::principal::Context;
use crate::request::RequestId;

/// The service side of a remote gate: judge a call, wait for its decision, take its permit,
/// report its end. Every failure to reach the service is an error naming it
/// ([`Error::Remote`]); the call then fails closed.
#[async_trait]
pub trait Remote: Send + Sync + std::fmt::Debug {
    /// Judges the call as `gate` would, waiting as `options` say; `Ok` is the permit to run
    /// it once.
    async fn authorize(
        &self,
        gate: &Gate,
        action: Action,
        context: Context,
        options: CallOptions,
    ) -> Result<Permit, Error>;

    /// Reports the end of the call run under `id`'s permit.
    async fn finish(&self, id: RequestId, outcome: Result<(), String>) -> Result<(), Error>;

    /// How long one long-poll may hold the service's answer.
    fn poll(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// What a remote gate holds in place of a policy engine, a store and an audit sink: each
/// refuses, since the service does that work.
#[derive(Debug)]
pub(crate) struct Unused;

fn unsupported(operation: &str) -> crate::error::StoreError {
    crate::error::StoreError::Unsupported {
        backend: "remote gate".into(),
        operation: format!("{operation} (ask the approval service)"),
    }
}

#[async_trait]
impl crate::policy::PolicyEngine for Unused {
    async fn evaluate(
        &self,
        action: &Action,
        _: &Context,
    ) -> Result<crate::policy::Verdict, crate::policy::PolicyError> {
        Err(crate::policy::PolicyError::Evaluation {
            policy: action.policy.to_string(),
            message: "a remote gate judges nothing itself; the approval service does".into(),
        })
    }
}

#[async_trait]
impl crate::audit::AuditSink for Unused {
    async fn append(
        &self,
        _: crate::audit::AuditEvent,
    ) -> Result<crate::audit::AuditReceipt, crate::error::AuditError> {
        Err(crate::error::AuditError::new(
            "remote gate",
            "a remote gate keeps no audit log; the approval service does",
        ))
    }
}

#[async_trait]
impl crate::store::Store for Unused {
    async fn create_or_attach(
        &self,
        _: crate::request::ApprovalRequest,
    ) -> Result<crate::store::Attach, crate::error::StoreError> {
        Err(unsupported("making requests"))
    }
    async fn get(
        &self,
        _: RequestId,
    ) -> Result<Option<crate::request::ApprovalRequest>, crate::error::StoreError> {
        Err(unsupported("reading requests"))
    }
    async fn update(
        &self,
        _: RequestId,
        _: crate::store::Change<'_>,
    ) -> Result<crate::request::ApprovalRequest, crate::error::StoreError> {
        Err(unsupported("changing requests"))
    }
    async fn wait_for_change(
        &self,
        _: RequestId,
        _: u64,
    ) -> Result<crate::request::ApprovalRequest, crate::error::StoreError> {
        Err(unsupported("waiting on requests"))
    }
    async fn list_open(
        &self,
    ) -> Result<Vec<crate::request::ApprovalRequest>, crate::error::StoreError> {
        Err(unsupported("listing requests"))
    }
    async fn due(
        &self,
        _: crate::clock::Timestamp,
    ) -> Result<Vec<RequestId>, crate::error::StoreError> {
        Ok(Vec::new())
    }
    async fn insert_grant(&self, _: crate::grant::Grant) -> Result<(), crate::error::StoreError> {
        Err(unsupported("keeping grants"))
    }
    async fn grants_for(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Vec<crate::grant::Grant>, crate::error::StoreError> {
        Err(unsupported("reading grants"))
    }
    async fn update_grant(
        &self,
        _: crate::grant::GrantId,
        _: crate::store::GrantChange<'_>,
    ) -> Result<crate::grant::Grant, crate::error::StoreError> {
        Err(unsupported("changing grants"))
    }
    async fn grants(&self) -> Result<Vec<crate::grant::Grant>, crate::error::StoreError> {
        Err(unsupported("listing grants"))
    }
}

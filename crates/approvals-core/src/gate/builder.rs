//! Putting a gate together.

use std::sync::Arc;

use super::{Gate, Inner};
use crate::approver::Approver;
use crate::audit::AuditSink;
use crate::clock::{Clock, SystemClock};
use crate::directory::{Directory, StaticDirectory};
use crate::policy::PolicyEngine;
use crate::principal::Context;
use crate::store::Store;

/// How many requests can change state at the same moment without waiting on each other.
const ORDER_STRIPES: usize = 64;

/// Builds a [`Gate`]; from [`Gate::builder`].
#[derive(Default)]
pub struct GateBuilder {
    policy: Option<Arc<dyn PolicyEngine>>,
    store: Option<Arc<dyn Store>>,
    audit: Option<Arc<dyn AuditSink>>,
    approvers: Vec<Arc<dyn Approver>>,
    directory: Option<Arc<dyn Directory>>,
    clock: Option<Arc<dyn Clock>>,
    default_context: Option<Context>,
}

/// A gate could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A required part was not given.
    #[error("the gate needs a {0}: call `.{0}(...)` on the builder")]
    Missing(&'static str),
    /// Two approvers share a name, so policies could not tell them apart.
    #[error("two approvers are named `{0}`; approver names must be unique")]
    DuplicateApprover(String),
}

impl GateBuilder {
    /// The policy engine (required).
    pub fn policy(mut self, engine: impl PolicyEngine + 'static) -> Self {
        self.policy = Some(Arc::new(engine));
        self
    }
    /// The policy engine, shared.
    pub fn policy_arc(mut self, engine: Arc<dyn PolicyEngine>) -> Self {
        self.policy = Some(engine);
        self
    }
    /// The store (required).
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }
    /// The store, shared.
    pub fn store_arc(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
    /// The audit sink (required).
    pub fn audit(mut self, sink: impl AuditSink + 'static) -> Self {
        self.audit = Some(Arc::new(sink));
        self
    }
    /// The audit sink, shared.
    pub fn audit_arc(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }
    /// Adds an approver (channel). Requests go to every approver unless the requirement
    /// names channels.
    pub fn approver(mut self, approver: impl Approver + 'static) -> Self {
        self.approvers.push(Arc::new(approver));
        self
    }
    /// The directory of reviewers and groups (default: empty).
    pub fn directory(mut self, directory: impl Directory + 'static) -> Self {
        self.directory = Some(Arc::new(directory));
        self
    }
    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }
    /// The context used for calls made outside any [`crate::scope::with_context`].
    pub fn default_context(mut self, context: Context) -> Self {
        self.default_context = Some(context);
        self
    }

    /// Builds the gate.
    pub fn build(self) -> Result<Gate, BuildError> {
        let mut names = std::collections::BTreeSet::new();
        for a in &self.approvers {
            if !names.insert(a.name().to_owned()) {
                return Err(BuildError::DuplicateApprover(a.name().to_owned()));
            }
        }
        Ok(Gate {
            inner: Arc::new(Inner {
                order: (0..ORDER_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                policy: self.policy.ok_or(BuildError::Missing("policy"))?,
                store: self.store.ok_or(BuildError::Missing("store"))?,
                audit: self.audit.ok_or(BuildError::Missing("audit"))?,
                approvers: self.approvers,
                directory: self
                    .directory
                    .unwrap_or_else(|| Arc::new(StaticDirectory::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                default_context: self.default_context,
            }),
        })
    }
}

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

/// How many calls make their request at once (see `Inner::making`): more than any store
/// writes at once (SQLite has one writer, a Postgres pool a few connections), so the queue
/// costs a store no speed.
const MAKING_AT_ONCE: usize = 64;

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
    skip_policy_check: bool,
    remote: Option<Arc<dyn crate::remote::Remote>>,
    max_expiry: Option<std::time::Duration>,
}

/// A gate could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A required part was not given.
    #[error("the gate needs a {0}: call `.{0}(...)` on the builder")]
    Missing(&'static str),
    /// The policy's conditions read arguments that no function gated by it records.
    #[error(
        "policy conditions read arguments the gated functions do not have (every such call would be denied):\n{}",
        unknown_list(.0)
    )]
    UnknownArguments(Vec<crate::registry::UnknownArgument>),
    /// Two approvers share a name, so policies could not tell them apart.
    #[error("two approvers are named `{0}`; approver names must be unique")]
    DuplicateApprover(String),
    /// Gated functions in this program name policies the policy engine does not define.
    #[error("{} gated function(s) name policies that are not configured:\n{}\nadd them to the policy file, or fix the names in #[requires_approval(policy = \"...\")]", .0.len(), missing_list(.0))]
    MissingPolicies(Vec<MissingPolicy>),
}

/// A policy named by a gated function but not defined by the gate's policy engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPolicy {
    /// The policy name.
    pub policy: String,
    /// The gated function that names it.
    pub function: String,
    /// The defined policy nearest in spelling, if one is near.
    pub closest: Option<String>,
}

fn missing_list(m: &[MissingPolicy]) -> String {
    let lines: Vec<String> = m
        .iter()
        .map(|m| match &m.closest {
            Some(c) => format!(
                "  - policy `{}` (used by {}); did you mean `{c}`?",
                m.policy, m.function
            ),
            None => format!("  - policy `{}` (used by {})", m.policy, m.function),
        })
        .collect();
    lines.join("\n")
}

fn unknown_list(u: &[crate::registry::UnknownArgument]) -> String {
    let lines: Vec<String> = u.iter().map(|u| format!("  - {u}")).collect();
    lines.join("\n")
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

    /// No request waits longer than `d`, whatever its policy says: the shorter of the two
    /// applies, and is what the request records. For demos, tests and short-lived agents;
    /// it only ever shortens a wait, so nothing is approved that the policy would not.
    ///
    /// ```
    /// # use approvals_core::{Gate, CodePolicy};
    /// # use std::time::Duration;
    /// let builder = Gate::builder().max_expiry(Duration::from_secs(10));
    /// ```
    pub fn max_expiry(mut self, d: std::time::Duration) -> Self {
        self.max_expiry = Some(d);
        self
    }

    /// Makes a remote gate: every call is judged by the approval service `remote` reaches,
    /// under its policy, store, audit log and channels; this gate needs none of its own.
    /// Reviews, listings and due work belong to the service, not to a remote gate.
    pub fn remote(mut self, remote: Arc<dyn crate::remote::Remote>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Skips the start-up checks that every policy named by a `#[requires_approval]` in the
    /// program is defined by this gate's engine, and that the conditions read only arguments
    /// those functions record. For programs that run several gates, each with its own
    /// policies.
    pub fn skip_policy_check(mut self) -> Self {
        self.skip_policy_check = true;
        self
    }

    /// Builds the gate.
    ///
    /// Fails if a part is missing, two approvers share a name, or (when the policy engine can
    /// list its policies, as a policy file can) a gated function in this program names a
    /// policy the engine does not define.
    pub fn build(mut self) -> Result<Gate, BuildError> {
        if self.remote.is_some() {
            // The service judges; what a local gate would need is never used.
            let nothing = Arc::new(crate::remote::Unused);
            self.policy.get_or_insert_with(|| nothing.clone());
            self.store.get_or_insert_with(|| nothing.clone());
            self.audit.get_or_insert_with(|| nothing.clone());
            self.skip_policy_check = true;
        }
        let mut names = std::collections::BTreeSet::new();
        for a in &self.approvers {
            if !names.insert(a.name().to_owned()) {
                return Err(BuildError::DuplicateApprover(a.name().to_owned()));
            }
        }
        if let (Some(policy), false) = (&self.policy, self.skip_policy_check) {
            if let Some(known) = policy.policy_names() {
                let missing = crate::registry::missing_from(&known);
                if !missing.is_empty() {
                    return Err(BuildError::MissingPolicies(
                        missing
                            .into_iter()
                            .map(|u| MissingPolicy {
                                policy: u.policy.to_owned(),
                                function: u.function.to_owned(),
                                closest: crate::suggest::closest(
                                    u.policy,
                                    known.iter().map(String::as_str),
                                )
                                .map(str::to_owned),
                            })
                            .collect(),
                    ));
                }
            }
            let unknown =
                crate::registry::unknown_arguments(&crate::registry::functions(), policy.as_ref());
            if !unknown.is_empty() {
                return Err(BuildError::UnknownArguments(unknown));
            }
        }
        let clock: Arc<dyn Clock> = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let policy = self.policy.ok_or(BuildError::Missing("policy"))?;
        // One clock: the policy reads the time the gate reads.
        policy.use_clock(clock.clone());
        let store = self.store.ok_or(BuildError::Missing("store"))?;
        let audit = self.audit.ok_or(BuildError::Missing("audit"))?;
        // A store that keeps the sink's own log commits each change with its records.
        let joint = store.log_id().is_some() && store.log_id() == audit.log_id();
        Ok(Gate {
            inner: Arc::new(Inner {
                making: tokio::sync::Semaphore::new(MAKING_AT_ONCE),
                queued: crate::text::Packer::default(),
                order: (0..ORDER_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                policy,
                store,
                audit,
                joint,
                approvers: self.approvers,
                directory: self
                    .directory
                    .unwrap_or_else(|| Arc::new(StaticDirectory::new())),
                clock,
                default_checked: self
                    .default_context
                    .as_ref()
                    .is_some_and(|c| c.check().is_ok()),
                default_context: self.default_context,
                unauthenticated: super::Limiter::default(),
                observers: std::sync::RwLock::new(Vec::new()),
                remote: self.remote,
                max_expiry: self.max_expiry,
            }),
        })
    }
}

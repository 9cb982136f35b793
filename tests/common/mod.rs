//! A gate with a mock approver, a manual clock and an in-memory audit log, for the
//! behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::mock::{MockApprover, MockHandle, MockRequest};
use approvals::{
    ApprovalRequest, AuditRecord, CodePolicy, Context, EventKind, Factor, Gate, GateBuilder,
    ManualClock, Principal, Refusal, Requirement, StaticDirectory, Timestamp, requires_approval,
    scope,
};

/// data-owners: alice, bob, dana; sre: alice, bob, carol; security: alice, erin.
pub fn directory() -> StaticDirectory {
    StaticDirectory::new()
        .group("data-owners", ["alice", "bob", "dana"])
        .group("sre", ["alice", "bob", "carol"])
        .group("security", ["alice", "erin"])
}

/// ops-bot, acting for dana.
pub fn agent() -> Context {
    Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .reason("weekly churn report")
}

pub const EXPIRY: Duration = Duration::from_secs(600);

/// One approval from data-owners, expiring after [`EXPIRY`].
pub fn one_data_owner() -> Requirement {
    Requirement::new("one-data-owner")
        .factor(Factor::group("data-owners", 1))
        .expires_in(EXPIRY)
}

/// `export` needs one data owner; `read` is allowed; `drop` is denied.
pub fn policy() -> CodePolicy {
    CodePolicy::new()
        .require("export", one_data_owner())
        .allow("read")
        .deny("drop", "agents never drop tables")
}

pub struct Harness {
    pub gate: Gate,
    pub audit: Arc<MemoryAudit>,
    pub mock: MockHandle,
    pub clock: Arc<ManualClock>,
    pub runs: Arc<AtomicUsize>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_policy(policy())
    }

    pub fn with_policy(policy: CodePolicy) -> Self {
        Self::with(|b| b.policy(policy))
    }

    /// A harness whose builder `f` may change (policy, directory, ...).
    pub fn with(f: impl FnOnce(GateBuilder) -> GateBuilder) -> Self {
        let audit = Arc::new(MemoryAudit::new());
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_micros(
            1_700_000_000_000_000,
        )));
        let (approver, mock) = MockApprover::new();
        let builder = Gate::builder()
            .policy(policy())
            .directory(directory())
            .store(MemoryStore::new())
            .audit(audit.clone())
            .clock(clock.clone())
            .approver(approver);
        let gate = f(builder).build().expect("gate builds");
        Self {
            gate,
            audit,
            mock,
            clock,
            runs: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `f` as ops-bot (for dana) with this gate in scope.
    pub async fn run<F: Future>(&self, f: F) -> F::Output {
        scope::with_gate(self.gate.clone(), scope::with_context(agent(), f)).await
    }

    /// Spawns `f` as ops-bot (for dana) with this gate in scope.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(scope::with_gate(
            self.gate.clone(),
            scope::with_context(agent(), f),
        ))
    }

    /// The next request delivered to the mock approver.
    pub async fn next(&self) -> MockRequest {
        self.mock
            .next()
            .await
            .expect("a request reaches the mock approver")
    }

    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    pub fn records(&self) -> Vec<AuditRecord> {
        self.audit.records()
    }

    pub fn event_names(&self) -> Vec<&'static str> {
        self.records().iter().map(|r| r.event.name()).collect()
    }

    pub fn refusals(&self) -> Vec<Refusal> {
        self.records()
            .into_iter()
            .filter_map(|r| match r.event.kind {
                EventKind::ReviewRefused { refusal, .. } => Some(refusal),
                _ => None,
            })
            .collect()
    }

    pub async fn request(&self, r: &MockRequest) -> ApprovalRequest {
        self.gate.request(r.request.id).await.unwrap().unwrap()
    }
}

/// The privileged body: counts its runs.
#[requires_approval(policy = "export", name = "billing::export", skip(runs))]
pub async fn export(limit: u32, runs: Arc<AtomicUsize>) -> Result<u32, approvals::Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(limit)
}

#[requires_approval(policy = "export", name = "billing::export", skip(runs), defer)]
pub async fn export_deferred(limit: u32, runs: Arc<AtomicUsize>) -> Result<u32, approvals::Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(limit)
}

#[requires_approval(
    policy = "export",
    name = "billing::export",
    skip(runs),
    timeout = "30s"
)]
pub async fn export_patiently(limit: u32, runs: Arc<AtomicUsize>) -> Result<u32, approvals::Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(limit)
}

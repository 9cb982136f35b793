//! Programs that run one hot path of the gate a given number of times, for
//! `valgrind --tool=callgrind` to count its instructions (`.ci/instructions`). Counting
//! instructions, not time, gives a figure that does not move with the machine's load.

use std::sync::Arc;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::store::{Attach, Change, GrantChange, RecordedAttach, RecordedChange, Store};
use approvals::{
    ApprovalRequest, AuditError, AuditEvent, AuditReceipt, AuditSink, CodePolicy, Context,
    EventKind, Factor, Gate, Grant, GrantId, Principal, RequestId, Requirement, StaticDirectory,
    StoreError, Timestamp,
};
use tokio::sync::watch;

/// The gate the waiting programs use: `export` waits for one of data-owners (alice), calls
/// come from ops-bot, the store and the audit log are in memory (the log is returned, to
/// wait on its records).
pub fn export_gate() -> Result<(Gate, Arc<MemoryAudit>), approvals::BuildError> {
    let audit = Arc::new(MemoryAudit::new());
    let gate = export_gate_on(Arc::new(MemoryStore::new()), audit.clone())?;
    Ok((gate, audit))
}

/// [`export_gate`]'s policy, directory and caller on the given store and audit sink.
pub fn export_gate_on(
    store: Arc<dyn Store>,
    audit: impl AuditSink + 'static,
) -> Result<Gate, approvals::BuildError> {
    Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(StaticDirectory::new().group("data-owners", ["alice"]))
        .store_arc(store)
        .audit(audit)
        .default_context(Context::new(Principal::agent("ops-bot")))
        .build()
}

/// An audit sink that passes every event on to another and counts the `requested` records
/// it appended, for a program to wait until that many calls wait (without a sleep).
pub struct CountRequested<S> {
    inner: S,
    count: watch::Sender<usize>,
}

impl<S: AuditSink> CountRequested<S> {
    /// Counts what passes to `inner`; the receiver sees the count.
    pub fn new(inner: S) -> (Self, watch::Receiver<usize>) {
        let (count, seen) = watch::channel(0);
        (Self { inner, count }, seen)
    }

    fn counted(
        &self,
        requested: bool,
        appended: Result<AuditReceipt, AuditError>,
    ) -> Result<AuditReceipt, AuditError> {
        if requested && appended.is_ok() {
            self.count.send_modify(|n| *n += 1);
        }
        appended
    }
}

#[async_trait::async_trait]
impl<S: AuditSink> AuditSink for CountRequested<S> {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        let requested = matches!(event.kind, EventKind::Requested { .. });
        let appended = self.inner.append(event).await;
        self.counted(requested, appended)
    }

    #[allow(clippy::result_large_err)] // as `AuditSink::append_now` itself
    fn append_now(
        &self,
        event: AuditEvent,
    ) -> Result<Result<AuditReceipt, AuditError>, AuditEvent> {
        let requested = matches!(event.kind, EventKind::Requested { .. });
        let appended = self.inner.append_now(event)?;
        Ok(self.counted(requested, appended))
    }

    async fn flush(&self) -> Result<(), AuditError> {
        self.inner.flush().await
    }

    /// The inner sink's: a store that keeps its log still commits each change with its
    /// records (which are not `requested` ones, the only ones counted here).
    fn log_id(&self) -> Option<&str> {
        self.inner.log_id()
    }
}

/// A store that passes every call on to another and counts the requests it made, for a
/// program to wait until that many calls wait (without a sleep). Where the store keeps the
/// gate's log, a request and its `requested` record commit together and never pass through
/// the sink, so [`CountRequested`] cannot see them.
pub struct CountCreated {
    inner: Arc<dyn Store>,
    count: watch::Sender<usize>,
}

impl CountCreated {
    /// Counts the requests `inner` makes; the receiver sees the count.
    pub fn new(inner: Arc<dyn Store>) -> (Self, watch::Receiver<usize>) {
        let (count, seen) = watch::channel(0);
        (Self { inner, count }, seen)
    }

    fn counted(&self, created: bool) {
        if created {
            self.count.send_modify(|n| *n += 1);
        }
    }
}

#[async_trait::async_trait]
impl Store for CountCreated {
    async fn create_or_attach(&self, request: ApprovalRequest) -> Result<Attach, StoreError> {
        let attach = self.inner.create_or_attach(request).await?;
        self.counted(attach.created);
        Ok(attach)
    }
    async fn create_recorded(
        &self,
        request: ApprovalRequest,
        records: RecordedAttach<'_>,
    ) -> Result<(Attach, Vec<u64>), StoreError> {
        let made = self.inner.create_recorded(request, records).await?;
        self.counted(made.0.created);
        Ok(made)
    }
    async fn get(&self, id: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
        self.inner.get(id).await
    }
    async fn update(
        &self,
        id: RequestId,
        change: Change<'_>,
    ) -> Result<ApprovalRequest, StoreError> {
        self.inner.update(id, change).await
    }
    fn log_id(&self) -> Option<&str> {
        self.inner.log_id()
    }
    async fn update_recorded(
        &self,
        id: RequestId,
        change: RecordedChange<'_>,
    ) -> Result<(ApprovalRequest, Vec<u64>), StoreError> {
        self.inner.update_recorded(id, change).await
    }
    async fn wait_for_change(
        &self,
        id: RequestId,
        seen_version: u64,
    ) -> Result<ApprovalRequest, StoreError> {
        self.inner.wait_for_change(id, seen_version).await
    }
    async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        self.inner.list_open().await
    }
    async fn list_decided(&self, limit: usize) -> Result<Vec<ApprovalRequest>, StoreError> {
        self.inner.list_decided(limit).await
    }
    async fn due(&self, now: Timestamp) -> Result<Vec<RequestId>, StoreError> {
        self.inner.due(now).await
    }
    async fn set_aside(&self, id: RequestId) -> Result<(), StoreError> {
        self.inner.set_aside(id).await
    }
    async fn insert_grant(&self, grant: Grant) -> Result<(), StoreError> {
        self.inner.insert_grant(grant).await
    }
    async fn grants_for(
        &self,
        requester: &str,
        policy: &str,
        action: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        self.inner.grants_for(requester, policy, action).await
    }
    async fn update_grant(
        &self,
        id: GrantId,
        change: GrantChange<'_>,
    ) -> Result<Grant, StoreError> {
        self.inner.update_grant(id, change).await
    }
    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.inner.grants().await
    }
}

/// A two-worker runtime, as a small service would run.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

//! Programs that run one hot path of the gate a given number of times, for
//! `valgrind --tool=callgrind` to count its instructions (`.ci/instructions`). Counting
//! instructions, not time, gives a figure that does not move with the machine's load.

use std::sync::Arc;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::store::Store;
use approvals::{
    AuditError, AuditEvent, AuditReceipt, AuditSink, CodePolicy, Context, EventKind, Factor, Gate,
    Principal, Requirement, StaticDirectory,
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
}

/// A two-worker runtime, as a small service would run.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

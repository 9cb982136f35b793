use approvals_core::{AuditError, AuditEvent, AuditReceipt, AuditRecord, AuditSink};
use async_trait::async_trait;
use tokio::sync::watch;

/// An [`AuditSink`] that keeps records in memory, in order, numbered from 0.
///
/// [`MemoryAudit::wait_for`] lets a test wait for a condition on the log instead of sleeping.
///
/// ```
/// use approvals_backends::memory::MemoryAudit;
/// let audit = MemoryAudit::new();
/// assert!(audit.records().is_empty());
/// ```
#[derive(Debug)]
pub struct MemoryAudit {
    records: watch::Sender<Vec<AuditRecord>>,
}

impl Default for MemoryAudit {
    fn default() -> Self {
        Self {
            records: watch::Sender::new(Vec::new()),
        }
    }
}

impl MemoryAudit {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record so far, in order, each linked to the one before (`prev`).
    ///
    /// The links are computed here, on reading, so that appending stays cheap.
    pub fn records(&self) -> Vec<AuditRecord> {
        let mut records = self.records.borrow().clone();
        let mut prev = None;
        for r in &mut records {
            r.prev = prev;
            prev = Some(r.leaf_hash());
        }
        records
    }

    /// Resolves once `condition` holds for the log (at once if it already does). The
    /// condition sees the records as appended, before [`MemoryAudit::records`] links them.
    pub async fn wait_for(&self, condition: impl Fn(&[AuditRecord]) -> bool) {
        let mut rx = self.records.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|records| condition(records)).await;
    }
}

#[async_trait]
impl AuditSink for MemoryAudit {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        let mut seq = 0;
        // Waiters are woken only if there are any ([`MemoryAudit::wait_for`]): waking the
        // channel's every slot cost more than the rest of an append. The record is pushed
        // under the channel's lock, so a waiter that subscribes too late to be woken reads
        // it when it first looks.
        self.records.send_if_modified(|records| {
            seq = records.len() as u64;
            records.push(AuditRecord {
                seq,
                prev: None,
                event,
            });
            self.records.receiver_count() > 0
        });
        Ok(AuditReceipt { seq })
    }
}

#[async_trait]
impl approvals_core::log::AuditLog for MemoryAudit {
    async fn read_log(&self) -> Result<approvals_core::log::StoredLog, approvals_core::StoreError> {
        Ok(approvals_core::log::StoredLog {
            records: self
                .records()
                .iter()
                .map(AuditRecord::to_canonical_json)
                .collect(),
            checkpoints: Vec::new(),
        })
    }
}

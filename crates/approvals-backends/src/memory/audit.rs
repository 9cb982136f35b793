use std::sync::Mutex;

use approvals_core::{AuditError, AuditEvent, AuditReceipt, AuditRecord, AuditSink};
use async_trait::async_trait;

/// An [`AuditSink`] that keeps records in memory, in order, numbered from 0.
///
/// ```
/// use approvals_backends::memory::MemoryAudit;
/// let audit = MemoryAudit::new();
/// assert!(audit.records().is_empty());
/// ```
#[derive(Debug, Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAudit {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record so far, in order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl AuditSink for MemoryAudit {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let seq = records.len() as u64;
        records.push(AuditRecord { seq, event });
        Ok(AuditReceipt { seq })
    }
}

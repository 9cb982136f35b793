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
    records: watch::Sender<MemoryRecords>,
}

impl Default for MemoryAudit {
    fn default() -> Self {
        Self {
            records: watch::Sender::new(MemoryRecords::default()),
        }
    }
}

/// The records a [`MemoryAudit`] holds, in order, as [`MemoryAudit::wait_for`] shows them.
///
/// Kept in chunks of a fixed size rather than one vector: a vector that doubles as it grows
/// keeps up to as much again spare and copies every record each time it moves (an
/// append paid for that copy on the gate's allowed path), while a full chunk is never
/// touched again.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use approvals_backends::memory::MemoryAudit;
/// let audit = MemoryAudit::new();
/// audit.wait_for(|r| r.is_empty() && r.last().is_none()).await;
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryRecords {
    /// Every chunk but the last is full.
    chunks: Vec<Vec<AuditRecord>>,
}

/// Records a chunk holds (each chunk is one allocation of this many).
const CHUNK: usize = 256;

impl MemoryRecords {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The records, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &AuditRecord> + '_ {
        self.chunks.iter().flatten()
    }

    /// The record numbered `seq`.
    pub fn get(&self, seq: usize) -> Option<&AuditRecord> {
        self.chunks.get(seq / CHUNK)?.get(seq % CHUNK)
    }

    /// The newest record.
    pub fn last(&self) -> Option<&AuditRecord> {
        self.chunks.last()?.last()
    }

    fn push(&mut self, record: AuditRecord) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(record),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(record);
                self.chunks.push(chunk);
            }
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
        let stored = self.records.borrow();
        let mut records = Vec::with_capacity(stored.len());
        let mut prev = None;
        for r in stored.iter() {
            let mut r = r.clone();
            r.prev = prev;
            prev = Some(r.leaf_hash());
            records.push(r);
        }
        records
    }

    /// Resolves once `condition` holds for the log (at once if it already does). The
    /// condition sees the records as appended, before [`MemoryAudit::records`] links them.
    pub async fn wait_for(&self, condition: impl Fn(&MemoryRecords) -> bool) {
        let mut rx = self.records.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|records| condition(records)).await;
    }

    /// Appends at once: nothing here awaits.
    fn push(&self, event: AuditEvent) -> AuditReceipt {
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
        AuditReceipt { seq }
    }
}

#[async_trait]
impl AuditSink for MemoryAudit {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        Ok(self.push(event))
    }

    fn append_now(
        &self,
        event: AuditEvent,
    ) -> Result<Result<AuditReceipt, AuditError>, AuditEvent> {
        Ok(Ok(self.push(event)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use approvals_core::{Action, ActionRef, EventKind, Principal, Timestamp};

    #[tokio::test]
    async fn records_read_back_in_order_across_chunks() {
        // Past two whole chunks and into a third: numbered, ordered and found by number
        // the same way on each side of a chunk's edge.
        let audit = MemoryAudit::new();
        let n = 2 * CHUNK + 3;
        for i in 0..n {
            let action = Action::builder("f", "p").arg("i", &i).build().unwrap();
            let receipt = audit
                .append(AuditEvent {
                    at: Timestamp::now(),
                    request_id: None,
                    action: ActionRef::from(&action),
                    actor: Some(Principal::agent("bot")),
                    policy_version: "code".into(),
                    kind: EventKind::Allowed {
                        rule: i.to_string(),
                    },
                })
                .await
                .unwrap();
            assert_eq!(receipt.seq, i as u64);
        }
        let rule = |r: &AuditRecord| match &r.event.kind {
            EventKind::Allowed { rule } => rule.clone(),
            other => panic!("{other:?}"),
        };
        audit
            .wait_for(|r| {
                assert_eq!(r.len(), n);
                let rules: Vec<String> = r.iter().map(rule).collect();
                let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                assert_eq!(rules, expected);
                for i in [0, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, n - 1] {
                    assert_eq!(r.get(i).map(rule), Some(i.to_string()), "record {i}");
                }
                assert!(r.get(n).is_none());
                assert_eq!(r.last().map(rule), Some((n - 1).to_string()));
                assert_eq!(r.iter().next_back().map(rule), Some((n - 1).to_string()));
                true
            })
            .await;
        // Read back linked: each record's `prev` is the leaf hash of the one before.
        let linked = audit.records();
        assert_eq!(linked.len(), n);
        assert!(linked[0].prev.is_none());
        for pair in linked.windows(2) {
            assert_eq!(pair[1].prev, Some(pair[0].leaf_hash()));
        }
    }
}

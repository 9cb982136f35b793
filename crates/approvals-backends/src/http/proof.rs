//! The audit proof the API gives with a request: its records, each with an RFC 6962
//! inclusion proof against the latest signed checkpoint.

use approvals_core::merkle::{self, Hash};
use approvals_core::{AuditRecord, RequestId};
use async_trait::async_trait;
use serde_json::{Value, json};

/// Where the API reads the audit log from, to prove a request's records.
///
/// Implemented for the SQL databases (`sql::Database`) and the memory sink. Reading proves
/// against the whole log, so a request's proof costs a read of the log: fine for a console
/// or an auditor's request, not for a hot path.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Every record as its canonical JSON (record `seq` at index `seq`), and the latest
    /// signed checkpoint note, if one was signed.
    async fn read_log(&self) -> Result<(Vec<String>, Option<String>), String>;
}

#[cfg(feature = "memory")]
#[async_trait]
impl AuditLog for crate::memory::MemoryAudit {
    async fn read_log(&self) -> Result<(Vec<String>, Option<String>), String> {
        let lines = self
            .records()
            .iter()
            .map(AuditRecord::to_canonical_json)
            .collect();
        Ok((lines, None))
    }
}

#[cfg(feature = "sql")]
#[async_trait]
impl AuditLog for crate::sql::Database {
    async fn read_log(&self) -> Result<(Vec<String>, Option<String>), String> {
        let log = self.export_audit().await.map_err(|e| e.to_string())?;
        Ok((log.records, log.checkpoints.last().cloned()))
    }
}

/// The proof of `request`'s records, as JSON: the checkpoint (or, without one, the current
/// unsigned root), and per record its leaf hash and inclusion proof.
pub(crate) async fn prove(log: &dyn AuditLog, request: RequestId) -> Result<Value, String> {
    let (lines, checkpoint) = log.read_log().await?;
    let leaves: Vec<Hash> = lines
        .iter()
        .map(|l| merkle::leaf_hash(l.as_bytes()))
        .collect();
    // Prove against the signed checkpoint's tree; records after it wait for the next one.
    let size = match &checkpoint {
        Some(note) => {
            approvals_core::note::Checkpoint::parse(note)
                .map_err(|e| e.to_string())?
                .size
        }
        None => leaves.len() as u64,
    };
    let size = usize::try_from(size)
        .map_err(|e| e.to_string())?
        .min(leaves.len());
    let tree = &leaves[..size];
    let root = merkle::root(tree);
    let id = request.to_string();
    let mut records = Vec::new();
    for (seq, line) in lines.iter().enumerate() {
        let record: AuditRecord = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if record.event.request_id.map(|r| r.to_string()).as_deref() != Some(id.as_str()) {
            continue;
        }
        let proof = if seq < size {
            let p = merkle::inclusion_proof(tree, seq).map_err(|e| e.to_string())?;
            Value::Array(p.iter().map(|h| json!(hex::encode(h))).collect())
        } else {
            Value::Null
        };
        records.push(json!({
            "seq": seq,
            "record": serde_json::from_str::<Value>(line).map_err(|e| e.to_string())?,
            "leaf_hash": hex::encode(leaves[seq]),
            "inclusion_proof": proof,
        }));
    }
    Ok(json!({
        "tree_size": size,
        "root": hex::encode(root),
        "checkpoint": checkpoint,
        "records": records,
    }))
}

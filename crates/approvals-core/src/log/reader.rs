//! Reading a stored log back, to prove records or to export it.

use async_trait::async_trait;
use serde::Serialize;

use super::merkle::{self, Hash};
use super::note::Checkpoint;
use super::proof::{ProofBundle, ProofError};
use crate::audit::AuditRecord;
use crate::error::StoreError;
use crate::request::RequestId;

/// A log read back from where it is kept: its records' lines in order and its signed
/// checkpoints, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredLog {
    /// One canonical JSON record per entry, `seq` 0, 1, 2, ...
    pub records: Vec<String>,
    /// The signed checkpoints (C2SP signed notes).
    pub checkpoints: Vec<String>,
}

/// The proof of one request's records, as the API gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestProof {
    /// How many records the checkpoint covers (without one: every record).
    pub tree_size: u64,
    /// The Merkle root of those records, base64.
    pub root: String,
    /// The latest signed checkpoint, if one was signed.
    pub checkpoint: Option<String>,
    /// The request's records, each with its proof.
    pub records: Vec<ProofBundle>,
}

impl StoredLog {
    /// The records as a JSONL file: one line each, exactly the bytes each Merkle leaf is
    /// computed over, so `approvals audit verify` checks it against the checkpoints.
    pub fn jsonl(&self) -> String {
        let mut out = String::with_capacity(self.records.iter().map(|r| r.len() + 1).sum());
        for r in &self.records {
            out.push_str(r);
            out.push('\n');
        }
        out
    }

    /// The checkpoints as the `.checkpoints` file beside a JSONL log.
    pub fn checkpoints_file(&self) -> String {
        self.checkpoints
            .iter()
            .map(|n| serde_json::json!({ "note": n }).to_string() + "\n")
            .collect()
    }

    /// Every record's leaf hash.
    pub fn leaves(&self) -> Vec<Hash> {
        self.records
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect()
    }

    /// The proof of each of `request`'s records against the latest checkpoint.
    pub fn prove_request(&self, request: RequestId) -> Result<RequestProof, ProofError> {
        let leaves = self.leaves();
        let checkpoint = self.checkpoints.last().map(String::as_str);
        let size = match checkpoint {
            Some(note) => {
                Checkpoint::parse(note)
                    .map_err(|e| ProofError::Checkpoint(e.to_string()))?
                    .size
            }
            None => leaves.len() as u64,
        };
        let covered = &leaves[..usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(leaves.len())];
        let mut records = Vec::new();
        for (seq, line) in self.records.iter().enumerate() {
            let record: AuditRecord =
                serde_json::from_str(line).map_err(|e| ProofError::Record {
                    seq: seq as u64,
                    what: e.to_string(),
                })?;
            if record.event.request_id == Some(request) {
                records.push(ProofBundle::prove(&leaves, seq as u64, line, checkpoint)?);
            }
        }
        Ok(RequestProof {
            tree_size: covered.len() as u64,
            root: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                merkle::root(covered),
            ),
            checkpoint: checkpoint.map(str::to_owned),
            records,
        })
    }
}

/// Where a stored log is read back from: implemented by the sinks that keep one (the SQL
/// databases, the memory sink). Reading proves against the whole log, so it costs a read of
/// the log: fine for a console or an auditor's request, not for a hot path.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// The whole log and its checkpoints.
    async fn read_log(&self) -> Result<StoredLog, StoreError>;
}

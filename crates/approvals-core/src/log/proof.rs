//! One record's proof: the record, its inclusion proof and the signed checkpoint it is proven
//! against. The API gives one per record of a request; `approvals audit prove` writes one to a
//! file; `approvals audit check-proof` checks either.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::merkle::{self, Hash};
use super::note::{Checkpoint, NoteVerifier};
use crate::audit::AuditRecord;

/// A record with its RFC 6962 inclusion proof against the log's latest signed checkpoint.
///
/// Hashes are base64 (standard alphabet, padded), as in the checkpoint itself. A record the
/// latest checkpoint does not cover yet has neither proof nor checkpoint: it is proven once
/// the next checkpoint is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofBundle {
    /// The record's sequence number: its position in the log.
    pub seq: u64,
    /// The record's line, exactly as in the log, without the newline: the Merkle leaf is
    /// computed over these bytes.
    pub record: String,
    /// `SHA-256(0x00 || record)`.
    pub leaf_hash: String,
    /// The audit path from the leaf to the checkpoint's root, nearest the leaf first.
    pub inclusion_proof: Option<Vec<String>>,
    /// The signed checkpoint note the proof leads to.
    pub checkpoint: Option<String>,
}

/// A bundle that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The record, parsed.
    pub record: AuditRecord,
    /// The checkpoint it is proven in, its signature verified.
    pub checkpoint: Checkpoint,
}

/// A bundle that cannot be made, or does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// No signed checkpoint covers the record yet.
    #[error("no signed checkpoint covers record {seq} yet")]
    NotCovered {
        /// The record.
        seq: u64,
    },
    /// The log holds fewer records than its checkpoint covers.
    #[error(
        "the log holds {records} records but its checkpoint covers {size}: it was truncated; run `approvals audit verify`"
    )]
    Truncated {
        /// Records in the log.
        records: u64,
        /// Records the checkpoint covers.
        size: u64,
    },
    /// The log has no such record.
    #[error("the log has no record {seq}")]
    NoRecord {
        /// The record asked for.
        seq: u64,
    },
    /// The checkpoint is malformed or not signed by the key given.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The record, its hash or its proof does not check out.
    #[error("record {seq}: {what}")]
    Record {
        /// The record.
        seq: u64,
        /// What is wrong.
        what: String,
    },
}

impl ProofBundle {
    /// The proof of record `seq`, whose line is `line`, in a log whose leaf hashes are
    /// `leaves`, against `checkpoint` (the log's latest signed note, if any).
    pub fn prove(
        leaves: &[Hash],
        seq: u64,
        line: &str,
        checkpoint: Option<&str>,
    ) -> Result<Self, ProofError> {
        let index = usize::try_from(seq).map_err(|_| ProofError::NoRecord { seq })?;
        let Some(leaf) = leaves.get(index) else {
            return Err(ProofError::NoRecord { seq });
        };
        let covering = match checkpoint {
            Some(note) => {
                let size = Checkpoint::parse(note)
                    .map_err(|e| ProofError::Checkpoint(e.to_string()))?
                    .size;
                if size > leaves.len() as u64 {
                    return Err(ProofError::Truncated {
                        records: leaves.len() as u64,
                        size,
                    });
                }
                (size > seq).then_some((note, size))
            }
            None => None,
        };
        let (inclusion_proof, checkpoint) = match covering {
            Some((note, size)) => {
                // `size` is at most `leaves.len()`, so it fits in a usize.
                let tree = &leaves[..usize::try_from(size).unwrap_or(leaves.len())];
                let path =
                    merkle::inclusion_proof(tree, index).map_err(|e| ProofError::Record {
                        seq,
                        what: e.to_string(),
                    })?;
                (
                    Some(path.iter().map(|h| B64.encode(h)).collect()),
                    Some(note.to_owned()),
                )
            }
            None => (None, None),
        };
        Ok(Self {
            seq,
            record: line.to_owned(),
            leaf_hash: B64.encode(leaf),
            inclusion_proof,
            checkpoint,
        })
    }

    /// Checks the bundle on its own: the checkpoint's signature with `verifier`, that the
    /// record is record `seq`, that its leaf hash is the one given, and that the proof leads
    /// from it to the checkpoint's root.
    pub fn check(&self, verifier: &NoteVerifier) -> Result<Proven, ProofError> {
        let seq = self.seq;
        let fail = |what: String| ProofError::Record { seq, what };
        let (Some(note), Some(path)) = (&self.checkpoint, &self.inclusion_proof) else {
            return Err(ProofError::NotCovered { seq });
        };
        let checkpoint = Checkpoint::verify(note, verifier)
            .map_err(|e| ProofError::Checkpoint(e.to_string()))?;
        let record: AuditRecord =
            serde_json::from_str(&self.record).map_err(|e| fail(format!("not a record: {e}")))?;
        if record.seq != seq {
            return Err(fail(format!(
                "the record is {} but the bundle says {seq}",
                record.seq
            )));
        }
        let leaf = merkle::leaf_hash(self.record.as_bytes());
        if B64.encode(leaf) != self.leaf_hash {
            return Err(fail("the leaf hash is not the record's".into()));
        }
        let path = path
            .iter()
            .map(|p| B64.decode(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("inclusion proof: {e}")))?;
        merkle::verify_inclusion(seq, checkpoint.size, &leaf, &path, &checkpoint.root)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Proven { record, checkpoint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::note::NoteSigner;
    use crate::log::{LogHead, LogOptions};

    fn log(n: usize) -> (Vec<String>, Vec<Hash>, String, NoteSigner) {
        let signer = NoteSigner::generate("example.com").unwrap();
        let options = LogOptions::new("example.com/log", signer.clone());
        let mut head = LogHead::new();
        let mut lines = Vec::new();
        let mut leaves = Vec::new();
        for _ in 0..n {
            let a = head.append(crate::doc_support::sample_event());
            lines.push(a.line);
            leaves.push(a.leaf);
        }
        let note = head.checkpoint(&options, 0, true).unwrap().unwrap().note;
        (lines, leaves, note, signer)
    }

    #[test]
    fn every_record_proves_and_a_changed_byte_does_not() {
        let (lines, leaves, note, signer) = log(7);
        let verifier = signer.verifier();
        for (seq, line) in lines.iter().enumerate() {
            let bundle = ProofBundle::prove(&leaves, seq as u64, line, Some(&note)).unwrap();
            let proven = bundle.check(&verifier).unwrap();
            assert_eq!((proven.record.seq, proven.checkpoint.size), (seq as u64, 7));
            // Through JSON and back, as a file or an API answer carries it.
            let text = serde_json::to_string(&bundle).unwrap();
            let back: ProofBundle = serde_json::from_str(&text).unwrap();
            assert!(back.check(&verifier).is_ok());
            let mut changed = bundle.clone();
            changed.record = changed.record.replacen("deploy", "deplox", 1);
            assert!(matches!(
                changed.check(&verifier),
                Err(ProofError::Record { .. })
            ));
            let mut moved = bundle;
            moved.seq = (moved.seq + 1) % 7;
            assert!(moved.check(&verifier).is_err());
        }
        let other = NoteSigner::generate("example.com").unwrap().verifier();
        let bundle = ProofBundle::prove(&leaves, 0, &lines[0], Some(&note)).unwrap();
        assert!(matches!(
            bundle.check(&other),
            Err(ProofError::Checkpoint(_))
        ));
    }

    #[test]
    fn records_after_the_checkpoint_and_truncated_logs_are_named() {
        let (lines, leaves, note, signer) = log(3);
        let mut more = leaves.clone();
        more.push([9; 32]);
        let after = ProofBundle::prove(&more, 3, "{}", Some(&note)).unwrap();
        assert_eq!(
            (after.inclusion_proof.as_ref(), after.checkpoint.as_ref()),
            (None, None)
        );
        assert_eq!(
            after.check(&signer.verifier()),
            Err(ProofError::NotCovered { seq: 3 })
        );
        assert_eq!(
            ProofBundle::prove(&leaves[..2], 0, &lines[0], Some(&note)),
            Err(ProofError::Truncated {
                records: 2,
                size: 3
            })
        );
        assert_eq!(
            ProofBundle::prove(&leaves, 5, "", Some(&note)),
            Err(ProofError::NoRecord { seq: 5 })
        );
    }
}

//! The head of a log: what every writer does to add a record and to sign a checkpoint.

use std::time::Duration;

use super::merkle::{self, Frontier, Hash};
use super::note::{Checkpoint, NoteError, NoteSigner};
use super::verify::LogReport;
use crate::action::Digest;
use crate::audit::{AuditEvent, AuditRecord};

/// How a log is named and signed, and how often it is checkpointed: the same for every sink.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The log's name in its checkpoints (e.g. `audit.example.com/approvals`): the first line
    /// of every checkpoint. A log has one origin for its whole life: a writer refuses to
    /// append to a log whose checkpoints name another ([`OriginMismatch`]).
    pub origin: String,
    /// Signs checkpoints. Keep its key away from whoever can write the log: they must not be
    /// able to re-sign a rewritten one.
    pub signer: NoteSigner,
    /// Sign a checkpoint at least every this many records...
    pub checkpoint_every: u64,
    /// ...or once this much time has passed since the last one, whichever comes first.
    pub checkpoint_interval: Duration,
}

impl LogOptions {
    /// Defaults: a checkpoint every 1000 records or 10 s.
    pub fn new(origin: &str, signer: NoteSigner) -> Self {
        Self {
            origin: origin.to_owned(),
            signer,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
        }
    }

    /// Refuses to go on with a log whose latest checkpoint (a signed note, or its origin line)
    /// names another origin than these options.
    pub fn check_origin(&self, latest: Option<&str>) -> Result<(), OriginMismatch> {
        let Some(note) = latest else { return Ok(()) };
        let found = note.split('\n').next().unwrap_or_default();
        if found == self.origin {
            Ok(())
        } else {
            Err(OriginMismatch {
                log: found.to_owned(),
                writer: self.origin.clone(),
            })
        }
    }
}

/// A writer was configured with another origin than the log it would append to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the log's checkpoints name the origin {log:?} but this writer signs as {writer:?}: a log keeps one origin for its life (set the same origin, or start a new log)"
)]
pub struct OriginMismatch {
    /// The origin of the log's latest checkpoint.
    pub log: String,
    /// The origin the writer was given.
    pub writer: String,
}

/// A record the head has numbered and hashed, for the sink to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// Its Merkle leaf hash.
    pub leaf: Hash,
    /// Its canonical JSON, without the newline: the exact bytes the leaf is computed over.
    pub line: String,
}

/// A checkpoint the head has signed, for the sink to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// How many records it covers.
    pub size: u64,
    /// The signed note.
    pub note: String,
}

/// The head of a log: how many records it holds, its Merkle frontier, the last record's leaf
/// hash (the next record's `prev`) and when the last checkpoint was signed.
///
/// Every sink drives one: it numbers, chains and hashes records ([`LogHead::append`]) and
/// decides and signs checkpoints ([`LogHead::checkpoint`]); the sink writes what it returns.
/// Cloning is cheap enough to build a batch on a copy and keep it only once written.
#[derive(Debug, Clone, Default)]
pub struct LogHead {
    tree: Frontier,
    last_leaf: Option<Hash>,
    signed_size: u64,
    /// Unix microseconds of the last checkpoint (0: never, or unknown).
    signed_at: i64,
}

impl LogHead {
    /// The head of an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The head of a verified log, to go on appending to it; `now` (unix microseconds) counts
    /// as the time of its latest checkpoint.
    pub fn resume(report: &LogReport, now: i64) -> Self {
        Self {
            tree: report.tree.clone(),
            last_leaf: report.head,
            signed_size: report.checkpoint.as_ref().map_or(0, |c| c.size),
            signed_at: now,
        }
    }

    /// A head from its stored parts; refuses parts that cannot belong together.
    pub fn from_parts(
        tree: Frontier,
        last_leaf: Option<Hash>,
        signed_size: u64,
        signed_at: i64,
    ) -> Result<Self, String> {
        if (tree.size() > 0) != last_leaf.is_some() {
            return Err(format!(
                "the head counts {} records but {} a last leaf",
                tree.size(),
                if last_leaf.is_some() { "has" } else { "has no" }
            ));
        }
        if signed_size > tree.size() {
            return Err(format!(
                "the head's checkpoint covers {signed_size} records of {}",
                tree.size()
            ));
        }
        Ok(Self {
            tree,
            last_leaf,
            signed_size,
            signed_at,
        })
    }

    /// How many records the log holds.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The Merkle frontier of every record.
    pub fn tree(&self) -> &Frontier {
        &self.tree
    }

    /// The last record's leaf hash.
    pub fn last_leaf(&self) -> Option<Hash> {
        self.last_leaf
    }

    /// How many records the latest checkpoint covers.
    pub fn signed_size(&self) -> u64 {
        self.signed_size
    }

    /// When the latest checkpoint was signed (unix microseconds).
    pub fn signed_at(&self) -> i64 {
        self.signed_at
    }

    /// Whether two heads are the same point of the log: the same records and the same latest
    /// checkpoint.
    pub fn same_point(&self, other: &LogHead) -> bool {
        self.tree.to_bytes() == other.tree.to_bytes()
            && self.last_leaf == other.last_leaf
            && self.signed_size == other.signed_size
    }

    /// Numbers `event` after the last record, chains it to that record and hashes it.
    pub fn append(&mut self, event: AuditEvent) -> Appended {
        let seq = self.tree.size();
        let record = AuditRecord {
            seq,
            prev: self.last_leaf.map(Digest),
            event,
        };
        let line = record.to_canonical_json();
        let leaf = merkle::leaf_hash(line.as_bytes());
        self.tree.push(leaf);
        self.last_leaf = Some(leaf);
        Appended { seq, leaf, line }
    }

    /// Whether a checkpoint is due at `now` (unix microseconds): records no checkpoint covers,
    /// and `checkpoint_every` of them, or `checkpoint_interval` since the last, or `force`.
    pub fn is_due(&self, options: &LogOptions, now: i64, force: bool) -> bool {
        let size = self.tree.size();
        let interval = i64::try_from(options.checkpoint_interval.as_micros()).unwrap_or(i64::MAX);
        size > self.signed_size
            && (force
                || size - self.signed_size >= options.checkpoint_every
                || now.saturating_sub(self.signed_at) >= interval)
    }

    /// Signs a checkpoint of every record so far if one [is due](Self::is_due).
    pub fn checkpoint(
        &mut self,
        options: &LogOptions,
        now: i64,
        force: bool,
    ) -> Result<Option<SignedCheckpoint>, NoteError> {
        if !self.is_due(options, now, force) {
            return Ok(None);
        }
        let size = self.tree.size();
        let note = Checkpoint {
            origin: options.origin.clone(),
            size,
            root: self.tree.root(),
        }
        .sign(&options.signer)?;
        self.signed_size = size;
        self.signed_at = now;
        Ok(Some(SignedCheckpoint { size, note }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::generate("example.com").unwrap()
    }

    #[test]
    fn checkpoints_fall_due_by_count_by_time_or_when_forced() {
        let mut options = LogOptions::new("example.com/log", signer());
        options.checkpoint_every = 3;
        options.checkpoint_interval = Duration::from_secs(10);
        let mut head = LogHead::new();
        assert!(!head.is_due(&options, i64::MAX, true), "nothing to cover");
        let event = crate::doc_support::sample_event();
        head.append(event.clone());
        assert!(!head.is_due(&options, 1, false));
        assert!(head.is_due(&options, 10_000_000, false), "ten seconds on");
        assert!(head.is_due(&options, 1, true));
        head.append(event.clone());
        head.append(event);
        assert!(head.is_due(&options, 1, false), "three records");
        let signed = head.checkpoint(&options, 5, false).unwrap().unwrap();
        assert_eq!(
            (signed.size, head.signed_size(), head.signed_at()),
            (3, 3, 5)
        );
        assert!(head.checkpoint(&options, 6, true).unwrap().is_none());
    }

    #[test]
    fn a_writer_with_another_origin_is_refused() {
        let options = LogOptions::new("example.com/log", signer());
        assert!(options.check_origin(None).is_ok());
        assert!(
            options
                .check_origin(Some("example.com/log\n3\nAAAA\n"))
                .is_ok()
        );
        let e = options
            .check_origin(Some("example.com/other\n3\nAAAA\n"))
            .unwrap_err();
        assert_eq!(e.log, "example.com/other");
        assert!(e.to_string().contains("one origin"), "{e}");
    }

    #[test]
    fn parts_that_cannot_belong_together_are_refused() {
        let mut tree = Frontier::default();
        assert!(LogHead::from_parts(tree.clone(), Some([0; 32]), 0, 0).is_err());
        tree.push([1; 32]);
        assert!(LogHead::from_parts(tree.clone(), None, 0, 0).is_err());
        assert!(LogHead::from_parts(tree.clone(), Some([1; 32]), 2, 0).is_err());
        assert!(LogHead::from_parts(tree, Some([1; 32]), 1, 0).is_ok());
    }
}

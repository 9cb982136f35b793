//! Everything about the audit log, in one place: what a writer does to add a record and sign
//! a checkpoint ([`LogHead`]), the Merkle tree ([`merkle`]), signed checkpoints ([`note`]),
//! verifying a whole log offline ([`verify`]), proving one record ([`ProofBundle`]), and
//! reading a stored log back ([`AuditLog`]).
//!
//! The sinks that keep a log (a JSONL file, an SQL database) only do its I/O: they drive a
//! [`LogHead`] and write what it hands them. `docs/audit-format.md` describes the bytes.
//!
//! ```
//! use approvals_core::log::{LogHead, LogOptions, note::NoteSigner};
//! let signer = NoteSigner::generate("audit.example.com").unwrap();
//! let options = LogOptions::new("audit.example.com/approvals", signer);
//! let mut head = LogHead::new();
//! # let event = approvals_core::doc_support::sample_event();
//! let first = head.append(event);
//! assert_eq!((first.seq, head.size()), (0, 1));
//! // A checkpoint is due at once when forced, and signs the root of every record so far.
//! let signed = head.checkpoint(&options, 0, true).unwrap().expect("due");
//! assert_eq!(signed.size, 1);
//! assert!(signed.note.starts_with("audit.example.com/approvals\n1\n"));
//! ```

mod head;
pub mod merkle;
pub mod note;
mod proof;
mod reader;
pub mod verify;

pub use head::{Appended, LogHead, LogOptions, OriginMismatch, SignedCheckpoint};
pub use proof::{ProofBundle, ProofError, Proven};
pub use reader::{AuditLog, RequestProof, StoredLog};

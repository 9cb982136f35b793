//! What the SQL stores share: the audit log's batching writer, change notification for
//! waiters, errors at open, and the row encoding of requests and grants.
//!
//! Requests and grants are kept as JSON documents beside the columns that are queried (the
//! requester and digest for re-attachment, the next due time, whether it is pending): the
//! rules of approval live in core and operate on whole requests, so the database never
//! needs to understand a review. Every change runs core's closure inside one transaction
//! that holds the row's lock.

mod audit;
mod database;
mod store_impl;
mod watch;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use audit::{SqlAudit, SqlAuditOptions};
pub use database::Database;

pub(crate) use audit::{AuditBackend, Batch, Head, check_head, exported, head_from};
pub(crate) use store_impl::{Queries, sql_store};
pub(crate) use watch::Watchers;

use approvals_core::{ApprovalRequest, Grant, StoreError};

/// A database could not be opened as an approvals database. Nothing in it was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database could not be reached or opened at all.
    #[error("{database}: cannot open: {message}")]
    Connect {
        /// The file or server.
        database: String,
        /// What the driver said.
        message: String,
    },
    /// The file is not an SQLite database (corrupted, or something else entirely).
    #[error("{database}: not an SQLite database: {message}")]
    NotADatabase {
        /// The file.
        database: String,
        /// What SQLite said.
        message: String,
    },
    /// The database belongs to another application; approvals will not add its tables.
    #[error("{database}: {what}; refusing to use it as an approvals database")]
    Foreign {
        /// The file or server.
        database: String,
        /// What was found.
        what: String,
    },
    /// The schema was written by a newer version of approvals.
    #[error(
        "{database}: schema version {found} is newer than this build of approvals knows (up to {supported}); upgrade approvals rather than downgrade the database"
    )]
    NewerSchema {
        /// The file or server.
        database: String,
        /// The database's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A migration failed; its transaction was rolled back.
    #[error("{database}: migration to schema version {version} failed: {message}")]
    Migration {
        /// The file or server.
        database: String,
        /// The version being applied.
        version: i64,
        /// What the database said.
        message: String,
    },
    /// The existing audit log is inconsistent (its head does not match its records).
    #[error("{database}: the audit log is inconsistent: {what}")]
    Audit {
        /// The file or server.
        database: String,
        /// What is wrong.
        what: String,
    },
}

/// A store error from a driver error, naming the backend.
pub(crate) fn store_error(backend: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: backend.to_owned(),
        message: e.to_string(),
    }
}

pub(crate) fn encode_request(backend: &str, r: &ApprovalRequest) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| store_error(backend, e))
}

pub(crate) fn decode_request(backend: &str, body: &str) -> Result<ApprovalRequest, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| store_error(backend, format!("a stored request does not decode: {e}")))
}

pub(crate) fn encode_grant(backend: &str, g: &Grant) -> Result<String, StoreError> {
    serde_json::to_string(g).map_err(|e| store_error(backend, e))
}

pub(crate) fn decode_grant(backend: &str, body: &str) -> Result<Grant, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| store_error(backend, format!("a stored grant does not decode: {e}")))
}

/// The columns kept beside a request's document.
pub(crate) struct RequestColumns {
    pub(crate) id: String,
    pub(crate) requester: String,
    pub(crate) digest: String,
    /// Whether an identical call may re-attach ([`approvals_core::tally::attachable`]).
    pub(crate) attachable: bool,
    pub(crate) pending: bool,
    /// Unix microseconds of [`ApprovalRequest::next_due`].
    pub(crate) next_due: Option<i64>,
    pub(crate) version: i64,
    pub(crate) body: String,
}

impl RequestColumns {
    pub(crate) fn of(backend: &str, r: &ApprovalRequest) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id.to_string(),
            requester: r.context.requester.id.clone(),
            digest: r.action.digest.to_string(),
            attachable: approvals_core::tally::attachable(
                r,
                &r.context.requester,
                &r.action.digest,
            ),
            pending: r.is_pending(),
            next_due: r.next_due().map(|t| t.unix_micros()),
            version: i64::try_from(r.version).map_err(|e| store_error(backend, e))?,
            body: encode_request(backend, r)?,
        })
    }
}

/// An audit log read back from a database: its records' canonical JSON, in order, and its
/// signed checkpoints, oldest first. [`ExportedLog::jsonl`] is the JSONL file form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportedLog {
    /// One canonical JSON record per entry, `seq` 0, 1, 2, ...
    pub records: Vec<String>,
    /// The signed checkpoints (C2SP signed notes).
    pub checkpoints: Vec<String>,
}

impl ExportedLog {
    /// The records as a JSONL file: one line each, exactly the bytes each Merkle leaf is
    /// computed over, so `approvals audit verify` checks the export against the checkpoints.
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
}

/// Ends a transaction explicitly, never by dropping it: a dropped sqlx transaction only
/// queues its rollback, and until the pooled connection is next used it would keep holding
/// its locks (Postgres row and advisory locks, SQLite's write lock). Commits when the body
/// asks to (`Ok((_, true))`), else rolls back.
pub(crate) async fn settle<DB, T, E>(
    tx: sqlx::Transaction<'static, DB>,
    outcome: Result<(T, bool), E>,
    err: impl Fn(sqlx::Error) -> E,
) -> Result<T, E>
where
    DB: sqlx::Database,
{
    match outcome {
        Ok((value, true)) => {
            tx.commit().await.map_err(err)?;
            Ok(value)
        }
        Ok((value, false)) => {
            tx.rollback().await.map_err(err)?;
            Ok(value)
        }
        Err(e) => {
            // The body's error is the one worth reporting; a failed rollback also ends the
            // transaction (the connection is closed).
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

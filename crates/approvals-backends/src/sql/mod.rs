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
mod writer;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use audit::{SqlAudit, SqlAuditOptions};
pub use database::Database;

pub(crate) use crate::stored::{decode_request, decode_rows, encode_request};
pub(crate) use audit::{
    AuditBackend, Batch, Build, Head, MISSING_FRONTIER, check_head, exported, head_from,
};
pub(crate) use store_impl::{Queries, in_transaction, retrying, sql_store};
pub(crate) use watch::Watchers;
pub(crate) use writer::Writer;

use approvals_core::{ApprovalRequest, Grant, StoreError};

/// A name for the log of one database handle (`backend`, `database`, and a number no other
/// handle in the process has): what its store and the sinks made from it answer to
/// `log_id`, so that a gate commits a change with its records only where both are the same
/// handle's. Two handles on one database are told apart, which costs only the joint commit.
fn log_id(backend: &str, database: &str) -> String {
    static HANDLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = HANDLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{backend} {database} #{n}")
}

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

/// What a new call becomes, given the stored requests an identical call could join
/// (`candidates`, as `(id, body)` rows): the first open one it may join
/// ([`approvals_core::tally::attachable`]), else `request` itself, to be written. An
/// unreadable candidate is skipped (and logged): it can serve no call.
pub(crate) fn attach_to(
    backend: &str,
    candidates: Vec<(String, String)>,
    request: &ApprovalRequest,
) -> approvals_core::store::Attach {
    match decode_rows(backend, candidates)
        .into_iter()
        .find(|existing| approvals_core::tally::attachable(existing, request))
    {
        Some(existing) => approvals_core::store::Attach {
            request: existing,
            created: false,
        },
        None => approvals_core::store::Attach {
            request: request.clone(),
            created: true,
        },
    }
}

/// Closes a pool and every connection it opened. sqlx 0.8's `Pool::close` can return with
/// one still open: a connection on its way back when the pool closed (its task saw the
/// pool open, then parks it idle as it frees the permit `close` waits for); SQLite keeps
/// its WAL while any connection lives. A second `close` finds such a straggler idle and
/// closes it; once the first has returned, no connection is on its way back.
pub(crate) async fn close_pool<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
    pool.close().await;
    if pool.size() > 0 {
        pool.close().await;
    }
}

/// Whether a driver error means the connection was lost, or could not be made, before the
/// statement did anything: an I/O error, a crashed SQLite worker, or a Postgres error of
/// class 08 (connection exception) or 57P0x (the server is shutting down, crashed, or not
/// yet accepting connections: what `pg_terminate_backend` and failovers send).
pub(crate) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// A store error from a driver error, naming the backend: a lost connection is
/// [`StoreError::Unavailable`] (nothing changed; the call may be made again), anything else
/// [`StoreError::Backend`].
pub(crate) fn store_error(backend: &str, e: sqlx::Error) -> StoreError {
    if connection_lost(&e) {
        StoreError::unavailable(backend, e)
    } else {
        StoreError::backend(backend, e)
    }
}

/// A failed `COMMIT`: whether it took effect is unknown, so it is never retried, even when
/// the connection was lost.
pub(crate) fn commit_error(backend: &str, e: sqlx::Error) -> StoreError {
    StoreError::backend(backend, CommitFailed(e))
}

/// A `COMMIT` that failed, with the driver's error.
#[derive(Debug, thiserror::Error)]
#[error("the commit failed, and whether it took effect is unknown: {0}")]
pub(crate) struct CommitFailed(#[source] pub(crate) sqlx::Error);

/// Open requests a page of the open list holds (see `Store::list_open` in `store_impl`).
pub(crate) const OPEN_PAGE: i64 = 256;

/// How often a call that met a lost connection is made again, on a new one, before it fails
/// closed; and the pause before the first retry (doubled each time).
pub(crate) const RETRIES: u32 = 3;
pub(crate) const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Waits before retry `attempt` (from 1) and logs why; `false` once retries are used up.
pub(crate) async fn pause_before_retry(attempt: u32, error: &StoreError) -> bool {
    if attempt > RETRIES {
        return false;
    }
    tracing::warn!(attempt, error = %error, "the database connection was lost; trying again on a new one");
    tokio::time::sleep(RETRY_PAUSE * (1 << (attempt - 1))).await;
    true
}

pub(crate) fn encode_grant(backend: &str, g: &Grant) -> Result<String, StoreError> {
    serde_json::to_string(g).map_err(|e| StoreError::backend(backend, e))
}

pub(crate) fn decode_grant(backend: &str, id: &str, body: &str) -> Result<Grant, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::unreadable(backend, format!("grant {id}"), e))
}

/// An error of the audit log's database: a lost connection (retried on a new one, once the
/// writer has checked whether its last write took effect) or anything else.
#[derive(Debug, Clone)]
pub(crate) enum DbError {
    /// The connection was lost; see [`connection_lost`].
    Lost(approvals_core::Cause),
    /// Anything else.
    Failed(approvals_core::Cause),
}

impl DbError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        if connection_lost(&e) {
            DbError::Lost(std::sync::Arc::new(e))
        } else {
            DbError::Failed(std::sync::Arc::new(e))
        }
    }

    /// Any other failure, kept whole.
    pub(crate) fn failed(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DbError::Failed(approvals_core::Cause::from(e.into()))
    }

    /// The error as a store's: a lost connection is [`StoreError::Unavailable`] (the
    /// change may be made again), anything else [`StoreError::Backend`].
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // called by Postgres only
    pub(crate) fn into_store(self, backend: &str) -> StoreError {
        match self {
            DbError::Lost(source) => StoreError::Unavailable {
                backend: backend.into(),
                source,
            },
            DbError::Failed(source) => StoreError::Backend {
                backend: backend.into(),
                source,
            },
        }
    }

    /// The driver's (or the writer's) error.
    pub(crate) fn cause(&self) -> &approvals_core::Cause {
        match self {
            DbError::Lost(c) | DbError::Failed(c) => c,
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause().fmt(f)
    }
}

impl From<String> for DbError {
    fn from(m: String) -> Self {
        DbError::failed(m)
    }
}

impl From<std::num::TryFromIntError> for DbError {
    fn from(e: std::num::TryFromIntError) -> Self {
        DbError::failed(e)
    }
}

/// The columns kept beside a request's document.
pub(crate) struct RequestColumns {
    pub(crate) id: String,
    pub(crate) requester: String,
    pub(crate) digest: String,
    /// Whether an identical call may join it in its present state
    /// ([`approvals_core::tally::joinable`]); the call's identity is checked on the body.
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
            requester: r.context.requester.id.to_string(),
            digest: r.action.digest.to_string(),
            attachable: approvals_core::tally::joinable(r),
            pending: r.is_pending(),
            next_due: r.next_due().map(|t| t.unix_micros()),
            version: i64::try_from(r.version).map_err(|e| StoreError::backend(backend, e))?,
            body: encode_request(backend, r)?,
        })
    }

    /// Binds the columns in the order the stores' `insert_request` and `update_request`
    /// statements take them: id, requester, digest, attachable, pending, next_due,
    /// version, body.
    pub(crate) fn bind<'q, DB: sqlx::Database>(
        self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
    where
        String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.id)
            .bind(self.requester)
            .bind(self.digest)
            .bind(self.attachable)
            .bind(self.pending)
            .bind(self.next_due)
            .bind(self.version)
            .bind(self.body)
    }
}

/// An audit log read back from a database: its records' canonical JSON, in order, and its
/// signed checkpoints, oldest first.
pub use approvals_core::log::StoredLog as ExportedLog;

/// A transaction that [`settle`] ends: sqlx's (Postgres), or one on SQLite's held writing
/// connection.
pub(crate) trait Settle: Send + Sized {
    /// Commits; its outcome is unknown if this fails.
    fn commit(self) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
    /// Rolls back.
    fn rollback(self) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Ends a transaction explicitly, never by dropping it: a dropped sqlx transaction only
/// queues its rollback, and until the pooled connection is next used it would keep holding
/// its locks (Postgres row and advisory locks, SQLite's write lock). Commits when the body
/// asks to (`Ok((_, true))`), else rolls back. A failed commit is reported through
/// `on_commit` (its outcome is unknown), any other failure through `err`.
pub(crate) async fn settle<Tx, T, E>(
    tx: Tx,
    outcome: Result<(T, bool), E>,
    err: impl Fn(sqlx::Error) -> E,
    on_commit: impl Fn(sqlx::Error) -> E,
) -> Result<T, E>
where
    Tx: Settle,
{
    match outcome {
        Ok((value, true)) => {
            tx.commit().await.map_err(on_commit)?;
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

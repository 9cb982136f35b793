//! Postgres (feature `postgres`): the same store and audit log as SQLite, for many gates
//! and services on many hosts sharing one database.
//!
//! - Every change runs core's rule in a transaction holding the row's lock (`SELECT ... FOR
//!   UPDATE`); identical calls racing to create a request serialise on a transaction-scoped
//!   advisory lock of (requester, digest), so they get one request between them.
//! - A committed change is announced with `NOTIFY` (sent at commit, never for a rollback);
//!   each process keeps one `LISTEN`ing connection (besides the pool's
//!   [`PostgresOptions::max_connections`]) and wakes its waiters. When that connection is
//!   lost, a new one is made, and once it listens every waiter re-reads its request, so a
//!   notification sent while none listened is never missed.
//! - Audit appends from every writer are ordered by one transaction-scoped advisory lock
//!   of the log, and a record's `seq` is its key, so the log stays one gap-free sequence.
//!   The log's Merkle frontier is kept in the rows of its records (every
//!   `FRONTIER_EVERY`th), so an append writes its record's row and nothing else.
//! - Everything lives in one schema (`search_path`), `public` unless
//!   [`PostgresOptions::schema`] says otherwise; migrations run under an advisory lock.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use approvals_core::store::{Attach, Change, GrantChange, Store};
use approvals_core::{ApprovalRequest, Grant, GrantId, RequestId, StoreError, Timestamp};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};

use super::audit::{FRONTIER_EVERY, Recent, Row, head_from_recent};
use super::{
    AuditBackend, Batch, Build, DbError, Head, OpenError, Queries, SqlAudit, SqlAuditOptions,
    Watchers, decode_grant, decode_request, encode_grant, settle, sql_store, store_error,
};

const BACKEND: &str = "postgres";
/// The schema versions this build knows, in order; version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_sessions.sql"),
    include_str!("migrations/postgres/0003_head_in_record.sql"),
];
const META: &str = include_str!("migrations/postgres/0000_meta.sql");
/// The advisory lock key that serialises migrations ("APPV" and "MIGR").
const MIGRATION_LOCK: i64 = 0x4150_5056_4d49_4752;

/// How a Postgres database is used.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The schema holding approvals' tables (created if missing). `None`: `public`.
    pub schema: Option<String>,
    /// Connections in the pool (the listening connection is one more).
    pub max_connections: u32,
    /// How long to wait for a connection before failing closed.
    pub acquire_timeout: Duration,
    /// Create the schema and apply missing migrations (the default). When `false`, the
    /// schema must already be at this build's version, and nothing is written on connect.
    pub migrate: bool,
}

impl Default for PostgresOptions {
    /// The `public` schema, 8 connections, 5 s to get one.
    fn default() -> Self {
        Self {
            schema: None,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

/// A Postgres database holding the [`Store`] and the audit log ([`Postgres::audit`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use approvals_backends::postgres::Postgres;
/// let db = Postgres::connect("postgres://approvals@db.internal/approvals").await?;
/// // Gate::builder().store(db.clone()) ...
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// The NOTIFY channel: one per schema.
    channel: String,
    name: String,
    /// Names this handle's log: its store appends a change's records to the log itself
    /// only for a gate whose sink came from the same handle ([`Postgres::audit`]).
    log_id: String,
    /// The options of the sink last made from this handle: the store signs the checkpoints
    /// due after the records it appends itself.
    log_options: std::sync::Mutex<Option<SqlAuditOptions>>,
    watchers: Watchers,
    stop: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("database", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects with default options and applies any migrations the database lacks.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects, creates the schema if needed and applies any migrations it lacks.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, OpenError> {
        let schema = options
            .schema
            .clone()
            .unwrap_or_else(|| "public".to_owned());
        let connect = PgConnectOptions::from_str(url).map_err(|e| OpenError::Connect {
            database: redact(url),
            message: e.to_string(),
        })?;
        let name = format!(
            "postgres {}:{}/{} schema {schema}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or("-")
        );
        if !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || schema.is_empty()
            || schema.len() > 48
        {
            return Err(OpenError::Connect {
                database: name,
                message: format!(
                    "schema name {schema:?} must be 1 to 48 lowercase letters, digits or _"
                ),
            });
        }
        let connect = connect
            .options([("search_path", schema.as_str())])
            .application_name(&format!("approvals/{schema}"));
        let pool = PgPoolOptions::new()
            // The listening connection comes from the pool too, and holds it for good.
            .max_connections(options.max_connections.max(1) + 1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| OpenError::Connect {
                database: name.clone(),
                message: e.to_string(),
            })?;
        let migration: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), OpenError>> + Send>,
        > = Box::pin(migrate(
            pool.clone(),
            name.clone(),
            schema.clone(),
            options.migrate,
        ));
        if let Err(e) = migration.await {
            pool.close().await;
            return Err(e);
        }
        let channel = format!("approvals_{schema}");
        let listener = listener(&pool, &channel)
            .await
            .map_err(|e| OpenError::Connect {
                database: name.clone(),
                message: e.to_string(),
            })?;
        let (stop, stopped) = tokio::sync::watch::channel(());
        let inner = Arc::new(Inner {
            pool,
            channel,
            log_id: super::log_id(BACKEND, &name),
            log_options: std::sync::Mutex::new(None),
            name,
            watchers: Watchers::default(),
            stop,
        });
        tokio::spawn(listen(Arc::downgrade(&inner), listener, stopped));
        Ok(Self { inner })
    }

    /// The audit log kept in this database, after checking that its head matches its
    /// records. Appends from every process and host form one ordered log.
    pub async fn audit(&self, options: SqlAuditOptions) -> Result<SqlAudit, OpenError> {
        let database = self.inner.name.clone();
        self.check_audit_head(&database).await?;
        self.check_audit_origin(&database, &options).await?;
        *self
            .inner
            .log_options
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(options.clone());
        Ok(SqlAudit::start(
            Arc::new(AuditDb {
                name: database,
                writer: super::Writer::new((*self.inner.pool.connect_options()).clone(), None),
            }),
            options,
            &self.inner.log_id,
        ))
    }

    /// Closes the pool and the listening connection.
    pub async fn close(&self) {
        self.inner.stop.send_replace(());
        super::close_pool(&self.inner.pool).await;
    }

    /// Runs one statement that writes, outside a transaction, on the one pool (Postgres
    /// takes many writers at once).
    async fn write_one<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<(), sqlx::Error> {
        query.execute(&self.inner.pool).await.map(drop)
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.inner
            .pool
            .begin()
            .await
            .map_err(|e| store_error(BACKEND, e))
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

async fn migrate(
    pool: PgPool,
    database: String,
    schema: String,
    apply_missing: bool,
) -> Result<(), OpenError> {
    let mut tx = pool.begin().await.map_err(|e| OpenError::Connect {
        database: database.clone(),
        message: e.to_string(),
    })?;
    let conn: &mut PgConnection = &mut tx;
    let outcome = if apply_missing {
        migrate_in(conn, &database, &schema).await
    } else {
        check_version(conn, &database).await
    };
    let failed = |e: sqlx::Error| OpenError::Migration {
        database: database.clone(),
        version: MIGRATIONS.len() as i64,
        message: e.to_string(),
    };
    settle(tx, outcome, failed, failed).await
}

async fn migrate_in(
    conn: &mut PgConnection,
    database: &str,
    schema: &str,
) -> Result<((), bool), OpenError> {
    let failed = |version: i64, e: sqlx::Error| OpenError::Migration {
        database: database.to_owned(),
        version,
        message: e.to_string(),
    };
    let version = prepare(conn, schema).await.map_err(|e| failed(0, e))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(OpenError::NewerSchema {
            database: database.to_owned(),
            found: version,
            supported,
        });
    }
    let first = usize::try_from(version).unwrap_or(0);
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(first) {
        let to = n as i64 + 1;
        apply(conn, sql, to).await.map_err(|e| failed(to, e))?;
    }
    Ok(((), true))
}

/// Checks, without writing, that the schema is at this build's version.
async fn check_version(conn: &mut PgConnection, database: &str) -> Result<((), bool), OpenError> {
    let version: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT version FROM approvals_schema WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await;
    let supported = MIGRATIONS.len() as i64;
    let found = version.ok().flatten().unwrap_or(0);
    if found > supported {
        return Err(OpenError::NewerSchema {
            database: database.to_owned(),
            found,
            supported,
        });
    }
    if found < supported {
        return Err(OpenError::Migration {
            database: database.to_owned(),
            version: found + 1,
            message: "the schema is missing or not migrated, and it was opened to read only".into(),
        });
    }
    Ok(((), false))
}

/// Takes the migration lock, creates the schema and the version table; returns the version.
async fn prepare(conn: &mut PgConnection, schema: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Executor;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    // The name was checked to be lowercase letters, digits and `_`.
    let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
    conn.execute(create.as_str()).await?;
    conn.execute(META).await?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM approvals_schema WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(version.unwrap_or(0))
}

async fn apply(conn: &mut PgConnection, sql: &'static str, to: i64) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(sql).await?;
    sqlx::query(
        "INSERT INTO approvals_schema (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = $1",
    )
    .bind(to)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A connection of `pool` that `LISTEN`s on `channel`.
async fn listener(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// How long the listener waits before listening again after a failure.
const RELISTEN_PAUSE: Duration = Duration::from_millis(500);

/// Wakes waiters on NOTIFY. Whenever the listening connection was lost, a notification may
/// have been missed, so once a connection listens again every waiter is woken to re-read.
///
/// Waking them when the loss is seen is not enough: a change committed after their re-read
/// and before the new `LISTEN` would reach nobody, and they would wait for good. sqlx
/// re-listens by itself after a plain disconnection and only then returns `Ok(None)`; after
/// any error (its own reconnection failing included), the listener is replaced with a new
/// one here, and the waiters are woken once that one listens.
async fn listen(
    handle: Weak<Inner>,
    mut listener: PgListener,
    mut stopped: tokio::sync::watch::Receiver<()>,
) {
    loop {
        let next = tokio::select! {
            _ = stopped.changed() => return,
            n = listener.try_recv() => n,
        };
        let Some(inner) = handle.upgrade() else {
            return;
        };
        match next {
            Ok(Some(n)) => match n.payload().parse::<RequestId>() {
                Ok(id) => inner.watchers.bump(id),
                Err(_) => inner.watchers.bump_all(),
            },
            Ok(None) => {
                tracing::warn!(database = %inner.name, "lost the LISTEN connection; listening again on a new one, waiters re-read");
                inner.watchers.bump_all();
            }
            Err(e) => {
                tracing::warn!(database = %inner.name, error = %e, "LISTEN connection failed; listening again on a new one");
                drop(inner);
                drop(listener);
                match relisten(&handle, &mut stopped).await {
                    Some(again) => listener = again,
                    None => return,
                }
            }
        }
    }
}

/// A new listening connection, made after a failure: tried at once, then every
/// [`RELISTEN_PAUSE`] until it listens (then every waiter is woken to re-read) or the
/// handle is closed or dropped (`None`).
async fn relisten(
    handle: &Weak<Inner>,
    stopped: &mut tokio::sync::watch::Receiver<()>,
) -> Option<PgListener> {
    loop {
        // Not held across the pause: a dropped handle ends this task.
        let inner = handle.upgrade()?;
        let attempt = tokio::select! {
            _ = stopped.changed() => return None,
            l = listener(&inner.pool, &inner.channel) => l,
        };
        match attempt {
            Ok(listening) => {
                tracing::info!(database = %inner.name, "listening again; waiters re-read");
                inner.watchers.bump_all();
                return Some(listening);
            }
            Err(e) => {
                tracing::warn!(database = %inner.name, error = %e, "could not listen again; retrying");
            }
        }
        drop(inner);
        tokio::select! {
            _ = stopped.changed() => return None,
            () = tokio::time::sleep(RELISTEN_PAUSE) => {}
        }
    }
}

const QUERIES: Queries = Queries {
    get: "SELECT body FROM approvals_requests WHERE id = $1",
    get_locked: "SELECT body FROM approvals_requests WHERE id = $1 FOR UPDATE",
    attach_candidates: "SELECT id, body FROM approvals_requests WHERE requester = $1 AND digest = $2 AND attachable ORDER BY id DESC",
    insert_request: "INSERT INTO approvals_requests (id, requester, digest, attachable, pending, next_due, version, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    update_request: "UPDATE approvals_requests SET requester = $2, digest = $3, attachable = $4, pending = $5, next_due = $6, version = $7, body = $8 WHERE id = $1",
    list_open: "SELECT id, body FROM approvals_requests WHERE pending AND id > $1 ORDER BY id LIMIT $2",
    list_decided: "SELECT id, body FROM approvals_requests WHERE NOT pending ORDER BY id DESC LIMIT $1",
    due: "SELECT id FROM approvals_requests WHERE pending AND next_due <= $1 ORDER BY next_due, id",
    set_aside: "UPDATE approvals_requests SET pending = false, attachable = false, next_due = NULL WHERE id = $1",
    insert_grant: "INSERT INTO approvals_grants (id, requester, policy, action, body) VALUES ($1, $2, $3, $4, $5)",
    grants_for: "SELECT id, body FROM approvals_grants WHERE requester = $1 AND policy = $2 AND action = $3 ORDER BY id",
    grant_locked: "SELECT body FROM approvals_grants WHERE id = $1 FOR UPDATE",
    update_grant: "UPDATE approvals_grants SET body = $1 WHERE id = $2",
    grants: "SELECT id, body FROM approvals_grants ORDER BY id",
    put_session: "INSERT INTO approvals_sessions (key, expires_at, body) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at, body = EXCLUDED.body",
    session: "SELECT body FROM approvals_sessions WHERE key = $1 AND expires_at > $2",
    end_session: "DELETE FROM approvals_sessions WHERE key = $1 OR expires_at <= $2",
};

/// Takes the lock that orders the log's writers: transaction-scoped, advisory (nothing is
/// written for it), one per schema. Whoever holds it reads the head and appends after it.
macro_rules! lock_audit {
    () => {
        "pg_advisory_xact_lock(hashtextextended('approvals_audit ' || current_schema(), 0))"
    };
}
/// [`lock_audit`] as a statement. The statements after it in the transaction read a
/// snapshot taken after it was granted; a statement that takes it reads what its snapshot,
/// taken before, holds.
const LOCK_AUDIT: &str = concat!("SELECT ", lock_audit!());

/// The log's head as stored: the latest checkpoint's size and time, beside the log's last
/// `$1` (`FRONTIER_EVERY`) records, newest first, each with the frontier its row keeps
/// (one row of `NULL`s beside them for an empty log). See `head_from_recent`.
const READ_HEAD: &str = "SELECT h.signed_size, h.signed_at, a.seq, a.leaf, a.frontier \
    FROM approvals_audit_head h LEFT JOIN LATERAL \
    (SELECT seq, leaf, frontier FROM approvals_audit ORDER BY seq DESC LIMIT $1) a ON true \
    WHERE h.id = 1 ORDER BY a.seq DESC";

impl Postgres {
    /// Checks that the log's head can be read from its last records before a sink
    /// appends: they follow each other, and one of them keeps a frontier that ends at it
    /// (or they run back to the first record).
    async fn check_audit_head(&self, database: &str) -> Result<(), OpenError> {
        let rows = recent_records(&self.inner.pool)
            .await
            .map_err(|e| OpenError::Connect {
                database: database.to_owned(),
                message: e.to_string(),
            })?;
        head_of(rows).map(drop).map_err(|what| OpenError::Audit {
            database: database.to_owned(),
            what,
        })
    }

    /// Identical calls serialise here until one of them commits its request: a
    /// transaction-scoped advisory lock of (schema, requester, digest).
    async fn lock_call(
        &self,
        conn: &mut PgConnection,
        requester: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        let channel = &self.inner.channel;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{channel}\u{1f}{requester}\u{1f}{digest}"))
            .execute(conn)
            .await
            .map_err(|e| store_error(BACKEND, e))?;
        Ok(())
    }

    /// A change and its records in one transaction, statement by statement.
    async fn recorded(
        &self,
        id: RequestId,
        change: approvals_core::store::RecordedChange<'_>,
    ) -> Result<(ApprovalRequest, bool, Vec<u64>), StoreError> {
        super::retrying!(super::in_transaction!(self, BACKEND, tx =>
        self.update_recorded_in(&mut tx, id, &mut *change)
            .await
            .map(|done| {
                let commit = done.1 || !done.2.is_empty();
                (done, commit)
            })))
    }

    /// A new request (or the one it joins) and its records in one transaction, statement
    /// by statement.
    async fn created(
        &self,
        request: ApprovalRequest,
        records: approvals_core::store::RecordedAttach<'_>,
    ) -> Result<(Attach, Vec<u64>), StoreError> {
        super::retrying!(super::in_transaction!(self, BACKEND, tx =>
        match self.attach_in(&mut tx, &request).await {
            Ok((attach, _)) => self.append_in(&mut tx, records(&attach))
                .await
                .map(|seqs| ((attach, seqs), true)),
            Err(e) => Err(e),
        }))
    }

    /// NOTIFY, delivered to every listener when (and only if) the transaction commits.
    async fn announce(&self, conn: &mut PgConnection, id: RequestId) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.inner.channel)
            .bind(id.to_string())
            .execute(conn)
            .await
            .map_err(|e| store_error(BACKEND, e))?;
        Ok(())
    }

    /// [`Self::update_in`] for a change that returns its audit records, which are
    /// appended to the log in the same transaction; returns their sequence numbers
    /// too.
    async fn update_recorded_in(
        &self,
        conn: &mut PgConnection,
        id: RequestId,
        change: approvals_core::store::RecordedChange<'_>,
    ) -> Result<(ApprovalRequest, bool, Vec<u64>), StoreError> {
        let mut records = Vec::new();
        let (request, changed) = self
            .update_in(&mut *conn, id, &mut |r| records = change(r))
            .await?;
        let seqs = self.append_in(conn, records).await?;
        Ok((request, changed, seqs))
    }

    /// Appends `records` to the audit log inside the caller's transaction: numbered
    /// after the head, which is read holding the log's lock (as the log's writer does
    /// once it finds the head moved), with a checkpoint if one is due under the options
    /// of this handle's sink.
    async fn append_in(
        &self,
        conn: &mut PgConnection,
        records: Vec<approvals_core::AuditEvent>,
    ) -> Result<Vec<u64>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |e: DbError| e.into_store(BACKEND);
        let expected = locked_head(&mut *conn).await.map_err(failed)?;
        let mut head = expected.clone();
        let rows = records
            .into_iter()
            .map(|event| Row::append(&mut head, event))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let checkpoint = self.checkpoint_due(&mut head)?;
        let seqs = rows.iter().map(|r| r.seq.unsigned_abs()).collect();
        let batch = Batch {
            rows,
            head,
            checkpoint,
        };
        if !write_if(conn, &expected, &batch)
            .await
            .map_err(|e| store_error(BACKEND, e))?
        {
            return Err(failed(DbError::failed(HELD_HEAD_MOVED)));
        }
        Ok(seqs)
    }
}

impl super::Settle for sqlx::Transaction<'_, sqlx::Postgres> {
    fn commit(self) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send {
        sqlx::Transaction::commit(self)
    }

    fn rollback(self) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send {
        sqlx::Transaction::rollback(self)
    }
}

sql_store!(Postgres, PgConnection, BACKEND, QUERIES);

/// The audit log's side of the database. Its one writer keeps a connection of its own
/// (`sql::writer`) rather than taking one from the pool per batch: the pool pings a
/// connection on its way back, a round trip on every append. A failed statement closes
/// the connection, and the next batch connects afresh.
struct AuditDb {
    name: String,
    writer: super::Writer<sqlx::Postgres>,
}

/// A batch with a checkpoint, in one statement: under the log's lock, move the head row's
/// signed size and time if they and the log's last record are still the expected ones,
/// and only then insert the records and the checkpoint.
const WRITE_IF: &str = concat!(
    "
WITH held AS (SELECT ",
    lock_audit!(),
    "), head AS (
    UPDATE approvals_audit_head SET signed_size = $5, signed_at = $6
    WHERE id = 1 AND signed_size = $7 AND EXISTS (SELECT 1 FROM held)
    AND (SELECT leaf FROM approvals_audit ORDER BY seq DESC LIMIT 1) IS NOT DISTINCT FROM $8
    RETURNING 1
), records AS (
    INSERT INTO approvals_audit (seq, leaf, record, frontier)
    SELECT u.seq, u.leaf, u.record, u.frontier
    FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::bytea[]) AS u(seq, leaf, record, frontier)
    WHERE EXISTS (SELECT 1 FROM head)
), checkpoint AS (
    INSERT INTO approvals_checkpoints (size, note)
    SELECT $9::bigint, $10::text
    WHERE $9::bigint IS NOT NULL AND EXISTS (SELECT 1 FROM head)
)
SELECT count(*) FROM head"
);

/// The records of [`APPEND_ONE`] or [`APPEND_MANY`] (`seq, leaf, record, frontier`),
/// inserted under the log's lock, as every writer of the log takes it.
///
/// The statement does not read the log's last record: the key alone keeps a batch from
/// being written on a head that moved. A writer builds only on a head it read from the
/// database or one its own write confirmed (`audit::commit` trusts nothing else), and
/// records are only ever added; so the batch's first `seq` is free exactly when the log's
/// last record is still the one the batch was built after, and a taken one fails the
/// statement whole (see `write_if`). Reading that record in the statement, as this did,
/// cost the server about an eighth more than the INSERT (pgbench, one client, prepared,
/// six runs of 5 s each in turn: 0.251–0.272 ms against 0.221–0.241 without the read).
macro_rules! append_under_lock {
    ($records:literal, $from:literal) => {
        concat!(
            "INSERT INTO approvals_audit (seq, leaf, record, frontier) SELECT ",
            $records,
            " FROM (SELECT ",
            lock_audit!(),
            ") AS held",
            $from
        )
    };
}

/// Nearly every batch: records without a checkpoint, one INSERT. A writer that committed
/// after this statement's snapshot was taken took the lock first and wrote the `seq` this
/// batch starts with, which the key refuses too.
const APPEND_ONE: &str = append_under_lock!("$1::bigint, $2::bytea, $3::text, $4::bytea", "");

/// [`APPEND_ONE`] for several records.
const APPEND_MANY: &str = append_under_lock!(
    "u.seq, u.leaf, u.record, u.frontier",
    ", UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::bytea[]) AS u(seq, leaf, record, frontier)"
);

/// Why a batch written holding the log's lock found the log moved.
const HELD_HEAD_MOVED: &str = "the log's head moved while its lock was held";

#[async_trait]
impl AuditBackend for AuditDb {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn read_head(&self) -> Result<Head, DbError> {
        let mut conn = self.writer.hold().await.map_err(DbError::from_sqlx)?;
        let head = head_on(&mut conn).await?;
        conn.release();
        Ok(head)
    }

    async fn latest_checkpoint(&self) -> Result<Option<String>, DbError> {
        let mut conn = self.writer.hold().await.map_err(DbError::from_sqlx)?;
        let note =
            sqlx::query_scalar("SELECT note FROM approvals_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await
                .map_err(DbError::from_sqlx)?;
        conn.release();
        Ok(note)
    }

    async fn write_if(&self, expected: &Head, batch: &Batch) -> Result<bool, DbError> {
        let mut conn = self.writer.hold().await.map_err(DbError::from_sqlx)?;
        let moved = write_if(&mut conn, expected, batch)
            .await
            .map_err(DbError::from_sqlx)?;
        conn.release();
        Ok(moved)
    }

    /// In one transaction on the writer's connection that holds the log's lock.
    async fn write_locked(
        &self,
        build: Build<'_>,
    ) -> Result<(Batch, Result<(), DbError>), DbError> {
        let mut conn = self.writer.hold().await.map_err(DbError::from_sqlx)?;
        let outcome = write_locked(&mut conn, build).await;
        // After any failure the connection goes, whatever state it was left in.
        if matches!(outcome, Ok((_, Ok(())))) {
            conn.release();
        }
        outcome
    }
}

/// A row of [`READ_HEAD`].
type HeadRow = (i64, i64, Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The rows of [`READ_HEAD`], read on `conn`.
async fn recent_records<'c>(conn: impl sqlx::PgExecutor<'c>) -> Result<Vec<HeadRow>, sqlx::Error> {
    sqlx::query_as(READ_HEAD)
        .bind(FRONTIER_EVERY)
        .fetch_all(conn)
        .await
}

/// The head from the rows of [`READ_HEAD`].
fn head_of(rows: Vec<HeadRow>) -> Result<Head, String> {
    let Some(&(signed_size, signed_at, ..)) = rows.first() else {
        return Err("the audit log has no head row".into());
    };
    let recent: Vec<Recent> = rows
        .into_iter()
        .filter_map(|(_, _, seq, leaf, frontier)| Some((seq?, leaf?, frontier)))
        .collect();
    head_from_recent(&recent, signed_size, signed_at)
}

/// The head as stored, read on `conn`.
async fn head_on(conn: &mut PgConnection) -> Result<Head, DbError> {
    let rows = recent_records(conn).await.map_err(DbError::from_sqlx)?;
    Ok(head_of(rows)?)
}

/// Takes the log's lock in `conn`'s transaction and reads the head, which no other writer
/// can move until the transaction ends.
async fn locked_head(conn: &mut PgConnection) -> Result<Head, DbError> {
    sqlx::query(LOCK_AUDIT)
        .execute(&mut *conn)
        .await
        .map_err(DbError::from_sqlx)?;
    head_on(conn).await
}

/// [`AuditBackend::write_locked`] on `conn`.
async fn write_locked(
    conn: &mut PgConnection,
    build: Build<'_>,
) -> Result<(Batch, Result<(), DbError>), DbError> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.map_err(DbError::from_sqlx)?;
    let head = locked_head(&mut tx).await?;
    let batch = build(head.clone())?;
    if batch.is_empty() {
        tx.rollback().await.map_err(DbError::from_sqlx)?;
        return Ok((batch, Ok(())));
    }
    let written = match write_if(&mut tx, &head, &batch).await {
        Ok(true) => tx.commit().await.map_err(DbError::from_sqlx),
        Ok(false) => Err(DbError::failed(HELD_HEAD_MOVED)),
        Err(e) => Err(DbError::from_sqlx(e)),
    };
    Ok((batch, written))
}

/// Runs [`WRITE_IF`] for `batch` on `conn`, or for a batch without a checkpoint (nearly
/// every one) [`APPEND_ONE`] or [`APPEND_MANY`]: whether the log was still at `expected`
/// and the batch was written (else nothing was). A batch whose first `seq` another writer
/// took meanwhile is refused by the key, as a statement that fails whole; that is the log
/// having moved, not an error.
async fn write_if(
    conn: &mut PgConnection,
    expected: &Head,
    batch: &Batch,
) -> Result<bool, sqlx::Error> {
    match try_write_if(conn, expected, batch).await {
        Err(sqlx::Error::Database(e))
            if e.is_unique_violation() && e.table() == Some("approvals_audit") =>
        {
            Ok(false)
        }
        other => other,
    }
}

/// [`write_if`], a taken `seq` left an error.
async fn try_write_if(
    conn: &mut PgConnection,
    expected: &Head,
    batch: &Batch,
) -> Result<bool, sqlx::Error> {
    let h = &batch.head;
    let number = |n: u64| i64::try_from(n).map_err(|e| sqlx::Error::Encode(Box::new(e)));
    let last_leaf = expected.last_leaf().map(|l| l.to_vec());
    // The records as four arrays, for `UNNEST`.
    let columns = || {
        let rows = batch.rows.iter();
        (
            rows.clone().map(|r| r.seq).collect::<Vec<i64>>(),
            rows.clone()
                .map(|r| r.leaf.as_slice())
                .collect::<Vec<&[u8]>>(),
            rows.clone()
                .map(|r| r.record.as_str())
                .collect::<Vec<&str>>(),
            rows.map(|r| r.frontier.as_deref())
                .collect::<Vec<Option<&[u8]>>>(),
        )
    };
    if batch.checkpoint.is_none() && !batch.rows.is_empty() {
        // Without a checkpoint the head row's signed size and time stay as they were.
        let query = match batch.rows.as_slice() {
            [row] => sqlx::query(APPEND_ONE)
                .bind(row.seq)
                .bind(row.leaf.as_slice())
                .bind(row.record.as_str())
                .bind(row.frontier.as_deref()),
            _ => {
                let (seqs, leaves, records, frontiers) = columns();
                sqlx::query(APPEND_MANY)
                    .bind(seqs)
                    .bind(leaves)
                    .bind(records)
                    .bind(frontiers)
            }
        };
        let inserted = query.execute(conn).await?.rows_affected();
        return Ok(inserted > 0);
    }
    let (seqs, leaves, records, frontiers) = columns();
    let (size, note) = match &batch.checkpoint {
        Some((size, note)) => (Some(*size), Some(note.as_str())),
        None => (None, None),
    };
    let moved: i64 = sqlx::query_scalar(WRITE_IF)
        .bind(&seqs)
        .bind(&leaves)
        .bind(&records)
        .bind(&frontiers)
        .bind(number(h.signed_size())?)
        .bind(h.signed_at())
        .bind(number(expected.signed_size())?)
        .bind(last_leaf)
        .bind(size)
        .bind(note)
        .fetch_one(conn)
        .await?;
    Ok(moved == 1)
}

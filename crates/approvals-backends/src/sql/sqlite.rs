//! SQLite: the embedded default (feature `sqlite`). One file holds requests, reviews,
//! grants and the signed audit log.
//!
//! - WAL journal with `synchronous = FULL`: a committed change survives power loss.
//! - Every change runs core's rule inside `BEGIN IMMEDIATE`, so two processes sharing the
//!   file serialise on SQLite's write lock and each change sees the one before.
//! - A process writes on one connection of its own (the store's changes and the log's
//!   appends queue for it in order; see `sql::writer`) and reads on a pool: its writers never
//!   race each other for SQLite's lock, so none sleeps in SQLite's busy handler, which waits
//!   1 to 100 ms a try; only another process's writer can make it wait, up to the busy
//!   timeout.
//! - Waiters in this process wake at once; a change made by another process wakes them
//!   within [`SqliteOptions::poll_interval`] (SQLite has no cross-process notification, so
//!   a watcher reads `PRAGMA data_version`, which moves when another connection commits,
//!   and only while someone waits; then it reads which requests were written since, each
//!   stamped in commit order, and wakes only their waiters).
//! - The schema is versioned (`PRAGMA user_version`) and marked as ours
//!   (`PRAGMA application_id`); migrations are compiled in and applied on open under the
//!   write lock, so two processes opening a new file at once are safe.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use approvals_core::store::{Attach, Change, GrantChange, Store};
use approvals_core::{ApprovalRequest, Grant, GrantId, RequestId, StoreError, Timestamp};
use async_trait::async_trait;
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use super::writer::WriteTx;

use super::{
    AuditBackend, Batch, Build, DbError, Head, OpenError, Queries, SqlAudit, SqlAuditOptions,
    Watchers, Writer, decode_grant, decode_request, encode_grant, head_from, settle, sql_store,
    store_error,
};

const BACKEND: &str = "sqlite";
/// `PRAGMA application_id` of an approvals database: "APPV".
const APPLICATION_ID: i64 = 0x4150_5056;
/// The schema versions this build knows, in order; version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_sessions.sql"),
    include_str!("migrations/sqlite/0003_changes.sql"),
    include_str!("migrations/sqlite/0004_head_in_record.sql"),
    include_str!("migrations/sqlite/0005_appends_in_order.sql"),
];

/// How an SQLite database is opened.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How often a waiter checks for changes made by other processes (in-process changes
    /// wake waiters at once). The bound on cross-process wake-up latency.
    pub poll_interval: Duration,
    /// How long a write waits for another process's write lock before failing closed.
    pub busy_timeout: Duration,
    /// Connections that read. Writes have one connection of their own: SQLite lets one
    /// writer in at a time, and writers of one process that raced for its lock on several
    /// connections slept in its busy handler (1 to 100 ms a try) instead of taking turns.
    pub max_connections: u32,
}

impl Default for SqliteOptions {
    /// 50 ms polling, 5 s busy timeout, 4 reading connections.
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(50),
            busy_timeout: Duration::from_secs(5),
            max_connections: 4,
        }
    }
}

/// An SQLite database holding the [`Store`] and the audit log ([`Sqlite::audit`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use approvals_backends::sqlite::Sqlite;
/// use approvals_backends::sql::SqlAuditOptions;
/// use approvals_core::note::NoteSigner;
///
/// let db = Sqlite::open("approvals.db").await?;
/// let signer = NoteSigner::generate("audit.example.com")?;
/// let audit = db.audit(SqlAuditOptions::new("audit.example.com/approvals", signer)).await?;
/// // Gate::builder().store(db.clone()).audit(audit) ...
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection, so that this process's writers queue here, in order, and
    /// only one of them at a time waits for SQLite's write lock (which other processes may
    /// hold; then SQLite's busy handler waits, up to the busy timeout).
    writer: Arc<Writer<sqlx::Sqlite>>,
    path: PathBuf,
    /// Names this handle's log: its store appends a change's records to the log itself
    /// only for a gate whose sink came from the same handle ([`Sqlite::audit`]).
    log_id: String,
    /// The options of the sink last made from this handle: the store signs the checkpoints
    /// due after the records it appends itself.
    log_options: std::sync::Mutex<Option<SqlAuditOptions>>,
    watchers: Watchers,
    /// Stops the change watcher when sent to, or dropped with the last handle.
    stop: tokio::sync::watch::Sender<()>,
    watcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens (or creates) the database at `path` with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (or creates) the database at `path`, applying any migrations it lacks.
    ///
    /// A file that is not SQLite, an SQLite database of another application, or a schema
    /// newer than this build is an error; the file is left as it was.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, OpenError> {
        Self::start(path.as_ref().to_owned(), options, false).await
    }

    /// Opens an existing database without writing to it (for `approvals audit verify`, or
    /// a file on read-only media): no migration is applied, and every write fails with a
    /// [`StoreError`].
    pub async fn open_read_only(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::start(path.as_ref().to_owned(), SqliteOptions::default(), true).await
    }

    async fn start(
        path: PathBuf,
        options: SqliteOptions,
        read_only: bool,
    ) -> Result<Self, OpenError> {
        let database = path.display().to_string();
        check_header(&path)?;
        if read_only && !path.exists() {
            return Err(OpenError::Connect {
                database,
                message: "no such file".into(),
            });
        }
        let mut connect = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(options.busy_timeout);
        connect = if read_only {
            connect.read_only(true)
        } else {
            connect
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        };
        let busy = options.busy_timeout;
        let pool = while_turning_to_wal(busy, || {
            pool_options(options.max_connections.max(1)).connect_with(connect.clone())
        })
        .await
        .map_err(|e| open_error(&database, e))?;
        let writer = Arc::new(Writer::new(
            connect.clone(),
            Some(
                while_turning_to_wal(busy, || connect.connect())
                    .await
                    .map_err(|e| open_error(&database, e))?,
            ),
        ));
        // Boxed as `Send` here, where its lifetimes are concrete: rustc cannot prove an
        // sqlx transaction future `Send` for every lifetime when `open` is spawned.
        let migration: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), OpenError>> + Send>,
        > = Box::pin(migrate(writer.clone(), database.clone(), read_only));
        migration.await?;
        let watcher = while_turning_to_wal(busy, || connect.connect())
            .await
            .map_err(|e| open_error(&database, e))?;
        let (stop, stopped) = tokio::sync::watch::channel(());
        let log_id = super::log_id(BACKEND, &database);
        let inner = Arc::new(Inner {
            pool,
            writer,
            log_id,
            log_options: std::sync::Mutex::new(None),
            path,
            watchers: Watchers::default(),
            stop,
            watcher: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(watch_changes(
            Arc::downgrade(&inner),
            watcher,
            options.poll_interval.max(Duration::from_millis(1)),
            stopped,
        ));
        *inner.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Self { inner })
    }

    /// Closes every connection, waiting for them to finish (SQLite then checkpoints its WAL
    /// into the main file). Handles still held fail afterwards.
    pub async fn close(&self) {
        self.inner.stop.send_replace(());
        let watcher = self
            .inner
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = watcher {
            let _ = task.await;
        }
        self.inner.writer.close().await;
        super::close_pool(&self.inner.pool).await;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The audit log kept in this database, after checking that its head matches its
    /// records. Appends from every process sharing the file form one ordered log.
    pub async fn audit(&self, options: SqlAuditOptions) -> Result<SqlAudit, OpenError> {
        let database = self.inner.path.display().to_string();
        self.check_audit_head(&database).await?;
        self.check_audit_origin(&database, &options).await?;
        *self
            .inner
            .log_options
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(options.clone());
        Ok(SqlAudit::start(
            Arc::new(AuditDb {
                pool: self.inner.pool.clone(),
                writer: self.inner.writer.clone(),
                name: format!("sqlite {database}"),
            }),
            options,
            &self.inner.log_id,
        ))
    }

    /// Runs one statement that writes, outside a transaction, on the writing connection.
    async fn write_one<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<(), sqlx::Error> {
        let mut held = self.inner.writer.hold().await?;
        // A statement that failed leaves the connection in doubt: it is closed.
        query.execute(&mut *held).await?;
        held.release();
        Ok(())
    }

    async fn begin(&self) -> Result<WriteTx, StoreError> {
        // IMMEDIATE takes the write lock first: a read-then-write transaction that only
        // upgraded later could fail with SQLITE_BUSY while another process writes.
        self.inner
            .writer
            .begin("BEGIN IMMEDIATE")
            .await
            .map_err(|e| store_error(BACKEND, e))
    }
}

/// A pool of `connections` that read one file (writes have a connection of their own:
/// see `Writer`).
fn pool_options(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        // A local file's connection cannot silently die; pinging it on every acquire
        // would add a round trip to SQLite's worker thread to every read.
        .test_before_acquire(false)
}

/// Refuses a file that exists and is not SQLite before the driver touches it: opening it
/// in WAL mode would otherwise try to write to it.
fn check_header(path: &Path) -> Result<(), OpenError> {
    use std::io::Read;
    let database = path.display().to_string();
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(OpenError::Connect {
                database,
                message: e.to_string(),
            });
        }
    };
    let mut header = [0u8; 16];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => {
                return Err(OpenError::Connect {
                    database,
                    message: e.to_string(),
                });
            }
        }
    }
    // An empty file is a new database; anything else must carry SQLite's magic string.
    if read == 0 || &header[..read] == b"SQLite format 3\0" {
        return Ok(());
    }
    Err(OpenError::NotADatabase {
        database,
        message: "the file does not start with SQLite's header".into(),
    })
}

/// Connects, trying again for up to `busy` while the file is busy: a new file is turned to
/// WAL by the first connection to it, and that takes a lock SQLite's busy handler does not
/// wait for (sqlx says so of `journal_mode`), so opens that race on a new file (processes
/// started together) can find it busy however long the busy timeout.
async fn while_turning_to_wal<T, F>(
    busy: Duration,
    mut connect: impl FnMut() -> F,
) -> Result<T, sqlx::Error>
where
    F: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let until = std::time::Instant::now() + busy;
    let mut pause = Duration::from_millis(1);
    loop {
        match connect().await {
            Err(e) if is_busy(&e) && std::time::Instant::now() + pause < until => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// SQLITE_BUSY, or one of its extended codes.
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|db| db.code()?.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

fn open_error(database: &str, e: sqlx::Error) -> OpenError {
    let message = e.to_string();
    if let Some(db) = e.as_database_error() {
        // SQLITE_NOTADB (26) and SQLITE_CORRUPT (11).
        if matches!(db.code().as_deref(), Some("26" | "11")) {
            return OpenError::NotADatabase {
                database: database.to_owned(),
                message,
            };
        }
    }
    OpenError::Connect {
        database: database.to_owned(),
        message,
    }
}

/// Applies the migrations the file lacks, under the write lock.
async fn migrate(
    writer: Arc<Writer<sqlx::Sqlite>>,
    database: String,
    read_only: bool,
) -> Result<(), OpenError> {
    let begin = if read_only {
        "BEGIN"
    } else {
        "BEGIN IMMEDIATE"
    };
    let mut tx = match writer.begin(begin).await {
        Ok(tx) => tx,
        Err(e) => return Err(open_error(&database, e)),
    };
    let conn: &mut SqliteConnection = &mut tx;
    let outcome = migrate_in(conn, &database, read_only).await;
    settle(
        tx,
        outcome,
        |e| open_error(&database, e),
        |e| open_error(&database, e),
    )
    .await
}

async fn migrate_in(
    conn: &mut SqliteConnection,
    database: &str,
    read_only: bool,
) -> Result<((), bool), OpenError> {
    let database = database.to_owned();
    let (app, version, tables) = match read_header(conn).await {
        Ok(v) => v,
        Err(e) => return Err(open_error(&database, e)),
    };
    let supported = MIGRATIONS.len() as i64;
    if app == 0 && tables > 0 {
        return Err(OpenError::Foreign {
            database,
            what: format!(
                "the database already has {tables} table(s) and is not marked as an approvals database"
            ),
        });
    }
    if app != 0 && app != APPLICATION_ID {
        return Err(OpenError::Foreign {
            database,
            what: format!(
                "the database's application_id is {app:#x}, not approvals' {APPLICATION_ID:#x}"
            ),
        });
    }
    if version > supported {
        return Err(OpenError::NewerSchema {
            database,
            found: version,
            supported,
        });
    }
    if read_only {
        if version < supported {
            return Err(OpenError::Migration {
                database,
                version: version + 1,
                message: "the database needs migrating, and it was opened read-only".into(),
            });
        }
        return Ok(((), false));
    }
    let first = usize::try_from(version).unwrap_or(0);
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(first) {
        let to = n as i64 + 1;
        // PRAGMAs take no bound parameters; both values are our own integers.
        let stamp =
            format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {to};");
        if let Err(e) = apply(conn, sql, stamp).await {
            return Err(OpenError::Migration {
                database,
                version: to,
                message: e.to_string(),
            });
        }
    }
    Ok(((), true))
}

/// `(application_id, user_version, tables)`.
async fn read_header(conn: &mut SqliteConnection) -> Result<(i64, i64, i64), sqlx::Error> {
    let app: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut *conn)
        .await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((app, version, tables))
}

async fn apply(
    conn: &mut SqliteConnection,
    sql: &'static str,
    stamp: String,
) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(sql).await?;
    conn.execute(stamp.as_str()).await?;
    Ok(())
}

/// Wakes waiters when another connection commits, while anyone waits: the waiters of the
/// requests stamped since the last look (`changed`), not every waiter in the process, which
/// would make each commit elsewhere cost a read per waiting call.
async fn watch_changes(
    inner: Weak<Inner>,
    mut conn: SqliteConnection,
    every: Duration,
    mut stopped: tokio::sync::watch::Receiver<()>,
) {
    // The `data_version` last seen, and the highest stamp read with it.
    let mut seen: Option<(i64, i64)> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => {
                let _ = sqlx::Connection::close(conn).await;
                return;
            }
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if !inner.watchers.any() {
            // Nobody waits: forget what was seen, so the next waiter's first check wakes it
            // (it may have read its row before a commit this watcher has not seen).
            seen = None;
            continue;
        }
        match changes_since(&mut conn, seen).await {
            Ok((now, changed)) => {
                match (seen, changed) {
                    // The first look since nobody waited: every waiter reads again, once.
                    (None, _) => inner.watchers.bump_all(),
                    (Some(_), Some(ids)) => {
                        for id in ids {
                            inner.watchers.bump(id);
                        }
                    }
                    (Some(_), None) => {}
                }
                seen = Some(now);
            }
            Err(e) => {
                tracing::warn!(error = %e, "sqlite change watcher could not read what changed");
                // Waiters re-read rather than miss a change.
                inner.watchers.bump_all();
                seen = None;
            }
        }
    }
}

/// `data_version` and the highest stamp now, and, when the file changed since `seen`, the
/// requests stamped after it (ids that do not parse are skipped: nobody can wait on them).
async fn changes_since(
    conn: &mut SqliteConnection,
    seen: Option<(i64, i64)>,
) -> Result<((i64, i64), Option<Vec<RequestId>>), sqlx::Error> {
    let version: i64 = sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(&mut *conn)
        .await?;
    match seen {
        Some((v, stamp)) if v == version => Ok(((v, stamp), None)),
        Some((_, stamp)) => {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT id, changed FROM approvals_requests WHERE changed > ? ORDER BY changed",
            )
            .bind(stamp)
            .fetch_all(&mut *conn)
            .await?;
            let last = rows.last().map_or(stamp, |(_, c)| *c);
            let ids = rows.iter().filter_map(|(id, _)| id.parse().ok()).collect();
            Ok(((version, last), Some(ids)))
        }
        None => {
            let stamp: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(changed), 0) FROM approvals_requests")
                    .fetch_one(&mut *conn)
                    .await?;
            Ok(((version, stamp), None))
        }
    }
}

/// The log's head as stored (`frontier, last_leaf, signed_size, signed_at`), in a statement
/// that reads `FROM approvals_audit_head`: the frontier and leaf of the log's last record
/// (`NULL`s for an empty log), and the signed checkpoint's size and time from the head
/// row. Every append writes the frontier into its last record's row, and a trigger clears
/// the record's before it (migration 0004), so an append is one INSERT and moves no row of
/// another table, and a log whose last records were removed has no frontier to read.
macro_rules! head_columns {
    () => {
        "(SELECT frontier FROM approvals_audit ORDER BY seq DESC LIMIT 1), \
         (SELECT leaf FROM approvals_audit ORDER BY seq DESC LIMIT 1), signed_size, signed_at"
    };
}

/// The log's head (see `head_columns`).
const READ_HEAD: &str = concat!(
    "SELECT ",
    head_columns!(),
    " FROM approvals_audit_head WHERE id = 1"
);

const QUERIES: Queries = Queries {
    get: "SELECT body FROM approvals_requests WHERE id = ?",
    // The transaction already holds SQLite's write lock (BEGIN IMMEDIATE).
    get_locked: "SELECT body FROM approvals_requests WHERE id = ?",
    attach_candidates: "SELECT id, body FROM approvals_requests WHERE requester = ? AND digest = ? AND attachable = 1 ORDER BY id DESC",
    // Each write stamps the row one past the highest stamp (`changed`, see `watch_changes`).
    // Both take the columns unnumbered, id first, so that a script can hold them (see
    // `recorded_script`): the update is an upsert for that, of a row that exists (read
    // under the write lock in the same transaction).
    insert_request: "INSERT INTO approvals_requests (id, requester, digest, attachable, pending, next_due, version, body, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(changed), 0) + 1 FROM approvals_requests))",
    update_request: "INSERT INTO approvals_requests (id, requester, digest, attachable, pending, next_due, version, body, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(changed), 0) + 1 FROM approvals_requests)) \
        ON CONFLICT (id) DO UPDATE SET requester = excluded.requester, digest = excluded.digest, attachable = excluded.attachable, pending = excluded.pending, \
        next_due = excluded.next_due, version = excluded.version, body = excluded.body, changed = excluded.changed",
    list_open: "SELECT id, body FROM approvals_requests WHERE pending = 1 AND id > ?1 ORDER BY id LIMIT ?2",
    list_decided: "SELECT id, body FROM approvals_requests WHERE pending = 0 ORDER BY id DESC LIMIT ?1",
    due: "SELECT id FROM approvals_requests WHERE pending = 1 AND next_due <= ? ORDER BY next_due, id",
    set_aside: "UPDATE approvals_requests SET pending = 0, attachable = 0, next_due = NULL WHERE id = ?",
    insert_grant: "INSERT INTO approvals_grants (id, requester, policy, action, body) VALUES (?, ?, ?, ?, ?)",
    grants_for: "SELECT id, body FROM approvals_grants WHERE requester = ? AND policy = ? AND action = ? ORDER BY id",
    grant_locked: "SELECT body FROM approvals_grants WHERE id = ?",
    update_grant: "UPDATE approvals_grants SET body = ? WHERE id = ?",
    grants: "SELECT id, body FROM approvals_grants ORDER BY id",
    put_session: "INSERT OR REPLACE INTO approvals_sessions (key, expires_at, body) VALUES (?, ?, ?)",
    session: "SELECT body FROM approvals_sessions WHERE key = ? AND expires_at > ?",
    end_session: "DELETE FROM approvals_sessions WHERE key = ?1 OR expires_at <= ?2",
};

/// A row of [`AUDIT_HEAD_CHECK`].
type HeadCheck = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    i64,
    Option<i64>,
    Option<Vec<u8>>,
);

/// In one statement (one snapshot): the audit log's head as stored (see `head_columns`) and
/// its last record's `seq, leaf` (`NULL`s for an empty log), for checking the one against
/// the other.
const AUDIT_HEAD_CHECK: &str = concat!(
    "SELECT ",
    head_columns!(),
    ", (SELECT seq FROM approvals_audit ORDER BY seq DESC LIMIT 1), \
     (SELECT leaf FROM approvals_audit ORDER BY seq DESC LIMIT 1) \
     FROM approvals_audit_head WHERE id = 1"
);

impl Sqlite {
    /// Checks that the log's head matches its last record before a sink appends.
    async fn check_audit_head(&self, database: &str) -> Result<(), OpenError> {
        let fail = |e: sqlx::Error| OpenError::Connect {
            database: database.to_owned(),
            message: e.to_string(),
        };
        // One statement, so one snapshot: read in two, another process's append between
        // them would look like a head that does not match its log.
        let (frontier, last_leaf, signed_size, signed_at, last_seq, last_record_leaf): HeadCheck =
            sqlx::query_as(AUDIT_HEAD_CHECK)
                .fetch_one(&self.inner.pool)
                .await
                .map_err(fail)?;
        let last = last_seq.zip(last_record_leaf);
        let audit_error = |what: String| OpenError::Audit {
            database: database.to_owned(),
            what,
        };
        if let (None, Some(seq)) = (&frontier, last_seq) {
            return Err(audit_error(format!(
                "the last record is seq {seq} and {}",
                super::MISSING_FRONTIER
            )));
        }
        let head = head_from(frontier.as_deref(), last_leaf, signed_size, signed_at)
            .map_err(audit_error)?;
        super::check_head(&head, last).map_err(audit_error)
    }

    /// Identical calls need no lock of their own: `BEGIN IMMEDIATE` already serialises
    /// every change to the file.
    #[allow(clippy::unused_async)]
    async fn lock_call(
        &self,
        _conn: &mut SqliteConnection,
        _requester: &str,
        _digest: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// A change and its records in two round trips to SQLite's worker thread: one script
    /// takes the write lock and reads the request with the log's head, the other writes
    /// the request, the records and the new head and commits. Statement by statement (as
    /// on Postgres) it took eight, each a hand-off between threads that costs more than
    /// its statement; the commit it saves would not have paid for them.
    async fn recorded(
        &self,
        id: RequestId,
        change: approvals_core::store::RecordedChange<'_>,
    ) -> Result<(ApprovalRequest, bool, Vec<u64>), StoreError> {
        in_scripts!(self, conn => self.recorded_on(conn, id, &mut *change))
    }

    /// A new request (or the one it joins) and its records in two round trips, as
    /// [`Sqlite::recorded`]: one script takes the write lock and reads the log's head and
    /// the requests the call could join, the other writes and commits.
    async fn created(
        &self,
        request: ApprovalRequest,
        records: approvals_core::store::RecordedAttach<'_>,
    ) -> Result<(Attach, Vec<u64>), StoreError> {
        in_scripts!(self, conn => self.created_on(conn, &request, &mut *records))
    }

    /// Other processes find changes through `data_version` (see `watch_changes`).
    #[allow(clippy::unused_async)]
    async fn announce(
        &self,
        _conn: &mut SqliteConnection,
        _id: RequestId,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

sql_store!(Sqlite, SqliteConnection, BACKEND, QUERIES);

/// Runs `$run` (which may leave a transaction open on error) on the writing connection
/// `$conn`, retrying a lost connection; a transaction a failed script left open is rolled
/// back, and a connection that cannot end it, or whose script was cancelled, is closed.
/// The scripts' transaction is not one sqlx knows is open.
macro_rules! in_scripts {
    ($self:ident, $conn:ident => $run:expr) => {
        super::retrying!({
            match $self.inner.writer.hold().await {
                Ok(mut held) => {
                    let $conn = &mut *held;
                    let outcome = $run.await;
                    match outcome {
                        Ok(_) => held.release(),
                        Err(_) => held.roll_back().await,
                    }
                    outcome
                }
                Err(e) => Err(store_error(BACKEND, e)),
            }
        })
    };
}
use in_scripts;

/// Takes the write lock and reads a request's body (`NULL` if there is none) and the log's
/// head, in one row.
const READ_RECORDED: &str = concat!(
    "BEGIN IMMEDIATE;\nSELECT (SELECT body FROM approvals_requests WHERE id = ?), ",
    head_columns!(),
    " FROM approvals_audit_head WHERE id = 1;"
);

/// Takes the write lock and reads the log's head (the first row), then the requests an
/// identical call could join (`QUERIES.attach_candidates`, binding requester and digest).
static READ_CREATED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "BEGIN IMMEDIATE;\n{READ_HEAD};\n{};",
        QUERIES.attach_candidates
    )
});

/// The log's head in a row read by [`READ_RECORDED`] or [`READ_CREATED`], its columns from
/// `first` on.
fn head_in(row: &sqlx::sqlite::SqliteRow, first: usize) -> Result<Head, StoreError> {
    use sqlx::Row as _;
    let column = |e: sqlx::Error| store_error(BACKEND, e);
    head_from(
        row.try_get::<Option<Vec<u8>>, _>(first)
            .map_err(column)?
            .as_deref(),
        row.try_get(first + 1).map_err(column)?,
        row.try_get(first + 2).map_err(column)?,
        row.try_get(first + 3).map_err(column)?,
    )
    .map_err(broken)
}

/// A broken invariant of the stored data.
fn broken(message: String) -> StoreError {
    StoreError::Invariant {
        backend: BACKEND.into(),
        message,
    }
}

impl Sqlite {
    /// [`Sqlite::recorded`] on `conn`. On `Err` the transaction may still be open: the caller
    /// rolls it back. An error after the read fails as a commit does (never made again): the
    /// write script may have committed.
    async fn recorded_on(
        &self,
        conn: &mut SqliteConnection,
        id: RequestId,
        change: approvals_core::store::RecordedChange<'_>,
    ) -> Result<(ApprovalRequest, bool, Vec<u64>), StoreError> {
        use sqlx::Row as _;
        let key = id.to_string();
        let rows = sqlx::query(READ_RECORDED)
            .bind(&key)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| store_error(BACKEND, e))?;
        let row = rows
            .first()
            .ok_or_else(|| broken("the audit log has no head row".into()))?;
        let body: Option<String> = row.try_get(0).map_err(|e| store_error(BACKEND, e))?;
        let body = body.ok_or(StoreError::UnknownRequest(id))?;
        let mut request = decode_request(BACKEND, &key, &body)?;
        let before = request.version;
        let records = change(&mut request);
        let changed = request.version != before;
        let write = changed.then_some(QUERIES.update_request);
        let seqs = self
            .write_recorded(conn, write, &request, row, 1, records)
            .await?;
        Ok((request, changed, seqs))
    }

    /// [`Sqlite::created`] on `conn`, as [`Sqlite::recorded_on`].
    async fn created_on(
        &self,
        conn: &mut SqliteConnection,
        request: &ApprovalRequest,
        records: approvals_core::store::RecordedAttach<'_>,
    ) -> Result<(Attach, Vec<u64>), StoreError> {
        use sqlx::Row as _;
        let rows = sqlx::query(READ_CREATED.as_str())
            .bind(request.context.requester.id.as_str())
            .bind(request.action.digest.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| store_error(BACKEND, e))?;
        let (head, candidates) = rows
            .split_first()
            .ok_or_else(|| broken("the audit log has no head row".into()))?;
        let candidates = candidates
            .iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| store_error(BACKEND, e))?;
        let attach = super::attach_to(BACKEND, candidates, request);
        let events = records(&attach);
        let write = attach.created.then_some(QUERIES.insert_request);
        let seqs = self
            .write_recorded(conn, write, &attach.request, head, 0, events)
            .await?;
        Ok((attach, seqs))
    }

    /// The second script of [`Sqlite::recorded_on`] and [`Sqlite::created_on`]: `request`
    /// written by `write` (`QUERIES.insert_request` or `update_request`, if any), `events`
    /// appended after the head read in `row` (its columns from `head_at` on), a checkpoint
    /// if one is due, and the commit; with nothing to write, the transaction is rolled
    /// back. Returns the records' sequence numbers.
    async fn write_recorded(
        &self,
        conn: &mut SqliteConnection,
        write: Option<&str>,
        request: &ApprovalRequest,
        row: &sqlx::sqlite::SqliteRow,
        head_at: usize,
        events: Vec<approvals_core::AuditEvent>,
    ) -> Result<Vec<u64>, StoreError> {
        if write.is_none() && events.is_empty() {
            sqlx::query("ROLLBACK")
                .execute(&mut *conn)
                .await
                .map_err(|e| store_error(BACKEND, e))?;
            return Ok(Vec::new());
        }
        let mut head = head_in(row, head_at)?;
        let appended: Vec<_> = events.into_iter().map(|e| head.append(e)).collect();
        let checkpoint = if appended.is_empty() {
            None
        } else {
            self.checkpoint_due(&mut head)?
        };
        let script = recorded_script(write, appended.len(), checkpoint.is_some());
        let mut query = sqlx::query(&script);
        if write.is_some() {
            query = super::RequestColumns::of(BACKEND, request)?.bind(query);
        }
        let mut seqs = Vec::with_capacity(appended.len());
        for a in &appended {
            let seq = i64::try_from(a.seq).map_err(|e| broken(e.to_string()))?;
            query = query.bind(seq).bind(a.leaf.to_vec()).bind(a.line.as_str());
            seqs.push(a.seq);
        }
        if !appended.is_empty() {
            // The last record's row carries the frontier after it.
            query = query.bind(head.tree().to_bytes());
        }
        if let Some((size, note)) = checkpoint {
            query = query
                .bind(i64::try_from(head.signed_size()).map_err(|e| broken(e.to_string()))?)
                .bind(head.signed_at())
                .bind(size)
                .bind(note);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| super::commit_error(BACKEND, e))?;
        Ok(seqs)
    }
}

/// The script [`Sqlite::write_recorded`] writes with: the request by `write` (a statement
/// of `QUERIES` that stamps the row as every write does: see `watch_changes`), `records`
/// audit records (the last with the log's frontier after it), a signed checkpoint if one is
/// due (with its size and time in the head row), and the commit. Its parameters are
/// unnumbered: sqlx binds a statement's numbered ones only while its count of the
/// statement's parameters stays within the arguments, so `?9` in a second statement may go
/// unbound.
fn recorded_script(write: Option<&str>, records: usize, checkpoint: bool) -> String {
    let mut sql = String::new();
    if let Some(write) = write {
        sql.push_str(write);
        sql.push_str(";\n");
    }
    if records > 0 {
        sql.push_str("INSERT INTO approvals_audit (seq, leaf, record, frontier) VALUES ");
        records_values(&mut sql, records);
        sql.push_str(";\n");
    }
    if checkpoint {
        sql.push_str(
            "UPDATE approvals_audit_head SET signed_size = ?, signed_at = ? WHERE id = 1;\n\
             INSERT INTO approvals_checkpoints (size, note) VALUES (?, ?);\n",
        );
    }
    sql.push_str("COMMIT;");
    sql
}

/// `records` rows of `(seq, leaf, record, frontier)` parameters, the frontier only in the
/// last (the others' is `NULL`: only the log's last record's is ever read).
fn records_values(sql: &mut String, records: usize) {
    for _ in 1..records {
        sql.push_str("(?, ?, ?, NULL), ");
    }
    sql.push_str("(?, ?, ?, ?)");
}

/// The audit log's side of the database.
struct AuditDb {
    /// Reads.
    pool: SqlitePool,
    /// Writes (the store's one writing connection: see `Inner::writer`).
    writer: Arc<Writer<sqlx::Sqlite>>,
    name: String,
}

#[async_trait]
impl AuditBackend for AuditDb {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn read_head(&self) -> Result<Head, DbError> {
        read_head(&self.pool).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<String>, DbError> {
        sqlx::query_scalar("SELECT note FROM approvals_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(DbError::from_sqlx)
    }

    async fn write_if(&self, expected: &Head, batch: &Batch) -> Result<bool, DbError> {
        let mut held = self.writer.hold().await.map_err(DbError::from_sqlx)?;
        let written = append(&mut held, expected, batch).await;
        match written {
            Ok(_) => held.release(),
            Err(_) => held.roll_back().await,
        }
        written
    }

    /// Holds the process's one writing connection, so no writer of this process moves the
    /// head between its reading and the write; another process's may, and then the batch
    /// is built again.
    async fn write_locked(
        &self,
        build: Build<'_>,
    ) -> Result<(Batch, Result<(), DbError>), DbError> {
        let mut conn = self.writer.hold().await.map_err(DbError::from_sqlx)?;
        for _ in 0..super::audit::MAX_ATTEMPTS {
            let head = read_head(&mut *conn).await?;
            let batch = build(head.clone())?;
            if batch.is_empty() {
                conn.release();
                return Ok((batch, Ok(())));
            }
            match append(&mut conn, &head, &batch).await {
                Ok(true) => {
                    conn.release();
                    return Ok((batch, Ok(())));
                }
                Ok(false) => continue,
                Err(e) => {
                    conn.roll_back().await;
                    return Ok((batch, Err(e)));
                }
            }
        }
        conn.release();
        Err(DbError::failed(
            "gave up: other processes kept moving the log's head",
        ))
    }
}

/// The head as stored, read on `conn`.
async fn read_head<'c>(conn: impl sqlx::SqliteExecutor<'c>) -> Result<Head, DbError> {
    let (frontier, last_leaf, signed_size, signed_at): (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        i64,
        i64,
    ) = sqlx::query_as(READ_HEAD)
        .fetch_one(conn)
        .await
        .map_err(DbError::from_sqlx)?;
    Ok(head_from(
        frontier.as_deref(),
        last_leaf,
        signed_size,
        signed_at,
    )?)
}

/// [`AuditBackend::write_if`] on SQLite: [`append_script`] for `batch` on `conn`, in one
/// round trip to SQLite's worker thread (one INSERT of the records for most batches, else
/// the whole transaction in one script; as separate statements it took four, each a
/// hand-off between threads that cost more than the statement, and an append cost twice a
/// raw single-row INSERT): whether the log was still at `expected` (and the batch was
/// written). On `Err` the caller rolls back (`Held::roll_back`).
async fn append(
    conn: &mut SqliteConnection,
    expected: &Head,
    batch: &Batch,
) -> Result<bool, DbError> {
    if batch.is_empty() {
        return Ok(true);
    }
    let script = append_script(batch.rows.len(), batch.checkpoint.is_some());
    let h = &batch.head;
    let mut query = sqlx::query(&script);
    if batch.checkpoint.is_some() {
        // The last record's `seq` the batch was built after (`NULL` for an empty log).
        let last = match expected.size().checked_sub(1) {
            Some(seq) => Some(i64::try_from(seq)?),
            None => None,
        };
        query = query
            .bind(i64::try_from(h.signed_size())?)
            .bind(h.signed_at())
            .bind(i64::try_from(expected.signed_size())?)
            .bind(last);
    }
    for row in &batch.rows {
        query = query.bind(row.seq).bind(&row.leaf).bind(&row.record);
    }
    if !batch.rows.is_empty() {
        query = query.bind(h.tree().to_bytes());
    }
    // Batches of one record (a single caller's) are the common statement and stay
    // prepared; larger ones differ by their size and are prepared each time.
    let query = query.persistent(batch.rows.len() <= 1);
    match &batch.checkpoint {
        None => match query.execute(&mut *conn).await {
            Ok(written) => {
                Ok(usize::try_from(written.rows_affected()).ok() == Some(batch.rows.len()))
            }
            // Another writer appended first: the statement wrote nothing.
            Err(e) if out_of_order(&e) => Ok(false),
            Err(e) => Err(DbError::from_sqlx(e)),
        },
        Some((size, note)) => {
            let moved = query
                .bind(size)
                .bind(note)
                .fetch_all(&mut *conn)
                .await
                .map_err(DbError::from_sqlx)?;
            // The head's UPDATE returns its row only if it moved.
            Ok(moved.len() == 1)
        }
    }
}

/// Whether SQLite refused an audit record because it does not follow the log's last one
/// (schema version 5): its `seq` was taken, or its predecessor is missing.
fn out_of_order(e: &sqlx::Error) -> bool {
    /// `RAISE(ABORT, ...)` in a trigger (`SQLITE_CONSTRAINT_TRIGGER`); the log's table has
    /// one trigger, the one that keeps it in order.
    const CONSTRAINT_TRIGGER: &str = "1811";
    match e {
        sqlx::Error::Database(e) => {
            e.kind() == sqlx::error::ErrorKind::UniqueViolation
                || e.code().as_deref() == Some(CONSTRAINT_TRIGGER)
        }
        _ => false,
    }
}

/// The statements [`append`] runs. Without a checkpoint, one plain INSERT of `rows`
/// records: SQLite refuses it whole unless its first record follows the log's last (the
/// key and the trigger of schema version 5), that is, unless the log's last record is
/// still the one the batch was built after. With a checkpoint, a script that moves the
/// head row's signed size from the expected one to the batch's if the log's last record is
/// still the expected one too (returning a row only if it did), and only then inserts the
/// records and the checkpoint: each insert runs only if the statement before it changed
/// something (`changes()`), so when the log had moved the transaction writes nothing.
///
/// One record without a checkpoint, a single caller's append, is the common statement: it is
/// written once ([`ONE_RECORD`]), not for each append.
fn append_script(rows: usize, checkpoint: bool) -> std::borrow::Cow<'static, str> {
    if rows == 1 && !checkpoint {
        return ONE_RECORD.into();
    }
    let mut sql = String::new();
    if !checkpoint {
        sql.push_str("INSERT INTO approvals_audit (seq, leaf, record, frontier) VALUES ");
        records_values(&mut sql, rows);
        return sql.into();
    }
    sql.push_str(
        "BEGIN IMMEDIATE;\nUPDATE approvals_audit_head SET signed_size = ?, signed_at = ? \
         WHERE id = 1 AND signed_size = ? AND (SELECT MAX(seq) FROM approvals_audit) IS ? \
         RETURNING id;\n",
    );
    if rows > 0 {
        sql.push_str(
            "INSERT INTO approvals_audit (seq, leaf, record, frontier) \
             SELECT column1, column2, column3, column4 FROM (VALUES ",
        );
        records_values(&mut sql, rows);
        sql.push_str(") WHERE changes() > 0;\n");
    }
    sql.push_str(
        "INSERT INTO approvals_checkpoints (size, note) SELECT ?, ? WHERE changes() > 0;\n\
         COMMIT;",
    );
    sql.into()
}

/// [`append_script`] for one record without a checkpoint.
const ONE_RECORD: &str =
    "INSERT INTO approvals_audit (seq, leaf, record, frontier) VALUES (?, ?, ?, ?)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_is_the_script_written_for_one_record() {
        let mut written =
            String::from("INSERT INTO approvals_audit (seq, leaf, record, frontier) VALUES ");
        records_values(&mut written, 1);
        assert_eq!(ONE_RECORD, written);
        assert_eq!(append_script(1, false), written);
        // Two records: the first's frontier is NULL, the second's bound.
        assert_eq!(
            append_script(2, false),
            "INSERT INTO approvals_audit (seq, leaf, record, frontier) VALUES (?, ?, ?, NULL), (?, ?, ?, ?)"
        );
    }
}

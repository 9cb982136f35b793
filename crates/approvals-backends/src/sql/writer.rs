//! A process's one writing connection, held rather than pooled: SQLite's for every write of
//! the process, the log writer's on Postgres.
//!
//! On SQLite every write of a process (the store's changes, the log's appends) takes turns on
//! one connection, so its writers never race each other for SQLite's lock. A pool of one
//! gave that, at a price on every write: sqlx pings each connection on its way back to a
//! pool (one more round trip, on a task of its own, which the next writer waited for), and
//! an allowed call's append cost 1.5–1.7× a raw INSERT. Held in a mutex, the connection goes
//! from one writer to the next with no round trip. The log's writer on Postgres keeps a
//! connection of its own for the same reason.
//!
//! A holder gives the connection back ([`Held::release`]) only once it knows the connection
//! is in a known state. A `Held` dropped without that (its future cancelled midway, or a
//! failure that may have left a transaction open or a reply unread) closes the connection,
//! which rolls back whatever was left open and releases its locks, and the next writer
//! opens a new one.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{ConnectOptions, Connection, Database};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How a writer opens its connection.
type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// The writing connection, opened when first needed and again after one was closed.
pub(crate) struct Writer<DB: Database> {
    slot: Arc<Mutex<Option<DB::Connection>>>,
    connect: Options<DB>,
    closed: AtomicBool,
}

impl<DB: Database> Writer<DB> {
    /// A writer that connects with `connect`, starting with `conn` if given.
    pub(crate) fn new(connect: Options<DB>, conn: Option<DB::Connection>) -> Self {
        Self {
            slot: Arc::new(Mutex::new(conn)),
            connect,
            closed: AtomicBool::new(false),
        }
    }

    /// Waits for the connection (writers take it in the order they asked), opening a new
    /// one if the last was closed. After [`Writer::close`], fails as a closed pool does.
    pub(crate) async fn hold(&self) -> Result<Held<DB>, sqlx::Error> {
        let mut slot = self.slot.clone().lock_owned().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        let conn = match slot.take() {
            Some(conn) => conn,
            None => self.connect.connect().await?,
        };
        Ok(Held { conn, slot })
    }

    /// Closes the connection once its holder is done; every later [`Writer::hold`] fails.
    #[cfg(feature = "sqlite")]
    pub(crate) async fn close(&self) {
        let mut slot = self.slot.lock().await;
        self.closed.store(true, Ordering::Release);
        if let Some(conn) = slot.take() {
            let _ = conn.close().await;
        }
    }
}

/// The writing connection while one writer has it. Dropped without [`Held::release`], it
/// closes the connection.
pub(crate) struct Held<DB: Database> {
    conn: DB::Connection,
    /// Keeps every other writer waiting until this is released or dropped.
    slot: OwnedMutexGuard<Option<DB::Connection>>,
}

impl<DB: Database> Held<DB> {
    /// Gives the connection back for the next writer: it is in a known state (any
    /// transaction ended).
    pub(crate) fn release(self) {
        let Self { conn, mut slot } = self;
        *slot = Some(conn);
    }
}

impl<DB: Database> Deref for Held<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for Held<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

#[cfg(feature = "sqlite")]
pub(crate) use sqlite::WriteTx;

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::ops::{Deref, DerefMut};

    use sqlx::Sqlite;
    use sqlx::sqlite::SqliteConnection;

    use super::{Held, Writer};
    use crate::sql::Settle;

    impl Held<Sqlite> {
        /// After a script failed, perhaps inside a transaction sqlx does not know is open:
        /// rolls it back at once (SQLite's write lock goes with it) and gives the connection
        /// back, or closes it if that fails too (no transaction was open, or the connection
        /// is lost).
        pub(crate) async fn roll_back(mut self) {
            let ended = sqlx::query("ROLLBACK")
                .persistent(false)
                .execute(&mut *self)
                .await;
            if ended.is_ok() {
                self.release();
            }
        }
    }

    impl Writer<Sqlite> {
        /// A transaction begun with `begin` (`BEGIN IMMEDIATE`, or `BEGIN` on a read-only
        /// file) on the connection, held until it ends.
        pub(crate) async fn begin(&self, begin: &'static str) -> Result<WriteTx, sqlx::Error> {
            let mut held = self.hold().await?;
            sqlx::query(begin).execute(&mut *held).await?;
            Ok(WriteTx { held })
        }
    }

    /// A transaction on SQLite's writing connection, ended by [`Settle::commit`] or
    /// [`Settle::rollback`]. Dropped before either (its future cancelled), or if ending it
    /// failed, the connection is closed, which rolls it back.
    pub(crate) struct WriteTx {
        held: Held<Sqlite>,
    }

    impl WriteTx {
        async fn end(mut self, how: &'static str) -> Result<(), sqlx::Error> {
            sqlx::query(how).execute(&mut *self.held).await?;
            self.held.release();
            Ok(())
        }
    }

    impl Deref for WriteTx {
        type Target = SqliteConnection;

        fn deref(&self) -> &SqliteConnection {
            &self.held
        }
    }

    impl DerefMut for WriteTx {
        fn deref_mut(&mut self) -> &mut SqliteConnection {
            &mut self.held
        }
    }

    impl Settle for WriteTx {
        fn commit(self) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
            self.end("COMMIT")
        }

        fn rollback(self) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
            self.end("ROLLBACK")
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use sqlx::Sqlite;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

    use super::*;
    use crate::sql::Settle;

    async fn count(conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// A change cancelled inside its transaction (its future dropped) must not leave the
    /// transaction open, holding SQLite's write lock against every other process.
    #[tokio::test]
    async fn a_transaction_dropped_open_is_rolled_back_and_the_lock_released() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("w.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let writer: Writer<Sqlite> =
            Writer::new(options.clone(), Some(options.connect().await.unwrap()));
        let mut held = writer.hold().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *held)
            .await
            .unwrap();
        held.release();

        let mut tx = writer.begin("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);

        // Another process's writer takes the lock (waiting at most its busy timeout), and
        // the dropped transaction's row is not there.
        let mut other = options.connect().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the write lock was released");
        assert_eq!(
            count(&mut other).await,
            0,
            "the transaction was rolled back"
        );
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut other)
            .await
            .unwrap();
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();

        // The writer opens a new connection and goes on.
        let mut tx = writer.begin("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&mut other).await, 2);
    }

    /// After `close`, no writer gets the connection.
    #[tokio::test]
    async fn a_closed_writer_refuses_to_hold() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("w.db"))
            .create_if_missing(true);
        let writer: Writer<Sqlite> =
            Writer::new(options.clone(), Some(options.connect().await.unwrap()));
        writer.close().await;
        assert!(matches!(writer.hold().await, Err(sqlx::Error::PoolClosed)));
    }
}

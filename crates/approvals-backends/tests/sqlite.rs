//! SQLite: the conformance suite on a real file, and what opening refuses.

use std::sync::Arc;

use approvals_backends::conformance;
use approvals_backends::sql::{OpenError, SqlAudit, SqlAuditOptions};
use approvals_backends::sqlite::Sqlite;
use approvals_core::AuditRecord;
use approvals_core::note::NoteSigner;

/// How many schema migrations the source tree holds.
fn migrations() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/migrations/sqlite");
    std::fs::read_dir(dir).unwrap().count() as i64
}

fn options() -> SqlAuditOptions {
    SqlAuditOptions::new(
        "test/audit",
        NoteSigner::generate("test").expect("a key generates"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(dir.path().join("a.db")).await.unwrap();
    conformance::store(Arc::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(dir.path().join("a.db")).await.unwrap();
    let audit = db.audit(options()).await.unwrap();
    conformance::audit_sink(Arc::new(audit), move || {
        let db = db.clone();
        async move { read_back(&db).await }
    })
    .await;
}

/// This process's writers take turns on one connection instead of racing for SQLite's
/// write lock on several (where the losers slept in SQLite's busy handler, 1 to 100 ms a
/// try): with no busy timeout at all, so that a lost race would fail at once with
/// "database is locked", racing changes to one request and the log's appends all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_one_process_take_turns() {
    use approvals_backends::sqlite::SqliteOptions;
    use approvals_core::AuditSink;
    let dir = tempfile::tempdir().unwrap();
    let impatient = SqliteOptions {
        busy_timeout: std::time::Duration::ZERO,
        ..SqliteOptions::default()
    };
    let db = Sqlite::open_with(dir.path().join("a.db"), impatient)
        .await
        .unwrap();
    let audit = Arc::new(db.audit(options()).await.unwrap());
    let mut appenders = tokio::task::JoinSet::new();
    for task in 0..4 {
        let audit = audit.clone();
        appenders.spawn(async move {
            for n in 0..10 {
                audit.append(allowed_event(task * 10 + n)).await.unwrap();
            }
        });
    }
    conformance::no_change_lost(Arc::new(db.clone())).await;
    while let Some(done) = appenders.join_next().await {
        done.unwrap();
    }
    assert_eq!(read_back(&db).await.len(), 40, "every append is in the log");
}

async fn read_back(db: &Sqlite) -> Vec<AuditRecord> {
    db.export_audit()
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, b"these are my notes, not a database\n").unwrap();
    let err = Sqlite::open(&path).await.unwrap_err();
    assert!(matches!(err, OpenError::NotADatabase { .. }), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"these are my notes, not a database\n"
    );
}

#[tokio::test]
async fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.db");
    rusqlite_like(&path, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)").await;
    let err = Sqlite::open(&path).await.unwrap_err();
    assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("1 table(s)"), "{err}");
}

#[tokio::test]
async fn a_schema_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    Sqlite::open(&path).await.unwrap().close().await;
    rusqlite_like(&path, "PRAGMA user_version = 99").await;
    let err = Sqlite::open(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::NewerSchema {
                found: 99,
                supported,
                ..
            } if supported == migrations()
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade approvals"), "{err}");
}

#[tokio::test]
async fn a_damaged_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    Sqlite::open(&path).await.unwrap().close().await;
    // Keep SQLite's header, overwrite the schema page behind it.
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(100) {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        !dir.path().join("a.db-wal").exists(),
        "closing checkpointed the WAL"
    );
    let err = Sqlite::open(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::NotADatabase { .. } | OpenError::Connect { .. }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_migrate_once() {
    // Several new files: the opens race to turn each to WAL, a lock SQLite's busy handler
    // does not wait for; one file in twenty found it busy before opens retried it.
    let dir = tempfile::tempdir().unwrap();
    for file in 0..8 {
        let path = dir.path().join(format!("{file}.db"));
        let opens: Vec<_> = (0..6)
            .map(|_| tokio::spawn(Sqlite::open(path.clone())))
            .collect();
        for o in opens {
            o.await.unwrap().unwrap();
        }
        let version: i64 = sqlx_scalar(&path, "PRAGMA user_version").await;
        assert_eq!(version, migrations(), "every migration applied, once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_keeps_one_origin() {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(dir.path().join("a.db")).await.unwrap();
    let signer = NoteSigner::generate("test").unwrap();
    let opener = db.clone();
    conformance::audit_keeps_one_origin(
        move |origin| {
            let (db, signer) = (opener.clone(), signer.clone());
            async move {
                let sink = db
                    .audit(SqlAuditOptions::new(origin, signer))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Arc::new(sink) as Arc<dyn approvals_core::AuditSink>)
            }
        },
        move || {
            let db = db.clone();
            async move { read_back(&db).await }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_the_audit_log_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let now = approvals_core::Timestamp::now();
    let r = conformance::request("ops-bot", 1, now);
    let signer = NoteSigner::generate("test").unwrap();
    {
        let db = Sqlite::open(&path).await.unwrap();
        use approvals_core::store::Store;
        db.create_or_attach(r.clone()).await.unwrap();
        let audit = db
            .audit(SqlAuditOptions::new("test/audit", signer.clone()))
            .await
            .unwrap();
        use approvals_core::AuditSink;
        audit.append(event()).await.unwrap();
        audit.flush().await.unwrap();
    }
    let db = Sqlite::open(&path).await.unwrap();
    use approvals_core::store::Store;
    assert_eq!(db.get(r.id).await.unwrap(), Some(r));
    let audit = db
        .audit(SqlAuditOptions::new("test/audit", signer.clone()))
        .await
        .unwrap();
    use approvals_core::AuditSink;
    assert_eq!(
        audit.append(event()).await.unwrap().seq,
        1,
        "numbering continues"
    );
    audit.flush().await.unwrap();
    let log = db.export_audit().await.unwrap();
    approvals_core::verify::verify_log(
        log.jsonl().as_bytes(),
        &log.checkpoints,
        &signer.verifier(),
    )
    .unwrap();
}

#[tokio::test]
async fn a_log_whose_records_were_deleted_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    {
        let db = Sqlite::open(&path).await.unwrap();
        let audit = db.audit(options()).await.unwrap();
        use approvals_core::AuditSink;
        for _ in 0..3 {
            audit.append(event()).await.unwrap();
        }
    }
    rusqlite_like(&path, "DELETE FROM approvals_audit WHERE seq = 2").await;
    let db = Sqlite::open(&path).await.unwrap();
    let err = db.audit(options()).await.unwrap_err();
    assert!(matches!(err, OpenError::Audit { .. }), "{err}");
    assert!(err.to_string().contains("last record is seq 1"), "{err}");
}

/// A log kept by schema version 3, its head in a row of its own, opened by this build: the
/// head moves into the last record's row, new records follow on, only the last record
/// holds a frontier, and the whole log verifies with core's verifier.
#[tokio::test]
async fn a_log_kept_by_schema_3_is_migrated_and_goes_on() {
    use approvals_core::AuditSink;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Version 3 as it was made: its migrations, then three records and the head after them
    // as its writer stored them.
    let mut sql = [
        include_str!("../src/sql/migrations/sqlite/0001_init.sql"),
        include_str!("../src/sql/migrations/sqlite/0002_sessions.sql"),
        include_str!("../src/sql/migrations/sqlite/0003_changes.sql"),
    ]
    .concat();
    sql.push_str("PRAGMA application_id = 1095782486; PRAGMA user_version = 3;\n");
    let mut head = approvals_core::log::LogHead::default();
    for _ in 0..3 {
        let a = head.append(event());
        sql.push_str(&format!(
            "INSERT INTO approvals_audit (seq, leaf, record) VALUES ({}, x'{}', '{}');\n",
            a.seq,
            hex(&a.leaf),
            a.line.replace('\'', "''")
        ));
    }
    sql.push_str(&format!(
        "UPDATE approvals_audit_head SET frontier = x'{}', last_leaf = x'{}' WHERE id = 1;",
        hex(&head.tree().to_bytes()),
        hex(&head.last_leaf().unwrap())
    ));
    rusqlite_like(&path, &sql).await;

    let signer = NoteSigner::generate("test").unwrap();
    let db = Sqlite::open(&path).await.unwrap();
    let audit = db
        .audit(SqlAuditOptions::new("test/audit", signer.clone()))
        .await
        .expect("the migrated head matches its log");
    assert_eq!(
        audit.append(event()).await.unwrap().seq,
        3,
        "numbering continues"
    );
    assert_eq!(audit.append(event()).await.unwrap().seq, 4);
    audit.flush().await.unwrap();
    db.close().await;
    assert_eq!(
        sqlx_scalar(&path, "PRAGMA user_version").await,
        migrations()
    );
    assert_eq!(
        sqlx_scalar(
            &path,
            "SELECT count(*) FROM approvals_audit WHERE frontier IS NOT NULL"
        )
        .await,
        1,
        "only the last record holds the frontier"
    );
    let db = Sqlite::open(&path).await.unwrap();
    let log = db.export_audit().await.unwrap();
    assert_eq!(log.records.len(), 5);
    approvals_core::verify::verify_log(
        log.jsonl().as_bytes(),
        &log.checkpoints,
        &signer.verifier(),
    )
    .expect("the old records and the new verify as one log");
}

#[tokio::test]
async fn a_read_only_database_fails_closed_and_keeps_what_it_has() {
    use approvals_core::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let now = approvals_core::Timestamp::now();
    let kept = conformance::request("ops-bot", 1, now);
    {
        let db = Sqlite::open(&path).await.unwrap();
        db.create_or_attach(kept.clone()).await.unwrap();
    }
    // Open it through a read-only URL: every write is refused by SQLite itself.
    let db = Sqlite::open_read_only(&path).await.unwrap();
    let err = db
        .create_or_attach(conformance::request("ops-bot", 2, now))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("readonly") || err.to_string().contains("read-only"),
        "{err}"
    );
    // The driver's own error is kept as the source, whole: a caller can downcast it.
    let source = std::error::Error::source(&err).expect("the driver's error is kept");
    assert!(source.downcast_ref::<sqlx::Error>().is_some(), "{source:?}");
    assert_eq!(db.get(kept.id).await.unwrap(), Some(kept));

    // The audit sink's append fails closed the same way, its cause kept too.
    use approvals_core::AuditSink;
    let audit = db.audit(options()).await.unwrap();
    let err = audit.append(event()).await.unwrap_err();
    let source = std::error::Error::source(&err).expect("the driver's error is kept");
    assert!(source.downcast_ref::<sqlx::Error>().is_some(), "{source:?}");
}

fn event() -> approvals_core::AuditEvent {
    let action = approvals_core::Action::builder("f", "p").build().unwrap();
    approvals_core::AuditEvent {
        at: approvals_core::Timestamp::now(),
        request_id: None,
        action: approvals_core::audit::ActionRef::from(&action),
        actor: None,
        policy_version: "code".into(),
        kind: approvals_core::audit::EventKind::Allowed { rule: "r".into() },
    }
}

/// Runs `sql` on the file with a plain connection of its own, as another program would.
async fn rusqlite_like(path: &std::path::Path, sql: &str) {
    use sqlx::{ConnectOptions, Executor};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    conn.execute(sql).await.unwrap();
}

async fn sqlx_scalar(path: &std::path::Path, sql: &str) -> i64 {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_sharing_the_file_make_one_gap_free_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let signer = NoteSigner::generate("test").unwrap();
    let mut sinks: Vec<Arc<dyn approvals_core::AuditSink>> = Vec::new();
    for _ in 0..3 {
        // Each handle has its own pool and writer, as another process would.
        let db = Sqlite::open(&path).await.unwrap();
        let options = SqlAuditOptions::new("test/audit", signer.clone());
        sinks.push(Arc::new(db.audit(options).await.unwrap()));
    }
    let db = Sqlite::open(&path).await.unwrap();
    let read = db.clone();
    let appended = conformance::audit_sinks_share_one_log(sinks, move || {
        let db = read.clone();
        async move { read_back(&db).await }
    })
    .await;
    let log = db.export_audit().await.unwrap();
    let report = approvals_core::verify::verify_log(
        log.jsonl().as_bytes(),
        &log.checkpoints,
        &signer.verifier(),
    )
    .unwrap();
    assert_eq!(report.records, appended);
}

/// A sink on a new database file, and a second handle on the file, as another process
/// would hold (each handle has its own pool and writer). The directory must outlive them.
async fn sink_and_second_handle() -> (tempfile::TempDir, SqlAudit, Sqlite, NoteSigner) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let signer = NoteSigner::generate("test").unwrap();
    let writer = Sqlite::open(&path).await.unwrap();
    let sink = writer
        .audit(SqlAuditOptions::new("test/audit", signer.clone()))
        .await
        .unwrap();
    let other = Sqlite::open(&path).await.unwrap();
    (dir, sink, other, signer)
}

/// The `allowed` record of call number `n`.
fn allowed_event(n: u32) -> approvals_core::AuditEvent {
    use approvals_core::{Action, ActionRef, AuditEvent, EventKind, Principal};
    let action = Action::builder("export", "exports")
        .arg("n", &n)
        .build()
        .unwrap();
    AuditEvent {
        at: approvals_core::Timestamp::now(),
        request_id: None,
        action: ActionRef::from(&action),
        actor: Some(Principal::agent("ops-bot")),
        policy_version: "code".into(),
        kind: EventKind::Allowed { rule: "r".into() },
    }
}

/// A sink whose head another process moved since its last append: the database refuses its
/// next record (the number is taken), and the sink reads the head and writes it after the
/// other's, with nothing lost and no number given twice.
#[tokio::test]
async fn a_writer_behind_another_process_appends_after_it() {
    use approvals_core::AuditSink;
    let (_dir, sink, other, signer) = sink_and_second_handle().await;
    assert_eq!(sink.append(allowed_event(0)).await.unwrap().seq, 0);
    let second = other
        .audit(SqlAuditOptions::new("test/audit", signer.clone()))
        .await
        .unwrap();
    assert_eq!(second.append(allowed_event(1)).await.unwrap().seq, 1);
    // `sink` still holds the head after record 0.
    assert_eq!(sink.append(allowed_event(2)).await.unwrap().seq, 2);
    assert_eq!(second.append(allowed_event(3)).await.unwrap().seq, 3);
    sink.flush().await.unwrap();
    second.flush().await.unwrap();
    let seqs: Vec<u64> = read_back(&other).await.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    let log = other.export_audit().await.unwrap();
    approvals_core::verify::verify_log(
        log.jsonl().as_bytes(),
        &log.checkpoints,
        &signer.verifier(),
    )
    .expect("one log");
}

/// Another program writing the log's table directly is held to its order too: a record
/// after a gap, or under a number taken, is refused by SQLite, and the log is as it was.
#[tokio::test]
async fn the_database_refuses_a_record_out_of_order() {
    use approvals_core::AuditSink;
    let (dir, sink, _other, _signer) = sink_and_second_handle().await;
    for n in 0..3 {
        sink.append(allowed_event(n)).await.unwrap();
    }
    sink.flush().await.unwrap();
    let path = dir.path().join("a.db");
    for (seq, why) in [(4, "must follow the log's last"), (1, "UNIQUE")] {
        let err = sql_error(
            &path,
            &format!(
                "INSERT INTO approvals_audit (seq, leaf, record) VALUES ({seq}, x'00', '{{}}')"
            ),
        )
        .await;
        assert!(err.contains(why), "seq {seq}: {err}");
    }
    assert_eq!(
        sqlx_scalar(&path, "SELECT count(*) FROM approvals_audit").await,
        3
    );
    assert_eq!(sink.append(allowed_event(3)).await.unwrap().seq, 3);
}

/// Runs `sql` on the file as another program would, and returns the error SQLite gave.
async fn sql_error(path: &std::path::Path, sql: &str) -> String {
    use sqlx::{ConnectOptions, Executor};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    match conn.execute(sql).await {
        Ok(done) => panic!("{sql} was written ({} rows)", done.rows_affected()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_opens_while_another_process_appends() {
    // Opening a sink checks the stored head against the last record: read in one snapshot,
    // another writer's append cannot fall between the two and look like a damaged log.
    let (_dir, sink, opener, signer) = sink_and_second_handle().await;
    let appending = tokio::spawn(async move {
        use approvals_core::AuditSink;
        for n in 0..300 {
            sink.append(allowed_event(n)).await.unwrap();
        }
    });
    let mut opened = 0;
    while !appending.is_finished() {
        let options = SqlAuditOptions::new("test/audit", signer.clone());
        if let Err(e) = opener.audit(options).await {
            panic!("open {opened} while another writer appends: {e}");
        }
        opened += 1;
    }
    appending.await.unwrap();
    assert!(opened > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_taken_while_another_process_appends_and_signs_verifies() {
    // An export reads the checkpoints, then the records: a checkpoint signed between the
    // two reads covers only records that are already there to be read.
    let (_dir, sink, reader, signer) = sink_and_second_handle().await;
    let append = |sink: SqlAudit, n: u32| async move {
        use approvals_core::AuditSink;
        sink.append(allowed_event(n)).await.unwrap();
        // A checkpoint after every record: each export races one.
        sink.checkpoint().await.unwrap();
        sink
    };
    // One record and its checkpoint before any export: a log with records and no
    // checkpoint yet is refused, rightly, and is not what this test is about.
    let sink = append(sink, 0).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let appending = tokio::spawn(async move {
        let mut sink = sink;
        for n in 1..2000 {
            if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            sink = append(sink, n).await;
        }
    });
    // Exporting in the old order (records, then checkpoints) failed at the 4th export on
    // four of five runs.
    let mut exported = 0;
    while !appending.is_finished() && exported < 50 {
        let log = reader.export_audit().await.unwrap();
        if let Err(e) = approvals_core::verify::verify_log(
            log.jsonl().as_bytes(),
            &log.checkpoints,
            &signer.verifier(),
        ) {
            panic!(
                "export {exported} ({} records, {} checkpoints) while another writer appends: {e}",
                log.records.len(),
                log.checkpoints.len()
            );
        }
        exported += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    appending.await.unwrap();
    assert!(exported > 0);
}

/// A small tmpfs of the test's own, unmounted when the test ends (even by panicking). The
/// database lives on it, so filling it fills the database's disk for real.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounting needs root (CI runs as root); anywhere else the test says so and fails,
    /// unless `APPROVALS_TEST_NO_TMPFS=1` opts out explicitly.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            other if std::env::var_os("APPROVALS_TEST_NO_TMPFS").is_some() => {
                eprintln!("SKIPPED by APPROVALS_TEST_NO_TMPFS: mount tmpfs: {other:?}");
                None
            }
            other => panic!(
                "this test mounts a small tmpfs to fill its disk and needs root ({other:?}); set APPROVALS_TEST_NO_TMPFS=1 to skip it"
            ),
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the disk the database is on with one file, and deletes it to mend it.
struct DiskFull {
    filler: std::path::PathBuf,
}

#[async_trait::async_trait]
impl conformance::Fault for DiskFull {
    fn describe(&self) -> String {
        "the disk is full".into()
    }

    async fn inject(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(&self.filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        // Write until the disk refuses, then smaller pieces until not a byte fits.
        let mut size = chunk.len();
        while size > 0 {
            match f.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => size /= 2, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = f.sync_all();
    }

    async fn heal(&self) {
        std::fs::remove_file(&self.filler).unwrap();
    }

    fn ridden_out(&self) -> bool {
        false
    }
}

/// Issue 14, hole 5: after one disk-full error every later change failed with "attempted
/// to call begin_with at non-zero transaction depth" until the process restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_closed_and_the_store_recovers_when_it_has_room() {
    let Some(disk) = SmallDisk::mount(4) else {
        return;
    };
    let db = Sqlite::open(disk.path().join("a.db")).await.unwrap();
    let fault = DiskFull {
        filler: disk.path().join("filler"),
    };
    conformance::recovers_from_fault(Arc::new(db.clone()), &fault).await;
    let audit = db.audit(options()).await.unwrap();
    conformance::audit_sink_recovers_from_fault(Arc::new(audit), &fault, move || {
        let db = db.clone();
        async move { read_back(&db).await }
    })
    .await;
}

/// Issue 14, hole 3: one request that could not be read back made `GET /api/v1/requests`
/// fail for everyone and stopped the due-work timer for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_is_skipped_audited_and_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let db = Sqlite::open(&path).await.unwrap();
    let audit = db.audit(options()).await.unwrap();
    let read = db.clone();
    conformance::serves_past_an_unreadable_row(
        Arc::new(db),
        Arc::new(audit),
        |id| async move {
            rusqlite_like(
                &path,
                &format!("UPDATE approvals_requests SET body = '{{\"id\": [[[' WHERE id = '{id}'"),
            )
            .await;
        },
        move || {
            let db = read.clone();
            async move { read_back(&db).await }
        },
    )
    .await;
}

/// The open list reads the open requests through their own index, not the whole history:
/// SQLite's query planner says so for the store's own query (a page of it, as the store
/// asks: `list_open` in `sql/sqlite.rs`).
#[tokio::test]
async fn the_open_list_reads_only_what_is_open() {
    use sqlx::ConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    Sqlite::open(&path).await.unwrap().close().await;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id, body FROM approvals_requests WHERE pending = 1 AND id > '' \
         ORDER BY id LIMIT 256",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let detail: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
    assert!(
        detail
            .iter()
            .any(|d| d.contains("USING INDEX approvals_requests_open")),
        "{detail:?}"
    );
    assert!(
        !detail.iter().any(|d| d.contains("TEMP B-TREE")),
        "no sort: {detail:?}"
    );
}

/// Another program makes the log refuse new records (a trigger), and drops it to mend it.
struct LogRefusesRecords {
    path: std::path::PathBuf,
}

#[async_trait::async_trait]
impl conformance::Fault for LogRefusesRecords {
    fn describe(&self) -> String {
        "the log refuses records".into()
    }

    async fn inject(&self) {
        rusqlite_like(
            &self.path,
            "CREATE TRIGGER refuse_records BEFORE INSERT ON approvals_audit \
             BEGIN SELECT RAISE(ABORT, 'the log refuses records'); END;",
        )
        .await;
    }

    async fn heal(&self) {
        rusqlite_like(&self.path, "DROP TRIGGER refuse_records").await;
    }

    fn ridden_out(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_and_its_records_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let db = Sqlite::open(&path).await.unwrap();
    let audit = Arc::new(db.audit(options()).await.unwrap());
    let read = db.clone();
    conformance::records_commit_with_their_change(
        Arc::new(db.clone()),
        audit,
        &LogRefusesRecords { path },
        move || {
            let db = read.clone();
            async move { read_back(&db).await }
        },
    )
    .await;
    // Another handle on the same file keeps a log of its own name: its store does not
    // append for this handle's sink.
    use approvals_core::AuditSink;
    use approvals_core::store::Store;
    let other = Sqlite::open(dir.path().join("a.db")).await.unwrap();
    let sink = db.audit(options()).await.unwrap();
    assert_ne!(other.log_id(), sink.log_id());
}

/// Closing waits for every connection, also one still on its way back to its pool (a
/// read or a write just before): SQLite keeps the WAL while any connection lives.
#[tokio::test]
async fn closing_closes_every_connection() {
    use approvals_core::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let now = approvals_core::Timestamp::now();
    for i in 0..100 {
        let path = dir.path().join(format!("{i}.db"));
        let db = Sqlite::open(&path).await.unwrap();
        let r = conformance::request("ops-bot", i, now);
        db.create_or_attach(r.clone()).await.unwrap();
        db.get(r.id).await.unwrap();
        db.close().await;
        assert!(
            !dir.path().join(format!("{i}.db-wal")).exists(),
            "a connection outlived close (try {i})"
        );
    }
}

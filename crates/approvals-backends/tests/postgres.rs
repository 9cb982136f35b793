//! Postgres: the conformance suite against the server in `APPROVALS_TEST_POSTGRES_URL`,
//! each test in a schema of its own that it drops; wake-ups across connection pools (as
//! across processes), recovery from lost connections, one audit log from many writers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use approvals_backends::conformance;
use approvals_backends::postgres::{Postgres, PostgresOptions};
use approvals_backends::sql::{OpenError, SqlAuditOptions};
use approvals_core::note::NoteSigner;
use approvals_core::store::Store;
use approvals_core::{ApprovalRequest, AuditRecord, AuditSink, StoreError, Timestamp, tally};
use common::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many schema versions the source tree holds (`0000_meta.sql` sets up the version
/// table; it is not one).
fn migrations() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/migrations/postgres");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("0000")
        })
        .count() as i64
}

/// A schema of the test's own, dropped when the test ends (even by panicking).
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new() -> Option<Self> {
        let Ok(url) = std::env::var("APPROVALS_TEST_POSTGRES_URL") else {
            eprintln!("skipped: APPROVALS_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("t_{}", approvals_core::RequestId::generate()).to_lowercase();
        Some(Self { url, name })
    }

    fn options(&self) -> PostgresOptions {
        PostgresOptions {
            schema: Some(self.name.clone()),
            ..PostgresOptions::default()
        }
    }

    async fn open(&self) -> Postgres {
        Postgres::connect_with(&self.url, self.options())
            .await
            .unwrap()
    }

    /// Runs SQL on a plain connection of its own, as another program would.
    async fn sql(&self, sql: &str) {
        use sqlx::Executor;
        self.connect().await.execute(sql).await.unwrap();
    }

    /// A plain connection of its own, as another program's.
    async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::ConnectOptions;
        self.url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Its own thread and runtime: drop may run inside (or after) the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::{ConnectOptions, Executor};
                if let Ok(opts) = url.parse::<sqlx::postgres::PgConnectOptions>() {
                    if let Ok(mut conn) = opts.connect().await {
                        let _ = conn.execute(sql.as_str()).await;
                    }
                }
            });
        })
        .join();
    }
}

fn audit_options(signer: &NoteSigner) -> SqlAuditOptions {
    SqlAuditOptions::new("test/audit", signer.clone())
}

async fn read_back(db: &Postgres) -> Vec<AuditRecord> {
    db.export_audit()
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(s) = Schema::new() else { return };
    conformance::store(Arc::new(s.open().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_conforms() {
    let Some(s) = Schema::new() else { return };
    let db = s.open().await;
    let signer = NoteSigner::generate("test").unwrap();
    let audit = db.audit(audit_options(&signer)).await.unwrap();
    conformance::audit_sink(Arc::new(audit), move || {
        let db = db.clone();
        async move { read_back(&db).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_keeps_one_origin() {
    let Some(s) = Schema::new() else { return };
    let db = s.open().await;
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
                Ok(Arc::new(sink) as Arc<dyn AuditSink>)
            }
        },
        move || {
            let db = db.clone();
            async move { read_back(&db).await }
        },
    )
    .await;
}

/// Waits, in a task of its own, for `r` to change through `db`.
fn wait_in_task(
    db: &Postgres,
    r: &ApprovalRequest,
) -> tokio::task::JoinHandle<Result<ApprovalRequest, StoreError>> {
    let (db, id, version) = (db.clone(), r.id, r.version);
    tokio::spawn(async move { db.wait_for_change(id, version).await })
}

/// Withdraws `r` through `db`: the change its waiters must see.
async fn withdraw(db: &Postgres, r: &ApprovalRequest, now: Timestamp) -> ApprovalRequest {
    db.update(r.id, &mut |req| {
        tally::cancel(req, None, "withdrawn", now);
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_pool_wakes_a_waiter_on_another() {
    let Some(s) = Schema::new() else { return };
    let (here, there) = (s.open().await, s.open().await);
    let now = Timestamp::now();
    let r = conformance::request("ops-bot", 1, now);
    here.create_or_attach(r.clone()).await.unwrap();
    let waiting = wait_in_task(&here, &r);
    let changed = withdraw(&there, &r, now).await;
    let woke = waiting.await.unwrap().unwrap();
    assert_eq!(woke.version, changed.version);
    assert!(woke.decision().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_re_established_and_no_wake_up_is_missed() {
    let Some(s) = Schema::new() else { return };
    let (here, there) = (s.open().await, s.open().await);
    let now = Timestamp::now();
    let r = conformance::request("ops-bot", 1, now);
    here.create_or_attach(r.clone()).await.unwrap();
    let waiting = wait_in_task(&here, &r);
    // Kill every connection the two handles hold, their listeners included.
    s.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'approvals/{}' AND pid <> pg_backend_pid()",
        s.name
    ))
    .await;
    // A call that meets a killed connection is made again on a new one (nothing had been
    // committed). The waiter's listener reconnects and its waiters re-read, so the change
    // reaches it whichever happened first.
    let changed = withdraw(&there, &r, now).await;
    let woke = waiting.await.unwrap().unwrap();
    assert_eq!(woke.version, changed.version);
    // And the first handle works again too.
    assert_eq!(
        here.get(r.id).await.unwrap().unwrap().version,
        changed.version
    );
}

/// A TCP relay between one handle's pool and the server that can cut every connection that
/// asks to `LISTEN`, and refuse to carry such a request, while the handle's other
/// connections keep working: a listener that cannot listen again, as when the server is
/// briefly out of connections for it.
struct Relay {
    port: u16,
    refuse_listen: Arc<AtomicBool>,
    /// Bumped to cut the connections that listen.
    cut: tokio::sync::watch::Sender<()>,
    /// How many connections were cut for listening.
    cuts: tokio::sync::watch::Receiver<u32>,
}

impl Relay {
    async fn start(url: &str) -> Self {
        let options = url.parse::<sqlx::postgres::PgConnectOptions>().unwrap();
        let server = (options.get_host().to_owned(), options.get_port());
        let accept = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = accept.local_addr().unwrap().port();
        let refuse_listen = Arc::new(AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(());
        let (counted, cuts) = tokio::sync::watch::channel(0u32);
        let counted = Arc::new(counted);
        tokio::spawn({
            let (refuse_listen, cut) = (refuse_listen.clone(), cut.clone());
            async move {
                while let Ok((client, _)) = accept.accept().await {
                    tokio::spawn(relay_one(
                        client,
                        server.clone(),
                        refuse_listen.clone(),
                        cut.subscribe(),
                        counted.clone(),
                    ));
                }
            }
        });
        Self {
            port,
            refuse_listen,
            cut,
            cuts,
        }
    }

    /// `url`, through this relay, in plain text so that the relay can read it.
    fn url(&self, url: &str) -> String {
        use sqlx::ConnectOptions;
        url.parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .host("127.0.0.1")
            .port(self.port)
            .ssl_mode(sqlx::postgres::PgSslMode::Disable)
            .to_url_lossy()
            .to_string()
    }

    /// Cuts every connection that listens, and every one that asks to from now on.
    fn cut_listeners(&self) {
        self.refuse_listen.store(true, Ordering::SeqCst);
        self.cut.send_replace(());
    }

    fn let_listeners_through(&self) {
        self.refuse_listen.store(false, Ordering::SeqCst);
    }

    async fn cuts_reach(&mut self, n: u32) {
        self.cuts.wait_for(|c| *c >= n).await.unwrap();
    }
}

/// Carries one connection both ways until either side closes it, or until it is cut: when
/// it asks to `LISTEN` while that is refused, or when it has listened and `cut` changes.
async fn relay_one(
    mut client: tokio::net::TcpStream,
    server: (String, u16),
    refuse_listen: Arc<AtomicBool>,
    mut cut: tokio::sync::watch::Receiver<()>,
    cuts: Arc<tokio::sync::watch::Sender<u32>>,
) {
    let Ok(mut upstream) = tokio::net::TcpStream::connect(server).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = upstream.split();
    let (mut up, mut down) = ([0u8; 8192], [0u8; 8192]);
    // The end of what the client last sent, so that a request split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    let mut listening = false;
    loop {
        tokio::select! {
            n = from_client.read(&mut up) => {
                let Ok(n @ 1..) = n else { return };
                tail.extend_from_slice(&up[..n]);
                if tail.windows(8).any(|w| w == b"LISTEN \"") {
                    listening = true;
                    if refuse_listen.load(Ordering::SeqCst) {
                        cuts.send_modify(|c| *c += 1);
                        return;
                    }
                }
                let keep = tail.len().saturating_sub(7);
                tail.drain(..keep);
                if to_server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            n = from_server.read(&mut down) => {
                let Ok(n @ 1..) = n else { return };
                if to_client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
            Ok(()) = cut.changed() => {
                if listening {
                    cuts.send_modify(|c| *c += 1);
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_listener_cannot_listen_wakes_the_waiter_once_it_can() {
    let Some(s) = Schema::new() else { return };
    let mut relay = Relay::start(&s.url).await;
    let here = Postgres::connect_with(&relay.url(&s.url), s.options())
        .await
        .unwrap();
    let there = s.open().await;
    let now = Timestamp::now();
    let r = conformance::request("ops-bot", 1, now);
    here.create_or_attach(r.clone()).await.unwrap();
    let waiting = wait_in_task(&here, &r);
    // `here` loses its listening connection, and its first attempt to listen again fails
    // (sqlx's own, on its way to reporting the loss); its reads still work.
    relay.cut_listeners();
    within(
        "the listener's first attempt to listen again",
        relay.cuts_reach(2),
    )
    .await;
    // A change committed now sends a NOTIFY that nothing in `here` receives.
    let changed = withdraw(&there, &r, now).await;
    relay.let_listeners_through();
    // Once `here` listens again, its waiter re-reads and sees the change.
    let woke = within("the waiter to wake", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woke.version, changed.version);
    assert!(woke.decision().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_the_connections_for_queries_not_the_listening_one() {
    let Some(s) = Schema::new() else { return };
    let db = Postgres::connect_with(
        &s.url,
        PostgresOptions {
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_secs(1),
            ..s.options()
        },
    )
    .await
    .unwrap();
    let r = conformance::request("ops-bot", 1, Timestamp::now());
    db.create_or_attach(r.clone()).await.unwrap();
    assert_eq!(db.get(r.id).await.unwrap().unwrap().version, r.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writers_make_one_gap_free_log() {
    let Some(s) = Schema::new() else { return };
    let signer = NoteSigner::generate("test").unwrap();
    let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
    for _ in 0..3 {
        sinks.push(Arc::new(
            s.open().await.audit(audit_options(&signer)).await.unwrap(),
        ));
    }
    let db = s.open().await;
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

#[tokio::test]
async fn a_schema_from_a_newer_version_is_refused() {
    let Some(s) = Schema::new() else { return };
    s.open().await.close().await;
    s.sql(&format!(
        "UPDATE {}.approvals_schema SET version = 7",
        s.name
    ))
    .await;
    let err = Postgres::connect_with(&s.url, s.options())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::NewerSchema {
                found: 7,
                supported,
                ..
            } if supported == migrations()
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_migrate_once() {
    let Some(s) = Schema::new() else { return };
    let opens: Vec<_> = (0..5)
        .map(|_| {
            let (url, options) = (s.url.clone(), s.options());
            tokio::spawn(async move { Postgres::connect_with(&url, options).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_typed_error() {
    if Schema::new().is_none() {
        return;
    }
    let err = Postgres::connect_with(
        "postgres://postgres@127.0.0.1:1/test",
        PostgresOptions {
            acquire_timeout: std::time::Duration::from_secs(2),
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OpenError::Connect { .. }), "{err}");
}

/// Terminates every connection of the test's schema, its listeners included, as an
/// administrator or a failover does.
struct Terminated<'a> {
    schema: &'a Schema,
}

#[async_trait::async_trait]
impl conformance::Fault for Terminated<'_> {
    fn describe(&self) -> String {
        "every connection was terminated".into()
    }

    async fn inject(&self) {
        self.schema
            .sql(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'approvals/{}' AND pid <> pg_backend_pid()",
                self.schema.name
            ))
            .await;
    }

    async fn heal(&self) {}

    fn ridden_out(&self) -> bool {
        true
    }
}

/// Issue 14, hole 6: once every connection was terminated, the next change and the next
/// audit append failed ("terminating connection due to administrator command") instead of
/// going through on a new connection, as docs/durability.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_ridden_out_by_the_store_and_the_audit_log() {
    let Some(s) = Schema::new() else { return };
    let db = s.open().await;
    // Many connections are opened first, so the fault reaches pooled ones.
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let db = db.clone();
        readers.spawn(async move { db.list_open().await.unwrap() });
    }
    while let Some(r) = readers.join_next().await {
        r.unwrap();
    }
    let fault = Terminated { schema: &s };
    conformance::recovers_from_fault(Arc::new(db.clone()), &fault).await;
    let signer = NoteSigner::generate("test").unwrap();
    let audit = db.audit(audit_options(&signer)).await.unwrap();
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
    let Some(s) = Schema::new() else { return };
    let db = s.open().await;
    let signer = NoteSigner::generate("test").unwrap();
    let audit = db.audit(audit_options(&signer)).await.unwrap();
    let read = db.clone();
    let schema = &s;
    conformance::serves_past_an_unreadable_row(
        Arc::new(db),
        Arc::new(audit),
        |id| async move {
            schema
                .sql(&format!(
                    "UPDATE {}.approvals_requests SET body = '{{\"id\": [[[' WHERE id = '{id}'",
                    schema.name
                ))
                .await;
        },
        move || {
            let db = read.clone();
            async move { read_back(&db).await }
        },
    )
    .await;
}

/// Another program makes the log refuse new records (a trigger), and drops it to mend it.
struct LogRefusesRecords<'a> {
    schema: &'a Schema,
}

#[async_trait::async_trait]
impl conformance::Fault for LogRefusesRecords<'_> {
    fn describe(&self) -> String {
        "the log refuses records".into()
    }

    async fn inject(&self) {
        let s = &self.schema.name;
        self.schema
            .sql(&format!(
                "CREATE FUNCTION {s}.refuse_records() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'the log refuses records'; END $$; \
                 CREATE TRIGGER refuse_records BEFORE INSERT ON {s}.approvals_audit \
                 FOR EACH ROW EXECUTE FUNCTION {s}.refuse_records();"
            ))
            .await;
    }

    async fn heal(&self) {
        let s = &self.schema.name;
        self.schema
            .sql(&format!(
                "DROP TRIGGER refuse_records ON {s}.approvals_audit; \
                 DROP FUNCTION {s}.refuse_records();"
            ))
            .await;
    }

    fn ridden_out(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_and_its_records_commit_together() {
    let Some(s) = Schema::new() else { return };
    let db = s.open().await;
    let signer = NoteSigner::generate("test").unwrap();
    let audit = Arc::new(db.audit(audit_options(&signer)).await.unwrap());
    let read = db.clone();
    conformance::records_commit_with_their_change(
        Arc::new(db.clone()),
        audit,
        &LogRefusesRecords { schema: &s },
        move || {
            let db = read.clone();
            async move { read_back(&db).await }
        },
    )
    .await;
}

fn event(n: u64) -> approvals_core::AuditEvent {
    let action = approvals_core::Action::builder("f", "p")
        .arg("n", &n)
        .build()
        .unwrap();
    approvals_core::AuditEvent {
        at: Timestamp::now(),
        request_id: None,
        action: approvals_core::audit::ActionRef::from(&action),
        actor: None,
        policy_version: "code".into(),
        kind: approvals_core::audit::EventKind::Allowed { rule: "r".into() },
    }
}

/// Exports the log and verifies it with core's verifier against every signed checkpoint;
/// returns how many records it holds.
async fn verified(db: &Postgres, signer: &NoteSigner) -> u64 {
    let log = db.export_audit().await.unwrap();
    approvals_core::verify::verify_log(log.jsonl().as_bytes(), &log.checkpoints, &signer.verifier())
        .unwrap()
        .records
}

/// The `seq`s of the records whose rows keep the log's frontier.
async fn keeping_frontier(s: &Schema) -> Vec<i64> {
    sqlx::query_scalar(&format!(
        "SELECT seq FROM {}.approvals_audit WHERE frontier IS NOT NULL ORDER BY seq",
        s.name
    ))
    .fetch_all(&mut s.connect().await)
    .await
    .unwrap()
}

/// The log's head is read from its records by a sink opened later (as by another process):
/// it goes on numbering where the log ended, each 32nd record (and only it) keeps the
/// frontier, and checkpoints signed over both sinks' records verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_opened_later_reads_the_head_from_the_records() {
    let Some(s) = Schema::new() else { return };
    let signer = NoteSigner::generate("test").unwrap();
    let first = s.open().await;
    let audit = first.audit(audit_options(&signer)).await.unwrap();
    for n in 0..70 {
        assert_eq!(audit.append(event(n)).await.unwrap().seq, n);
    }
    audit.flush().await.unwrap();
    assert_eq!(keeping_frontier(&s).await, [31, 63]);
    let later = s.open().await;
    let audit = later.audit(audit_options(&signer)).await.unwrap();
    for n in 70..100 {
        assert_eq!(audit.append(event(n)).await.unwrap().seq, n);
    }
    audit.flush().await.unwrap();
    assert_eq!(keeping_frontier(&s).await, [31, 63, 95]);
    assert_eq!(verified(&later, &signer).await, 100);
}

/// Two sinks on one log (as two processes), taking turns: each append finds the head moved
/// by the other since its own last one. The key refuses the number it built, and it builds
/// again after the other's record: numbers follow on, none twice, and the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_behind_each_other_append_after_each_other() {
    let Some(s) = Schema::new() else { return };
    let signer = NoteSigner::generate("test").unwrap();
    let (one, two) = (s.open().await, s.open().await);
    let sinks = [
        one.audit(audit_options(&signer)).await.unwrap(),
        two.audit(audit_options(&signer)).await.unwrap(),
    ];
    for n in 0..6 {
        let sink = &sinks[usize::try_from(n % 2).unwrap()];
        assert_eq!(sink.append(event(n)).await.unwrap().seq, n);
    }
    for sink in &sinks {
        sink.flush().await.unwrap();
    }
    assert_eq!(verified(&one, &signer).await, 6);
}

/// Why a sink opened on the schema's log (by a new handle, as another process) is refused.
async fn refused(s: &Schema, signer: &NoteSigner) -> OpenError {
    s.open()
        .await
        .audit(audit_options(signer))
        .await
        .unwrap_err()
}

/// A record removed from among the log's last ones, or frontiers taken from their rows,
/// leave a head that cannot be read: a sink is refused with a typed error naming what is
/// wrong, before it appends anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_whose_recent_records_were_tampered_with_is_refused() {
    let Some(s) = Schema::new() else { return };
    let signer = NoteSigner::generate("test").unwrap();
    let db = s.open().await;
    let audit = db.audit(audit_options(&signer)).await.unwrap();
    for n in 0..40 {
        audit.append(event(n)).await.unwrap();
    }
    s.sql(&format!(
        "DELETE FROM {}.approvals_audit WHERE seq = 35",
        s.name
    ))
    .await;
    let err = refused(&s, &signer).await;
    assert!(matches!(err, OpenError::Audit { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("record 35 is missing (the next is seq 36)"),
        "{err}"
    );
    s.sql(&format!(
        "DELETE FROM {0}.approvals_audit WHERE seq > 34; UPDATE {0}.approvals_audit SET frontier = NULL",
        s.name
    ))
    .await;
    let err = refused(&s, &signer).await;
    assert!(
        err.to_string()
            .contains("none of the last records, back to seq 3, holds the log's Merkle frontier"),
        "{err}"
    );
}

/// Another writer (another process) holds the log's lock and appends a record while this
/// sink's append waits for the lock, its statement's snapshot taken before that record
/// committed: the key refuses the `seq` it built, and the sink builds again on the new
/// head, so its record follows the other's and the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_loses_the_race_inside_its_statement_builds_again() {
    use sqlx::Executor;
    let Some(s) = Schema::new() else { return };
    let signer = NoteSigner::generate("test").unwrap();
    let db = s.open().await;
    let audit = Arc::new(db.audit(audit_options(&signer)).await.unwrap());
    let first = event(0);
    assert_eq!(audit.append(first.clone()).await.unwrap().seq, 0);

    // The other writer: the log's lock, in the schema's name, as every writer takes it.
    let mut other = s.connect().await;
    other
        .execute(format!("SET search_path TO {}; BEGIN", s.name).as_str())
        .await
        .unwrap();
    let key: i64 =
        sqlx::query_scalar("SELECT hashtextextended('approvals_audit ' || current_schema(), 0)")
            .fetch_one(&mut other)
            .await
            .unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut other)
        .await
        .unwrap();
    let mut replica = approvals_core::log::LogHead::default();
    replica.append(first);
    let theirs = replica.append(event(1));
    sqlx::query("INSERT INTO approvals_audit (seq, leaf, record) VALUES ($1, $2, $3)")
        .bind(i64::try_from(theirs.seq).unwrap())
        .bind(theirs.leaf.to_vec())
        .bind(&theirs.line)
        .execute(&mut other)
        .await
        .unwrap();

    let ours = tokio::spawn({
        let audit = audit.clone();
        async move { audit.append(event(2)).await }
    });
    // Until the sink's statement waits for the lock the other writer holds.
    let mut watch = s.connect().await;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(key)
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(!ours.is_finished(), "the append did not wait for the lock");
        tokio::task::yield_now().await;
    }
    other.execute("COMMIT").await.unwrap();
    assert_eq!(
        ours.await.unwrap().unwrap().seq,
        2,
        "built again after theirs"
    );
    audit.flush().await.unwrap();
    assert_eq!(verified(&db, &signer).await, 3);
}

/// A log kept by schema version 2, its frontier in a head row of its own, opened by this
/// build: the frontier moves into the last record's row, new records follow on, and the
/// whole log verifies with core's verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_kept_by_schema_2_is_migrated_and_goes_on() {
    let Some(s) = Schema::new() else { return };
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Version 2 as it was made: its migrations, then three records and the head after them
    // as its writer stored them.
    let mut sql = format!("CREATE SCHEMA {0}; SET search_path TO {0};\n", s.name);
    for m in [
        include_str!("../src/sql/migrations/postgres/0000_meta.sql"),
        include_str!("../src/sql/migrations/postgres/0001_init.sql"),
        include_str!("../src/sql/migrations/postgres/0002_sessions.sql"),
    ] {
        sql.push_str(m);
        sql.push('\n');
    }
    sql.push_str("INSERT INTO approvals_schema (id, version) VALUES (1, 2);\n");
    let mut head = approvals_core::log::LogHead::default();
    for n in 0..3 {
        let a = head.append(event(n));
        sql.push_str(&format!(
            "INSERT INTO approvals_audit (seq, leaf, record) VALUES ({}, '\\x{}', '{}');\n",
            a.seq,
            hex(&a.leaf),
            a.line.replace('\'', "''")
        ));
    }
    sql.push_str(&format!(
        "UPDATE approvals_audit_head SET frontier = '\\x{}', last_leaf = '\\x{}' WHERE id = 1;",
        hex(&head.tree().to_bytes()),
        hex(&head.last_leaf().unwrap())
    ));
    s.sql(&sql).await;

    let signer = NoteSigner::generate("test").unwrap();
    let db = s.open().await;
    let audit = db
        .audit(audit_options(&signer))
        .await
        .expect("the migrated head is read from the records");
    assert_eq!(
        keeping_frontier(&s).await,
        [2],
        "the head row's frontier, moved"
    );
    for n in 3..40 {
        assert_eq!(
            audit.append(event(n)).await.unwrap().seq,
            n,
            "numbering continues"
        );
    }
    audit.flush().await.unwrap();
    assert_eq!(keeping_frontier(&s).await, [2, 31]);
    assert_eq!(verified(&db, &signer).await, 40);
    let version: i64 = sqlx::query_scalar(&format!(
        "SELECT version FROM {}.approvals_schema WHERE id = 1",
        s.name
    ))
    .fetch_one(&mut s.connect().await)
    .await
    .unwrap();
    assert_eq!(version, migrations());
}

/// Issue 20, goal 6: listing the open requests costs what the open ones cost, not the
/// history. Right after a burst of decisions, before autovacuum has vacuumed or analyzed
/// the table, every decided request still has an entry in the open index (a dead one) and
/// the planner has no statistics that say how few are open. Asked for every open row at
/// once, Postgres planned a bitmap scan there, which read the row of every request decided
/// since the last vacuum on every listing (a list of 100 open requests among 20,000 decided
/// ones took 4x as long as among none: `open_list` in `approvals-perf`). The store asks for
/// a page at a time, which the planner reads as an index scan in order: that visits a dead
/// entry once and marks it so that the listings after it skip it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_list_is_an_index_scan_after_a_burst_of_decisions() {
    let Some(s) = Schema::new() else { return };
    let db = Arc::new(s.open().await);
    let now = Timestamp::now();
    let mut makers = tokio::task::JoinSet::new();
    for maker in 0..8_i64 {
        let db = db.clone();
        makers.spawn(async move {
            let mut open = Vec::new();
            for n in (maker..2000).step_by(8) {
                let r = conformance::request("burst", n, now);
                db.create_or_attach(r.clone()).await.unwrap();
                if n % 200 == 0 {
                    open.push(r.id);
                } else {
                    db.update(r.id, &mut |r| {
                        tally::cancel(r, None, "decided", now);
                    })
                    .await
                    .unwrap();
                }
            }
            open
        });
    }
    let mut expected = Vec::new();
    while let Some(open) = makers.join_next().await {
        expected.extend(open.unwrap());
    }
    expected.sort_by_key(|id| id.to_string());
    // The store's query for a page, as it sends it (`list_open` in `sql/postgres.rs`).
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT id, body FROM {}.approvals_requests WHERE pending AND id > '' \
         ORDER BY id LIMIT 256",
        s.name
    ))
    .fetch_all(&mut s.connect().await)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("Index Scan")),
        "an index scan: {plan:#?}"
    );
    assert!(
        !plan
            .iter()
            .any(|l| l.contains("Bitmap") || l.contains("Seq Scan")),
        "no bitmap scan over every decided request's row, no scan of the table: {plan:#?}"
    );
    let open: Vec<_> = db
        .list_open()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(open, expected, "the ten open requests, in order");
}

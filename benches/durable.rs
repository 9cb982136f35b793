//! Allowed-call throughput with a durable audit sink, against raw baselines in the same
//! process:
//! - the gate on SQLite (the audit record committed with `synchronous = FULL` before the
//!   call runs), one caller and 32 concurrent callers (group commit), against a raw
//!   `write` + `fdatasync` loop and a raw single-row `INSERT` loop into an SQLite file with
//!   the same settings;
//! - the same on Postgres (when `APPROVALS_TEST_POSTGRES_URL` is set), against a raw
//!   single-row `INSERT` loop on the same server.
//!
//! `cargo bench --bench durable` prints each figure and the ratios.
//!
//! One caller's figures are taken twice, the caller being a task on the runtime's workers
//! (as a gated call in an agent's task is) and the thread that blocks on the runtime: a
//! task woken from SQLite's or Postgres's I/O costs tens of µs more on this machine than
//! a blocked thread, and a ratio compares a gated call and its baseline taken alike.
//!
//! The ratios come from rounds in which each case runs in turn. One caller's is printed
//! twice: as the ratio of the means over every round, and as the median of each round's own
//! ratio, which one round's stall of the machine cannot move.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use approvals::note::NoteSigner;
use approvals::sql::{Database, SqlAuditOptions};
use approvals::{Action, CodePolicy, Context, Gate, Principal, requires_approval};
use criterion::{Criterion, criterion_group, criterion_main};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn gate(url: &str) -> (Gate, Database, approvals::sql::SqlAudit) {
    let db = Database::open(url).await.expect("database");
    let signer = NoteSigner::generate("bench").expect("key");
    let audit = db
        .audit(SqlAuditOptions::new("bench/audit", signer))
        .await
        .expect("audit");
    let gate = Gate::builder()
        .policy(CodePolicy::new().allow("read"))
        .store_arc(db.store())
        .audit(audit.clone())
        .default_context(Context::new(Principal::agent("ops-bot")))
        .build()
        .expect("gate");
    (gate, db, audit)
}

/// `n` appends of an allowed call's record straight to the sink, one after another, from a
/// task on the runtime's workers as `calls` makes a gated call: the sink's share of a gated
/// call, taken alike.
fn appends(rt: &tokio::runtime::Runtime, audit: &approvals::sql::SqlAudit, n: usize) -> Duration {
    use approvals::AuditSink;
    let action = Action::builder("dashboards::read", "read")
        .arg("name", "churn")
        .build()
        .expect("action");
    let audit = audit.clone();
    let appending = rt.spawn(async move {
        let start = Instant::now();
        for _ in 0..n {
            let event = approvals::AuditEvent {
                at: approvals::Timestamp::now(),
                request_id: None,
                action: approvals::ActionRef::from(&action),
                actor: Some(Principal::agent("ops-bot")),
                policy_version: "code".into(),
                kind: approvals::EventKind::Allowed {
                    rule: "read".into(),
                },
            };
            audit.append(event).await.expect("append");
        }
        start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
    });
    rt.block_on(appending).expect("task")
}

/// One allowed call, a function gated by `#[requires_approval]` as a user's is: the call
/// recorded, judged and audited, then its body run.
#[requires_approval(policy = "read", name = "dashboards::read", gate = gate, skip(gate))]
async fn call(gate: &Gate, name: &str, n: u64) -> Result<u64, approvals::Error> {
    Ok(black_box(n) + black_box(name.len() as u64))
}

/// `n` calls, one after another, from the thread that blocks on the runtime; the time per
/// call.
fn calls_here(rt: &tokio::runtime::Runtime, gate: &Gate, n: usize) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..n {
            call(gate, "churn", i as u64).await.expect("allowed");
        }
        start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
    })
}

/// `n` calls from `tasks` concurrent callers; the time per call.
fn calls(rt: &tokio::runtime::Runtime, gate: &Gate, n: usize, tasks: usize) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let gate = gate.clone();
            set.spawn(async move {
                for i in 0..n / tasks {
                    call(&gate, "churn", (t * n + i) as u64)
                        .await
                        .expect("allowed");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
        start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
    })
}

/// A record's worth of bytes written by hand: one `write` and one `fdatasync` each.
fn raw_fsync(dir: &std::path::Path, n: usize) -> Duration {
    let line = vec![b'x'; 420];
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.jsonl"))
        .expect("raw file");
    let start = Instant::now();
    for _ in 0..n {
        f.write_all(&line).expect("write");
        f.sync_data().expect("fdatasync");
    }
    start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
}

/// Where a raw INSERT baseline keeps a log's head (a frontier of ten 32-byte hashes, as
/// after about a thousand records).
#[derive(Clone, Copy, PartialEq)]
enum Head {
    /// Nowhere: the record alone.
    None,
    /// In a row of its own, moved in the record's transaction, in one script, as the log's
    /// append does: what any log that keeps its head apart costs at least.
    Apart,
    /// In the record's own row.
    InRow,
}

/// A connection for raw single-row INSERTs, each its own transaction, its tables made once:
/// `raw` (a record, and a frontier when the head is kept in the record's row) and `head`.
enum Raw {
    /// An SQLite file with the sink's settings (WAL, synchronous = FULL).
    Sqlite(sqlx::SqliteConnection),
    /// Tables on the Postgres server, named apart (`raw_<id>`, `head_<id>`), and the
    /// INSERT for each way of keeping the head, made once.
    Postgres(sqlx::PgConnection, String, [String; 3]),
}

/// A record's worth of text, and a frontier of ten 32-byte hashes.
const RECORD: usize = 420;
const FRONTIER: usize = 320;

impl Raw {
    async fn sqlite(dir: &std::path::Path) -> Self {
        use sqlx::{ConnectOptions, Executor};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("raw.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .connect()
            .await
            .expect("sqlite");
        conn.execute(
            "CREATE TABLE raw (seq INTEGER PRIMARY KEY, record TEXT NOT NULL, frontier BLOB);\n\
             CREATE TABLE head (id INTEGER PRIMARY KEY, frontier BLOB NOT NULL);\n\
             INSERT INTO head VALUES (1, x'00');",
        )
        .await
        .expect("tables");
        Self::Sqlite(conn)
    }

    async fn postgres(url: &str) -> Self {
        use sqlx::{ConnectOptions, Executor};
        let mut conn = url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .expect("url")
            .connect()
            .await
            .expect("postgres");
        let id = approvals::RequestId::generate().to_string().to_lowercase();
        let (raw, head) = (format!("raw_{id}"), format!("head_{id}"));
        conn.execute(
            format!(
                "CREATE TABLE {raw} (seq BIGINT PRIMARY KEY, record TEXT NOT NULL, frontier BYTEA);\n\
                 CREATE TABLE {head} (id INTEGER PRIMARY KEY, frontier BYTEA NOT NULL);\n\
                 INSERT INTO {head} VALUES (1, '\\x00'::bytea);"
            )
            .as_str(),
        )
        .await
        .expect("tables");
        let inserts = [
            format!("INSERT INTO {raw} (seq, record) VALUES ($1, $2)"),
            // One statement, as the log's append is.
            format!(
                "WITH h AS (UPDATE {head} SET frontier = $3 WHERE id = 1 RETURNING 1)\n\
                 INSERT INTO {raw} (seq, record) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM h)"
            ),
            format!("INSERT INTO {raw} (seq, record, frontier) VALUES ($1, $2, $3)"),
        ];
        Self::Postgres(
            conn,
            format!("DROP TABLE {raw}; DROP TABLE {head}"),
            inserts,
        )
    }

    /// Drops what it made on a server.
    async fn drop_tables(self) {
        use sqlx::Executor;
        if let Self::Postgres(mut conn, drop, _) = self {
            conn.execute(drop.as_str()).await.expect("drop");
        }
    }

    /// `n` INSERTs numbered from `from`, the log's head kept as `head` says; the time per
    /// INSERT.
    async fn inserts(&mut self, from: usize, n: usize, head: Head) -> Duration {
        let record = "x".repeat(RECORD);
        let frontier = vec![0xA5u8; FRONTIER];
        let start = Instant::now();
        for i in from..from + n {
            let seq = i as i64;
            match self {
                Self::Sqlite(conn) => {
                    let insert = match head {
                        Head::None => "INSERT INTO raw (seq, record) VALUES (?, ?)",
                        Head::Apart => {
                            "BEGIN IMMEDIATE;\n\
                             UPDATE head SET frontier = ? WHERE id = 1;\n\
                             INSERT INTO raw (seq, record) VALUES (?, ?);\n\
                             COMMIT;"
                        }
                        Head::InRow => "INSERT INTO raw (frontier, seq, record) VALUES (?, ?, ?)",
                    };
                    let mut query = sqlx::query(insert);
                    if head != Head::None {
                        query = query.bind(&frontier);
                    }
                    query
                        .bind(seq)
                        .bind(&record)
                        .execute(&mut *conn)
                        .await
                        .map(drop)
                }
                Self::Postgres(conn, _, inserts) => {
                    let insert = match head {
                        Head::None => &inserts[0],
                        Head::Apart => &inserts[1],
                        Head::InRow => &inserts[2],
                    };
                    let mut query = sqlx::query(insert).bind(seq).bind(&record);
                    if head != Head::None {
                        query = query.bind(&frontier);
                    }
                    query.execute(&mut *conn).await.map(drop)
                }
            }
            .expect("insert");
        }
        start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// The time per call of each of `runs` in each of `rounds` rounds of `per` calls, the runs
/// taken in turn within a round, so that the machine's drift over the run falls on each
/// alike. A run is given the number of calls made before it, and how many to make.
///
/// Each round starts one run further on than the round before, so that each run follows
/// each other as often: a run's time depends on the one before it (which threads it left
/// awake, on which core), and in a fixed order the raw INSERT from a task, always right
/// after the same INSERTs from the blocked thread on its connection, took 0.97–1.0× those
/// in some runs and 1.13–1.19× in others, as the cases around it changed.
fn interleaved(
    rounds: usize,
    per: usize,
    runs: &mut [&mut dyn FnMut(usize, usize) -> Duration],
) -> Vec<Rounds> {
    let mut taken: Vec<Rounds> = (0..runs.len())
        .map(|_| Rounds(Vec::with_capacity(rounds)))
        .collect();
    for round in 0..rounds {
        for k in 0..runs.len() {
            let i = (round + k) % runs.len();
            taken[i].0.push(runs[i](round * per, per));
        }
    }
    taken
}

/// One run's time per call in each round of `interleaved`.
struct Rounds(Vec<Duration>);

impl Rounds {
    /// The time per call over all rounds (each round makes as many calls).
    fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    /// The median of each round's own ratio of this run to `base`. A round's two runs are
    /// taken within milliseconds of each other, so a stall of the machine (an fsync that
    /// waits on the host's disk, a neighbour's burst of CPU) moves one round's ratio, not
    /// the median, where it would move the means' ratio.
    fn median_ratio(&self, base: &Rounds) -> f64 {
        let mut ratios: Vec<f64> = self
            .0
            .iter()
            .zip(&base.0)
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let mid = ratios.len() / 2;
        if ratios.len() % 2 == 1 {
            ratios[mid]
        } else {
            (ratios[mid - 1] + ratios[mid]) / 2.0
        }
    }
}

/// A raw connection, taken by each run in turn (and moved into a task by some).
type Shared = std::cell::RefCell<Option<Raw>>;

/// `Raw::inserts` from the thread that blocks on the runtime.
fn inserts_here(
    rt: &tokio::runtime::Runtime,
    raw: &Shared,
    from: usize,
    n: usize,
    head: Head,
) -> Duration {
    let mut guard = raw.borrow_mut();
    let raw = guard.as_mut().expect("the raw connection is back");
    rt.block_on(raw.inserts(from, n, head))
}

/// `Raw::inserts` from a task on the runtime's workers, as `calls` makes a gated call.
fn inserts_in_task(
    rt: &tokio::runtime::Runtime,
    raw: &Shared,
    from: usize,
    n: usize,
    head: Head,
) -> Duration {
    let mut taken = raw.borrow_mut().take().expect("the raw connection is back");
    let (back, took) = rt.block_on(async move {
        tokio::spawn(async move {
            let took = taken.inserts(from, n, head).await;
            (taken, took)
        })
        .await
        .expect("task")
    });
    *raw.borrow_mut() = Some(back);
    took
}

/// Where one database's cases are taken: each in turn over `rounds` rounds of `per` calls,
/// the raw rows numbered from `base + 4 * round`.
struct Cases<'a> {
    rt: &'a tokio::runtime::Runtime,
    rounds: usize,
    per: usize,
    base: usize,
}

impl Cases<'_> {
    /// The gated call from a task and from the blocked thread, its record appended alone,
    /// the raw INSERT from the blocked thread and from a task, the same with a head row and
    /// with the head in the record's row, and, where the database is a file, a raw
    /// `write`+`fdatasync` in `fsync_dir`: each one's time per call in each round.
    fn run(
        &self,
        gate: &Gate,
        audit: &approvals::sql::SqlAudit,
        raw: &Shared,
        fsync_dir: Option<&std::path::Path>,
    ) -> Vec<Rounds> {
        let (rt, base) = (self.rt, self.base);
        let mut one = |_, n| calls(rt, gate, n, 1);
        let mut one_here = |_, n| calls_here(rt, gate, n);
        let mut sink = |_, n| appends(rt, audit, n);
        let mut insert = |i, n| inserts_here(rt, raw, base + 4 * i, n, Head::None);
        let mut insert_task = |i, n| inserts_in_task(rt, raw, base + 4 * i + n, n, Head::None);
        let mut with_head = |i, n| inserts_here(rt, raw, base + 4 * i + 2 * n, n, Head::Apart);
        let mut in_row = |i, n| inserts_here(rt, raw, base + 4 * i + 3 * n, n, Head::InRow);
        let mut cases: Vec<&mut dyn FnMut(usize, usize) -> Duration> = vec![
            &mut one,
            &mut one_here,
            &mut sink,
            &mut insert,
            &mut insert_task,
            &mut with_head,
            &mut in_row,
        ];
        let mut fsync = fsync_dir.map(|dir| move |_, n| raw_fsync(dir, n));
        if let Some(fsync) = &mut fsync {
            cases.push(fsync);
        }
        interleaved(self.rounds, self.per, &mut cases)
    }
}

/// Prints one database's figures from [`Cases::run`], and `many`, the time per call of 32
/// callers; the ratios to fsync where it was taken.
fn report(db: &str, at: &Cases<'_>, runs: &[Rounds], many: Duration) {
    let [
        one,
        one_here,
        sink,
        insert,
        insert_task,
        with_head,
        in_row,
        rest @ ..,
    ] = runs
    else {
        unreachable!("seven cases, and fsync's")
    };
    let m = |r: &Rounds| us(r.mean());
    let fsync = rest.first().map(m);
    let mut line = format!(
        "{db} ({} rounds of {} calls each in turn): gated allowed call, 1 caller, {:.1} µs from a task and {:.1} µs from the blocked thread; its record appended alone {:.1} µs from a task ({:.2}x of it the gated call, {:.2}x INSERT); raw INSERT {:.1} µs from a task and {:.1} µs from the blocked thread; ",
        at.rounds,
        at.per,
        m(one),
        m(one_here),
        m(sink),
        m(one) / m(sink),
        m(sink) / m(insert_task),
        m(insert_task),
        m(insert),
    );
    if let Some(fsync) = fsync {
        line += &format!("raw write+fdatasync {fsync:.1} µs; ");
    }
    line += &format!(
        "INSERT with a head row {:.1} µs ({:.2}x INSERT), with the head in the record's row {:.1} µs ({:.2}x INSERT); 1 caller = {:.2}x INSERT from a task, {:.2}x from the blocked thread",
        m(with_head),
        m(with_head) / m(insert),
        m(in_row),
        m(in_row) / m(insert),
        m(one) / m(insert_task),
        m(one_here) / m(insert),
    );
    if let Some(fsync) = fsync {
        line += &format!(", {:.2}x fsync", m(one_here) / fsync);
    }
    line += &format!(
        " (the median of the rounds' own ratios: {:.2}x from a task, {:.2}x from the blocked thread); 32 callers {:.1} µs a call = ",
        one.median_ratio(insert_task),
        one_here.median_ratio(insert),
        us(many),
    );
    if let Some(fsync) = fsync {
        line += &format!("{:.2}x fsync, ", us(many) / fsync);
    }
    println!("{line}{:.2}x INSERT", us(many) / m(insert));
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite:{}", dir.path().join("approvals.db").display());
    let (sqlite, _db, sqlite_audit) = rt.block_on(gate(&sqlite_url));
    let mut raw_sqlite = rt.block_on(Raw::sqlite(dir.path()));
    // Raw rows made so far (each numbered once).
    let mut made = 0;

    let mut group = c.benchmark_group("durable_allowed_call");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("sqlite_gate_1_caller", |b| {
        let mut n = 0;
        b.to_async(&rt).iter(|| {
            n += 1;
            call(&sqlite, "churn", n)
        })
    });
    group.bench_function("sqlite_gate_32_callers", |b| {
        b.iter_custom(|iters| {
            let n = (iters as usize).max(32);
            calls(&rt, &sqlite, n, 32) * iters as u32
        })
    });
    group.bench_function("raw_write_fdatasync", |b| {
        b.iter_custom(|iters| raw_fsync(dir.path(), iters as usize) * iters as u32)
    });
    group.bench_function("raw_sqlite_insert", |b| {
        b.iter_custom(|iters| {
            let n = iters as usize;
            made += n;
            rt.block_on(raw_sqlite.inserts(made - n, n, Head::None)) * iters as u32
        })
    });
    let postgres = std::env::var("APPROVALS_TEST_POSTGRES_URL").ok();
    let pg_schema = format!("bench_{}", approvals::RequestId::generate()).to_lowercase();
    let pg = postgres.as_ref().map(|url| {
        let sep = if url.contains('?') { '&' } else { '?' };
        rt.block_on(gate(&format!("{url}{sep}schema={pg_schema}")))
    });
    let mut raw_pg = postgres.as_ref().map(|url| rt.block_on(Raw::postgres(url)));
    if let (Some((pg_gate, _, _)), Some(raw)) = (&pg, &mut raw_pg) {
        group.bench_function("postgres_gate_1_caller", |b| {
            let mut n = 0;
            b.to_async(&rt).iter(|| {
                n += 1;
                call(pg_gate, "churn", n)
            })
        });
        group.bench_function("postgres_gate_32_callers", |b| {
            b.iter_custom(|iters| {
                let n = (iters as usize).max(32);
                calls(&rt, pg_gate, n, 32) * iters as u32
            })
        });
        group.bench_function("raw_postgres_insert", |b| {
            b.iter_custom(|iters| {
                let n = iters as usize;
                made += n;
                rt.block_on(raw.inserts(made - n, n, Head::None)) * iters as u32
            })
        });
    } else {
        println!("postgres: skipped (APPROVALS_TEST_POSTGRES_URL is not set)");
    }
    group.finish();

    // The ratios: each run in turn, 20 rounds of 50 calls.
    let (rounds, per) = (20, 50);
    let base = made;
    // One connection for the raw runs, taken by each in turn; each round numbers its
    // rows from `base + 4 * i`, `n` a run.
    let raw_sqlite: Shared = std::cell::RefCell::new(Some(raw_sqlite));
    let at = Cases {
        rt: &rt,
        rounds,
        per,
        base,
    };
    let runs = at.run(&sqlite, &sqlite_audit, &raw_sqlite, Some(dir.path()));
    report("sqlite", &at, &runs, calls(&rt, &sqlite, 4000, 32));
    if let (Some((pg_gate, db, pg_audit)), Some(raw), Some(url)) = (pg, raw_pg, &postgres) {
        let raw: Shared = std::cell::RefCell::new(Some(raw));
        let runs = at.run(&pg_gate, &pg_audit, &raw, None);
        report("postgres", &at, &runs, calls(&rt, &pg_gate, 4000, 32));
        rt.block_on(async {
            use sqlx::{ConnectOptions, Executor};
            if let Some(raw) = raw.into_inner() {
                raw.drop_tables().await;
            }
            db.close().await;
            let mut conn = url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .expect("url")
                .connect()
                .await
                .expect("postgres");
            conn.execute(format!("DROP SCHEMA {pg_schema} CASCADE").as_str())
                .await
                .expect("drop schema");
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

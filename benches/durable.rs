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

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use approvals::note::NoteSigner;
use approvals::sql::{Database, SqlAuditOptions};
use approvals::{Action, CallOptions, CodePolicy, Context, Gate, Principal};
use criterion::{Criterion, criterion_group, criterion_main};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn gate(url: &str) -> (Gate, Database) {
    let db = Database::open(url).await.expect("database");
    let signer = NoteSigner::generate("bench").expect("key");
    let audit = db
        .audit(SqlAuditOptions::new("bench/audit", signer))
        .await
        .expect("audit");
    let gate = Gate::builder()
        .policy(CodePolicy::new().allow("read"))
        .store_arc(db.store())
        .audit(audit)
        .build()
        .expect("gate");
    (gate, db)
}

/// One allowed call, as `#[requires_approval]` makes it: record the call, judge it, audit
/// it, run the body.
async fn call(gate: &Gate, n: u64) -> u64 {
    let action = Action::builder("dashboards::read", "read")
        .arg("name", "churn")
        .arg("n", &n)
        .build()
        .expect("action");
    let context = Context::new(Principal::agent("ops-bot"));
    let permit = gate
        .authorize(action, context, CallOptions::default())
        .await
        .expect("allowed");
    permit.finish(Ok(())).await;
    black_box(n)
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
                    call(&gate, (t * n + i) as u64).await;
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

/// Single-row INSERTs, each its own transaction, into an SQLite file with the sink's
/// settings (WAL, synchronous = FULL), the log's head kept as `head` says.
fn raw_sqlite(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    n: usize,
    head: Head,
) -> Duration {
    use sqlx::{ConnectOptions, Executor};
    rt.block_on(async {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join(format!("raw-{}.db", approvals::RequestId::generate())))
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
        let record = "x".repeat(420);
        let frontier = vec![0xA5u8; 320];
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
        let start = Instant::now();
        for i in 0..n {
            let mut query = sqlx::query(insert);
            if head != Head::None {
                query = query.bind(&frontier);
            }
            query
                .bind(i as i64)
                .bind(&record)
                .execute(&mut conn)
                .await
                .expect("insert");
        }
        start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
    })
}

/// Single-row INSERTs, each its own transaction, into a Postgres table.
fn raw_postgres(rt: &tokio::runtime::Runtime, url: &str, n: usize) -> Duration {
    use sqlx::{ConnectOptions, Executor};
    rt.block_on(async {
        let mut conn = url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .expect("url")
            .connect()
            .await
            .expect("postgres");
        let table = format!("raw_{}", approvals::RequestId::generate()).to_lowercase();
        conn.execute(
            format!("CREATE TABLE {table} (seq BIGINT PRIMARY KEY, record TEXT NOT NULL)").as_str(),
        )
        .await
        .expect("table");
        let record = "x".repeat(420);
        let insert = format!("INSERT INTO {table} (seq, record) VALUES ($1, $2)");
        let start = Instant::now();
        for i in 0..n {
            sqlx::query(&insert)
                .bind(i as i64)
                .bind(&record)
                .execute(&mut conn)
                .await
                .expect("insert");
        }
        let per = start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX);
        conn.execute(format!("DROP TABLE {table}").as_str())
            .await
            .expect("drop");
        per
    })
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite:{}", dir.path().join("approvals.db").display());
    let (sqlite, _db) = rt.block_on(gate(&sqlite_url));

    let mut group = c.benchmark_group("durable_allowed_call");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("sqlite_gate_1_caller", |b| {
        let mut n = 0;
        b.to_async(&rt).iter(|| {
            n += 1;
            call(&sqlite, n)
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
            raw_sqlite(&rt, dir.path(), iters as usize, Head::None) * iters as u32
        })
    });
    let postgres = std::env::var("APPROVALS_TEST_POSTGRES_URL").ok();
    let pg_schema = format!("bench_{}", approvals::RequestId::generate()).to_lowercase();
    let pg = postgres.as_ref().map(|url| {
        let sep = if url.contains('?') { '&' } else { '?' };
        rt.block_on(gate(&format!("{url}{sep}schema={pg_schema}")))
    });
    if let (Some((pg_gate, _)), Some(url)) = (&pg, &postgres) {
        group.bench_function("postgres_gate_1_caller", |b| {
            let mut n = 0;
            b.to_async(&rt).iter(|| {
                n += 1;
                call(pg_gate, n)
            })
        });
        group.bench_function("postgres_gate_32_callers", |b| {
            b.iter_custom(|iters| {
                let n = (iters as usize).max(32);
                calls(&rt, pg_gate, n, 32) * iters as u32
            })
        });
        group.bench_function("raw_postgres_insert", |b| {
            b.iter_custom(|iters| raw_postgres(&rt, url, iters as usize) * iters as u32)
        });
    } else {
        println!("postgres: skipped (APPROVALS_TEST_POSTGRES_URL is not set)");
    }
    group.finish();

    // The ratios, from one interleaved run of each in this process.
    let n = 1000;
    let one = calls(&rt, &sqlite, n, 1);
    let many = calls(&rt, &sqlite, n * 4, 32);
    let fsync = raw_fsync(dir.path(), n);
    let insert = raw_sqlite(&rt, dir.path(), n, Head::None);
    let with_head = raw_sqlite(&rt, dir.path(), n, Head::Apart);
    let in_row = raw_sqlite(&rt, dir.path(), n, Head::InRow);
    println!(
        "sqlite: gated allowed call {:.1} µs (1 caller), {:.1} µs (32 callers); raw write+fdatasync {:.1} µs, raw INSERT {:.1} µs, with a head row {:.1} µs ({:.2}x INSERT), with the head in the record's row {:.1} µs ({:.2}x INSERT); 1 caller = {:.2}x fsync, {:.2}x INSERT, {:.2}x INSERT with a head row; 32 callers = {:.2}x fsync, {:.2}x INSERT",
        us(one),
        us(many),
        us(fsync),
        us(insert),
        us(with_head),
        us(with_head) / us(insert),
        us(in_row),
        us(in_row) / us(insert),
        us(one) / us(fsync),
        us(one) / us(insert),
        us(one) / us(with_head),
        us(many) / us(fsync),
        us(many) / us(insert),
    );
    if let (Some((pg_gate, db)), Some(url)) = (&pg, &postgres) {
        let one = calls(&rt, pg_gate, n, 1);
        let many = calls(&rt, pg_gate, n * 4, 32);
        let insert = raw_postgres(&rt, url, n);
        println!(
            "postgres: gated allowed call {:.1} µs (1 caller), {:.1} µs (32 callers); raw INSERT {:.1} µs; 1 caller = {:.2}x INSERT, 32 callers = {:.2}x INSERT",
            us(one),
            us(many),
            us(insert),
            us(one) / us(insert),
            us(many) / us(insert),
        );
        rt.block_on(async {
            use sqlx::{ConnectOptions, Executor};
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

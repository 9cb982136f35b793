//! `durable_call gated|append|raw N`: N allowed calls one after another with the audit log
//! on the Postgres server at `APPROVALS_TEST_POSTGRES_URL` (or the SQLite file of an
//! `sqlite:` URL, in a build with both features), from a task on the runtime, as the
//! durable bench makes them; or N appends of the same record to the sink alone; or, the
//! baseline, N raw single-row INSERTs of the sink's record (its text and leaf, without the
//! log's frontier) into a table of their own in the same database, each its own
//! transaction, on a connection opened as the sink's is. Prints the time per call.
//!
//! On SQLite the baseline can carry a frontier of 384 bytes the ways a log could keep one
//! (`durable_call raw N FRONTIER`, see [`Frontier`]), to count what each costs in pages
//! written to the WAL (`pwrite` calls under `strace -f -c`).
//!
//! Made to be run under `strace -f -c` or `valgrind --tool=callgrind`, to see what a gated
//! call adds to its append beyond time: system calls (round trips to the server, wake-ups
//! between threads) and instructions.
//!
//! ```sh
//! cargo build --release -p approvals-perf --features sqlite,postgres --bin durable_call
//! APPROVALS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   strace -f -c -e trace=network,futex,epoll_wait target/release/durable_call gated 2000
//! ```

use std::time::Instant;

use approvals::note::NoteSigner;
use approvals::sql::{Database, SqlAuditOptions};
use approvals::{
    Action, ActionRef, AuditEvent, AuditSink, CallOptions, CodePolicy, Context, EventKind, Gate,
    Principal, Timestamp,
};

fn action(n: u64) -> Result<Action, approvals::ArgumentError> {
    Action::builder("dashboards::read", "read")
        .arg("name", "churn")
        .arg("n", &n)
        .build()
}

const USAGE: &str = "usage: durable_call gated|append|raw N [FRONTIER]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or(USAGE)?;
    let n: u64 = args.next().ok_or(USAGE)?.parse()?;
    let frontier = match args.next() {
        None => Frontier::None,
        Some(f) => Frontier::parse(&f).ok_or_else(|| {
            let names: Vec<_> = Frontier::NAMES.iter().map(|(name, _)| *name).collect();
            format!("FRONTIER is one of {}", names.join(", "))
        })?,
    };
    let url = std::env::var("APPROVALS_TEST_POSTGRES_URL")
        .map_err(|_| "set APPROVALS_TEST_POSTGRES_URL to a Postgres server")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let took = tokio::spawn(async move { run(&mode, n, &url, frontier).await })
            .await?
            .map_err(|e| e.to_string())?;
        println!("durable_call: {took:.1} µs a call");
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

async fn run(
    mode: &str,
    n: u64,
    url: &str,
    frontier: Frontier,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let db = Database::open(url).await?;
    let audit = db
        .audit(SqlAuditOptions::new(
            "perf/durable",
            NoteSigner::generate("perf")?,
        ))
        .await?;
    let gate = Gate::builder()
        .policy(CodePolicy::new().allow("read"))
        .store_arc(db.store())
        .audit(audit.clone())
        .build()?;
    // One record first: the raw INSERTs copy its size.
    audit.append(event(0)?).await?;
    let start = Instant::now();
    match mode {
        "gated" => {
            for i in 0..n {
                let permit = gate
                    .authorize(
                        action(i)?,
                        Context::new(Principal::agent("ops-bot")),
                        CallOptions::default(),
                    )
                    .await?;
                permit.finish(Ok(())).await;
            }
        }
        "append" => {
            for i in 0..n {
                audit.append(event(i)?).await?;
            }
        }
        "raw" => {
            let line = db.export_audit().await?.jsonl();
            let record = line.lines().last().ok_or("the sink wrote no record")?;
            return raw_inserts(url, record, n, frontier).await;
        }
        _ => return Err(USAGE.into()),
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// The record of allowed call number `n`.
fn event(n: u64) -> Result<AuditEvent, approvals::ArgumentError> {
    Ok(AuditEvent {
        at: Timestamp::now(),
        request_id: None,
        action: ActionRef::from(&action(n)?),
        actor: Some(Principal::agent("ops-bot")),
        policy_version: "code".into(),
        kind: EventKind::Allowed {
            rule: "read".into(),
        },
    })
}

/// Where the raw baseline keeps a Merkle frontier (SQLite only): nowhere, or 384 bytes (a
/// log of about 4,000 records) in a `frontier` column, with the trigger that keeps the
/// log's table in order (schema version 5) where it has one.
#[derive(Clone, Copy)]
enum Frontier {
    /// No frontier and no trigger: the baseline.
    None,
    /// In every record's row.
    EveryRow,
    /// In the new record's row, cleared from the row before by the trigger after the
    /// INSERT: how the log keeps it (schema versions 4 and 5).
    ClearedAfterInsert,
    /// The same, cleared by a trigger before the INSERT.
    ClearedBeforeInsert,
    /// In the row of every record whose `seq + 1` is a multiple of 32, as on Postgres.
    Every32nd,
}

impl Frontier {
    /// Each one's name on the command line.
    const NAMES: [(&str, Self); 5] = [
        ("none", Self::None),
        ("every-row", Self::EveryRow),
        ("cleared-after-insert", Self::ClearedAfterInsert),
        ("cleared-before-insert", Self::ClearedBeforeInsert),
        ("every-32nd", Self::Every32nd),
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, frontier)| *frontier)
    }

    /// The statement that makes `table`'s trigger, if it has one: the log's own trigger
    /// (`migrations/sqlite/0005_appends_in_order.sql`) on `table`, its `UPDATE` only where
    /// the row before is cleared.
    fn trigger(self, table: &str) -> Option<String> {
        let (when, clears) = match self {
            Self::None => return None,
            Self::EveryRow | Self::Every32nd => ("AFTER", false),
            Self::ClearedAfterInsert => ("AFTER", true),
            Self::ClearedBeforeInsert => ("BEFORE", true),
        };
        let clear = if clears {
            format!(
                "UPDATE {table} SET frontier = NULL WHERE seq = NEW.seq - 1 AND frontier IS NOT NULL;"
            )
        } else {
            String::new()
        };
        Some(format!(
            "CREATE TRIGGER {table}_in_order {when} INSERT ON {table} BEGIN \
             SELECT RAISE(ABORT, 'out of order') WHERE NEW.seq <> 0 AND NOT EXISTS \
             (SELECT 1 FROM {table} WHERE seq = NEW.seq - 1); {clear} END"
        ))
    }

    /// Whether record `seq`'s row carries the frontier as it is written.
    fn carried(self, seq: i64) -> bool {
        match self {
            Self::None => false,
            Self::Every32nd => (seq + 1) % 32 == 0,
            _ => true,
        }
    }
}

/// `n` single-row INSERTs of `record` with a leaf (32 bytes), and a frontier where
/// `frontier` says, each its own transaction, into a table made for them in the database
/// at `url` and dropped after: the time per INSERT.
async fn raw_inserts(
    url: &str,
    record: &str,
    n: u64,
    frontier: Frontier,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    use sqlx::{ConnectOptions, Executor};
    enum Conn {
        Sqlite(sqlx::SqliteConnection),
        Postgres(sqlx::PgConnection),
    }
    let leaf = vec![0x5Au8; 32];
    let table = format!("perf_raw_{}", std::process::id());
    let mut conn = match url.strip_prefix("sqlite:") {
        // As the sink's connection is opened (`approvals_backends::sqlite`).
        Some(path) => Conn::Sqlite(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path.trim_start_matches("//"))
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .connect()
                .await?,
        ),
        None => Conn::Postgres(
            url.parse::<sqlx::postgres::PgConnectOptions>()?
                .connect()
                .await?,
        ),
    };
    // The key as the log's table has it: on SQLite only `INTEGER PRIMARY KEY` is the
    // row's own key (`BIGINT PRIMARY KEY` would add an index of its own, a b-tree more to
    // write each INSERT than the log's table has).
    let (key, bytes) = match conn {
        Conn::Sqlite(_) => ("INTEGER", "BLOB"),
        Conn::Postgres(_) => ("BIGINT", "BYTEA"),
    };
    let create = format!(
        "CREATE TABLE {table} (seq {key} PRIMARY KEY, leaf {bytes} NOT NULL, record TEXT NOT NULL, frontier {bytes})"
    );
    let trigger = frontier.trigger(&table);
    if trigger.is_some() && matches!(conn, Conn::Postgres(_)) {
        return Err("a FRONTIER other than none is for SQLite only".into());
    }
    let frontier_bytes = vec![0xA5u8; 384];
    let insert =
        format!("INSERT INTO {table} (seq, leaf, record, frontier) VALUES ($1, $2, $3, $4)");
    let drop_table = format!("DROP TABLE {table}");
    match &mut conn {
        Conn::Sqlite(c) => c.execute(create.as_str()).await.map(|_| ())?,
        Conn::Postgres(c) => c.execute(create.as_str()).await.map(|_| ())?,
    };
    if let (Some(trigger), Conn::Sqlite(c)) = (&trigger, &mut conn) {
        c.execute(trigger.as_str()).await?;
    }
    let start = Instant::now();
    for i in 0..n {
        let seq = i64::try_from(i)?;
        let carried = frontier.carried(seq).then_some(&frontier_bytes);
        match &mut conn {
            Conn::Sqlite(c) => {
                let q = sqlx::query(&insert).bind(seq).bind(&leaf).bind(record);
                q.bind(carried).execute(c).await.map(|_| ())?
            }
            Conn::Postgres(c) => {
                let q = sqlx::query(&insert).bind(seq).bind(&leaf).bind(record);
                q.bind(carried).execute(c).await.map(|_| ())?
            }
        }
    }
    let took = start.elapsed();
    match &mut conn {
        Conn::Sqlite(c) => c.execute(drop_table.as_str()).await.map(|_| ())?,
        Conn::Postgres(c) => c.execute(drop_table.as_str()).await.map(|_| ())?,
    };
    Ok(took.as_secs_f64() * 1e6 / n as f64)
}

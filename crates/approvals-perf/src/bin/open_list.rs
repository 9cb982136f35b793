//! `open_list [MEMORY_HISTORY [SQL_HISTORY]]`: what listing the open requests costs once a
//! store holds a long history, against the same list from a store that holds the open
//! requests alone, in the same run (issue 20's goal 6).
//!
//! For each store (memory; an SQLite file; the Postgres server at
//! `APPROVALS_TEST_POSTGRES_URL`, when it is set) two are made through the gate: one with
//! 100 open requests and nothing else, and one with the same 100 open requests spread among
//! `HISTORY` decided ones (made, then cancelled; 100,000 for memory and 20,000 for SQLite
//! and Postgres by default, where each takes two commits to make). Each store's
//! `list_open` is then timed, the two in turn, 50 rounds; the program prints the median of
//! each, their ratio and each one's first listing (on Postgres the first after a burst of
//! decisions reads what no vacuum has yet cleared), and fails if either list is not
//! exactly its 100 open requests.
//!
//! ```sh
//! APPROVALS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --release -p approvals-perf --features sqlite,postgres --bin open_list
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::sql::Database;
use approvals::store::Store;
use approvals::{Action, Context, Principal, RequestId, SubmitOptions, Submitted};

/// Open requests in every store.
const OPEN: usize = 100;
/// Rounds of the two lists, in turn.
const ROUNDS: usize = 50;
/// Tasks that make the history, so that a durable store's commits overlap where they can.
const MAKERS: usize = 16;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: open_list [MEMORY_HISTORY [SQL_HISTORY]]";
    let memory_history: usize = args
        .next()
        .map_or(Ok(100_000), |a| a.parse())
        .map_err(|_| usage)?;
    let sql_history: usize = args
        .next()
        .map_or(Ok(20_000), |a| a.parse())
        .map_err(|_| usage)?;
    let rt = approvals_perf::runtime()?;
    rt.block_on(async {
        let fresh = Arc::new(MemoryStore::new()) as Arc<dyn Store>;
        let full = Arc::new(MemoryStore::new()) as Arc<dyn Store>;
        compare("memory", fresh, full, memory_history).await?;

        let dir = tempfile_dir()?;
        let fresh = Database::open(&format!("sqlite:{}", dir.join("fresh.db").display())).await?;
        let full = Database::open(&format!("sqlite:{}", dir.join("full.db").display())).await?;
        compare("sqlite", fresh.store(), full.store(), sql_history).await?;
        fresh.close().await;
        full.close().await;
        std::fs::remove_dir_all(&dir)?;

        match std::env::var("APPROVALS_TEST_POSTGRES_URL") {
            Ok(url) => postgres(&url, sql_history).await?,
            Err(_) => {
                println!("open_list postgres: skipped (APPROVALS_TEST_POSTGRES_URL is not set)")
            }
        }
        Ok(())
    })
}

/// Two schemas of their own on the server, dropped at the end.
async fn postgres(url: &str, history: usize) -> Result<(), Failure> {
    let id = RequestId::generate().to_string().to_lowercase();
    let schemas = [
        format!("open_list_fresh_{id}"),
        format!("open_list_full_{id}"),
    ];
    let sep = if url.contains('?') { '&' } else { '?' };
    let fresh = Database::open(&format!("{url}{sep}schema={}", schemas[0])).await?;
    let full = Database::open(&format!("{url}{sep}schema={}", schemas[1])).await?;
    let compared = compare("postgres", fresh.store(), full.store(), history).await;
    fresh.close().await;
    full.close().await;
    let mut conn = {
        use sqlx::ConnectOptions;
        url.parse::<sqlx::postgres::PgConnectOptions>()?
            .connect()
            .await?
    };
    for schema in &schemas {
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await?;
    }
    compared
}

/// A directory of its own under the system's temporary directory.
fn tempfile_dir() -> Result<std::path::PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("open_list-{}", RequestId::generate()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// Fills `fresh` with the open requests alone and `full` with the same among `history`
/// decided ones, then times each one's `list_open` in turn.
async fn compare(
    name: &str,
    fresh: Arc<dyn Store>,
    full: Arc<dyn Store>,
    history: usize,
) -> Result<(), Failure> {
    let made = Instant::now();
    fill(fresh.clone(), 0).await?;
    fill(full.clone(), history).await?;
    let made = made.elapsed();
    let (mut alone, mut among) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        alone.push(list(&*fresh).await?);
        among.push(list(&*full).await?);
    }
    let (first_alone, first_among) = (alone[0], among[0]);
    let (alone, among) = (median(alone), median(among));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "open_list {name}: {OPEN} open requests listed in {:.0} µs among {history} decided ones, \
         {:.0} µs alone (median of {ROUNDS} each, in turn); ratio {:.2}x; the first listing \
         {:.0} µs among them, {:.0} µs alone (the stores made in {:.1} s)",
        us(among),
        us(alone),
        us(among) / us(alone),
        us(first_among),
        us(first_alone),
        made.as_secs_f64()
    );
    Ok(())
}

/// One timed `list_open`, which must find exactly the open requests.
async fn list(store: &dyn Store) -> Result<Duration, Failure> {
    let started = Instant::now();
    let open = store.list_open().await?;
    let took = started.elapsed();
    if open.len() != OPEN || !open.iter().all(|r| r.is_pending()) {
        return Err(format!("listed {} requests, not the {OPEN} open ones", open.len()).into());
    }
    Ok(took)
}

/// `OPEN` open requests spread evenly among `history` decided ones, made by the gate as
/// calls make them (each call its own: an argument numbers it), by `MAKERS` tasks.
async fn fill(store: Arc<dyn Store>, history: usize) -> Result<(), Failure> {
    let gate = approvals_perf::export_gate_on(store, MemoryAudit::new())?;
    let total = OPEN + history;
    let every = total / OPEN;
    let mut makers = tokio::task::JoinSet::new();
    for maker in 0..MAKERS {
        let gate = gate.clone();
        makers.spawn(async move {
            for n in (maker..total).step_by(MAKERS) {
                let action = Action::builder("billing::export_customers", "export")
                    .arg("customer", &(n as u64))
                    .build()?;
                let context = Context::new(Principal::agent("ops-bot"));
                let Submitted::Requested { request, .. } = gate
                    .submit(action, context, SubmitOptions::default())
                    .await?
                else {
                    return Err::<(), Failure>("the call was not asked about".into());
                };
                let stays_open = n % every == 0 && n / every < OPEN;
                if !stays_open {
                    gate.cancel(request.id, None, "history").await?;
                }
            }
            Ok(())
        });
    }
    while let Some(made) = makers.join_next().await {
        made??;
    }
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

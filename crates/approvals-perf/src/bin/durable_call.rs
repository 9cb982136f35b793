//! `durable_call gated|append N`: N allowed calls one after another with the audit log on
//! the Postgres server at `APPROVALS_TEST_POSTGRES_URL`, from a task on the runtime, as the
//! durable bench makes them; or N appends of the same record to the sink alone. Prints the
//! time per call.
//!
//! Made to be run under `strace -f -c` or `valgrind --tool=callgrind`, to see what a gated
//! call adds to its append beyond time: system calls (round trips to the server, wake-ups
//! between threads) and instructions.
//!
//! ```sh
//! cargo build --release -p approvals-perf --features postgres --bin durable_call
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: durable_call gated|append N";
    let mode = args.next().ok_or(usage)?;
    let n: u64 = args.next().ok_or(usage)?.parse()?;
    let url = std::env::var("APPROVALS_TEST_POSTGRES_URL")
        .map_err(|_| "set APPROVALS_TEST_POSTGRES_URL to a Postgres server")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let took = tokio::spawn(async move { run(&mode, n, &url).await })
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
                let event = AuditEvent {
                    at: Timestamp::now(),
                    request_id: None,
                    action: ActionRef::from(&action(i)?),
                    actor: Some(Principal::agent("ops-bot")),
                    policy_version: "code".into(),
                    kind: EventKind::Allowed {
                        rule: "read".into(),
                    },
                };
                audit.append(event).await?;
            }
        }
        _ => return Err("usage: durable_call gated|append N".into()),
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

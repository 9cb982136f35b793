//! `waiting_calls [N] [--sqlite]` (default 100,000): N gated calls wait at once for a
//! human, each its own request; then every one is approved, and each body runs once. Prints
//! the process's resident memory before, while all wait, and after, and fails if a body ran
//! other than once or the waiting calls took more than the bound: 200 MiB in all for 100,000
//! or more, and for fewer, 2 KB (a 100,000th of 200 MiB) a call above what the process held
//! before (which does not shrink with N).
//!
//! ```sh
//! cargo run --release -p approvals-perf --bin waiting_calls
//! cargo run --release -p approvals-perf --features sqlite --bin waiting_calls -- --sqlite
//! ```
//!
//! By default the memory store and the memory audit sink hold every request and record:
//! what is measured is everything the process keeps for a waiting call, the data included.
//! With `--sqlite` the store and the audit log are an SQLite file (in the system's temporary
//! directory, removed at the end), as `approvals serve` keeps them: the process keeps only
//! the waiting calls themselves.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use approvals::requires_approval;
use approvals::{Principal, Review, scope};

/// How many times each call's body ran.
static RUNS: OnceLock<Vec<AtomicU8>> = OnceLock::new();

#[requires_approval(policy = "export")]
async fn export_customer(customer: usize) -> Result<(), approvals::Error> {
    if let Some(runs) = RUNS.get() {
        runs[customer].fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

/// The process's resident set, in bytes (Linux).
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut n, mut sqlite) = (100_000, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--sqlite" => sqlite = true,
            number => n = number.parse()?,
        }
    }
    // 200 MiB in all for 100,000; a 100,000th of that a call above the start for fewer.
    let (per_call, whole) = (200.0 * 1024.0 * 1024.0 / 100_000.0, 200.0);
    RUNS.set((0..n).map(|_| AtomicU8::new(0)).collect())
        .map_err(|_| "set twice")?;
    let rt = approvals_perf::runtime()?;
    let file = std::env::temp_dir().join(format!("approvals-waiting-{}.db", std::process::id()));
    let mut waiters = approvals_perf::Waiters::install()?;
    let gate = if sqlite {
        rt.block_on(sqlite_gate(&file))?
    } else {
        let store = std::sync::Arc::new(approvals::memory::MemoryStore::new());
        approvals_perf::export_gate_on(store, approvals::memory::MemoryAudit::new())?
    };
    let before = resident();

    let outcome = rt.block_on(async {
        let started = Instant::now();
        let calls: Vec<_> = (0..n)
            .map(|i| tokio::spawn(scope::with_gate(gate.clone(), export_customer(i))))
            .collect();
        // Every call in its wait, as the gate counts its waiting callers.
        waiters.wait_for(|w| *w >= n as f64).await?;
        // Measured before listing them: the list is this program's, not the waiting calls'.
        let waiting = resident();
        let made = started.elapsed();
        let open = gate.pending().await?;
        if open.len() != n {
            return Err(format!("{} requests open, expected {n}", open.len()).into());
        }

        let approving = Instant::now();
        let alice = Principal::human("alice");
        for r in &open {
            let review = Review::approve(r, alice.clone(), gate.clock().now());
            gate.submit_review(review).await?;
        }
        drop(open);
        for c in calls {
            c.await??;
        }
        let approved = approving.elapsed();
        let after = resident();
        let runs = RUNS.get().ok_or("no runs")?;
        let wrong = runs
            .iter()
            .filter(|r| r.load(Ordering::SeqCst) != 1)
            .count();
        println!(
            "waiting_calls ({}): {n} calls waiting after {:.1} s; resident memory before {:.1} MiB, \
             while all wait {:.1} MiB ({:.0} bytes a waiting call), after all ran {:.1} MiB; \
             approved and run in {:.1} s; bodies not run exactly once: {wrong}",
            if sqlite { "sqlite" } else { "memory" },
            made.as_secs_f64(),
            mib(before),
            mib(waiting),
            (waiting.saturating_sub(before)) as f64 / n as f64,
            mib(after),
            approved.as_secs_f64(),
        );
        if wrong != 0 {
            return Err(format!("{wrong} bodies did not run exactly once").into());
        }
        let each = waiting.saturating_sub(before) as f64 / n as f64;
        if n >= 100_000 && mib(waiting) > whole {
            return Err(format!(
                "{n} waiting calls took {:.1} MiB in all; the bound is {whole:.0} MiB",
                mib(waiting)
            )
            .into());
        }
        if each > per_call {
            return Err(format!(
                "{n} waiting calls took {each:.0} bytes each; the bound is {per_call:.0}"
            )
            .into());
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    if sqlite {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
    outcome
}

/// The gate on an SQLite file at `path`: its store and its signed audit log.
#[cfg(feature = "sqlite")]
async fn sqlite_gate(
    path: &std::path::Path,
) -> Result<approvals::Gate, Box<dyn std::error::Error>> {
    use approvals::sql::{Database, SqlAuditOptions};
    let db = Database::open(&format!("sqlite:{}", path.display())).await?;
    let signer = approvals::note::NoteSigner::generate("perf")?;
    let audit = db.audit(SqlAuditOptions::new("perf/audit", signer)).await?;
    Ok(approvals_perf::export_gate_on(db.store(), audit)?)
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite_gate(_: &std::path::Path) -> Result<approvals::Gate, Box<dyn std::error::Error>> {
    Err("--sqlite needs the sqlite feature: cargo run --release -p approvals-perf --features sqlite --bin waiting_calls -- --sqlite".into())
}

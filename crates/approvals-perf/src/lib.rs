//! Programs that run one hot path of the gate a given number of times, for
//! `valgrind --tool=callgrind` to count its instructions (`.ci/instructions`). Counting
//! instructions, not time, gives a figure that does not move with the machine's load.

use std::sync::Arc;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::{CodePolicy, Context, Factor, Gate, Principal, Requirement, StaticDirectory};

/// The gate the waiting programs use: `export` waits for one of data-owners (alice), calls
/// come from ops-bot, the store and the audit log are in memory (the log is returned, to
/// wait on its records).
pub fn export_gate() -> Result<(Gate, Arc<MemoryAudit>), approvals::BuildError> {
    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(StaticDirectory::new().group("data-owners", ["alice"]))
        .store(MemoryStore::new())
        .audit(audit.clone())
        .default_context(Context::new(Principal::agent("ops-bot")))
        .build()?;
    Ok((gate, audit))
}

/// A two-worker runtime, as a small service would run.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

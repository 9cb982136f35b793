//! One clock: a gate built with a `ManualClock` hands it to its policy file, so conditions on
//! `now` see the test's time, not the machine's.

use std::sync::Arc;
use std::time::Duration;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::policy::FilePolicy;
use approvals::{Context, Gate, ManualClock, Principal, Timestamp, requires_approval};

#[requires_approval(policy = "restart")]
async fn restart() -> Result<(), approvals::Error> {
    Ok(())
}

#[tokio::test]
async fn the_policy_reads_the_gates_clock() {
    let policy = FilePolicy::from_source(
        "approvals.toml",
        r#"
[[policies.restart.rules]]
name = "mornings"
when = "now.getHours() < 6"
allow = true
[[policies.restart.rules]]
name = "otherwise"
when = "now.getHours() >= 6"
deny = "only before six"
"#,
    )
    .unwrap();
    // 2026-01-05 03:00 UTC. The machine's clock reads whatever it reads; the test does not
    // depend on it.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_micros(
        1_767_582_000_000_000,
    )));
    let gate = Gate::builder()
        .policy(policy)
        .clock(clock.clone())
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .build()
        .unwrap();
    let ops = Context::new(Principal::agent("ops"));
    gate.run_as(ops.clone(), restart()).await.unwrap();
    clock.advance(Duration::from_secs(12 * 3600));
    let refused = gate.run_as(ops, restart()).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "denied by policy rule `otherwise`: only before six"
    );
}

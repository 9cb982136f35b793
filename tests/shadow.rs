//! Shadow mode (issue 21): a rule or a policy marked `mode = "shadow"` is judged and its
//! would-be verdict audited, but the call goes as the enforced rules say.

mod common;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::policy::FilePolicy;
use approvals::{Error, EventKind, requires_approval};
use common::*;

/// `export` runs, as before; a new rule that would ask a data owner for big exports is
/// being tried in shadow mode first.
const FILE: &str = r#"
[[people]]
id = "alice"
[[people]]
id = "bob"
[[people]]
id = "dana"
[groups]
data-owners = ["alice", "bob", "dana"]

[[policies.export.rules]]
name = "big-exports-need-an-owner"
mode = "shadow"
when = "args.limit > 1000"
require = [{ group = "data-owners" }]

[[policies.export.rules]]
name = "no-exports-over-a-million"
mode = "shadow"
when = "args.limit > 1000000"
deny = "too many rows"

[[policies.export.rules]]
name = "exports-run"
allow = true
"#;

fn shadowed() -> Harness {
    let policy = FilePolicy::from_source("approvals.toml", FILE).unwrap();
    Harness::with(|b| b.policy(policy))
}

fn shadow_records(h: &Harness) -> Vec<(String, String, String)> {
    h.records()
        .into_iter()
        .filter_map(|r| match r.event.kind {
            EventKind::Shadow {
                rule,
                would,
                detail,
            } => Some((rule, would, detail)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_records_what_it_would_have_done_and_the_call_runs() {
    let h = shadowed();
    // Would have required approval: recorded, and the call runs at once, as enforced.
    assert_eq!(h.run(export(5000, h.runs.clone())).await.unwrap(), 5000);
    // Would have denied: recorded; it runs all the same.
    assert_eq!(
        h.run(export(2_000_000, h.runs.clone())).await.unwrap(),
        2_000_000
    );
    // No shadow rule matches: nothing recorded beyond the verdict.
    assert_eq!(h.run(export(10, h.runs.clone())).await.unwrap(), 10);
    assert_eq!(h.runs(), 3);

    assert_eq!(
        shadow_records(&h),
        [
            (
                "big-exports-need-an-owner".to_owned(),
                "require_approval".to_owned(),
                "1 from data-owners".to_owned()
            ),
            (
                "no-exports-over-a-million".to_owned(),
                "deny".to_owned(),
                "too many rows".to_owned()
            ),
        ]
    );
    // Each shadow record comes right before its call's own verdict, which is `allowed`.
    assert_eq!(
        h.event_names(),
        ["shadow", "allowed", "shadow", "allowed", "allowed"]
    );
    let summary = h.records()[0].event.kind.summary();
    assert_eq!(
        summary,
        "rule big-exports-need-an-owner would have required approval: 1 from data-owners"
    );
}

/// A data owner approves every export; a rule against exports over a million rows is tried
/// in shadow mode.
const OWNED: &str = r#"
[[people]]
id = "alice"
[[people]]
id = "bob"
[[people]]
id = "dana"
[groups]
data-owners = ["alice", "bob", "dana"]

[[policies.export.rules]]
name = "no-exports-over-a-million"
mode = "shadow"
when = "args.limit > 1000000"
deny = "too many rows"

[[policies.export.rules]]
name = "exports-need-an-owner"
require = [{ group = "data-owners" }]
"#;

#[requires_approval(
    policy = "export",
    name = "billing::export_editable",
    skip(runs),
    editable(limit)
)]
async fn export_editable(limit: u32, runs: Arc<AtomicUsize>) -> Result<u32, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(limit)
}

/// A reviewer's edit is a call judged afresh, shadow rules included: the edit into what the
/// shadow rule would deny is recorded as such, and goes as the enforced rules say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_judged_by_the_shadow_rules_too() {
    let policy = FilePolicy::from_source("approvals.toml", OWNED).unwrap();
    let h = Harness::with(|b| b.policy(policy));
    let call = h.spawn(export_editable(5_000, h.runs.clone()));
    let original = h.next().await;
    assert!(
        shadow_records(&h).is_empty(),
        "5,000 rows: no shadow rule matches"
    );
    let edit = original
        .edit_as("alice", serde_json::json!({"limit": 2_000_000}))
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 2_000_000);
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        shadow_records(&h),
        [(
            "no-exports-over-a-million".to_owned(),
            "deny".to_owned(),
            "too many rows".to_owned()
        )]
    );
    let shadow = h
        .records()
        .into_iter()
        .find(|r| r.event.name() == "shadow")
        .unwrap();
    assert_eq!(
        shadow.event.action.digest, edit.action.digest,
        "the edited call's"
    );
}

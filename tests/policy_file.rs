//! A gate driven by a policy file: start-up checks, version stamping, infeasible requirements,
//! multi-factor approvals, escalation and reminders on a manual clock, standing grants, and
//! hot reload that keeps the old policy when the new file is bad.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::mock::{MockApprover, MockHandle};
use approvals::policy::FilePolicy;
use approvals::{
    BuildError, Decision, DeniedBy, Error, EventKind, Gate, GrantTerms, ManualClock, Refusal,
    Timestamp,
};
use common::{agent, export};
use sha2::Digest as _;

const PEOPLE: &str = r#"
[[people]]
id = "alice"
[[people]]
id = "bob"
[[people]]
id = "carol"
[[people]]
id = "dana"
[[people]]
id = "erin"
[[people]]
id = "ops-bot"
kind = "agent"

[groups]
data-owners = ["alice", "bob", "dana"]
sre = ["alice", "bob", "carol"]
security = ["alice", "erin"]
owners-only-dana = ["dana"]
"#;

fn file(policies: &str) -> String {
    format!("{PEOPLE}\n{policies}")
}

struct H {
    gate: Gate,
    audit: Arc<MemoryAudit>,
    mock: MockHandle,
    oncall: MockHandle,
    clock: Arc<ManualClock>,
    runs: Arc<AtomicUsize>,
}

fn start() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_micros(
        1_700_000_000_000_000,
    )))
}

fn harness(policy: FilePolicy) -> H {
    let clock = start();
    harness_with(policy.with_clock(clock.clone()), clock)
}

fn harness_with(policy: FilePolicy, clock: Arc<ManualClock>) -> H {
    harness_built(policy, clock, |b| b)
}

fn harness_built(
    policy: FilePolicy,
    clock: Arc<ManualClock>,
    more: impl FnOnce(approvals::GateBuilder) -> approvals::GateBuilder,
) -> H {
    let audit = Arc::new(MemoryAudit::new());
    let (approver, mock) = MockApprover::new();
    let (oncall_approver, oncall) = MockApprover::new();
    let gate = more(
        Gate::builder()
            .directory(policy.directory())
            .policy(policy)
            .store(MemoryStore::new())
            .audit(audit.clone())
            .clock(clock.clone())
            .approver(approver)
            .approver(oncall_approver.named("oncall")),
    )
    .build()
    .expect("the gate builds");
    H {
        gate,
        audit,
        mock,
        oncall,
        clock,
        runs: Arc::new(AtomicUsize::new(0)),
    }
}

impl H {
    async fn call(&self, limit: u32) -> Result<u32, Error> {
        let runs = self.runs.clone();
        approvals::scope::with_gate(
            self.gate.clone(),
            approvals::scope::with_context(agent(), export(limit, runs)),
        )
        .await
    }

    fn spawn(&self, limit: u32) -> tokio::task::JoinHandle<Result<u32, Error>> {
        let runs = self.runs.clone();
        tokio::spawn(approvals::scope::with_gate(
            self.gate.clone(),
            approvals::scope::with_context(agent(), export(limit, runs)),
        ))
    }

    fn runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_gate_does_not_build_when_a_gated_policy_is_missing_from_the_file() {
    let policy = FilePolicy::from_source(
        "approvals.toml",
        &file("[[policies.deploy.rules]]\nallow = true\n"),
    )
    .unwrap();
    let err = Gate::builder()
        .policy(policy)
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .build()
        .unwrap_err();
    let BuildError::MissingPolicies(missing) = &err else {
        panic!("unexpected: {err}")
    };
    // `common` gates `billing::export` (three functions) under policy `export`.
    assert!(missing.iter().all(|m| m.policy == "export"), "{missing:?}");
    assert!(
        missing.iter().any(|m| m.function == "billing::export"),
        "{missing:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("policy `export` (used by billing::export)"),
        "{text}"
    );
}

#[tokio::test]
async fn every_record_carries_the_sha256_of_the_policy_source() {
    let src = file("[[policies.export.rules]]\nname = \"exports-run\"\nallow = true\n");
    let expected = hex::encode(sha2::Sha256::digest(src.as_bytes()));
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    assert_eq!(h.call(5).await.unwrap(), 5);
    let records = h.audit.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event.policy_version, expected);
    assert!(matches!(&records[0].event.kind, EventKind::Allowed { rule } if rule == "exports-run"));
}

#[tokio::test]
async fn requests_and_their_records_carry_the_version_too() {
    let src = file(
        r#"[[policies.export.rules]]
name = "needs-owner"
require = [{ group = "data-owners" }]
"#,
    );
    let expected = hex::encode(sha2::Sha256::digest(src.as_bytes()));
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(7);
    let req = h.mock.next().await.unwrap();
    assert_eq!(req.request.requirement.policy_version, expected);
    req.approve_as("alice").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 7);
    for r in h.audit.records() {
        assert_eq!(r.event.policy_version, expected, "{}", r.event.name());
    }
}

#[tokio::test]
async fn a_requirement_only_the_requester_side_could_meet_is_denied_at_once() {
    // The only member of the group is dana, for whom ops-bot acts.
    let src = file(
        r#"[[policies.export.rules]]
name = "dana-decides"
require = [{ group = "owners-only-dana" }]
"#,
    );
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let err = h.call(1).await.unwrap_err();
    let denial = err.denial().expect("a denial");
    assert!(matches!(&denial.by, DeniedBy::Policy { rule } if rule == "dana-decides"));
    let reason = denial.reason.clone().unwrap_or_default();
    assert!(reason.contains("can never be approved"), "{reason}");
    assert!(
        reason.contains("dana (the person the request is made on behalf of)"),
        "{reason}"
    );
    assert_eq!(h.runs(), 0);
    // No request was opened; nobody was asked.
    assert!(h.gate.pending().await.unwrap().is_empty());
    assert!(h.mock.try_next().is_none());
    let names: Vec<_> = h.audit.records().iter().map(|r| r.event.name()).collect();
    assert_eq!(names, ["policy_denied"]);
}

#[tokio::test]
async fn two_factors_need_distinct_people() {
    // One from sre and one from security: alice is in both but counts once.
    let src = file(
        r#"[[policies.export.rules]]
name = "sre-and-security"
require = [{ group = "sre", count = 1 }, { group = "security", count = 1 }]
"#,
    );
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(3);
    let req = h.mock.next().await.unwrap();
    let after_alice = req.approve_as("alice").await.unwrap();
    assert!(
        after_alice.is_pending(),
        "alice alone fills one factor only"
    );
    let after_carol = req.approve_as("carol").await.unwrap();
    let Some(Decision::Approved { by, .. }) = after_carol.decision() else {
        panic!("{:?}", after_carol.state)
    };
    let mut ids: Vec<&str> = by.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["alice", "carol"]);
    assert_eq!(call.await.unwrap().unwrap(), 3);
    assert_eq!(h.runs(), 1);
}

#[tokio::test]
async fn a_condition_that_fails_at_run_time_denies_with_the_error() {
    // `args.rows` does not exist: the export records `limit`. Building the gate would say so
    // (tests/argument_check.rs); past that check (a call from outside the program may carry
    // any arguments), the condition fails when the call is judged, and denies it.
    let src = file(
        r#"[[policies.export.rules]]
name = "small"
when = "args.rows < 10"
allow = true
"#,
    );
    let clock = start();
    let policy = FilePolicy::from_source("approvals.toml", &src).unwrap();
    let h = harness_built(policy, clock, |b| b.skip_policy_check());
    let err = h.call(1).await.unwrap_err();
    let reason = err
        .denial()
        .and_then(|d| d.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains("No such key: rows"), "{reason}");
    assert!(reason.contains("cannot be evaluated is denied"), "{reason}");
    assert_eq!(h.runs(), 0);
}

#[tokio::test]
async fn escalation_fires_on_time_and_the_escalated_channel_can_approve() {
    let src = file(
        r#"[[policies.export.rules]]
name = "needs-owner"
require = [{ group = "data-owners" }]
channels = ["mock"]
expires_in = "1h"
escalate = [{ after = "10m", notify = ["oncall"] }]
"#,
    );
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(9);
    let first = h.mock.next().await.unwrap();
    assert!(
        h.oncall.try_next().is_none(),
        "oncall hears nothing before 10 minutes"
    );

    h.clock.advance(Duration::from_secs(9 * 60 + 59));
    // Still nothing: the waiter's next wake-up is at exactly 10 minutes.
    h.gate.run_due().await.unwrap();
    assert!(h.oncall.try_next().is_none(), "not yet at 9m59s");

    h.clock.advance(Duration::from_secs(1));
    let escalated = h.oncall.next().await.unwrap();
    assert_eq!(escalated.request.id, first.request.id);
    escalated.approve_as("bob").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 9);

    let records = h.audit.records();
    let escalations: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::Escalated { step, channels } => Some((r.event.at, *step, channels.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(escalations.len(), 1, "escalated once, however many woke up");
    assert_eq!(escalations[0].1, 0);
    assert_eq!(escalations[0].2, ["oncall"]);
    let created = first.request.created_at;
    assert_eq!(
        escalations[0].0.duration_since(created),
        Duration::from_secs(600)
    );
}

#[tokio::test]
async fn reminders_repeat_until_their_limit_even_with_nobody_waiting() {
    let src = file(
        r#"[[policies.export.rules]]
name = "needs-owner"
require = [{ group = "data-owners" }]
channels = ["mock"]
expires_in = "1h"
remind = { every = "15m", max = 2 }
"#,
    );
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    // `defer`: the caller does not wait, so only run_due drives the reminders.
    let runs = h.runs.clone();
    let deferred = approvals::scope::with_gate(
        h.gate.clone(),
        approvals::scope::with_context(agent(), common::export_deferred(2, runs)),
    )
    .await;
    assert!(matches!(deferred, Err(Error::Pending { .. })));
    let req = h.mock.next().await.unwrap();

    h.clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(h.gate.run_due().await.unwrap().reminded, 0);
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(h.gate.run_due().await.unwrap().reminded, 1);
    assert_eq!(
        h.gate.run_due().await.unwrap().reminded,
        0,
        "once per period"
    );
    h.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(h.gate.run_due().await.unwrap().reminded, 1);
    h.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(h.gate.run_due().await.unwrap().reminded, 0, "max = 2");
    assert_eq!(
        h.mock.reminders(),
        vec![(req.request.id, 1), (req.request.id, 2)]
    );
    // At the hour the request expires, reminders or not.
    h.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(h.gate.run_due().await.unwrap().expired, 1);
}

fn granting_policy(caps: &str) -> String {
    file(&format!(
        r#"[policies.export]
{caps}

[[policies.export.rules]]
name = "needs-owner"
require = [{{ group = "data-owners" }}]
channels = ["mock"]
"#
    ))
}

#[tokio::test]
async fn a_grant_lets_the_same_call_run_without_asking_until_its_uses_run_out() {
    let src = granting_policy("max_grant_duration = \"8h\"\nmax_grant_uses = 5");
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(10);
    let req = h.mock.next().await.unwrap();
    req.grant_as("alice", GrantTerms::new(Duration::from_secs(3600), 2))
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 10);

    // Two more calls (other arguments too) run without a request.
    assert_eq!(h.call(11).await.unwrap(), 11);
    assert_eq!(h.call(12).await.unwrap(), 12);
    assert!(h.mock.try_next().is_none(), "nobody was asked");
    assert_eq!(h.runs(), 3);

    // The third asks again.
    let third = h.spawn(13);
    let again = h.mock.next().await.unwrap();
    again.deny_as("bob", "enough for today").await.unwrap();
    assert!(third.await.unwrap().is_err());

    let uses: Vec<(u32, u32)> = h
        .audit
        .records()
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::GrantUsed {
                number, max_uses, ..
            } => Some((*number, *max_uses)),
            _ => None,
        })
        .collect();
    assert_eq!(uses, [(1, 2), (2, 2)]);
    let grants = h.gate.grants().await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].uses, 2);
    assert_eq!(grants[0].granted_by[0].id, "alice");
}

#[tokio::test]
async fn a_grant_expires_and_can_be_revoked() {
    let src = granting_policy("max_grant_duration = \"8h\"\nmax_grant_uses = 50");
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(1);
    h.mock
        .next()
        .await
        .unwrap()
        .grant_as("alice", GrantTerms::new(Duration::from_secs(600), 50))
        .await
        .unwrap();
    call.await.unwrap().unwrap();
    assert_eq!(h.call(2).await.unwrap(), 2);

    // Revoked: the next call asks.
    let id = h.gate.grants().await.unwrap()[0].id;
    let (_, revoked) = h
        .gate
        .revoke_grant(
            id,
            Some(approvals::Principal::human("carol")),
            "agent misbehaved",
        )
        .await
        .unwrap();
    assert!(revoked);
    let asking = h.spawn(3);
    let req = h.mock.next().await.unwrap();
    // This time alice grants for 10 minutes; after 10 minutes the grant is gone.
    req.grant_as("alice", GrantTerms::new(Duration::from_secs(600), 50))
        .await
        .unwrap();
    asking.await.unwrap().unwrap();
    h.clock.advance(Duration::from_secs(599));
    assert_eq!(h.call(4).await.unwrap(), 4);
    h.clock.advance(Duration::from_secs(1));
    let expired_grant = h.spawn(5);
    h.mock
        .next()
        .await
        .unwrap()
        .approve_as("bob")
        .await
        .unwrap();
    expired_grant.await.unwrap().unwrap();
    assert!(
        h.audit
            .records()
            .iter()
            .any(|r| matches!(&r.event.kind, EventKind::GrantRevoked { reason, .. } if reason == "agent misbehaved"))
    );
}

#[tokio::test]
async fn grants_beyond_the_caps_or_where_the_policy_allows_none_are_refused() {
    let src = granting_policy("max_grant_duration = \"1h\"\nmax_grant_uses = 3");
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(1);
    let req = h.mock.next().await.unwrap();
    for terms in [
        GrantTerms::new(Duration::from_secs(7200), 1),
        GrantTerms::new(Duration::from_secs(60), 4),
        GrantTerms::new(Duration::from_secs(60), 1).when("args.limit <"),
    ] {
        let err = req.grant_as("alice", terms).await.unwrap_err();
        assert!(
            matches!(err, approvals::SubmitError::Refused(Refusal::Grant { .. })),
            "{err}"
        );
    }
    // A refused grant changes nothing: alice may still approve plainly.
    req.approve_as("alice").await.unwrap();
    call.await.unwrap().unwrap();
    assert!(h.gate.grants().await.unwrap().is_empty());

    let none = granting_policy("");
    let h = harness(FilePolicy::from_source("approvals.toml", &none).unwrap());
    let call = h.spawn(1);
    let req = h.mock.next().await.unwrap();
    let err = req
        .grant_as("alice", GrantTerms::new(Duration::from_secs(60), 1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("allows no standing grants"),
        "{err}"
    );
    req.approve_as("alice").await.unwrap();
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_conditional_grant_covers_only_the_calls_it_names() {
    let src = granting_policy("max_grant_duration = \"1h\"\nmax_grant_uses = 10");
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(50);
    h.mock
        .next()
        .await
        .unwrap()
        .grant_as(
            "alice",
            GrantTerms::new(Duration::from_secs(600), 10).when("args.limit <= 100"),
        )
        .await
        .unwrap();
    call.await.unwrap().unwrap();
    assert_eq!(h.call(100).await.unwrap(), 100);
    let big = h.spawn(101);
    let asked = h.mock.next().await.unwrap();
    assert_eq!(asked.request.action.args["limit"], 101);
    asked.approve_as("bob").await.unwrap();
    big.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_quorum_grant_needs_every_approver_to_grant() {
    let src = file(
        r#"[policies.export]
max_grant_duration = "1h"
max_grant_uses = 10

[[policies.export.rules]]
name = "two-owners"
require = [{ group = "data-owners", count = 2 }]
channels = ["mock"]
"#,
    );
    let h = harness(FilePolicy::from_source("approvals.toml", &src).unwrap());
    let call = h.spawn(1);
    let req = h.mock.next().await.unwrap();
    req.grant_as("alice", GrantTerms::new(Duration::from_secs(600), 5))
        .await
        .unwrap();
    req.approve_as("bob").await.unwrap();
    call.await.unwrap().unwrap();
    assert!(
        h.gate.grants().await.unwrap().is_empty(),
        "bob did not grant, so no grant is issued"
    );

    let call = h.spawn(2);
    let req = h.mock.next().await.unwrap();
    req.grant_as("alice", GrantTerms::new(Duration::from_secs(600), 5))
        .await
        .unwrap();
    req.grant_as("bob", GrantTerms::new(Duration::from_secs(300), 9))
        .await
        .unwrap();
    call.await.unwrap().unwrap();
    let grants = h.gate.grants().await.unwrap();
    assert_eq!(grants.len(), 1);
    // The tightest terms of the two.
    assert_eq!(grants[0].max_uses, 5);
    assert_eq!(
        grants[0].expires_at.duration_since(grants[0].created_at),
        Duration::from_secs(300)
    );
}

#[tokio::test]
async fn hot_reload_applies_a_good_file_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.toml");
    let allow = file("[[policies.export.rules]]\nname = \"open\"\nallow = true\n");
    let deny = file("[[policies.export.rules]]\nname = \"closed\"\ndeny = \"frozen\"\n");
    std::fs::write(&path, &allow).unwrap();
    let policy = FilePolicy::load(&path).unwrap();
    let clock = start();
    let h = harness_with(policy.clone(), clock);
    let mut status = policy.subscribe();
    let _watcher = policy.watch().unwrap();
    assert_eq!(h.call(1).await.unwrap(), 1);

    // A good change is picked up by the watcher.
    std::fs::write(&path, &deny).unwrap();
    let s = tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| {
            s.refused.is_none() && s.attempt >= 1 && s.version != policy_version(&allow)
        }),
    )
    .await
    .expect("the watcher reloads within 20 s")
    .unwrap()
    .clone();
    assert_eq!(s.version, policy_version(&deny));
    let err = h.call(2).await.unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");

    // A broken file is refused and the policy in force stays.
    let attempts = s.attempt;
    std::fs::write(
        &path,
        "[[policies.export.rules]]\nallow = \"yes\"\nunknown = 1\n",
    )
    .unwrap();
    let s = tokio::time::timeout(
        Duration::from_secs(20),
        // The watcher may also see the file half-written (truncated, then written): wait for
        // its refusal of the whole broken file.
        status.wait_for(|s| {
            s.attempt > attempts
                && s.refused
                    .as_ref()
                    .is_some_and(|r| r.contains("unknown key `unknown`"))
        }),
    )
    .await
    .expect("the watcher sees the broken file")
    .unwrap()
    .clone();
    let why = s.refused.unwrap();
    assert!(why.contains("unknown key `unknown`"), "{why}");
    assert_eq!(
        s.version,
        policy_version(&deny),
        "the old policy stays in force"
    );
    assert!(h.call(3).await.unwrap_err().to_string().contains("frozen"));

    // An explicit reload of a broken file says why and changes nothing.
    let err = policy.reload().unwrap_err();
    assert!(err.to_string().contains("approvals.toml:2:"), "{err}");
    assert_eq!(policy.current().version(), policy_version(&deny));
    assert_eq!(h.runs(), 1);
}

fn policy_version(src: &str) -> String {
    hex::encode(sha2::Sha256::digest(src.as_bytes()))
}

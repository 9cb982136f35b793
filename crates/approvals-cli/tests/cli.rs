//! The `approvals` binary, run as a user would.

use std::path::Path;
mod common;
use common::{approvals, text};

use approvals_backends::file::{FileAudit, FileAuditOptions, load_signer};
use approvals_core::{
    Action, ActionRef, AuditEvent, AuditSink, EventKind, Principal, RequestId, Timestamp,
};

/// The log's origin.
const ORIGIN: &str = "audit.test/approvals";

/// A key made with `approvals keygen`, and a log of 10 events for two requests.
async fn setup(dir: &Path) -> (String, String) {
    let key = dir.join("audit.key");
    let vkey = dir.join("audit.vkey");
    let out = approvals(&[
        "keygen",
        "--name",
        "audit.test",
        "--out",
        key.to_str().unwrap(),
        "--vkey-out",
        vkey.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("audit.test+"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = approvals(&[
        "keygen",
        "--name",
        "audit.test",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "keygen must not overwrite a key");

    let mut options = FileAuditOptions::new(ORIGIN, load_signer(&key).unwrap());
    options.checkpoint_every = 3;
    let log = dir.join("audit.jsonl");
    let audit = FileAudit::open(&log, options).unwrap();
    let action = Action::builder("ops::deploy", "deploy")
        .arg("service", "api")
        .build()
        .unwrap();
    let ids = [RequestId::generate(), RequestId::generate()];
    for i in 0..10u64 {
        let id = ids[(i % 2) as usize];
        audit
            .append(AuditEvent {
                at: Timestamp::from_unix_micros(1_700_000_000_000_000 + i as i64),
                request_id: Some(id),
                action: ActionRef::from(&action),
                actor: Some(Principal::agent("bot")),
                policy_version: "code".into(),
                kind: if i < 2 {
                    EventKind::Attached
                } else {
                    EventKind::Started
                },
            })
            .await
            .unwrap();
    }
    audit.checkpoint().await.unwrap();
    (log.to_str().unwrap().to_owned(), ids[0].to_string())
}

#[tokio::test]
async fn verify_show_prove_and_check_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (log, request) = setup(dir.path()).await;
    let vkey = dir.path().join("audit.vkey");
    let vkey = vkey.to_str().unwrap();

    let out = approvals(&["audit", "verify", &log, "--vkey", vkey]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 10 records, checkpoint at size 10 verified"
    );

    let out = approvals(&["--json", "audit", "verify", &log, "--vkey", vkey]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 10);

    // The origin the operator published must be the one the checkpoints name.
    let origin = |o: &str| approvals(&["audit", "verify", &log, "--vkey", vkey, "--origin", o]);
    assert!(origin(ORIGIN).status.success());
    let out = origin("example.com/another");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not \"example.com/another\""),
        "{}",
        text(&out)
    );

    let out = approvals(&["audit", "show", &log, "--request", &request]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    // Timeline rows only (the event name padded to its column); the fixture's calls
    // started and never finished, so the request is also reported in doubt.
    assert_eq!(
        shown.matches("started     ").count() + shown.matches("attached     ").count(),
        5,
        "{shown}"
    );
    assert!(
        shown.contains(&format!("request {request} is IN DOUBT")),
        "{shown}"
    );

    let bundle = dir.path().join("proof.json");
    let out = approvals(&[
        "audit",
        "prove",
        &log,
        "--seq",
        "4",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // The bundle verifies without the log.
    std::fs::remove_file(&log).unwrap();
    let out = approvals(&[
        "audit",
        "check-proof",
        bundle.to_str().unwrap(),
        "--vkey",
        vkey,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("record 4 (started of ops::deploy) is in audit.test/approvals at size 10")
    );

    // An altered record in the bundle fails.
    let altered = std::fs::read_to_string(&bundle)
        .unwrap()
        .replacen("bot", "bob", 1);
    std::fs::write(&bundle, altered).unwrap();
    let out = approvals(&[
        "audit",
        "check-proof",
        bundle.to_str().unwrap(),
        "--vkey",
        vkey,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("record 4"), "{}", text(&out));

    // A malformed bundle and a malformed key are clear errors, not panics.
    std::fs::write(&bundle, "{ not json").unwrap();
    let out = approvals(&[
        "audit",
        "check-proof",
        bundle.to_str().unwrap(),
        "--vkey",
        vkey,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not a proof bundle"), "{}", text(&out));
    let out = approvals(&[
        "audit",
        "check-proof",
        bundle.to_str().unwrap(),
        "--vkey",
        "nonsense",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("--vkey: malformed key"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_tampered_log_fails_with_the_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = setup(dir.path()).await;
    let vkey = dir.path().join("audit.vkey");
    let original = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    lines.remove(6);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = approvals(&["audit", "verify", &log, "--vkey", vkey.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("error: record 6: missing"),
        "{}",
        text(&out)
    );

    let out = approvals(&[
        "--json",
        "audit",
        "verify",
        &log,
        "--vkey",
        vkey.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["seq"], 6);
}

#[tokio::test]
async fn prove_refuses_a_log_shorter_than_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = setup(dir.path()).await;
    let original = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = original.lines().take(7).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    let out = approvals(&["audit", "prove", &log, "--seq", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("truncated"), "{}", text(&out));
}

/// Issue 21: a gate on a policy file with a rule in shadow mode writes its would-be verdicts
/// to a real log; `policy explain` shows them for one call, `audit show --shadow`
/// summarises them over a period.
#[tokio::test]
async fn shadow_rules_are_explained_and_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("approvals.toml");
    std::fs::write(
        &file,
        r#"[[people]]
id = "alice"
[groups]
owners = ["alice"]

[[policies.export.rules]]
name = "big-exports-need-an-owner"
mode = "shadow"
when = "args.limit > 1000"
require = [{ group = "owners" }]

[[policies.export.rules]]
name = "exports-run"
allow = true
"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let explain = approvals(&[
        "policy",
        "explain",
        file,
        "--action",
        "export",
        "--policy",
        "export",
        "--args",
        r#"{"limit": 5000}"#,
        "--requester",
        "ops-bot",
    ]);
    let t = text(&explain);
    assert!(explain.status.success(), "{t}");
    assert!(t.contains("outcome: ALLOW by rule `exports-run`"), "{t}");
    assert!(
        t.contains("shadow: rule `big-exports-need-an-owner` (mode = \"shadow\", recorded, not enforced) would have decided REQUIRE APPROVAL: 1 from owners"),
        "{t}"
    );

    let key = dir.path().join("audit.key");
    let out = approvals(&[
        "keygen",
        "--name",
        "audit.test",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let log = dir.path().join("audit.jsonl");
    let audit = FileAudit::open(
        &log,
        FileAuditOptions::new(ORIGIN, load_signer(&key).unwrap()),
    )
    .unwrap();
    let gate = approvals_core::Gate::builder()
        .policy(approvals_policy::FilePolicy::load(file).unwrap())
        .store(
            approvals_backends::sqlite::Sqlite::open(dir.path().join("a.db"))
                .await
                .unwrap(),
        )
        .audit(audit)
        .build()
        .unwrap();
    for limit in [5000u32, 10, 20000] {
        let action = Action::builder("export", "export")
            .arg("limit", &limit)
            .build()
            .unwrap();
        let permit = gate
            .authorize(
                action,
                approvals_core::Context::new(Principal::agent("ops-bot")),
                approvals_core::CallOptions::default(),
            )
            .await
            .expect("allowed: shadow rules are not enforced");
        permit.finish(Ok(())).await;
    }
    gate.shutdown().await.unwrap();
    let log = log.to_str().unwrap();

    let out = approvals(&["audit", "show", log, "--shadow"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("rules in shadow mode decided 2 calls in this period"),
        "{t}"
    );
    assert!(
        t.contains("policy export, rule big-exports-need-an-owner: would have required approval 2× (done instead: allowed 2)"),
        "{t}"
    );
    let out = approvals(&["--json", "audit", "show", log, "--shadow"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["times"], 2);
    assert_eq!(v["done"]["allowed"], 2);
    // A period that holds none of them; and a period that is not one.
    let out = approvals(&[
        "audit",
        "show",
        log,
        "--shadow",
        "--until",
        "2000-01-01T00:00:00Z",
    ]);
    assert!(text(&out).contains("decided 0 calls"), "{}", text(&out));
    let out = approvals(&["audit", "show", log, "--shadow", "--since", "last tuesday"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--since takes an RFC 3339 time"),
        "{}",
        text(&out)
    );
}

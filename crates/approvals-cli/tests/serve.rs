//! `approvals serve` as a real process over a SQLite file, an agent's gate in this process on
//! the same file, and the operator commands against the server and against the database.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use approvals_backends::file::load_signer;
use approvals_backends::sql::{Database, SqlAuditOptions};
use approvals_core::{Action, CallOptions, Context, Error, Gate, Principal};
use approvals_policy::FilePolicy;

/// A policy file: alice and bob are data owners with keys; alice has a token.
fn config(dir: &Path, alice_vkey: &str, bob_vkey: &str, token_hash: &str) -> std::path::PathBuf {
    let path = dir.join("approvals.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[people]]
id = "alice"
ed25519 = "{alice_vkey}"

[[people]]
id = "bob"
ed25519 = "{bob_vkey}"

[groups]
data-owners = ["alice", "bob"]

[[policies.export.rules]]
name = "one-data-owner"
require = [{{ group = "data-owners", count = 1 }}]
expires_in = "10m"

[server]
origin = "test/audit"

[[server.tokens]]
principal = "alice"
sha256 = "{token_hash}"
"#
        ),
    )
    .unwrap();
    path
}

async fn agent_gate(config: &Path, db: &str, audit_key: &Path) -> Gate {
    let policy = FilePolicy::load(config).unwrap();
    let db = Database::open(db).await.unwrap();
    let audit = db
        .audit(SqlAuditOptions::new(
            "test/audit",
            load_signer(audit_key).unwrap(),
        ))
        .await
        .unwrap();
    Gate::builder()
        .directory(policy.directory())
        .policy(policy)
        .store_arc(db.store())
        .audit(audit)
        .build()
        .unwrap()
}

/// Starts a gated call; returns its request id (once the request exists) and the waiting
/// call. A deferred call creates the request and returns at once; the identical call then
/// re-attaches to it and waits.
async fn export(
    gate: &Gate,
    limit: u32,
) -> (
    String,
    tokio::task::JoinHandle<Result<Option<serde_json::Value>, Error>>,
) {
    let action = move || {
        Action::builder("billing::export_customers", "export")
            .arg("limit", &limit)
            .editable("limit")
            .build()
            .unwrap()
    };
    let context = || Context::new(Principal::agent("ops-bot"));
    let deferred = CallOptions {
        defer: true,
        ..CallOptions::default()
    };
    let id = match gate.authorize(action(), context(), deferred).await {
        Err(Error::Pending { request_id }) => request_id.to_string(),
        other => panic!("expected a pending request, got {:?}", other.err()),
    };
    let gate = gate.clone();
    let call = tokio::spawn(async move {
        let permit = gate
            .authorize(action(), context(), CallOptions::default())
            .await?;
        // The value it runs with, if a reviewer changed it.
        let edited = permit.edited_value("limit").cloned();
        permit.finish(Ok(())).await;
        Ok(edited)
    });
    (id, call)
}

/// Runs the binary off the async runtime's threads.
async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        approvals(&args)
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_then_approve_over_http_and_deny_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let alice = keygen(d, "alice");
    let bob = keygen(d, "bob");
    keygen(d, "audit");
    let token = approvals(&["token", "--principal", "alice"]);
    assert!(token.status.success(), "{}", text(&token));
    let token_text = String::from_utf8(token.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    let stderr = String::from_utf8(token.stderr).unwrap();
    let hash = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .map(|h| h.trim_end_matches('"'))
        .unwrap_or_else(|| panic!("{stderr}"));
    let config = config(d, &alice, &bob, hash);
    let db = format!("sqlite:{}", d.join("approvals.db").display());
    let audit_key = d.join("audit.key");

    let gate = agent_gate(&config, &db, &audit_key).await;
    let server = serve(&config, &db, &audit_key);

    // One call waits; the operator sees it, reads it, approves it over HTTP, signed.
    let (id, call) = export(&gate, 500).await;
    let o = run(args(&[
        "pending",
        "--server",
        &server.url,
        "--token",
        &token_text,
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&id), "{}", text(&o));
    assert!(
        text(&o).contains("needs 1 more from data-owners"),
        "{}",
        text(&o)
    );
    let o = run(args(&[
        "show",
        &id,
        "--server",
        &server.url,
        "--token",
        &token_text,
    ]))
    .await;
    assert!(
        text(&o).contains("action    billing::export_customers"),
        "{}",
        text(&o)
    );
    let o = run(args(&[
        "pending",
        "--server",
        &server.url,
        "--token",
        "apv_wrong",
    ]))
    .await;
    assert!(!o.status.success());
    assert!(text(&o).contains("invalid_token"), "{}", text(&o));

    let o = run(args(&[
        "approve",
        &id,
        "--key",
        d.join("alice.key").to_str().unwrap(),
        "--comment",
        "for the report",
        "--server",
        &server.url,
        "--token",
        &token_text,
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("approved {id}: approved")),
        "{}",
        text(&o)
    );
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the agent's call completes (a bound on failure only)")
        .unwrap()
        .unwrap();

    // A second call, denied by bob directly on the database, no server involved.
    let (id, call) = export(&gate, 7).await;
    let o = run(args(&["pending", "--db", &db])).await;
    assert!(text(&o).contains(&id), "{}", text(&o));
    let o = run(args(&[
        "deny",
        &id,
        "--key",
        d.join("bob.key").to_str().unwrap(),
        "--reason",
        "not this week",
        "--db",
        &db,
        "--config",
        config.to_str().unwrap(),
        "--audit-key",
        audit_key.to_str().unwrap(),
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("denied"), "{}", text(&o));
    let err = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("not this week"), "{err}");

    // A third, sent back by bob with what to change: the caller reads it, nothing runs.
    let (id, call) = export(&gate, 9).await;
    let o = run(args(&[
        "request-changes",
        &id,
        "--key",
        d.join("bob.key").to_str().unwrap(),
        "--message",
        "export 5, not 9",
        "--db",
        &db,
        "--config",
        config.to_str().unwrap(),
        "--audit-key",
        audit_key.to_str().unwrap(),
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("asked for changes {id}: changes_requested")),
        "{}",
        text(&o)
    );
    let err = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::ChangesRequested { by, message, .. }
            if by == "bob" && message == "export 5, not 9"),
        "{err}"
    );

    // A fourth, approved by alice with its limit changed, over the server: her signed
    // approval of the edit is the one it needs, and the call runs with the new value.
    let (id, call) = export(&gate, 11).await;
    let o = run(args(&[
        "show",
        &id,
        "--server",
        &server.url,
        "--token",
        &token_text,
    ]))
    .await;
    assert!(
        text(&o).contains("editable  limit (approve --set NAME=VALUE)"),
        "{}",
        text(&o)
    );
    let approve_with = |set: &str| {
        args(&[
            "approve",
            &id,
            "--key",
            d.join("alice.key").to_str().unwrap(),
            "--set",
            set,
            "--server",
            &server.url,
            "--token",
            &token_text,
        ])
    };
    let o = run(approve_with("rows=3")).await;
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`rows` is not editable for this call (editable: limit)"),
        "{}",
        text(&o)
    );
    let o = run(approve_with("limit=3")).await;
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    let edit_id = said
        .split("the edited call is request ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no edited request in: {said}"))
        .to_owned();
    assert_eq!(
        said.trim_end(),
        format!("approved {id} with limit: 11 → 3: the edited call is request {edit_id}, approved")
    );
    let ran_with = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the agent's call completes (a bound on failure only)")
        .unwrap()
        .unwrap();
    assert_eq!(ran_with, Some(serde_json::json!(3)));
    let o = run(args(&[
        "show",
        &id,
        "--server",
        &server.url,
        "--token",
        &token_text,
    ]))
    .await;
    assert!(
        text(&o).contains(&format!("edited    into request {edit_id}")),
        "{}",
        text(&o)
    );
    let o = run(args(&[
        "show",
        &edit_id,
        "--server",
        &server.url,
        "--token",
        &token_text,
    ]))
    .await;
    assert!(
        text(&o).contains(&format!("edit of   {id} by alice: limit: 11 → 3")),
        "{}",
        text(&o)
    );

    // alice's key cannot sign as bob.
    let (id, call) = export(&gate, 8).await;
    let o = run(args(&[
        "approve",
        &id,
        "--key",
        d.join("alice.key").to_str().unwrap(),
        "--as",
        "bob",
        "--server",
        &server.url,
        "--token",
        &token_text,
    ]))
    .await;
    assert!(!o.status.success());
    assert!(text(&o).contains("bad_signature"), "{}", text(&o));
    call.abort();

    // Graceful stop: SIGTERM, exit 0, and the log verifies.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(server.child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("final checkpoint signed"), "{rest}");
    gate.shutdown().await.unwrap();
    let vkey = d.join("audit.vkey");
    let audit_vkey = load_signer(&audit_key).unwrap().verifier().to_vkey();
    std::fs::write(&vkey, format!("{audit_vkey}\n")).unwrap();
    let o = approvals(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--vkey",
        vkey.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = approvals(&["audit", "show", "--db", &db]);
    let shown = text(&o);
    assert!(shown.contains("review_unauthenticated"), "{shown}");
}

/// Two `approvals serve` processes share one Postgres database: a requester asks through one
/// and long-polls it; a reviewer approves through the other; the long-poll wakes at once
/// (LISTEN/NOTIFY across processes), and the requester's permit is good once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_one_replica_wakes_when_another_approves() {
    let Ok(base) = std::env::var("APPROVALS_TEST_POSTGRES_URL") else {
        eprintln!("skipped: APPROVALS_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("r_{}", approvals_core::RequestId::generate()).to_lowercase();
    let sep = if base.contains('?') { '&' } else { '?' };
    let db = format!("{base}{sep}schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let alice = keygen(d, "alice");
    let bob = keygen(d, "bob");
    keygen(d, "audit");
    let (alice_token, alice_hash) = token(&["--principal", "alice"]);
    let (bot_token, bot_hash) = token(&["--principal", "ops-bot", "--role", "request"]);
    let config = config(d, &alice, &bob, &alice_hash);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[server.tokens]]\nprincipal = \"ops-bot\"\nsha256 = \"{bot_hash}\"\nrole = \"request\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    let key = d.join("audit.key");
    let (one, other) = (serve(&config, &db, &key), serve(&config, &db, &key));
    let http = reqwest::Client::new();
    let asked: serde_json::Value = http
        .post(format!("{}/api/v1/requests", one.url))
        .bearer_auth(&bot_token)
        .json(&serde_json::json!({ "action": "billing::export_customers", "policy": "export", "args": { "limit": 10 } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = asked["request"]["id"].as_str().unwrap().to_owned();
    let digest = asked["request"]["action"]["digest"].clone();
    let poll = {
        let (http, url, id, token) = (http.clone(), one.url.clone(), id.clone(), bot_token.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let v: serde_json::Value = http
                .get(format!("{url}/api/v1/requests/{id}?wait=50"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v, started.elapsed())
        })
    };
    let approved = http
        .post(format!("{}/api/v1/requests/{id}/reviews", other.url))
        .bearer_auth(&alice_token)
        .json(&serde_json::json!({ "verdict": "approve", "digest": digest }))
        .send()
        .await
        .unwrap();
    assert!(
        approved.status().is_success(),
        "{}",
        approved.text().await.unwrap()
    );
    let (v, waited) = tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["status"], "approved", "{v}");
    assert!(
        waited < Duration::from_secs(45),
        "woken by the approval: {waited:?}"
    );
    let start = |url: &str| {
        http.post(format!("{url}/api/v1/requests/{id}/start"))
            .bearer_auth(&bot_token)
            .send()
    };
    assert_eq!(start(&one.url).await.unwrap().status(), 200);
    assert_eq!(
        start(&other.url).await.unwrap().status(),
        409,
        "one permit, across replicas"
    );
    drop((one, other));
    use sqlx::{ConnectOptions, Executor};
    let mut conn = base
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    conn.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
        .await
        .unwrap();
}

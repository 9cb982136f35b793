//! Running it in production: `approvals init` for a new deployment, what `serve` tells the
//! operator, `/metrics` checked against the calls made, an OpenTelemetry collector that
//! cannot be reached, shell completions and the manual page.

mod common;
use common::*;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The tokens `approvals init` printed: (reviewer, requester).
fn printed_tokens(out: &str) -> (String, String) {
    let token_after = |label: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no {label} in {out}"))
            .to_owned()
    };
    (
        token_after("alice (reviewer):"),
        token_after("deploy-bot (requester):"),
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Asks for `action` under `policy` as the requester; returns the answer's status and body.
fn ask(url: &str, token: &str, policy: &str, args: Value) -> (u16, Value) {
    let r = client()
        .post(format!("{url}/api/v1/requests"))
        .bearer_auth(token)
        .json(&json!({ "action": policy, "policy": policy, "args": args }))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn approve(url: &str, token: &str, id: &str) {
    let view: Value = client()
        .get(format!("{url}/api/v1/requests/{id}"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let r = client()
        .post(format!("{url}/api/v1/requests/{id}/reviews"))
        .bearer_auth(token)
        .json(&json!({ "verdict": "approve", "digest": view["request"]["action"]["digest"] }))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
}

fn status_after_wait(url: &str, token: &str, id: &str) -> String {
    let v: Value = client()
        .get(format!("{url}/api/v1/requests/{id}?wait=20"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["status"].as_str().unwrap().to_owned()
}

#[test]
fn init_writes_a_deployment_that_checks_serves_and_approves_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("deploy");
    let o = approvals(&["init", d.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let (reviewer, requester) = printed_tokens(&out);
    assert!(out.contains("approvals policy check"), "{out}");
    assert!(out.contains("curl -s -X POST"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.join("audit.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let config = d.join("approvals.toml");
    let checked = approvals(&["policy", "check", config.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", text(&checked));

    let db = format!("sqlite:{}", d.join("approvals.db").display());
    let server = serve(&config, &db, &d.join("audit.key"));
    let (status, asked) = ask(&server.url, &requester, "deploy", json!({ "env": "prod" }));
    assert_eq!(status, 202, "{asked}");
    let id = asked["request"]["id"].as_str().unwrap().to_owned();
    approve(&server.url, &reviewer, &id);
    assert_eq!(status_after_wait(&server.url, &requester, &id), "approved");
    drop(server);
    let verified = approvals(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--vkey",
        d.join("audit.vkey").to_str().unwrap(),
    ]);
    assert!(verified.status.success(), "{}", text(&verified));

    // Again, into the same directory: refused, and nothing changes.
    let before: Vec<Vec<u8>> = ["approvals.toml", "audit.key", "audit.vkey"]
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();
    let again = approvals(&["init", d.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already there; approvals init changes nothing"),
        "{}",
        text(&again)
    );
    let after: Vec<Vec<u8>> = ["approvals.toml", "audit.key", "audit.vkey"]
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();
    assert_eq!(before, after);
}

/// A deployment with a reviewer, a requester and a scraper token, and four policies.
fn deployment(dir: &Path) -> (std::path::PathBuf, String, [String; 3]) {
    keygen(dir, "audit");
    let (alice, alice_hash) = token(&["--principal", "alice"]);
    let (bot, bot_hash) = token(&["--principal", "bot", "--role", "request"]);
    let (scraper, scraper_hash) = token(&["--principal", "prometheus", "--role", "metrics"]);
    let config = dir.join("approvals.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[people]]
id = "alice"

[[policies.read.rules]]
allow = true
[[policies.drop.rules]]
deny = "never"
[[policies.deploy.rules]]
require = [{{ people = ["alice"], count = 1 }}]
[[policies.quick.rules]]
require = [{{ people = ["alice"], count = 1 }}]
expires_in = "1s"

[server]
origin = "test/audit"

[[server.tokens]]
principal = "alice"
sha256 = "{alice_hash}"
[[server.tokens]]
principal = "bot"
sha256 = "{bot_hash}"
role = "request"
[[server.tokens]]
principal = "prometheus"
sha256 = "{scraper_hash}"
role = "metrics"
"#
        ),
    )
    .unwrap();
    let db = format!("sqlite:{}", dir.join("a.db").display());
    (config, db, [alice, bot, scraper])
}

/// The value of the sample of `name` whose labels include every pair of `labels`.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse().unwrap())
}

#[test]
fn metrics_count_the_calls_made_and_need_a_scrapers_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (config, db, [alice, bot, scraper]) = deployment(d);
    let server = serve(&config, &db, &d.join("audit.key"));
    let url = &server.url;

    assert_eq!(ask(url, &bot, "read", json!({})).0, 200);
    let (denied, body) = ask(url, &bot, "drop", json!({}));
    assert_eq!(denied, 403, "{body}");
    let (_, deploy) = ask(url, &bot, "deploy", json!({ "n": 1 }));
    let deploy = deploy["request"]["id"].as_str().unwrap().to_owned();
    approve(url, &alice, &deploy);
    let (_, quick) = ask(url, &bot, "quick", json!({ "n": 2 }));
    let quick = quick["request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(status_after_wait(url, &bot, &quick), "expired");
    assert_eq!(status_after_wait(url, &bot, &deploy), "approved");

    let scrape = |token: Option<&str>| {
        let mut r = client().get(format!("{url}/metrics"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };
    let anonymous = scrape(None);
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        scrape(Some(&alice)).status(),
        403,
        "a reviewer's token reads no metrics"
    );
    let ok = scrape(Some(&scraper));
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = ok.text().unwrap();

    let calls = |verdict| sample(&m, "approvals_calls_total", &[("verdict", verdict)]);
    assert_eq!(calls("allow"), Some(1.0), "{m}");
    assert_eq!(calls("deny"), Some(1.0), "{m}");
    assert_eq!(calls("require_approval"), Some(2.0), "{m}");
    let decisions = |outcome, policy| {
        sample(
            &m,
            "approvals_decisions_total",
            &[("outcome", outcome), ("policy", policy)],
        )
    };
    assert_eq!(decisions("approved", "deploy"), Some(1.0), "{m}");
    assert_eq!(decisions("expired", "quick"), Some(1.0), "{m}");
    assert_eq!(decisions("denied", "deploy"), None, "{m}");
    assert_eq!(sample(&m, "approvals_requests_open", &[]), Some(0.0), "{m}");
    assert_eq!(
        sample(&m, "approvals_gate_seconds_count", &[]),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "approvals_decision_seconds_count",
            &[("outcome", "approved")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "approvals_audit_failures_total", &[]),
        None,
        "{m}"
    );
    // Every audit record this process appended was timed.
    drop(server);
    let exported = d.join("audit.jsonl");
    let o = approvals(&[
        "audit",
        "export",
        "--db",
        &db,
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let records = std::fs::read_to_string(&exported)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"event\""))
        .count();
    assert_eq!(
        sample(&m, "approvals_audit_append_seconds_count", &[]),
        Some(records as f64),
        "{m}"
    );
}

#[test]
fn serve_tells_the_operator_what_it_is_doing_in_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (config, db, [alice, bot, _]) = deployment(d);
    let mut child = Command::new(env!("CARGO_BIN_EXE_approvals"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            config.to_str().unwrap(),
        ])
        .args(["--db", &db, "--listen", "127.0.0.1:0"])
        .args(["--audit-key", d.join("audit.key").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let (_, asked) = ask(&url, &bot, "deploy", json!({}));
    let id = asked["request"]["id"].as_str().unwrap().to_owned();
    approve(&url, &alice, &id);
    assert_eq!(status_after_wait(&url, &bot, &id), "approved");
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |needle: &str| {
        lines.iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
    };
    assert!(said("console at http://127.0.0.1:"), "{logs}");
    assert!(said("database sqlite:"), "{logs}");
    assert!(said("audit log `test/audit`"), "{logs}");
    assert!(said("channels: none configured"), "{logs}");
    let decided: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request decided")
        .collect();
    assert_eq!(decided.len(), 1, "{logs}");
    assert_eq!(decided[0]["level"], "INFO");
    assert_eq!(decided[0]["fields"]["request_id"], id.as_str());
    assert_eq!(decided[0]["fields"]["outcome"], "approved");
    assert_eq!(decided[0]["fields"]["by"], "alice");
}

#[cfg(feature = "otel")]
#[test]
fn an_unreachable_trace_collector_never_holds_a_call_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (config, db, [alice, bot, _]) = deployment(d);
    // Nothing listens on port 9 of loopback (discard): every export fails.
    let mut child = Command::new(env!("CARGO_BIN_EXE_approvals"))
        .args(["serve", "--config", config.to_str().unwrap(), "--db", &db])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "http://127.0.0.1:9/v1/traces",
        ])
        .args(["--audit-key", d.join("audit.key").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let started = Instant::now();
    for n in 0..20 {
        assert_eq!(ask(&url, &bot, "read", json!({ "n": n })).0, 200);
    }
    let (_, asked) = ask(&url, &bot, "deploy", json!({}));
    let id = asked["request"]["id"].as_str().unwrap().to_owned();
    approve(&url, &alice, &id);
    assert_eq!(status_after_wait(&url, &bot, &id), "approved");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "22 calls took {took:?}");
    // And it stops promptly: the last spans' flush is bounded.
    #[cfg(unix)]
    {
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let stopping = Instant::now();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "{:?}",
            stopping.elapsed()
        );
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_itself() {
    for shell in ["bash", "zsh", "fish"] {
        let o = approvals(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", text(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        for sub in ["serve", "exec", "mcp", "init", "audit"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let man = approvals(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH approvals"),
        "{}",
        &page[..200.min(page.len())]
    );
}

/// The policies and the `[server]` table are one file read once: a misspelled `[server]` key
/// is refused like any other error of the file, at its line, before anything starts.
#[test]
fn a_misspelled_server_setting_is_an_error_of_the_file_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (config, db, _) = deployment(dir.path());
    let file = std::fs::read_to_string(&config)
        .unwrap()
        .replace("origin = \"test/audit\"", "orign = \"test/audit\"");
    std::fs::write(&config, &file).unwrap();
    let line = file.lines().position(|l| l.starts_with("orign")).unwrap() + 1;
    let key = dir.path().join("audit.key");
    let o = approvals(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--db",
        &db,
        "--audit-key",
        key.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!o.status.success());
    let said = text(&o);
    assert!(said.contains("[server]: unknown field `orign`"), "{said}");
    assert!(said.contains(&format!(":{line}:")), "line {line}: {said}");
    // The policy checker reads the same file the same way, and says the same.
    let o = approvals(&["policy", "check", config.to_str().unwrap()]);
    assert!(!o.status.success());
    let said = text(&o);
    assert!(said.contains("[server]: unknown field `orign`"), "{said}");
    assert!(said.contains(&format!(":{line}:")), "line {line}: {said}");
}

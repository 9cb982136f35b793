//! `approvals exec` with real commands against a real `approvals serve`: approved runs once,
//! denied and expired never run and exit with their codes, a killed pipeline re-run joins its
//! request and runs once, an unreachable service stops it before the command runs.

mod common;
use common::*;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

struct Setup {
    dir: tempfile::TempDir,
    server: Server,
    ci: String,
    alice: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "audit");
    let (alice, alice_hash) = token(&["--principal", "alice"]);
    let (ci, ci_hash) = token(&["--principal", "ci", "--role", "request"]);
    let config = d.join("approvals.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[people]]
id = "alice"
[[people]]
id = "bob"

[groups]
sre = ["alice", "bob"]

[[policies.deploy.rules]]
name = "one-sre"
require = [{{ group = "sre", count = 1 }}]
expires_in = "10m"

[[policies.quick.rules]]
name = "quick"
require = [{{ group = "sre", count = 1 }}]
expires_in = "1s"

[[policies.read.rules]]
allow = true

[server]
origin = "test/audit"

[[server.tokens]]
principal = "alice"
sha256 = "{alice_hash}"

[[server.tokens]]
principal = "ci"
sha256 = "{ci_hash}"
role = "request"
"#
        ),
    )
    .unwrap();
    let db = format!("sqlite:{}", d.join("a.db").display());
    let server = serve(&config, &db, &d.join("audit.key"));
    Setup {
        dir,
        server,
        ci,
        alice,
    }
}

/// A running `approvals exec`, with its standard error read line by line.
struct Exec {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Setup {
    fn counter(&self) -> PathBuf {
        self.dir.path().join("counter")
    }

    /// `approvals exec ... -- sh -c 'echo ran >> counter; exit CODE'`.
    fn exec(&self, extra: &[&str], exit: u8) -> Exec {
        let script = format!("echo ran >> '{}'; exit {exit}", self.counter().display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_approvals"))
            .args(["exec", "--server", &self.server.url])
            .args(extra)
            .args(["--", "sh", "-c", &script])
            .env("APPROVALS_TOKEN", &self.ci)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Exec { child, lines }
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(self.counter())
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn review(&self, id: &str, verdict: &str) {
        let client = reqwest::blocking::Client::new();
        let view: Value = client
            .get(format!("{}/api/v1/requests/{id}", self.server.url))
            .bearer_auth(&self.alice)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let mut body = json!({ "verdict": verdict, "digest": view["request"]["action"]["digest"] });
        match verdict {
            "deny" => body["comment"] = json!("not this release"),
            "request_changes" => body["comment"] = json!("deploy to staging first"),
            _ => {}
        }
        let r = client
            .post(format!("{}/api/v1/requests/{id}/reviews", self.server.url))
            .bearer_auth(&self.alice)
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
    }
}

impl Exec {
    /// The request id the command waits on, from its announcement.
    fn request_id(&self) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("exec announces what it waits for");
            if let Some(rest) = line.split("(request ").nth(1) {
                return rest.trim_end_matches(')').to_owned();
            }
        }
    }

    /// Waits for the exit (30 s at most); returns its code and what it said.
    fn exit(mut self) -> (i32, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut said = Vec::new();
        // Every line until the pipe closes, which it does when the process exits.
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => said.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("exec did not exit:\n{}", said.join("\n"))
                }
            }
        }
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), said.join("\n"))
    }
}

fn deploy(extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = vec![
        "--policy",
        "deploy",
        "--arg",
        "env=prod",
        "--arg",
        "replicas=3",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn approved_runs_once_with_the_commands_status() {
    let s = setup();
    let e = s.exec(&deploy(&["--reason", "release 1.4"]), 0);
    let id = e.request_id();
    assert_eq!(s.runs(), 0, "nothing runs before the approval");
    s.review(&id, "approve");
    let (code, said) = e.exit();
    assert_eq!(code, 0, "{said}");
    assert_eq!(s.runs(), 1);
    // The command line is bound into the approval: another command asks again.
    let view: Value = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/requests/{id}", s.server.url))
        .bearer_auth(&s.alice)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let args = &view["request"]["action"]["args"];
    assert_eq!(args["replicas"], 3, "`replicas=3` is read as a number");
    assert_eq!(args["env"], "prod");
    assert_eq!(args["command"][0], "sh");
    assert_eq!(view["execution"]["execution"], "finished");
    assert_eq!(view["execution"]["ok"], true);

    // Allowed outright: the command runs at once, and its exit status is exec's.
    let e = s.exec(&["--policy", "read"], 3);
    let (code, said) = e.exit();
    assert_eq!(code, 3, "{said}");
    assert_eq!(s.runs(), 2);
}

#[test]
fn denied_and_expired_never_run_and_exit_with_their_codes() {
    let s = setup();
    let e = s.exec(&deploy(&[]), 0);
    let id = e.request_id();
    s.review(&id, "deny");
    let (code, said) = e.exit();
    assert_eq!(code, 77, "{said}");
    assert!(said.contains("not this release"), "{said}");

    // Sent back: its own code, and what to change.
    let e = s.exec(&deploy(&[]), 0);
    let id = e.request_id();
    s.review(&id, "request_changes");
    let (code, said) = e.exit();
    assert_eq!(code, 79, "{said}");
    assert!(said.contains("deploy to staging first"), "{said}");

    let e = s.exec(&["--policy", "quick"], 0);
    e.request_id();
    let (code, said) = e.exit();
    assert_eq!(code, 75, "{said}");
    assert_eq!(s.runs(), 0);

    // An unknown policy is a refused request, not a wait.
    let e = s.exec(&["--policy", "delpoy"], 0);
    let (code, said) = e.exit();
    assert_eq!(code, 64, "{said}");
    assert!(said.contains("deploy"), "names the known policies: {said}");
    assert_eq!(s.runs(), 0);
}

#[test]
fn a_pipeline_killed_while_waiting_and_re_run_joins_its_request_and_runs_once() {
    let s = setup();
    let mut first = s.exec(&deploy(&[]), 0);
    let id = first.request_id();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // The re-run pipeline makes the identical call.
    let second = s.exec(&deploy(&[]), 0);
    assert_eq!(
        second.request_id(),
        id,
        "it joins the request it made before"
    );
    s.review(&id, "approve");
    let (code, said) = second.exit();
    assert_eq!(code, 0, "{said}");
    assert_eq!(s.runs(), 1);
    // Run and finished: a third run asks again.
    let third = s.exec(&deploy(&[]), 0);
    assert_ne!(third.request_id(), id);
    assert_eq!(s.runs(), 1);
}

#[test]
fn a_service_down_while_waiting_stops_the_pipeline_before_the_command() {
    let mut s = setup();
    let e = s.exec(&deploy(&["--retry-for", "2"]), 0);
    e.request_id();
    s.server.child.kill().unwrap();
    s.server.child.wait().unwrap();
    let (code, said) = e.exit();
    assert_eq!(code, 69, "{said}");
    assert!(said.contains("unreachable"), "{said}");
    assert_eq!(s.runs(), 0);
}

#[test]
fn without_a_token_nothing_is_asked() {
    let out = Command::new(env!("CARGO_BIN_EXE_approvals"))
        .args([
            "exec",
            "--server",
            "http://127.0.0.1:9",
            "--policy",
            "deploy",
            "--",
            "true",
        ])
        .env_remove("APPROVALS_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APPROVALS_TOKEN"));
}

/// Local mode: no server; the embedded gate over an SQLite file, the terminal as the
/// approver (here its standard input answers `y`).
#[test]
fn local_mode_asks_at_the_terminal_and_runs_once() {
    let s = setup();
    let d = s.dir.path();
    let config = d.join("approvals.toml");
    let db = format!("sqlite:{}", d.join("local.db").display());
    let script = format!("echo ran >> '{}'", s.counter().display());
    let run = |answer: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_approvals"))
            .args(["exec", "--config", config.to_str().unwrap(), "--db", &db])
            .args([
                "--reviewer",
                "alice",
                "--policy",
                "deploy",
                "--arg",
                "env=prod",
            ])
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("y\nlooks fine\n");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("Approve as alice?"), "{said}");
    assert_eq!(s.runs(), 1);
    let out = run("n\nnot now\n");
    assert_eq!(
        out.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.runs(), 1);
    assert!(
        d.join("local.db.audit.key").exists(),
        "the audit key is kept beside the database"
    );
}

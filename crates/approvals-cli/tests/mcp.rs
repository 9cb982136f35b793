//! `approvals mcp` between real peers nobody here wrote: the official MCP SDK's client (the
//! `mcp` package from PyPI, `tests/mcp/client.py`) downstream, and the reference servers from
//! npm (`@modelcontextprotocol/server-filesystem`, `server-everything`) upstream, installed by
//! `.ci/run` into `tests/mcp/`. Reviewers decide through a real `approvals serve` over the
//! same SQLite file.
#![cfg(feature = "mcp")]

mod common;
use common::*;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The peers, or `None` (with a note) where they are not installed; `.ci/run` installs them
/// and sets `APPROVALS_REQUIRE_MCP_PEERS=1`, so there a missing peer fails the test.
fn peers() -> Option<PathBuf> {
    let bin = repo().join("tests/mcp/node_modules/.bin");
    let sdk = Command::new("python3")
        .args(["-c", "import mcp"])
        .status()
        .is_ok_and(|s| s.success());
    let servers =
        bin.join("mcp-server-filesystem").exists() && bin.join("mcp-server-everything").exists();
    if sdk && servers {
        return Some(bin);
    }
    let missing = format!(
        "MCP peers missing (python mcp: {sdk}, npm servers in tests/mcp: {servers}); run `pip install mcp==2.3.0` and `npm ci` in tests/mcp"
    );
    assert!(
        std::env::var("APPROVALS_REQUIRE_MCP_PEERS").is_err(),
        "{missing}"
    );
    eprintln!("skipped: {missing}");
    None
}

struct Setup {
    dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    db: String,
    alice: String,
    agent_token: String,
}

const POLICY: &str = r#"
[[people]]
id = "alice"
[[people]]
id = "dana"

# Reads run; anything else the file system server offers is refused.
[[policies."mcp.fs".rules]]
name = "reads"
when = 'action.name in ["fs.read_text_file", "fs.list_directory", "fs.list_allowed_directories", "fs.get_file_info"]'
allow = true

[[policies."mcp.fs.write_file".rules]]
name = "no-dotenv"
when = 'args.path.endsWith(".env")'
deny = "agents may not write .env files"
[[policies."mcp.fs.write_file".rules]]
name = "writes"
require = [{ people = ["alice"], count = 1 }]
expires_in = "10m"

[[policies."mcp.fs.create_directory".rules]]
name = "quick"
require = [{ people = ["alice"], count = 1 }]
expires_in = "1s"

[[policies."mcp.fs.move_file".rules]]
name = "stay"
deny = "files stay where they are"

[[policies."mcp.everything.get-sum".rules]]
allow = true
[[policies."mcp.everything.echo".rules]]
allow = true
[[policies."mcp.everything.trigger-long-running-operation".rules]]
allow = true
[[policies."mcp.everything.get-env".rules]]
name = "no-env"
deny = "the environment holds secrets"

[[policies."mcp.odd".rules]]
allow = true
"#;

fn setup() -> Option<Setup> {
    let bin = peers()?;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("files")).unwrap();
    let vkey = keygen(d, "audit");
    std::fs::write(d.join("audit.vkey"), vkey).unwrap();
    let (alice, alice_hash) = token(&["--principal", "alice"]);
    let (agent_token, agent_hash) = token(&[
        "--principal",
        "laptop",
        "--role",
        "request",
        "--on-behalf-of",
        "dana",
    ]);
    let config = d.join("approvals.toml");
    std::fs::write(
        &config,
        format!(
            "{POLICY}\n[server]\norigin = \"test/audit\"\npublic_url = \"https://approvals.example.com\"\n\n[[server.tokens]]\nprincipal = \"alice\"\nsha256 = \"{alice_hash}\"\n\n[[server.tokens]]\nprincipal = \"laptop\"\nsha256 = \"{agent_hash}\"\nrole = \"request\"\non_behalf_of = [\"dana\"]\n"
        ),
    )
    .unwrap();
    let db = std::env::var("APPROVALS_TEST_DB_DIR").map_or_else(
        |_| format!("sqlite:{}", d.join("a.db").display()),
        |x| format!("sqlite:{x}/a{}.db", std::process::id()),
    );
    Some(Setup {
        dir,
        bin,
        config,
        db,
        alice,
        agent_token,
    })
}

impl Setup {
    fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    fn audit_key(&self) -> PathBuf {
        self.dir.path().join("audit.key")
    }

    /// `approvals mcp` arguments for the upstream `server` named `name`.
    fn gateway(&self, name: &str, extra: &[&str], upstream: &[String]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            env!("CARGO_BIN_EXE_approvals").into(),
            "mcp".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--db".into(),
            self.db.clone(),
            "--audit-key".into(),
            self.audit_key().display().to_string(),
            "--server-name".into(),
            name.into(),
            "--requester".into(),
            "claude".into(),
            "--on-behalf-of".into(),
            "dana".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push("--".into());
        args.extend(upstream.iter().cloned());
        args
    }

    fn filesystem(&self) -> Vec<String> {
        vec![
            self.bin.join("mcp-server-filesystem").display().to_string(),
            self.files().display().to_string(),
        ]
    }

    /// The gateway started with `--upstream URL` (no command of its own).
    fn client_of_url(&self, name: &str, url: &str) -> Client {
        let mut args = vec!["stdio".to_owned()];
        args.extend(self.gateway(name, &["--upstream", url], &[]));
        // No upstream command: drop the `--` that `gateway` ends with.
        args.pop_if(|a| a == "--");
        Client::start(&args)
    }

    fn everything(&self) -> Vec<String> {
        vec![self.bin.join("mcp-server-everything").display().to_string()]
    }

    /// The SDK client, over stdio, starting the gateway as a desktop client would.
    fn client(&self, name: &str, extra: &[&str], upstream: &[String]) -> Client {
        let mut args = vec!["stdio".to_owned()];
        args.extend(self.gateway(name, extra, upstream));
        Client::start(&args)
    }

    fn serve(&self) -> Server {
        serve(&self.config, &self.db, &self.audit_key())
    }

    fn approve(&self, server: &Server, id: &str) {
        let client = reqwest::blocking::Client::new();
        let view: Value = client
            .get(format!("{}/api/v1/requests/{id}", server.url))
            .bearer_auth(&self.alice)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let body = json!({ "verdict": "approve", "digest": view["request"]["action"]["digest"] });
        let r = client
            .post(format!("{}/api/v1/requests/{id}/reviews", server.url))
            .bearer_auth(&self.alice)
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
    }

    fn view(&self, server: &Server, id: &str) -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/requests/{id}", server.url))
            .bearer_auth(&self.alice)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The audit records in the database, as `approvals audit export` writes them.
    fn audit(&self) -> Vec<Value> {
        let out = self.dir.path().join("audit.jsonl");
        let o = approvals(&[
            "audit",
            "export",
            "--db",
            &self.db,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r.get("event").is_some())
            .collect()
    }

    fn verify_audit(&self) {
        let vkey = self.dir.path().join("audit.vkey");
        let o = approvals(&[
            "audit",
            "verify",
            "--db",
            &self.db,
            "--vkey",
            vkey.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "audit verify: {}", text(&o));
    }
}

/// A running SDK client: commands in, one answer a line out.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    /// Progress notifications received with the last answer.
    progress: Vec<Value>,
}

impl Client {
    fn start(args: &[String]) -> Client {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/mcp/client.py"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(json!({ "unparsed": line }));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut c = Client {
            child,
            stdin,
            lines,
            progress: Vec::new(),
        };
        let init = c.next();
        assert!(
            init.get("init").is_some(),
            "the session did not start: {init}"
        );
        c
    }

    fn next(&mut self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the client answers within a minute")
    }

    fn send(&mut self, command: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// The answer to `command` (progress lines before it are kept in `self.progress`).
    fn ask(&mut self, command: Value) -> Value {
        self.send(command);
        self.answer()
    }

    fn answer(&mut self) -> Value {
        self.progress.clear();
        loop {
            let v = self.next();
            if v.get("progress").is_some() {
                self.progress.push(v);
            } else {
                return v;
            }
        }
    }

    /// The next progress notification of a call in flight.
    fn next_progress(&mut self) -> Value {
        let v = self.next();
        assert!(v.get("progress").is_some(), "expected progress, got {v}");
        v
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.ask(json!({ "op": "call", "tool": tool, "args": args }))
    }

    /// Ends the session as a client does (closing its side) and waits for the exit.
    fn close(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the client exited with {status}");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text_of(answer: &Value) -> String {
    answer["text"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The approval request a held call announced in its progress or its answer.
fn request_id(text: &str) -> String {
    let rest = text
        .split("request ")
        .nth(1)
        .unwrap_or_else(|| panic!("no request id in {text:?}"));
    rest.chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

fn tool_names(listed: &Value) -> Vec<String> {
    listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn allowed_calls_return_the_servers_real_result_and_the_rest_passes_through() {
    let Some(s) = setup() else { return };
    std::fs::write(s.files().join("notes.txt"), "the quarterly numbers\n").unwrap();
    let mut fs = s.client("fs", &[], &s.filesystem());
    let read = fs.call(
        "read_text_file",
        json!({ "path": s.files().join("notes.txt") }),
    );
    assert_eq!(read["is_error"], false, "{read}");
    assert_eq!(text_of(&read), "the quarterly numbers\n");

    let listed = fs.ask(json!({ "op": "list_tools" }));
    let names = tool_names(&listed);
    assert!(names.contains(&"read_text_file".to_owned()), "{names:?}");
    assert!(
        !names.contains(&"move_file".to_owned()),
        "a tool that is only ever refused is hidden: {names:?}"
    );
    let write = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "write_file")
        .unwrap();
    assert!(
        write["description"]
            .as_str()
            .unwrap()
            .contains("run only once people approve them"),
        "{write}"
    );
    fs.close();

    let mut every = s.client("everything", &[], &s.everything());
    let sum = every.call("get-sum", json!({ "a": 2, "b": 3 }));
    assert_eq!(sum["is_error"], false, "{sum}");
    assert!(text_of(&sum).contains('5'), "{sum}");
    // Progress the upstream reports for a call reaches the client under the client's token.
    every.send(json!({
        "op": "call", "tool": "trigger-long-running-operation",
        "args": { "duration": 1, "steps": 3 }, "progress": true
    }));
    let long = every.answer();
    assert_eq!(long["is_error"], false, "{long}");
    // All of it, in the order sent, before the answer (the SDK's handlers run as separate
    // tasks; the gateway keeps the order).
    let steps: Vec<f64> = every
        .progress
        .iter()
        .map(|p| p["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(steps, [1.0, 2.0, 3.0], "{:?}", every.progress);
    // Prompts and resources pass through as they are.
    let prompts = every.ask(json!({ "op": "list_prompts" }));
    assert!(
        !prompts["prompts"].as_array().unwrap().is_empty(),
        "{prompts}"
    );
    let resources = every.ask(json!({ "op": "list_resources" }));
    let first = resources["resources"][0].as_str().unwrap().to_owned();
    let read = every.ask(json!({ "op": "read_resource", "uri": first }));
    assert!(
        read["contents"].as_array().is_some_and(|c| !c.is_empty()),
        "{read}"
    );
    // A tool without a policy is neither listed nor run.
    let names = tool_names(&every.ask(json!({ "op": "list_tools" })));
    assert!(
        names.contains(&"get-sum".to_owned()) && !names.contains(&"get-tiny-image".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"get-env".to_owned()), "{names:?}");
    let unknown = every.call("get-tiny-image", json!({}));
    assert_eq!(unknown["is_error"], true);
    assert!(
        text_of(&unknown).contains("no policy governs `everything.get-tiny-image`"),
        "{unknown}"
    );
    let env = every.call("get-env", json!({}));
    assert_eq!(env["is_error"], true);
    assert!(
        text_of(&env).contains("denied by policy rule `no-env`: the environment holds secrets"),
        "{env}"
    );
    every.close();

    let audit = s.audit();
    let kinds: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| {
            (
                r["action"]["name"].as_str().unwrap_or(""),
                r["event"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("fs.read_text_file", "allowed"))
            && kinds.contains(&("fs.read_text_file", "finished")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("everything.get-env", "policy_denied")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("everything.get-tiny-image", "call_refused")),
        "{kinds:?}"
    );
    s.verify_audit();
}

#[test]
fn a_denied_write_leaves_no_file_and_says_why() {
    let Some(s) = setup() else { return };
    let mut fs = s.client("fs", &[], &s.filesystem());
    let target = s.files().join("prod.env");
    let denied = fs.call(
        "write_file",
        json!({ "path": target, "content": "TOKEN=1" }),
    );
    assert_eq!(denied["is_error"], true, "{denied}");
    assert_eq!(
        text_of(&denied),
        "Refused: denied by policy rule `no-dotenv`: agents may not write .env files. The call was not run."
    );
    let moved = fs.call(
        "move_file",
        json!({ "source": target, "destination": s.files().join("x") }),
    );
    assert!(
        text_of(&moved).contains("files stay where they are"),
        "{moved}"
    );
    fs.close();
    assert!(!target.exists(), "the upstream never saw the call");
    s.verify_audit();
}

#[test]
fn a_call_that_needs_approval_completes_once_a_reviewer_approves() {
    let Some(s) = setup() else { return };
    let server = s.serve();
    let mut fs = s.client("fs", &["--wait", "120"], &s.filesystem());
    let target = s.files().join("report.txt");
    fs.send(json!({
        "op": "call", "tool": "write_file",
        "args": { "path": target, "content": "approved words" }, "progress": true
    }));
    // The gateway reports the request as soon as it is made.
    let first = fs.next_progress();
    let id = request_id(first["message"].as_str().unwrap());
    assert!(!target.exists(), "nothing runs before the approval");
    let view = s.view(&server, &id);
    assert_eq!(view["status"], "pending");
    assert_eq!(view["request"]["context"]["requester"]["id"], "claude");
    assert_eq!(view["request"]["context"]["on_behalf_of"]["id"], "dana");
    s.approve(&server, &id);
    let done = fs.answer();
    assert_eq!(done["is_error"], false, "{done}");
    assert!(text_of(&done).contains("Successfully wrote"), "{done}");
    fs.close();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "approved words");
    let view = s.view(&server, &id);
    assert_eq!(view["execution"]["execution"], "finished", "{view}");
    // Started once and finished once, under this request.
    let audit = s.audit();
    let under: Vec<&str> = audit
        .iter()
        .filter(|r| r["request_id"] == id.as_str())
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        under.iter().filter(|k| **k == "started").count(),
        1,
        "{under:?}"
    );
    assert_eq!(
        under.iter().filter(|k| **k == "finished").count(),
        1,
        "{under:?}"
    );
    s.verify_audit();
}

#[test]
fn an_expired_request_never_reaches_the_server() {
    let Some(s) = setup() else { return };
    let mut fs = s.client("fs", &["--wait", "60"], &s.filesystem());
    let target = s.files().join("new-dir");
    let expired = fs.call("create_directory", json!({ "path": target }));
    assert_eq!(expired["is_error"], true, "{expired}");
    assert!(text_of(&expired).contains("expired"), "{expired}");
    fs.close();
    assert!(!target.exists());
    s.verify_audit();
}

#[test]
fn a_client_that_leaves_while_waiting_re_attaches_and_runs_once_approved() {
    let Some(s) = setup() else { return };
    let server = s.serve();
    let target = s.files().join("later.txt");
    let args = json!({ "path": target, "content": "once" });
    let mut fs = s.client("fs", &["--wait", "1"], &s.filesystem());
    let waiting = fs.call("write_file", args.clone());
    assert_eq!(waiting["is_error"], true, "{waiting}");
    let text = text_of(&waiting);
    assert!(
        text.starts_with("Not run yet: this call needs approval"),
        "{text}"
    );
    assert!(
        text.contains("https://approvals.example.com/console/requests/"),
        "{text}"
    );
    let id = request_id(&text);
    fs.close();
    assert_eq!(
        s.view(&server, &id)["status"],
        "pending",
        "the request outlives the client"
    );

    s.approve(&server, &id);
    let mut again = s.client("fs", &["--wait", "1"], &s.filesystem());
    let ran = again.call("write_file", args.clone());
    assert_eq!(ran["is_error"], false, "{ran}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "once");
    let written = std::fs::metadata(&target).unwrap().modified().unwrap();
    // The approval was good for one run: the same call now asks again, and waits.
    let third = again.call("write_file", args);
    assert_eq!(third["is_error"], true, "{third}");
    assert_ne!(request_id(&text_of(&third)), id);
    again.close();
    assert_eq!(
        std::fs::metadata(&target).unwrap().modified().unwrap(),
        written
    );
    let started = s.audit().iter().filter(|r| r["event"] == "started").count();
    assert_eq!(started, 1);
    s.verify_audit();
}

#[test]
fn an_upstream_that_crashes_hangs_or_babbles_gets_errors_and_the_gateway_stays_up() {
    let Some(s) = setup() else { return };
    let calls = s.dir.path().join("calls.log");
    let upstream = vec![
        "python3".to_owned(),
        repo()
            .join("tests/mcp/misbehaving_server.py")
            .display()
            .to_string(),
        calls.display().to_string(),
    ];
    let mut odd = s.client("odd", &["--upstream-timeout", "2"], &upstream);
    let crashed = odd.call("crash", json!({}));
    assert!(
        crashed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("went away before answering"),
        "{crashed}"
    );
    // The gateway is still up, and starts the upstream again.
    let ok = odd.call("ok", json!({}));
    assert_eq!(text_of(&ok), "ok", "{ok}");
    for tool in ["hang", "garbage"] {
        let silent = odd.call(tool, json!({}));
        assert!(
            silent["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did not answer within 2s"),
            "{tool}: {silent}"
        );
    }
    let ok = odd.call("ok", json!({}));
    assert_eq!(text_of(&ok), "ok", "{ok}");
    odd.close();
    // Each call reached the upstream once: nothing was sent twice.
    let seen: Vec<String> = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["tool"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(seen, ["crash", "ok", "hang", "garbage", "ok"]);
    let failed = s
        .audit()
        .iter()
        .filter(|r| r["event"] == "finished" && r["ok"] == false)
        .count();
    assert_eq!(failed, 3, "the failed calls are audited as failed");
}

#[test]
fn an_oversized_message_is_refused_with_an_error() {
    let Some(s) = setup() else { return };
    let mut fs = s.client("fs", &[], &s.filesystem());
    let target = s.files().join("big.txt");
    let big = "x".repeat(5 * 1024 * 1024);
    let refused = fs.call("write_file", json!({ "path": target, "content": big }));
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accepts at most 4194304 bytes a message"),
        "{}",
        refused.to_string().chars().take(400).collect::<String>()
    );
    // The session goes on.
    let listed = fs.ask(json!({ "op": "list_tools" }));
    assert!(listed.get("tools").is_some(), "{listed}");
    fs.close();
    assert!(!target.exists());
}

/// `approvals mcp --listen`: its address, from what it prints.
fn listen(s: &Setup) -> (Child, String) {
    let args = s.gateway("fs", &["--listen", "127.0.0.1:0"], &s.filesystem());
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the gateway exited"
        );
        if let Some(rest) = line.trim().split(" at ").nth(1) {
            break rest.to_owned();
        }
    };
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, url)
}

#[test]
fn over_http_a_client_presents_a_requester_token_that_names_its_person() {
    let Some(s) = setup() else { return };
    std::fs::write(s.files().join("notes.txt"), "over http").unwrap();
    let (mut gateway, url) = listen(&s);
    let mut c = Client::start(&["http".into(), url.clone(), s.agent_token.clone()]);
    let read = c.call(
        "read_text_file",
        json!({ "path": s.files().join("notes.txt") }),
    );
    assert_eq!(text_of(&read), "over http", "{read}");
    c.close();

    let refused = reqwest::blocking::Client::new()
        .post(&url)
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let reviewer = reqwest::blocking::Client::new()
        .post(&url)
        .bearer_auth(&s.alice)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .unwrap();
    assert_eq!(reviewer.status(), 403, "a reviewer's token makes no calls");
    let _ = gateway.kill();
    let _ = gateway.wait();

    // The call was made by the agent, for the person the token names.
    let audit = s.audit();
    let allowed = audit
        .iter()
        .find(|r| r["event"] == "allowed" && r["action"]["name"] == "fs.read_text_file")
        .unwrap();
    assert_eq!(allowed["actor"]["id"], "claude", "{allowed}");
}

#[test]
fn allowed_call_latency_through_the_gateway_against_the_same_call_made_directly() {
    let Some(s) = setup() else { return };
    let n = 200;
    let bench = |c: &mut Client| -> Vec<f64> {
        let r =
            c.ask(json!({ "op": "bench", "tool": "echo", "args": { "message": "hi" }, "n": n }));
        let mut t: Vec<f64> = r["seconds"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|v| v.as_f64().unwrap() * 1e6)
            .collect();
        t.sort_by(f64::total_cmp);
        t
    };
    let mut direct = Client::start(&[vec!["stdio".to_owned()], s.everything()].concat());
    let mut gated = s.client("everything", &[], &s.everything());
    // Alternate, so that both see the same machine.
    let (mut d, mut g) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        d.extend(bench(&mut direct));
        g.extend(bench(&mut gated));
    }
    d.sort_by(f64::total_cmp);
    g.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    eprintln!(
        "mcp echo, {} calls each: direct p50 {:.0} µs p99 {:.0} µs; through the gateway p50 {:.0} µs p99 {:.0} µs; added p50 {:.0} µs ({:.2}x)",
        d.len(),
        pct(&d, 0.5),
        pct(&d, 0.99),
        pct(&g, 0.5),
        pct(&g, 0.99),
        pct(&g, 0.5) - pct(&d, 0.5),
        pct(&g, 0.5) / pct(&d, 0.5)
    );
    direct.close();
    gated.close();
    // Every gated call was judged and its end audited.
    let finished = s
        .audit()
        .iter()
        .filter(|r| r["event"] == "finished" && r["action"]["name"] == "everything.echo")
        .count();
    assert_eq!(finished, 2 * n);
}

#[test]
fn a_streamable_http_upstream_is_reached_by_url() {
    let Some(s) = setup() else { return };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new(s.bin.join("mcp-server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the server starts").unwrap();
        if line.contains("listening on port") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let mut every = s.client_of_url("everything", &format!("http://127.0.0.1:{port}/mcp"));
    let sum = every.call("get-sum", json!({ "a": 20, "b": 22 }));
    assert_eq!(sum["is_error"], false, "{sum}");
    assert!(text_of(&sum).contains("42"), "{sum}");
    let env = every.call("get-env", json!({}));
    assert_eq!(env["is_error"], true, "{env}");
    every.close();
    let _ = server.kill();
    let _ = server.wait();
}

//! Restarts, kills and races across real processes, on SQLite and (when
//! `APPROVALS_TEST_POSTGRES_URL` is set) Postgres.
//!
//! This test binary is its own child: run with `APPROVALS_DURABILITY_CHILD` set, it plays
//! one agent process (see [`child`]) instead of running the scenarios. So it has its own
//! `main` (`harness = false`), and prints each scenario as libtest would.
//!
//! - A child gates a call and is killed with SIGKILL while it waits; another process
//!   approves; the restarted child re-attaches and runs the body once; the log verifies.
//! - A child whose body started is killed mid-body: the call is in doubt, and the identical
//!   call in a new process is refused, not run again.
//! - A waiting child is woken by an approval written by another process.
//! - 50 callers in 5 processes race on one approved request: one body run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use approvals::note::{NoteSigner, NoteVerifier};
use approvals::sql::{SqlAudit, SqlAuditOptions};
use approvals::{
    Action, ApprovalRequest, Approver, ApproverError, CallOptions, CodePolicy, Context, Decision,
    Delivery, Error, Factor, Gate, Principal, Requirement, Review, StaticDirectory,
};
use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const CHILD: &str = "APPROVALS_DURABILITY_CHILD";

/// Where the scenario's state lives: a database and the files beside it.
#[derive(Clone)]
struct Setup {
    /// `sqlite:PATH` or `postgres://...?schema=NAME`.
    db: String,
    key: PathBuf,
    runs: PathBuf,
}

impl Setup {
    fn env(&self, cmd: &mut Command) {
        cmd.env("APPROVALS_DURABILITY_DB", &self.db)
            .env("APPROVALS_DURABILITY_KEY", &self.key)
            .env("APPROVALS_DURABILITY_RUNS", &self.runs);
    }

    fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
        Self {
            db: var("APPROVALS_DURABILITY_DB"),
            key: var("APPROVALS_DURABILITY_KEY").into(),
            runs: var("APPROVALS_DURABILITY_RUNS").into(),
        }
    }

    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.runs)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The database the scenario runs on.
type Db = approvals::sql::Database;

async fn open(spec: &str) -> Db {
    Db::open(spec).await.unwrap()
}

async fn audit(db: &Db, signer: NoteSigner) -> SqlAudit {
    let options = SqlAuditOptions::new("durability-test/audit", signer);
    db.audit(options).await.unwrap()
}

/// Prints `pending <id>` when a request is made: the parent reads it from the child's
/// stdout, so it knows the request exists without polling.
struct Stdout;

#[async_trait]
impl Approver for Stdout {
    fn name(&self) -> &str {
        "stdout"
    }

    async fn notify(&self, request: &ApprovalRequest, _: &Gate) -> Result<Delivery, ApproverError> {
        println!("pending {}", request.id);
        Ok(Delivery {
            channel: "stdout".into(),
            id: request.id.to_string(),
            data: serde_json::Value::Null,
        })
    }
}

async fn gate(setup: &Setup) -> (Gate, Db) {
    let db = open(&setup.db).await;
    let signer = approvals::file::load_signer(&setup.key).unwrap();
    let audit = audit(&db, signer).await;
    let gate = Gate::builder()
        .policy(
            CodePolicy::new().require(
                "export",
                Requirement::new("one-data-owner")
                    .factor(Factor::group("data-owners", 1))
                    .expires_in(Duration::from_secs(3600)),
            ),
        )
        .directory(StaticDirectory::new().group("data-owners", ["alice", "bob"]))
        .store_arc(db.store())
        .audit(audit)
        .approver(Stdout)
        .build()
        .unwrap();
    (gate, db)
}

fn export_call() -> (Action, Context) {
    let action = Action::builder("export_customers", "export")
        .arg("limit", &5000)
        .build()
        .unwrap();
    (action, Context::new(Principal::agent("ops-bot")))
}

/// The gated body: appends one line to the runs file (O_APPEND: one line per run, whichever
/// process runs it).
fn run_body(setup: &Setup, what: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&setup.runs)
        .unwrap();
    writeln!(f, "{what} by pid {}", std::process::id()).unwrap();
    f.sync_all().unwrap();
}

/// One agent process. Roles:
/// - `wait`: makes the call, waits for the decision, runs the body, prints `ran`.
/// - `hang`: like `wait`, but prints `in body` once the body has started and never ends it.
/// - `race`: prints `ready`, waits for `go` on stdin, makes the call from 10 tasks at once
///   (deferred: none waits), prints `ran=N already=M pending=P`.
async fn child(role: &str) {
    let setup = Setup::from_env();
    let (gate, _db) = gate(&setup).await;
    match role {
        "wait" | "hang" => {
            let (action, context) = export_call();
            match gate
                .authorize(action, context, CallOptions::default())
                .await
            {
                Ok(permit) => {
                    run_body(&setup, "export");
                    if role == "hang" {
                        println!("in body");
                        std::future::pending::<()>().await;
                    }
                    permit.finish(Ok(())).await;
                    println!("ran");
                }
                Err(Error::AlreadyRan { request_id }) => println!("already-ran {request_id}"),
                Err(e) => println!("error {e}"),
            }
        }
        "race" => {
            println!("ready");
            let mut stdin = BufReader::new(tokio::io::stdin()).lines();
            assert_eq!(stdin.next_line().await.unwrap().as_deref(), Some("go"));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..10 {
                let (gate, setup) = (gate.clone(), setup.clone());
                tasks.spawn(async move {
                    let (action, context) = export_call();
                    let options = CallOptions {
                        defer: true,
                        ..CallOptions::default()
                    };
                    match gate.authorize(action, context, options).await {
                        Ok(permit) => {
                            run_body(&setup, "export");
                            permit.finish(Ok(())).await;
                            "ran"
                        }
                        Err(Error::AlreadyRan { .. }) => "already",
                        Err(Error::Pending { .. }) => "pending",
                        Err(e) => panic!("unexpected {e}"),
                    }
                });
            }
            let (mut ran, mut already, mut pending) = (0, 0, 0);
            while let Some(r) = tasks.join_next().await {
                match r.unwrap() {
                    "ran" => ran += 1,
                    "already" => already += 1,
                    _ => pending += 1,
                }
            }
            println!("ran={ran} already={already} pending={pending}");
        }
        other => panic!("unknown child role {other}"),
    }
    gate.shutdown().await.unwrap();
}

/// A running child process with its stdout as lines.
struct Proc {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn spawn(setup: &Setup, role: &str) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        setup.env(&mut cmd);
        cmd.env(CHILD, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, out }
    }

    async fn line(&mut self) -> String {
        self.out
            .next_line()
            .await
            .unwrap()
            .expect("the child ended without saying more")
    }

    async fn kill(mut self) {
        // SIGKILL: no destructor, no flush, no shutdown runs in the child.
        self.child.kill().await.unwrap();
    }

    async fn exits_ok(mut self) {
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "the child failed: {status}");
    }
}

fn verifier(setup: &Setup) -> NoteVerifier {
    approvals::file::load_signer(&setup.key).unwrap().verifier()
}

/// Approves request `id` as alice, from this (the parent) process.
async fn approve(gate: &Gate, id: &str) -> ApprovalRequest {
    let request = gate.request(id.parse().unwrap()).await.unwrap().unwrap();
    let review = Review::approve(
        &request,
        Principal::human("alice"),
        approvals::Timestamp::now(),
    );
    gate.submit_review(review).await.unwrap()
}

async fn event_names(db: &Db, setup: &Setup) -> Vec<String> {
    let log = db.export_audit().await.unwrap();
    approvals::verify::verify_log(log.jsonl().as_bytes(), &log.checkpoints, &verifier(setup))
        .expect("the audit log verifies");
    log.records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            v["event"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn killed_while_pending_then_approved_runs_once(setup: Setup) {
    let first = {
        let mut p = Proc::spawn(&setup, "wait");
        let line = p.line().await;
        let id = line.strip_prefix("pending ").unwrap().to_owned();
        p.kill().await;
        id
    };
    let (gate, db) = gate(&setup).await;
    let approved = approve(&gate, &first).await;
    assert!(matches!(
        approved.decision(),
        Some(Decision::Approved { .. })
    ));
    assert!(setup.runs().is_empty(), "nothing ran before the restart");

    let mut again = Proc::spawn(&setup, "wait");
    assert_eq!(
        again.line().await,
        "ran",
        "the restarted call runs once approved"
    );
    again.exits_ok().await;
    assert_eq!(setup.runs().len(), 1, "the body ran exactly once");

    gate.shutdown().await.unwrap();
    let mut names = event_names(&db, &setup).await;
    // The child printed `pending` from inside its channel's notify, before the gate
    // recorded the delivery: killed at once, it may not have recorded it.
    let notified = names.iter().filter(|n| *n == "notified").count();
    assert!(notified <= 1);
    names.retain(|n| n != "notified");
    let expected = [
        "requested",
        "review_accepted",
        "decided",
        "attached",
        "started",
        "finished",
    ];
    assert_eq!(names, expected, "the whole story is in the log, once");
}

async fn killed_mid_body_is_in_doubt_and_not_run_again(setup: Setup) {
    let mut first = Proc::spawn(&setup, "hang");
    let id = first
        .line()
        .await
        .strip_prefix("pending ")
        .unwrap()
        .to_owned();
    let (gate, db) = gate(&setup).await;
    approve(&gate, &id).await;
    assert_eq!(first.line().await, "in body");
    first.kill().await;
    let stored = gate.request(id.parse().unwrap()).await.unwrap().unwrap();
    assert!(
        matches!(stored.execution, approvals::Execution::Started { .. }),
        "started, never finished: in doubt"
    );

    let mut again = Proc::spawn(&setup, "wait");
    assert_eq!(again.line().await, format!("already-ran {id}"));
    again.exits_ok().await;
    assert_eq!(setup.runs().len(), 1, "an in-doubt call is not run again");
    let names = event_names(&db, &setup).await;
    assert_eq!(names.iter().filter(|n| *n == "started").count(), 1);
    assert_eq!(names.iter().filter(|n| *n == "finished").count(), 0);

    // An operator who checked the effect settles it; the identical call then asks anew.
    let oncall = Principal::human("oncall");
    let settled = gate.settle_in_doubt(
        id.parse().unwrap(),
        oncall.clone(),
        Err("the export never reached s3".into()),
    );
    assert!(settled.await.unwrap());
    assert!(
        !gate
            .settle_in_doubt(id.parse().unwrap(), oncall, Ok(()))
            .await
            .unwrap(),
        "once"
    );
    let mut fresh = Proc::spawn(&setup, "wait");
    let line = fresh.line().await;
    let new_id = line.strip_prefix("pending ").expect("a new request");
    assert_ne!(new_id, id);
    fresh.kill().await;
    gate.shutdown().await.unwrap();
    let names = event_names(&db, &setup).await;
    assert_eq!(names.iter().filter(|n| *n == "finished").count(), 1);
}

async fn an_approval_from_another_process_wakes_the_waiter(setup: Setup) -> Duration {
    let mut waiting = Proc::spawn(&setup, "wait");
    let id = waiting
        .line()
        .await
        .strip_prefix("pending ")
        .unwrap()
        .to_owned();
    let (gate, _db) = gate(&setup).await;
    let t = Instant::now();
    approve(&gate, &id).await;
    assert_eq!(waiting.line().await, "ran");
    let woke = t.elapsed();
    waiting.exits_ok().await;
    gate.shutdown().await.unwrap();
    assert!(woke < Duration::from_secs(5), "woke after {woke:?}");
    woke
}

async fn fifty_callers_in_five_processes_run_one_body(setup: Setup) {
    let (gate, db) = gate(&setup).await;
    let (action, context) = export_call();
    let deferred = CallOptions {
        defer: true,
        ..CallOptions::default()
    };
    let id = match gate.authorize(action, context, deferred).await {
        Err(Error::Pending { request_id }) => request_id,
        other => panic!("expected a pending request, got {other:?}"),
    };
    approve(&gate, &id.to_string()).await;
    let mut procs: Vec<Proc> = (0..5).map(|_| Proc::spawn(&setup, "race")).collect();
    for p in &mut procs {
        assert_eq!(p.line().await, "ready");
    }
    for p in &mut procs {
        let stdin = p.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
    let (mut ran, mut already, mut pending) = (0, 0, 0);
    for mut p in procs {
        let mut line = p.line().await;
        // A late racer that asked anew announced its new request first.
        while line.starts_with("pending ") {
            line = p.line().await;
        }
        let counts: Vec<u32> = line
            .split(' ')
            .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        ran += counts[0];
        already += counts[1];
        pending += counts[2];
        p.exits_ok().await;
    }
    assert_eq!(ran + already + pending, 50);
    assert_eq!(ran, 1, "one body run for one approval");
    assert_eq!(setup.runs().len(), 1);
    // Callers that came after the run finished asked anew (deferred): none ran.
    let open = db.store().list_open().await.unwrap();
    assert!(open.iter().all(|r| r.id != id));
    assert!(open.len() <= 1, "late callers share one new request");
    gate.shutdown().await.unwrap();
    event_names(&db, &setup).await;
}

/// A fresh setup in `dir` on `db`.
fn setup(dir: &Path, db: String) -> Setup {
    let key = dir.join("audit.key");
    approvals::file::write_new_signer(&key, "durability-test").unwrap();
    Setup {
        db,
        key,
        runs: dir.join("runs.txt"),
    }
}

type Scenario = fn(Setup) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("killed_while_pending_then_approved_runs_once", |s| {
            Box::pin(killed_while_pending_then_approved_runs_once(s))
        }),
        ("killed_mid_body_is_in_doubt_and_not_run_again", |s| {
            Box::pin(killed_mid_body_is_in_doubt_and_not_run_again(s))
        }),
        ("an_approval_from_another_process_wakes_the_waiter", |s| {
            Box::pin(async move {
                let woke = an_approval_from_another_process_wakes_the_waiter(s).await;
                println!("    (woken {woke:?} after the approval was written)");
            })
        }),
        ("fifty_callers_in_five_processes_run_one_body", |s| {
            Box::pin(fifty_callers_in_five_processes_run_one_body(s))
        }),
    ]
}

/// A Postgres schema of the scenario's own, dropped afterwards.
#[cfg(feature = "postgres")]
async fn with_schema(url: &str, run: impl std::future::Future<Output = ()>, schema: &str) {
    use sqlx::{ConnectOptions, Executor};
    run.await;
    let mut conn = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
        .await
        .unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(role) = std::env::var(CHILD) {
        rt.block_on(child(&role));
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let mut passed = 0;
    let postgres = std::env::var("APPROVALS_TEST_POSTGRES_URL").ok();
    println!();
    for (name, scenario) in scenarios() {
        let sqlite_name = format!("sqlite::{name}");
        if wanted(&sqlite_name) {
            let dir = tempfile::tempdir().unwrap();
            let s = setup(
                dir.path(),
                format!("sqlite:{}", dir.path().join("approvals.db").display()),
            );
            println!("test {sqlite_name} ...");
            rt.block_on(scenario(s));
            println!("test {sqlite_name} ... ok");
            passed += 1;
        }
        let pg_name = format!("postgres::{name}");
        if !wanted(&pg_name) {
            continue;
        }
        match &postgres {
            #[cfg(feature = "postgres")]
            Some(url) => {
                let dir = tempfile::tempdir().unwrap();
                let schema = format!("d_{}", approvals::RequestId::generate()).to_lowercase();
                let sep = if url.contains('?') { '&' } else { '?' };
                let s = setup(dir.path(), format!("{url}{sep}schema={schema}"));
                println!("test {pg_name} ...");
                rt.block_on(with_schema(url, scenario(s), &schema));
                println!("test {pg_name} ... ok");
                passed += 1;
            }
            #[cfg(not(feature = "postgres"))]
            Some(_) => println!("test {pg_name} ... skipped: built without the postgres feature"),
            None => println!("test {pg_name} ... skipped: APPROVALS_TEST_POSTGRES_URL is not set"),
        }
    }
    println!("\ntest result: ok. {passed} passed (durability scenarios, each in real processes)");
}

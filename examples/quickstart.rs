//! The main job: an agent, "ops-bot", acting for "dana", calls three gated functions, judged
//! by the policy file `examples/approvals.toml`:
//!
//! - `read_dashboard` is allowed outright by policy;
//! - `export_customers` needs one approval from the group `data-owners` (alice, bob, dana);
//!   the request waits two minutes for you at the terminal (10 seconds in scripted runs);
//! - `drop_table` is denied by policy.
//!
//! ```text
//! cargo run --example quickstart                      # you approve or deny at the terminal, as alice
//! cargo run --example quickstart -- --reviewer dana    # as dana: refused, she is who ops-bot acts for
//! cargo run --example quickstart -- --approve-as alice
//! cargo run --example quickstart -- --approve-as dana # refused: dana is who ops-bot acts for
//! cargo run --example quickstart -- --deny-as bob
//! cargo run --example quickstart -- --approve-as alice --audit-dir /tmp/q
//! cargo run --example quickstart -- --policy my-approvals.toml
//! cargo run --example quickstart -- --db sqlite:/tmp/q.db   # or postgres://..., or memory
//! cargo run -p approvals-cli -- audit verify /tmp/q/audit.jsonl --vkey /tmp/q/audit.vkey
//! ```
//! Requests and the signed audit log go to an SQLite file (the embedded default: no server)
//! in a new temporary directory unless `--db` names another; `--audit-dir` writes the audit
//! log as JSONL files instead. The program ends by printing how to verify the log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::file::{FileAudit, FileAuditOptions, load_signer, write_new_signer};
use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::mock::MockApprover;
use approvals::note::NoteSigner;
use approvals::policy::FilePolicy;
use approvals::sql::{Database, SqlAuditOptions};
use approvals::terminal::TerminalApprover;
use approvals::{AuditRecord, AuditSink, Context, Gate, Principal, requires_approval, scope};

/// How long a request may wait in a scripted run (`--approve-as`, `--deny-as`).
const SCRIPTED_EXPIRY: std::time::Duration = std::time::Duration::from_secs(10);

static RUNS: [AtomicUsize; 3] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

#[requires_approval(policy = "read-dashboard")]
async fn read_dashboard(name: &str) -> Result<String, approvals::Error> {
    RUNS[0].fetch_add(1, Ordering::SeqCst);
    Ok(format!("dashboard {name}: 1,204 active customers"))
}

#[requires_approval(policy = "export-customers")]
async fn export_customers(limit: u32) -> Result<String, approvals::Error> {
    RUNS[1].fetch_add(1, Ordering::SeqCst);
    Ok(format!(
        "exported {limit} customer rows to s3://reports/churn.csv"
    ))
}

#[requires_approval(policy = "drop-table")]
async fn drop_table(name: &str) -> Result<String, approvals::Error> {
    RUNS[2].fetch_add(1, Ordering::SeqCst);
    Ok(format!("dropped table {name}"))
}

enum Mode {
    Interactive,
    Approve(String),
    Deny(String),
}

struct Args {
    mode: Mode,
    /// Who reviews at the terminal (a person of the policy file).
    reviewer: String,
    policy: PathBuf,
    audit_dir: Option<PathBuf>,
    /// `sqlite:PATH`, `postgres://...`, or `memory`; `None`: a new SQLite file.
    db: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mode: Mode::Interactive,
        reviewer: "alice".into(),
        policy: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/approvals.toml"
        )),
        audit_dir: None,
        db: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut value = |flag: &str| argv.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--approve-as" => args.mode = Mode::Approve(value("--approve-as")?),
            "--deny-as" => args.mode = Mode::Deny(value("--deny-as")?),
            "--reviewer" => args.reviewer = value("--reviewer")?,
            "--policy" => args.policy = PathBuf::from(value("--policy")?),
            "--audit-dir" => args.audit_dir = Some(PathBuf::from(value("--audit-dir")?)),
            "--db" => args.db = Some(value("--db")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

/// The signing key in `dir` (`audit.key`, created once, mode 0600), with its verifier key
/// written beside it (`audit.vkey`).
fn signer_in(dir: &Path) -> Result<NoteSigner, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = dir.join("audit.key");
    let signer = if key.exists() {
        load_signer(&key)
    } else {
        write_new_signer(&key, "approvals-quickstart")
    }
    .map_err(|e| e.to_string())?;
    let vkey = dir.join("audit.vkey");
    std::fs::write(&vkey, signer.verifier().to_vkey() + "\n")
        .map_err(|e| format!("{}: {e}", vkey.display()))?;
    Ok(signer)
}

/// A signed JSONL audit log in `dir`: `audit.jsonl`, its checkpoints and the keys.
fn file_audit(dir: &Path) -> Result<FileAudit, String> {
    let options = FileAuditOptions::new("approvals-quickstart/audit", signer_in(dir)?);
    FileAudit::open(dir.join("audit.jsonl"), options).map_err(|e| e.to_string())
}

/// Where requests (and, without `--audit-dir`, the audit log) are kept.
struct Storage {
    /// The database and its URL; `None` for memory.
    db: Option<(Database, String)>,
    /// Where the signing and verifier keys are.
    keys: PathBuf,
}

async fn storage(args: &Args) -> Result<Storage, String> {
    let fresh = || -> Result<PathBuf, String> {
        let dir = std::env::temp_dir().join(format!("approvals-quickstart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    };
    let (url, keys) = match args.db.as_deref() {
        Some("memory") => {
            return Ok(Storage {
                db: None,
                keys: PathBuf::new(),
            });
        }
        Some(url) => {
            // Keys beside an SQLite file; elsewhere in a new temporary directory.
            let keys = match url.strip_prefix("sqlite:") {
                Some(path) => Path::new(path)
                    .parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_owned),
                None => fresh()?,
            };
            (url.to_owned(), keys)
        }
        None => {
            let dir = fresh()?;
            (
                format!("sqlite:{}", dir.join("approvals.db").display()),
                dir,
            )
        }
    };
    let db = Database::open(&url).await.map_err(|e| e.to_string())?;
    Ok(Storage {
        db: Some((db, url)),
        keys,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) if msg.is_empty() => {
            eprintln!(
                "usage: quickstart [--reviewer NAME | --approve-as NAME | --deny-as NAME] [--policy FILE] [--db sqlite:PATH|postgres://...|memory] [--audit-dir DIR]"
            );
            ExitCode::from(2)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    // A broken policy file stops the program here, with every error and its line.
    let policy = FilePolicy::load(&args.policy).map_err(|e| e.to_string())?;
    let memory = Arc::new(MemoryAudit::new());
    let storage = storage(&args).await?;
    let file = args.audit_dir.as_deref().map(file_audit).transpose()?;
    let sql = match (&storage.db, &file) {
        (Some((db, _)), None) => {
            let options =
                SqlAuditOptions::new("approvals-quickstart/audit", signer_in(&storage.keys)?);
            Some(db.audit(options).await.map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    // This run's records start after whatever an earlier run left in the same database.
    let first_record = match &storage.db {
        Some((db, _)) if sql.is_some() => db
            .export_audit()
            .await
            .map_err(|e| e.to_string())?
            .records
            .len(),
        _ => 0,
    };
    let sink: Arc<dyn AuditSink> = match (&file, &sql) {
        (Some(f), _) => Arc::new(f.clone()),
        (None, Some(s)) => Arc::new(s.clone()),
        (None, None) => memory.clone(),
    };
    let store: Arc<dyn approvals::Store> = match &storage.db {
        Some((db, _)) => db.store(),
        None => Arc::new(MemoryStore::new()),
    };
    let expires = export_expiry(&policy);
    let policy_version = policy.current().version().to_owned();
    let builder = Gate::builder()
        .directory(policy.directory())
        .policy(policy)
        .store_arc(store)
        .audit_arc(sink);
    // Scripted runs do not wait two minutes for a request nobody will decide.
    let scripted = SCRIPTED_EXPIRY;
    let builder = match &args.mode {
        Mode::Interactive => builder.approver(TerminalApprover::new().reviewer(&args.reviewer)),
        Mode::Approve(who) => builder
            .approver(MockApprover::auto_approve(who).named("cli"))
            .max_expiry(scripted),
        Mode::Deny(who) => builder
            .approver(MockApprover::auto_deny(who, "not before the quarterly review").named("cli"))
            .max_expiry(scripted),
    };
    let gate = builder.build().map_err(|e| e.to_string())?;

    let agent = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .trigger("chat message from dana: \"send me this week's churn list\"")
        .reason("weekly churn report");
    println!("approvals quickstart: agent ops-bot acting for dana");
    println!(
        "policy: {} (version {})",
        args.policy.display(),
        &policy_version[..12]
    );
    match &storage.db {
        Some((_, url)) => println!("requests kept in {url}\n"),
        None => println!("requests kept in memory\n"),
    }
    match args.mode {
        Mode::Interactive => println!(
            "(you review at this terminal as {}; `--reviewer NAME` picks another person of the policy file; the request waits {expires})\n",
            args.reviewer
        ),
        _ => println!(
            "(scripted: requests wait at most {})\n",
            approvals::clock::human(scripted)
        ),
    }

    let calls = async {
        report("read_dashboard(\"churn\")", read_dashboard("churn").await);
        println!("export_customers(limit: 500)   waiting for 1 approval from data-owners ...");
        report("export_customers(limit: 500)", export_customers(500).await);
        report("drop_table(\"customers\")", drop_table("customers").await);
    };
    scope::with_gate(gate.clone(), scope::with_context(agent, calls)).await;

    // Graceful shutdown signs the final checkpoint of a file log.
    gate.shutdown().await.map_err(|e| e.to_string())?;
    let (records, kept_in) = match (&file, &storage.db) {
        (Some(f), _) => {
            let bytes = std::fs::read(f.path()).map_err(|e| e.to_string())?;
            let records = approvals::verify::read_records(&bytes)
                .map_err(|e| e.to_string())?
                .0;
            (records, Some(f.path().display().to_string()))
        }
        (None, Some((db, url))) => {
            let log = db.export_audit().await.map_err(|e| e.to_string())?;
            let records = log.records[first_record..]
                .iter()
                .map(|r| serde_json::from_str(r).map_err(|e| e.to_string()))
                .collect::<Result<Vec<AuditRecord>, String>>()?;
            (records, Some(url.clone()))
        }
        (None, None) => (memory.records(), None),
    };
    print_trail(&records, kept_in.as_deref());
    println!(
        "\nbodies run: read_dashboard={} export_customers={} drop_table={}",
        RUNS[0].load(Ordering::SeqCst),
        RUNS[1].load(Ordering::SeqCst),
        RUNS[2].load(Ordering::SeqCst)
    );
    if let (None, Some((_, url))) = (&file, &storage.db) {
        println!(
            "verify the log: cargo run -p approvals-cli -- audit verify --db {url} --vkey {}",
            storage.keys.join("audit.vkey").display()
        );
    }
    if let Some((db, _)) = &storage.db {
        db.close().await;
    }
    Ok(())
}

/// How long the export request waits, as the policy file says (for the prompt).
fn export_expiry(policy: &FilePolicy) -> String {
    let set = policy.current();
    let rule = set.policy("export-customers").and_then(|p| {
        p.rules.iter().rev().find_map(|r| match &r.outcome {
            approvals::policy::Outcome::Require(req) => Some(req.expires_in),
            _ => None,
        })
    });
    rule.map_or_else(|| "?".into(), approvals::clock::human)
}

fn report(call: &str, result: Result<String, approvals::Error>) {
    match result {
        Ok(out) => println!("{call:<30} ran: {out}"),
        Err(e) => println!("{call:<30} NOT RUN: {e}"),
    }
}

fn print_trail(records: &[AuditRecord], kept_in: Option<&str>) {
    match kept_in {
        Some(p) => println!("\naudit trail ({} records in {p}):", records.len()),
        None => println!("\naudit trail ({} records):", records.len()),
    }
    for r in records {
        let e = &r.event;
        let who = e
            .actor
            .as_ref()
            .map_or_else(|| "gate".to_owned(), ToString::to_string);
        let what = e.kind.summary();
        let action = e.action.name.rsplit("::").next().unwrap_or(&e.action.name);
        println!(
            "  {:>2}  {}  {:<16} {:<17} {:<15} {}",
            r.seq,
            e.at,
            e.name(),
            action,
            who,
            what
        );
    }
}

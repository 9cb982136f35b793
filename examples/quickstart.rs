//! The main job: an agent, "ops-bot", acting for "dana", calls three gated functions.
//!
//! - `read_dashboard` is allowed outright by policy;
//! - `export_customers` needs one approval from the group `data-owners` (alice, bob, dana),
//!   and the request expires after 10 seconds;
//! - `drop_table` is denied by policy.
//!
//! ```text
//! cargo run --example quickstart                      # you approve or deny at the terminal
//! cargo run --example quickstart -- --approve-as alice
//! cargo run --example quickstart -- --approve-as dana # refused: dana is who ops-bot acts for
//! cargo run --example quickstart -- --deny-as bob
//! ```
//! Everything runs in memory: no server, no files.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::mock::MockApprover;
use approvals::terminal::TerminalApprover;
use approvals::{
    CodePolicy, Context, EventKind, Factor, Gate, Principal, Requirement, StaticDirectory,
    requires_approval, scope,
};

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

fn parse_args() -> Result<(Mode, Duration), String> {
    let mut mode = Mode::Interactive;
    let mut expires = Duration::from_secs(10);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--approve-as" => mode = Mode::Approve(value("--approve-as")?),
            "--deny-as" => mode = Mode::Deny(value("--deny-as")?),
            "--expires-in" => {
                let secs: u64 = value("--expires-in")?
                    .parse()
                    .map_err(|_| "--expires-in takes whole seconds".to_owned())?;
                expires = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((mode, expires))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (mode, expires) = match parse_args() {
        Ok(m) => m,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            eprintln!("usage: quickstart [--approve-as NAME | --deny-as NAME] [--expires-in SECS]");
            return ExitCode::from(2);
        }
    };

    let policy = CodePolicy::new()
        .allow("read-dashboard")
        .require(
            "export-customers",
            Requirement::new("exports-need-a-data-owner")
                .factor(Factor::group("data-owners", 1))
                .expires_in(expires),
        )
        .deny("drop-table", "agents never drop tables");
    let audit = Arc::new(MemoryAudit::new());
    let builder = Gate::builder()
        .policy(policy)
        .directory(StaticDirectory::new().group("data-owners", ["alice", "bob", "dana"]))
        .store(MemoryStore::new())
        .audit(audit.clone());
    let builder = match &mode {
        Mode::Interactive => builder.approver(TerminalApprover::new()),
        Mode::Approve(who) => builder.approver(MockApprover::auto_approve(who).named("cli")),
        Mode::Deny(who) => builder
            .approver(MockApprover::auto_deny(who, "not before the quarterly review").named("cli")),
    };
    let gate = match builder.build() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let agent = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .trigger("chat message from dana: \"send me this week's churn list\"")
        .reason("weekly churn report");
    println!("approvals quickstart: agent ops-bot acting for dana\n");
    if let Mode::Interactive = mode {
        println!("(you review at this terminal as $USER; the request expires in {expires:?})");
    }

    scope::with_gate(
        gate,
        scope::with_context(agent, async {
            report("read_dashboard(\"churn\")", read_dashboard("churn").await);
            println!("export_customers(limit: 500)   waiting for 1 approval from data-owners ...");
            report("export_customers(limit: 500)", export_customers(500).await);
            report("drop_table(\"customers\")", drop_table("customers").await);
        }),
    )
    .await;

    println!("\naudit trail ({} records):", audit.records().len());
    for r in audit.records() {
        let e = &r.event;
        let who = e
            .actor
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "gate".into());
        let what = match &e.kind {
            EventKind::Allowed { rule } => format!("rule {rule}"),
            EventKind::PolicyDenied { rule, reason } => format!("rule {rule}: {reason}"),
            EventKind::Requested { requirement, .. } => format!(
                "needs {} (rule {})",
                requirement
                    .factors
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(" and "),
                requirement.rule
            ),
            EventKind::Notified { channel, .. } => format!("on {channel}"),
            EventKind::ReviewAccepted { review } => format!("{:?}", review.decision).to_lowercase(),
            EventKind::ReviewRefused { refusal, .. } => format!("refused: {refusal}"),
            EventKind::Decided { decision } => decision.to_string(),
            EventKind::Finished { ok, error } => match error {
                Some(err) => format!("ok={ok} {err}"),
                None => format!("ok={ok}"),
            },
            _ => String::new(),
        };
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
    println!(
        "\nbodies run: read_dashboard={} export_customers={} drop_table={}",
        RUNS[0].load(Ordering::SeqCst),
        RUNS[1].load(Ordering::SeqCst),
        RUNS[2].load(Ordering::SeqCst)
    );
    ExitCode::SUCCESS
}

fn report(call: &str, result: Result<String, approvals::Error>) {
    match result {
        Ok(out) => println!("{call:<30} ran: {out}"),
        Err(e) => println!("{call:<30} NOT RUN: {e}"),
    }
}

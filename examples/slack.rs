//! Approvals in Slack: an agent's call waits until a data owner approves it in Slack.
//!
//! ```text
//! export SLACK_BOT_TOKEN=xoxb-...  SLACK_SIGNING_SECRET=...  SLACK_CHANNEL=C...
//! export SLACK_APP_TOKEN=xapp-...           # optional: Socket Mode, no public URL needed
//! cargo run --example slack --features slack -- [--policy FILE] [--listen 127.0.0.1:3000]
//! ```
//!
//! Without Socket Mode, point the app's interactivity request URL (see
//! `docs/slack-app-manifest.yml`) at `https://<your host>/slack/interactions`, proxied to
//! `--listen`. The reviewers' Slack user ids come from the policy file's `[[people]]`
//! (`slack = "U..."`). See `docs/slack.md`.

use std::process::ExitCode;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::policy::FilePolicy;
use approvals::slack::{
    SigningSecret, SlackApprover, SlackClient, SlackInteractions, SlackSocketMode,
};
use approvals::{Action, CallOptions, Context, Gate, Principal};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name} (see docs/slack.md)"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let mut policy_file =
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/approvals.toml").to_owned();
    let mut listen = "127.0.0.1:3000".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--policy" => policy_file = args.next().ok_or("--policy needs a file")?,
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let client = SlackClient::new(env("SLACK_BOT_TOKEN")?);
    let secret = SigningSecret::new(env("SLACK_SIGNING_SECRET")?);
    let channel = env("SLACK_CHANNEL")?;
    // Opt in to matching Slack accounts to people by email (see docs/slack.md).
    let by_email = std::env::var("SLACK_MATCH_USERS_BY_EMAIL").is_ok_and(|v| v == "1");
    let policy = FilePolicy::load(&policy_file).map_err(|e| e.to_string())?;
    let gate = Gate::builder()
        .directory(policy.directory())
        .policy(policy)
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .approver(
            SlackApprover::new(client.clone())
                .channel(channel)
                .direct_messages(true)
                .find_reviewers_by_email(by_email),
        )
        .skip_policy_check()
        .build()
        .map_err(|e| e.to_string())?;
    let interactions =
        SlackInteractions::new(gate.clone(), secret, client).match_users_by_email(by_email);
    match std::env::var("SLACK_APP_TOKEN") {
        Ok(app_token) => {
            println!("clicks arrive over Socket Mode");
            tokio::spawn(SlackSocketMode::new(interactions, SlackClient::new(app_token)).run());
        }
        Err(_) => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("{listen}: {e}"))?;
            println!("clicks arrive at http://{listen}/slack/interactions");
            tokio::spawn(async move { axum::serve(listener, interactions.router()).await });
        }
    }

    let action = Action::builder("export_customers", "export-customers")
        .arg("limit", &5000)
        .build()
        .map_err(|e| e.to_string())?;
    let context = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .reason("weekly churn report");
    println!("export_customers(limit: 5000): waiting for approval in Slack ...");
    match gate
        .authorize(action, context, CallOptions::default())
        .await
    {
        Ok(permit) => {
            println!("approved: exporting");
            permit.finish(Ok(())).await;
        }
        Err(e) => println!("not run: {e}"),
    }
    Ok(())
}

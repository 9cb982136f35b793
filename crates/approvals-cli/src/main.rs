//! `approvals`: verify and prove the audit trail, check and explain policy files, manage
//! signing keys.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod output;
mod policy;
mod review;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Action-level approvals: audit trail and policy tools.
#[derive(Parser)]
#[command(name = "approvals", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a checkpoint signing key; write it (mode 0600) and print the verifier key.
    Keygen {
        /// The key's name, usually the log's origin host (e.g. audit.example.com).
        #[arg(long)]
        name: String,
        /// Where to write the private key. Refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
        /// Also write the verifier key to this file.
        #[arg(long)]
        vkey_out: Option<PathBuf>,
    },
    /// Work with an audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Check a policy file, or explain how it judges a call.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Serve the API, the console and the configured channels' endpoints.
    Serve {
        /// The policy file; its `[server]` table configures tokens, Slack and webhooks.
        #[arg(long)]
        config: PathBuf,
        /// The shared database: sqlite:PATH or postgres://...
        #[arg(long)]
        db: String,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The audit log's checkpoint signing key (from `approvals keygen`).
        #[arg(long)]
        audit_key: PathBuf,
    },
    /// Make a reviewer token: prints the token once, and the line for `[server]`.
    Token {
        /// Whose token it is (a principal id from the policy file).
        #[arg(long)]
        principal: String,
    },
    /// List pending requests.
    Pending {
        #[command(flatten)]
        target: review::Target,
    },
    /// Show one request.
    Show {
        /// The request id.
        id: String,
        #[command(flatten)]
        target: review::Target,
    },
    /// Approve a request, signed with the reviewer's key.
    Approve {
        #[command(flatten)]
        decision: review::Decision,
        /// A comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request, signed with the reviewer's key.
    Deny {
        #[command(flatten)]
        decision: review::Decision,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json);
    let result = match cli.command {
        Command::Keygen {
            name,
            out: path,
            vkey_out,
        } => audit::keygen(&out, &name, &path, vkey_out.as_deref()),
        Command::Audit(cmd) => audit::run(&out, cmd),
        Command::Policy(cmd) => policy::run(&out, cmd),
        Command::Serve {
            config,
            db,
            listen,
            audit_key,
        } => serve::serve(&out, &config, &db, listen, &audit_key),
        Command::Token { principal } => {
            let (token, hash) = approvals_backends::http::generate_token();
            out.line(&token);
            eprintln!(
                "give the token above to {principal} once; add to [server] in approvals.toml:\n\n[[server.tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{hash}\""
            );
            Ok(())
        }
        Command::Pending { target } => review::pending(&out, &target),
        Command::Show { id, target } => review::show(&out, &target, &id),
        Command::Approve { decision, comment } => review::decide(
            &out,
            &decision,
            approvals_core::ReviewDecision::Approve,
            comment,
        ),
        Command::Deny { decision, reason } => review::decide(
            &out,
            &decision,
            approvals_core::ReviewDecision::Deny,
            Some(reason),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::FAILURE
        }
    }
}

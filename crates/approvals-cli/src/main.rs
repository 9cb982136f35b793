//! `approvals`: verify and prove the audit trail, check and explain policy files, manage
//! signing keys.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod output;
mod policy;

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::FAILURE
        }
    }
}

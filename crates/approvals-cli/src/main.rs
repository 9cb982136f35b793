//! `approvals`: verify and prove the audit trail, check and explain policy files, manage
//! signing keys.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod exec;
mod init;
#[cfg(feature = "mcp")]
mod mcp;
mod output;
mod policy;
mod review;
mod serve;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Action-level approvals for AI agents and pipelines.
///
/// Start a deployment (init), run the service (serve), gate an MCP server (mcp) or a
/// pipeline step (exec), review requests (pending, show, approve, deny), check the audit
/// trail (audit) and the policy file (policy), and make tokens and keys (token, keygen).
#[derive(Parser)]
#[command(name = "approvals", version)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// How log lines (on standard error) are written: text, or JSON lines for log
    /// shippers. `APPROVALS_LOG` filters them (e.g. `debug`, `approvals_core=trace`).
    #[arg(long, global = true, value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,
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
    /// Verify, show, prove and export the signed audit log.
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
        /// Also serve `/metrics` here, without a token (a private address). On the main
        /// address `/metrics` needs a token with the `metrics` role.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Export every gated call's spans over OTLP/HTTP to this collector, e.g.
        /// http://localhost:4318/v1/traces (build with the `otel` feature).
        #[arg(long)]
        otlp_endpoint: Option<String>,
    },
    /// Write a new deployment's files: approvals.toml, tokens, the audit key.
    ///
    /// Into DIR (default: here): a commented approvals.toml with a reviewer's and a
    /// requester's token, and the audit signing key. Refuses to overwrite anything.
    Init {
        /// Where to write them.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print a shell completion script.
    ///
    /// `approvals completions bash > /etc/bash_completion.d/approvals`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    ///
    /// `approvals man | man -l -`.
    Man,
    /// Make a token: prints the token once, and its entry for `[server]`.
    Token {
        /// Whose token it is (a person of the policy file, or an agent's or service's id).
        #[arg(long)]
        principal: String,
        /// What it may do: review (the default), request, or both (`--role review --role
        /// request`).
        #[arg(long, value_enum)]
        role: Vec<TokenRole>,
        /// For a requester's token: whom it may act for (repeatable; `*` for anyone).
        #[arg(long = "on-behalf-of")]
        on_behalf_of: Vec<String>,
    },
    /// Run a command once the right people approve that exact command line.
    ///
    /// A pipeline step: against a server with a requester token, or locally (--config,
    /// --db) with the terminal as the approver. Exits with the command's status, or 64 (refused request),
    /// 69 (service unreachable), 70 (service failed), 75 (expired), 76 (cancelled), 77
    /// (denied), 78 (already run under this approval), 79 (changes requested: the message
    /// says what to change) when it did not run.
    Exec(exec::Exec),
    /// Gate an MCP server: every tool call judged by policy, and approved by people.
    ///
    /// Between an MCP client and the upstream server, every tool call is judged by the
    /// policy file (policies mcp.NAME.TOOL, mcp.NAME, mcp) and, where it says so, waits for
    /// people to approve it. Serves the client over stdio, or over Streamable HTTP with
    /// --listen.
    #[cfg(feature = "mcp")]
    Mcp(mcp::Mcp),
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
    ///
    /// With --set, approve it with editable arguments changed: the edit is a new call, judged
    /// by the policy afresh and needing its own approvals, of which yours is the first.
    Approve {
        #[command(flatten)]
        decision: review::Decision,
        /// A comment.
        #[arg(long)]
        comment: Option<String>,
        /// Change an editable argument: NAME=VALUE, the value as JSON (500, true, "500",
        /// [1,2]) or else as text (staging). Repeat for more.
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = review::parse_set)]
        set: Vec<(String, serde_json::Value)>,
    },
    /// Deny a request, signed with the reviewer's key.
    Deny {
        #[command(flatten)]
        decision: review::Decision,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Send a request back, signed with the reviewer's key: the caller is told what to
    /// change, nothing runs, and the changed call is judged afresh.
    RequestChanges {
        #[command(flatten)]
        decision: review::Decision,
        /// What to change (required), e.g. "500 rows, not 50,000".
        #[arg(long)]
        message: String,
    },
}

/// A token's role, as `approvals token --role` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TokenRole {
    /// Approve and deny requests, sign in to the console.
    Review,
    /// Ask for approval, start and finish approved calls (agents, services, pipelines).
    Request,
    /// Read `/metrics` (a Prometheus scraper), nothing else.
    Metrics,
}

/// `approvals token`: a new token, printed once, and its `[[server.tokens]]` entry.
fn token(
    out: &output::Output,
    principal: &str,
    roles: &[TokenRole],
    on_behalf_of: &[String],
) -> Result<(), output::Failure> {
    let requests = roles.contains(&TokenRole::Request);
    if !on_behalf_of.is_empty() && !requests {
        return Err("--on-behalf-of is for requester tokens (--role request)".into());
    }
    let (token, hash) = approvals_backends::http::generate_token();
    out.line(&token);
    let mut entry =
        format!("[[server.tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{hash}\"\n");
    let named: Vec<&str> = [
        (TokenRole::Review, "review"),
        (TokenRole::Request, "request"),
        (TokenRole::Metrics, "metrics"),
    ]
    .iter()
    .filter(|(r, _)| roles.contains(r))
    .map(|(_, n)| *n)
    .collect();
    // A reviewer's token is the default: no `role` line for it.
    match named.as_slice() {
        [] | ["review"] => {}
        [one] => entry.push_str(&format!("role = \"{one}\"\n")),
        many => {
            let list: Vec<String> = many.iter().map(|n| format!("\"{n}\"")).collect();
            entry.push_str(&format!("role = [{}]\n", list.join(", ")));
        }
    }
    if !on_behalf_of.is_empty() {
        let list: Vec<String> = on_behalf_of.iter().map(|p| format!("\"{p}\"")).collect();
        entry.push_str(&format!("on_behalf_of = [{}]\n", list.join(", ")));
    }
    eprintln!(
        "give the token above to {principal} once; add to [server] in approvals.toml:\n\n{entry}"
    );
    Ok(())
}

fn main() -> ExitCode {
    // One TLS stack, rustls with ring, for every HTTP client of the process (some build
    // their own and need a provider installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let out = output::Output::new(cli.json);
    // The long-running commands say what they do at info; the others only warn.
    let (level, otlp) = match &cli.command {
        Command::Serve { otlp_endpoint, .. } => ("info", otlp_endpoint.as_deref()),
        #[cfg(feature = "mcp")]
        Command::Mcp(_) => ("info", None),
        _ => ("warn", None),
    };
    let _telemetry = match telemetry::init(cli.log_format, level, otlp) {
        Ok(t) => t,
        Err(e) => {
            out.error(&e);
            return ExitCode::FAILURE;
        }
    };
    if let Command::Exec(e) = &cli.command {
        return exec::run(e);
    }
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
            metrics_listen,
            otlp_endpoint: _,
        } => serve::serve(&out, &config, &db, listen, &audit_key, metrics_listen),
        Command::Init { dir } => init::init(&out, &dir),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "approvals",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(output::Failure::from),
        Command::Token {
            principal,
            role,
            on_behalf_of,
        } => token(&out, &principal, &role, &on_behalf_of),
        Command::Exec(_) => unreachable!("handled above"),
        #[cfg(feature = "mcp")]
        Command::Mcp(m) => mcp::run(&m),
        Command::Pending { target } => review::pending(&out, &target),
        Command::Show { id, target } => review::show(&out, &target, &id),
        Command::Approve {
            decision,
            comment,
            set,
        } => review::decide(
            &out,
            &decision,
            approvals_core::ReviewDecision::Approve,
            comment,
            (!set.is_empty()).then(|| set.into_iter().collect()),
        ),
        Command::Deny { decision, reason } => review::decide(
            &out,
            &decision,
            approvals_core::ReviewDecision::Deny,
            Some(reason),
            None,
        ),
        Command::RequestChanges { decision, message } => review::decide(
            &out,
            &decision,
            approvals_core::ReviewDecision::RequestChanges,
            Some(message),
            None,
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

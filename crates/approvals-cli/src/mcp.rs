//! `approvals mcp`: the MCP gateway. Between one MCP client and one upstream MCP server,
//! every tool call is judged by the policy file and, where it says so, approved by people.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use approvals_backends::mcp::{Gateway, Upstream};
use approvals_core::Principal;

use crate::output::Failure;

/// The arguments of `approvals mcp`.
#[derive(clap::Args, Debug)]
pub(crate) struct Mcp {
    /// The policy file: policies `mcp.NAME.TOOL`, `mcp.NAME` or `mcp` judge the tool calls;
    /// its `[server]` table gives channels, the console URL and (with --listen) tokens.
    #[arg(long)]
    config: PathBuf,
    /// The shared database: sqlite:PATH or postgres://... (reviewers decide through
    /// `approvals serve` over the same database).
    #[arg(long)]
    db: String,
    /// The audit log's checkpoint signing key (default: beside an SQLite database file).
    #[arg(long)]
    audit_key: Option<PathBuf>,
    /// The upstream server's name: tool T is the action NAME.T.
    #[arg(long)]
    server_name: String,
    /// The agent whose calls these are.
    #[arg(long)]
    requester: String,
    /// The person the agent acts for (stdio; over HTTP the client's token says).
    #[arg(long)]
    on_behalf_of: Option<String>,
    /// How long to hold a call that needs approval before telling the client it awaits
    /// approval, in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    /// How long the upstream may take to answer one message, in seconds.
    #[arg(long, default_value_t = 300)]
    upstream_timeout: u64,
    /// List the tools whose policy can only refuse, too.
    #[arg(long)]
    show_refused: bool,
    /// Reach a Streamable HTTP upstream at this URL instead of starting a command.
    #[arg(long, conflicts_with = "command")]
    upstream: Option<String>,
    /// Serve clients over Streamable HTTP at ADDR (path /mcp), with the requester tokens
    /// of the `[server]` table, instead of stdio.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The upstream server's command and arguments, started over stdio.
    #[arg(last = true, num_args = 1..)]
    command: Vec<String>,
}

/// Runs `approvals mcp` until the client leaves (stdio) or the process is stopped (HTTP).
pub(crate) fn run(m: &Mcp) -> Result<(), Failure> {
    let upstream = match (&m.upstream, m.command.split_first()) {
        (Some(url), _) => Upstream::url(url),
        (None, Some((program, args))) => Upstream::command(program, args),
        (None, None) => {
            return Err(
                "name the upstream server: `-- COMMAND ARGS...` to start it, or --upstream URL"
                    .into(),
            );
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let key = crate::serve::audit_key(&m.db, m.audit_key.as_deref())?;
        let s = crate::serve::setup(&m.config, &m.db, &key, true).await?;
        let mut gateway = Gateway::new(
            s.gate.clone(),
            &m.server_name,
            Principal::agent(&m.requester),
            upstream,
        )
        .wait(Duration::from_secs(m.wait))
        .upstream_timeout(Duration::from_secs(m.upstream_timeout))
        .show_refused(m.show_refused);
        if let Some(p) = &m.on_behalf_of {
            gateway = gateway.on_behalf_of(Principal::human(p));
        }
        if let Some(url) = s.public_url() {
            gateway = gateway.console_url(url);
        }
        let ticker = crate::serve::tend(s.gate.clone(), "approvals mcp");
        let served = match m.listen {
            None => {
                eprintln!(
                    "approvals mcp: gateway for `{}` on stdio; tool calls are judged by policies mcp.{}.TOOL, mcp.{} or mcp",
                    m.server_name, m.server_name, m.server_name
                );
                gateway.serve_stdio().await.map_err(Failure::from)
            }
            Some(addr) => {
                let tokens = s.tokens()?;
                if tokens.is_empty() {
                    return Err("--listen needs requester tokens in [server] (`approvals token --role request`)".into());
                }
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("listen on {addr}: {e}"))?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                eprintln!("approvals mcp: gateway for `{}` at http://{addr}/mcp", m.server_name);
                let served = axum::serve(listener, gateway.router(tokens))
                    .with_graceful_shutdown(crate::serve::shutdown_signal())
                    .await
                    .map_err(|e| Failure::from(e.to_string()));
                gateway.finished().await;
                served
            }
        };
        ticker.abort();
        s.gate.shutdown().await.map_err(|e| e.to_string())?;
        s.db.close().await;
        served
    })
}

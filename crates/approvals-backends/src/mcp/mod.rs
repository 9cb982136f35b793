//! An MCP gateway: a proxy between one MCP client and one upstream MCP server in which every
//! `tools/call` is a gated call, judged by the policy file and, where it says so, approved by
//! people, before the upstream sees it. Built on [`rmcp`], the official Rust MCP SDK.
//!
//! - A call of tool `T` on the server named `NAME` is the action `NAME.T`, its arguments the
//!   tool's arguments, judged by the policy `mcp.NAME.T` if the file has it, else `mcp.NAME`,
//!   else `mcp`; with none of them it is refused.
//! - Allowed: forwarded, the upstream's result returned, its end audited. Refused (by policy
//!   or by a reviewer), expired or cancelled: the upstream never sees it; the client gets a
//!   tool result with `isError: true` saying who refused and why, so the model can adapt.
//! - Waiting for approval: the call is held, with progress notifications when the client
//!   asked for them, up to [`Gateway::wait`]; past that, an `isError` result says the call
//!   awaits approval (request id, console link). The request stays open for reviewers; the
//!   identical call later re-attaches to it and runs, once, when approved.
//! - `tools/list` passes through, without the tools whose policy can only refuse, and with
//!   the tools that may need approval saying so. Everything else passes through unchanged.
//!
//! ```no_run
//! # async fn run(gate: approvals_core::Gate) -> Result<(), approvals_backends::mcp::GatewayError> {
//! use approvals_backends::mcp::{Gateway, Upstream};
//! use approvals_core::Principal;
//! use std::time::Duration;
//!
//! let upstream = Upstream::command("npx", ["-y", "@modelcontextprotocol/server-filesystem", "/srv"]);
//! Gateway::new(gate, "fs", Principal::agent("desktop-agent"), upstream)
//!     .on_behalf_of(Principal::human("dana"))
//!     .wait(Duration::from_secs(120))
//!     .serve_stdio()
//!     .await
//! # }
//! ```

mod bounded;
mod http;
mod judge;
mod relay;
mod session;
mod tool;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use approvals_core::{Gate, Principal};
use rmcp::service::ServiceExt as _;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::io::{AsyncRead, AsyncWrite};

pub use http::ON_BEHALF_OF_HEADER;
pub use judge::policy_for;
pub use tool::ToolError;

/// The largest message a client may send over stdio; a larger one is refused with an error.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Where the upstream MCP server is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Upstream {
    /// A program the gateway starts, speaking MCP over its stdin and stdout (its stderr is
    /// the gateway's). It is started when the client initializes, and again if it exits.
    Command {
        /// The program.
        program: OsString,
        /// Its arguments.
        args: Vec<OsString>,
    },
    /// A Streamable HTTP server.
    Url(String),
}

impl Upstream {
    /// A program to start, with its arguments.
    pub fn command<I, S>(program: impl Into<OsString>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self::Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// A Streamable HTTP server at `url`.
    pub fn url(url: impl Into<String>) -> Self {
        Self::Url(url.into())
    }

    fn describe(&self) -> String {
        match self {
            Self::Command { program, .. } => program.to_string_lossy().into_owned(),
            Self::Url(u) => u.clone(),
        }
    }
}

/// The gateway could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The client's side failed before the session began (it did not initialize).
    #[error("the MCP client did not start a session: {0}")]
    Session(String),
    /// Listening or serving HTTP failed.
    #[error("serving MCP over HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The MCP gateway: configure it, then serve one client over stdio
/// ([`Gateway::serve_stdio`]) or many over Streamable HTTP ([`Gateway::router`]).
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) gate: Gate,
    pub(crate) server: String,
    pub(crate) requester: Principal,
    pub(crate) on_behalf_of: Option<Principal>,
    pub(crate) wait: Duration,
    pub(crate) progress_every: Duration,
    pub(crate) show_refused: bool,
    pub(crate) console_url: Option<String>,
    pub(crate) upstream: Upstream,
    pub(crate) upstream_timeout: Duration,
    /// The audit records of forwarded calls' ends, written after the client has its answer;
    /// waited for before the gateway stops.
    pub(crate) finishing: tokio_util::task::TaskTracker,
}

impl Gateway {
    /// A gateway for the upstream server named `server` (the `NAME` of its actions and
    /// policies), whose calls `requester` (the agent) makes.
    pub fn new(
        gate: Gate,
        server: impl Into<String>,
        requester: Principal,
        upstream: Upstream,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                gate,
                server: server.into(),
                requester,
                on_behalf_of: None,
                wait: Duration::from_secs(60),
                progress_every: Duration::from_secs(10),
                show_refused: false,
                console_url: None,
                upstream,
                upstream_timeout: Duration::from_secs(300),
                finishing: tokio_util::task::TaskTracker::new(),
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// The person the agent acts for (stdio; over HTTP the client's token says).
    pub fn on_behalf_of(self, person: Principal) -> Self {
        self.with(|s| s.on_behalf_of = Some(person))
    }

    /// How long a call that needs approval is held before the client is told it awaits
    /// approval (default 60 s; zero answers at once).
    pub fn wait(self, wait: Duration) -> Self {
        self.with(|s| s.wait = wait)
    }

    /// How often a held call reports progress, when the client gave a progress token
    /// (default 10 s; the first report goes out as soon as the request is made).
    pub fn progress_every(self, every: Duration) -> Self {
        self.with(|s| s.progress_every = every.max(Duration::from_millis(100)))
    }

    /// List the tools whose policy can only refuse, too (by default they are hidden).
    pub fn show_refused(self, show: bool) -> Self {
        self.with(|s| s.show_refused = show)
    }

    /// The public URL of `approvals serve`, for console links in what the model is told.
    pub fn console_url(self, url: impl Into<String>) -> Self {
        self.with(|s| s.console_url = Some(url.into()))
    }

    /// How long the upstream may take to answer one message (default 300 s); past it the
    /// client's call gets a JSON-RPC error.
    pub fn upstream_timeout(self, timeout: Duration) -> Self {
        self.with(|s| s.upstream_timeout = timeout)
    }

    /// Serves one client over this process's stdin and stdout until it closes them (what a
    /// desktop client starts).
    pub async fn serve_stdio(self) -> Result<(), GatewayError> {
        self.serve_io(tokio::io::stdin(), tokio::io::stdout()).await
    }

    /// Serves one client over `input` and `output`, a message a line, until `input` ends. A
    /// message over [`MAX_MESSAGE_BYTES`] is refused (a request gets an error answer).
    pub async fn serve_io<R, W>(self, input: R, output: W) -> Result<(), GatewayError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let input = bounded::lines(input, MAX_MESSAGE_BYTES);
        let transport = AsyncRwTransport::<rmcp::RoleServer, _, _>::new(input, output)
            .with_max_line_length(MAX_MESSAGE_BYTES + 1024);
        let running = session::Session::new(self.shared.clone())
            .serve(transport)
            .await
            .map_err(|e| GatewayError::Session(e.to_string()))?;
        let _ = running.waiting().await;
        self.finished().await;
        Ok(())
    }

    /// Waits until the ends of the calls forwarded so far are recorded (they are written
    /// just after each client has its answer). Call it before the gate shuts down, after
    /// serving [`Gateway::router`].
    pub async fn finished(&self) {
        self.shared.finishing.close();
        self.shared.finishing.wait().await;
        self.shared.finishing.reopen();
    }
}

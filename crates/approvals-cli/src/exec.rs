//! `approvals exec`: a pipeline step that runs a command only once the right people have
//! approved that exact command line. Against a server (the requester API), or locally on an
//! embedded gate with the terminal as the approver.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use approvals_backends::http::{Answer, Call, ClientError, Retry, ServiceClient};
use approvals_core::view::{RequestView, Status};
use serde_json::{Map, Value, json};

/// The exit codes of `approvals exec` when the command did not run. Otherwise it exits with
/// the command's own status (128 + the signal, if a signal ended it).
pub(crate) mod code {
    /// The request was refused as malformed: an unknown policy, bad arguments, a missing
    /// token (sysexits' `EX_USAGE`).
    pub(crate) const USAGE: u8 = 64;
    /// The approval service could not be reached, after retrying (`EX_UNAVAILABLE`).
    pub(crate) const UNREACHABLE: u8 = 69;
    /// The service failed, or answered in a way that could not be understood
    /// (`EX_SOFTWARE`).
    pub(crate) const SERVICE: u8 = 70;
    /// Nobody decided before the request expired (`EX_TEMPFAIL`).
    pub(crate) const EXPIRED: u8 = 75;
    /// The request was cancelled.
    pub(crate) const CANCELLED: u8 = 76;
    /// Denied, by policy or by a reviewer (`EX_NOPERM`).
    pub(crate) const DENIED: u8 = 77;
    /// The approval was already used: this exact command started under it before, and its
    /// end was never recorded (in doubt). It is never run twice on one approval.
    pub(crate) const ALREADY_RAN: u8 = 78;
    /// A reviewer sent it back with what to change (printed); change the command and run
    /// it again.
    pub(crate) const CHANGES_REQUESTED: u8 = 79;
}

/// The arguments of `approvals exec`.
#[derive(clap::Args, Debug)]
pub(crate) struct Exec {
    /// The approval service, e.g. https://approvals.example.com.
    #[arg(long, conflicts_with_all = ["config", "db"])]
    server: Option<String>,
    /// A requester token for the service.
    #[arg(long, env = "APPROVALS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Local mode: the policy file (no server).
    #[arg(long, requires = "db")]
    config: Option<PathBuf>,
    /// Local mode: the database (sqlite:PATH).
    #[arg(long, requires = "config")]
    db: Option<String>,
    /// Local mode: the audit signing key (default: beside the database file, made if
    /// missing).
    #[arg(long)]
    audit_key: Option<PathBuf>,
    /// Local mode: who asks (default: the service principal `approvals-exec`).
    #[arg(long, default_value = "approvals-exec")]
    requester: String,
    /// Local mode: who reviews at this terminal (a person of the policy file; default the
    /// operating-system user).
    #[arg(long)]
    reviewer: Option<String>,
    /// The policy that judges the command.
    #[arg(long)]
    policy: String,
    /// The action's name (default: the command's file name).
    #[arg(long)]
    action: Option<String>,
    /// An argument the policy sees, KEY=VALUE; VALUE is read as JSON where it parses
    /// (`limit=5` is a number), else as a string. Repeatable.
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    args: Vec<String>,
    /// Why the command must run.
    #[arg(long)]
    reason: Option<String>,
    /// The person this pipeline acts for (the token must be allowed to name them).
    #[arg(long)]
    on_behalf_of: Option<String>,
    /// A label, KEY=VALUE (the environment, the run). Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// How long the service may stay unreachable while waiting before giving up, in
    /// seconds.
    #[arg(long, default_value_t = 60)]
    retry_for: u64,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// What stopped a command from running: a message and the exit code.
struct Stop {
    code: u8,
    message: String,
}

impl Stop {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Runs `approvals exec`; returns the process's exit code.
pub(crate) fn run(e: &Exec) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("approvals exec: {err}");
            return ExitCode::from(code::SERVICE);
        }
    };
    let outcome = match arguments(e) {
        Err(stop) => Err(stop),
        Ok(args) => match &e.server {
            Some(server) => rt.block_on(remote(e, server, args)),
            None => rt.block_on(local(e, args)),
        },
    };
    match outcome {
        Ok(status) => status,
        Err(stop) => {
            eprintln!("approvals exec: {}", stop.message);
            ExitCode::from(stop.code)
        }
    }
}

/// The arguments the approval binds: every `--arg`, and the command line itself.
fn arguments(e: &Exec) -> Result<Map<String, Value>, Stop> {
    let mut args = Map::new();
    for a in &e.args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Stop::new(code::USAGE, format!("--arg {a:?} is not KEY=VALUE")))?;
        if k == "command" {
            return Err(Stop::new(
                code::USAGE,
                "--arg command=… would hide the command line, which is always an argument",
            ));
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        args.insert(k.to_owned(), value);
    }
    args.insert("command".into(), json!(e.command));
    Ok(args)
}

fn action_name(e: &Exec) -> String {
    e.action.clone().unwrap_or_else(|| {
        std::path::Path::new(&e.command[0]).file_name().map_or_else(
            || e.command[0].clone(),
            |n| n.to_string_lossy().into_owned(),
        )
    })
}

fn labels(e: &Exec) -> Result<std::collections::BTreeMap<String, String>, Stop> {
    let mut out = std::collections::BTreeMap::new();
    for l in &e.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| Stop::new(code::USAGE, format!("--label {l:?} is not KEY=VALUE")))?;
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// Says what is happening while the request waits: a live line on a terminal, timestamped
/// lines in a CI log (at each change, and once a minute).
struct Progress {
    live: bool,
    started: Instant,
    last: Option<(String, Instant)>,
}

impl Progress {
    fn new() -> Self {
        Self {
            live: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
        }
    }

    fn waiting(&mut self, view: &RequestView) {
        let needs = if view.still_needed.is_empty() {
            "a decision".to_owned()
        } else {
            view.still_needed.clone()
        };
        let line = format!(
            "waiting for approval: {needs}; expires in {}",
            human(Duration::from_secs(view.expires_in_secs))
        );
        let elapsed = self.started.elapsed();
        if self.live {
            eprint!("\r\x1b[2K{line} ({} waited)", human(elapsed));
            let _ = std::io::stderr().flush();
            return;
        }
        let changed = self.last.as_ref().is_none_or(|(l, _)| *l != line);
        let stale = self
            .last
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= Duration::from_secs(60));
        if changed || stale {
            eprintln!("[{}] {line}", approvals_core::Timestamp::now());
            self.last = Some((line, Instant::now()));
        }
    }

    fn done(&self) {
        if self.live {
            eprintln!();
        }
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Tells the person at the terminal (or the CI log) what the request needs.
fn announce(view: &RequestView) {
    let r = &view.request;
    eprintln!(
        "approval needed for `{}` under policy `{}` (request {})",
        r.action.name, r.action.policy, r.id
    );
    if !view.still_needed.is_empty() {
        eprintln!("  needs:       {}", view.still_needed);
    }
    if !view.may_approve.is_empty() {
        eprintln!("  may approve: {}", view.may_approve.join(", "));
    }
    eprintln!(
        "  expires in:  {}",
        human(Duration::from_secs(view.expires_in_secs))
    );
    if let Some(url) = &view.console_url {
        eprintln!("  review at:   {url}");
    }
}

/// The command, run once with this process's standard input and outputs. Its exit status,
/// as a shell reports it.
fn run_command(command: &[String]) -> Result<(u8, String), Stop> {
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .map_err(|err| Stop::new(127, format!("cannot run {}: {err}", command[0])))?;
    if let Some(c) = status.code() {
        return Ok((
            u8::try_from(c & 0xff).unwrap_or(1),
            format!("exit status {c}"),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            return Ok((
                u8::try_from(128 + (sig & 0x7f)).unwrap_or(1),
                format!("killed by signal {sig}"),
            ));
        }
    }
    Ok((1, status.to_string()))
}

/// What an answer means for the command: run, wait, or stop with a code.
enum Next {
    Run(Option<RequestView>),
    Wait(RequestView),
}

fn read(a: Answer) -> Result<Next, Stop> {
    let message = a.message().to_owned();
    match (a.status, a.code()) {
        (200, _) if a.body["status"] == "allowed" => Ok(Next::Run(None)),
        (200 | 202, _) => {
            let view: RequestView = serde_json::from_value(a.body).map_err(|e| {
                Stop::new(
                    code::SERVICE,
                    format!("the service's answer is not a request: {e}"),
                )
            })?;
            Ok(match view.status {
                Status::Approved => Next::Run(Some(view)),
                _ => Next::Wait(view),
            })
        }
        (403, Some("denied")) => Err(Stop::new(
            code::DENIED,
            format!("{message}; the command did not run"),
        )),
        (409, Some("expired")) => Err(Stop::new(
            code::EXPIRED,
            format!("{message}; the command did not run"),
        )),
        (409, Some("cancelled")) => Err(Stop::new(
            code::CANCELLED,
            format!("{message}; the command did not run"),
        )),
        (409, Some("changes_requested")) => Err(Stop::new(
            code::CHANGES_REQUESTED,
            format!("{message}; the command did not run: change it as asked and run it again"),
        )),
        (400 | 401 | 403 | 413, c) => Err(Stop::new(
            code::USAGE,
            format!(
                "the service refused the request: {message} ({})",
                c.unwrap_or("?")
            ),
        )),
        (s, _) => Err(Stop::new(
            code::SERVICE,
            format!("the service answered {s}: {message}"),
        )),
    }
}

/// The client's failure as the command's: unreachable, or an answer that cannot be read.
fn reach(e: ClientError) -> Stop {
    match e {
        ClientError::Unreachable { .. } => Stop::new(
            code::UNREACHABLE,
            format!("the approval service is unreachable ({e}); the command did not run"),
        ),
        other => Stop::new(code::SERVICE, other.to_string()),
    }
}

async fn remote(e: &Exec, server: &str, args: Map<String, Value>) -> Result<ExitCode, Stop> {
    let token = e.token.clone().ok_or_else(|| {
        Stop::new(
            code::USAGE,
            "a requester token is needed: set APPROVALS_TOKEN (or --token)",
        )
    })?;
    let client =
        ServiceClient::new(server, token).retry(Retry::for_up_to(Duration::from_secs(e.retry_for)));
    let call = Call {
        action: action_name(e),
        policy: e.policy.clone(),
        args,
        on_behalf_of: e.on_behalf_of.clone(),
        reason: e.reason.clone(),
        trigger: None,
        labels: labels(e)?,
        editable: Vec::new(),
    };
    let mut next = read(client.ask(&call, Duration::ZERO).await.map_err(reach)?)?;
    let mut progress = Progress::new();
    let mut announced = false;
    let view = loop {
        match next {
            Next::Run(v) => break v,
            Next::Wait(view) => {
                if !announced {
                    announce(&view);
                    announced = true;
                }
                progress.waiting(&view);
                let id = view.request.id.to_string();
                let polled = client
                    .poll(&id, Duration::from_secs(30))
                    .await
                    .map_err(reach)?;
                next = match read(polled)? {
                    Next::Wait(v) if v.status != Status::Pending => {
                        // Decided against: asking again as the identical call learns it
                        // (and tells the service that this caller knows).
                        progress.done();
                        read(client.ask(&call, Duration::ZERO).await.map_err(reach)?)?
                    }
                    other => other,
                };
            }
        }
    };
    progress.done();
    let Some(view) = view else {
        // Allowed outright by policy: nothing to start or finish.
        let (status, _) = run_command(&e.command)?;
        return Ok(ExitCode::from(status));
    };
    let id = view.request.id.to_string();
    let start = client.start(&id).await.map_err(reach)?;
    if start.status != 200 {
        let message = start.message();
        return Err(match start.code().unwrap_or("") {
            "already_started" => Stop::new(
                code::ALREADY_RAN,
                format!("{message}; the command is not run twice on one approval"),
            ),
            "not_approved" => Stop::new(
                code::CANCELLED,
                format!("{message}; the command did not run"),
            ),
            other => Stop::new(
                code::SERVICE,
                format!("could not start: {message} ({other})"),
            ),
        });
    }
    eprintln!("approved: running {}", e.command.join(" "));
    let (status, summary) = run_command(&e.command)?;
    match client.finish(&id, status == 0, Some(&summary)).await {
        Ok(a) if a.status == 200 => {}
        Ok(a) => eprintln!(
            "approvals exec: could not record the end of the command: {}",
            a.message()
        ),
        Err(err) => eprintln!("approvals exec: could not record the end of the command: {err}"),
    }
    Ok(ExitCode::from(status))
}

/// Local mode: the embedded gate over the database, the terminal as the approver.
async fn local(e: &Exec, args: Map<String, Value>) -> Result<ExitCode, Stop> {
    use approvals_core::{Action, CallOptions, Context, Error, Principal};
    let (Some(config), Some(db)) = (&e.config, &e.db) else {
        return Err(Stop::new(
            code::USAGE,
            "give --server URL, or --config FILE and --db URL for local mode",
        ));
    };
    let key = crate::serve::audit_key(db, e.audit_key.as_deref())
        .map_err(|f| Stop::new(code::USAGE, f.message))?;
    let mut terminal = approvals_backends::terminal::TerminalApprover::new();
    if let Some(r) = &e.reviewer {
        terminal = terminal.reviewer(r);
    }
    let setup = crate::serve::setup_with(config, db, &key, |b| b.approver(terminal))
        .await
        .map_err(|f| Stop::new(code::USAGE, f.message))?;
    let action = Action::builder(action_name(e), &e.policy)
        .args(&args)
        .build()
        .map_err(|err| Stop::new(code::USAGE, err.to_string()))?;
    let mut context = Context::new(Principal::service(&e.requester));
    if let Some(p) = &e.on_behalf_of {
        context = context.on_behalf_of(Principal::human(p));
    }
    if let Some(r) = &e.reason {
        context = context.reason(r);
    }
    for (k, v) in labels(e)? {
        context = context.label(k, v);
    }
    let gate = setup.gate.clone();
    let outcome = gate
        .authorize(action, context, CallOptions::default())
        .await;
    let result = match outcome {
        Ok(permit) => {
            let ran = run_command(&e.command);
            let (status, summary) = match &ran {
                Ok((s, summary)) => (*s, summary.clone()),
                Err(stop) => (stop.code, stop.message.clone()),
            };
            permit
                .finish(if status == 0 { Ok(()) } else { Err(summary) })
                .await;
            ran.map(|(s, _)| ExitCode::from(s))
        }
        Err(err) => Err(match err {
            Error::Denied(d) => Stop::new(code::DENIED, format!("{d}; the command did not run")),
            Error::Expired { .. } => {
                Stop::new(code::EXPIRED, format!("{err}; the command did not run"))
            }
            Error::Cancelled { .. } => {
                Stop::new(code::CANCELLED, format!("{err}; the command did not run"))
            }
            Error::AlreadyRan { .. } => Stop::new(code::ALREADY_RAN, err.to_string()),
            Error::ChangesRequested { .. } => Stop::new(
                code::CHANGES_REQUESTED,
                format!("{err}; the command did not run: change it as asked and run it again"),
            ),
            Error::Policy(_) | Error::Arguments(_) | Error::Context(_) => {
                Stop::new(code::USAGE, err.to_string())
            }
            other => Stop::new(code::SERVICE, other.to_string()),
        }),
    };
    let _ = gate.shutdown().await;
    setup.db.close().await;
    result
}

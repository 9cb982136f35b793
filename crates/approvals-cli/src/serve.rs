//! `approvals serve`: the API, the console and every configured channel's endpoint against
//! a shared database; and the gate the operator commands use directly on a database.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use approvals_backends::file::load_signer;
use approvals_backends::http::{
    ApprovalService, OnBehalfOf, Roles, TokenEntry as Token, TokenHash, Tokens, WebhookApprover,
    WebhookSecret,
};
use approvals_backends::sql::{Database, SqlAuditOptions};
use approvals_core::{Gate, Principal, PrincipalKind};
use approvals_policy::FilePolicy;
use serde::Deserialize;

use crate::output::{Failure, Output};

/// The `[server]` table of `approvals.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerConfig {
    /// Where reviewers and webhook receivers reach this service.
    public_url: Option<String>,
    /// The audit log's name in its checkpoints.
    origin: Option<String>,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    slack: Option<SlackConfig>,
    teams: Option<TeamsConfig>,
    #[serde(default)]
    webhooks: Vec<WebhookConfig>,
    /// The environment variable holding the secret (`whsec_…`) that signs requesters'
    /// callbacks; without it, requests cannot carry a `callback_url`.
    callback_secret_env: Option<String>,
    /// The longest a long-poll holds its answer, in seconds (default 60).
    max_wait_secs: Option<u64>,
}

/// `[server.teams]`: bot mode (`app_id`, `service_url`) or webhook mode (`workflow_url_env`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamsConfig {
    app_id: Option<String>,
    app_password_env: Option<String>,
    service_url: Option<String>,
    #[serde(default)]
    conversations: Vec<String>,
    #[serde(default)]
    direct_messages: bool,
    tenant: Option<String>,
    login_url: Option<String>,
    openid_metadata_url: Option<String>,
    workflow_url_env: Option<String>,
    link_key_env: Option<String>,
}

impl TeamsConfig {
    /// The key for the console links of webhook mode: from the environment (64 hex digits),
    /// so that links survive a restart, or a new one for this process.
    fn link_key(&self) -> Result<approvals_backends::http::LinkKey, Failure> {
        let name = self.link_key_env.as_deref().unwrap_or("APPROVALS_LINK_KEY");
        match std::env::var(name) {
            Ok(hex_key) => {
                let bytes: [u8; 32] = hex::decode(hex_key.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("{name} must be 64 hex digits"))?;
                Ok(approvals_backends::http::LinkKey::from_bytes(bytes))
            }
            Err(_) => Ok(approvals_backends::http::LinkKey::generate()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    principal: String,
    sha256: String,
    #[serde(default)]
    kind: Option<String>,
    /// `"review"` (the default), `"request"`, or both as a list.
    #[serde(default)]
    role: Option<RoleSpec>,
    /// For requester tokens: whom it may act for (`["dana"]`, or `["*"]` for anyone).
    #[serde(default)]
    on_behalf_of: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RoleSpec {
    One(String),
    Many(Vec<String>),
}

impl RoleSpec {
    fn roles(&self, whose: &str) -> Result<Roles, Failure> {
        let names: Vec<&str> = match self {
            RoleSpec::One(r) => vec![r.as_str()],
            RoleSpec::Many(rs) => rs.iter().map(String::as_str).collect(),
        };
        let mut roles = Roles::default();
        for n in names {
            match n {
                "review" => roles.review = true,
                "request" => roles.request = true,
                "metrics" => roles.metrics = true,
                other => {
                    return Err(format!(
                        "token of {whose}: unknown role `{other}` (a role is \"review\", \"request\" or \"metrics\")"
                    )
                    .into());
                }
            }
        }
        if !roles.review && !roles.request && !roles.metrics {
            return Err(format!("token of {whose}: no role").into());
        }
        Ok(roles)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackConfig {
    channel: String,
    #[serde(default)]
    direct_messages: bool,
    /// Opt in to matching Slack accounts to people by email (clicks and direct messages).
    #[serde(default)]
    match_users_by_email: bool,
    /// The workspace (team id, `T…`) whose users may review; clicks from any other are
    /// refused.
    team_id: Option<String>,
    bot_token_env: Option<String>,
    signing_secret_env: Option<String>,
    api_base: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookConfig {
    url: String,
    secret_env: String,
}

pub(crate) const DEFAULT_ORIGIN: &str = "approvals/audit";

/// Everything a gate over the shared database needs.
pub(crate) struct Setup {
    pub(crate) gate: Gate,
    pub(crate) db: Database,
    config: ServerConfig,
    /// The key of Teams webhook mode's console links, the same for the cards and the console.
    link_key: Option<approvals_backends::http::LinkKey>,
}

#[cfg_attr(not(feature = "mcp"), allow(dead_code))]
impl Setup {
    /// The tokens of the `[server]` table.
    pub(crate) fn tokens(&self) -> Result<Tokens, Failure> {
        tokens(&self.config)
    }

    /// Where reviewers reach the console, if the `[server]` table says.
    pub(crate) fn public_url(&self) -> Option<&str> {
        self.config.public_url.as_deref()
    }
}

fn env(name: &str) -> Result<String, Failure> {
    std::env::var(name).map_err(|_| Failure::from(format!("set the environment variable {name}")))
}

/// The audit signing key: the one given, or (for an SQLite database) the key beside the
/// database file, made when missing.
pub(crate) fn audit_key(db: &str, given: Option<&Path>) -> Result<std::path::PathBuf, Failure> {
    if let Some(k) = given {
        return Ok(k.to_path_buf());
    }
    let path = db.strip_prefix("sqlite:").ok_or_else(|| {
        Failure::from("give --audit-key (only an sqlite: database has a key beside it by default)")
    })?;
    let key = std::path::PathBuf::from(format!("{path}.audit.key"));
    if !key.exists() {
        approvals_backends::file::write_new_signer(&key, DEFAULT_ORIGIN)
            .map_err(|err| Failure::from(err.to_string()))?;
        eprintln!("made the audit signing key {}", key.display());
    }
    Ok(key)
}

/// Loads the policy file and its `[server]` table, opens the database and its audit log, and
/// builds the gate (with the Slack and webhook channels when `channels`).
pub(crate) async fn setup(
    config: &Path,
    db_url: &str,
    audit_key: &Path,
    channels: bool,
) -> Result<Setup, Failure> {
    setup_channels(config, db_url, audit_key, channels, |b| b).await
}

/// [`setup`] without the configured channels, with `more` (another approver) instead.
pub(crate) async fn setup_with(
    config: &Path,
    db_url: &str,
    audit_key: &Path,
    more: impl FnOnce(approvals_core::GateBuilder) -> approvals_core::GateBuilder,
) -> Result<Setup, Failure> {
    setup_channels(config, db_url, audit_key, false, more).await
}

async fn setup_channels(
    config: &Path,
    db_url: &str,
    audit_key: &Path,
    channels: bool,
    more: impl FnOnce(approvals_core::GateBuilder) -> approvals_core::GateBuilder,
) -> Result<Setup, Failure> {
    // The policies and the `[server]` table, from one read and one parse of the file.
    let (policy, server) =
        FilePolicy::load_with::<ServerConfig>(config).map_err(|e| e.to_string())?;
    let signer = load_signer(audit_key).map_err(|e| format!("{}: {e}", audit_key.display()))?;
    let db = Database::open(db_url).await.map_err(|e| e.to_string())?;
    let origin = server.origin.as_deref().unwrap_or(DEFAULT_ORIGIN);
    let audit = db
        .audit(SqlAuditOptions::new(origin, signer))
        .await
        .map_err(|e| e.to_string())?;
    let mut link_key = None;
    let mut b = Gate::builder()
        .directory(policy.directory())
        .policy(policy)
        .store_arc(db.store())
        .audit(audit);
    if channels {
        if let Some(s) = &server.slack {
            let client = slack_client(s)?;
            let mut approver =
                approvals_backends::slack::SlackApprover::new(client).channel(&s.channel);
            if s.direct_messages {
                approver = approver.direct_messages(true);
            }
            approver = approver.find_reviewers_by_email(s.match_users_by_email);
            if let Some(base) = &server.public_url {
                approver = approver.console_url(base);
            }
            b = b.approver(approver);
        }
        if let Some(t) = &server.teams {
            if t.workflow_url_env.is_some() {
                link_key = Some(t.link_key()?);
            }
            b = teams_channel(b, t, &server, link_key.clone())?;
        }
        if !server.webhooks.is_empty() {
            let base = server.public_url.clone().ok_or_else(|| {
                Failure::from("[server] webhooks need `public_url`, where receivers post decisions")
            })?;
            let mut hooks = WebhookApprover::new(base);
            for w in &server.webhooks {
                let secret = WebhookSecret::parse(&env(&w.secret_env)?)
                    .map_err(|e| format!("{}: {e}", w.secret_env))?;
                hooks = hooks.endpoint(&w.url, secret);
            }
            b = b.approver(hooks);
        }
    }
    let gate = more(b).build().map_err(|e| e.to_string())?;
    Ok(Setup {
        gate,
        db,
        config: server,
        link_key,
    })
}

fn teams_channel(
    b: approvals_core::GateBuilder,
    t: &TeamsConfig,
    server: &ServerConfig,
    link_key: Option<approvals_backends::http::LinkKey>,
) -> Result<approvals_core::GateBuilder, Failure> {
    use approvals_backends::teams::{Connector, TeamsApprover, TeamsWebhookApprover};
    if let (Some(url_env), Some(key)) = (&t.workflow_url_env, link_key) {
        let base = server.public_url.clone().ok_or_else(|| {
            Failure::from("[server.teams] webhook mode needs [server] public_url for its links")
        })?;
        return Ok(b.approver(TeamsWebhookApprover::new(env(url_env)?, base, key)));
    }
    let (Some(app_id), Some(service_url)) = (&t.app_id, &t.service_url) else {
        return Err("[server.teams] needs app_id and service_url (bot mode) or workflow_url_env (webhook mode)".into());
    };
    let password = env(t
        .app_password_env
        .as_deref()
        .unwrap_or("TEAMS_APP_PASSWORD"))?;
    let mut connector = Connector::new(app_id, password);
    if let Some(u) = &t.login_url {
        connector = connector.login_url(u);
    }
    if let Some(tenant) = &t.tenant {
        connector = connector.tenant(tenant);
    }
    let mut approver =
        TeamsApprover::new(connector, service_url).direct_messages(t.direct_messages);
    for c in &t.conversations {
        approver = approver.conversation(c);
    }
    if let Some(base) = &server.public_url {
        approver = approver.console_url(base);
    }
    Ok(b.approver(approver))
}

fn slack_client(s: &SlackConfig) -> Result<approvals_backends::slack::SlackClient, Failure> {
    let token = env(s.bot_token_env.as_deref().unwrap_or("SLACK_BOT_TOKEN"))?;
    let mut client = approvals_backends::slack::SlackClient::new(token);
    if let Some(base) = &s.api_base {
        client = client.base_url(base);
    }
    Ok(client)
}

fn tokens(config: &ServerConfig) -> Result<Tokens, Failure> {
    let mut tokens = Tokens::new();
    for t in &config.tokens {
        let hash =
            TokenHash::parse(&t.sha256).map_err(|e| format!("token of {}: {e}", t.principal))?;
        let roles = match &t.role {
            None => Roles::REVIEW,
            Some(r) => r.roles(&t.principal)?,
        };
        let kind = match t.kind.as_deref() {
            // A requester's (or scraper's) token is an agent's or a service's unless it says
            // otherwise.
            None if roles.metrics && !roles.review => PrincipalKind::Service,
            None if !roles.review => PrincipalKind::Agent,
            None | Some("human") => PrincipalKind::Human,
            Some("agent") => PrincipalKind::Agent,
            Some("service") => PrincipalKind::Service,
            Some(other) => {
                return Err(format!("token of {}: unknown kind `{other}`", t.principal).into());
            }
        };
        if !roles.request && !t.on_behalf_of.is_empty() {
            return Err(format!(
                "token of {}: on_behalf_of is for requester tokens (role = \"request\")",
                t.principal
            )
            .into());
        }
        tokens = tokens.entry(Token {
            hash,
            principal: Principal::new(&t.principal, kind),
            roles,
            on_behalf_of: OnBehalfOf::from_list(t.on_behalf_of.iter().cloned()),
        });
    }
    Ok(tokens)
}

/// Answers 408 to a request that takes longer than `limit` (written here: a few lines, where
/// a dependency would add a crate for one layer).
async fn deadline(
    limit: Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (axum::http::StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
    }
}

/// How long a request may take beyond the longest long-poll before it is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn max_wait(config: &ServerConfig) -> Duration {
    config.max_wait_secs.map_or(
        approvals_backends::http::DEFAULT_MAX_WAIT,
        Duration::from_secs,
    )
}

pub(crate) fn serve(
    out: &Output,
    config: &Path,
    db_url: &str,
    listen: SocketAddr,
    audit_key: &Path,
    metrics_listen: Option<SocketAddr>,
) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        // Installed before the gate exists, so that every metric it records is kept.
        let prometheus = crate::telemetry::prometheus()?;
        let s = setup(config, db_url, audit_key, true).await?;
        // Console cookies are `Secure` unless the service is plain HTTP on loopback.
        let secure = s
            .config
            .public_url
            .as_deref()
            .map_or(!listen.ip().is_loopback(), |u| u.starts_with("https://"));
        let mut service = ApprovalService::new(s.gate.clone())
            .tokens(tokens(&s.config)?)
            .secure_cookies(secure)
            .max_wait(max_wait(&s.config))
            .audit_log(std::sync::Arc::new(s.db.clone()));
        if let Some(url) = &s.config.public_url {
            service = service.public_url(url);
        }
        if let Some(name) = &s.config.callback_secret_env {
            let secret = WebhookSecret::parse(&env(name)?).map_err(|e| format!("{name}: {e}"))?;
            service = service.callback_secret(secret);
        }
        if let Some(slack) = &s.config.slack {
            let secret = env(slack
                .signing_secret_env
                .as_deref()
                .unwrap_or("SLACK_SIGNING_SECRET"))?;
            let mut interactions = approvals_backends::slack::SlackInteractions::new(
                s.gate.clone(),
                approvals_backends::slack::SigningSecret::new(secret),
                slack_client(slack)?,
            )
            .match_users_by_email(slack.match_users_by_email);
            match &slack.team_id {
                Some(team) => interactions = interactions.workspace(team),
                None => eprintln!(
                    "approvals serve: warning: [server.slack] has no team_id: Slack user ids are matched from every workspace the app is installed in"
                ),
            }
            service = service.mount(interactions.router());
        }
        if let Some(t) = &s.config.teams {
            if let Some(app_id) = &t.app_id {
                let mut auth = approvals_backends::teams::BotAuth::new(app_id);
                if let Some(u) = &t.openid_metadata_url {
                    auth = auth.metadata_url(u);
                }
                let invokes = approvals_backends::teams::TeamsInvokes::new(s.gate.clone(), auth);
                service = service.mount(invokes.router());
            }
            if let Some(key) = &s.link_key {
                service = service.link_key(key.clone());
            }
        }
        // A long-poll holds its answer up to `max_wait`: the deadline is past that.
        let limit = max_wait(&s.config) + REQUEST_TIMEOUT;
        let metrics = crate::telemetry::router(
            s.gate.clone(),
            prometheus.clone(),
            Some(tokens(&s.config)?),
        );
        let app = service
            .router()
            .merge(metrics)
            .layer(axum::middleware::from_fn(move |req, next| deadline(limit, req, next)));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        out.line(&format!("listening on http://{addr}"));
        describe(&s, addr, db_url, config)?;
        let scraper = match metrics_listen {
            None => None,
            Some(at) => {
                let l = tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| format!("listen on {at} for metrics: {e}"))?;
                let at = l.local_addr().map_err(|e| e.to_string())?;
                tracing::info!("metrics at http://{at}/metrics (no token: keep this address private)");
                let open = crate::telemetry::router(s.gate.clone(), prometheus.clone(), None);
                Some(tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, open).await {
                        tracing::error!(error = %e, "the metrics listener stopped");
                    }
                }))
            }
        };
        let ticker = tend(s.gate.clone(), "approvals serve");
        // With each connection's address, so failed console sign-ins are limited per client.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        ticker.abort();
        if let Some(t) = scraper {
            t.abort();
        }
        s.gate.shutdown().await.map_err(|e| e.to_string())?;
        s.db.close().await;
        tracing::info!("stopped: the audit log is flushed and a final checkpoint signed");
        out.line("stopped: the audit log is flushed and a final checkpoint signed");
        Ok(())
    })
}

/// Tells the operator, at info, what this service is: where it listens, where reviewers go,
/// the database, the audit log's name, the channels and the tokens.
fn describe(s: &Setup, addr: SocketAddr, db_url: &str, config: &Path) -> Result<(), Failure> {
    let console = s.config.public_url.as_deref().map_or_else(
        || format!("http://{addr}/console/"),
        |u| format!("{}/console/", u.trim_end_matches('/')),
    );
    let mut channels = Vec::new();
    if let Some(slack) = &s.config.slack {
        channels.push(format!("slack ({})", slack.channel));
    }
    if let Some(t) = &s.config.teams {
        channels.push(match &t.app_id {
            Some(_) => "teams (bot)".to_owned(),
            None => "teams (webhook)".to_owned(),
        });
    }
    for w in &s.config.webhooks {
        channels.push(format!("webhook ({})", redacted(&w.url)));
    }
    let (mut review, mut request, mut scrape) = (0, 0, 0);
    for e in &s.config.tokens {
        let roles = match &e.role {
            None => Roles::REVIEW,
            Some(r) => r.roles(&e.principal)?,
        };
        review += usize::from(roles.review);
        request += usize::from(roles.request);
        scrape += usize::from(roles.metrics);
    }
    tracing::info!(listen = %addr, "approvals serve: API at http://{addr}/api/v1");
    tracing::info!("console at {console}");
    tracing::info!(
        "database {}; policy file {}",
        redacted(db_url),
        config.display()
    );
    tracing::info!(
        "audit log `{}`",
        s.config.origin.as_deref().unwrap_or(DEFAULT_ORIGIN)
    );
    if channels.is_empty() {
        tracing::info!("channels: none configured (reviewers use the console and the API)");
    } else {
        tracing::info!("channels: {}", channels.join(", "));
    }
    tracing::info!(
        "tokens: {review} reviewer, {request} requester, {scrape} metrics; /metrics needs a metrics token"
    );
    Ok(())
}

/// A URL without its password or query (which may hold secrets).
fn redacted(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    match (without_query.find("://"), without_query.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &without_query[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!(
                "{}{user}:***{}",
                &without_query[..scheme + 3],
                &without_query[at..]
            )
        }
        _ => without_query.to_owned(),
    }
}

/// Expiries, escalations and reminders for every request, waited on or not, each second.
pub(crate) fn tend(gate: Gate, who: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if let Err(e) = gate.run_due().await {
                eprintln!("{who}: due work failed: {e}");
            }
        }
    })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

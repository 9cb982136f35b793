//! HTTP (feature `http`): the REST API, reviewer authentication, and the one router every
//! inbound channel shares.
//!
//! [`ApprovalService::router`] serves:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/health` | `{"status":"ok"}` once the store answers; 503 otherwise |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 description of the API |
//! | `GET /api/v1/requests` | open requests; filters `policy`, `action`, `requester`, `reviewable`, `limit` |
//! | `POST /api/v1/requests` | a requester asks for approval of a call (any language, any pipeline) |
//! | `GET /api/v1/requests/{id}` | one request: context, reviews, what it still needs, who may still approve; `?wait=` long-polls |
//! | `POST /api/v1/requests/{id}/reviews` | approve or deny, with a bearer token or a signed decision |
//! | `POST /api/v1/requests/{id}/cancel` | cancel, by the requester's side only |
//! | `POST /api/v1/requests/{id}/start` | the requester takes the one permit of an approved call |
//! | `POST /api/v1/requests/{id}/finish` | the requester records how the call ended |
//! | `GET /console` | the web console: sign in with a token, review what waits |
//!
//! and every route of the channels [mounted](ApprovalService::mount) on it (Slack's
//! `/slack/interactions`, ...). Mount the result in an existing axum application, or serve it
//! alone.
//!
//! ```
//! use approvals_backends::http::{ApprovalService, ReviewerTokens, TokenHash};
//! # fn demo(gate: approvals_core::Gate) {
//! let tokens = ReviewerTokens::new().human(TokenHash::of("apv_alices-token"), "alice");
//! let api: axum::Router = ApprovalService::new(gate).tokens(tokens).router();
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my service" }))
//!     .merge(api);
//! # let _ = app;
//! # }
//! ```

mod api;
mod auth;
mod callback;
mod client;
mod console;
mod error;
mod links;
mod proof;
mod remote;
mod requests;
mod session;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use approvals_core::Gate;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use crate::retry::Retry;
pub use approvals_core::log::AuditLog;
pub use auth::{
    OnBehalfOf, ReviewerTokens, Roles, TOKEN_PREFIX, TokenEntry, TokenHash, Tokens, generate_token,
};
pub use callback::Callbacks;
pub use client::{Answer, Call, ClientError, ServiceClient};
pub use error::ApiError;
pub use links::{Link, LinkError, LinkKey};
pub use remote::RemoteGate;
pub use webhook::{TOLERANCE_SECS, WebhookApprover, WebhookSecret, WebhookVerifyError};

/// The largest request body the API accepts: 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// How far from now a signed decision's time may be, either side: 5 minutes by default.
pub const DEFAULT_SIGNATURE_WINDOW: Duration = Duration::from_secs(300);

/// The longest a long-poll (`wait`) holds its answer by default: 60 seconds.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// The API paths and methods, as the OpenAPI document must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/requests"),
    ("post", "/api/v1/requests"),
    ("get", "/api/v1/requests/{id}"),
    ("post", "/api/v1/requests/{id}/reviews"),
    ("post", "/api/v1/requests/{id}/cancel"),
    ("post", "/api/v1/requests/{id}/start"),
    ("post", "/api/v1/requests/{id}/finish"),
];

/// The approval service's HTTP side for one gate: the REST API, and the routes of the
/// channels mounted on it, as one [`Router`].
#[derive(Clone)]
pub struct ApprovalService {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    gate: Gate,
    tokens: Tokens,
    signatures: Arc<auth::SignatureChecker>,
    channels: Vec<Router>,
    sign_ins: Arc<session::SignInLimit>,
    secure_cookies: bool,
    audit_log: Option<Arc<dyn AuditLog>>,
    link_key: Option<LinkKey>,
    used_links: Arc<links::UsedLinks>,
    /// Where reviewers reach the service (for console links in answers).
    public_url: Option<String>,
    /// The longest a long-poll holds its answer.
    max_wait: Duration,
    /// Whether requests may carry a callback URL (a callback secret is set).
    callbacks: bool,
}

impl std::fmt::Debug for ApprovalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalService")
            .field("tokens", &self.inner.tokens)
            .field("window", &self.inner.signatures.window)
            .field("channels", &self.inner.channels.len())
            .finish_non_exhaustive()
    }
}

impl ApprovalService {
    /// The service for `gate`, with no tokens (signed decisions only) and the default
    /// signature window.
    pub fn new(gate: Gate) -> Self {
        Self {
            inner: Arc::new(Inner {
                gate,
                tokens: Tokens::new(),
                signatures: Arc::new(auth::SignatureChecker::new(DEFAULT_SIGNATURE_WINDOW)),
                channels: Vec::new(),
                sign_ins: Arc::new(session::SignInLimit::default()),
                secure_cookies: true,
                audit_log: None,
                link_key: None,
                used_links: Arc::new(links::UsedLinks::default()),
                public_url: None,
                max_wait: DEFAULT_MAX_WAIT,
                callbacks: false,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// The bearer tokens of reviewers and requesters.
    pub fn tokens(self, tokens: Tokens) -> Self {
        self.edit(|i| i.tokens = tokens)
    }

    /// Where reviewers reach this service (`https://approvals.example.com`): answers then
    /// carry each request's console link.
    pub fn public_url(self, url: impl Into<String>) -> Self {
        let url = url.into().trim_end_matches('/').to_owned();
        self.edit(|i| i.public_url = Some(url))
    }

    /// The longest a long-poll (`wait`) holds its answer; a longer `wait` is cut to it.
    pub fn max_wait(self, d: Duration) -> Self {
        self.edit(|i| i.max_wait = d)
    }

    /// Lets requests carry a `callback_url`: their decision is POSTed there, signed with
    /// `secret` per Standard Webhooks ([`Callbacks`]). Registers the sender on the gate, so
    /// call it once per gate.
    pub fn callback_secret(self, secret: WebhookSecret) -> Self {
        self.inner.gate.observe(Arc::new(Callbacks::new(secret)));
        self.edit(|i| i.callbacks = true)
    }

    /// How far from now a signed decision's time may be, either side.
    pub fn signature_window(self, window: Duration) -> Self {
        self.edit(|i| i.signatures = Arc::new(auth::SignatureChecker::new(window)))
    }

    /// Adds a channel's inbound routes (for example
    /// `SlackInteractions::router()`), served by the same router.
    pub fn mount(self, routes: Router) -> Self {
        self.edit(|i| i.channels.push(routes))
    }

    /// Whether the console's cookies are marked `Secure` (sent over HTTPS only): on by
    /// default; turn it off only for plain-HTTP development on loopback.
    pub fn secure_cookies(self, secure: bool) -> Self {
        self.edit(|i| i.secure_cookies = secure)
    }

    /// Where to read the audit log from, so that `GET /api/v1/requests/{id}` carries the
    /// request's records with their inclusion proofs.
    pub fn audit_log(self, log: Arc<dyn AuditLog>) -> Self {
        self.edit(|i| i.audit_log = Some(log))
    }

    /// Accepts signed links to the console's approval page made with `key` (the links a
    /// Teams webhook card's buttons open).
    pub fn link_key(self, key: LinkKey) -> Self {
        self.edit(|i| i.link_key = Some(key))
    }

    /// The gate it serves.
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// The router: the API under `/api/v1` and every mounted channel's routes.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/api/v1/health", get(api::health))
            .route("/api/v1/openapi.json", get(api::openapi))
            .route("/api/v1/requests", get(api::list).post(requests::create))
            .route("/api/v1/requests/{id}", get(api::get_one))
            .route("/api/v1/requests/{id}/reviews", post(api::review))
            .route("/api/v1/requests/{id}/cancel", post(api::cancel))
            .route("/api/v1/requests/{id}/start", post(requests::start))
            .route("/api/v1/requests/{id}/finish", post(requests::finish))
            .route("/api/v1/{*rest}", axum::routing::any(api::not_found))
            .route("/console", get(console::index))
            .route(
                "/console/",
                get(|| async { axum::response::Redirect::permanent("/console") }),
            )
            .route("/console/style.css", get(console::style))
            .route("/console/history", get(console::history))
            .route(
                "/console/links/{token}",
                get(console::link).post(console::link_confirm),
            )
            .route("/console/login", post(console::login))
            .route("/console/logout", post(console::logout))
            .route("/console/requests/{id}", get(console::detail))
            .route("/console/requests/{id}/review", post(console::review))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.clone());
        self.inner
            .channels
            .iter()
            .cloned()
            .fold(api, |app, ch| app.merge(ch))
    }
}

//! The console's sessions: kept in the store, so every replica behind a load balancer knows a
//! reviewer who signed in on any of them; read by the [`SignedIn`] extractor every signed-in
//! page takes; sign-in attempts limited per client.
//!
//! The cookie holds 256 random bits; the store keeps only their SHA-256
//! ([`Session::key`]), so whoever reads the database cannot sign in with what they read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use approvals_core::store::Session;
use approvals_core::{Principal, StoreError};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use rand_core::{OsRng, RngCore as _};

use super::ApprovalService;

pub(crate) const SESSION_COOKIE: &str = "approvals_session";
pub(crate) const LOGIN_COOKIE: &str = "approvals_login";
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// 256 random bits, hex.
pub(crate) fn random() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A reviewer with a live session: the first argument of every signed-in page. Without one,
/// a page read (GET) answers with the sign-in form, which returns to it; a form sent (POST)
/// is sent back to the console's front page.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    /// The store's key of the session.
    pub(crate) key: String,
    pub(crate) session: Session,
}

impl FromRequestParts<ApprovalService> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &ApprovalService,
    ) -> Result<Self, Self::Rejection> {
        match s.signed_in(&parts.headers).await {
            Ok(Some(who)) => Ok(who),
            Ok(None) if parts.method == Method::GET || parts.method == Method::HEAD => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/console", |p| p.as_str());
                let status = if next == "/console" {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                };
                Err(super::console::login_page_to(s, status, None, next))
            }
            Ok(None) => Err(Redirect::to("/console").into_response()),
            Err(e) => Err(super::console::unavailable(&e)),
        }
    }
}

/// The signed-in reviewer, if any, for pages that also serve strangers (a link).
pub(crate) struct MaybeSignedIn(pub(crate) Option<SignedIn>);

impl FromRequestParts<ApprovalService> for MaybeSignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &ApprovalService,
    ) -> Result<Self, Self::Rejection> {
        s.signed_in(&parts.headers)
            .await
            .map(MaybeSignedIn)
            .map_err(|e| super::console::unavailable(&e))
    }
}

/// The client's address, when the server was started with connection info.
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

impl ApprovalService {
    /// A console cookie, scoped to the console; `Secure` unless turned off for plain-HTTP
    /// development.
    pub(crate) fn cookie(
        &self,
        name: &'static str,
        value: String,
        max_age: Duration,
    ) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/console")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.inner.secure_cookies)
            .max_age(time_duration(max_age))
            .build()
    }

    /// The reviewer whose session cookie `headers` carry, if that session is live.
    pub(crate) async fn signed_in(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<SignedIn>, StoreError> {
        let jar = CookieJar::from_headers(headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Ok(None);
        };
        let key = Session::key(cookie.value());
        let now = self.gate().clock().now();
        Ok(self
            .gate()
            .store()
            .session(&key, now)
            .await?
            .map(|session| SignedIn { key, session }))
    }

    /// Starts a session for `principal`; returns the cookie that carries it.
    pub(crate) async fn start_session(
        &self,
        principal: Principal,
    ) -> Result<Cookie<'static>, StoreError> {
        let value = random();
        let now = self.gate().clock().now();
        let session = Session {
            principal,
            csrf: random(),
            expires_at: now.saturating_add(SESSION_LIFETIME),
        };
        self.gate()
            .store()
            .put_session(&Session::key(&value), &session)
            .await?;
        Ok(self.cookie(SESSION_COOKIE, value, SESSION_LIFETIME))
    }

    /// Ends a session (signing out), on every replica at once.
    pub(crate) async fn end_session(&self, who: &SignedIn) -> Result<(), StoreError> {
        let now = self.gate().clock().now();
        self.gate().store().end_session(&who.key, now).await
    }
}

fn time_duration(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Failed sign-ins, limited per client address: at most [`SignInLimit::MAX_FAILURES`] in
/// [`SignInLimit::WINDOW`]; then the client waits out the window. Tokens are 256 random bits,
/// so guessing is hopeless anyway; the limit keeps the attempt from costing anything and the
/// log from filling. Kept in each process's memory: it limits per replica.
#[derive(Debug, Default)]
pub(crate) struct SignInLimit {
    failures: Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
}

impl SignInLimit {
    pub(crate) const MAX_FAILURES: u32 = 10;
    pub(crate) const WINDOW: Duration = Duration::from_secs(60);

    /// How long `client` must wait before trying again, if it must.
    pub(crate) fn wait(&self, client: Option<IpAddr>) -> Option<Duration> {
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, (_, since)| now.duration_since(*since) < Self::WINDOW);
        let (count, since) = map.get(&client)?;
        (*count >= Self::MAX_FAILURES)
            .then(|| Self::WINDOW.saturating_sub(now.duration_since(*since)))
    }

    /// Counts a failed sign-in of `client`.
    pub(crate) fn failed(&self, client: Option<IpAddr>) {
        let mut map = self.lock();
        let entry = map.entry(client).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

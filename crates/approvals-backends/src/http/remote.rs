//! A gate for a Rust process with no database of its own: `#[requires_approval]` unchanged,
//! every call judged by a central `approvals serve` over its requester API.

use std::sync::Arc;
use std::time::Duration;

use approvals_core::view::{RequestView, Status};
use approvals_core::{
    Action, CallOptions, Context, Denial, Error, Gate, Permit, PolicyError, Remote, RequestId,
};
use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A [`Remote`] that asks an approval service over HTTP (`POST /api/v1/requests`, long-polls,
/// `/start`, `/finish`) with a requester token.
///
/// The service judges each call under its policy, with its store, audit log and channels; the
/// call's identity is the token's principal, whatever the local context names. A process
/// restarted mid-wait makes the identical call again and re-attaches to its request, so it
/// neither asks twice nor runs twice. Every failure to reach the service (after a few
/// retries) fails the call closed with [`Error::Remote`], naming the service.
///
/// ```no_run
/// use approvals_backends::http::RemoteGate;
/// let gate = RemoteGate::new("https://approvals.example.com", std::env::var("APPROVALS_TOKEN").unwrap())
///     .into_gate();
/// // approvals::scope::with_gate(gate, ...) or set_global_gate(gate)
/// # let _ = gate;
/// ```
#[derive(Clone)]
pub struct RemoteGate {
    base: String,
    token: String,
    http: reqwest::Client,
    poll: Duration,
    attempts: u32,
}

impl std::fmt::Debug for RemoteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteGate")
            .field("service", &self.base)
            .finish_non_exhaustive()
    }
}

/// One answer of the service: its HTTP status and JSON body.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl RemoteGate {
    /// Asks the service at `base` (`https://approvals.example.com`) with a requester
    /// `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("approvals/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            poll: Duration::from_secs(30),
            attempts: 4,
        }
    }

    /// How long each long-poll asks the service to hold its answer (default 30 s; the
    /// service may cap it).
    pub fn poll(mut self, d: Duration) -> Self {
        self.poll = d;
        self
    }

    /// How many times a request that could not reach the service is tried before the call
    /// fails closed (default 4, with pauses of 0.5, 1 and 2 s between).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// A gate whose every call this service judges.
    pub fn into_gate(self) -> Gate {
        // A remote gate needs nothing else, so building cannot fail; fall back to a gate
        // that refuses every call rather than panic, should it ever.
        Gate::builder()
            .remote(Arc::new(self))
            .build()
            .unwrap_or_else(|e| unreachable!("a remote gate needs no parts: {e}"))
    }

    fn failed(&self, message: impl Into<String>) -> Error {
        Error::Remote {
            service: self.base.clone(),
            message: message.into(),
        }
    }

    /// Sends one request, retrying what could not reach the service (and 502/503/504) with
    /// backoff; answers whatever the service said otherwise.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Error> {
        let url = format!("{}{path}", self.base);
        let mut pause = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                // The long-poll may hold the answer up to `poll`; more than that is a stall.
                .timeout(self.poll + Duration::from_secs(30));
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if matches!(r.status().as_u16(), 502..=504) => {
                    last = format!("{url} answered {}", r.status());
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.json::<Value>().await.map_err(|e| {
                        self.failed(format!(
                            "{url} answered {status} with a body that is not JSON: {e}"
                        ))
                    })?;
                    return Ok(Answer { status, body });
                }
                Err(e) => last = format!("{url}: {e}"),
            }
            if attempt < self.attempts {
                tracing::warn!(attempt, error = %last, "approval service unreachable; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Err(self.failed(format!(
            "unreachable after {} attempts: {last}",
            self.attempts
        )))
    }

    /// The error the service's answer stands for, or the request view it carries.
    fn read(&self, a: Answer) -> Result<Value, Error> {
        let code = a.body["error"]["code"].as_str().unwrap_or("");
        let message = a.body["error"]["message"].as_str().unwrap_or("").to_owned();
        let request = || {
            a.body["request"]["request"]["id"]
                .as_str()
                .and_then(|s| s.parse::<RequestId>().ok())
        };
        if a.status.is_success() {
            return Ok(a.body);
        }
        Err(match code {
            "denied" => match serde_json::from_value::<Denial>(a.body["denial"].clone()) {
                Ok(d) => Error::Denied(d),
                Err(_) => self.failed(format!(
                    "denied, in an answer that could not be read: {message}"
                )),
            },
            "expired" => match request() {
                Some(id) => Error::Expired {
                    request_id: id,
                    expires_at: a.body["request"]["request"]["expires_at"]
                        .as_str()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_else(approvals_core::Timestamp::now),
                },
                None => self.failed(message),
            },
            "cancelled" => match request() {
                Some(id) => Error::Cancelled {
                    request_id: id,
                    reason: message,
                },
                None => self.failed(message),
            },
            "unknown_policy" => {
                let name = message.split('`').nth(1).unwrap_or_default().to_owned();
                Error::Policy(PolicyError::UnknownPolicy(name))
            }
            _ => self.failed(format!("{} ({code}): {message}", a.status)),
        })
    }

    fn view(&self, body: Value) -> Result<RequestView, Error> {
        serde_json::from_value(body)
            .map_err(|e| self.failed(format!("the answer is not a request: {e}")))
    }
}

#[async_trait]
impl Remote for RemoteGate {
    async fn authorize(
        &self,
        gate: &Gate,
        action: Action,
        context: Context,
        options: CallOptions,
    ) -> Result<Permit, Error> {
        let started = std::time::Instant::now();
        // Each poll waits no longer than the caller's timeout has left.
        let poll_for = |started: std::time::Instant| {
            let left = options
                .timeout
                .map_or(self.poll, |t| t.saturating_sub(started.elapsed()));
            if options.defer {
                Duration::ZERO
            } else {
                left.min(self.poll)
            }
        };
        let body = json!({
            "action": action.name,
            "policy": action.policy,
            "args": action.args,
            "on_behalf_of": context.on_behalf_of.as_ref().map(|p| p.id.clone()),
            "reason": context.reason,
            "trigger": context.trigger,
            "labels": context.labels,
            "wait": poll_for(started).as_secs_f64(),
        });
        let answer = self
            .send(reqwest::Method::POST, "/api/v1/requests", Some(&body))
            .await?;
        let mut body = self.read(answer)?;
        loop {
            if body["status"] == "allowed" {
                return Ok(Permit::allowed());
            }
            let view = self.view(body)?;
            let id = view.request.id;
            match view.status {
                Status::Approved => {
                    let started = self
                        .send(
                            reqwest::Method::POST,
                            &format!("/api/v1/requests/{id}/start"),
                            None,
                        )
                        .await?;
                    if started.body["error"]["code"] == "already_started" {
                        return Err(Error::AlreadyRan { request_id: id });
                    }
                    self.read(started)?;
                    return Ok(Permit::remote(gate, &view.request));
                }
                Status::Pending => {}
                // A decided-against request the service answered 200 for: read it again
                // through the POST, which reports it (never reached in practice).
                other => {
                    return Err(self.failed(format!("request {id} is {other}")));
                }
            }
            if options.defer {
                return Err(Error::Pending { request_id: id });
            }
            let wait = poll_for(started);
            if options.timeout.is_some() && wait.is_zero() {
                return Err(Error::TimedOut {
                    request_id: id,
                    waited: started.elapsed(),
                });
            }
            let polled = self
                .send(
                    reqwest::Method::GET,
                    &format!("/api/v1/requests/{id}?wait={}", wait.as_secs_f64()),
                    None,
                )
                .await?;
            let polled = self.read(polled)?;
            let view = self.view(polled)?;
            body = if matches!(
                view.status,
                Status::Denied | Status::Expired | Status::Cancelled
            ) {
                // The POST of the identical call joins it and reports the outcome.
                let again = self
                    .send(
                        reqwest::Method::POST,
                        "/api/v1/requests",
                        Some(&json!({
                            "action": action.name,
                            "policy": action.policy,
                            "args": action.args,
                            "on_behalf_of": context.on_behalf_of.as_ref().map(|p| p.id.clone()),
                            "reason": context.reason,
                            "trigger": context.trigger,
                            "labels": context.labels,
                        })),
                    )
                    .await?;
                self.read(again)?
            } else {
                serde_json::to_value(view).map_err(|e| self.failed(e.to_string()))?
            };
        }
    }

    async fn finish(&self, id: RequestId, outcome: Result<(), String>) -> Result<(), Error> {
        let body = match outcome {
            Ok(()) => json!({ "ok": true }),
            Err(e) => json!({ "ok": false, "summary": e }),
        };
        let answer = self
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/requests/{id}/finish"),
                Some(&body),
            )
            .await?;
        self.read(answer).map(drop)
    }

    fn poll(&self) -> Duration {
        self.poll
    }
}

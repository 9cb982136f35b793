//! A gate for a Rust process with no database of its own: `#[requires_approval]` unchanged,
//! every call judged by a central `approvals serve` over its requester API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use approvals_core::view::{RequestView, Status};
use approvals_core::{
    Action, CallOptions, Context, Denial, Error, Gate, Permit, PolicyError, Remote, RequestId,
};
use async_trait::async_trait;

use super::client::{Answer, Call, ClientError, ServiceClient};

/// A [`Remote`] that asks an approval service over HTTP (`POST /api/v1/requests`,
/// long-polls, `/start`, `/finish`) with a requester token.
///
/// The service judges each call under its policy, with its store, audit log and channels;
/// the requester is the token's principal, whatever the local context names. A process
/// restarted mid-wait makes the identical call again and joins its request, so it neither
/// asks twice nor runs twice. Every failure to reach the service (after a few retries)
/// fails the call closed with [`Error::Remote`], naming the service.
///
/// ```no_run
/// use approvals_backends::http::RemoteGate;
/// let gate = RemoteGate::new("https://approvals.example.com", std::env::var("APPROVALS_TOKEN").unwrap())
///     .into_gate();
/// // approvals::scope::with_gate(gate, ...) or set_global_gate(gate)
/// # let _ = gate;
/// ```
#[derive(Debug, Clone)]
pub struct RemoteGate {
    client: ServiceClient,
    poll: Duration,
}

impl RemoteGate {
    /// Asks the service at `base` (`https://approvals.example.com`) with a requester
    /// `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            client: ServiceClient::new(base, token),
            poll: Duration::from_secs(30),
        }
    }

    /// How long each long-poll asks the service to hold its answer (default 30 s; the
    /// service may cap it).
    pub fn poll(mut self, d: Duration) -> Self {
        self.poll = d;
        self
    }

    /// How many times a request that could not reach the service is tried before the call
    /// fails closed (default 4, 0.5 to 2 s apart).
    pub fn attempts(mut self, n: u32) -> Self {
        self.client = self.client.retry(super::Retry {
            initial: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
            max_attempts: n.max(1),
            max_total: Duration::from_secs(30),
        });
        self
    }

    /// A gate whose every call this service judges.
    pub fn into_gate(self) -> Gate {
        // A remote gate needs no parts of its own, so building it cannot fail.
        Gate::builder()
            .remote(Arc::new(self))
            .build()
            .unwrap_or_else(|e| unreachable!("a remote gate needs no parts: {e}"))
    }

    fn failed(&self, message: impl Into<String>) -> Error {
        Error::Remote {
            service: self.client.service().to_owned(),
            message: message.into(),
        }
    }

    fn reach(&self, e: ClientError) -> Error {
        self.failed(e.to_string())
    }

    /// The request an answer carries, or the error it stands for.
    fn read(&self, a: Answer) -> Result<Step, Error> {
        if a.status == 200 && a.body["status"] == "allowed" {
            return Ok(Step::Allowed);
        }
        if matches!(a.status, 200 | 202) {
            let view: RequestView = serde_json::from_value(a.body)
                .map_err(|e| self.failed(format!("the answer is not a request: {e}")))?;
            return Ok(Step::Request(Box::new(view)));
        }
        let in_request = || {
            a.body["request"]["request"]["id"]
                .as_str()
                .and_then(|s| s.parse::<RequestId>().ok())
        };
        let message = a.message().to_owned();
        Err(match a.code().unwrap_or("") {
            "denied" => match serde_json::from_value::<Denial>(a.body["denial"].clone()) {
                Ok(d) => Error::Denied(d),
                Err(_) => self.failed(format!(
                    "denied, in an answer that could not be read: {message}"
                )),
            },
            "expired" => match in_request() {
                Some(id) => Error::Expired {
                    request_id: id,
                    expires_at: a.body["request"]["request"]["expires_at"]
                        .as_str()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_else(approvals_core::Timestamp::now),
                },
                None => self.failed(message),
            },
            "cancelled" => match in_request() {
                Some(id) => Error::Cancelled {
                    request_id: id,
                    reason: message,
                },
                None => self.failed(message),
            },
            "changes_requested" => {
                let said = |k: &str| a.body["changes"][k].as_str().map(str::to_owned);
                match (in_request(), said("by"), said("message")) {
                    (Some(id), Some(by), Some(message)) => Error::ChangesRequested {
                        request_id: id,
                        by,
                        message,
                    },
                    _ => self.failed(message),
                }
            }
            "unknown_policy" => Error::Policy(PolicyError::UnknownPolicy(
                message.split('`').nth(1).unwrap_or_default().to_owned(),
            )),
            code => self.failed(format!("{} ({code}): {message}", a.status)),
        })
    }
}

/// Where a call stands, as the service answered.
enum Step {
    Allowed,
    Request(Box<RequestView>),
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
        let started = Instant::now();
        // Each poll waits no longer than the caller's timeout has left.
        let poll_for = || {
            if options.defer {
                return Duration::ZERO;
            }
            let left = options
                .timeout
                .map_or(self.poll, |t| t.saturating_sub(started.elapsed()));
            left.min(self.poll)
        };
        let call = Call {
            action: action.name.to_string(),
            policy: action.policy.to_string(),
            args: action.args.as_object().cloned().unwrap_or_default(),
            on_behalf_of: context.on_behalf_of.as_ref().map(|p| p.id.to_string()),
            reason: context.reason.clone(),
            trigger: context.trigger.clone(),
            labels: context.labels.clone(),
            editable: action.editable.clone(),
        };
        let mut step = self.read(
            self.client
                .ask(&call, poll_for())
                .await
                .map_err(|e| self.reach(e))?,
        )?;
        let mut asked_again = false;
        let mut following = None;
        loop {
            let view = match step {
                Step::Allowed => return Ok(Permit::allowed()),
                Step::Request(view) => view,
            };
            let id = view.request.id;
            // A reviewer's edit is another request: asking again once is allowed for it too.
            if following.replace(id).is_some_and(|before| before != id) {
                asked_again = false;
            }
            match view.status {
                Status::Approved => {
                    let started = self
                        .client
                        .start(&id.to_string())
                        .await
                        .map_err(|e| self.reach(e))?;
                    if started.code() == Some("already_started") {
                        return Err(Error::AlreadyRan { request_id: id });
                    }
                    self.read(started)?;
                    return Ok(Permit::remote(gate, &view.request));
                }
                Status::Pending => {}
                // Decided against: the identical call joins it and is told (and the service
                // records that this caller knows).
                other if asked_again => {
                    return Err(self.failed(format!("request {id} is {other}")));
                }
                _ => {
                    asked_again = true;
                    let again = self
                        .client
                        .ask(&call, Duration::ZERO)
                        .await
                        .map_err(|e| self.reach(e))?;
                    step = self.read(again)?;
                    continue;
                }
            }
            if options.defer {
                return Err(Error::Pending { request_id: id });
            }
            let wait = poll_for();
            if options.timeout.is_some() && wait.is_zero() {
                return Err(Error::TimedOut {
                    request_id: id,
                    waited: started.elapsed(),
                });
            }
            let polled = self
                .client
                .poll(&id.to_string(), wait)
                .await
                .map_err(|e| self.reach(e))?;
            step = self.read(polled)?;
        }
    }

    async fn finish(&self, id: RequestId, outcome: Result<(), String>) -> Result<(), Error> {
        let (ok, summary) = match &outcome {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e.as_str())),
        };
        let answer = self
            .client
            .finish(&id.to_string(), ok, summary)
            .await
            .map_err(|e| self.reach(e))?;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(self.failed(format!(
                "{} ({}): {}",
                answer.status,
                answer.code().unwrap_or(""),
                answer.message()
            )))
        }
    }

    fn poll(&self) -> Duration {
        self.poll
    }
}

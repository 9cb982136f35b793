//! The client side of the requester API: one home for what the remote gate and `approvals
//! exec` say to a service, and how they ride out its absence.

use std::time::Duration;

use serde_json::{Value, json};

use crate::retry::{Attempt, Retry, retry_after};

/// A call to judge, as `POST /api/v1/requests` takes it.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// What is called.
    pub action: String,
    /// The policy that judges it.
    pub policy: String,
    /// The arguments, by name.
    pub args: serde_json::Map<String, Value>,
    /// Whom the requester acts for.
    pub on_behalf_of: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// What started it.
    pub trigger: Option<String>,
    /// Labels (environment, run).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Arguments a reviewer may change when approving.
    pub editable: Vec<String>,
}

impl Call {
    /// The request body, holding the answer up to `wait`.
    fn body(&self, wait: Duration) -> Value {
        let mut body = json!({
            "action": self.action,
            "policy": self.policy,
            "args": self.args,
            "on_behalf_of": self.on_behalf_of,
            "reason": self.reason,
            "trigger": self.trigger,
            "labels": self.labels,
            "wait": wait.as_secs_f64(),
        });
        if !self.editable.is_empty() {
            body["editable"] = json!(self.editable);
        }
        body
    }
}

/// What the service answered: its HTTP status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Answer {
    /// The error code of a refusal (`denied`, `expired`, ...), if this is one.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// The refusal's message, or empty.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

/// The service could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// It could not be reached (or answered 5xx) within the retry bounds.
    #[error("{service} is unreachable: {message}")]
    Unreachable {
        /// The service.
        service: String,
        /// The last failure.
        message: String,
    },
    /// It answered something that is not the API's JSON.
    #[error("{service} answered something that could not be read: {message}")]
    Unreadable {
        /// The service.
        service: String,
        /// What was wrong.
        message: String,
    },
}

/// A requester's client of an approval service: a base URL, a token, and a [`Retry`] for
/// when the service cannot be reached.
///
/// ```
/// use approvals_backends::http::{Retry, ServiceClient};
/// let client = ServiceClient::new("https://approvals.example.com", "apv_…")
///     .retry(Retry::for_up_to(std::time::Duration::from_secs(60)));
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct ServiceClient {
    base: String,
    token: String,
    http: reqwest::Client,
    retry: Retry,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.base)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A client of the service at `base` with a requester `token`; 4 attempts, 0.5 to 2 s
    /// apart, when it cannot be reached.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("approvals/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            retry: Retry {
                initial: Duration::from_millis(500),
                max_delay: Duration::from_secs(2),
                max_attempts: 4,
                max_total: Duration::from_secs(30),
            },
        }
    }

    /// How a request that cannot reach the service is retried.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The service's URL.
    pub fn service(&self) -> &str {
        &self.base
    }

    /// Sends one request: retried while the service cannot be reached or answers 502, 503
    /// or 504; any other answer is returned as it is. `hold` is how long the service may hold
    /// the answer (a long-poll), added to the time allowed.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        hold: Duration,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let unreadable = |message: String| ClientError::Unreadable {
            service: self.base.clone(),
            message,
        };
        let answered = self
            .retry
            .run(&url, |_| async {
                let mut req = self
                    .http
                    .request(method.clone(), &url)
                    .bearer_auth(&self.token)
                    .timeout(hold + Duration::from_secs(30));
                if let Some(b) = body {
                    req = req.json(b);
                }
                match req.send().await {
                    Ok(r) if matches!(r.status().as_u16(), 502..=504) => {
                        let why = format!("{url} answered {}", r.status());
                        match retry_after(r.headers()) {
                            Some(wait) => Attempt::After(why, wait),
                            None => Attempt::Again(why),
                        }
                    }
                    Ok(r) => Attempt::Done(r),
                    Err(e) => Attempt::Again(format!("{url}: {e}")),
                }
            })
            .await;
        let response = match answered {
            Ok((r, _)) => r,
            Err(stopped) => {
                return Err(ClientError::Unreachable {
                    service: self.base.clone(),
                    message: stopped.to_string(),
                });
            }
        };
        let status = response.status().as_u16();
        let body = response
            .json::<Value>()
            .await
            .map_err(|e| unreadable(format!("{url} answered {status} with no JSON: {e}")))?;
        Ok(Answer { status, body })
    }

    /// `POST /api/v1/requests`: asks for `call`, holding the answer up to `wait`.
    pub async fn ask(&self, call: &Call, wait: Duration) -> Result<Answer, ClientError> {
        self.send(
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(&call.body(wait)),
            wait,
        )
        .await
    }

    /// `GET /api/v1/requests/{id}?wait=…`: the request once decided, or after `wait`.
    pub async fn poll(&self, id: &str, wait: Duration) -> Result<Answer, ClientError> {
        self.send(
            reqwest::Method::GET,
            &format!("/api/v1/requests/{id}?wait={}", wait.as_secs_f64()),
            None,
            wait,
        )
        .await
    }

    /// `POST /api/v1/requests/{id}/start`: takes the call's one permit.
    pub async fn start(&self, id: &str) -> Result<Answer, ClientError> {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/start"),
            None,
            Duration::ZERO,
        )
        .await
    }

    /// `POST /api/v1/requests/{id}/finish`: how the call ended.
    pub async fn finish(
        &self,
        id: &str,
        ok: bool,
        summary: Option<&str>,
    ) -> Result<Answer, ClientError> {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/finish"),
            Some(&json!({ "ok": ok, "summary": summary })),
            Duration::ZERO,
        )
        .await
    }
}

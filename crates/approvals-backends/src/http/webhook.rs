//! Outbound webhooks: each request POSTed as JSON, signed per the Standard Webhooks spec,
//! retried with exponential backoff within a bounded total, with a callback URL where the
//! receiver posts the decision back through the API.

use std::time::Duration;

use approvals_core::{ApprovalRequest, Approver, ApproverError, Decision, Delivery, Gate, tally};
use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::retry::{Attempt, Retry, retry_after};

/// How far `webhook-timestamp` may be from the receiver's clock (the spec's advice).
pub const TOLERANCE_SECS: i64 = 300;

/// A Standard Webhooks signing secret: `whsec_` followed by base64 of the key. Its `Debug`
/// does not show it.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// Why a received webhook is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookVerifyError {
    /// A `webhook-*` header is missing.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// `webhook-timestamp` is not a number of seconds.
    #[error("webhook-timestamp is not a unix time")]
    BadTimestamp,
    /// Too far from now.
    #[error("webhook-timestamp is {skew} s from now (at most {TOLERANCE_SECS} s allowed)")]
    Stale {
        /// Seconds between the timestamp and now.
        skew: i64,
    },
    /// No `v1,` signature in the header matches.
    #[error("no webhook-signature matches the message")]
    Mismatch,
}

impl WebhookSecret {
    /// Reads a secret in the spec's form, `whsec_<base64>`.
    ///
    /// ```
    /// use approvals_backends::http::WebhookSecret;
    /// // The Standard Webhooks spec's own example.
    /// let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    /// assert_eq!(
    ///     secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
    ///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    /// );
    /// ```
    pub fn parse(s: &str) -> Result<Self, String> {
        let b64 = s.strip_prefix("whsec_").unwrap_or(s);
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("a webhook secret is whsec_<base64>: {e}"))?;
        if key.len() < 24 {
            return Err("a webhook secret needs at least 24 bytes of key".into());
        }
        Ok(Self { key })
    }

    /// A new random secret (32 bytes), in its `whsec_` form and parsed.
    pub fn generate() -> (String, Self) {
        use rand_core::RngCore as _;
        let mut key = vec![0u8; 32];
        rand_core::OsRng.fill_bytes(&mut key);
        let text = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(&key)
        );
        (text, Self { key })
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for a message: `v1,<base64 HMAC-SHA256>` over
    /// `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        )
    }

    /// Verifies a received webhook, as a receiver does: the timestamp within
    /// [`TOLERANCE_SECS`] of `now`, and one of the space-separated `v1,` signatures
    /// matching, compared in constant time.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookVerifyError> {
        let id = id.ok_or(WebhookVerifyError::Missing("webhook-id"))?;
        let ts = timestamp.ok_or(WebhookVerifyError::Missing("webhook-timestamp"))?;
        let sigs = signatures.ok_or(WebhookVerifyError::Missing("webhook-signature"))?;
        let ts: i64 = ts
            .trim()
            .parse()
            .map_err(|_| WebhookVerifyError::BadTimestamp)?;
        let skew = now - ts;
        if skew.abs() > TOLERANCE_SECS {
            return Err(WebhookVerifyError::Stale { skew });
        }
        for candidate in sigs.split(' ') {
            let Some(b64) = candidate.strip_prefix("v1,") else {
                continue;
            };
            let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                continue;
            };
            if self.mac(id, ts, body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
        Err(WebhookVerifyError::Mismatch)
    }
}

/// One receiver.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    secret: WebhookSecret,
}

/// Sends each request to webhook receivers, signed per the Standard Webhooks spec.
///
/// The body is `{"type": "approval.requested", "timestamp": ..., "data": {...}}`, where
/// `data` holds the request as the API shows it and `callback_url`, where the receiver
/// posts the decision: `POST {callback_url}` with a bearer token or a signed decision, as
/// for any API review. When the request is decided, an `approval.decided` message follows
/// (best effort). Every receiver must accept the request (2xx); one that is down is retried
/// per [`Retry`], and then the delivery fails: the requirement's `if_undelivered` decides
/// whether the call fails closed or waits on its other channels. Nothing is ever approved
/// because a receiver failed.
///
/// ```
/// use approvals_backends::http::{WebhookApprover, WebhookSecret};
/// let (secret_text, secret) = WebhookSecret::generate();
/// let hooks = WebhookApprover::new("https://approvals.example.com")
///     .endpoint("https://ci.example.com/hooks/approvals", secret);
/// # let _ = (hooks, secret_text);
/// ```
#[derive(Debug, Clone)]
pub struct WebhookApprover {
    name: String,
    public_base: String,
    endpoints: Vec<Endpoint>,
    retry: Retry,
    http: reqwest::Client,
}

impl WebhookApprover {
    /// Receivers post decisions back to `public_base` + `/api/v1/requests/{id}/reviews`: the
    /// URL at which this service's [`ApprovalService`](super::ApprovalService) is reachable.
    pub fn new(public_base: impl Into<String>) -> Self {
        let http = client();
        Self {
            name: "webhook".into(),
            public_base: public_base.into().trim_end_matches('/').to_owned(),
            endpoints: Vec::new(),
            retry: Retry::default(),
            http,
        }
    }

    /// The channel name policies use (default `webhook`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a receiver and the secret it verifies with.
    pub fn endpoint(mut self, url: impl Into<String>, secret: WebhookSecret) -> Self {
        self.endpoints.push(Endpoint {
            url: url.into(),
            secret,
        });
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    fn callback_url(&self, request: &ApprovalRequest) -> String {
        format!(
            "{}/api/v1/requests/{}/reviews",
            self.public_base, request.id
        )
    }

    /// Sends one message to one receiver, retrying within bounds. Returns the attempts made.
    async fn send(&self, ep: &Endpoint, id: &str, body: &[u8]) -> Result<u32, String> {
        post_signed(&self.http, self.retry, &ep.url, &ep.secret, id, body).await
    }

    async fn send_all(&self, id: &str, body: &Value) -> Result<u32, ApproverError> {
        let bytes = serde_json::to_vec(body).map_err(ApproverError::from_cause)?;
        let mut failures = Vec::new();
        let mut attempts = 0;
        for ep in &self.endpoints {
            match self.send(ep, id, &bytes).await {
                Ok(n) => attempts += n,
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Ok(attempts)
        } else {
            Err(ApproverError::new(failures.join("; ")))
        }
    }
}

/// POSTs `body` to `url`, signed per Standard Webhooks with `secret` under message id `id`
/// (one id for every attempt, so receivers drop duplicates), retrying within `retry`'s
/// bounds. Returns the attempts made, or why it gave up. The one outbound sender of the
/// `http` feature: webhooks and requesters' callbacks both use it.
pub(crate) async fn post_signed(
    http: &reqwest::Client,
    retry: Retry,
    url: &str,
    secret: &WebhookSecret,
    id: &str,
    body: &[u8],
) -> Result<u32, String> {
    retry
        .run(url, |_| async {
            let now = unix_now();
            let result = http
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", secret.sign(id, now, body))
                .body(body.to_vec())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => Attempt::Done(()),
                // A receiver that refuses the message itself will refuse it again.
                Ok(r) if !Retry::worth_retrying(r.status()) => {
                    Attempt::Fail(format!("{url} answered {}", r.status()))
                }
                Ok(r) => {
                    let why = format!("{url} answered {}", r.status());
                    match retry_after(r.headers()) {
                        Some(wait) => Attempt::After(why, wait),
                        None => Attempt::Again(why),
                    }
                }
                // reqwest's errors do not carry secrets: the URL is the receiver's.
                Err(e) => Attempt::Again(format!("{url}: {e}")),
            }
        })
        .await
        .map(|((), attempts)| attempts)
        .map_err(|stopped| stopped.to_string())
}

/// The client outbound deliveries use.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("approvals/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[async_trait]
impl Approver for WebhookApprover {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(
        &self,
        request: &ApprovalRequest,
        _gate: &Gate,
    ) -> Result<Delivery, ApproverError> {
        if self.endpoints.is_empty() {
            return Err(ApproverError::new("no webhook endpoint is configured"));
        }
        // One id for every attempt: receivers use it to drop duplicates.
        let id = format!("msg_{}", request.id);
        let body = json!({
            "type": "approval.requested",
            "timestamp": request.created_at,
            "data": {
                "request": request,
                "still_needed": tally::progress(request).still_needed(),
                "callback_url": self.callback_url(request),
            },
        });
        let attempts = self.send_all(&id, &body).await?;
        Ok(Delivery {
            channel: self.name.clone(),
            id,
            data: json!({ "attempts": attempts, "endpoints": self.endpoints.len() }),
        })
    }

    async fn resolved(
        &self,
        request: &ApprovalRequest,
        decision: &Decision,
        delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        let id = format!("{}_decided", delivery.id);
        let body = json!({
            "type": "approval.decided",
            "timestamp": approvals_core::Timestamp::now(),
            "data": { "request_id": request.id, "decision": decision, "status": decision.word() },
        });
        self.send_all(&id, &body).await.map(drop)
    }
}

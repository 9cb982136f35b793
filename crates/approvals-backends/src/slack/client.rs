//! The Slack Web API: the few methods approvals needs, over reqwest with rustls.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::retry::{Attempt, Retry, retry_after};

/// A Web API call failed. Tokens never appear in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlackError {
    /// Slack answered `ok: false` with this error code (`channel_not_found`,
    /// `not_in_channel`, `invalid_auth`, ...).
    #[error("slack {method}: {code}")]
    Api {
        /// The method.
        method: String,
        /// Slack's error code.
        code: String,
    },
    /// Still rate limited (HTTP 429) after the bounded retries.
    #[error("slack {method}: rate limited after {attempts} attempts")]
    RateLimited {
        /// The method.
        method: String,
        /// How many times it was tried.
        attempts: u32,
    },
    /// Another HTTP status.
    #[error("slack {method}: HTTP {status}")]
    Http {
        /// The method.
        method: String,
        /// The status.
        status: u16,
    },
    /// The request could not be made or timed out.
    #[error("slack {method}: {message}")]
    Transport {
        /// The method.
        method: String,
        /// What went wrong.
        message: String,
    },
    /// The answer was not Slack's JSON.
    #[error("slack {method}: malformed answer: {message}")]
    Malformed {
        /// The method.
        method: String,
        /// What was wrong.
        message: String,
    },
}

/// The body of a Web API call.
#[derive(Clone, Copy)]
enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

/// Where a message was posted: enough to reply in its thread or update it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Posted {
    /// The channel id (for a direct message, the DM channel's id).
    pub channel: String,
    /// The message's timestamp, its id within the channel.
    pub ts: String,
}

/// A Slack Web API client with a bot token.
///
/// ```
/// use approvals_backends::slack::SlackClient;
/// let client = SlackClient::new("xoxb-not-a-real-token")
///     .base_url("http://127.0.0.1:9/api/") // a test's fake Slack
///     .max_retries(2);
/// assert!(!format!("{client:?}").contains("xoxb"));
/// ```
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: Arc<str>,
    token: Arc<str>,
    max_retries: u32,
    max_wait: Duration,
}

impl std::fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackClient")
            .field("base", &self.base)
            .field("token", &"…")
            .finish_non_exhaustive()
    }
}

impl SlackClient {
    /// A client for `https://slack.com/api/` with a bot token (`xoxb-...`), a 10 s timeout
    /// per request, and up to 3 retries when rate limited.
    pub fn new(token: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: Arc::from("https://slack.com/api/"),
            token: Arc::from(token.into()),
            max_retries: 3,
            max_wait: Duration::from_secs(30),
        }
    }

    /// Another base URL (a proxy, or a test's fake Slack); it ends with `/`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        let mut url = url.into();
        if !url.ends_with('/') {
            url.push('/');
        }
        self.base = Arc::from(url);
        self
    }

    /// How many times a rate-limited call is retried, after waiting what `Retry-After` says
    /// (at most 30 s each).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Calls `method` with a JSON body; returns Slack's answer when `ok` is true.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        self.send(method, Body::Json(body)).await
    }

    /// Calls `method` with a form-encoded body, as Slack's read methods (`users.info`) take
    /// their arguments; returns Slack's answer when `ok` is true.
    pub async fn call_form(
        &self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        self.send(method, Body::Form(args)).await
    }

    async fn send(&self, method: &str, body: Body<'_>) -> Result<Value, SlackError> {
        let url = format!("{}{method}", self.base);
        // Only a rate limit is asked again: Slack's writes are not idempotent, so another
        // failure is reported rather than risking a second message.
        let retry = Retry {
            initial: Duration::from_secs(1),
            max_delay: self.max_wait,
            max_attempts: self.max_retries.saturating_add(1),
            max_total: self
                .max_wait
                .saturating_mul(self.max_retries.saturating_add(1)),
        };
        let sent = retry
            .run(method, |attempts| {
                let request = self.http.post(&url).bearer_auth(&self.token);
                let request = match body {
                    Body::Json(v) => request.json(v),
                    Body::Form(args) => request.form(args),
                };
                async move {
                    match request.send().await {
                        Err(e) => Attempt::Fail(SlackError::Transport {
                            method: method.to_owned(),
                            // reqwest's message names the URL, never the Authorization header.
                            message: e.to_string(),
                        }),
                        Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                            let limited = SlackError::RateLimited {
                                method: method.to_owned(),
                                attempts,
                            };
                            match retry_after(r.headers()) {
                                Some(wait) => Attempt::After(limited, wait),
                                None => Attempt::Again(limited),
                            }
                        }
                        Ok(r) => Attempt::Done(r),
                    }
                }
            })
            .await;
        let sent = match sent {
            Ok((sent, _)) => sent,
            Err(stopped) => return Err(stopped.error),
        };
        let status = sent.status();
        if !status.is_success() {
            return Err(SlackError::Http {
                method: method.to_owned(),
                status: status.as_u16(),
            });
        }
        let answer: Value = sent.json().await.map_err(|e| SlackError::Malformed {
            method: method.to_owned(),
            message: e.to_string(),
        })?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(answer);
        }
        let code = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        Err(SlackError::Api {
            method: method.to_owned(),
            code: code.to_owned(),
        })
    }

    /// `chat.postMessage`: to a channel id, or to a user id (the app's direct message with
    /// them); in a thread when `thread_ts` is given.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&Value>,
        thread_ts: Option<&str>,
    ) -> Result<Posted, SlackError> {
        let mut body = json!({ "channel": channel, "text": text });
        if let Some(b) = blocks {
            body["blocks"] = b.clone();
        }
        if let Some(t) = thread_ts {
            body["thread_ts"] = json!(t);
        }
        let answer = self.call("chat.postMessage", &body).await?;
        posted("chat.postMessage", &answer)
    }

    /// `chat.update`: replaces a message's text and blocks.
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SlackError> {
        let body = json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks });
        self.call("chat.update", &body).await.map(drop)
    }

    /// `chat.postEphemeral`: a message only `user` sees, in `channel`.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        let body = json!({ "channel": channel, "user": user, "text": text });
        self.call("chat.postEphemeral", &body).await.map(drop)
    }

    /// `views.open`: a modal, in answer to a click's `trigger_id` (valid for 3 s).
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        let body = json!({ "trigger_id": trigger_id, "view": view });
        self.call("views.open", &body).await.map(drop)
    }
}

/// A Slack user as `users.info` and `users.lookupByEmail` describe them: the fields that
/// decide whether an email address may stand for who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlackUser {
    /// The user id (`U…`/`W…`).
    pub id: String,
    /// The workspace the account belongs to.
    pub team_id: Option<String>,
    /// `profile.email`; present only with the `users:read.email` scope.
    pub email: Option<String>,
    /// Whether Slack says the address was confirmed (`is_email_confirmed`), when it says.
    pub email_confirmed: Option<bool>,
    /// A deactivated account.
    pub deleted: bool,
    /// A bot user.
    pub is_bot: bool,
    /// A guest (`is_restricted` or `is_ultra_restricted`).
    pub is_guest: bool,
}

impl SlackUser {
    /// Neither deactivated, nor a bot, nor a guest: an account email matching may trust.
    pub fn is_full_member(&self) -> bool {
        !(self.deleted || self.is_bot || self.is_guest)
    }

    fn read(method: &str, answer: &Value) -> Result<Self, SlackError> {
        let user = answer.get("user").ok_or_else(|| SlackError::Malformed {
            method: method.to_owned(),
            message: "no `user` in the answer".into(),
        })?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let flag = |k: &str| user.get(k).and_then(Value::as_bool).unwrap_or(false);
        Ok(Self {
            id: text(user.get("id")).ok_or_else(|| SlackError::Malformed {
                method: method.to_owned(),
                message: "no `user.id` in the answer".into(),
            })?,
            team_id: text(user.get("team_id")),
            email: text(user.get("profile").and_then(|p| p.get("email"))).filter(|e| !e.is_empty()),
            email_confirmed: user.get("is_email_confirmed").and_then(Value::as_bool),
            deleted: flag("deleted"),
            is_bot: flag("is_bot"),
            is_guest: flag("is_restricted") || flag("is_ultra_restricted"),
        })
    }
}

impl SlackClient {
    /// `users.info`: the account behind a user id.
    pub async fn user_info(&self, user: &str) -> Result<SlackUser, SlackError> {
        let answer = self.call_form("users.info", &[("user", user)]).await?;
        SlackUser::read("users.info", &answer)
    }

    /// `users.lookupByEmail`: the account registered with an email address.
    pub async fn lookup_by_email(&self, email: &str) -> Result<SlackUser, SlackError> {
        let answer = self
            .call_form("users.lookupByEmail", &[("email", email)])
            .await?;
        SlackUser::read("users.lookupByEmail", &answer)
    }
}

fn posted(method: &str, answer: &Value) -> Result<Posted, SlackError> {
    let field = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Malformed {
                method: method.to_owned(),
                message: format!("no `{k}` in the answer"),
            })
    };
    Ok(Posted {
        channel: field("channel")?,
        ts: field("ts")?,
    })
}

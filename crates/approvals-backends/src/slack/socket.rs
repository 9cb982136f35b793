//! Socket Mode: interactions over a WebSocket the app opens, for deployments that cannot
//! expose a public URL.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::client::{SlackClient, SlackError};
use super::interactions::SlackInteractions;

/// Receives interactions over Socket Mode and hands them to the same processing as
/// `/slack/interactions`.
///
/// `apps.connections.open` (with the app-level token, `xapp-...`) gives a WebSocket URL;
/// each envelope is acknowledged by its `envelope_id` at once and processed in the
/// background. When Slack sends `disconnect` (it rotates connections every few hours), or
/// the socket fails, a new URL is fetched and the loop reconnects, backing off up to 30 s
/// while Slack is unreachable.
///
/// ```no_run
/// # async fn demo(interactions: approvals_backends::slack::SlackInteractions) {
/// use approvals_backends::slack::{SlackClient, SlackSocketMode};
/// let app_token = SlackClient::new(std::env::var("SLACK_APP_TOKEN").unwrap());
/// tokio::spawn(SlackSocketMode::new(interactions, app_token).run());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SlackSocketMode {
    interactions: SlackInteractions,
    app: SlackClient,
}

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// Slack asked for a reconnect (`disconnect`), or closed the socket.
    Rotated,
    /// The socket failed.
    Failed(String),
}

impl SlackSocketMode {
    /// Socket Mode for `interactions`, opening connections with `app`, a client holding
    /// the app-level token (`connections:write`).
    pub fn new(interactions: SlackInteractions, app: SlackClient) -> Self {
        Self { interactions, app }
    }

    /// Runs until the task is dropped: connect, serve, reconnect.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.connect_once().await {
                Ok(Ended::Rotated) => backoff = Duration::from_millis(250),
                Ok(Ended::Failed(e)) => {
                    tracing::warn!(error = %e, "slack socket mode: connection failed; reconnecting");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "slack socket mode: could not open a connection");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Opens one connection and serves it until it ends.
    async fn connect_once(&self) -> Result<Ended, SlackError> {
        let answer = self.app.call("apps.connections.open", &json!({})).await?;
        let url =
            answer
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| SlackError::Malformed {
                    method: "apps.connections.open".into(),
                    message: "no url in the answer".into(),
                })?;
        let (mut socket, _) = match tokio_tungstenite::connect_async(url).await {
            Ok(s) => s,
            Err(e) => return Ok(Ended::Failed(e.to_string())),
        };
        while let Some(frame) = socket.next().await {
            let text = match frame {
                Ok(Message::Text(t)) => t,
                Ok(Message::Ping(p)) => {
                    if let Err(e) = socket.send(Message::Pong(p)).await {
                        return Ok(Ended::Failed(e.to_string()));
                    }
                    continue;
                }
                Ok(Message::Close(_)) => return Ok(Ended::Rotated),
                Ok(_) => continue,
                Err(e) => return Ok(Ended::Failed(e.to_string())),
            };
            let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
                tracing::warn!("slack socket mode: a frame that is not JSON");
                continue;
            };
            match envelope.get("type").and_then(Value::as_str) {
                Some("hello") => tracing::debug!("slack socket mode: connected"),
                Some("disconnect") => return Ok(Ended::Rotated),
                _ => {
                    // Acknowledge first: Slack retries what is not acknowledged in 3 s.
                    if let Some(id) = envelope.get("envelope_id").and_then(Value::as_str) {
                        let ack = json!({ "envelope_id": id }).to_string();
                        if let Err(e) = socket.send(Message::text(ack)).await {
                            return Ok(Ended::Failed(e.to_string()));
                        }
                    }
                    if envelope.get("type").and_then(Value::as_str) == Some("interactive") {
                        if let Some(payload) = envelope.get("payload") {
                            if let Err(why) = self.interactions.accept(payload) {
                                tracing::warn!(why = %why, "slack socket mode: refused a payload");
                            }
                        }
                    }
                }
            }
        }
        Ok(Ended::Rotated)
    }
}

//! The Bot Framework connector: an app token by the OAuth client-credentials flow, then the
//! conversation REST API (send a card, update it, open a one-to-one chat).

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Where bots get their token for the connector.
pub const LOGIN_URL: &str = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token";
/// The scope of that token.
pub const SCOPE: &str = "https://api.botframework.com/.default";

/// A failed connector call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// No app token.
    #[error("teams: could not get an app token: {0}")]
    Token(String),
    /// The connector answered with an error.
    #[error("teams {call}: HTTP {status}: {body}")]
    Api {
        /// Which call.
        call: &'static str,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The connector could not be reached.
    #[error("teams {call}: {message}")]
    Transport {
        /// Which call.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// A Bot Framework connector client for one bot. Its `Debug` does not show the secret.
pub struct Connector {
    app_id: String,
    app_password: String,
    login_url: String,
    tenant: Option<String>,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("app_id", &self.app_id)
            .field("login_url", &self.login_url)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A client for the bot with this Microsoft App ID and client secret.
    pub fn new(app_id: impl Into<String>, app_password: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            app_password: app_password.into(),
            login_url: LOGIN_URL.into(),
            tenant: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            token: Mutex::new(None),
        }
    }

    /// Gets tokens from `url` instead (a single-tenant bot's tenant, a test).
    pub fn login_url(mut self, url: impl Into<String>) -> Self {
        self.login_url = url.into();
        self
    }

    /// The Entra tenant id, needed to open one-to-one chats.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The bot's app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    async fn token(&self) -> Result<String, ConnectorError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.app_id.as_str()),
            ("client_secret", self.app_password.as_str()),
            ("scope", SCOPE),
        ];
        let r = self
            .http
            .post(&self.login_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| ConnectorError::Token(e.without_url().to_string()))?;
        if !r.status().is_success() {
            return Err(ConnectorError::Token(format!("HTTP {}", r.status())));
        }
        let t: TokenResponse = r
            .json()
            .await
            .map_err(|e| ConnectorError::Token(e.to_string()))?;
        // Renew a minute early.
        let until = Instant::now() + Duration::from_secs(t.expires_in.saturating_sub(60));
        *cached = Some((t.access_token.clone(), until));
        Ok(t.access_token)
    }

    async fn call(
        &self,
        call: &'static str,
        method: reqwest::Method,
        url: String,
        body: &Value,
    ) -> Result<Value, ConnectorError> {
        let token = self.token().await?;
        let r = self
            .http
            .request(method, url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| ConnectorError::Transport {
                call,
                message: e.without_url().to_string(),
            })?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ConnectorError::Api {
                call,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends `activity` to a conversation; returns the new activity's id.
    pub async fn send(
        &self,
        service_url: &str,
        conversation: &str,
        activity: &Value,
    ) -> Result<String, ConnectorError> {
        let url = format!(
            "{}/v3/conversations/{conversation}/activities",
            service_url.trim_end_matches('/')
        );
        let v = self
            .call("send", reqwest::Method::POST, url, activity)
            .await?;
        Ok(v["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Replaces an activity (the card, once decided).
    pub async fn update(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<(), ConnectorError> {
        let url = format!(
            "{}/v3/conversations/{conversation}/activities/{activity_id}",
            service_url.trim_end_matches('/')
        );
        self.call("update", reqwest::Method::PUT, url, activity)
            .await
            .map(drop)
    }

    /// Opens (or finds) the one-to-one chat between the bot and a user (Entra object id).
    pub async fn open_chat(&self, service_url: &str, user: &str) -> Result<String, ConnectorError> {
        let url = format!("{}/v3/conversations", service_url.trim_end_matches('/'));
        let mut body = json!({
            "bot": { "id": format!("28:{}", self.app_id) },
            // Teams accepts the Entra object id here for a bot installed for the user.
            "members": [{ "id": user }],
            "isGroup": false,
        });
        if let Some(t) = &self.tenant {
            body["tenantId"] = json!(t);
            body["channelData"] = json!({ "tenant": { "id": t } });
        }
        let v = self
            .call("open chat", reqwest::Method::POST, url, &body)
            .await?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ConnectorError::Api {
                call: "open chat",
                status: 200,
                body: "no conversation id".into(),
            })
    }
}

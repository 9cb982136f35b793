//! Webhook mode: the card posted to a Teams Workflows incoming webhook, its buttons signed,
//! single-use, expiring links to the console's approval page.

use std::time::Duration;

use approvals_core::{ApprovalRequest, Approver, ApproverError, Delivery, Gate, ReviewDecision};
use async_trait::async_trait;
use serde_json::json;

use crate::http::Link;
pub use crate::http::LinkKey;

use super::card;

/// Posts each request's card to a Teams Workflows webhook ("Post to a channel when a webhook
/// request is received"). Its Approve and Deny buttons open signed links to
/// `public_base/console/links/…`: they expire with the request (or sooner, per
/// [`TeamsWebhookApprover::link_lifetime`]), work once, and count only after the reviewer
/// signs in to the console. The service must accept them: `ApprovalService::link_key` with
/// the same key.
///
/// Webhook cards cannot be updated afterwards: the console shows the outcome.
#[derive(Debug, Clone)]
pub struct TeamsWebhookApprover {
    name: String,
    url: String,
    public_base: String,
    key: LinkKey,
    lifetime: Option<Duration>,
    http: reqwest::Client,
}

impl TeamsWebhookApprover {
    /// Cards go to the Workflows webhook `url`; links point at `public_base`, where the
    /// console is served, and are signed with `key`.
    pub fn new(url: impl Into<String>, public_base: impl Into<String>, key: LinkKey) -> Self {
        Self {
            name: "teams".into(),
            url: url.into(),
            public_base: public_base.into().trim_end_matches('/').to_owned(),
            key,
            lifetime: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The channel name policies use (default `teams`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Links stop working after this long, if that is before the request expires.
    pub fn link_lifetime(mut self, d: Duration) -> Self {
        self.lifetime = Some(d);
        self
    }

    fn link(&self, request: &ApprovalRequest, verdict: ReviewDecision, gate: &Gate) -> String {
        let mut expires_at = request.expires_at;
        if let Some(d) = self.lifetime {
            expires_at = expires_at.min(gate.clock().now().saturating_add(d));
        }
        let token = self.key.sign(&Link {
            request_id: request.id,
            digest: request.action.digest,
            verdict,
            expires_at,
            nonce: Link::new_nonce(),
        });
        format!("{}/console/links/{token}", self.public_base)
    }
}

#[async_trait]
impl Approver for TeamsWebhookApprover {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(
        &self,
        request: &ApprovalRequest,
        gate: &Gate,
    ) -> Result<Delivery, ApproverError> {
        let approve = self.link(request, ReviewDecision::Approve, gate);
        let deny = self.link(request, ReviewDecision::Deny, gate);
        let mut body = card::activity(card::card(request, None, Some((&approve, &deny)), None));
        body["attachments"][0]["contentUrl"] = json!(null);
        let r = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let e = e.without_url();
                ApproverError::new(format!("teams webhook: {e}")).caused_by(e)
            })?;
        let status = r.status();
        if !status.is_success() {
            return Err(ApproverError::new(format!(
                "teams webhook answered {status}"
            )));
        }
        Ok(Delivery {
            channel: self.name.clone(),
            id: format!("teams-webhook:{}", request.id),
            data: json!({ "mode": "webhook" }),
        })
    }
}

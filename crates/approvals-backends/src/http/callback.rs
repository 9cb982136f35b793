//! Requesters' callbacks: the decision of a request made with a `callback_url`, POSTed there
//! signed per Standard Webhooks, retried within bounds.

use approvals_core::view::Status;
use approvals_core::{ApprovalRequest, Decision, Observer};
use async_trait::async_trait;
use serde_json::json;

use super::webhook::{WebhookSecret, client, post_signed};
use crate::retry::Retry;

/// Sends each decided request to the `callback_url` its requester gave (`POST
/// /api/v1/requests`), as `{"type": "approval.decided", "timestamp": ..., "data":
/// {"request_id", "status", "decision", "action"}}`, signed with the service's callback
/// secret (headers `webhook-id`, `webhook-timestamp`, `webhook-signature`). Sent in the
/// background, retried per [`Retry`]; a receiver that stays down misses it, and reads the
/// decision with `GET /api/v1/requests/{id}` instead.
///
/// [`ApprovalService::callback_secret`](super::ApprovalService::callback_secret) sets it up.
#[derive(Debug, Clone)]
pub struct Callbacks {
    secret: WebhookSecret,
    retry: Retry,
    http: reqwest::Client,
}

impl Callbacks {
    /// Callbacks signed with `secret`.
    pub fn new(secret: WebhookSecret) -> Self {
        Self {
            secret,
            retry: Retry::default(),
            http: client(),
        }
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
}

#[async_trait]
impl Observer for Callbacks {
    async fn decided(&self, request: &ApprovalRequest, decision: &Decision) {
        let Some(url) = request.callback.clone() else {
            return;
        };
        let id = format!("msg_{}_decided", request.id);
        let body = json!({
            "type": "approval.decided",
            "timestamp": approvals_core::Timestamp::now(),
            "data": {
                "request_id": request.id,
                "status": Status::of(request),
                "decision": decision,
                "action": {
                    "name": request.action.name,
                    "policy": request.action.policy,
                    "digest": request.action.digest,
                },
            },
        });
        let Ok(bytes) = serde_json::to_vec(&body) else {
            return;
        };
        let this = self.clone();
        let request_id = request.id;
        tokio::spawn(async move {
            match post_signed(&this.http, this.retry, &url, &this.secret, &id, &bytes).await {
                Ok(_) => tracing::debug!(request = %request_id, "callback delivered"),
                Err(e) => {
                    tracing::warn!(request = %request_id, error = %e, "could not deliver a requester's callback");
                }
            }
        });
    }
}

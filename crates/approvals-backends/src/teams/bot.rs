//! Bot mode: cards sent through the Bot Framework connector, clicks received as
//! `adaptiveCard/action` invokes on `/teams/messages`, the card refreshed with the outcome.

use std::sync::Arc;

use approvals_core::{
    ApprovalRequest, Approver, ApproverError, Decision, Delivery, Digest, Evidence, Gate, Identity,
    RequestId, Review, ReviewDecision, StoreError, SubmitError,
};
use async_trait::async_trait;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::card;
use super::connector::Connector;
use super::jwt::BotAuth;

/// The largest activity accepted.
pub const MAX_BODY: usize = 256 * 1024;

/// Sends each request as an Adaptive Card through the Bot Framework connector: to the
/// configured Teams conversations (channels, group chats), and, if asked, as one-to-one chats
/// to the eligible reviewers whose Entra object id the directory holds. When the request is
/// decided, each card is replaced by the outcome, without buttons.
#[derive(Debug, Clone)]
pub struct TeamsApprover {
    name: String,
    connector: Arc<Connector>,
    service_url: String,
    conversations: Vec<String>,
    direct: bool,
    console: Option<String>,
}

impl TeamsApprover {
    /// Cards go through `connector` to the Teams service at `service_url` (as stored from an
    /// activity, e.g. `https://smba.trafficmanager.net/teams/`).
    pub fn new(connector: Connector, service_url: impl Into<String>) -> Self {
        Self {
            name: "teams".into(),
            connector: Arc::new(connector),
            service_url: service_url.into(),
            conversations: Vec::new(),
            direct: false,
            console: None,
        }
    }

    /// The service's public URL: each card links to the request's page in the web console,
    /// where a call too large for a card is shown whole.
    pub fn console_url(mut self, base: impl Into<String>) -> Self {
        self.console = Some(base.into());
        self
    }

    /// The channel name policies use (default `teams`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Posts every request to this conversation (a channel's or chat's conversation id).
    pub fn conversation(mut self, id: impl Into<String>) -> Self {
        self.conversations.push(id.into());
        self
    }

    /// Also sends each request to every eligible reviewer in a one-to-one chat.
    pub fn direct_messages(mut self, on: bool) -> Self {
        self.direct = on;
        self
    }

    /// The Entra object ids of the people who may review `request`, from the directory.
    fn reviewers(request: &ApprovalRequest, gate: &Gate) -> Vec<String> {
        let directory = gate.directory();
        approvals_core::directory::reviewers_of(&request.requirement, &request.context, directory)
            .into_iter()
            .filter_map(|id| directory.person(&id)?.teams)
            .collect()
    }
}

fn failed<E: std::error::Error + Send + Sync + 'static>(e: E) -> ApproverError {
    ApproverError::from_cause(e)
}

#[async_trait]
impl Approver for TeamsApprover {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(
        &self,
        request: &ApprovalRequest,
        gate: &Gate,
    ) -> Result<Delivery, ApproverError> {
        let mut targets = self.conversations.clone();
        if self.direct {
            for user in Self::reviewers(request, gate) {
                targets.push(
                    self.connector
                        .open_chat(&self.service_url, &user)
                        .await
                        .map_err(failed)?,
                );
            }
        }
        if targets.is_empty() {
            return Err(ApproverError::new(
                "no Teams conversation is configured and no reviewer has a Teams id",
            ));
        }
        let activity = card::activity(card::card(request, None, None, self.console.as_deref()));
        let mut posts = Vec::new();
        for conversation in targets {
            let id = self
                .connector
                .send(&self.service_url, &conversation, &activity)
                .await
                .map_err(failed)?;
            posts.push(json!({ "conversation": conversation, "activity_id": id }));
        }
        let first = format!(
            "{}:{}",
            posts[0]["conversation"].as_str().unwrap_or_default(),
            posts[0]["activity_id"].as_str().unwrap_or_default()
        );
        Ok(Delivery {
            channel: self.name.clone(),
            id: first,
            data: json!({ "service_url": self.service_url, "posts": posts }),
        })
    }

    async fn resolved(
        &self,
        request: &ApprovalRequest,
        decision: &Decision,
        delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        let activity = card::activity(card::card(
            request,
            Some(decision),
            None,
            self.console.as_deref(),
        ));
        let service_url = delivery.data["service_url"]
            .as_str()
            .unwrap_or(&self.service_url);
        for p in delivery.data["posts"].as_array().into_iter().flatten() {
            let (Some(conversation), Some(id)) =
                (p["conversation"].as_str(), p["activity_id"].as_str())
            else {
                continue;
            };
            let mut a = activity.clone();
            a["id"] = json!(id);
            self.connector
                .update(service_url, conversation, id, &a)
                .await
                .map_err(failed)?;
        }
        Ok(())
    }
}

/// The bot's messaging endpoint, `POST /teams/messages`: verifies the Bot Framework's token
/// before reading anything else, then turns an `adaptiveCard/action` invoke into a review.
///
/// The clicking user becomes a principal only through the directory (`teams = "<Entra
/// object id>"` of a person). Refused clicks are answered with a message in the card and
/// audited: unknown users as `review_unauthenticated`, the rules' refusals by the gate.
#[derive(Clone)]
pub struct TeamsInvokes {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Gate,
    auth: BotAuth,
}

impl std::fmt::Debug for TeamsInvokes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsInvokes")
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl TeamsInvokes {
    /// The endpoint for `gate`, checking tokens with `auth`.
    pub fn new(gate: Gate, auth: BotAuth) -> Self {
        Self {
            inner: Arc::new(Inner { gate, auth }),
        }
    }

    /// A router with `POST /teams/messages`, to mount on the shared router.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/teams/messages", post(handle))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

/// An invoke response that shows `text` to the clicker.
fn message(status: u16, text: &str) -> Response {
    Json(json!({
        "statusCode": status,
        "type": "application/vnd.microsoft.activity.message",
        "value": text,
    }))
    .into_response()
}

/// An invoke response that replaces the clicker's card.
fn card_response(card: Value) -> Response {
    Json(json!({ "statusCode": 200, "type": card::CONTENT_TYPE, "value": card })).into_response()
}

async fn handle(State(s): State<TeamsInvokes>, headers: HeaderMap, body: Bytes) -> Response {
    // The serviceUrl and channel are needed to check the token, so they are read first, but
    // nothing acts on the activity until the token is verified.
    let activity: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()),
    };
    let service_url = activity["serviceUrl"].as_str().unwrap_or_default();
    let channel = activity["channelId"].as_str().unwrap_or_default();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = s.inner.auth.verify(auth, service_url, channel).await {
        tracing::warn!(error = %e, "teams: refused an activity");
        let status = match e {
            super::jwt::AuthError::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        return error(status, "unauthenticated", e.to_string());
    }
    if activity["type"] != "invoke" || activity["name"] != "adaptiveCard/action" {
        // Messages, installs and other activities: acknowledged, nothing to do.
        return StatusCode::OK.into_response();
    }
    let action = &activity["value"]["action"];
    let verdict = match action["verb"].as_str() {
        Some(card::APPROVE | card::EDIT) => ReviewDecision::Approve,
        Some(card::DENY) => ReviewDecision::Deny,
        Some(card::CHANGES) => ReviewDecision::RequestChanges,
        _ => return message(400, "This button is not one of approvals'."),
    };
    let data = &action["data"];
    let (Some(request_id), Some(digest)) = (
        data["request_id"]
            .as_str()
            .and_then(|r| r.parse::<RequestId>().ok()),
        data["digest"]
            .as_str()
            .and_then(|d| d.parse::<Digest>().ok()),
    ) else {
        return message(400, "This card does not name an approval request.");
    };
    let user = activity["from"]["aadObjectId"].as_str().unwrap_or_default();
    let gate = &s.inner.gate;
    let Some(person) = gate.directory().find(Identity::Teams(user)) else {
        let claimed = format!("teams:{user}");
        if let Err(e) = gate
            .record_unauthenticated(
                request_id,
                "teams",
                Some(&claimed),
                "the Teams user is not in the approvers directory",
            )
            .await
        {
            tracing::error!(request = %request_id, error = %e, "teams: could not audit a refused click");
        }
        return message(
            403,
            "Your Teams account is not in the approvers directory, so your click was not recorded.",
        );
    };
    let reason = data[card::REASON]
        .as_str()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    match (verdict, &reason) {
        (ReviewDecision::Deny, None) => {
            return message(400, "Write the reason in the card, then press Deny.");
        }
        (ReviewDecision::RequestChanges, None) => {
            return message(
                400,
                "Write what to change in the card, then press Request changes.",
            );
        }
        _ => {}
    }
    // Approve with changes: the card's `set:NAME` inputs, read against the call's values.
    let set = if action["verb"] == card::EDIT {
        let typed = data
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.strip_prefix("set:")?, v.as_str()?)));
        let read = match gate.request(request_id).await {
            Ok(Some(current)) => crate::shown::typed_edits(&current, typed),
            Ok(None) => return message(404, "There is no such approval request."),
            Err(e) => Err(format!("the request could not be read ({e})")),
        };
        match read {
            Ok(set) => Some(set),
            Err(why) => return message(400, &format!("Your edit was not recorded: {why}")),
        }
    } else {
        None
    };
    let review = Review {
        request_id,
        digest,
        reviewer: person.principal(),
        decision: verdict,
        comment: reason,
        at: gate.clock().now(),
        evidence: Evidence::Other {
            channel: "teams".into(),
            details: json!({
                "method": "bot_framework_jwt",
                "aad_object_id": user,
                "activity_id": activity["id"],
                "conversation": activity["conversation"]["id"],
            }),
        },
        grant: None,
        set,
    };
    match gate.submit_review(review).await {
        // An edit answers with the edited call; the clicker's card is the original's, which
        // now says what became of it (the edit is posted as a card of its own).
        Ok(r) if r.id != request_id => match gate.request(request_id).await {
            Ok(Some(original)) => {
                card_response(card::card(&original, original.decision(), None, None))
            }
            _ => card_response(card::card(&r, r.decision(), None, None)),
        },
        Ok(r) => card_response(card::card(&r, r.decision(), None, None)),
        Err(SubmitError::Refused(refusal)) => {
            message(409, &format!("Your review was not recorded: {refusal}."))
        }
        Err(SubmitError::Store(StoreError::UnknownRequest(_))) => {
            message(404, "There is no such approval request.")
        }
        Err(e) => {
            tracing::error!(request = %request_id, error = %e, "teams: review failed");
            message(
                503,
                "The approval service could not record your review; try again.",
            )
        }
    }
}

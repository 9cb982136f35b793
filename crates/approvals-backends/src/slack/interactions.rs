//! `/slack/interactions`: verified button clicks and modal submissions become reviews.

use std::sync::Arc;

use approvals_core::{
    Digest, Evidence, Gate, Identity, Person, Principal, RequestId, Review, ReviewDecision,
    StoreError, SubmitError, Timestamp,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::client::SlackClient;
use super::message;
use super::signature::SigningSecret;

/// The largest interaction body accepted (Slack's payloads are a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// The interactive endpoint of a Slack app: verifies each request's signature over the raw
/// body before reading it, acknowledges at once (Slack wants an answer within 3 s), and
/// turns the click into a review for the gate in the background.
///
/// Slack users become principals only through the directory (`slack = "U…"` of a person);
/// a click from anyone else is refused with a message only they see. A deployment may opt
/// in to matching by email as well ([`SlackInteractions::match_users_by_email`]). Refused reviews
/// (self-approval, not eligible, already decided, expired, an older message's digest) are
/// audited by the gate and explained the same way.
///
/// ```no_run
/// # fn demo(gate: approvals_core::Gate) {
/// use approvals_backends::slack::{SigningSecret, SlackClient, SlackInteractions};
/// let app: axum::Router = SlackInteractions::new(
///     gate,
///     SigningSecret::new(std::env::var("SLACK_SIGNING_SECRET").unwrap()),
///     SlackClient::new(std::env::var("SLACK_BOT_TOKEN").unwrap()),
/// )
/// .router();
/// # }
/// ```
#[derive(Clone)]
pub struct SlackInteractions {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    gate: Gate,
    secret: SigningSecret,
    client: SlackClient,
    match_by_email: bool,
    /// The one workspace whose users may review, when set.
    workspace: Option<String>,
}

impl std::fmt::Debug for SlackInteractions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackInteractions")
            .field("client", &self.inner.client)
            .finish_non_exhaustive()
    }
}

impl SlackInteractions {
    /// The endpoint for `gate`, checking signatures with `secret` and answering with
    /// `client`.
    pub fn new(gate: Gate, secret: SigningSecret, client: SlackClient) -> Self {
        Self {
            inner: Arc::new(Inner {
                gate,
                secret,
                client,
                match_by_email: false,
                workspace: None,
            }),
        }
    }

    /// Opt in to mapping a Slack user the directory does not list by Slack id to the person
    /// whose `email` is the Slack account's address (off by default; needs the
    /// `users:read.email` scope). The account is read with `users.info` at each such click,
    /// and matched only when it is a full member of the workspace the click came from (not
    /// a guest, a bot, a deactivated account or another organisation's user), its address
    /// is not marked unconfirmed, exactly one person in the directory has that address, and
    /// that person has no other Slack id. The review's evidence says it was matched so.
    ///
    /// ```
    /// # fn demo(gate: approvals_core::Gate) {
    /// use approvals_backends::slack::{SigningSecret, SlackClient, SlackInteractions};
    /// let endpoint = SlackInteractions::new(gate, SigningSecret::new("…"), SlackClient::new("xoxb-…"))
    ///     .match_users_by_email(true);
    /// # let _ = endpoint;
    /// # }
    /// ```
    pub fn match_users_by_email(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.inner).match_by_email = on;
        self
    }

    /// Takes clicks only from users of this workspace (its team id, `T…`): a Slack user id is
    /// matched to a person only together with the workspace it belongs to, so an account of
    /// another workspace the app is installed in, or of an organisation sharing the channel
    /// through Slack Connect, never counts as anyone in the directory. Without it, user ids
    /// are matched from any workspace the app is installed in.
    ///
    /// ```
    /// # fn demo(gate: approvals_core::Gate) {
    /// use approvals_backends::slack::{SigningSecret, SlackClient, SlackInteractions};
    /// let endpoint = SlackInteractions::new(gate, SigningSecret::new("…"), SlackClient::new("xoxb-…"))
    ///     .workspace("T0123ABCD");
    /// # let _ = endpoint;
    /// # }
    /// ```
    pub fn workspace(mut self, team_id: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).workspace = Some(team_id.into());
        self
    }

    /// A router with `POST /slack/interactions`, to merge into the service's router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/slack/interactions", post(handle))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Response {
    (status, why.into()).into_response()
}

async fn handle(State(s): State<SlackInteractions>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = Timestamp::now().unix_micros() / 1_000_000;
    if let Err(e) = s.inner.secret.verify(
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        now,
    ) {
        tracing::warn!(error = %e, "slack: refused an unsigned or badly signed request");
        return refuse(StatusCode::UNAUTHORIZED, e.to_string());
    }
    // Only now is the body read.
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("not a form body: {e}")),
    };
    let Some((_, payload)) = form.iter().find(|(k, _)| k == "payload") else {
        return refuse(StatusCode::BAD_REQUEST, "no `payload` field");
    };
    let payload: Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("payload is not JSON: {e}")),
    };
    match s.accept(&payload) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(why) => refuse(StatusCode::BAD_REQUEST, why),
    }
}

/// What a verified payload asks for.
#[derive(Debug)]
struct Click {
    user: String,
    team: Option<String>,
    channel: Option<String>,
    kind: ClickKind,
}

#[derive(Debug)]
enum ClickKind {
    Approve {
        value: String,
    },
    /// Deny or Request changes pressed: ask for the reason, or for what to change.
    AskWhy {
        verdict: ReviewDecision,
        value: String,
        trigger_id: String,
    },
    /// That modal submitted.
    Answered {
        verdict: ReviewDecision,
        value: String,
        reason: String,
    },
    /// Approve with changes pressed: show the editable arguments' values.
    AskEdit {
        value: String,
        trigger_id: String,
    },
    /// That modal submitted: the values as typed, `(argument, text)`, and a comment.
    Edited {
        value: String,
        typed: Vec<(String, String)>,
        comment: String,
    },
    /// An action of some other app feature: acknowledged and ignored.
    Other(String),
}

impl Click {
    fn read(p: &Value) -> Result<Self, String> {
        let s = |v: &Value, path: &[&str]| -> Option<String> {
            path.iter()
                .try_fold(v, |v, k| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let user = s(p, &["user", "id"]).ok_or("no user.id in the payload")?;
        let team = s(p, &["team", "id"]);
        let kind = match p.get("type").and_then(Value::as_str) {
            Some("block_actions") => {
                let action = p
                    .get("actions")
                    .and_then(|a| a.get(0))
                    .ok_or("no actions in the payload")?;
                let id = s(action, &["action_id"]).unwrap_or_default();
                let value = s(action, &["value"]).unwrap_or_default();
                match id.as_str() {
                    message::APPROVE => ClickKind::Approve { value },
                    message::EDIT => ClickKind::AskEdit {
                        value,
                        trigger_id: s(p, &["trigger_id"]).ok_or("no trigger_id")?,
                    },
                    message::DENY | message::CHANGES => ClickKind::AskWhy {
                        verdict: if id == message::DENY {
                            ReviewDecision::Deny
                        } else {
                            ReviewDecision::RequestChanges
                        },
                        value,
                        trigger_id: s(p, &["trigger_id"]).ok_or("no trigger_id")?,
                    },
                    other => ClickKind::Other(other.to_owned()),
                }
            }
            Some("view_submission")
                if matches!(
                    s(p, &["view", "callback_id"]).as_deref(),
                    Some(message::DENY_VIEW | message::CHANGES_VIEW | message::EDIT_VIEW)
                ) =>
            {
                let callback = s(p, &["view", "callback_id"]).unwrap_or_default();
                let meta = s(p, &["view", "private_metadata"]).unwrap_or_default();
                let (value, channel) = meta.split_once('|').unwrap_or((meta.as_str(), ""));
                let value = value.to_owned();
                let values = &p["view"]["state"]["values"];
                let reason = s(values, &["reason", "reason", "value"]).unwrap_or_default();
                let kind = match callback.as_str() {
                    message::EDIT_VIEW => ClickKind::Edited {
                        value,
                        typed: values
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter_map(|(block, input)| {
                                let arg = block.strip_prefix("set:")?;
                                Some((arg.to_owned(), s(input, &["value", "value"])?))
                            })
                            .collect(),
                        comment: reason,
                    },
                    message::DENY_VIEW => ClickKind::Answered {
                        verdict: ReviewDecision::Deny,
                        value,
                        reason,
                    },
                    _ => ClickKind::Answered {
                        verdict: ReviewDecision::RequestChanges,
                        value,
                        reason,
                    },
                };
                return Ok(Self {
                    user,
                    team,
                    channel: (!channel.is_empty()).then(|| channel.to_owned()),
                    kind,
                });
            }
            Some(other) => ClickKind::Other(other.to_owned()),
            None => return Err("no type in the payload".into()),
        };
        let channel = s(p, &["channel", "id"]).or_else(|| s(p, &["container", "channel_id"]));
        Ok(Self {
            user,
            team,
            channel,
            kind,
        })
    }
}

/// How a Slack user was found in the directory: by Slack id, or (opted in) by email. In
/// the evidence: `"slack_id"`, or `{"email": "…"}`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Matched {
    SlackId,
    Email(String),
}

/// `<request id>:<digest hex>`, as the buttons carry it.
fn parse_value(value: &str) -> Option<(RequestId, Digest)> {
    let (id, digest) = value.split_once(':')?;
    let bytes: [u8; 32] = hex::decode(digest).ok()?.try_into().ok()?;
    Some((id.parse().ok()?, Digest(bytes)))
}

impl SlackInteractions {
    /// Takes an interaction payload that has already been authenticated (by its signature,
    /// or by arriving on a Socket Mode connection): reads it, and takes the review in the
    /// background so the caller can acknowledge at once.
    pub(crate) fn accept(&self, payload: &Value) -> Result<(), String> {
        let click = Click::read(payload)?;
        let this = self.clone();
        tokio::spawn(async move { this.process(click).await });
        Ok(())
    }

    async fn process(&self, click: Click) {
        let reply = match &click.kind {
            ClickKind::Other(what) => {
                tracing::debug!(what = %what, "slack: ignored an interaction that is not approvals'");
                return;
            }
            ClickKind::AskWhy {
                verdict,
                value,
                trigger_id,
            } => {
                let channel = click.channel.clone().unwrap_or_default();
                let view = match verdict {
                    ReviewDecision::Deny => message::deny_view(value, &channel),
                    _ => message::changes_view(value, &channel),
                };
                match self.inner.client.open_view(trigger_id, &view).await {
                    Ok(()) => return,
                    Err(e) => format!("Could not ask for the reason ({e}); nothing was recorded."),
                }
            }
            ClickKind::AskEdit { value, trigger_id } => {
                let channel = click.channel.clone().unwrap_or_default();
                match self.open_request(value).await {
                    Ok(request) => {
                        let view = message::edit_view(&request, &channel);
                        match self.inner.client.open_view(trigger_id, &view).await {
                            Ok(()) => return,
                            Err(e) => format!(
                                "Could not show the values to change ({e}); nothing was recorded."
                            ),
                        }
                    }
                    Err(why) => why,
                }
            }
            ClickKind::Approve { value } => {
                self.review(&click, value, ReviewDecision::Approve, None, None)
                    .await
            }
            ClickKind::Answered {
                verdict,
                value,
                reason,
            } => {
                self.review(&click, value, *verdict, Some(reason.clone()), None)
                    .await
            }
            ClickKind::Edited {
                value,
                typed,
                comment,
            } => {
                let set = self.open_request(value).await.and_then(|request| {
                    crate::shown::typed_edits(
                        &request,
                        typed.iter().map(|(a, t)| (a.as_str(), t.as_str())),
                    )
                    .map_err(|why| format!("Your edit was not recorded: {why}"))
                });
                match set {
                    Ok(set) => {
                        self.review(
                            &click,
                            value,
                            ReviewDecision::Approve,
                            Some(comment.clone()),
                            Some(set),
                        )
                        .await
                    }
                    Err(why) => why,
                }
            }
        };
        if reply.is_empty() {
            return;
        }
        let Some(channel) = &click.channel else {
            tracing::warn!(user = %click.user, reply = %reply, "slack: no channel to answer the click in");
            return;
        };
        if let Err(e) = self
            .inner
            .client
            .post_ephemeral(channel, &click.user, &reply)
            .await
        {
            tracing::warn!(error = %e, "slack: could not answer a click");
        }
    }

    /// The person who clicked, through the directory only: by Slack id, or by the account's
    /// email when the deployment opted in and every condition for trusting it holds.
    /// Otherwise why not, in words for the clicker and the audit record.
    async fn person(&self, click: &Click) -> Result<(Person, Matched), String> {
        const UNKNOWN: &str = "this Slack account is not in the approvers directory";
        if let Some(ours) = &self.inner.workspace {
            if click.team.as_deref() != Some(ours.as_str()) {
                return Err(format!(
                    "{UNKNOWN}: reviews are taken only from the workspace {ours}, and this click came from {}",
                    click.team.as_deref().unwrap_or("no workspace")
                ));
            }
        }
        let directory = self.inner.gate.directory();
        if let Some(p) = directory.find(Identity::Slack(&click.user)) {
            return Ok((p, Matched::SlackId));
        }
        if !self.inner.match_by_email {
            return Err(UNKNOWN.into());
        }
        let user = self
            .inner
            .client
            .user_info(&click.user)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "slack: users.info failed");
                format!("{UNKNOWN}, and Slack could not say who you are ({e})")
            })?;
        let refuse = |why: &str| Err(format!("{UNKNOWN}, and {why}"));
        if user.id != click.user {
            return refuse("Slack described another account");
        }
        if !user.is_full_member() {
            return refuse("guest, bot and deactivated accounts are not matched by email");
        }
        if click.team.is_none() || user.team_id != click.team {
            return refuse("accounts of another workspace are not matched by email");
        }
        if user.email_confirmed == Some(false) {
            return refuse("the account's email address is not confirmed");
        }
        let Some(email) = user.email else {
            return refuse("Slack did not share the account's email address");
        };
        let Some(p) = directory.find(Identity::Email(&email)) else {
            return refuse("no one in it has the account's email address");
        };
        if p.slack.as_deref().is_some_and(|id| id != click.user) {
            return refuse("the directory lists another Slack account for that address");
        }
        Ok((p, Matched::Email(email)))
    }

    /// The open request a button or modal names, or what to tell the clicker.
    async fn open_request(&self, value: &str) -> Result<approvals_core::ApprovalRequest, String> {
        let Some((id, _)) = parse_value(value) else {
            return Err(
                "This button does not name an approval request; nothing was recorded.".into(),
            );
        };
        match self.inner.gate.request(id).await {
            Ok(Some(r)) => match r.decision() {
                None => Ok(r),
                Some(d) => Err(format!(
                    "This request is already {}; nothing was recorded.",
                    d.word()
                )),
            },
            Ok(None) => Err("There is no such approval request; nothing was recorded.".into()),
            Err(e) => Err(format!(
                "The request could not be read ({e}); nothing was recorded."
            )),
        }
    }

    /// Submits the review (with new values for editable arguments, `set`); returns what to
    /// tell the clicker (empty when all went well: the thread reply says it for everyone).
    async fn review(
        &self,
        click: &Click,
        value: &str,
        decision: ReviewDecision,
        reason: Option<String>,
        set: Option<serde_json::Map<String, Value>>,
    ) -> String {
        let Some((request_id, digest)) = parse_value(value) else {
            return "This button does not name an approval request; nothing was recorded.".into();
        };
        let gate = &self.inner.gate;
        // Slack ids map to people only through the directory.
        let (person, matched) = match self.person(click).await {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(slack_user = %click.user, request = %request_id, why = %why, "slack: click from a user the directory does not know");
                // The click is Slack-signed, so who clicked is known; the attempt is audited.
                let claimed = format!("slack:{}", click.user);
                if let Err(e) = gate
                    .record_unauthenticated(request_id, "slack", Some(&claimed), &why)
                    .await
                {
                    tracing::error!(request = %request_id, error = %e, "slack: could not audit a refused click");
                }
                return format!("Your click was not recorded: {why}.");
            }
        };
        let review = Review {
            request_id,
            digest,
            reviewer: Principal::new(person.id, person.kind),
            decision,
            comment: reason.filter(|r| !r.trim().is_empty()),
            at: gate.clock().now(),
            evidence: Evidence::Other {
                channel: "slack".into(),
                details: json!({
                    "user_id": click.user,
                    "team_id": click.team,
                    "channel_id": click.channel,
                    "signature": "verified (v0, signing secret)",
                    "matched_by": matched,
                }),
            },
            grant: None,
            set,
        };
        match gate.submit_review(review).await {
            Ok(_) => String::new(),
            Err(SubmitError::Refused(r)) => format!("Your review was not recorded: {r}"),
            Err(SubmitError::Store(StoreError::UnknownRequest(_))) => {
                "There is no such approval request; nothing was recorded.".into()
            }
            Err(e) => {
                tracing::error!(error = %e, "slack: could not submit a review");
                format!("Your review could not be recorded: {e}")
            }
        }
    }
}

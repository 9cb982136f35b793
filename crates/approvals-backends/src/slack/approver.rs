//! `SlackApprover`: posts requests, replies with each review, shows the outcome.

use approvals_core::{
    ApprovalRequest, Approver, ApproverError, Decision, Delivery, Gate, RecordedReview, tally,
};
use async_trait::async_trait;
use serde_json::json;

use super::client::{Posted, SlackClient};
use super::message;

/// Delivers approval requests to Slack (feature `slack`).
///
/// Each request is posted to the configured channels and, with
/// [`SlackApprover::direct_messages`], to each eligible reviewer who has a Slack id in the
/// directory (never the requester or the person it acts for). Reviews are replied in the
/// message's thread; the decision replaces the buttons. Clicks come back through
/// [`super::SlackInteractions`].
///
/// ```
/// use approvals_backends::slack::{SlackApprover, SlackClient};
/// let slack = SlackApprover::new(SlackClient::new("xoxb-..."))
///     .channel("C0APPROVALS")
///     .direct_messages(true);
/// ```
#[derive(Debug, Clone)]
pub struct SlackApprover {
    name: String,
    client: SlackClient,
    channels: Vec<String>,
    direct_messages: bool,
    by_email: bool,
    console: Option<String>,
}

impl SlackApprover {
    /// An approver named `slack` that posts with `client`.
    pub fn new(client: SlackClient) -> Self {
        Self {
            name: "slack".into(),
            client,
            channels: Vec::new(),
            direct_messages: false,
            by_email: false,
            console: None,
        }
    }

    /// The service's public URL (`https://approvals.example.com`): each message links to
    /// the request's page in the web console, where a call too large for Slack is shown
    /// whole.
    pub fn console_url(mut self, base: impl Into<String>) -> Self {
        self.console = Some(base.into());
        self
    }

    /// Another name (the one policies use in `channels`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// Posts every request to this channel id.
    pub fn channel(mut self, id: impl Into<String>) -> Self {
        self.channels.push(id.into());
        self
    }

    /// Also messages each eligible reviewer directly.
    pub fn direct_messages(mut self, on: bool) -> Self {
        self.direct_messages = on;
        self
    }

    /// With direct messages on, also finds reviewers who have an email address but no Slack
    /// id in the directory, with `users.lookupByEmail` (needs the `users:read.email` scope).
    /// Full members only: guests, bots and deactivated accounts are not messaged. Turn on
    /// [`super::SlackInteractions::match_users_by_email`] too, or their clicks will not count.
    pub fn find_reviewers_by_email(mut self, on: bool) -> Self {
        self.by_email = on;
        self
    }

    /// Slack user ids of the people who may approve `request`.
    async fn reviewers(&self, request: &ApprovalRequest, gate: &Gate) -> Vec<String> {
        let directory = gate.directory();
        let mut ids = Vec::new();
        let eligible = approvals_core::directory::reviewers_of(
            &request.requirement,
            &request.context,
            directory,
        );
        for person in eligible.iter().filter_map(|id| directory.person(id)) {
            match (person.slack, person.email) {
                (Some(slack), _) => ids.push(slack),
                (None, Some(email)) if self.by_email => {
                    match self.client.lookup_by_email(&email).await {
                        Ok(u) if u.is_full_member() => ids.push(u.id),
                        Ok(_) => {
                            tracing::info!(person = %person.id, "slack: not messaging a guest, bot or deactivated account");
                        }
                        Err(e) => {
                            tracing::warn!(person = %person.id, error = %e, "slack: no account found by email");
                        }
                    }
                }
                _ => {}
            }
        }
        ids
    }

    fn posts(delivery: &Delivery) -> Vec<Posted> {
        serde_json::from_value(delivery.data.clone()).unwrap_or_default()
    }

    /// Replies `text` in the thread of every message that showed the request.
    async fn reply_in_threads(&self, delivery: &Delivery, text: &str) -> Result<(), ApproverError> {
        for p in Self::posts(delivery) {
            self.client
                .post_message(&p.channel, text, None, Some(&p.ts))
                .await
                .map_err(failed)?;
        }
        Ok(())
    }
}

fn failed<E: std::error::Error + Send + Sync + 'static>(e: E) -> ApproverError {
    ApproverError::from_cause(e)
}

#[async_trait]
impl Approver for SlackApprover {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(
        &self,
        request: &ApprovalRequest,
        gate: &Gate,
    ) -> Result<Delivery, ApproverError> {
        let mut targets = self.channels.clone();
        if self.direct_messages {
            targets.extend(self.reviewers(request, gate).await);
        }
        if targets.is_empty() {
            return Err(ApproverError::new(
                "no Slack channel configured and no eligible reviewer has a Slack id",
            ));
        }
        let blocks = message::blocks(request, None, self.console.as_deref());
        let text = message::text(request);
        let mut posts = Vec::new();
        for target in &targets {
            match self
                .client
                .post_message(target, &text, Some(&blocks), None)
                .await
            {
                Ok(p) => posts.push(p),
                // One unreachable DM does not hide the request from everyone else.
                Err(e) if !posts.is_empty() || self.channels.iter().all(|c| c != target) => {
                    tracing::warn!(target = %target, error = %e, "slack: could not post the request");
                }
                Err(e) => return Err(failed(e)),
            }
        }
        let first = posts
            .first()
            .ok_or_else(|| ApproverError::new("slack: the request was posted nowhere"))?;
        Ok(Delivery {
            channel: self.name.clone(),
            id: format!("{}:{}", first.channel, first.ts),
            data: json!(posts),
        })
    }

    async fn reviewed(
        &self,
        request: &ApprovalRequest,
        review: &RecordedReview,
        delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        let r = &review.review;
        let verb = r.decision.past();
        let mut text = format!("{} {verb}", r.reviewer.id);
        if let Some(c) = &r.comment {
            text.push_str(&format!(": {}", crate::shown::clip(c, 2000)));
        }
        if request.is_pending() {
            text.push_str(&format!(
                " — still needed: {}",
                tally::progress(request).still_needed()
            ));
        }
        self.reply_in_threads(delivery, &text).await
    }

    async fn remind(
        &self,
        request: &ApprovalRequest,
        delivery: &Delivery,
        number: u32,
    ) -> Result<(), ApproverError> {
        let text = format!(
            "Reminder {number}: still waiting — {}",
            tally::progress(request).still_needed()
        );
        self.reply_in_threads(delivery, &text).await
    }

    async fn resolved(
        &self,
        request: &ApprovalRequest,
        decision: &Decision,
        delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        let blocks = message::blocks(request, Some(decision), self.console.as_deref());
        let text = crate::shown::clip(
            &format!("{}: {decision}", request.action.name),
            message::limits::MESSAGE_TEXT,
        )
        .into_owned();
        for p in Self::posts(delivery) {
            self.client
                .update(&p.channel, &p.ts, &text, &blocks)
                .await
                .map_err(failed)?;
        }
        Ok(())
    }
}

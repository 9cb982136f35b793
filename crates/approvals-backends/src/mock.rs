//! A mock approver for tests: take each request from a handle and decide it as anyone.

use std::sync::Arc;

use approvals_core::{
    ApprovalRequest, Approver, ApproverError, Delivery, Gate, GrantTerms, Principal, RequestId,
    Review, ReviewDecision, SubmitError,
};
use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc, watch};

/// What a [`MockApprover`] does with each request.
#[derive(Debug, Clone)]
enum Mode {
    /// Hand it to the [`MockHandle`].
    Manual(mpsc::UnboundedSender<MockRequest>),
    /// Submit an approval as this reviewer.
    Approve(Principal),
    /// Submit a denial as this reviewer, with this reason.
    Deny(Principal, String),
    /// Fail delivery with this message.
    Fail(String),
}

/// An [`Approver`] that tests drive: a [`MockHandle`] takes each request and approves or
/// denies it as a given principal; or the approver decides by itself ([`auto_approve`],
/// [`auto_deny`]); or it fails delivery ([`failing`]).
///
/// Reviews go through [`Gate::submit_review`] like any channel's, so every rule applies:
/// approving as the requester is refused.
///
/// [`auto_approve`]: MockApprover::auto_approve
/// [`auto_deny`]: MockApprover::auto_deny
/// [`failing`]: MockApprover::failing
///
/// ```
/// use approvals_backends::mock::MockApprover;
/// let (approver, handle) = MockApprover::new();
/// ```
#[derive(Debug, Clone)]
pub struct MockApprover {
    name: String,
    mode: Mode,
    reminders: Arc<watch::Sender<Vec<(RequestId, u32)>>>,
}

/// The test's side of a manual [`MockApprover`].
#[derive(Debug)]
pub struct MockHandle {
    rx: Mutex<mpsc::UnboundedReceiver<MockRequest>>,
    reminders: watch::Receiver<Vec<(RequestId, u32)>>,
}

impl MockApprover {
    /// A manual mock named `mock`, and the handle that receives its requests.
    pub fn new() -> (Self, MockHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = Self::with_mode(Mode::Manual(tx));
        let reminders = me.reminders.subscribe();
        (
            me,
            MockHandle {
                rx: Mutex::new(rx),
                reminders,
            },
        )
    }

    fn with_mode(mode: Mode) -> Self {
        Self {
            name: "mock".into(),
            mode,
            reminders: Arc::new(watch::Sender::new(Vec::new())),
        }
    }

    /// A mock that approves every request as the human `reviewer`.
    pub fn auto_approve(reviewer: &str) -> Self {
        Self::with_mode(Mode::Approve(Principal::human(reviewer)))
    }

    /// A mock that denies every request as the human `reviewer`, giving `reason`.
    pub fn auto_deny(reviewer: &str, reason: &str) -> Self {
        Self::with_mode(Mode::Deny(Principal::human(reviewer), reason.into()))
    }

    /// A mock whose delivery always fails, to test that calls fail closed.
    pub fn failing(message: &str) -> Self {
        Self::with_mode(Mode::Fail(message.into()))
    }

    /// Renames the channel (default `mock`), to test several channels at once.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
}

#[async_trait]
impl Approver for MockApprover {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(
        &self,
        request: &ApprovalRequest,
        gate: &Gate,
    ) -> Result<Delivery, ApproverError> {
        let auto = match &self.mode {
            Mode::Fail(message) => return Err(ApproverError::new(message.clone())),
            Mode::Manual(tx) => {
                let sent = tx.send(MockRequest {
                    request: request.clone(),
                    channel: self.name.clone(),
                    gate: gate.clone(),
                });
                // A dropped handle means nobody will ever review: fail closed now.
                sent.map_err(|_| ApproverError::new("the mock handle was dropped"))?;
                None
            }
            Mode::Approve(p) => Some((p.clone(), ReviewDecision::Approve, None)),
            Mode::Deny(p, reason) => Some((p.clone(), ReviewDecision::Deny, Some(reason.clone()))),
        };
        if let Some((reviewer, decision, comment)) = auto {
            let pending = MockRequest {
                request: request.clone(),
                channel: self.name.clone(),
                gate: gate.clone(),
            };
            tokio::spawn(async move {
                // Refusals are audited by the gate; nothing more to do with them here.
                let _ = pending.review(reviewer, decision, comment).await;
            });
        }
        Ok(Delivery {
            channel: self.name.clone(),
            id: format!("mock-{}", request.id),
            data: serde_json::Value::Null,
        })
    }

    async fn remind(
        &self,
        request: &ApprovalRequest,
        _delivery: &Delivery,
        number: u32,
    ) -> Result<(), ApproverError> {
        self.reminders
            .send_modify(|log| log.push((request.id, number)));
        Ok(())
    }
}

impl MockHandle {
    /// The next request delivered to the mock, once it is recorded as delivered. Waits.
    ///
    /// Returns `None` when the approver (and every gate holding it) is gone.
    pub async fn next(&self) -> Option<MockRequest> {
        let next = self.rx.lock().await.recv().await?;
        // Return only once the gate has recorded the delivery, so the test's review lands
        // after "notified" in the audit trail, as a person's would.
        let _ = next.gate.delivered(next.request.id, &next.channel).await;
        Some(next)
    }

    /// A request already delivered, without waiting.
    pub fn try_next(&self) -> Option<MockRequest> {
        self.rx.try_lock().ok()?.try_recv().ok()
    }

    /// The reminders this channel has been asked to send: (request, reminder number).
    pub fn reminders(&self) -> Vec<(RequestId, u32)> {
        self.reminders.borrow().clone()
    }

    /// Waits until at least `n` reminders have been sent on this channel.
    pub async fn wait_for_reminders(&self, n: usize) -> Vec<(RequestId, u32)> {
        let mut rx = self.reminders.clone();
        match rx.wait_for(|log| log.len() >= n).await {
            Ok(log) => log.clone(),
            Err(_) => self.reminders(),
        }
    }
}

/// A request delivered to a [`MockApprover`], to decide from a test.
#[derive(Debug, Clone)]
pub struct MockRequest {
    /// The request as delivered.
    pub request: ApprovalRequest,
    channel: String,
    gate: Gate,
}

impl MockRequest {
    /// Approves as the human `reviewer`.
    pub async fn approve_as(&self, reviewer: &str) -> Result<ApprovalRequest, SubmitError> {
        self.review(Principal::human(reviewer), ReviewDecision::Approve, None)
            .await
    }

    /// Denies as the human `reviewer`, giving `reason`.
    pub async fn deny_as(
        &self,
        reviewer: &str,
        reason: &str,
    ) -> Result<ApprovalRequest, SubmitError> {
        self.review(
            Principal::human(reviewer),
            ReviewDecision::Deny,
            Some(reason.into()),
        )
        .await
    }

    /// Sends the request back as the human `reviewer`: `message` says what to change.
    pub async fn request_changes_as(
        &self,
        reviewer: &str,
        message: &str,
    ) -> Result<ApprovalRequest, SubmitError> {
        self.review(
            Principal::human(reviewer),
            ReviewDecision::RequestChanges,
            Some(message.into()),
        )
        .await
    }

    /// Reviews as any principal.
    pub async fn review(
        &self,
        reviewer: Principal,
        decision: ReviewDecision,
        comment: Option<String>,
    ) -> Result<ApprovalRequest, SubmitError> {
        let at = self.gate.clock().now();
        let mut review = match decision {
            ReviewDecision::Approve => Review::approve(&self.request, reviewer, at),
            ReviewDecision::Deny => Review::deny(&self.request, reviewer, at),
            ReviewDecision::RequestChanges => {
                Review::request_changes(&self.request, reviewer, String::new(), at)
            }
        };
        // The comment as given, even none: a request for changes without one is refused.
        review.comment = comment;
        self.gate.submit_review(review).await
    }

    /// Approves as the human `reviewer` with the editable arguments in `set` (a JSON object)
    /// changed: an edit, a new call of its own. Returns the edited call's request.
    pub async fn edit_as(
        &self,
        reviewer: &str,
        set: serde_json::Value,
    ) -> Result<ApprovalRequest, SubmitError> {
        let at = self.gate.clock().now();
        let mut review = Review::approve(&self.request, Principal::human(reviewer), at);
        review.set = Some(match set {
            serde_json::Value::Object(m) => m,
            other => [("value".to_owned(), other)].into_iter().collect(),
        });
        self.gate.submit_review(review).await
    }

    /// Approves as the human `reviewer` and asks for a standing grant with these terms.
    pub async fn grant_as(
        &self,
        reviewer: &str,
        terms: GrantTerms,
    ) -> Result<ApprovalRequest, SubmitError> {
        let at = self.gate.clock().now();
        let review = Review::approve(&self.request, Principal::human(reviewer), at).grant(terms);
        self.gate.submit_review(review).await
    }

    /// Submits a hand-made review (a wrong digest, say) through the gate.
    pub async fn submit(&self, review: Review) -> Result<ApprovalRequest, SubmitError> {
        self.gate.submit_review(review).await
    }

    /// The gate the request belongs to.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

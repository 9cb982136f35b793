//! A request as people and programs are shown it: the one view the API returns, the CLI
//! prints and the console renders, so none of them reads a request by string keys.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::directory::{Directory, reviewers_of};
use crate::request::{ApprovalRequest, Decision, Execution};
use crate::tally;

/// Where a request stands, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for reviews.
    Pending,
    /// Every factor filled; see [`RequestView::execution`] for whether it ran.
    Approved,
    /// An eligible reviewer denied it.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// A reviewer sent it back with what to change.
    ChangesRequested,
    /// A reviewer approved it with changed arguments: the edit is a request of its own
    /// ([`RequestView::edited_into`]), and this call never runs.
    Edited,
    /// Withdrawn, or it could not be delivered.
    Cancelled,
}

impl Status {
    /// The status of `request`.
    pub fn of(request: &ApprovalRequest) -> Self {
        match request.decision() {
            None => Status::Pending,
            Some(Decision::Approved { .. }) => Status::Approved,
            Some(Decision::Denied { .. }) => Status::Denied,
            Some(Decision::Expired { .. }) => Status::Expired,
            Some(Decision::ChangesRequested { .. }) => Status::ChangesRequested,
            Some(Decision::Edited { .. }) => Status::Edited,
            Some(Decision::Cancelled { .. }) => Status::Cancelled,
        }
    }

    /// The word: `pending`, `approved`, `denied`, `expired`, `changes_requested`, `edited`
    /// or `cancelled`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::ChangesRequested => "changes_requested",
            Status::Edited => "edited",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// A request with what a reader needs to act on it: its status, what it still needs, who
/// has approved, who may still approve, how long it has left, and where to see it.
///
/// ```
/// use approvals_core::view::{RequestView, Status};
/// use approvals_core::{Action, ApprovalRequest, Context, Factor, Principal, Requirement,
///                      StaticDirectory, Timestamp};
/// let action = Action::builder("deploy", "deploy").arg("env", &"prod").build().unwrap();
/// let req = ApprovalRequest::new(
///     action,
///     Context::new(Principal::agent("ci")),
///     Requirement::new("r").factor(Factor::group("sre", 1)),
///     Timestamp::from_unix_micros(0),
/// );
/// let dir = StaticDirectory::new().group("sre", ["alice", "bob"]);
/// let view = RequestView::of(&req, &dir, Timestamp::from_unix_micros(0), None);
/// assert_eq!(view.status, Status::Pending);
/// assert_eq!(view.still_needed, "1 more from sre");
/// assert_eq!(view.may_approve, ["alice", "bob"]);
/// assert_eq!(view.expires_in_secs, 3600);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// The request as stored: the call, its context, requirement, reviews and state.
    pub request: ApprovalRequest,
    /// Where it stands.
    pub status: Status,
    /// What it still needs (`1 more from sre`); empty once decided.
    pub still_needed: String,
    /// Who approved it so far, in the order they approved.
    pub approved_by: Vec<String>,
    /// Who could move it forward by approving now, as the rules would judge them.
    pub may_approve: Vec<String>,
    /// Seconds until it expires (0 once past, or decided).
    pub expires_in_secs: u64,
    /// Whether its approved body has run: not started, started (running, or in doubt if its
    /// process died), finished.
    pub execution: Execution,
    /// The request's page in the web console, when the service knows its public URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// For an edited request: the request of the edited call, the one that may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_into: Option<crate::RequestId>,
}

impl RequestView {
    /// The view of `request` at `now`, with who may approve judged against `directory`;
    /// `console` is the service's public URL, if it has one.
    pub fn of(
        request: &ApprovalRequest,
        directory: &dyn Directory,
        now: Timestamp,
        console: Option<&str>,
    ) -> Self {
        let progress = tally::progress(request);
        let ids = reviewers_of(&request.requirement, &request.context, directory);
        let may_approve = tally::may_still_approve(
            request,
            ids.iter().map(|id| (id.as_str(), directory.groups_of(id))),
            now,
        );
        // In the order they approved, not the order of the factors they fill.
        let filled = progress.approvers();
        let approved_by = request
            .reviews
            .iter()
            .filter(|r| filled.iter().any(|p| p.same_party(&r.review.reviewer)))
            .map(|r| r.review.reviewer.id.to_string())
            .collect();
        let pending = request.is_pending();
        Self {
            request: request.clone(),
            status: Status::of(request),
            still_needed: if pending {
                progress.still_needed()
            } else {
                String::new()
            },
            approved_by,
            may_approve,
            expires_in_secs: if pending && request.expires_at > now {
                request.expires_at.duration_since(now).as_secs()
            } else {
                0
            },
            execution: request.execution,
            console_url: console.map(|base| {
                format!(
                    "{}/console/requests/{}",
                    base.trim_end_matches('/'),
                    request.id
                )
            }),
            edited_into: match request.decision() {
                Some(Decision::Edited { edit, .. }) => Some(*edit),
                _ => None,
            },
        }
    }
}

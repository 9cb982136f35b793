//! Approval requests, reviews and decisions.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::action::{Action, Digest};
use crate::clock::Timestamp;
use crate::policy::Requirement;
use crate::principal::{Context, Principal};

/// The id of an approval request: a ULID, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(Halves);

impl RequestId {
    /// A new, unique id, greater than every id generated before it in this process.
    pub fn generate() -> Self {
        Self(next_ulid().into())
    }

    pub(crate) fn halves(self) -> Halves {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A ULID (a request's or a grant's id) kept as its two halves, high first, so that ids
/// compare as the ULIDs do; written and read as the ULID.
///
/// Not the ULID's one `u128`: a `u128` is aligned to 16 bytes, and so was every error,
/// answer and future that held an id, each padded to match, and a waiting call kept that
/// padding in every layer (its task cell took 512 bytes, now 384).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "ulid::Ulid", into = "ulid::Ulid")]
pub(crate) struct Halves([u64; 2]);

impl From<ulid::Ulid> for Halves {
    fn from(u: ulid::Ulid) -> Self {
        let bits = u128::from(u);
        // The halves of a `u128`: the truncation is the point.
        #[allow(clippy::cast_possible_truncation)]
        Self([(bits >> 64) as u64, bits as u64])
    }
}

impl From<Halves> for ulid::Ulid {
    fn from(h: Halves) -> Self {
        let [high, low] = h.0;
        ulid::Ulid::from((u128::from(high) << 64) | u128::from(low))
    }
}

impl fmt::Display for Halves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&ulid::Ulid::from(*self), f)
    }
}

impl fmt::Debug for Halves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A ULID from one process-wide monotonic generator: ids made within the same millisecond
/// still sort in the order they were made (a plain `Ulid::new()` is random within it).
pub(crate) fn next_ulid() -> ulid::Ulid {
    use std::sync::Mutex;
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut g = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    // Overflow needs 2^80 ids in one millisecond; fall back to a random one regardless.
    g.get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
}

/// The text was not a request id (a 26-character ULID).
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a request id (26-character ULID): {0:?}")]
pub struct RequestIdParseError(String);

/// Parses a request id: 26 Crockford base32 characters, either case.
///
/// ```
/// use approvals_core::RequestId;
/// let id = RequestId::generate();
/// assert_eq!(id.to_string().parse::<RequestId>().unwrap(), id);
/// assert_eq!(id.to_string().to_lowercase().parse::<RequestId>().unwrap(), id);
/// // 26 characters hold 130 bits; a ULID is 128, so the first is at most `7`.
/// assert!("80000000000000000000000000".parse::<RequestId>().is_err());
/// ```
impl std::str::FromStr for RequestId {
    type Err = RequestIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The ulid crate drops the two bits beyond 128, so `8…` would name the same
        // request as `0…`: one request, one spelling (case aside).
        if !s.starts_with(|c: char| ('0'..='7').contains(&c)) {
            return Err(RequestIdParseError(s.to_owned()));
        }
        ulid::Ulid::from_string(s)
            .map(|u| Self(u.into()))
            .map_err(|_| RequestIdParseError(s.to_owned()))
    }
}

/// A call waiting for (or decided by) human review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Unique id.
    pub id: RequestId,
    /// The exact call under review.
    pub action: Action,
    /// Who asked, for whom, and why.
    pub context: Context,
    /// Who must approve.
    pub requirement: Requirement,
    /// When the request was made.
    pub created_at: Timestamp,
    /// After this, nothing can approve it.
    pub expires_at: Timestamp,
    /// Pending, or the decision.
    pub state: RequestState,
    /// Reviews accepted so far, in order of arrival.
    pub reviews: Vec<RecordedReview>,
    /// Whether the approved body has run.
    pub execution: Execution,
    /// Where the request was delivered (message ids on each channel).
    pub deliveries: Vec<Delivery>,
    /// Whether a caller has been told of a negative decision; until then an identical call
    /// re-attaches to this request and learns it, after that it starts a new one.
    pub outcome_reported: bool,
    /// How many escalation steps of the requirement have fired.
    #[serde(default)]
    pub escalated: u32,
    /// How many reminders have been sent.
    #[serde(default)]
    pub reminded: u32,
    /// Where the requester asked for the decision to be POSTed (a requester outside the
    /// process, `callback_url` of `POST /api/v1/requests`). Not part of the call: an
    /// identical call with another callback joins this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
    /// Set when this request is a reviewer's edit of another: the call with the arguments
    /// they changed. It was judged by the policy afresh and needs its own approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ///
    /// Boxed: few requests are edits, and every copy of every request would keep room
    /// for one.
    pub edit_of: Option<Box<EditOf>>,
    /// Bumped on every change; waiters compare it.
    pub version: u64,
}

/// Where an edited call came from: the request it replaces, who proposed the new values,
/// and what they changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditOf {
    /// The request of the call as it was asked for (decided as [`Decision::Edited`]).
    pub original: RequestId,
    /// The original call's digest.
    pub original_digest: Digest,
    /// The reviewer who proposed the edit; their approval counts for the edited call.
    pub by: Principal,
    /// Each argument changed, from what to what.
    pub changes: Vec<Change>,
    /// When it was proposed.
    pub at: Timestamp,
}

/// One argument a reviewer changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The argument.
    pub arg: String,
    /// Its value in the call as asked for.
    pub from: Value,
    /// The value the reviewer set.
    pub to: Value,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.arg, self.from, self.to)
    }
}

impl ApprovalRequest {
    /// A new pending request for `action`, made by `context` at `now`, expiring after the
    /// requirement's `expires_in`.
    pub fn new(action: Action, context: Context, requirement: Requirement, now: Timestamp) -> Self {
        Self {
            id: RequestId::generate(),
            expires_at: now.saturating_add(requirement.expires_in),
            action,
            context,
            requirement,
            created_at: now,
            state: RequestState::Pending,
            reviews: Vec::new(),
            execution: Execution::NotStarted,
            deliveries: Vec::new(),
            outcome_reported: false,
            escalated: 0,
            reminded: 0,
            callback: None,
            edit_of: None,
            version: 0,
        }
    }

    /// The decision, once there is one.
    pub fn decision(&self) -> Option<&Decision> {
        match &self.state {
            RequestState::Pending => None,
            RequestState::Decided(d) => Some(d),
        }
    }

    /// Whether the request is still open for review.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, RequestState::Pending)
    }

    /// When the next escalation step is due, if one is left.
    pub fn next_escalation(&self) -> Option<Timestamp> {
        let step = self.requirement.escalations.get(self.escalated as usize)?;
        Some(self.created_at.saturating_add(step.after))
    }

    /// When the next reminder is due, if one is left.
    pub fn next_reminder(&self) -> Option<Timestamp> {
        let r = self.requirement.reminders?;
        if r.every.is_zero() || r.max.is_some_and(|m| self.reminded >= m) {
            return None;
        }
        let n = self.reminded.checked_add(1)?;
        Some(self.created_at.saturating_add(r.every.saturating_mul(n)))
    }

    /// The next moment something must happen to this request with nobody asking: an
    /// escalation, a reminder or its expiry. `None` once decided.
    pub fn next_due(&self) -> Option<Timestamp> {
        if !self.is_pending() {
            return None;
        }
        [self.next_escalation(), self.next_reminder()]
            .into_iter()
            .flatten()
            .filter(|t| *t < self.expires_at)
            .chain([self.expires_at])
            .min()
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for reviews.
    Pending,
    /// Decided; final.
    Decided(Decision),
}

/// The final outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Every factor was filled.
    Approved {
        /// When the last needed approval arrived.
        at: Timestamp,
        /// The reviewers whose approvals filled the factors.
        by: Vec<Principal>,
    },
    /// An eligible reviewer denied it.
    Denied {
        /// When.
        at: Timestamp,
        /// Who denied.
        by: Principal,
        /// Their stated reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Nobody decided before `expires_at`. Never reported as a denial.
    Expired {
        /// When the expiry was recorded.
        at: Timestamp,
    },
    /// An eligible reviewer sent the call back: not this call, but one changed as their
    /// message says. Nothing runs; the caller is told what to change. Not a denial.
    ChangesRequested {
        /// When.
        at: Timestamp,
        /// Who asked.
        by: Principal,
        /// What to change.
        message: String,
    },
    /// A reviewer approved it with changed arguments: the call that may run is the edit, a
    /// request of its own (with its own digest, judged by the policy afresh, approved under
    /// its own reviews). This call never runs.
    Edited {
        /// When the edit was proposed.
        at: Timestamp,
        /// Who proposed it.
        by: Principal,
        /// The edited call's request.
        edit: RequestId,
        /// What they changed.
        changes: Vec<Change>,
    },
    /// Withdrawn before a decision, or because it could not be delivered.
    Cancelled {
        /// When.
        at: Timestamp,
        /// Who cancelled, if a person did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Principal>,
        /// Why.
        reason: String,
    },
}

impl Decision {
    /// When it was made.
    pub fn at(&self) -> Timestamp {
        match self {
            Decision::Approved { at, .. }
            | Decision::Denied { at, .. }
            | Decision::Expired { at, .. }
            | Decision::ChangesRequested { at, .. }
            | Decision::Edited { at, .. }
            | Decision::Cancelled { at, .. } => *at,
        }
    }

    /// A short word for the decision: `approved`, `denied`, `expired`,
    /// `changes_requested`, `edited` or `cancelled`.
    pub fn word(&self) -> &'static str {
        match self {
            Decision::Approved { .. } => "approved",
            Decision::Denied { .. } => "denied",
            Decision::Expired { .. } => "expired",
            Decision::ChangesRequested { .. } => "changes_requested",
            Decision::Edited { .. } => "edited",
            Decision::Cancelled { .. } => "cancelled",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Approved { by, .. } => {
                let ids: Vec<&str> = by.iter().map(|p| p.id.as_str()).collect();
                write!(f, "approved by {}", ids.join(", "))
            }
            Decision::Denied { by, reason, .. } => match reason {
                Some(r) => write!(f, "denied by {}: {r}", by.id),
                None => write!(f, "denied by {}", by.id),
            },
            Decision::Expired { at } => write!(f, "expired at {at}"),
            Decision::ChangesRequested { by, message, .. } => {
                write!(f, "changes requested by {}: {message}", by.id)
            }
            Decision::Edited {
                by, edit, changes, ..
            } => {
                let changed: Vec<String> = changes.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "edited by {} ({}) into request {edit}",
                    by.id,
                    changed.join(", ")
                )
            }
            Decision::Cancelled { reason, .. } => write!(f, "cancelled: {reason}"),
        }
    }
}

/// Whether the approved body has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "execution", rename_all = "snake_case")]
pub enum Execution {
    /// Not started: the permit is unused.
    NotStarted,
    /// The permit was taken and the body started; no finish recorded yet.
    Started {
        /// When.
        at: Timestamp,
    },
    /// The body ran to completion.
    Finished {
        /// When it started.
        started_at: Timestamp,
        /// When it finished.
        at: Timestamp,
        /// Whether it returned `Ok`.
        ok: bool,
    },
}

/// Approve or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// Let the call run.
    Approve,
    /// Refuse it.
    Deny,
    /// Send it back: the caller should change the call as the review's comment says (which
    /// is required) and make it again. Decides the request, as a denial does.
    RequestChanges,
}

impl ReviewDecision {
    /// `approve`, `deny` or `request_changes`: the word the API, the CLI and signed
    /// decisions use.
    pub fn verb(self) -> &'static str {
        match self {
            ReviewDecision::Approve => "approve",
            ReviewDecision::Deny => "deny",
            ReviewDecision::RequestChanges => "request_changes",
        }
    }

    /// `approved`, `denied` or `asked for changes`, as a sentence says it.
    pub fn past(self) -> &'static str {
        match self {
            ReviewDecision::Approve => "approved",
            ReviewDecision::Deny => "denied",
            ReviewDecision::RequestChanges => "asked for changes",
        }
    }
}

/// How a reviewer was authenticated when their review was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Evidence {
    /// A test's mock approver; proves nothing.
    Mock,
    /// Typed at a local terminal.
    Terminal {
        /// The operating-system user running the terminal, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        os_user: Option<String>,
    },
    /// A decision signed with the reviewer's own Ed25519 key
    /// ([`SignedDecision`](crate::signed::SignedDecision)): checkable later by anyone with
    /// the key, with [`Evidence::verify_signature`].
    Signed {
        /// The channel it arrived on (`api`, `cli`, a webhook callback).
        channel: String,
        /// The reviewer's public key, hex.
        public_key: String,
        /// The exact text signed.
        message: String,
        /// The signature, base64.
        signature: String,
    },
    /// Any other channel's evidence, as JSON.
    Other {
        /// The channel (`slack`, `api`, ...).
        channel: String,
        /// The channel's evidence (signature, session id, ...).
        details: Value,
    },
}

/// One reviewer's decision on one request, bound to the request's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The request reviewed.
    pub request_id: RequestId,
    /// The digest the reviewer saw; must equal the request's.
    pub digest: Digest,
    /// Who reviewed, as authenticated by the channel.
    pub reviewer: Principal,
    /// Approve or deny.
    pub decision: ReviewDecision,
    /// What they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When the review was made.
    pub at: Timestamp,
    /// How the reviewer was authenticated.
    pub evidence: Evidence,
    /// A standing grant the reviewer asks to issue with their approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<crate::grant::GrantTerms>,
    /// New values for editable arguments: an approval of the call changed so. The edit is a
    /// new call, judged by the policy afresh; this approval counts as the first of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<serde_json::Map<String, Value>>,
}

impl Review {
    /// An approval of `request` by `reviewer`, timestamped `at`.
    pub fn approve(request: &ApprovalRequest, reviewer: Principal, at: Timestamp) -> Self {
        Self::new(request, reviewer, ReviewDecision::Approve, at)
    }

    /// A denial of `request` by `reviewer`, timestamped `at`.
    pub fn deny(request: &ApprovalRequest, reviewer: Principal, at: Timestamp) -> Self {
        Self::new(request, reviewer, ReviewDecision::Deny, at)
    }

    /// `reviewer` sends `request` back: `message` says what to change.
    ///
    /// ```
    /// # use approvals_core::{Action, ApprovalRequest, Context, Principal, Requirement, Review, ReviewDecision, Timestamp};
    /// # let action = Action::builder("deploy", "deploys").arg("env", &"production").build().unwrap();
    /// # let now = Timestamp::now();
    /// # let request = ApprovalRequest::new(action, Context::new(Principal::agent("bot")), Requirement::new("r"), now);
    /// let r = Review::request_changes(&request, Principal::human("alice"), "deploy to staging first", now);
    /// assert_eq!(r.decision, ReviewDecision::RequestChanges);
    /// assert_eq!(r.comment.as_deref(), Some("deploy to staging first"));
    /// ```
    pub fn request_changes(
        request: &ApprovalRequest,
        reviewer: Principal,
        message: impl Into<String>,
        at: Timestamp,
    ) -> Self {
        let mut review = Self::new(request, reviewer, ReviewDecision::RequestChanges, at);
        review.comment = Some(message.into());
        review
    }

    fn new(
        request: &ApprovalRequest,
        reviewer: Principal,
        decision: ReviewDecision,
        at: Timestamp,
    ) -> Self {
        Self {
            request_id: request.id,
            digest: request.action.digest,
            reviewer,
            decision,
            comment: None,
            at,
            evidence: Evidence::Mock,
            grant: None,
            set: None,
        }
    }

    /// Adds a comment (for a denial: the reason).
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Sets the evidence.
    pub fn evidence(mut self, evidence: Evidence) -> Self {
        self.evidence = evidence;
        self
    }

    /// Approves the call with `arg` changed to `value` (see [`Review::set`]).
    ///
    /// ```
    /// # use approvals_core::{Action, ApprovalRequest, Context, Principal, Requirement, Review, Timestamp};
    /// # let action = Action::builder("export", "exports").arg("limit", &50_000).editable("limit").build().unwrap();
    /// # let now = Timestamp::now();
    /// # let request = ApprovalRequest::new(action, Context::new(Principal::agent("bot")), Requirement::new("r"), now);
    /// let r = Review::approve(&request, Principal::human("alice"), now).set("limit", 500);
    /// assert_eq!(r.set.unwrap()["limit"], 500);
    /// ```
    pub fn set(mut self, arg: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set
            .get_or_insert_with(Default::default)
            .insert(arg.into(), value.into());
        self
    }

    /// Asks for a standing grant with this approval ("approve and don't ask again").
    pub fn grant(mut self, terms: crate::grant::GrantTerms) -> Self {
        self.grant = Some(terms);
        self
    }
}

/// A review as the gate recorded it: with the reviewer's group memberships at the time of
/// review, looked up by the gate (never taken from the reviewer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedReview {
    /// The review.
    pub review: Review,
    /// The reviewer's directory groups when the review arrived.
    pub groups: BTreeSet<String>,
}

/// Where a request was delivered, so the channel can later show the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The approver (channel) name.
    pub channel: String,
    /// The channel's id for what it sent (message timestamp, ...).
    pub id: String,
    /// Anything else the channel needs to update it later.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_id_kept_in_halves_reads_writes_and_sorts_as_its_ulid() {
        // Halves that a split at the wrong place or order would get wrong.
        let ulids = [
            ulid::Ulid::from(0_u128),
            ulid::Ulid::from(1_u128),
            ulid::Ulid::from(u128::from(u64::MAX)),
            ulid::Ulid::from(1_u128 << 64),
            ulid::Ulid::from((7_u128 << 64) | 3),
            ulid::Ulid::from(u128::MAX),
            ulid::Ulid::from_string("01J9ZQ3X8F2T6N4K0V5B7C1D9E").unwrap(),
        ];
        for u in ulids {
            let id = RequestId(u.into());
            assert_eq!(ulid::Ulid::from(id.halves()), u);
            assert_eq!(id.to_string(), u.to_string());
            assert_eq!(format!("{id:?}"), format!("RequestId({u})"));
            assert_eq!(
                serde_json::to_string(&id).unwrap(),
                serde_json::to_string(&u).unwrap()
            );
            assert_eq!(
                serde_json::from_str::<RequestId>(&format!("\"{u}\"")).unwrap(),
                id
            );
            for v in ulids {
                assert_eq!(id.cmp(&RequestId(v.into())), u.cmp(&v), "{u} against {v}");
            }
        }
        assert_eq!(std::mem::align_of::<RequestId>(), 8);
    }
}

//! Errors a gated call can end with, one enum per concern.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::ArgumentError;
use crate::clock::Timestamp;
use crate::policy::PolicyError;
use crate::principal::Principal;
use crate::request::RequestId;
use crate::tally::Refusal;

/// Why a gated call did not run. Whatever the variant, the privileged body did not run.
///
/// Denials are values, not strings: [`Error::denial`] tells who denied and why.
///
/// ```
/// use approvals_core::{Denial, DeniedBy, Error};
/// let e = Error::Denied(Denial {
///     by: DeniedBy::Policy { rule: "no-drops".into() },
///     reason: Some("agents never drop tables".into()),
///     request_id: None,
/// });
/// assert_eq!(e.to_string(), "denied by policy rule `no-drops`: agents never drop tables");
/// assert!(matches!(e.denial().unwrap().by, DeniedBy::Policy { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy or a reviewer refused the call.
    #[error("{0}")]
    Denied(Denial),
    /// Nobody decided before the request expired. Not a denial.
    #[error("approval request {request_id} expired at {expires_at} without a decision")]
    Expired {
        /// The request.
        request_id: RequestId,
        /// When it expired.
        expires_at: Timestamp,
    },
    /// A reviewer sent the call back: make it again, changed as `message` says. Nothing ran.
    /// Not a denial: the same action with other arguments may well be approved.
    #[error("{by} asked for changes to approval request {request_id}: {message}")]
    ChangesRequested {
        /// The request.
        request_id: RequestId,
        /// Who asked.
        by: String,
        /// What to change.
        message: String,
    },
    /// A reviewer approved the call with changed arguments: the call that may run is the
    /// edit, request `edit`, which needs its own approvals. [`Gate::authorize`] follows it by
    /// itself; a caller that waits its own way follows `edit`.
    ///
    /// [`Gate::authorize`]: crate::Gate::authorize
    #[error("{by} edited approval request {request_id} into request {edit}")]
    Edited {
        /// The request of the call as asked for.
        request_id: RequestId,
        /// The edited call's request.
        edit: RequestId,
        /// Who proposed the edit.
        by: String,
    },
    /// A reviewer's new value for an argument cannot be read into its type. The body did
    /// not run; its start and this failure are recorded.
    #[error(
        "the edited value of `{arg}` under approval request {request_id} does not fit the argument: {message}"
    )]
    EditUnusable {
        /// The edited call's request.
        request_id: RequestId,
        /// The argument.
        arg: String,
        /// What serde said.
        message: String,
    },
    /// The request was cancelled.
    #[error("approval request {request_id} was cancelled: {reason}")]
    Cancelled {
        /// The request.
        request_id: RequestId,
        /// Why.
        reason: String,
    },
    /// A deferred call: the request is open; call again once it is approved.
    #[error(
        "approval request {request_id} is pending; the identical call will run once it is approved"
    )]
    Pending {
        /// The request to watch.
        request_id: RequestId,
    },
    /// The caller stopped waiting; the request stays open and an identical call re-attaches.
    #[error("gave up waiting for approval request {request_id} after {waited:?}; it is still open")]
    TimedOut {
        /// The request.
        request_id: RequestId,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The approved call already ran, is running, or is in doubt (started by a process that
    /// died before recording its end) under this request; it runs once, and an in-doubt call
    /// is never run again automatically.
    #[error(
        "the call approved under request {request_id} has already started; an approval is good for one run (a run whose end was never recorded is in doubt and is not repeated)"
    )]
    AlreadyRan {
        /// The request.
        request_id: RequestId,
    },
    /// The request is not approved (pending, denied, expired or cancelled): its permit
    /// cannot be taken.
    #[error("approval request {request_id} is {status}, not approved: nothing may run under it")]
    NotApproved {
        /// The request.
        request_id: RequestId,
        /// Where it stands.
        status: crate::view::Status,
    },
    /// A finish was reported for a call whose permit was never taken (or whose end was
    /// already recorded).
    #[error(
        "the call under approval request {request_id} was not started (or has already finished)"
    )]
    NotStarted {
        /// The request.
        request_id: RequestId,
    },
    /// Someone other than the requester tried to take the permit or report the end.
    #[error("only the requester of approval request {request_id} may start or finish its call")]
    NotRequester {
        /// The request.
        request_id: RequestId,
    },
    /// The approval service a remote gate asks could not be reached, or answered in a way
    /// that could not be understood. Nothing ran.
    #[error("approval service {service} failed: {message}")]
    Remote {
        /// The service's URL.
        service: String,
        /// What went wrong.
        message: String,
    },
    /// No gate was given, scoped or set globally.
    #[error(
        "no approval gate: pass `gate = ...`, run inside `gate.run_as(context, ..)` or `approvals::scope::with_gate`, or call `approvals::set_global_gate` at start-up (a task spawned with tokio::spawn does not inherit the scope: wrap its future too)"
    )]
    NoGate,
    /// No context (requester) was set and the gate has no default.
    #[error(
        "no caller context: run the agent code inside `gate.run_as(context, ..)` or `approvals::scope::with_context`, or give the gate a default context (a task spawned with tokio::spawn does not inherit the scope)"
    )]
    NoContext,
    /// An argument could not be recorded.
    #[error(transparent)]
    Arguments(#[from] ArgumentError),
    /// The call's context (its parties, reason, trigger or labels) was refused before the
    /// call was judged.
    #[error("the call's context is refused: {0}")]
    Context(#[from] crate::principal::ContextError),
    /// The policy engine failed.
    #[error("policy engine failed: {0}")]
    Policy(#[from] PolicyError),
    /// The store failed.
    #[error("approval store failed: {0}")]
    Store(#[from] StoreError),
    /// The audit sink failed.
    #[error("audit sink failed: {0}")]
    Audit(#[from] AuditError),
    /// An approver could not deliver the request; the request was cancelled.
    #[error("approver `{channel}` could not deliver the request: {source}")]
    Delivery {
        /// The approver (channel) name.
        channel: String,
        /// What went wrong.
        source: ApproverError,
    },
    /// A blocking (sync) gated function was called where blocking would stall the runtime.
    #[error(
        "a sync #[requires_approval] function cannot block inside a current-thread tokio runtime; call it from spawn_blocking on a multi-thread runtime, or make it async"
    )]
    CannotBlock,
}

impl Error {
    /// The denial, if the call was denied.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Error::Denied(d) => Some(d),
            _ => None,
        }
    }

    /// The approval request this error concerns, if one was made.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Error::Denied(d) => d.request_id,
            Error::Expired { request_id, .. }
            | Error::Cancelled { request_id, .. }
            | Error::ChangesRequested { request_id, .. }
            | Error::Edited { request_id, .. }
            | Error::EditUnusable { request_id, .. }
            | Error::Pending { request_id }
            | Error::TimedOut { request_id, .. }
            | Error::AlreadyRan { request_id }
            | Error::NotApproved { request_id, .. }
            | Error::NotStarted { request_id }
            | Error::NotRequester { request_id } => Some(*request_id),
            _ => None,
        }
    }
}

impl Error {
    /// What a model is told when its tool call did not run: the error in words, and what it
    /// means for the model's next step (an MCP gateway, an rmcp or rig tool say this).
    ///
    /// ```
    /// use approvals_core::{Denial, DeniedBy, Error};
    /// let e = Error::Denied(Denial {
    ///     by: DeniedBy::Policy { rule: "no-drops".into() },
    ///     reason: Some("agents never drop tables".into()),
    ///     request_id: None,
    /// });
    /// assert_eq!(
    ///     e.model_text(),
    ///     "Refused: denied by policy rule `no-drops`: agents never drop tables. The call was not run."
    /// );
    /// ```
    pub fn model_text(&self) -> String {
        match self {
            Error::Denied(_) => format!("Refused: {self}. The call was not run."),
            Error::Expired { .. } | Error::Cancelled { .. } => {
                format!("Not run: {self}. Calling again asks for approval again.")
            }
            Error::Pending { .. } | Error::TimedOut { .. } => format!(
                "Not run yet: {self}. Call again with exactly the same arguments once it is approved: it runs then, once."
            ),
            Error::AlreadyRan { .. } => format!("Not run again: {self}."),
            Error::ChangesRequested { .. } => format!(
                "Not run: {self}. Change the call as asked and make it again; the changed call is judged afresh."
            ),
            _ => format!("Not run: the call could not be judged ({self}); it fails closed."),
        }
    }
}

impl From<Error> for std::io::Error {
    /// Lets gated functions return `std::io::Result`.
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Denied(_) => std::io::ErrorKind::PermissionDenied,
            Error::Expired { .. } | Error::TimedOut { .. } => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// Who denied a call, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The policy rule or the reviewer.
    pub by: DeniedBy,
    /// The stated reason.
    pub reason: Option<String>,
    /// The request, when a reviewer denied it.
    pub request_id: Option<RequestId>,
}

/// The source of a denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum DeniedBy {
    /// A policy rule.
    Policy {
        /// The rule.
        rule: String,
    },
    /// A reviewer.
    Reviewer {
        /// Who.
        reviewer: Principal,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.by {
            DeniedBy::Policy { rule } => write!(f, "denied by policy rule `{rule}`")?,
            DeniedBy::Reviewer { reviewer } => write!(f, "denied by {}", reviewer.id)?,
        }
        match &self.reason {
            Some(r) => write!(f, ": {r}"),
            None => Ok(()),
        }
    }
}

/// The underlying error a backend reports, kept whole (shared, so errors stay `Clone`).
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

fn cause(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Cause {
    Cause::from(source.into())
}

/// A store failed. Whatever it was doing did not happen (for [`StoreError::Backend`] on a
/// commit, see its note).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreError {
    /// No request has this id.
    UnknownRequest(RequestId),
    /// No standing grant has this id.
    UnknownGrant(crate::grant::GrantId),
    /// The database could not be reached, or the connection was lost before anything was
    /// committed: nothing changed, and the same call may be made again.
    Unavailable {
        /// Which store (`sqlite`, `postgres`, ...).
        backend: String,
        /// What the driver said.
        source: Cause,
    },
    /// A stored row cannot be read back (written by another version, or damaged). The
    /// store keeps serving every other row.
    Unreadable {
        /// Which store.
        backend: String,
        /// Which row (`request 01J…`).
        what: String,
        /// Why it does not decode.
        source: Cause,
    },
    /// The store does not do this.
    Unsupported {
        /// Which store.
        backend: String,
        /// What was asked of it.
        operation: String,
    },
    /// Something the store relies on did not hold: a bug, in the store or in its caller.
    Invariant {
        /// Which store.
        backend: String,
        /// What did not hold.
        message: String,
    },
    /// The backend failed otherwise. A failure while committing may leave the outcome
    /// unknown; it is never retried automatically.
    Backend {
        /// Which store (`memory`, `sqlite`, ...).
        backend: String,
        /// What went wrong.
        source: Cause,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownRequest(id) => write!(f, "no approval request with id {id}"),
            Self::UnknownGrant(id) => write!(f, "no standing grant with id {id}"),
            Self::Unavailable { backend, source } => {
                write!(f, "{backend}: the database is unavailable: {source}")
            }
            Self::Unreadable {
                backend,
                what,
                source,
            } => write!(f, "{backend}: {what} cannot be read: {source}"),
            Self::Unsupported { backend, operation } => {
                write!(f, "{backend}: {operation} is not supported by this store")
            }
            Self::Invariant { backend, message } => {
                write!(f, "{backend}: broken invariant: {message}")
            }
            Self::Backend { backend, source } => write!(f, "{backend}: {source}"),
        }
    }
}

// By hand, as for `AuditError`: the source is the cause itself, so a caller can downcast it
// to the driver's or the OS's error (a derived one would hand out the `Arc` around it).
impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable { source, .. }
            | Self::Unreadable { source, .. }
            | Self::Backend { source, .. } => Some(source.as_ref() as _),
            _ => None,
        }
    }
}

impl StoreError {
    /// A [`StoreError::Backend`] with its cause, which [`source`](std::error::Error::source)
    /// gives back.
    ///
    /// ```
    /// use approvals_core::StoreError;
    /// let e = StoreError::backend("sqlite", std::io::Error::other("disk I/O error"));
    /// let source = std::error::Error::source(&e).unwrap();
    /// let io = source.downcast_ref::<std::io::Error>().unwrap();
    /// assert_eq!(io.to_string(), "disk I/O error");
    /// ```
    pub fn backend(
        backend: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            backend: backend.into(),
            source: cause(source),
        }
    }

    /// A [`StoreError::Unavailable`] with its cause.
    pub fn unavailable(
        backend: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            backend: backend.into(),
            source: cause(source),
        }
    }

    /// A [`StoreError::Unreadable`] with its cause.
    pub fn unreadable(
        backend: impl Into<String>,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unreadable {
            backend: backend.into(),
            what: what.into(),
            source: cause(source),
        }
    }

    /// Whether nothing changed and the same call may simply be made again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// An audit append failed. Nothing that needed the record happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditError {
    /// Which sink.
    pub sink: String,
    /// What went wrong.
    pub message: String,
    /// The underlying error (the OS's, the database driver's), when there is one.
    pub source: Option<Cause>,
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.sink, self.message)
    }
}

// By hand: the source is the cause itself, so a caller can downcast it (a derived one would
// hand out the `Arc` around it).
impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl AuditError {
    /// An error of `sink` with this message.
    ///
    /// ```
    /// use approvals_core::AuditError;
    /// let disk = std::io::Error::other("no space left on device");
    /// let e = AuditError::new("file audit.jsonl", "append failed").caused_by(disk);
    /// assert_eq!(e.to_string(), "file audit.jsonl: append failed");
    /// let source = std::error::Error::source(&e).unwrap();
    /// assert_eq!(source.downcast_ref::<std::io::Error>().unwrap().to_string(), "no space left on device");
    /// ```
    pub fn new(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            message: message.into(),
            source: None,
        }
    }

    /// The same error, with the error that caused it kept as its source.
    pub fn caused_by(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(cause(source));
        self
    }
}

/// Two audit errors are the same when they say the same thing; causes are not compared.
impl PartialEq for AuditError {
    fn eq(&self, other: &Self) -> bool {
        (&self.sink, &self.message) == (&other.sink, &other.message)
    }
}

impl Eq for AuditError {}

/// An approver failed to deliver or update a request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApproverError {
    /// What went wrong.
    pub message: String,
    /// The underlying error (the HTTP client's, the channel's), when there is one.
    pub source: Option<Cause>,
}

impl fmt::Display for ApproverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApproverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl ApproverError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error that `source` caused, with its text as the message.
    ///
    /// ```
    /// use approvals_core::ApproverError;
    /// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    /// let e = ApproverError::from_cause(refused);
    /// assert_eq!(e.to_string(), "connection refused");
    /// let source = std::error::Error::source(&e).unwrap();
    /// assert_eq!(source.downcast_ref::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::ConnectionRefused);
    /// ```
    pub fn from_cause<E: std::error::Error + Send + Sync + 'static>(source: E) -> Self {
        Self {
            message: source.to_string(),
            source: Some(cause(source)),
        }
    }

    /// The same error, with the error that caused it kept as its source.
    pub fn caused_by(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(cause(source));
        self
    }
}

/// Two approver errors are the same when they say the same thing; causes are not compared.
impl PartialEq for ApproverError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for ApproverError {}

/// Why [`Gate::submit_review`](crate::Gate::submit_review) did not accept a review.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The review was refused under the rules; the refusal is audited.
    #[error("review refused: {0}")]
    Refused(Refusal),
    /// The store failed (including an unknown request id).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit sink failed to record the review.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The review is malformed (a comment longer than the gate records, say); nothing was
    /// recorded.
    #[error("review not taken: {message}")]
    Invalid {
        /// What is wrong with it.
        message: String,
    },
}

impl SubmitError {
    /// The refusal, if the review was refused under the rules.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            SubmitError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

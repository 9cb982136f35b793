//! Core of [`approvals`](https://docs.rs/approvals): the data model, the rules of approval,
//! the four traits backends implement, and the [`Gate`].
//!
//! Most users depend on the `approvals` crate, which re-exports everything here together
//! with the `#[requires_approval]` attribute and the backends.
//!
//! - [`Action`], [`Context`], [`Principal`]: the call and who makes it.
//! - [`Verdict`], [`Requirement`], [`Factor`]: what the [`PolicyEngine`] says.
//! - [`ApprovalRequest`], [`Review`], [`Decision`]: the request and its outcome.
//! - [`tally`]: the rules, as pure functions every [`Store`] calls.
//! - [`Gate`]: judges calls, waits for reviews, takes [`Gate::submit_review`].
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod action;
pub mod approver;
pub mod audit;
pub mod canonical;
pub mod clock;
pub mod directory;
pub mod error;
pub mod gate;
pub mod grant;
pub mod log;
#[doc(hidden)]
pub mod macro_support;
pub mod observer;
pub mod policy;
pub mod principal;
pub mod redaction;
pub mod registry;
pub mod remote;
pub mod request;
pub mod scope;
pub mod signed;
pub mod store;
pub mod suggest;
pub mod tally;
pub mod telemetry;
pub mod text;
pub mod view;

// The log's parts at their first homes, for one release.
pub use log::{merkle, note, verify};

#[doc(hidden)]
pub mod doc_support;

pub use action::{Action, ActionBuilder, Args, ArgumentError, Digest, SmolStr};
pub use approver::Approver;
pub use audit::{ActionRef, AuditEvent, AuditReceipt, AuditRecord, AuditSink, EventKind};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use directory::{Directory, Identity, Person, Resolution, StaticDirectory};
pub use error::{
    ApproverError, AuditError, Cause, Denial, DeniedBy, Error, StoreError, SubmitError,
};
pub use gate::{
    BuildError, CallOptions, DueReport, Gate, GateBuilder, MissingPolicy, Permit, SubmitOptions,
    Submitted,
};
pub use grant::{Grant, GrantId, GrantRefusal, GrantTerms};
pub use observer::Observer;
pub use policy::{
    CodePolicy, Eligible, Escalation, Factor, GrantCaps, IfUndelivered, PolicyEngine, PolicyError,
    Possible, Reminders, Requirement, Verdict,
};
pub use principal::{Context, ContextError, InvalidId, Principal, PrincipalKind, SelfRole};
pub use remote::Remote;
pub use request::{
    ApprovalRequest, Change, Decision, Delivery, EditOf, Evidence, Execution, RecordedReview,
    RequestId, RequestState, Review, ReviewDecision,
};
pub use store::{Attach, Store};
pub use tally::edit::EditRefusal;
pub use tally::{PermitRefusal, Progress, Refusal};
pub use view::{RequestView, Status};

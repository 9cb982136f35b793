//! Action-level human approvals for AI agents and automated pipelines.
//!
//! Mark a privileged function with [`#[requires_approval(policy = "...")]`](requires_approval).
//! Each call is judged in context by a [`PolicyEngine`]: it runs, it is refused, or it waits
//! until the right humans approve that exact call. Nobody approves their own request, and
//! every request, review and decision lands in the audit trail.
//!
//! ```
//! use approvals::memory::{MemoryAudit, MemoryStore};
//! use approvals::mock::MockApprover;
//! use approvals::{requires_approval, CodePolicy, Context, Factor, Gate, Principal,
//!                 Requirement, StaticDirectory};
//!
//! #[requires_approval(policy = "export")]
//! async fn export_customers(limit: u32) -> Result<usize, approvals::Error> {
//!     Ok(limit as usize) // the privileged work
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gate = Gate::builder()
//!     .policy(CodePolicy::new().require(
//!         "export",
//!         Requirement::new("export").factor(Factor::group("data-owners", 1)),
//!     ))
//!     .directory(StaticDirectory::new().group("data-owners", ["alice", "bob"]))
//!     .store(MemoryStore::new())
//!     .audit(MemoryAudit::new())
//!     .approver(MockApprover::auto_approve("alice"))
//!     .build()?;
//!
//! let agent = Context::new(Principal::agent("ops-bot"));
//! let rows = approvals::scope::with_gate(gate, approvals::scope::with_context(agent, async {
//!     export_customers(500).await
//! })).await?;
//! assert_eq!(rows, 500);
//! # Ok(()) }
//! ```
//!
//! The rules (enforced in [`tally`], the same for every store):
//! 1. the requester and the principal it acts for never count as reviewers;
//! 2. a reviewer counts only if eligible for a factor at the time of review;
//! 3. one review per reviewer, and one person fills at most one factor;
//! 4. any eligible denial ends the request; it is approved when every factor is filled;
//! 5. a review of a different digest (another call) is refused;
//! 6. after expiry nothing can approve; reviews after a decision are refused and audited;
//! 7. an approval yields one permit: the body runs at most once per request;
//! 8. any failure of the policy engine, store, approver or audit sink fails closed.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[doc(inline)]
pub use approvals_core::{
    Action, ActionBuilder, ActionRef, ApprovalRequest, Approver, ApproverError, Args,
    ArgumentError, AuditError, AuditEvent, AuditReceipt, AuditRecord, AuditSink, BuildError,
    CallOptions, Change, Clock, CodePolicy, Context, Decision, Delivery, Denial, DeniedBy, Digest,
    Directory, DueReport, EditOf, EditRefusal, Eligible, Error, Escalation, EventKind, Evidence,
    Execution, Factor, Gate, GateBuilder, Grant, GrantCaps, GrantId, GrantRefusal, GrantTerms,
    Identity, IfUndelivered, ManualClock, MissingPolicy, Observer, Permit, PermitRefusal, Person,
    PolicyEngine, PolicyError, Possible, Principal, PrincipalKind, Progress, RecordedReview,
    Refusal, Reminders, Remote, RequestId, RequestState, Requirement, Review, ReviewDecision,
    SelfRole, StaticDirectory, Store, StoreError, SubmitError, SubmitOptions, Submitted,
    SystemClock, Timestamp, Verdict,
};
#[doc(inline)]
pub use approvals_core::{Cause, ContextError, InvalidId, Resolution, SmolStr};
#[doc(inline)]
pub use approvals_core::{
    action, canonical, clock, directory, grant, principal, redaction, registry, scope, store,
    suggest, tally, telemetry, view,
};

/// Sets the process-wide default gate, once, at start-up. See [`scope`].
pub use approvals_core::scope::set_global_gate;

#[cfg(feature = "file")]
#[doc(inline)]
pub use approvals_backends::file;
#[cfg(feature = "http")]
#[doc(inline)]
pub use approvals_backends::http;
#[cfg(feature = "mcp")]
#[doc(inline)]
pub use approvals_backends::mcp;
#[cfg(feature = "postgres")]
#[doc(inline)]
pub use approvals_backends::postgres;
#[cfg(feature = "slack")]
#[doc(inline)]
pub use approvals_backends::slack;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[doc(inline)]
pub use approvals_backends::sql;
#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use approvals_backends::sqlite;
#[cfg(feature = "teams")]
#[doc(inline)]
pub use approvals_backends::teams;
#[cfg(feature = "terminal")]
#[doc(inline)]
pub use approvals_backends::terminal;
#[cfg(feature = "memory")]
#[doc(inline)]
pub use approvals_backends::{memory, mock};
#[doc(inline)]
pub use approvals_core::{log, merkle, note, verify};
/// Policy as code: `approvals.toml` with CEL conditions (feature `policy`, on by default):
/// [`policy::FilePolicy`] loads, checks and reloads a file and is the gate's engine and
/// directory; [`policy::LoadError`] lists every error with its line.
#[cfg(feature = "policy")]
pub mod policy {
    #[doc(inline)]
    pub use approvals_policy::*;
}

/// Gates a function behind a policy and, where the policy asks for it, human approval.
///
/// ```
/// # use approvals::requires_approval;
/// # #[derive(serde::Serialize)] struct Table;
/// #[requires_approval(policy = "drop-table", timeout = "15m")]
/// fn drop_table(name: &str) -> std::io::Result<()> {
///     // runs only once the policy, and any reviewers it requires, allow this exact call
///     Ok(())
/// }
/// ```
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `policy = "name"` | required: the policy that judges each call |
/// | `name = "..."` | the action name (default: `module_path!()::fn_name`) |
/// | `skip(a, b)` | leave these arguments out of the record and the digest |
/// | `redact(token)` | record only a keyed digest of these arguments; still bound by the digest |
/// | `editable(limit)` | a reviewer may approve the call with new values for these arguments (see below) |
/// | `gate = expr` | the gate to use (`Gate`, `&Gate` or `Arc<Gate>`; may use `self`) |
/// | `timeout = "30s"` | how long the caller waits (`ms`, `s`, `m`, `h`, `d`); the request stays open |
/// | `defer` | do not wait: fail with [`Error::Pending`] at once; the identical call later re-attaches and runs once approved |
/// | `crate = "path"` | where `approvals` is, if renamed |
///
/// Every argument not skipped must implement `serde::Serialize`. The function must return
/// `Result<T, E>` with `E: From<approvals::Error>` (`approvals::Error` itself,
/// `std::io::Error`, `Box<dyn Error + Send + Sync>`, or your own error type), so the
/// refusal reaches the caller as a value: [`Error::denial`] tells who denied and why.
///
/// An `editable` argument must be a whole parameter (`limit: u32`, not inside a pattern),
/// recorded (neither skipped nor redacted) and implement `serde::de::DeserializeOwned`;
/// anything else is a compile error. When a reviewer approves with new values, the edit is a
/// new call, judged by the policy again and approved under its own reviews; the body then
/// runs once, with the reviewer's values in place of the caller's, and
/// [`scope::current_edit`] in the body says who changed what. A value that does not
/// deserialise into the parameter's type fails the call with [`Error::EditUnusable`], and
/// the body does not run.
///
/// ```
/// # use approvals::requires_approval;
/// #[requires_approval(policy = "export", editable(limit))]
/// async fn export(table: String, limit: u32) -> Result<u32, approvals::Error> {
///     if let Some(edit) = approvals::scope::current_edit() {
///         tracing::info!(by = %edit.by.id, "running with a reviewer's changes");
///     }
///     Ok(limit) // the limit a reviewer set, if they changed it
/// }
/// ```
///
/// The gate is `gate = expr`, else the one of the enclosing [`scope::with_gate`], else the
/// global one ([`set_global_gate`]). The context (requester, on_behalf_of, trigger, reason)
/// comes from [`scope::with_context`], else the gate's default. Without either the call fails
/// with [`Error::NoGate`] / [`Error::NoContext`] and the body does not run.
///
/// Works on `async fn` and plain `fn`, free functions and methods (`&self`, `&mut self`,
/// `self`), generics, where-clauses, `impl Trait` and pattern parameters, and inside
/// `#[async_trait]` impls (place `#[requires_approval]` on the method; `#[async_trait]` on
/// the impl runs first). With other attribute macros such as an agent framework's `#[tool]`,
/// put `#[requires_approval]` last (closest to the `fn`) so it wraps the body the framework
/// calls. A sync function blocks its thread until the call is decided; inside a
/// current-thread tokio runtime it fails with [`Error::CannotBlock`] instead.
///
/// # What it expands to
///
/// The signature is kept; the body is wrapped. For an `async fn` the code is equivalent to:
///
/// ```
/// # use approvals::{Action, CallOptions, Error};
/// # async fn export_customers_expanded(limit: u32) -> Result<usize, Error> {
/// // #[requires_approval(policy = "export")]
/// // async fn export_customers(limit: u32) -> Result<usize, Error> { Ok(limit as usize) }
/// let action = Action::builder(concat!(module_path!(), "::export_customers"), "export")
///     .arg("limit", &limit)
///     .build();
/// let gate = approvals::scope::current_gate().ok_or(Error::NoGate);
/// let context = approvals::scope::current_context();
/// let permit = match async {
///     let gate = gate?;
///     let context = context.or_else(|| gate.default_context().cloned()).ok_or(Error::NoContext)?;
///     gate.authorize(action?, context, CallOptions::default()).await
/// }.await {
///     Ok(permit) => permit,
///     Err(e) => return Err(e.into()),      // the body never runs
/// };
/// let result: Result<usize, Error> = async move { Ok(limit as usize) }.await;
/// permit.finish(result.as_ref().map(|_| ()).map_err(|e| e.to_string())).await; // audit "finished"
/// result
/// # }
/// ```
///
/// A sync function does the same, driving the future with `block_in_place` (or a small
/// background runtime when no runtime is running).
pub use approvals_macros::requires_approval;

#[doc(hidden)]
pub mod __private {
    pub use approvals_core::macro_support::*;
}

/// The README's example compiles (it is not run: it waits for a human at the terminal).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;

/// The testing guide's examples run as doc tests, so the guide cannot drift from the code.
#[cfg(all(doctest, feature = "memory", feature = "policy"))]
#[doc = include_str!("../docs/testing.md")]
mod testing_guide {}

//! What `#[requires_approval]` expands to calls. Not a public API: re-exported by the
//! `approvals` crate as `__private` and may change in any release.
#![allow(missing_docs)]

use std::borrow::Borrow;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use crate::Error;
pub use crate::action::{Action, ActionBuilder, ArgName, ArgumentError, SmolStr, StaticNames};
pub use crate::gate::{CallOptions, Gate, Permit};
pub use crate::registry::PolicyUse;
pub use inventory;

use crate::principal::Context;
use crate::scope;

pub const fn options(timeout_millis: Option<u64>, defer: bool) -> CallOptions {
    CallOptions {
        timeout: match timeout_millis {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        },
        defer,
    }
}

/// `gate = expr`: anything that borrows as a `Gate` (`Gate`, `&Gate`, `Arc<Gate>`).
pub fn gate_from<G: Borrow<Gate> + ?Sized>(g: &G) -> Result<Gate, Error> {
    Ok(g.borrow().clone())
}

/// No `gate = ..`: the scoped gate, else the global one.
pub fn find_gate() -> Result<Gate, Error> {
    scope::current_gate().ok_or_else(|| Error::NoGate)
}

/// The caller's context, read where the call is made (before any blocking): the scope's,
/// shared, not copied, or `None` for the gate's default.
pub fn context() -> Option<Arc<Context>> {
    scope::shared_context()
}

/// The gate, or why there is none: taken whole by an async gated function before it
/// awaits anything. (Matched where it is bound, the binding would stay in the function's
/// future, taking room across every wait.)
#[inline]
pub fn prepare(gate: Result<Gate, Error>) -> Result<Gate, Error> {
    gate
}

/// The context a call is judged in, borrowed: the caller's scope's, else the gate's default
/// and whether the gate checked it when it was built (a call that uses it is not checked
/// again).
fn context_of<'a>(
    gate: &'a Gate,
    given: &'a Option<Arc<Context>>,
) -> Result<(&'a Context, bool), Error> {
    match given {
        Some(given) => Ok((given, false)),
        None => Ok((
            gate.default_context().ok_or(Error::NoContext)?,
            gate.default_checked(),
        )),
    }
}

/// The gate's decision on a prepared call, begun now ([`Gate::authorize`] begins when first
/// polled): what an async gated function awaits. Its future keeps the answer or a pointer
/// to the rest, not the call and its context, for as long as the call waits.
///
/// The context ([`context`]) is borrowed: a call answered at once copies none of it but its
/// requester, and a call that waits takes a copy of its own.
///
/// Given the call as it was built: an argument that could not be recorded refuses it here.
#[inline]
pub fn authorizing(
    gate: &Gate,
    action: Result<Action, ArgumentError>,
    context: Option<Arc<Context>>,
    options: CallOptions,
) -> impl Future<Output = Result<Permit, Error>> + Send + '_ {
    let action = match action {
        Ok(action) => action,
        Err(e) => return crate::gate::Soon::done(Err(e.into())),
    };
    match context_of(gate, &context) {
        Ok((context, checked)) => gate.authorizing(action, context, checked, options),
        Err(e) => crate::gate::Soon::done(Err(e)),
    }
}

/// The permit as a gated function's body runs (`Permit::into_body`): it holds the
/// body's span, which [`in_body`] enters.
pub fn into_body(permit: Permit) -> Permit {
    permit.into_body()
}

/// `future` (a gated function's body) run in its permit's span, borrowed: the function's
/// future keeps a pointer for it, not a second span handle.
pub fn in_body<F: Future>(permit: &Permit, future: F) -> InBody<'_, F> {
    InBody {
        span: permit.span(),
        future,
    }
}

pin_project_lite::pin_project! {
    /// See [`in_body`].
    pub struct InBody<'a, F> {
        span: &'a tracing::Span,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for InBody<'_, F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.future.poll(cx)
    }
}

/// How a gated function's call ended, recorded: `None` when there is nothing to await
/// (the call was allowed outright), else the recording, boxed. Taken before the function
/// awaits it, so that its future does not keep the permit (nor the recording's future)
/// beside what it awaits.
pub fn ending(
    permit: Permit,
    outcome: Result<(), String>,
) -> Option<crate::clock::BoxFuture<'static, ()>> {
    permit.ending(outcome)
}

/// A gated function's result, given back once its end is recorded (at once when there is
/// nothing to record). Made from the block that ran the body, not from named locals, so
/// that the function's future keeps the result and the recording once, in this.
pub fn finishing<T>(
    (result, ending): (T, Option<crate::clock::BoxFuture<'static, ()>>),
) -> Finishing<T> {
    Finishing {
        result: Some(result),
        ending,
    }
}

pin_project_lite::pin_project! {
    /// See [`finishing`].
    pub struct Finishing<T> {
        result: Option<T>,
        ending: Option<crate::clock::BoxFuture<'static, ()>>,
    }
}

impl<T> Future for Finishing<T> {
    type Output = T;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let this = self.project();
        if let Some(ending) = this.ending {
            std::task::ready!(ending.as_mut().poll(cx));
            *this.ending = None;
        }
        // Taken once; a future polled again after it is done may do anything but must not
        // panic, and this one stays pending.
        match this.result.take() {
            Some(result) => std::task::Poll::Ready(result),
            None => std::task::Poll::Pending,
        }
    }
}

/// The gate, then [`authorizing`]: what a blocking gated function waits on.
pub async fn authorize(
    gate: Result<Gate, Error>,
    action: Result<Action, ArgumentError>,
    context: Option<Arc<Context>>,
    options: CallOptions,
) -> Result<Permit, Error> {
    authorizing(&gate?, action, context, options).await
}

/// Runs a future to completion from synchronous code.
///
/// Inside a multi-thread tokio runtime the worker is handed off with `block_in_place`;
/// outside any runtime a small shared background runtime drives timers and spawned tasks;
/// inside a current-thread runtime blocking would stall the only thread, so the call fails
/// closed with [`Error::CannotBlock`].
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, Error> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => Err(Error::CannotBlock),
        Ok(h) => Ok(tokio::task::block_in_place(|| h.block_on(fut))),
        Err(_) => Ok(background_runtime()?.block_on(fut)),
    }
}

fn background_runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("approvals-blocking")
            .enable_time()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|_| Error::CannotBlock)
}

/// What a gated function may return: a `Result` whose error converts from [`Error`].
#[diagnostic::on_unimplemented(
    message = "a #[requires_approval] function must return `Result<T, E>` where `E: From<approvals::Error>`, not `{Self}`",
    label = "this return type cannot carry an approval refusal",
    note = "a refusal reaches the caller as `Err(E::from(approvals::Error))`: implement `From<approvals::Error>` for the error type (thiserror: a variant with `#[from] approvals::Error`), or return `Result<T, approvals::Error>`"
)]
pub trait ApprovalReturn {
    fn from_approval_error(e: Error) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T, E: From<Error>> ApprovalReturn for Result<T, E> {
    fn from_approval_error(e: Error) -> Self {
        Err(E::from(e))
    }
}

/// How the body's result is read, to record how the call ended (any `Result`).
#[diagnostic::on_unimplemented(
    message = "a #[requires_approval] function must return a `Result`, not `{Self}`",
    label = "the body's value is read as a `Result` to record how the call ended"
)]
pub trait CallResult {
    type Ok;
    type Err;
    fn as_result(&self) -> Result<&Self::Ok, &Self::Err>;
}

impl<T, E> CallResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn as_result(&self) -> Result<&T, &E> {
        self.as_ref()
    }
}

/// An argument recorded for the approval request (the policy judges it, reviewers see it,
/// the audit log keeps it).
#[diagnostic::on_unimplemented(
    message = "the argument of type `{Self}` cannot be recorded for its approval request",
    label = "this type does not implement `serde::Serialize`",
    note = "every argument is recorded: the policy judges it, reviewers see it, the audit log keeps it. Derive `serde::Serialize` for it (the crate needs `serde` with its `derive` feature), keep only its keyed digest with `redact(name)`, or leave it out with `skip(name)`"
)]
pub trait Recordable {
    fn arg(&self, b: &mut ActionBuilder, name: ArgName<'_>);
    fn redact(&self, b: &mut ActionBuilder, name: ArgName<'_>);
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + ?Sized> Recordable for T {
    fn arg(&self, b: &mut ActionBuilder, name: ArgName<'_>) {
        b.record_in_place(name, self, false);
    }
    fn redact(&self, b: &mut ActionBuilder, name: ArgName<'_>) {
        b.record_in_place(name, self, true);
    }
}

/// An editable argument: a reviewer's new value, which arrives as JSON, can be read into it.
#[diagnostic::on_unimplemented(
    message = "the editable argument of type `{Self}` cannot take a reviewer's new value",
    label = "this type does not implement `serde::de::DeserializeOwned`",
    note = "a reviewer's edit arrives as JSON and is read into the argument before the body runs: derive `serde::Deserialize` for it (an owned type, not a reference), or leave it out of `editable(..)`"
)]
pub trait Editable: Sized {
    fn from_edit(value: &serde_json::Value) -> Result<Self, serde_json::Error>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::de::DeserializeOwned> Editable for T {
    fn from_edit(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        T::deserialize(value)
    }
}

/// The value an editable argument runs with: the reviewer's, if they changed it, else the
/// caller's. A value that does not fit the type fails the call before the body runs.
pub fn edited<T: Editable>(permit: &Permit, arg: &str, value: T) -> Result<T, Error> {
    let (Some(v), Some(request_id)) = (permit.edited_value(arg), permit.request_id()) else {
        return Ok(value);
    };
    T::from_edit(v).map_err(|e| Error::EditUnusable {
        request_id,
        arg: arg.to_owned(),
        message: e.to_string(),
    })
}

/// Runs the body of an editable function with its permit's edit visible to
/// [`crate::scope::current_edit`].
pub fn with_edit<F: std::future::Future>(
    permit: &Permit,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    crate::scope::EDIT.scope(permit.edit().cloned(), f)
}

/// [`with_edit`] for a blocking body.
pub fn with_edit_sync<R>(permit: &Permit, f: impl FnOnce() -> R) -> R {
    crate::scope::EDIT.sync_scope(permit.edit().cloned(), f)
}

/// Converts an approval error into the function's return type (inferred).
pub fn reject<R: ApprovalReturn>(e: Error) -> R {
    R::from_approval_error(e)
}

/// The text recorded for a failed call: its `Display`, else its `Debug`, else a placeholder
/// (chosen at the call site by autoref specialisation; see [`Describe`]).
pub struct Describe<'a, T: ?Sized>(pub &'a T);

pub trait ViaDisplay {
    fn describe(&self) -> String;
}
impl<T: Display + ?Sized> ViaDisplay for &&Describe<'_, T> {
    fn describe(&self) -> String {
        self.0.to_string()
    }
}
pub trait ViaDebug {
    fn describe(&self) -> String;
}
impl<T: Debug + ?Sized> ViaDebug for &Describe<'_, T> {
    fn describe(&self) -> String {
        format!("{:?}", self.0)
    }
}
pub trait ViaNothing {
    fn describe(&self) -> String;
}
impl<T: ?Sized> ViaNothing for Describe<'_, T> {
    fn describe(&self) -> String {
        "the call returned an error".to_owned()
    }
}

//! Which gate and which context a gated call uses.
//!
//! The gate is found in this order: `gate = expr` in the attribute, else the gate of the
//! enclosing [`with_gate`] scope, else the global gate set once with [`set_global_gate`].
//! The context is the one of the enclosing [`with_context`] scope, else the gate's default.
//! If none is found the call fails with a typed error and its body does not run.
//!
//! Scopes are task-local: a task spawned inside a scope does not inherit it; wrap the
//! spawned future in its own scope.
//!
//! ```
//! use approvals_core::{Context, Principal, scope};
//! # async fn agent_work() {}
//! # async fn run() {
//! let ctx = Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human("dana"));
//! scope::with_context(ctx, async {
//!     assert_eq!(scope::current_context().unwrap().requester.id, "ops-bot");
//!     agent_work().await;
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::sync::{Arc, OnceLock};

use crate::gate::Gate;
use crate::principal::Context;

tokio::task_local! {
    static GATE: Gate;
    /// Shared: a gated call made in the scope takes a pointer to it, not a copy.
    static CONTEXT: Arc<Context>;
    /// The edit the body of an editable gated function runs under (set by the macro).
    pub(crate) static EDIT: Option<crate::request::EditOf>;
}

static GLOBAL: OnceLock<Gate> = OnceLock::new();

/// Runs `f` with `context` as the caller context of every gated call inside it.
///
/// Not an `async fn`: one would keep `f` twice (as its argument and inside the scope), and a
/// waiting call would carry both.
pub fn with_context<F: Future>(context: Context, f: F) -> impl Future<Output = F::Output> {
    CONTEXT.scope(Arc::new(context), f)
}

/// Runs the synchronous `f` with `context` as the caller context of gated calls inside it.
pub fn with_context_sync<R>(context: Context, f: impl FnOnce() -> R) -> R {
    CONTEXT.sync_scope(Arc::new(context), f)
}

/// Runs `f` with `gate` as the gate of every gated call inside it that names none.
///
/// Not an `async fn`, for the reason given at [`with_context`].
pub fn with_gate<F: Future>(gate: Gate, f: F) -> impl Future<Output = F::Output> {
    GATE.scope(gate, f)
}

/// Runs the synchronous `f` with `gate` as the gate of gated calls inside it.
pub fn with_gate_sync<R>(gate: Gate, f: impl FnOnce() -> R) -> R {
    GATE.sync_scope(gate, f)
}

/// Sets the process-wide default gate, once, at start-up. Returns the gate back if one was
/// already set.
pub fn set_global_gate(gate: Gate) -> Result<(), Gate> {
    GLOBAL.set(gate)
}

/// The gate a call made here would use: the scoped one, else the global one.
pub fn current_gate() -> Option<Gate> {
    GATE.try_with(Gate::clone)
        .ok()
        .or_else(|| GLOBAL.get().cloned())
}

/// The context of the enclosing [`with_context`] scope, if any.
pub fn current_context() -> Option<Context> {
    CONTEXT.try_with(|c| Context::clone(c)).ok()
}

/// The context of the enclosing [`with_context`] scope, shared, not copied.
pub(crate) fn shared_context() -> Option<Arc<Context>> {
    CONTEXT.try_with(Arc::clone).ok()
}

/// Inside the body of a `#[requires_approval(.., editable(..))]` function: the reviewer's
/// edit the call runs under, if a reviewer changed its arguments (who, what changed, and the
/// request of the call as it was asked for). `None` when the call runs as asked, and
/// outside such a body.
///
/// ```
/// # use approvals_core::scope;
/// assert!(scope::current_edit().is_none());
/// ```
pub fn current_edit() -> Option<crate::request::EditOf> {
    EDIT.try_with(Clone::clone).ok().flatten()
}

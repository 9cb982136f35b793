//! The path of one call: verdict, request, notification, waiting, permit.

use std::sync::Arc;
use std::time::Duration;

use super::Gate;
use crate::action::{Action, SmolStr};
use crate::approver::Approver;
use crate::audit::{ActionRef, AuditEvent, EventKind};
use crate::clock::Timestamp;
use crate::directory::Resolution;
use crate::error::{AuditError, Denial, DeniedBy, Error, StoreError};
use crate::grant::{self, Grant};
use crate::policy::{Eligible, IfUndelivered, PolicyError, Requirement, Verdict};
use crate::principal::{Context, ContextError, Principal};
use crate::request::{ApprovalRequest, Decision, EditOf, RequestId, RequestState};
use crate::store::Attach;
use crate::tally;
use crate::telemetry;
use tracing::Instrument as _;

/// How a caller waits; the macro fills it from `timeout = ".."` and `defer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Give up waiting after this long (the request stays open). `None`: wait until the
    /// request is decided or expires.
    pub timeout: Option<Duration>,
    /// Do not wait: if the request is not yet approved, fail at once with
    /// [`Error::Pending`]; the identical call later re-attaches and runs once approved.
    pub defer: bool,
}

/// Leave to run one approved (or allowed) call. Report how it ended with [`Permit::finish`].
///
/// Dropping a permit without finishing leaves the call "started" in the store: after a crash
/// such a call is in doubt, and it is never run again automatically.
#[must_use = "a permit records the start of the call; finish it with the call's outcome"]
#[derive(Debug)]
pub struct Permit {
    /// Boxed: a gated function keeps its permit while its body runs, and an allowed call
    /// (`None`) then carries a pointer's room, not an approval's.
    approved: Option<Box<Approved>>,
    /// The call's span: the body runs in a child of it.
    span: tracing::Span,
}

#[derive(Debug)]
struct Approved {
    gate: Gate,
    request_id: RequestId,
    action: ActionRef,
    requester: Principal,
    policy_version: String,
    /// Set when a reviewer changed the call's arguments: the body runs with these values.
    edit: Option<Box<EditOf>>,
    /// The call's span once the permit holds its body's ([`Permit::into_body`]): kept open
    /// until the end is recorded.
    call_span: tracing::Span,
}

impl Approved {
    /// Records the end of the approved call, here or with the remote service that approved it.
    async fn end(self, outcome: Result<(), String>) {
        if let Some(remote) = &self.gate.inner.remote {
            if let Err(e) = remote.finish(self.request_id, outcome).await {
                tracing::error!(request = %self.request_id, error = %e, "could not record the end of an approved call");
            }
            return;
        }
        self.gate
            .end_run(
                self.request_id,
                &self.action,
                self.requester,
                &self.policy_version,
                outcome,
            )
            .await;
    }
}

impl Permit {
    /// The request that approved the call; `None` when the policy allowed it outright.
    pub fn request_id(&self) -> Option<RequestId> {
        self.approved.as_ref().map(|a| a.request_id)
    }

    /// The reviewer's edit the call runs under, if its arguments were changed: who changed
    /// what, and the request of the call as it was asked for.
    pub fn edit(&self) -> Option<&EditOf> {
        self.approved.as_ref()?.edit.as_deref()
    }

    /// The value a reviewer set for `arg`, if they changed it: the body must run with it.
    pub fn edited_value(&self, arg: &str) -> Option<&serde_json::Value> {
        let edit = self.edit()?;
        edit.changes.iter().find(|c| c.arg == arg).map(|c| &c.to)
    }

    /// The span the call's body runs in ([`telemetry::BODY`](crate::telemetry::BODY)), a
    /// child of the call's span, with its request id.
    pub fn body_span(&self) -> tracing::Span {
        self.body_span_of(&self.span)
    }

    fn body_span_of(&self, call: &tracing::Span) -> tracing::Span {
        let span = tracing::info_span!(
            parent: call,
            "approvals.body",
            request_id = tracing::field::Empty
        );
        if let Some(id) = self.request_id() {
            span.record("request_id", tracing::field::display(id));
        }
        if let Some(edit) = self.edit() {
            tracing::info!(parent: &span, edited_by = %edit.by.id, original = %edit.original,
                changes = %edit.changes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                "running the call as a reviewer edited it");
        }
        span
    }

    /// Records how the call ended: `Ok(())`, or the error's text.
    ///
    /// For calls allowed outright by policy this does nothing. A failure to record is logged
    /// (the body has already run; its result is what the caller needs).
    ///
    /// The recording runs out of line (boxed): a gated function's future keeps room for
    /// what it awaits, and every call, allowed or waiting, would carry this one's.
    pub fn finish(
        self,
        outcome: Result<(), String>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let ending = self.ending(outcome);
        async move {
            if let Some(ending) = ending {
                ending.await;
            }
        }
    }

    /// The permit as the call's body runs: it holds the body's span ([`Permit::body_span`]),
    /// for a gated function to run its body in without a handle of its own (a tracing
    /// subscriber keeps the call's span open while its child is); an approved call keeps
    /// the call's span too, until its end is recorded.
    pub(crate) fn into_body(mut self) -> Self {
        // Nothing to make when spans at INFO are off and the call's is: the body's would be
        // off too (one look at the level, not a span made to be found off).
        if self.span.is_disabled() && !telemetry::spans_seen() {
            return self;
        }
        let call = std::mem::replace(&mut self.span, tracing::Span::none());
        self.span = self.body_span_of(&call);
        if let Some(approved) = &mut self.approved {
            approved.call_span = call;
        }
        self
    }

    /// The span the permit holds: the call's, or once [`Permit::into_body`], the body's.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// What [`Permit::finish`] awaits: nothing for a call allowed outright (its span ends
    /// now), the recording, boxed, for an approved one (its span ends with it). A gated
    /// function awaits this, so that its future keeps a pointer's room for the end, and
    /// neither the permit nor the recording's own future while it does.
    pub(crate) fn ending(
        self,
        outcome: Result<(), String>,
    ) -> Option<crate::clock::BoxFuture<'static, ()>> {
        let Self { approved, span } = self;
        let mut approved = approved?;
        // The body's span ends now; the call's ends once its end is recorded.
        if approved.call_span.is_none() {
            approved.call_span = span;
        }
        Some(Box::pin(approved.end(outcome)))
    }

    /// A permit for a call approved under `request_id` by a remote service
    /// ([`Remote`](crate::remote::Remote)): finishing it reports the end there.
    pub fn remote(gate: &Gate, request: &ApprovalRequest) -> Self {
        Self {
            span: tracing::Span::current(),
            approved: Some(Box::new(Approved {
                gate: gate.clone(),
                request_id: request.id,
                action: ActionRef::from(&request.action),
                requester: request.context.requester.clone(),
                policy_version: request.requirement.policy_version.to_string(),
                edit: request.edit_of.clone(),
                call_span: tracing::Span::none(),
            })),
        }
    }

    /// A permit for a call a remote service allowed outright: finishing it does nothing.
    pub fn allowed() -> Self {
        Self {
            approved: None,
            span: tracing::Span::current(),
        }
    }
}

/// What [`Gate::submit`] found for a call, before anything runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Submitted {
    /// The policy allowed it outright, or a standing grant covered it: it may run now.
    Allowed {
        /// The rule that allowed it (for a grant, the rule that required approval).
        rule: SmolStr,
        /// The standing grant used, if one was.
        grant: Option<crate::GrantId>,
    },
    /// It needs approval: its request, made now or joined (an identical call's, still open,
    /// approved and not yet run, or decided against without its caller having been told).
    Requested {
        /// The request as it stands (boxed: the allowed path moves only a small value).
        request: Box<ApprovalRequest>,
        /// Whether this call made it.
        created: bool,
    },
}

/// An answer that may be here already: what the gate's own steps return when an engine
/// and a sink that answer at once (code, a policy file, memory) let them finish on the
/// spot, and otherwise the rest of the work, boxed.
///
/// The future that awaits one keeps room only for the answer or a pointer. As `async`
/// blocks, the judging (712 bytes) and the authorizing around it were part of every gated
/// call's future, and of a waiting call's task for as long as it waited.
pub(crate) enum Soon<'a, T> {
    /// The answer.
    Done(std::future::Ready<T>),
    /// The rest of the work.
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>),
}

impl<'a, T> Soon<'a, T> {
    pub(crate) fn done(answer: T) -> Self {
        Self::Done(std::future::ready(answer))
    }

    fn later(rest: impl std::future::Future<Output = T> + Send + 'a) -> Self {
        Self::Later(Box::pin(rest))
    }
}

impl<'a, T: Send + 'a> Soon<'a, T> {
    /// The rest of the work, or the answer, behind one pointer.
    fn boxed(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
        match self {
            Self::Done(answer) => Box::pin(answer),
            Self::Later(rest) => rest,
        }
    }
}

impl<T> std::future::Future for Soon<'_, T> {
    type Output = T;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.get_mut() {
            Self::Done(answer) => std::pin::Pin::new(answer).poll(cx),
            Self::Later(rest) => rest.as_mut().poll(cx),
        }
    }
}

/// What [`Gate::judge`] gives.
type Judging<'a> = Soon<'a, Result<Submitted, Error>>;

pin_project_lite::pin_project! {
    /// A call's way to its permit, polled in the call's span, which the permit then takes.
    ///
    /// What `.instrument(span)` does, without a second copy of the span for the permit:
    /// a waiting call keeps this for as long as it waits.
    struct InSpan<F> {
        span: Option<tracing::Span>,
        #[pin]
        future: F,
    }
}

impl<F: std::future::Future<Output = Result<Permit, Error>>> std::future::Future for InSpan<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let entered = this.span.as_ref().map(tracing::Span::enter);
        let answer = std::task::ready!(this.future.poll(cx));
        drop(entered);
        std::task::Poll::Ready(answer.map(|permit| Permit {
            span: this.span.take().unwrap_or_else(tracing::Span::none),
            ..permit
        }))
    }
}

/// A call that needs approval, on its way to making its request.
enum Turn<'a> {
    /// With its turn among the calls making theirs.
    Now(tokio::sync::SemaphorePermit<'a>, Box<Call>),
    /// Waiting for it.
    Queued(Queued),
}

/// What a call that needs approval makes its request from.
type Call = (Action, Context, Requirement);

/// A call waiting for its turn to make its request, kept as its JSON text, packed against
/// the calls queued before it ([`Packer`](crate::text::Packer)), when that reads back equal.
///
/// When 100,000 calls arrive at once on a durable store's one writer, nearly all of them
/// queue. As values (the arguments' map node, a dozen strings) their calls took about
/// 1.3 KB each in small allocations; freed once each call's turn came, that room stayed
/// with the process as gaps among what the waiting calls keep. As text a queued call is
/// one allocation a third that size (about 350 bytes), packed about 100, and its values are
/// freed as it queues, to be used again by the next call's.
enum Queued {
    Text(crate::text::Packed),
    Call(Box<Call>),
}

impl Queued {
    fn new(call: Call, packer: &crate::text::Packer) -> Self {
        match packer.written(&call) {
            Some(text) => Queued::Text(text),
            None => Queued::Call(Box::new(call)),
        }
    }

    /// The call again. It was kept as text only once the text read back equal, so this
    /// does not fail; if it did, the call would fail closed.
    fn call(self) -> Result<Call, Error> {
        match self {
            Queued::Call(call) => Ok(*call),
            Queued::Text(text) => text.read().map_err(|e| {
                Error::Store(StoreError::Invariant {
                    backend: "gate".into(),
                    message: format!("a queued call did not read back: {e}"),
                })
            }),
        }
    }
}

/// What a requester adds to a call it submits from outside the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubmitOptions {
    /// Where to POST the decision (see [`ApprovalRequest::callback`]).
    pub callback: Option<String>,
}

impl SubmitOptions {
    /// The decision is POSTed to `url` once it is made.
    pub fn callback(mut self, url: impl Into<String>) -> Self {
        self.callback = Some(url.into());
        self
    }
}

impl Gate {
    /// Judges one call and, if it needs approval, waits for it. `Ok` means the body may run
    /// now, once; any `Err` means it must not.
    ///
    /// This is what `#[requires_approval]` calls; use it directly to gate code without the
    /// macro. It is [`Gate::submit`], then waiting for the decision (unless
    /// [`CallOptions::defer`]), then taking the permit. Like any future, it does nothing
    /// until it is first polled.
    #[allow(clippy::manual_async_fn)] // an `async fn` would keep the call and its context twice
    pub fn authorize(
        &self,
        action: Action,
        context: Context,
        options: CallOptions,
    ) -> impl std::future::Future<Output = Result<Permit, Error>> + Send + '_ {
        async move {
            // What waits keeps a copy of its own: the caller's is dropped before the wait.
            let judging = self.authorizing(action, &context, false, options);
            drop(context);
            judging.await
        }
    }

    /// [`Gate::authorize`] begun now: the call is judged, and, when the engine and the sink
    /// answer at once, allowed or refused before this returns; what remains (an engine or
    /// sink that awaits, waiting for a decision, a remote service) is boxed. What the macro
    /// awaits in a gated function, which keeps only this small future, not the call and its
    /// context, for as long as the call waits. `checked`: the context is the gate's default,
    /// checked when the gate was built ([`Gate::default_checked`]).
    ///
    /// The context is borrowed (from the caller's scope or the gate's default): a call
    /// answered at once reads it and copies only its requester, into the call's record; a
    /// call that waits takes a copy of its own.
    pub(crate) fn authorizing(
        &self,
        action: Action,
        context: &Context,
        checked: bool,
        options: CallOptions,
    ) -> Soon<'_, Result<Permit, Error>> {
        let span = call_span(&action);
        if let Some(remote) = &self.inner.remote {
            let permit_span = span.clone();
            let context = context.clone();
            return Soon::later(
                async move {
                    let mut permit = remote.authorize(self, action, context, options).await?;
                    permit.span = permit_span;
                    Ok(permit)
                }
                .instrument(span),
            );
        }
        // The caller's timeout counts from the call, not from the end of delivery; a call
        // without one reads the clock only if it waits.
        let started = options.timeout.map(|_| self.inner.clock.now());
        // Entered, not `in_scope`: a closure would take the call and its context in, a copy
        // of each.
        let judging = {
            let _in = span.enter();
            self.judge(action, context, checked, SubmitOptions::default())
        };
        let judging = match judging {
            Soon::Done(answer) => match answer.into_inner() {
                Ok(Submitted::Allowed { .. }) => {
                    return Soon::done(Ok(Permit {
                        approved: None,
                        span,
                    }));
                }
                Err(e) => return Soon::done(Err(e)),
                // A request is made out of line, so not here; followed below all the same.
                requested => Soon::done(requested),
            },
            later => later,
        };
        // Boxed as it is: a waiting call keeps a pointer to the finished judging, not room
        // for its answer.
        Soon::later(InSpan {
            span: Some(span),
            future: self.follow(judging.boxed(), started, options),
        })
    }

    /// Once `judging` has made the call's request, waits for it unless the caller defers,
    /// then turns its state into the caller's answer.
    ///
    /// The request stays boxed while the call waits: a waiting call's future holds a
    /// pointer to it, not the request itself, once in each layer. The judging is awaited
    /// here, not in a future around this one, which kept the inputs of this one a second
    /// time for as long as the call waited.
    ///
    /// Not an `async fn`, which would keep each argument twice in a waiting call's future.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn follow<'a>(
        &'a self,
        judging: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Submitted, Error>> + Send + 'a>,
        >,
        started: Option<Timestamp>,
        options: CallOptions,
    ) -> impl std::future::Future<Output = Result<Permit, Error>> + Send + 'a {
        async move {
            // Nothing awaited inside the match: its arms would keep the judging's answer
            // across the wait.
            let mut request = match judging.await? {
                Submitted::Allowed { .. } => {
                    return Ok(Permit {
                        approved: None,
                        span: tracing::Span::none(),
                    });
                }
                Submitted::Requested { request, .. } => request,
            };
            let started = started.unwrap_or_else(|| self.inner.clock.now());
            let give_up = options.timeout.map(|t| started.saturating_add(t));
            // Requests a reviewer's edit replaced, on the way to the one that decides the call.
            let mut replaced = Vec::new();
            loop {
                if !options.defer {
                    request = self.wait(request, started, give_up).await?;
                }
                // Boxed: while the call waits, the permit's path takes no room in its future;
                // nor does its outcome, which is held across the awaits of an edited call
                // only (a local held across an await takes room in every state).
                let concluded = Box::new(Box::pin(self.conclude(*request)).await);
                let Some((request_id, edit)) = edited(&concluded) else {
                    if replaced.is_empty() || matches!(*concluded, Err(Error::Pending { .. })) {
                        return *concluded;
                    }
                    return Box::pin(self.report_replaced(replaced, *concluded)).await;
                };
                replaced.push(request_id);
                *request = self
                    .inner
                    .store
                    .get(edit)
                    .await?
                    .ok_or(crate::StoreError::UnknownRequest(edit))?;
            }
        }
    }

    /// How an edited call ended, once the request that decided it has: the caller now
    /// knows, so the next identical call asks afresh instead of following the edit again.
    async fn report_replaced(
        &self,
        replaced: Vec<RequestId>,
        concluded: Result<Permit, Error>,
    ) -> Result<Permit, Error> {
        for id in replaced {
            self.inner.store.update(id, &mut tally::report).await?;
        }
        concluded
    }

    /// Judges one call and, if it needs approval, makes its request (or joins an identical
    /// call's) and delivers it on its channels: everything [`Gate::authorize`] does before it
    /// waits. Nothing runs and no permit is taken; a requester outside the process follows
    /// up with [`Gate::await_decision`], [`Gate::start`] and [`Gate::finish`].
    ///
    /// A denial by policy is `Err(Error::Denied)`; every failure fails closed, as for
    /// `authorize`.
    pub async fn submit(
        &self,
        action: Action,
        context: Context,
        options: SubmitOptions,
    ) -> Result<Submitted, Error> {
        let span = call_span(&action);
        let judging = {
            let _in = span.enter();
            self.judge(action, &context, false, options)
        };
        // What goes on keeps a copy of its own: the caller's is dropped before the await.
        drop(context);
        judging.instrument(span).await
    }

    /// [`Gate::submit`] inside the caller's span: resolves the parties and asks the policy
    /// when called, and finishes at once when the engine and the sink answer at once (code,
    /// a policy file, memory); the rest of the judging is boxed ([`Judging`]).
    ///
    /// The context is borrowed: what ends here (allowed, denied) copies only its requester;
    /// what goes on later takes a copy of it.
    fn judge(
        &self,
        action: Action,
        given: &Context,
        checked: bool,
        options: SubmitOptions,
    ) -> Judging<'_> {
        let started = telemetry::Stopwatch::judging();
        let renamed = match self.resolve_parties(given, checked) {
            Ok(renamed) => renamed,
            Err(e) => return Judging::done(Err(e)),
        };
        let context = renamed.as_ref().unwrap_or(given);
        let policy = self.inner.policy.as_ref();
        let span = if telemetry::spans_seen() {
            tracing::info_span!("approvals.policy")
        } else {
            tracing::Span::none()
        };
        match span.in_scope(|| policy.evaluate_now(&action, context)) {
            Some(Ok((verdict, None))) => self.enforce(action, context, verdict, options, started),
            judged => {
                let context = renamed.unwrap_or_else(|| given.clone());
                Judging::later(async move {
                    let (verdict, shadow) = match judged {
                        Some(judged) => judged?,
                        None => {
                            policy
                                .evaluate_with_shadow(&action, &context)
                                .instrument(span)
                                .await?
                        }
                    };
                    // Recorded before the enforced verdict's own record; not enforced.
                    if let Some(shadow) = shadow {
                        let (kind, policy_version) = shadow_record(&shadow);
                        self.audit(self.call_event(&action, &context, kind, policy_version))
                            .await?;
                    }
                    self.enforce(action, &context, verdict, options, started)
                        .await
                })
            }
        }
    }

    /// Acts on the enforced verdict: an allowed or denied call's one record, or the request.
    /// Done at once when the sink appends at once.
    fn enforce(
        &self,
        action: Action,
        context: &Context,
        verdict: Verdict,
        options: SubmitOptions,
        started: telemetry::Stopwatch,
    ) -> Judging<'_> {
        // A verdict that ends the call here is its one record: the call's name and policy
        // and the verdict's version move into it, not copies, and the requester is copied
        // from the borrowed context (an inline id, or a count on a shared one). A macro, not
        // a closure: a closure would take the call whole, copying it (144 bytes), where the
        // fields alone move.
        macro_rules! last {
            ($kind:expr, $policy_version:expr) => {
                AuditEvent {
                    at: self.inner.clock.now(),
                    request_id: None,
                    action: ActionRef {
                        name: action.name,
                        policy: action.policy,
                        digest: action.digest,
                    },
                    actor: Some(context.requester.clone()),
                    policy_version: $policy_version,
                    kind: $kind,
                }
            };
        }
        match verdict {
            Verdict::Allow {
                rule,
                policy_version,
            } => {
                // A shared name: the record and the answer each hold it, neither a copy.
                let kind = EventKind::Allowed { rule: rule.clone() };
                self.record_then(last!(kind, policy_version), move |now| {
                    telemetry::judged("allow", started, now);
                    Ok(Submitted::Allowed { rule, grant: None })
                })
            }
            Verdict::Deny {
                rule,
                reason,
                policy_version,
            } => {
                let kind = EventKind::PolicyDenied {
                    rule: rule.clone(),
                    reason: reason.clone(),
                };
                self.record_then(last!(kind, policy_version), move |now| {
                    telemetry::judged("deny", started, now);
                    Err(policy_denial(rule, reason))
                })
            }
            Verdict::RequireApproval(req) => {
                // The call's turn among those making their request (see `Inner::making`),
                // taken before anything is built for it.
                let call = (action, context.clone(), *req);
                let turn = match self.inner.making.try_acquire() {
                    Ok(turn) => Turn::Now(turn, Box::new(call)),
                    Err(_) => Turn::Queued(Queued::new(call, &self.inner.queued)),
                };
                Judging::later(async move {
                    let (turn, (action, context, req)) = match turn {
                        Turn::Now(turn, call) => (Some(turn), *call),
                        // Never closed, so always given.
                        Turn::Queued(queued) => {
                            (self.inner.making.acquire().await.ok(), queued.call()?)
                        }
                    };
                    // Boxed apart: awaiting a future held by value moves it into a second slot
                    // of the future that awaits it, which then keeps room for both.
                    let opening = Box::pin(self.open_request(action, context, req, options, turn));
                    let submitted = opening.await;
                    if let Ok(Submitted::Requested { request, .. }) = &submitted {
                        tracing::Span::current()
                            .record("request_id", tracing::field::display(request.id));
                    }
                    telemetry::judged("require_approval", started, None);
                    submitted
                })
            }
        }
    }

    /// Appends `event`, then answers with `then` (the append's failure fails the call),
    /// given the time the append ended if it was timed: at once when the sink appends at once.
    fn record_then(
        &self,
        event: AuditEvent,
        then: impl FnOnce(Option<std::time::Instant>) -> Result<Submitted, Error> + Send + 'static,
    ) -> Judging<'_> {
        match self.audit_now(event) {
            Ok((appended, ended)) => {
                Judging::done(appended.map_err(Error::from).and_then(|_| then(ended)))
            }
            Err(event) => Judging::later(async move {
                self.audit(event).await?;
                then(None)
            }),
        }
    }

    /// The approval branch of [`Gate::submit`]: feasibility, channels, a standing grant, or
    /// the request itself. `turn` is given back once the request is recorded.
    ///
    /// Not an `async fn` (which keeps each argument twice): calls queued for a durable
    /// store each keep this future. The checks and the grant run in a box of their own,
    /// freed before the request is made: a queued call keeps the request and the future
    /// that makes it, not room for the checks' states or the inputs they moved on.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn open_request<'a>(
        &'a self,
        action: Action,
        context: Context,
        req: Requirement,
        options: SubmitOptions,
        turn: Option<tokio::sync::SemaphorePermit<'a>>,
    ) -> impl std::future::Future<Output = Result<Submitted, Error>> + Send + 'a {
        let checking = Box::pin(async move {
            let event =
                |kind, policy_version| self.call_event(&action, &context, kind, policy_version);
            check_requirement(&action, &req)?;
            // A requirement nobody can meet is denied now, not at its expiry.
            if let Err(reason) = self.feasible(&req, &context) {
                let kind = EventKind::PolicyDenied {
                    rule: req.rule.clone(),
                    reason: reason.clone(),
                };
                self.audit(event(kind, req.policy_version.clone())).await?;
                return Err(policy_denial(req.rule, reason));
            }
            // Resolved before anything is created: a misnamed channel must not leave an open
            // request that nobody was told about.
            let channels = self.channels_for(&action, &req)?;
            if let Some(grant) = self.use_grant(&action, &context, &req).await? {
                let kind = EventKind::GrantUsed {
                    grant_id: grant.id,
                    number: grant.uses,
                    max_uses: grant.max_uses,
                    granted_by: grant.granted_by.clone(),
                };
                self.audit(event(kind, req.policy_version.clone())).await?;
                return Ok(Ok(Submitted::Allowed {
                    rule: req.rule,
                    grant: Some(grant.id),
                }));
            }
            let making = self
                .make_request(action, context, req, channels, options, turn)
                .instrument(tracing::info_span!(
                    "approvals.request",
                    request_id = tracing::field::Empty
                ));
            Ok::<_, Error>(Err(Box::pin(making)))
        });
        async move {
            let making = match checking.await? {
                Ok(granted) => return Ok(granted),
                Err(making) => making,
            };
            making.await
        }
    }

    /// A record about a call that has no request (yet), stamped now by the gate's clock.
    fn call_event(
        &self,
        action: &Action,
        context: &Context,
        kind: EventKind,
        policy_version: SmolStr,
    ) -> AuditEvent {
        AuditEvent {
            at: self.inner.clock.now(),
            request_id: None,
            action: ActionRef::from(action),
            actor: Some(context.requester.clone()),
            policy_version,
            kind,
        }
    }

    /// Checks a call's context and names its parties as the directory does: a requester or
    /// `on_behalf_of` given as any identity of a person (another spelling of their id, their
    /// Slack or Teams id, their email) becomes that person, so the policy judges them and
    /// the rules exclude them as who they are. A context already `checked` (the gate's own
    /// default, checked when the gate was built) is not checked again.
    ///
    /// A copy of the context with the directory's names, when it renamed a party; `None`
    /// when the context names its parties as the directory does (nothing is copied).
    fn resolve_parties(&self, context: &Context, checked: bool) -> Result<Option<Context>, Error> {
        if !checked {
            context.check()?;
        }
        let directory = &*self.inner.directory;
        let requester = resolve_party(directory, "requester", &context.requester)?;
        let on_behalf_of = match &context.on_behalf_of {
            Some(p) => resolve_party(directory, "on_behalf_of", p)?,
            None => None,
        };
        if requester.is_none() && on_behalf_of.is_none() {
            return Ok(None);
        }
        let mut renamed = context.clone();
        if let Some(p) = requester {
            renamed.requester = p;
        }
        if on_behalf_of.is_some() {
            renamed.on_behalf_of = on_behalf_of;
        }
        Ok(Some(renamed))
    }

    /// Whether the directory has enough distinct people, other than the requester and the
    /// person it acts for, to ever meet `req`. Directories that cannot list a group's
    /// members are given the benefit of the doubt.
    pub(super) fn feasible(&self, req: &Requirement, context: &Context) -> Result<(), String> {
        let dir = &self.inner.directory;
        let mut ids = std::collections::BTreeSet::new();
        for f in &req.factors {
            match &f.from {
                Eligible::Group(g) => match dir.members(g) {
                    Some(m) => ids.extend(m),
                    None => return Ok(()),
                },
                Eligible::People(p) => ids.extend(p.iter().cloned()),
            }
        }
        let candidates = ids
            .into_iter()
            .map(|id| {
                let groups = dir.groups_of(&id);
                (id, groups)
            })
            .collect();
        tally::feasible(req, context, &candidates)
    }

    /// Takes one use of a standing grant that covers this call, if there is one. The policy
    /// must still allow grants for it (caps above zero).
    async fn use_grant(
        &self,
        action: &Action,
        context: &Context,
        req: &Requirement,
    ) -> Result<Option<Grant>, Error> {
        let inner = &self.inner;
        if req.grants.is_none() {
            return Ok(None);
        }
        let grants = inner
            .store
            .grants_for(&context.requester.id, &action.policy, &action.name)
            .await?;
        let now = inner.clock.now();
        for g in grants {
            if !g.covers(action, context) || g.usable(now).is_err() {
                continue;
            }
            if let Some(condition) = &g.when {
                match inner.policy.condition_holds(condition, action, context) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(grant = %g.id, error = %e, "a grant's condition could not be evaluated; not using it");
                        continue;
                    }
                }
            }
            let mut taken = false;
            let g = inner
                .store
                .update_grant(g.id, &mut |g| {
                    taken = grant::use_grant(g, now).is_ok();
                    taken
                })
                .await?;
            if taken {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    /// Makes the request (or joins an identical call's), audits it, gives back the call's
    /// `turn` among those making theirs, and delivers a new one.
    ///
    /// Not an `async fn`, and the request is built and boxed before anything awaits: while
    /// calls queue for a durable store (100,000 arriving at once on SQLite's one writer),
    /// each keeps this future, and as an `async fn` it kept the call, its context and its
    /// requirement twice and room for the delivery (6.5 KB). Delivery and cancelling are
    /// boxed for the same reason: only a new request reaches them.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn make_request<'a>(
        &'a self,
        action: Action,
        context: Context,
        mut requirement: Requirement,
        channels: Vec<Arc<dyn Approver>>,
        options: SubmitOptions,
        turn: Option<tokio::sync::SemaphorePermit<'a>>,
    ) -> impl std::future::Future<Output = Result<Submitted, Error>> + Send + 'a {
        let inner = &self.inner;
        if let Some(cap) = inner.max_expiry {
            requirement.expires_in = requirement.expires_in.min(cap);
        }
        let mut fresh = Box::new(ApprovalRequest::new(
            action,
            context,
            requirement,
            inner.clock.now(),
        ));
        fresh.callback = options.callback;
        async move {
            // Creation (or re-attachment) and its audit record are one ordered step. What the
            // store returns is boxed: it is held while the record is appended, and a call
            // queued for a durable sink's writer would keep room for a whole request.
            let (attach, audited) = {
                let _order = self
                    .order_for(&fresh.context.requester, &fresh.action.digest)
                    .await;
                let (attach, audited) = Box::pin(self.create_recorded(*fresh)).await?;
                let id = attach.request.id;
                tracing::Span::current().record("request_id", tracing::field::display(id));
                (attach, audited)
            };
            // Delivery may take seconds (a chat service), and needs no turn.
            drop(turn);
            if let Err(e) = audited {
                if attach.created {
                    // Nobody may be asked to approve a request the audit trail does not hold.
                    let (id, reason) = (attach.request.id, format!("audit sink failed: {e}"));
                    drop(attach);
                    Box::pin(self.cancel_quietly(id, &reason)).await;
                }
                return Err(e.into());
            }
            let Attach { request, created } = *attach;
            if !created {
                return Ok(Submitted::Requested {
                    request: Box::new(request),
                    created,
                });
            }
            let id = request.id;
            // Nothing awaited inside the match: it would keep the delivery's answer.
            let failed = match Box::pin(self.announce(request, &channels)).await {
                Ok(request) => {
                    return Ok(Submitted::Requested {
                        request: Box::new(request),
                        created,
                    });
                }
                Err(failed) => failed,
            };
            // Fail closed: nothing half-announced stays open.
            let (e, reason) = failed;
            Box::pin(self.cancel_quietly(id, &reason)).await;
            Err(e)
        }
    }

    /// Makes the request (or joins an identical one) and records it (`requested`, or
    /// `attached`). Where the store keeps the gate's log (one database) both commit in one
    /// transaction, or neither does; else the request is made, then its record appended,
    /// and how that went is the second of what this returns.
    async fn create_recorded(
        &self,
        request: ApprovalRequest,
    ) -> Result<(Box<Attach>, Result<(), AuditError>), StoreError> {
        let record = |a: &Attach| {
            let r = &a.request;
            let kind = if a.created {
                requested(r)
            } else {
                EventKind::Attached
            };
            self.event(r, Some(r.context.requester.clone()), kind)
        };
        let store = &self.inner.store;
        if self.inner.joint {
            let started = telemetry::Stopwatch::append();
            let (attach, seqs) = store
                .create_recorded(request, &mut |a| vec![record(a)])
                .await?;
            telemetry::audit_committed(started, seqs.len());
            return Ok((Box::new(attach), Ok(())));
        }
        let attach = Box::new(store.create_or_attach(request).await?);
        let audited = self.audit(record(&attach)).await.map(drop);
        Ok((attach, audited))
    }

    /// Delivers a new request on its channels and records each delivery. On failure returns
    /// the error and the reason to cancel the request with.
    ///
    /// Under [`IfUndelivered::Fail`] the first failed channel fails the call. Under
    /// [`IfUndelivered::Wait`] every channel is tried, and the call fails only when none of
    /// them delivered; each failure is audited either way.
    pub(super) async fn announce(
        &self,
        mut request: ApprovalRequest,
        channels: &[Arc<dyn Approver>],
    ) -> Result<ApprovalRequest, (Error, String)> {
        let tolerant = request.requirement.if_undelivered == IfUndelivered::Wait;
        let mut first_failure = None;
        let mut delivered = 0usize;
        for approver in channels {
            match self.deliver(request.clone(), approver).await {
                Ok(r) => {
                    request = r;
                    delivered += 1;
                }
                Err(failure) if tolerant && matches!(failure.0, Error::Delivery { .. }) => {
                    tracing::warn!(request = %request.id, channel = approver.name(),
                        error = %failure.0, "channel could not deliver; waiting on the others");
                    first_failure.get_or_insert(failure);
                }
                // Under `Fail`, and for an audit or store failure under either setting.
                Err(failure) => return Err(failure),
            }
        }
        match first_failure {
            Some((e, reason)) if delivered == 0 => {
                Err((e, format!("{reason}; no channel delivered the request")))
            }
            _ => Ok(request),
        }
    }

    /// Delivers a request on one channel and records the delivery.
    pub(super) async fn deliver(
        &self,
        mut request: ApprovalRequest,
        approver: &Arc<dyn Approver>,
    ) -> Result<ApprovalRequest, (Error, String)> {
        let name = approver.name().to_owned();
        let shown = request.reviews.len();
        let span =
            tracing::info_span!("approvals.delivery", channel = %name, request_id = %request.id);
        let delivery = match approver.notify(&request, self).instrument(span).await {
            Ok(d) => d,
            Err(source) => {
                telemetry::delivery_failed(&name);
                let kind = EventKind::NotifyFailed {
                    channel: name.clone(),
                    error: source.to_string(),
                };
                // Best effort: the cancellation that follows is audited too.
                let _ = self.audit(self.event(&request, None, kind)).await;
                let reason = format!("could not deliver on {name}: {source}");
                return Err((
                    Error::Delivery {
                        channel: name,
                        source,
                    },
                    reason,
                ));
            }
        };
        let failed = |e: Error| {
            let reason = format!("could not record the delivery on {name}: {e}");
            (e, reason)
        };
        let kind = EventKind::Notified {
            channel: name.clone(),
            delivery_id: delivery.id.clone(),
        };
        self.audit(self.event(&request, None, kind))
            .await
            .map_err(|e| failed(e.into()))?;
        request = self
            .inner
            .store
            .update(request.id, &mut |r| {
                tally::record_delivery(r, delivery.clone());
            })
            .await
            .map_err(|e| failed(e.into()))?;
        // Reviewed or decided while this channel was still delivering (a quick reviewer on
        // another channel, an expiry): those updates did not see this delivery, so show them
        // here. The store orders the updates, so at least one of the two shows each.
        for review in request.reviews.iter().skip(shown) {
            if let Err(e) = approver.reviewed(&request, review, &delivery).await {
                tracing::warn!(channel = %name, request = %request.id, error = %e,
                    "could not show the review on the channel");
            }
        }
        if let RequestState::Decided(d) = &request.state {
            if let Err(e) = approver.resolved(&request, d, &delivery).await {
                tracing::warn!(channel = %name, request = %request.id, error = %e,
                    "could not show the decision on the channel");
            }
        }
        Ok(request)
    }

    /// The approvers a requirement names (every approver when it names none).
    pub(super) fn channels_for(
        &self,
        action: &Action,
        requirement: &Requirement,
    ) -> Result<Vec<Arc<dyn Approver>>, Error> {
        let all = &self.inner.approvers;
        let named = |name: &String| {
            all.iter().find(|a| a.name() == name).cloned().ok_or_else(|| {
                Error::Policy(PolicyError::Evaluation {
                    policy: action.policy.to_string(),
                    message: format!(
                        "the requirement names channel `{name}`, but the gate has no approver of that name"
                    ),
                })
            })
        };
        // Escalation channels are checked now too: an escalation must not fail silently at
        // the moment it is needed.
        for step in &requirement.escalations {
            step.channels.iter().try_for_each(|c| named(c).map(drop))?;
        }
        if requirement.channels.is_empty() {
            return Ok(all.clone());
        }
        requirement.channels.iter().map(named).collect()
    }

    /// Cancels a request that failed to start; the caller is told now, so the next
    /// identical call asks again ([`tally::abandon`]).
    pub(super) async fn cancel_quietly(&self, id: RequestId, reason: &str) {
        if let Err(e) = self
            .decide(id, |r, now| tally::abandon(r, reason, now))
            .await
        {
            tracing::error!(request = %id, error = %e, "could not cancel a request that failed to start");
        }
    }

    /// Waits until the request is decided, expires, or the caller's timeout passes.
    ///
    /// Not an `async fn`, which would keep each argument twice in every waiting call.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub(super) fn wait(
        &self,
        request: Box<ApprovalRequest>,
        started: Timestamp,
        give_up: Option<Timestamp>,
    ) -> impl std::future::Future<Output = Result<Box<ApprovalRequest>, Error>> + Send + '_ {
        let span = tracing::info_span!("approvals.wait", request_id = %request.id);
        async move {
            let _waiting = telemetry::Waiting::start();
            let inner = &self.inner;
            if !request.is_pending() {
                return Ok(request);
            }
            // While it waits, a call keeps what waiting needs (the id, the version it has seen,
            // when something next falls due), not a copy of the request: the store has that.
            let id = request.id;
            let (mut version, mut due) = (request.version, next_due(&request));
            drop(request);
            loop {
                // Wake for whichever comes first: the caller's timeout, or the request's next
                // escalation, reminder or expiry.
                let wake: Timestamp = match give_up {
                    Some(g) if g < due => g,
                    _ => due,
                };
                // No `.await` inside the arms: `select!` keeps its output (a whole request) for
                // as long as an arm runs, and across an await that would be room in every
                // waiting call's future. What comes back is boxed for the same reason.
                let changed = tokio::select! {
                    changed = inner.store.wait_for_change(id, version) => Some(Box::new(changed?)),
                    () = inner.clock.sleep_until(wake) => None,
                };
                let current = match changed {
                    Some(current) => current,
                    None => {
                        let now = inner.clock.now();
                        if now >= due {
                            // Boxed: a waiting call holds only what waiting needs.
                            Box::new(Box::pin(self.tend(id)).await?.0)
                        } else if give_up.is_some_and(|g| now >= g) {
                            return Err(Error::TimedOut {
                                request_id: id,
                                waited: now.duration_since(started),
                            });
                        } else {
                            continue;
                        }
                    }
                };
                if !current.is_pending() {
                    return Ok(current);
                }
                (version, due) = (current.version, next_due(&current));
            }
        }
        .instrument(span)
    }

    /// Turns a request as it stands into its caller's answer: approved, the permit (taken
    /// now, `started` audited; it is good for one run); denied, expired or cancelled, that
    /// error (and the caller is recorded as told, so the next identical call asks again);
    /// edited, [`Error::Edited`] naming the edit to follow; still open, [`Error::Pending`]. What [`Gate::authorize`] does once it stops waiting,
    /// for a caller that waits its own way (an MCP gateway that reports progress meanwhile).
    pub async fn conclude(&self, request: ApprovalRequest) -> Result<Permit, Error> {
        let id = request.id;
        let decision = match request.state {
            RequestState::Pending => return Err(Error::Pending { request_id: id }),
            RequestState::Decided(ref d) => d.clone(),
        };
        let err = match decision {
            Decision::Approved { .. } => return self.take_permit(request).await,
            Decision::Denied { by, reason, .. } => Error::Denied(Denial {
                by: DeniedBy::Reviewer { reviewer: by },
                reason,
                request_id: Some(id),
            }),
            Decision::Expired { .. } => Error::Expired {
                request_id: id,
                expires_at: request.expires_at,
            },
            Decision::ChangesRequested { by, message, .. } => Error::ChangesRequested {
                request_id: id,
                by: by.id.into(),
                message,
            },
            Decision::Cancelled { reason, .. } => Error::Cancelled {
                request_id: id,
                reason,
            },
            // Not reported here: the caller follows the edit, and learns its outcome there.
            Decision::Edited { edit, by, .. } => {
                return Err(Error::Edited {
                    request_id: id,
                    edit,
                    by: by.id.into(),
                });
            }
        };
        // The caller now knows; the next identical call starts a new request.
        self.inner.store.update(id, &mut tally::report).await?;
        Err(err)
    }

    async fn take_permit(&self, request: ApprovalRequest) -> Result<Permit, Error> {
        let request = match self.begin_run(&request).await {
            Ok(r) => r,
            // Cancelled between the decision and now: say so as a caller learns it.
            Err(Error::NotApproved { .. }) => {
                let current = self
                    .inner
                    .store
                    .get(request.id)
                    .await?
                    .ok_or(crate::StoreError::UnknownRequest(request.id))?;
                return Box::pin(self.conclude(current)).await;
            }
            Err(e) => return Err(e),
        };
        Ok(Permit {
            span: tracing::Span::current(),
            approved: Some(Box::new(Approved {
                gate: self.clone(),
                request_id: request.id,
                action: ActionRef::from(&request.action),
                requester: request.context.requester.clone(),
                policy_version: request.requirement.policy_version.to_string(),
                edit: request.edit_of,
                call_span: tracing::Span::none(),
            })),
        })
    }
}

/// When a pending request next needs tending: an escalation, a reminder, or its expiry.
/// The request a reviewer's edit replaced and the edit's, when that is how a call ended.
fn edited(concluded: &Result<Permit, Error>) -> Option<(RequestId, RequestId)> {
    match concluded {
        Err(Error::Edited {
            request_id, edit, ..
        }) => Some((*request_id, *edit)),
        _ => None,
    }
}

fn next_due(request: &ApprovalRequest) -> Timestamp {
    request.next_due().unwrap_or(request.expires_at)
}

/// Names `p` as the directory does; a name the directory does not know stays as given.
pub(super) fn resolve_party(
    directory: &dyn crate::directory::Directory,
    field: &'static str,
    p: &Principal,
) -> Result<Option<Principal>, ContextError> {
    match directory.resolve(&p.id) {
        Resolution::Known(person) if person != *p => Ok(Some(person)),
        Resolution::Known(_) | Resolution::Unknown => Ok(None),
        Resolution::Ambiguous(people) => Err(ContextError::Ambiguous {
            field,
            id: p.id.to_string(),
            people: people.join(", "),
        }),
    }
}

/// A denial by a policy rule.
/// The span of one gated call (see [`crate::telemetry`]).
fn call_span(action: &Action) -> tracing::Span {
    if !telemetry::spans_seen() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "approvals.call",
        action = %action.name,
        policy = %action.policy,
        verdict = tracing::field::Empty,
        request_id = tracing::field::Empty
    )
}

fn policy_denial(rule: SmolStr, reason: String) -> Error {
    Error::Denied(Denial {
        by: DeniedBy::Policy {
            rule: rule.to_string(),
        },
        reason: Some(reason),
        request_id: None,
    })
}

/// A requirement that nobody could ever fill is a policy error, not a request.
pub(super) fn check_requirement(action: &Action, req: &Requirement) -> Result<(), PolicyError> {
    let bad = |message: String| PolicyError::Evaluation {
        policy: action.policy.to_string(),
        message,
    };
    if req.factors.is_empty() {
        return Err(bad(format!(
            "rule `{}` requires approval but names no approvers",
            req.rule
        )));
    }
    if let Some(f) = req.factors.iter().find(|f| f.count == 0) {
        return Err(bad(format!(
            "rule `{}` has a factor ({f}) that needs zero approvers",
            req.rule
        )));
    }
    Ok(())
}

/// The audit record of what a rule in shadow mode would have done (never enforced): its
/// kind and the policy version it was judged under.
/// The `requested` record's kind for a request just made: what was asked, by whom, under
/// which requirement (and, for an edit, of which call).
pub(super) fn requested(r: &ApprovalRequest) -> EventKind {
    EventKind::Requested {
        args: r.action.args.value().clone(),
        context: Box::new(r.context.clone()),
        requirement: Box::new(r.requirement.clone()),
        expires_at: r.expires_at,
        editable: r.action.editable.clone(),
        edit_of: r.edit_of.clone(),
    }
}

pub(super) fn shadow_record(shadow: &crate::policy::Shadow) -> (EventKind, SmolStr) {
    let kind = EventKind::Shadow {
        rule: shadow.rule.clone(),
        would: shadow.would().to_owned(),
        detail: shadow.detail(),
    };
    (kind, shadow.verdict.policy_version().into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn call(args: serde_json::Value) -> Call {
        let mut b = Action::builder("billing::export", "export");
        for (k, v) in args.as_object().unwrap() {
            b = b.arg(k, v);
        }
        let context = Context::new(Principal::agent("ops-bot"))
            .on_behalf_of(Principal::human("dana"))
            .reason("weekly churn report, «Q3»");
        (
            b.build().unwrap(),
            context,
            Requirement::new("one-data-owner"),
        )
    }

    #[test]
    fn a_queued_call_is_kept_as_text_and_comes_back_as_it_was() {
        let asked = call(serde_json::json!({
            "limit": 0.1, "max": u64::MAX, "nested": {"a": [1, "two", null]}, "quote": "\"\\\n"
        }));
        let queued = Queued::new(asked.clone(), &crate::text::Packer::default());
        assert!(matches!(queued, Queued::Text(_)));
        let back = queued.call().unwrap();
        assert_eq!(back, asked);
        assert!(back.0.digest_is_consistent());
    }
}

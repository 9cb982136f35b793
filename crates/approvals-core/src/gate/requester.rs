//! The requester's side of a call made from outside the process (the HTTP API, `approvals
//! exec`, a remote gate): wait for the decision, learn it, take the one permit, report the
//! end. The same rules and records as an in-process call: the permit is core's
//! [`tally::start`], the end core's [`tally::finish`].

use std::time::Duration;

use super::Gate;
use crate::audit::{ActionRef, AuditEvent, EventKind};
use crate::error::{Error, StoreError};
use crate::principal::{Context, Principal};
use crate::request::{ApprovalRequest, RequestId};
use crate::tally::{self, PermitRefusal};
use crate::view::Status;

impl Gate {
    /// Runs `f` as `context` (the agent, the person it acts for) on this gate: every gated
    /// call inside it, `#[requires_approval]` functions included, is judged here and made
    /// by `context`. The same as [`crate::scope::with_gate`] around
    /// [`crate::scope::with_context`]; tasks spawned inside do not inherit it.
    ///
    /// ```
    /// # use approvals_core::{Context, Gate, Principal};
    /// # async fn demo(gate: Gate) {
    /// let out = gate.run_as(Context::new(Principal::agent("ops-bot")), async { 42 }).await;
    /// assert_eq!(out, 42);
    /// # }
    /// ```
    pub fn run_as<F: std::future::Future>(
        &self,
        context: Context,
        f: F,
    ) -> impl std::future::Future<Output = F::Output> + use<F> {
        // Owns its gate: the future can be spawned.
        crate::scope::with_gate(self.clone(), crate::scope::with_context(context, f))
    }

    /// The policy names this gate's engine defines, if it can list them.
    pub fn policy_names(&self) -> Option<std::collections::BTreeSet<String>> {
        self.inner.policy.known_policies()
    }

    /// What the policy `policy` can decide, when the engine can tell.
    pub fn possible(&self, policy: &str) -> Option<crate::policy::Possible> {
        self.inner.policy.possible(policy)
    }

    /// Audits how a call the policy allowed outright ended (`finished`, with no request):
    /// for a caller that forwards calls elsewhere and wants their ends in the trail too, as
    /// an MCP gateway does. In-process calls allowed outright record nothing more than their
    /// `allowed`, which keeps the allowed path at one record.
    /// `outcome` is as for [`Gate::finish`].
    pub async fn finish_allowed(
        &self,
        action: &crate::action::Action,
        context: &crate::principal::Context,
        outcome: Result<Option<String>, String>,
    ) -> Result<(), crate::error::AuditError> {
        let (summary, error) = split(outcome);
        let kind = EventKind::Finished {
            ok: error.is_none(),
            error,
            summary,
        };
        self.audit_unrequested(action, context, kind).await
    }

    /// Audits `kind` for a call that has no request.
    async fn audit_unrequested(
        &self,
        action: &crate::action::Action,
        context: &crate::principal::Context,
        kind: EventKind,
    ) -> Result<(), crate::error::AuditError> {
        let event = AuditEvent {
            at: self.inner.clock.now(),
            request_id: None,
            action: ActionRef::from(action),
            actor: Some(context.requester.clone()),
            policy_version: Default::default(),
            kind,
        };
        self.audit(event).await.map(drop)
    }

    /// Audits a call refused before it was judged, because its requester's credentials do
    /// not allow what it asked (acting on behalf of someone they may not name). Nothing is
    /// judged or made.
    pub async fn record_refused_call(
        &self,
        action: &crate::action::Action,
        context: &crate::principal::Context,
        reason: &str,
    ) -> Result<(), crate::error::AuditError> {
        let kind = EventKind::CallRefused {
            reason: reason.chars().take(512).collect(),
        };
        self.audit_unrequested(action, context, kind).await
    }

    /// Waits until `id` is decided, or `within` has passed, doing what falls due meanwhile
    /// (expiry, escalations, reminders); returns the request as it stands then. A decision
    /// made by another process sharing the store wakes it as one made here does.
    pub async fn await_decision(
        &self,
        id: RequestId,
        within: Duration,
    ) -> Result<ApprovalRequest, Error> {
        let request = Box::new(self.found(id).await?);
        let now = self.inner.clock.now();
        match self
            .wait(request, now, Some(now.saturating_add(within)))
            .await
        {
            Err(Error::TimedOut { .. }) => self.found(id).await,
            other => other.map(|r| *r),
        }
    }

    /// Records that the requester of `id` has been told of its negative decision, so that
    /// the next identical call asks again rather than joining it (what an in-process caller
    /// does on learning a denial, an expiry or a cancellation). Changes nothing otherwise.
    pub async fn report_outcome(&self, id: RequestId) -> Result<ApprovalRequest, Error> {
        Ok(self.inner.store.update(id, &mut tally::report).await?)
    }

    /// Takes the one permit of the approved request `id` for its requester `by`, and audits
    /// `started`: the call may now run, once. Refused unless `by` made the request
    /// ([`Error::NotRequester`]), the request is approved ([`Error::NotApproved`]), and its
    /// permit is unused ([`Error::AlreadyRan`]).
    pub async fn start(&self, id: RequestId, by: &Principal) -> Result<ApprovalRequest, Error> {
        let request = self.found(id).await?;
        if !request.context.requester.same_party(by) {
            return Err(Error::NotRequester { request_id: id });
        }
        self.begin_run(&request).await
    }

    /// Records how the call run under `id`'s permit ended, for its requester `by`, and
    /// audits `finished`. Refused unless `by` made the request and its permit was taken and
    /// not yet finished ([`Error::NotStarted`]).
    /// `outcome` is `Ok` with what to record of a success (a summary, if any), or `Err` with
    /// the failure's text; either is cut to 4,096 bytes.
    pub async fn finish(
        &self,
        id: RequestId,
        by: &Principal,
        outcome: Result<Option<String>, String>,
    ) -> Result<ApprovalRequest, Error> {
        let request = self.found(id).await?;
        if !request.context.requester.same_party(by) {
            return Err(Error::NotRequester { request_id: id });
        }
        let _order = self.order(&request).await;
        let now = self.inner.clock.now();
        let ok = outcome.is_ok();
        let (summary, error) = split(outcome);
        let mut finished = false;
        let request = self
            .update_recorded::<Error>(id, &mut |r| {
                let before = r.version;
                tally::finish(r, ok, now);
                finished = r.version != before;
                let kind = EventKind::Finished {
                    ok,
                    error: error.clone(),
                    summary: summary.clone(),
                };
                let requester = Some(r.context.requester.clone());
                finished
                    .then(|| self.event(r, requester, kind))
                    .into_iter()
                    .collect()
            })
            .await?;
        if !finished {
            return Err(Error::NotStarted { request_id: id });
        }
        Ok(request)
    }

    async fn found(&self, id: RequestId) -> Result<ApprovalRequest, Error> {
        Ok(self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(StoreError::UnknownRequest(id))?)
    }

    /// Takes the permit of `found` and audits `started`, in one commit where the store keeps the
    /// log. Where the permit was taken and the record could not be appended, the run is
    /// recorded as finished with that failure, so nothing is left in doubt; the call fails
    /// closed either way.
    ///
    /// `found` is the request as the caller read it: its requester and call, which never
    /// change, name its turn ([`Gate::order`]), so it is not read again for them; whether
    /// its permit may be taken is judged on the request as the store has it, in the change.
    pub(super) async fn begin_run(
        &self,
        found: &ApprovalRequest,
    ) -> Result<ApprovalRequest, Error> {
        let id = found.id;
        let _order = self.order(found).await;
        let now = self.inner.clock.now();
        let mut taken = Err(PermitRefusal::NotApproved);
        let recorded = self
            .update_recorded::<Error>(id, &mut |r| {
                taken = tally::start(r, now);
                let requester = Some(r.context.requester.clone());
                taken
                    .is_ok()
                    .then(|| self.event(r, requester, EventKind::Started))
                    .into_iter()
                    .collect()
            })
            .await;
        let request = match recorded {
            Ok(request) => request,
            Err(e) => {
                if matches!(e, Error::Audit(_)) && taken.is_ok() {
                    let _ = self
                        .inner
                        .store
                        .update(id, &mut |r| tally::finish(r, false, now))
                        .await;
                }
                return Err(e);
            }
        };
        match taken {
            Ok(()) => {}
            Err(PermitRefusal::AlreadyUsed) => return Err(Error::AlreadyRan { request_id: id }),
            Err(_) => {
                return Err(Error::NotApproved {
                    request_id: id,
                    status: Status::of(&request),
                });
            }
        }
        Ok(request)
    }

    /// Records the end of an in-process run: the store first, then the audit record. A
    /// failure is logged: the body has run, and its result is what the caller needs.
    pub(super) async fn end_run(
        &self,
        id: RequestId,
        action: &ActionRef,
        requester: Principal,
        policy_version: &str,
        outcome: Result<(), String>,
    ) {
        let _order = self.order_for(&requester, &action.digest).await;
        let now = self.inner.clock.now();
        let ok = outcome.is_ok();
        let event = AuditEvent {
            at: now,
            request_id: Some(id),
            action: action.clone(),
            actor: Some(requester),
            policy_version: policy_version.into(),
            kind: EventKind::Finished {
                ok,
                error: outcome.err(),
                summary: None,
            },
        };
        let recorded = self
            .update_recorded::<Error>(id, &mut |r| {
                tally::finish(r, ok, now);
                vec![event.clone()]
            })
            .await;
        let audited = match recorded {
            Ok(_) => Ok(()),
            Err(Error::Store(e)) => {
                tracing::error!(request = %id, error = %e, "could not record the end of an approved call");
                // The body ran: its record is kept even where the request could not be.
                self.audit(event).await.map_err(Error::from).map(drop)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = audited {
            tracing::error!(request = %id, error = %e, "could not audit the end of an approved call");
        }
    }
}

/// A reported outcome as the `finished` record keeps it: (summary, error), each cut.
fn split(outcome: Result<Option<String>, String>) -> (Option<String>, Option<String>) {
    match outcome {
        Ok(s) => (s.map(|s| cut(&s)), None),
        Err(e) => (None, Some(cut(&e))),
    }
}

/// A requester's text cut to 4,096 bytes (at a character boundary).
fn cut(s: &str) -> String {
    const MAX: usize = 4096;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

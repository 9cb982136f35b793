//! The gate: the one thing a gated call talks to.

mod authorize;
mod builder;
mod edit;
mod requester;
mod review;

use std::sync::Arc;

pub(crate) use authorize::Soon;
pub use authorize::{CallOptions, Permit, SubmitOptions, Submitted};
pub use builder::{BuildError, GateBuilder, MissingPolicy};
pub use review::MAX_COMMENT_BYTES;

use crate::approver::Approver;
use crate::audit::{ActionRef, AuditEvent, AuditReceipt, AuditSink, EventKind};
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::{AuditError, StoreError};
use crate::grant::{self, Grant, GrantId};
use crate::policy::PolicyEngine;
use crate::principal::{Context, Principal};
use crate::request::{ApprovalRequest, Decision, RequestId};
use crate::store::Store;
use crate::tally;

/// What [`Gate::run_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DueReport {
    /// Requests expired.
    pub expired: usize,
    /// Escalation steps fired.
    pub escalated: usize,
    /// Reminders sent.
    pub reminded: usize,
    /// Stored requests that could not be read: audited and set aside.
    pub unreadable: usize,
    /// Requests whose due work failed this time (logged; tried again on the next run).
    pub failed: usize,
}

/// What tending one request did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tended {
    expired: bool,
    escalated: usize,
    reminded: bool,
}

/// Judges each gated call, keeps waiting calls until humans decide, and records everything.
///
/// A `Gate` owns a policy engine, a store, an audit sink, the approvers (channels), a
/// directory of reviewers and a clock. It is cheap to clone (an `Arc` inside); clones share
/// everything.
///
/// ```
/// use approvals_core::{CodePolicy, Gate, StaticDirectory};
/// # use approvals_core::doc_support::{NullAudit, NullStore};
/// let gate = Gate::builder()
///     .policy(CodePolicy::new().allow("read"))
///     .store(NullStore)
///     .audit(NullAudit)
///     .directory(StaticDirectory::new().group("sre", ["alice"]))
///     .build()
///     .unwrap();
/// ```
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    /// Striped locks that make each state change and its audit record one step, so the
    /// trail of a request reads in the order things happened ("decided" before "started").
    /// Keyed by (requester, digest), which every event of a request shares, creation and
    /// re-attachment included.
    order: Box<[tokio::sync::Mutex<()>]>,
    /// Calls making their request (checking it, creating it and recording it) at once; the
    /// rest queue here, in the order they came, before they build anything. With 100,000
    /// calls arriving together on a durable store's one writer, each kept its request, the
    /// futures that make it and their buffers until its turn: freed once all waited, that
    /// room stayed with the process as gaps between what the waiting calls keep (388 MiB
    /// for 100,000 waiting calls on SQLite, 283 MiB with the queue, about 200 with the
    /// queued calls kept as text: see `Queued`).
    making: tokio::sync::Semaphore,
    /// What the queued calls' texts are packed against.
    queued: crate::text::Packer,
    policy: Arc<dyn PolicyEngine>,
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    /// Whether the store keeps the sink's log (one database), so that a state change and its
    /// audit records commit together (see [`Gate::update_recorded`]).
    joint: bool,
    approvers: Vec<Arc<dyn Approver>>,
    directory: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
    default_context: Option<Context>,
    /// Whether the default context passed [`Context::check`] when the gate was built: a call
    /// that uses it is not checked again (the gate's copy never changes).
    default_checked: bool,
    /// Bounds how many unauthenticated review attempts are recorded one by one.
    unauthenticated: Limiter,
    /// Told of each decision, after the channels.
    observers: std::sync::RwLock<Vec<Arc<dyn crate::observer::Observer>>>,
    /// For a remote gate: the service that judges every call.
    remote: Option<Arc<dyn crate::remote::Remote>>,
    /// The longest any request waits (see `GateBuilder::max_expiry`).
    max_expiry: Option<std::time::Duration>,
}

/// How many unauthenticated review attempts on one request, through one channel, are
/// recorded one by one each minute; the rest are counted into the next record.
pub const UNAUTHENTICATED_PER_MINUTE: u32 = 10;

/// Counts unauthenticated attempts per (request, channel) in one-minute windows.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    windows: std::sync::Mutex<std::collections::HashMap<(RequestId, String), Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: crate::Timestamp,
    recorded: u32,
    suppressed: u64,
}

impl Limiter {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
    /// Windows kept at most; older ones are dropped first when it is full.
    const MAX_WINDOWS: usize = 10_000;

    /// `Some(n)`: record this attempt, saying that `n` were left out before it; `None`: count
    /// it and record nothing.
    pub(crate) fn admit(&self, id: RequestId, channel: &str, now: crate::Timestamp) -> Option<u64> {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_WINDOWS {
            map.retain(|_, w| now.duration_since(w.started) < Self::WINDOW);
        }
        let w = map.entry((id, channel.to_owned())).or_insert(Window {
            started: now,
            recorded: 0,
            suppressed: 0,
        });
        if now.duration_since(w.started) >= Self::WINDOW {
            w.started = now;
            w.recorded = 0;
        }
        if w.recorded >= UNAUTHENTICATED_PER_MINUTE {
            w.suppressed += 1;
            return None;
        }
        w.recorded += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.inner.approvers.iter().map(|a| a.name()).collect();
        f.debug_struct("Gate")
            .field("approvers", &names)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Starts building a gate.
    pub fn builder() -> GateBuilder {
        GateBuilder::default()
    }

    /// The gate's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// The gate's store.
    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The gate's directory.
    pub fn directory(&self) -> &dyn Directory {
        &*self.inner.directory
    }

    /// The context used when the calling code set none.
    pub fn default_context(&self) -> Option<&Context> {
        self.inner.default_context.as_ref()
    }

    /// See `Inner::default_checked`.
    pub(crate) fn default_checked(&self) -> bool {
        self.inner.default_checked
    }

    /// One request by id.
    pub async fn request(&self, id: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
        self.inner.store.get(id).await
    }

    /// Requests still waiting for review, oldest first.
    pub async fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        self.inner.store.list_open().await
    }

    /// Up to `limit` decided requests, the most recently created first (see
    /// [`Store::list_decided`]).
    pub async fn decided(&self, limit: usize) -> Result<Vec<ApprovalRequest>, StoreError> {
        self.inner.store.list_decided(limit).await
    }

    /// Resolves once the request has been delivered on `channel`, or has been decided.
    ///
    /// Channels that collect reviews themselves (a terminal prompt, a mock) wait for this
    /// before submitting, so the audit trail always reads "notified" before "reviewed".
    pub async fn delivered(
        &self,
        id: RequestId,
        channel: &str,
    ) -> Result<ApprovalRequest, StoreError> {
        let mut seen = 0;
        loop {
            let req = self.inner.store.wait_for_change(id, seen).await?;
            if !req.is_pending() || req.deliveries.iter().any(|d| d.channel == channel) {
                return Ok(req);
            }
            seen = req.version;
        }
    }

    /// Cancels a request that is pending (or approved but not yet started).
    ///
    /// Returns the decision if this call cancelled it, `None` if it was already final.
    pub async fn cancel(
        &self,
        id: RequestId,
        by: Option<Principal>,
        reason: &str,
    ) -> Result<Option<Decision>, crate::Error> {
        self.decide(id, |r, now| tally::cancel(r, by.clone(), reason, now))
            .await
            .map(|(_, d)| d)
    }

    /// Graceful shutdown: makes the audit trail durable and has it sign a final checkpoint.
    /// Waiting calls are not cancelled; their requests stay open in the store.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        self.inner.audit.as_ref().flush().await
    }

    /// Expires every pending request whose expiry has passed, even with no caller waiting.
    /// Returns how many were expired by this call. See [`Gate::run_due`], which also sends
    /// due escalations and reminders.
    pub async fn expire_due(&self) -> Result<usize, crate::Error> {
        Ok(self.run_due().await?.expired)
    }

    /// Does everything that is due, across every pending request in the store, whether or
    /// not a caller is waiting on it: expiries, escalation steps, reminders. Run it on a
    /// timer in a service (`approvals serve` does); waiting callers do the same for their own
    /// request, so a program whose callers wait needs no timer.
    ///
    /// One request that fails never stops the others: a stored request that cannot be read
    /// is audited (`request_unreadable`) and set aside; any other failure is logged and
    /// counted, and tried again on the next run. Only a failure to list what is due is an
    /// error.
    pub async fn run_due(&self) -> Result<DueReport, crate::Error> {
        let now = self.inner.clock.now();
        let mut report = DueReport::default();
        for id in self.inner.store.due(now).await? {
            match self.tend(id).await {
                Ok((_, did)) => {
                    report.expired += usize::from(did.expired);
                    report.escalated += did.escalated;
                    report.reminded += usize::from(did.reminded);
                }
                Err(crate::Error::Store(e @ StoreError::Unreadable { .. })) => {
                    report.unreadable += 1;
                    self.set_aside(id, &e).await;
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::error!(request = %id, error = %e,
                        "could not do what is due for a request; carrying on with the others");
                }
            }
        }
        Ok(report)
    }

    /// Audits a stored request that cannot be read, then takes it out of the open and due
    /// lists. If the audit fails it stays, and the next run tries again.
    async fn set_aside(&self, id: RequestId, error: &StoreError) {
        tracing::error!(request = %id, error = %error, "a stored request cannot be read; setting it aside");
        let event = AuditEvent {
            at: self.inner.clock.now(),
            request_id: Some(id),
            action: ActionRef {
                name: Default::default(),
                policy: Default::default(),
                digest: crate::Digest([0; 32]),
            },
            actor: None,
            policy_version: Default::default(),
            kind: EventKind::RequestUnreadable {
                error: error.to_string(),
            },
        };
        if let Err(e) = self.audit(event).await {
            tracing::error!(request = %id, error = %e, "could not audit an unreadable request; it stays due");
            return;
        }
        if let Err(e) = self.inner.store.set_aside(id).await {
            tracing::error!(request = %id, error = %e, "could not set an unreadable request aside");
        }
    }

    /// Does what is due for one request now: expire it, fire escalation steps, send a
    /// reminder. Each change is claimed through the store, so when several waiters (or
    /// processes) tend the same request, each step happens once.
    pub(crate) async fn tend(
        &self,
        id: RequestId,
    ) -> Result<(ApprovalRequest, Tended), crate::Error> {
        let mut did = Tended::default();
        let (req, expired) = self.expire(id).await?;
        did.expired = expired;
        if !req.is_pending() {
            return Ok((req, did));
        }
        // Escalation steps, claimed and audited under the request's ordering lock.
        let (mut req, steps) = {
            let _order = self.order(&req).await;
            let now = self.inner.clock.now();
            let mut steps: Vec<(usize, Vec<String>)> = Vec::new();
            let req = self
                .update_recorded::<crate::Error>(id, &mut |r| {
                    steps = tally::escalate(r, now)
                        .into_iter()
                        .filter_map(|i| {
                            Some((i, r.requirement.escalations.get(i)?.channels.clone()))
                        })
                        .collect();
                    let escalated = |(i, channels): &(usize, Vec<String>)| {
                        let kind = EventKind::Escalated {
                            step: u32::try_from(*i).unwrap_or(u32::MAX),
                            channels: channels.clone(),
                        };
                        self.event(r, None, kind)
                    };
                    steps.iter().map(escalated).collect()
                })
                .await?;
            (req, steps)
        };
        for (_, names) in steps {
            did.escalated += 1;
            for name in names {
                let Some(approver) = self.approvers_named(&name).next().cloned() else {
                    tracing::error!(request = %id, channel = %name, "escalation names a channel the gate does not have");
                    continue;
                };
                // A failed escalation is audited (NotifyFailed) and logged; the request keeps
                // waiting on the channels that did get it.
                match self.deliver(req.clone(), &approver).await {
                    Ok(r) => req = r,
                    Err((e, _)) => {
                        tracing::warn!(request = %id, channel = %name, error = %e, "escalation could not be delivered");
                    }
                }
            }
        }
        // A reminder, claimed and audited the same way.
        let (req, number) = {
            let _order = self.order(&req).await;
            let now = self.inner.clock.now();
            let mut number = None;
            let req = self
                .update_recorded::<crate::Error>(id, &mut |r| {
                    number = tally::remind(r, now);
                    number
                        .map(|n| self.event(r, None, EventKind::Reminded { number: n }))
                        .into_iter()
                        .collect()
                })
                .await?;
            (req, number)
        };
        if let Some(n) = number {
            did.reminded = true;
            for delivery in &req.deliveries {
                for a in self.approvers_named(&delivery.channel) {
                    if let Err(e) = a.remind(&req, delivery, n).await {
                        tracing::warn!(channel = %delivery.channel, request = %id, error = %e,
                            "could not send a reminder");
                    }
                }
            }
        }
        Ok((req, did))
    }

    /// Settles a call that is in doubt (its body started and its process died before
    /// recording the end): an operator who has checked the effect records how it ended, as
    /// `by`. Audited as `finished` with the operator as actor. Afterwards the identical call
    /// asks for approval again, as after any finished run.
    ///
    /// Returns `false` (and records nothing) unless the request's body started and never
    /// finished.
    pub async fn settle_in_doubt(
        &self,
        id: RequestId,
        by: Principal,
        outcome: Result<(), String>,
    ) -> Result<bool, crate::Error> {
        let current = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(StoreError::UnknownRequest(id))?;
        let _order = self.order(&current).await;
        let now = self.inner.clock.now();
        let ok = outcome.is_ok();
        let error = Some(match outcome {
            Ok(()) => format!("settled by {}: it ran", by.id),
            Err(e) => format!("settled by {}: {e}", by.id),
        });
        let mut settled = false;
        self.update_recorded::<crate::Error>(id, &mut |r| {
            let before = r.version;
            tally::finish(r, ok, now);
            settled = r.version != before;
            let kind = EventKind::Finished {
                ok,
                error: error.clone(),
                summary: None,
            };
            settled
                .then(|| self.event(r, Some(by.clone()), kind))
                .into_iter()
                .collect()
        })
        .await?;
        Ok(settled)
    }

    /// Every standing grant, oldest first.
    pub async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.inner.store.grants().await
    }

    /// Revokes a standing grant; audited. Returns the grant, and whether this call revoked it
    /// (`false` if it already was).
    pub async fn revoke_grant(
        &self,
        id: GrantId,
        by: Option<Principal>,
        reason: &str,
    ) -> Result<(Grant, bool), crate::Error> {
        let now = self.inner.clock.now();
        let mut revoked = false;
        let g = self
            .inner
            .store
            .update_grant(id, &mut |g| {
                revoked = grant::revoke(g, by.clone(), reason, now);
                revoked
            })
            .await?;
        if revoked {
            self.audit(AuditEvent {
                at: now,
                request_id: Some(g.from_request),
                action: ActionRef {
                    name: g.action.as_str().into(),
                    policy: g.policy.as_str().into(),
                    digest: g.from_digest,
                },
                actor: by,
                policy_version: g.policy_version.as_str().into(),
                kind: EventKind::GrantRevoked {
                    grant_id: g.id,
                    reason: reason.to_owned(),
                },
            })
            .await?;
        }
        Ok((g, revoked))
    }

    /// Marks one request expired if its time has come. Returns the request and whether this
    /// call made the change (and so audited it).
    async fn expire(&self, id: RequestId) -> Result<(ApprovalRequest, bool), crate::Error> {
        self.decide(id, tally::expire)
            .await
            .map(|(r, d)| (r, d.is_some()))
    }

    /// Runs a deciding rule (expire, cancel) on a request, audits the decision it made if
    /// any, then shows it on the channels.
    async fn decide(
        &self,
        id: RequestId,
        rule: impl Fn(&mut ApprovalRequest, crate::Timestamp) -> Option<Decision> + Send + Sync,
    ) -> Result<(ApprovalRequest, Option<Decision>), crate::Error> {
        let current = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or(StoreError::UnknownRequest(id))?;
        let (req, decided) = {
            let _order = self.order(&current).await;
            let now = self.inner.clock.now();
            let mut decided = None;
            let req = self
                .update_recorded::<crate::Error>(id, &mut |r| {
                    decided = rule(r, now);
                    decided.iter().map(|d| self.decision_event(r, d)).collect()
                })
                .await?;
            (req, decided)
        };
        if let Some(d) = &decided {
            crate::telemetry::decided(&req, d);
            self.show_decision(&req, d).await;
        }
        Ok((req, decided))
    }

    /// The lock that orders the events of `req` (see `Inner::order`).
    async fn order(&self, req: &ApprovalRequest) -> tokio::sync::MutexGuard<'_, ()> {
        self.order_for(&req.context.requester, &req.action.digest)
            .await
    }

    async fn order_for(
        &self,
        requester: &Principal,
        digest: &crate::Digest,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        requester.id.hash(&mut h);
        digest.hash(&mut h);
        let stripes = self.inner.order.len() as u64;
        let i = usize::try_from(h.finish() % stripes).unwrap_or(0);
        self.inner.order[i].lock().await
    }

    /// The audit record of a decision.
    fn decision_event(&self, req: &ApprovalRequest, d: &Decision) -> AuditEvent {
        let actor = match d {
            Decision::Denied { by, .. }
            | Decision::ChangesRequested { by, .. }
            | Decision::Edited { by, .. } => Some(by.clone()),
            Decision::Cancelled { by, .. } => by.clone(),
            _ => None,
        };
        let kind = EventKind::Decided {
            decision: d.clone(),
        };
        self.event(req, actor, kind)
    }

    /// Tells the channels that showed the request how it was decided, then the observers.
    /// Failures are logged: the decision stands whatever a channel does.
    async fn show_decision(&self, req: &ApprovalRequest, d: &Decision) {
        for delivery in &req.deliveries {
            for a in self.approvers_named(&delivery.channel) {
                if let Err(e) = a.resolved(req, d, delivery).await {
                    tracing::warn!(channel = %delivery.channel, request = %req.id, error = %e,
                        "could not show the decision on the channel");
                }
            }
        }
        let observers = self
            .inner
            .observers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for o in observers {
            o.decided(req, d).await;
        }
    }

    /// Adds an observer, told of every decision this gate makes from now on (in this
    /// process; a decision made by another process sharing the store is told there).
    pub fn observe(&self, observer: Arc<dyn crate::observer::Observer>) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(observer);
    }

    /// Whether this gate asks a remote service instead of judging calls itself.
    pub fn is_remote(&self) -> bool {
        self.inner.remote.is_some()
    }

    fn approvers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<dyn Approver>> {
        self.inner
            .approvers
            .iter()
            .filter(move |a| a.name() == name)
    }

    /// Runs `change` on request `id` and appends the audit records it returns: one state
    /// change and its records. Where the store keeps the gate's log (one database) they
    /// commit in one transaction, or neither does; else the change commits, then each
    /// record is appended, in order.
    ///
    /// Call it under the request's ordering lock ([`Gate::order`]).
    async fn update_recorded<E>(
        &self,
        id: RequestId,
        change: crate::store::RecordedChange<'_>,
    ) -> Result<ApprovalRequest, E>
    where
        E: From<StoreError> + From<AuditError>,
    {
        let store = &self.inner.store;
        if self.inner.joint {
            let started = crate::telemetry::Stopwatch::append();
            let (request, seqs) = store.update_recorded(id, change).await?;
            crate::telemetry::audit_committed(started, seqs.len());
            return Ok(request);
        }
        let mut records = Vec::new();
        let request = store.update(id, &mut |r| records = change(r)).await?;
        for event in records {
            self.audit(event).await?;
        }
        Ok(request)
    }

    /// Appends `event`. Not an `async fn`: the event moves straight into the sink's future,
    /// so no caller's future keeps a copy of it while the append runs.
    fn audit(
        &self,
        event: AuditEvent,
    ) -> impl std::future::Future<Output = Result<AuditReceipt, AuditError>> + Send + '_ {
        // A sink that appends at once is not given a future to box.
        let append = self
            .audit_now(event)
            .map(|(appended, _)| appended)
            .map_err(|event| {
                // Through the trait object itself: `Arc<dyn AuditSink>` is a sink too (for
                // callers who share one), and going through that impl would box a second future.
                (
                    crate::telemetry::Stopwatch::append(),
                    self.inner.audit.as_ref().append(event),
                )
            });
        async move {
            match append {
                Ok(appended) => appended,
                Err((started, append)) => {
                    let appended = append.await;
                    crate::telemetry::audit_appended(started, appended.is_ok());
                    appended
                }
            }
        }
    }

    /// Appends `event` now if the sink can ([`AuditSink::append_now`]), with the time the
    /// append ended if it was timed (one reading of the clock for the append's timing and
    /// the caller's); else hands it back for [`Gate::audit`].
    #[allow(clippy::result_large_err)] // the event comes back as it went in, unboxed: see `AuditSink::append_now`
    #[allow(clippy::type_complexity)]
    fn audit_now(
        &self,
        event: AuditEvent,
    ) -> Result<(Result<AuditReceipt, AuditError>, Option<std::time::Instant>), AuditEvent> {
        let started = crate::telemetry::Stopwatch::append();
        let appended = self.inner.audit.as_ref().append_now(event)?;
        let ended = crate::telemetry::audit_appended(started, appended.is_ok());
        Ok((appended, ended))
    }

    /// An audit event about a request, stamped now by the gate's clock.
    fn event(
        &self,
        req: &ApprovalRequest,
        actor: Option<Principal>,
        kind: EventKind,
    ) -> AuditEvent {
        AuditEvent {
            at: self.inner.clock.now(),
            request_id: Some(req.id),
            action: ActionRef::from(&req.action),
            actor,
            policy_version: req.requirement.policy_version.clone(),
            kind,
        }
    }
}

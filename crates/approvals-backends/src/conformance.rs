//! The conformance suite every [`Store`] and [`AuditSink`] runs (feature `conformance`).
//!
//! Plain async functions that panic with a readable message when the backend breaks the
//! contract: a backend's own tests call [`store`] with a fresh store and [`audit_sink`] with
//! a fresh sink. The memory, SQLite and Postgres backends all run it; so can a third-party
//! store.
//!
//! Every change goes through core's rules ([`tally`], [`grant`]); what is checked here is
//! what only a store can get wrong: atomicity, persistence, wake-ups, ordering.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use approvals_backends::{conformance, memory::{MemoryAudit, MemoryStore}};
//!
//! conformance::store(Arc::new(MemoryStore::new())).await;
//! let audit = Arc::new(MemoryAudit::new());
//! let read = audit.clone();
//! conformance::audit_sink(audit, move || { let r = read.clone(); async move { r.records() } }).await;
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use approvals_core::audit::{ActionRef, EventKind};
use approvals_core::grant::{self, Grant, GrantId};
use approvals_core::store::Store;
use approvals_core::tally::{self, PermitRefusal};
use approvals_core::{
    Action, ApprovalRequest, AuditEvent, AuditRecord, AuditSink, Context, Decision, Execution,
    Factor, Principal, RecordedReview, RequestId, Requirement, Review, StoreError, Timestamp,
};

/// A pending request by `requester` for `export(limit)`, needing one approval from `sre`,
/// made at `now` and expiring an hour later.
pub fn request(requester: &str, limit: i64, now: Timestamp) -> ApprovalRequest {
    let action = Action::builder("export", "exports")
        .arg("limit", &limit)
        .build()
        .expect("a plain argument records");
    let requirement = Requirement::new("needs-sre")
        .factor(Factor::group("sre", 1))
        .expires_in(Duration::from_secs(3600));
    ApprovalRequest::new(
        action,
        Context::new(Principal::agent(requester)),
        requirement,
        now,
    )
}

/// A requester name no other check uses, so checks can share one store.
fn fresh(name: &str) -> String {
    format!("{name}-{}", RequestId::generate())
}

fn approval(r: &ApprovalRequest, by: &str, group: &str, at: Timestamp) -> RecordedReview {
    RecordedReview {
        review: Review::approve(r, Principal::human(by), at),
        groups: BTreeSet::from([group.to_owned()]),
    }
}

/// Runs every store check, one after another, on one store.
pub async fn store(store: Arc<dyn Store>) {
    create_or_attach(&*store).await;
    review_through_tally(&*store).await;
    wait_for_change(&*store).await;
    permit_once(store.clone()).await;
    no_change_lost(store.clone()).await;
    racing_creates_share_one_request(store.clone()).await;
    list_open(&*store).await;
    due(&*store).await;
    grants(&*store).await;
    unknown_ids(&*store).await;
    sessions(&*store).await;
}

/// Console sessions: kept and read back under their key until they expire; replaced by a
/// put under the same key; gone once ended; ending one also clears those expired.
pub async fn sessions(store: &dyn Store) {
    use approvals_core::store::Session;
    let now = Timestamp::now();
    let session = |who: &str, lifetime: u64| Session {
        principal: Principal::human(who),
        csrf: format!("csrf-{who}"),
        expires_at: now.saturating_add(Duration::from_secs(lifetime)),
    };
    let (a, b) = (Session::key("cookie-a"), Session::key("cookie-b"));
    assert_eq!(store.session(&a, now).await.unwrap(), None);
    store.put_session(&a, &session("alice", 60)).await.unwrap();
    store.put_session(&b, &session("bob", 10)).await.unwrap();
    assert_eq!(
        store.session(&a, now).await.unwrap(),
        Some(session("alice", 60))
    );
    // Past its end, a session is no longer there.
    let later = now.saturating_add(Duration::from_secs(30));
    assert_eq!(store.session(&b, later).await.unwrap(), None);
    assert!(store.session(&a, later).await.unwrap().is_some());
    store.put_session(&a, &session("alice", 120)).await.unwrap();
    assert_eq!(
        store.session(&a, now).await.unwrap().unwrap().expires_at,
        session("alice", 120).expires_at
    );
    // Ending one ends it, and clears the expired ones (b, as of `later`).
    store.end_session(&a, later).await.unwrap();
    assert_eq!(store.session(&a, now).await.unwrap(), None);
    assert_eq!(store.session(&b, now).await.unwrap(), None);
}

/// A request is created once; the identical call re-attaches; another requester or other
/// arguments make a new one; a finished request is not re-attached.
pub async fn create_or_attach(store: &dyn Store) {
    let now = Timestamp::now();
    let who = fresh("attach");
    let first = request(&who, 10, now);
    let created = store.create_or_attach(first.clone()).await.unwrap();
    assert!(created.created, "a new call creates a request");
    assert_eq!(
        created.request, first,
        "the store returns the request as given"
    );
    assert_eq!(store.get(first.id).await.unwrap(), Some(first.clone()));

    let again = store
        .create_or_attach(request(&who, 10, now))
        .await
        .unwrap();
    assert!(!again.created, "the identical call must re-attach");
    assert_eq!(again.request.id, first.id);

    let other_args = store
        .create_or_attach(request(&who, 11, now))
        .await
        .unwrap();
    assert!(other_args.created, "other arguments are another call");
    let other_who = store
        .create_or_attach(request(&fresh("attach"), 10, now))
        .await
        .unwrap();
    assert!(other_who.created, "another requester's call is its own");

    // Approved, run and finished: the next identical call asks again.
    let later = now.saturating_add(Duration::from_secs(1));
    store
        .update(first.id, &mut |r| {
            tally::apply_review(r, approval(r, "alice", "sre", later), later);
            tally::start(r, later).unwrap();
            tally::finish(r, true, later);
        })
        .await
        .unwrap();
    let after_run = store
        .create_or_attach(request(&who, 10, now))
        .await
        .unwrap();
    assert!(after_run.created, "an approval is good for one run");
}

/// Reviews applied through core's tally persist exactly as core left the request.
pub async fn review_through_tally(store: &dyn Store) {
    let now = Timestamp::now();
    let who = fresh("review");
    let r = request(&who, 1, now);
    store.create_or_attach(r.clone()).await.unwrap();

    // Self-approval is refused by core and changes nothing.
    let mut refused = None;
    let unchanged = store
        .update(r.id, &mut |req| {
            let own = RecordedReview {
                review: Review::approve(req, Principal::agent(&who), now),
                groups: BTreeSet::from(["sre".to_owned()]),
            };
            refused = Some(tally::apply_review(req, own, now).verdict);
        })
        .await
        .unwrap();
    assert!(
        matches!(refused, Some(Err(_))),
        "self-approval must be refused"
    );
    assert_eq!(unchanged.version, r.version);

    let mut decided = None;
    let approved = store
        .update(r.id, &mut |req| {
            decided = tally::apply_review(req, approval(req, "alice", "sre", now), now).decided;
        })
        .await
        .unwrap();
    assert!(matches!(decided, Some(Decision::Approved { .. })));
    assert!(approved.version > r.version, "a change bumps the version");
    assert_eq!(approved.reviews.len(), 1);
    assert_eq!(
        store.get(r.id).await.unwrap().as_ref(),
        Some(&approved),
        "what update returned is what is stored"
    );
}

/// A waiter wakes when the request changes, and at once when it already has.
pub async fn wait_for_change(store: &dyn Store) {
    let now = Timestamp::now();
    let r = request(&fresh("wait"), 1, now);
    store.create_or_attach(r.clone()).await.unwrap();
    let (woke, changed) = tokio::join!(store.wait_for_change(r.id, r.version), async {
        store
            .update(r.id, &mut |req| {
                tally::apply_review(req, approval(req, "alice", "sre", now), now);
            })
            .await
            .unwrap()
    });
    let woke = woke.unwrap();
    assert_eq!(woke.version, changed.version, "the waiter sees the change");
    assert!(woke.decision().is_some());
    let at_once = store.wait_for_change(r.id, r.version).await.unwrap();
    assert_eq!(
        at_once.version, changed.version,
        "an older version returns at once"
    );
}

/// Many tasks racing to take the one permit of an approved request: exactly one wins.
pub async fn permit_once(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let r = request(&fresh("permit"), 1, now);
    store.create_or_attach(r.clone()).await.unwrap();
    store
        .update(r.id, &mut |req| {
            tally::apply_review(req, approval(req, "alice", "sre", now), now);
        })
        .await
        .unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let store = store.clone();
        racers.spawn(async move {
            let mut taken = Err(PermitRefusal::NotApproved);
            store
                .update(r.id, &mut |req| taken = tally::start(req, now))
                .await
                .unwrap();
            taken
        });
    }
    let mut won = 0;
    while let Some(t) = racers.join_next().await {
        match t.unwrap() {
            Ok(()) => won += 1,
            Err(PermitRefusal::AlreadyUsed) => {}
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one racer may take the permit");
    let stored = store.get(r.id).await.unwrap().unwrap();
    assert!(matches!(stored.execution, Execution::Started { .. }));
}

/// Changes racing on one request are each applied once, none lost: every one sees the
/// others' (a store that reads, changes and writes back without excluding or retrying would
/// lose some).
pub async fn no_change_lost(store: Arc<dyn Store>) {
    const TASKS: u64 = 4;
    const EACH: u64 = 10;
    let r = request(&fresh("no-change-lost"), 1, Timestamp::now());
    let start = store
        .create_or_attach(r.clone())
        .await
        .unwrap()
        .request
        .version;
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let store = store.clone();
        racers.spawn(async move {
            for _ in 0..EACH {
                store
                    .update(r.id, &mut |req| {
                        req.version += 1;
                        // Widens the window between the read and the write.
                        std::thread::yield_now();
                    })
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(t) = racers.join_next().await {
        t.unwrap();
    }
    let stored = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(stored.version, start + TASKS * EACH, "a change was lost");
}

/// Identical calls racing to create a request get one request between them.
pub async fn racing_creates_share_one_request(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let who = fresh("race");
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        let who = who.clone();
        racers.spawn(async move { store.create_or_attach(request(&who, 5, now)).await.unwrap() });
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    while let Some(a) = racers.join_next().await {
        let a = a.unwrap();
        ids.insert(a.request.id);
        created += usize::from(a.created);
    }
    assert_eq!((ids.len(), created), (1, 1), "one request, created once");
}

/// Open requests are the pending ones, oldest first.
pub async fn list_open(store: &dyn Store) {
    let now = Timestamp::now();
    let who = fresh("open");
    let a = request(&who, 1, now);
    let b = request(&who, 2, now);
    let c = request(&who, 3, now);
    for r in [&a, &b, &c] {
        store.create_or_attach(r.clone()).await.unwrap();
    }
    withdraw(store, b.id, "withdrawn", now).await;
    let open = open_of(store, &who).await;
    assert_eq!(open, vec![a.id, c.id], "pending only, oldest first");
    // The history: decided only, newest first, at most `limit`.
    withdraw(store, a.id, "withdrawn too", now).await;
    let decided: Vec<RequestId> = store
        .list_decided(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.context.requester.id == who)
        .map(|r| r.id)
        .collect();
    assert_eq!(decided, vec![b.id, a.id], "decided only, newest first");
    let newest = store.list_decided(1).await.unwrap();
    assert_eq!(newest.len(), 1, "at most `limit`");
    assert_eq!(newest[0].id, b.id, "nothing decided was created after b");
    // More than a page of a SQL store's list (256), among decided ones: every open one,
    // once, in order.
    let many = fresh("open-many");
    let mut expected = Vec::new();
    for n in 0..600 {
        let r = request(&many, n, now);
        store.create_or_attach(r.clone()).await.unwrap();
        if n % 3 == 1 {
            withdraw(store, r.id, "withdrawn", now).await;
        } else {
            expected.push(r.id);
        }
    }
    expected.sort_by_key(|id| id.to_string());
    let open = open_of(store, &many).await;
    assert_eq!(open.len(), 400, "every open request, once");
    assert_eq!(open, expected, "in the order of their ids");
}

/// Cancels request `id` as withdrawn for `why`.
async fn withdraw(store: &dyn Store, id: RequestId, why: &str, now: Timestamp) {
    store
        .update(id, &mut |r| {
            tally::cancel(r, None, why, now);
        })
        .await
        .unwrap();
}

/// The ids of `requester`'s open requests, as the store lists them.
async fn open_of(store: &dyn Store, requester: &str) -> Vec<RequestId> {
    store
        .list_open()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.context.requester.id == requester)
        .map(|r| r.id)
        .collect()
}

/// The due list holds expiries, escalation steps and reminders whose time has come, and
/// drops each once core has handled it.
pub async fn due(store: &dyn Store) {
    let now = Timestamp::now();
    let later = |s: u64| now.saturating_add(Duration::from_secs(s));
    let mut escalating = request(&fresh("due"), 1, now);
    escalating.requirement = escalating
        .requirement
        .clone()
        .escalate(Duration::from_secs(600), ["pager"]);
    let mut reminding = request(&fresh("due"), 1, now);
    reminding.requirement = reminding
        .requirement
        .clone()
        .remind_every(Duration::from_secs(900), Some(1));
    let plain = request(&fresh("due"), 1, now);
    for r in [&escalating, &reminding, &plain] {
        store.create_or_attach(r.clone()).await.unwrap();
    }
    let ours = |ids: Vec<RequestId>| -> Vec<RequestId> {
        ids.into_iter()
            .filter(|id| [escalating.id, reminding.id, plain.id].contains(id))
            .collect()
    };
    assert_eq!(
        ours(store.due(now).await.unwrap()),
        vec![],
        "nothing is due yet"
    );
    assert_eq!(
        ours(store.due(later(601)).await.unwrap()),
        vec![escalating.id],
        "the escalation step is due"
    );
    store
        .update(escalating.id, &mut |r| {
            assert_eq!(tally::escalate(r, later(601)), vec![0]);
        })
        .await
        .unwrap();
    assert_eq!(ours(store.due(later(601)).await.unwrap()), vec![]);
    assert_eq!(
        ours(store.due(later(901)).await.unwrap()),
        vec![reminding.id],
        "the reminder is due"
    );
    store
        .update(reminding.id, &mut |r| {
            assert_eq!(tally::remind(r, later(901)), Some(1));
        })
        .await
        .unwrap();
    let mut all = ours(store.due(later(3600)).await.unwrap());
    all.sort();
    let mut expected = vec![escalating.id, reminding.id, plain.id];
    expected.sort();
    assert_eq!(all, expected, "every request is due at its expiry");
    for id in expected {
        store
            .update(id, &mut |r| {
                assert!(tally::expire(r, later(3600)).is_some());
            })
            .await
            .unwrap();
    }
    assert_eq!(
        ours(store.due(later(7200)).await.unwrap()),
        vec![],
        "decided requests are never due"
    );
}

/// Grants are stored, found, used atomically and revoked.
pub async fn grants(store: &dyn Store) {
    let now = Timestamp::now();
    let who = fresh("grant");
    let from = request(&who, 1, now);
    let g = Grant {
        id: GrantId::generate(),
        requester: Principal::agent(&who),
        on_behalf_of: None,
        action: "export".into(),
        policy: "exports".into(),
        when: None,
        granted_by: vec![Principal::human("alice")],
        from_request: from.id,
        from_digest: from.action.digest,
        policy_version: "code".into(),
        created_at: now,
        expires_at: now.saturating_add(Duration::from_secs(3600)),
        max_uses: 2,
        uses: 0,
        revoked: None,
    };
    store.insert_grant(g.clone()).await.unwrap();
    assert_eq!(
        store.grants_for(&who, "exports", "export").await.unwrap(),
        vec![g.clone()]
    );
    assert!(
        store
            .grants_for(&who, "exports", "other")
            .await
            .unwrap()
            .is_empty()
    );
    let mut numbers = Vec::new();
    for _ in 0..3 {
        let mut n = None;
        store
            .update_grant(g.id, &mut |gr| {
                n = grant::use_grant(gr, now).ok();
                n.is_some()
            })
            .await
            .unwrap();
        numbers.push(n);
    }
    assert_eq!(numbers, vec![Some(1), Some(2), None], "two uses, then none");
    let revoked = store
        .update_grant(g.id, &mut |gr| grant::revoke(gr, None, "done", now))
        .await
        .unwrap();
    assert!(revoked.revoked.is_some());
    assert!(store.grants().await.unwrap().iter().any(|x| x == &revoked));
}

/// Unknown ids are typed errors, not panics or empty successes.
pub async fn unknown_ids(store: &dyn Store) {
    let id = RequestId::generate();
    assert_eq!(store.get(id).await.unwrap(), None);
    assert!(matches!(
        store.update(id, &mut |r| r.version += 1).await,
        Err(StoreError::UnknownRequest(x)) if x == id
    ));
    let g = GrantId::generate();
    assert!(matches!(
        store.update_grant(g, &mut |_| true).await,
        Err(StoreError::UnknownGrant(x)) if x == g
    ));
}

fn event(n: u64) -> AuditEvent {
    let action = Action::builder("export", "exports")
        .arg("limit", &n)
        .build()
        .expect("a plain argument records");
    AuditEvent {
        at: Timestamp::from_unix_micros(1_700_000_000_000_000 + i64::try_from(n).unwrap()),
        request_id: Some(RequestId::generate()),
        action: ActionRef::from(&action),
        actor: Some(Principal::agent("ops-bot")),
        policy_version: "code".into(),
        kind: if n % 2 == 0 {
            EventKind::Allowed {
                rule: format!("rule-{n}").into(),
            }
        } else {
            EventKind::Reminded {
                number: u32::try_from(n).unwrap(),
            }
        },
    }
}

/// Appends in order and concurrently; reads back one gap-free log, numbered from 0, each
/// record linked to the one before, holding exactly the events appended.
///
/// `read_back` returns the whole log as the backend stores it.
pub async fn audit_sink<F, Fut>(sink: Arc<dyn AuditSink>, read_back: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<AuditRecord>>,
{
    let base = read_back().await.len() as u64;
    let mut appended = Vec::new();
    for n in 0..3 {
        let e = event(n);
        let receipt = sink.append(e.clone()).await.unwrap();
        assert_eq!(
            receipt.seq,
            base + n,
            "sequential appends are numbered in order"
        );
        appended.push((receipt.seq, e));
    }
    let mut writers = tokio::task::JoinSet::new();
    for n in 3..43 {
        let sink = sink.clone();
        writers.spawn(async move {
            let e = event(n);
            (sink.append(e.clone()).await.unwrap().seq, e)
        });
    }
    while let Some(r) = writers.join_next().await {
        appended.push(r.unwrap());
    }
    sink.flush().await.unwrap();
    appended.sort_by_key(|(seq, _)| *seq);
    let seqs: Vec<u64> = appended.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (base..base + 43).collect::<Vec<_>>(),
        "every append gets its own number, without gaps"
    );
    let log = read_back().await;
    assert_eq!(log.len() as u64, base + 43);
    let mut prev = None;
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "record {i} is numbered {}", r.seq);
        assert_eq!(r.prev, prev, "record {i} links to the one before");
        prev = Some(r.leaf_hash());
    }
    for (seq, e) in &appended {
        assert_eq!(
            &log[*seq as usize].event, e,
            "record {seq} holds what was appended"
        );
    }

    // Appends whose callers went away midway (each future dropped after its first poll)
    // may be in the log or not, but the log goes on after them without a gap.
    let cancelled: Vec<_> = (43..53).map(event).collect();
    for e in &cancelled {
        tokio::select! {
            biased;
            _ = sink.append(e.clone()) => {}
            () = std::future::ready(()) => {}
        }
    }
    let last = event(53);
    let seq = sink.append(last.clone()).await.unwrap().seq;
    sink.flush().await.unwrap();
    let log = read_back().await;
    assert_eq!(log[seq as usize].event, last);
    for (i, r) in log.iter().enumerate().skip(1) {
        assert_eq!(r.seq, i as u64, "record {i} is numbered {}", r.seq);
        assert_eq!(
            r.prev,
            Some(log[i - 1].leaf_hash()),
            "record {i} links to the one before"
        );
    }
    // A cancelled append handed to a writer task before its caller went may land after the
    // append that followed it, which a lone appender wrote itself; none lands twice.
    let mut landed = Vec::new();
    for r in log[(base + 43) as usize..].iter().filter(|r| r.seq != seq) {
        assert!(
            cancelled.contains(&r.event),
            "record {} is one of the cancelled appends",
            r.seq
        );
        assert!(
            !landed.contains(&&r.event),
            "record {} repeats a cancelled append",
            r.seq
        );
        landed.push(&r.event);
    }
}

/// A log keeps one origin: once a checkpoint under one origin is written, a sink opened on
/// the same log with another origin refuses to append (naming both), and nothing it was
/// given reaches the log; a sink with the log's own origin goes on appending.
///
/// `open` opens a sink on the one log under the origin given.
pub async fn audit_keeps_one_origin<F, Fut, R, RFut>(open: F, read_back: R)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = Result<Arc<dyn AuditSink>, String>>,
    R: Fn() -> RFut,
    RFut: Future<Output = Vec<AuditRecord>>,
{
    let first = open("example.com/one").await.unwrap();
    first.append(event(0)).await.unwrap();
    first.flush().await.unwrap();
    drop(first);
    let before = read_back().await.len();
    let refused = match open("example.com/other").await {
        // Refused at open, or at the first append.
        Err(e) => e,
        Ok(other) => other
            .append(event(1))
            .await
            .expect_err("a sink under another origin appends nothing")
            .to_string(),
    };
    assert!(
        refused.contains("example.com/one") && refused.contains("example.com/other"),
        "the refusal names both origins: {refused}"
    );
    assert_eq!(read_back().await.len(), before, "nothing was appended");
    let again = open("example.com/one").await.unwrap();
    again.append(event(2)).await.unwrap();
    again.flush().await.unwrap();
    assert_eq!(read_back().await.len(), before + 1);
}

/// Several sinks writing one log (as several processes sharing a database do): each
/// appends 30 records concurrently, then all flush at once. Every append gets its own
/// number, the log read back is gap-free and linked, and no flush is refused (two writers
/// signing the same checkpoint at once must not collide). Returns how many records were
/// appended.
pub async fn audit_sinks_share_one_log<F, Fut>(sinks: Vec<Arc<dyn AuditSink>>, read_back: F) -> u64
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<AuditRecord>>,
{
    let base = read_back().await.len() as u64;
    let mut writers = tokio::task::JoinSet::new();
    for (i, sink) in sinks.iter().enumerate() {
        for n in 0..30 {
            let sink = sink.clone();
            let e = event((i * 100 + n) as u64);
            writers.spawn(async move { sink.append(e).await.unwrap().seq });
        }
    }
    let mut seqs = Vec::new();
    while let Some(seq) = writers.join_next().await {
        seqs.push(seq.unwrap());
    }
    seqs.sort_unstable();
    let appended = 30 * sinks.len() as u64;
    assert_eq!(seqs, (base..base + appended).collect::<Vec<u64>>());
    let mut flushes = tokio::task::JoinSet::new();
    for sink in &sinks {
        let sink = sink.clone();
        flushes.spawn(async move { sink.flush().await });
    }
    while let Some(f) = flushes.join_next().await {
        f.unwrap().unwrap();
    }
    let log = read_back().await;
    assert_eq!(log.len() as u64, base + appended);
    let mut prev = None;
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.prev, prev, "record {i} links to the one before");
        prev = Some(r.leaf_hash());
    }
    appended
}

/// A store that keeps its sink's log ([`Store::log_id`]) commits each change with its audit
/// records ([`Store::update_recorded`]) and each new request with its record
/// ([`Store::create_recorded`]), or neither. While `fault` makes the log refuse records, a
/// change that records fails and leaves the request as it was, a change with nothing to
/// record still commits, and no request is made; once mended, a change and its two records
/// land together, numbered after what the sink appended before, then a new request and its
/// record, then an identical call that joins it and its record (with no record, nothing),
/// and the sink appends after them, one linked log.
///
/// `read_back` returns the whole log as the backend stores it.
pub async fn records_commit_with_their_change<F, Fut>(
    store: Arc<dyn Store>,
    sink: Arc<dyn AuditSink>,
    fault: &dyn Fault,
    read_back: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<AuditRecord>>,
{
    let what = fault.describe();
    assert!(
        store.log_id().is_some() && store.log_id() == sink.log_id(),
        "the store keeps the sink's log: {:?} and {:?}",
        store.log_id(),
        sink.log_id()
    );
    let who = fresh("recorded");
    let r = request(&who, 1, Timestamp::now());
    store.create_or_attach(r.clone()).await.unwrap();
    let made = |a: &approvals_core::store::Attach| {
        vec![AuditEvent {
            request_id: Some(a.request.id),
            ..event(3)
        }]
    };
    let other = request(&who, 2, Timestamp::now());
    sink.append(event(0)).await.unwrap();
    let base = read_back().await.len();
    let reminded = |req: &ApprovalRequest| AuditEvent {
        request_id: Some(req.id),
        kind: EventKind::Reminded {
            number: req.reminded,
        },
        ..event(1)
    };
    let remind = |req: &mut ApprovalRequest| {
        req.reminded += 1;
        req.version += 1;
    };

    fault.inject().await;
    let refused = store
        .update_recorded(r.id, &mut |req| {
            remind(req);
            vec![reminded(req)]
        })
        .await;
    assert!(
        refused.is_err(),
        "{what}: a change whose record cannot be kept fails, got {refused:?}"
    );
    let stored = store.get(r.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.reminded),
        (r.version, r.reminded),
        "{what}: the change did not commit without its record"
    );
    assert_eq!(
        read_back().await.len(),
        base,
        "{what}: nothing was recorded"
    );
    let unmade = store
        .create_recorded(other.clone(), &mut made.clone())
        .await;
    assert!(
        unmade.is_err(),
        "{what}: a request whose record cannot be kept is not made, got {unmade:?}"
    );
    assert_eq!(
        store.get(other.id).await.unwrap(),
        None,
        "{what}: no request"
    );
    let quiet = store
        .update_recorded(r.id, &mut |req| {
            req.version += 1;
            Vec::new()
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: a change with nothing to record commits: {e}"));
    assert_eq!(quiet.1, Vec::<u64>::new());
    fault.heal().await;

    let (changed, seqs) = store
        .update_recorded(r.id, &mut |req| {
            remind(req);
            vec![reminded(req), reminded(req)]
        })
        .await
        .unwrap();
    let base = base as u64;
    assert_eq!(seqs, [base, base + 1], "numbered after the sink's records");
    assert_eq!(changed.version, r.version + 2);
    assert_eq!(store.get(r.id).await.unwrap().as_ref(), Some(&changed));
    let (attach, seqs) = store
        .create_recorded(other.clone(), &mut made.clone())
        .await
        .unwrap();
    assert!(attach.created);
    assert_eq!(seqs, [base + 2]);
    assert_eq!(
        store.get(other.id).await.unwrap().as_ref(),
        Some(&attach.request)
    );
    // An identical call joins the open request: nothing is written but its record, and
    // with no record, nothing at all.
    let same = request(&who, 2, Timestamp::now());
    let (joined, seqs) = store
        .create_recorded(same.clone(), &mut made.clone())
        .await
        .unwrap();
    assert!(!joined.created, "an identical call joins the open request");
    assert_eq!((joined.request.id, seqs), (other.id, vec![base + 3]));
    assert_eq!(store.get(same.id).await.unwrap(), None);
    let (quiet, seqs) = store
        .create_recorded(same.clone(), &mut |_| Vec::new())
        .await
        .unwrap();
    assert_eq!((quiet.request.id, quiet.created), (other.id, false));
    assert_eq!(seqs, Vec::<u64>::new());
    let after = sink.append(event(2)).await.unwrap();
    assert_eq!(
        after.seq,
        base + 4,
        "the sink appends after the store's records"
    );
    let log = read_back().await;
    assert_eq!(log.len() as u64, base + 5);
    assert_eq!(log[base as usize + 2].event.request_id, Some(other.id));
    assert_eq!(log[base as usize + 3].event.request_id, Some(other.id));
    let mut prev = None;
    for (i, rec) in log.iter().enumerate() {
        assert_eq!(rec.seq, i as u64);
        assert_eq!(rec.prev, prev, "record {i} links to the one before");
        prev = Some(rec.leaf_hash());
    }
    for rec in &log[base as usize..base as usize + 2] {
        assert_eq!(rec.event.request_id, Some(r.id));
        assert_eq!(rec.event.kind, EventKind::Reminded { number: 1 });
    }
}

/// Something that takes a store's database away for a while and gives it back: a disk that
/// fills up, a server that terminates every connection. Backends' tests implement it for
/// their database; [`recovers_from_fault`] and [`audit_sink_recovers_from_fault`] run the
/// same checks on each.
#[async_trait::async_trait]
pub trait Fault: Send + Sync {
    /// What it does, for messages (`the disk is full`, `every connection was terminated`).
    fn describe(&self) -> String;

    /// Breaks the database.
    async fn inject(&self);

    /// Mends it. For a fault that is over once it has happened (terminated connections),
    /// nothing.
    async fn heal(&self);

    /// Whether calls made between [`Fault::inject`] and [`Fault::heal`] must succeed: true
    /// for a fault the store is expected to ride out (a connection it can re-establish),
    /// false for one that leaves it unable to write until mended (a full disk); those calls
    /// may then fail, with an error, and change nothing.
    fn ridden_out(&self) -> bool;
}

/// A store meets `fault` and recovers: calls made while it lasts either succeed (a fault it
/// rides out) or fail with an error and change nothing; once it is mended every call works
/// again, on every connection, without a restart, and a waiter sees the change.
pub async fn recovers_from_fault(store: Arc<dyn Store>, fault: &dyn Fault) {
    let what = fault.describe();
    let now = Timestamp::now();
    let who = fresh("fault");
    let r = request(&who, 1, now);
    store.create_or_attach(r.clone()).await.unwrap();
    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.wait_for_change(r.id, r.version).await }
    });
    fault.inject().await;
    // Several changes while it lasts, so that every pooled connection meets the fault.
    for _ in 0..6 {
        let outcome = store
            .update(r.id, &mut |req| {
                req.reminded += 1;
                req.version += 1;
            })
            .await;
        if fault.ridden_out() {
            if let Err(e) = outcome {
                panic!("{what}: a change must succeed on a new connection, got: {e}");
            }
        } else if let Ok(changed) = &outcome {
            // A write that found room is a committed write: it must be what is stored.
            assert_eq!(store.get(r.id).await.ok().flatten().as_ref(), Some(changed));
        }
    }
    fault.heal().await;
    // Mended: every call works again, however many connections met the fault.
    let mut last = None;
    for _ in 0..8 {
        let changed = store
            .update(r.id, &mut |req| req.version += 1)
            .await
            .unwrap_or_else(|e| panic!("{what}, then mended: a change still fails: {e}"));
        last = Some(changed);
    }
    let last = last.unwrap();
    assert_eq!(store.get(r.id).await.unwrap().as_ref(), Some(&last));
    let woke = waiter.await.unwrap().unwrap();
    assert!(woke.version > r.version, "{what}: the waiter saw a change");
    let other = request(&who, 2, now);
    assert!(store.create_or_attach(other.clone()).await.unwrap().created);
    assert!(
        store
            .list_open()
            .await
            .unwrap()
            .iter()
            .any(|x| x.id == other.id),
        "{what}, then mended: the open list works"
    );
}

/// An audit sink meets `fault` and recovers: appends made while it lasts either succeed (a
/// fault it rides out) or fail with an error; afterwards appends work again, and the log
/// read back holds each successful append exactly once, gap-free and linked.
pub async fn audit_sink_recovers_from_fault<F, Fut>(
    sink: Arc<dyn AuditSink>,
    fault: &dyn Fault,
    read_back: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<AuditRecord>>,
{
    let what = fault.describe();
    sink.append(event(0)).await.unwrap();
    let mut appended = vec![0u64];
    fault.inject().await;
    for n in 1..6 {
        match sink.append(event(n)).await {
            Ok(_) => appended.push(n),
            Err(e) if !fault.ridden_out() => {
                assert!(!e.to_string().is_empty());
            }
            Err(e) => panic!("{what}: an append must succeed on a new connection, got: {e}"),
        }
    }
    fault.heal().await;
    for n in 6..12 {
        sink.append(event(n))
            .await
            .unwrap_or_else(|e| panic!("{what}, then mended: an append still fails: {e}"));
        appended.push(n);
    }
    sink.flush().await.unwrap();
    let log = read_back().await;
    let mut prev = None;
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "{what}: gap-free");
        assert_eq!(r.prev, prev, "{what}: record {i} links to the one before");
        prev = Some(r.leaf_hash());
    }
    for n in appended {
        let e = event(n);
        let copies = log
            .iter()
            .filter(|r| r.event.action == e.action && r.event.kind == e.kind)
            .count();
        assert_eq!(copies, 1, "{what}: append {n} is in the log exactly once");
    }
}

/// One stored request that cannot be read back (written by another version, or damaged)
/// never stops the store from serving the others: the lists skip it, the gate's due-work
/// timer carries on past it (expiring the others), audits it once as `request_unreadable`
/// and sets it aside.
///
/// `corrupt` overwrites the stored row of the request it is given with something that does
/// not decode, as another program would; `read_back` returns the audit log.
pub async fn serves_past_an_unreadable_row<C, CF, F, Fut>(
    store: Arc<dyn Store>,
    sink: Arc<dyn AuditSink>,
    corrupt: C,
    read_back: F,
) where
    C: FnOnce(RequestId) -> CF,
    CF: Future<Output = ()>,
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<AuditRecord>>,
{
    use approvals_core::{CodePolicy, Gate, ManualClock};
    let now = Timestamp::now();
    let who = fresh("unreadable");
    let expiring = request(&who, 1, now);
    let broken = request(&who, 2, now);
    let fine = request(&who, 3, now);
    for r in [&expiring, &broken, &fine] {
        store.create_or_attach(r.clone()).await.unwrap();
    }
    corrupt(broken.id).await;
    assert!(
        matches!(
            store.get(broken.id).await,
            Err(StoreError::Unreadable { .. })
        ),
        "the corrupted row reads as unreadable"
    );
    let open: Vec<RequestId> = store
        .list_open()
        .await
        .expect("the open list carries on past an unreadable row")
        .into_iter()
        .filter(|r| r.context.requester.id == who)
        .map(|r| r.id)
        .collect();
    assert_eq!(open, vec![expiring.id, fine.id]);

    // Past every expiry: the timer expires the readable ones and sets the broken one aside.
    let clock = Arc::new(ManualClock::new(
        expiring.expires_at.saturating_add(Duration::from_secs(1)),
    ));
    let gate = Gate::builder()
        .policy(CodePolicy::new())
        .store_arc(store.clone())
        .audit_arc(sink)
        .clock(clock)
        .skip_policy_check()
        .build()
        .unwrap();
    let report = gate.run_due().await.expect("the timer carries on");
    assert_eq!(report.unreadable, 1, "{report:?}");
    assert!(report.expired >= 2, "{report:?}");
    for r in [&expiring, &fine] {
        let stored = store.get(r.id).await.unwrap().unwrap();
        assert!(matches!(stored.decision(), Some(Decision::Expired { .. })));
    }
    let again = gate.run_due().await.unwrap();
    assert_eq!(again.unreadable, 0, "set aside once audited: {again:?}");
    let log = read_back().await;
    let audited: Vec<&AuditRecord> = log
        .iter()
        .filter(|r| matches!(r.event.kind, EventKind::RequestUnreadable { .. }))
        .collect();
    assert_eq!(audited.len(), 1, "audited once");
    assert_eq!(audited[0].event.request_id, Some(broken.id));
    assert!(
        store.list_decided(100).await.is_ok(),
        "the history carries on too"
    );
}

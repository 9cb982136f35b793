//! A Rust process with no database uses `#[requires_approval]` unchanged against a central
//! approval service: the service's gate judges, its reviewers approve, the body runs here
//! once, its end is recorded there.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use approvals::http::{ApprovalService, OnBehalfOf, RemoteGate, TokenHash, Tokens};
use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::{
    CodePolicy, Context, Error, Factor, Gate, Principal, Requirement, Review, StaticDirectory,
    requires_approval, scope,
};

const BOT: &str = "apv_remote-gate-ops-bot";

#[requires_approval(policy = "deploy", name = "ops::deploy", skip(runs))]
async fn deploy(env: &str, runs: Arc<AtomicUsize>) -> Result<String, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(format!("deployed to {env}"))
}

#[requires_approval(policy = "deploy", name = "ops::deploy", skip(runs), defer)]
async fn deploy_later(env: &str, runs: Arc<AtomicUsize>) -> Result<String, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(format!("deployed to {env}"))
}

struct Service {
    base: String,
    gate: Gate,
    audit: Arc<MemoryAudit>,
}

async fn service() -> Service {
    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(
            CodePolicy::new()
                .require(
                    "deploy",
                    Requirement::new("one-sre")
                        .factor(Factor::group("sre", 1))
                        .expires_in(Duration::from_secs(600)),
                )
                .deny("drop", "never"),
        )
        .directory(StaticDirectory::new().group("sre", ["alice"]))
        .store(MemoryStore::new())
        .audit(audit.clone())
        .skip_policy_check()
        .build()
        .unwrap();
    let tokens = Tokens::new().requester(
        TokenHash::of(BOT),
        Principal::agent("ops-bot"),
        OnBehalfOf::from_list(["dana"]),
    );
    let app = ApprovalService::new(gate.clone()).tokens(tokens).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Service { base, gate, audit }
}

fn agent() -> Context {
    Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human("dana"))
}

/// Approves the service's one pending request as alice, once its audit record says it
/// exists.
async fn approve_when_asked(s: &Service) -> approvals::RequestId {
    s.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "requested"))
        .await;
    let gate = &s.gate;
    let request = gate.pending().await.unwrap().remove(0);
    let review = Review::approve(&request, Principal::human("alice"), gate.clock().now());
    gate.submit_review(review).await.unwrap();
    request.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_call_waits_for_the_service_and_runs_once() {
    let s = service().await;
    let remote = RemoteGate::new(&s.base, BOT)
        .poll(Duration::from_secs(5))
        .into_gate();
    assert!(remote.is_remote());
    let runs = Arc::new(AtomicUsize::new(0));
    let call = tokio::spawn(scope::with_gate(
        remote.clone(),
        scope::with_context(agent(), deploy("prod", runs.clone())),
    ));
    let id = tokio::time::timeout(Duration::from_secs(30), approve_when_asked(&s))
        .await
        .expect("the remote call asked the service");
    let out = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the approval reached the waiting call")
        .unwrap()
        .unwrap();
    assert_eq!(out, "deployed to prod");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Its end is recorded by the service, for its own request.
    let r = s.gate.request(id).await.unwrap().unwrap();
    assert!(matches!(
        r.execution,
        approvals::Execution::Finished { ok: true, .. }
    ));
    let names: Vec<&str> = s.audit.records().iter().map(|r| r.event.name()).collect();
    assert_eq!(names.last(), Some(&"finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_re_attaches_and_a_denial_is_a_denial() {
    let s = service().await;
    let runs = Arc::new(AtomicUsize::new(0));
    // First "process": asks and gives up at once (deferred), leaving the request open.
    let first = RemoteGate::new(&s.base, BOT).into_gate();
    let err = scope::with_gate(
        first,
        scope::with_context(agent(), deploy_later("prod", runs.clone())),
    )
    .await
    .unwrap_err();
    let Error::Pending { request_id } = err else {
        panic!("expected Pending, got {err}")
    };
    // Approved while no process waits.
    assert_eq!(approve_when_asked(&s).await, request_id);
    // The restarted process makes the identical call: it joins the approved request, runs once.
    let second = RemoteGate::new(&s.base, BOT).into_gate();
    let out = scope::with_gate(
        second.clone(),
        scope::with_context(agent(), deploy("prod", runs.clone())),
    )
    .await
    .unwrap();
    assert_eq!(out, "deployed to prod");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.gate.pending().await.unwrap().len(),
        0,
        "no second request was made"
    );

    // A policy denial reaches the caller as a denial, with its rule.
    #[requires_approval(policy = "drop", name = "ops::drop", skip(runs))]
    async fn drop_table(table: &str, runs: Arc<AtomicUsize>) -> Result<(), Error> {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    let err = scope::with_gate(
        second,
        scope::with_context(agent(), drop_table("users", runs.clone())),
    )
    .await
    .unwrap_err();
    let d = err.denial().expect("a denial");
    assert!(matches!(&d.by, approvals::DeniedBy::Policy { rule } if rule == "drop"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_be_reached_fails_the_call_closed() {
    // Nothing listens on port 9 of loopback.
    let remote = RemoteGate::new("http://127.0.0.1:9", BOT)
        .attempts(2)
        .into_gate();
    let runs = Arc::new(AtomicUsize::new(0));
    let err = scope::with_gate(
        remote,
        scope::with_context(agent(), deploy("prod", runs.clone())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Remote { service, .. } if service == "http://127.0.0.1:9"),
        "{err}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

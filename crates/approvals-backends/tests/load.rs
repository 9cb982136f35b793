//! Load: 1,000 gated calls wait at once; every one is approved through the HTTP API; every
//! body runs exactly once and no waiter is left behind. Prints how long it took.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use approvals_backends::http::{ApprovalService, ReviewerTokens, TokenHash};
use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_core::{
    Action, CallOptions, CodePolicy, Context, Factor, Gate, Principal, Requirement, StaticDirectory,
};
use futures_util::StreamExt as _;
use serde_json::json;

const CALLS: usize = 1000;
const TOKEN: &str = "apv_load-test-alice";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_waiting_calls_are_approved_through_the_api() {
    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(StaticDirectory::new().group("data-owners", ["alice"]))
        .store(MemoryStore::new())
        .audit(audit.clone())
        .build()
        .unwrap();
    // The baseline: the same HTTP round trip to a route that does nothing.
    let app = ApprovalService::new(gate.clone())
        .tokens(ReviewerTokens::new().human(TokenHash::of(TOKEN), "alice"))
        .router()
        .route(
            "/noop",
            axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Each call has its own argument, so its own request; each body counts its runs.
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..CALLS).map(|_| AtomicUsize::new(0)).collect());
    let started = Instant::now();
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let gate = gate.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                let action = Action::builder("billing::export_customer", "export")
                    .arg("customer", &i)
                    .build()
                    .unwrap();
                let permit = gate
                    .authorize(
                        action,
                        Context::new(Principal::agent("ops-bot")),
                        CallOptions::default(),
                    )
                    .await?;
                runs[i].fetch_add(1, Ordering::SeqCst);
                permit.finish(Ok(())).await;
                Ok::<_, approvals_core::Error>(())
            })
        })
        .collect();
    audit
        .wait_for(|r| r.iter().filter(|r| r.event.name() == "requested").count() == CALLS)
        .await;
    let waiting = started.elapsed();
    let open = gate.pending().await.unwrap();
    assert_eq!(open.len(), CALLS);

    // Approve them all over HTTP, 32 at a time, as a busy console or bot would.
    let http = reqwest::Client::new();
    let approving = Instant::now();
    let statuses: Vec<_> = futures_util::stream::iter(open)
        .map(|r| {
            let http = http.clone();
            let url = format!("{base}/api/v1/requests/{}/reviews", r.id);
            async move {
                http.post(url)
                    .bearer_auth(TOKEN)
                    .json(&json!({ "verdict": "approve", "digest": r.action.digest }))
                    .send()
                    .await
                    .map(|r| r.status())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        statuses
            .iter()
            .all(|s| s.as_ref().is_ok_and(|s| s.is_success()))
    );
    // Every waiter wakes and runs; a bound on failure only.
    for c in calls {
        tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("no waiter is left behind")
            .unwrap()
            .unwrap();
    }
    let total = started.elapsed();
    let approve_and_run = approving.elapsed();
    let baseline = Instant::now();
    let noop: Vec<_> = futures_util::stream::iter(0..CALLS)
        .map(|i| {
            let http = http.clone();
            let url = format!("{base}/noop");
            async move {
                http.post(url)
                    .bearer_auth(TOKEN)
                    .json(&json!({ "verdict": "approve", "n": i }))
                    .send()
                    .await
                    .map(|r| r.status())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let baseline = baseline.elapsed();
    assert!(
        noop.iter()
            .all(|s| s.as_ref().is_ok_and(|s| s.is_success()))
    );
    assert!(
        runs.iter().all(|r| r.load(Ordering::SeqCst) == 1),
        "each body runs once"
    );
    assert!(gate.pending().await.unwrap().is_empty());
    eprintln!(
        "load: {CALLS} calls waiting after {:.0} ms; approved over HTTP and all run in {:.0} ms \
         ({:.0} approvals/s); {:.0} ms in all; {CALLS} POSTs to a no-op route, same client: \
         {:.0} ms; ratio {:.1}x",
        waiting.as_secs_f64() * 1e3,
        approve_and_run.as_secs_f64() * 1e3,
        CALLS as f64 / approve_and_run.as_secs_f64(),
        total.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        approve_and_run.as_secs_f64() / baseline.as_secs_f64()
    );
}

/// Review-to-resume over HTTP, one at a time: a requester long-polls its request; a
/// reviewer approves it; the time from sending the approval to the long-poll's answer
/// arriving. Against the same client's round trip to a route that does nothing, interleaved
/// in the same run. Prints p50 and p99 of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_to_resume_over_http_against_a_no_op_round_trip() {
    use approvals_backends::http::{OnBehalfOf, Tokens};
    const ROUNDS: usize = 300;
    const BOT: &str = "apv_load-test-ops-bot";
    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(StaticDirectory::new().group("data-owners", ["alice"]))
        .store(MemoryStore::new())
        .audit(audit.clone())
        .build()
        .unwrap();
    let tokens = Tokens::new()
        .human(TokenHash::of(TOKEN), "alice")
        .requester(
            TokenHash::of(BOT),
            Principal::agent("ops-bot"),
            OnBehalfOf::Nobody,
        );
    let app = ApprovalService::new(gate.clone())
        .tokens(tokens)
        .router()
        .route(
            "/noop",
            axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let mut resume = Vec::with_capacity(ROUNDS);
    let mut noop = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let asked: serde_json::Value = http
            .post(format!("{base}/api/v1/requests"))
            .bearer_auth(BOT)
            .json(&json!({ "action": "export", "policy": "export", "args": { "n": i } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = asked["request"]["id"].as_str().unwrap().to_owned();
        let digest = asked["request"]["action"]["digest"].clone();
        let version = asked["request"]["version"].as_u64().unwrap();
        // The long-poll, in flight before the approval is sent.
        let poll = {
            let (http, url) = (http.clone(), format!("{base}/api/v1/requests/{id}?wait=30"));
            tokio::spawn(async move {
                let r = http.get(url).bearer_auth(BOT).send().await.unwrap();
                let arrived = Instant::now();
                (r.json::<serde_json::Value>().await.unwrap(), arrived)
            })
        };
        // Measured from sending the approval to the requester's answer arriving: through
        // the long-poll's wake-up when it is parked first (as it nearly always is), through
        // its own reply when the approval overtook it. Either way, the time from a
        // reviewer's decision to the waiting requester knowing it.
        tokio::task::yield_now().await;
        let sent = Instant::now();
        let approved = http
            .post(format!("{base}/api/v1/requests/{id}/reviews"))
            .bearer_auth(TOKEN)
            .json(&json!({ "verdict": "approve", "digest": digest }))
            .send()
            .await
            .unwrap();
        assert!(approved.status().is_success());
        let (v, arrived) = poll.await.unwrap();
        assert_eq!(v["status"], "approved");
        assert!(v["request"]["version"].as_u64().unwrap() > version);
        resume.push(arrived.duration_since(sent));
        let t = Instant::now();
        http.post(format!("{base}/noop"))
            .bearer_auth(TOKEN)
            .json(&json!({ "verdict": "approve", "digest": digest }))
            .send()
            .await
            .unwrap();
        noop.push(t.elapsed());
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    let (r50, r99) = (pct(&mut resume, 0.50), pct(&mut resume, 0.99));
    let (n50, n99) = (pct(&mut noop, 0.50), pct(&mut noop, 0.99));
    eprintln!(
        "review-to-resume over HTTP, {ROUNDS} rounds: p50 {:.0} µs, p99 {:.0} µs; no-op round trip: p50 {:.0} µs, p99 {:.0} µs; ratio p50 {:.1}x, p99 {:.1}x",
        r50.as_secs_f64() * 1e6,
        r99.as_secs_f64() * 1e6,
        n50.as_secs_f64() * 1e6,
        n99.as_secs_f64() * 1e6,
        r50.as_secs_f64() / n50.as_secs_f64(),
        r99.as_secs_f64() / n99.as_secs_f64(),
    );
    assert!(
        r99 < Duration::from_secs(5),
        "a review reaches its waiter promptly"
    );
}

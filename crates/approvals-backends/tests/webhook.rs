//! Outbound webhooks against a receiver on loopback: signed per the Standard Webhooks spec,
//! retried within bounds, decided through the callback URL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use approvals_backends::http::{ApprovalService, Retry, WebhookApprover, WebhookSecret};
use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_core::signed::SignedDecision;
use approvals_core::{
    CodePolicy, Error, EventKind, Factor, Gate, Person, PrincipalKind, Requirement, ReviewDecision,
    StaticDirectory,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::sync::watch;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One message the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Receiver {
    got: watch::Sender<Vec<Received>>,
    /// Answer this status to the next `fail` messages.
    fail: Arc<AtomicUsize>,
    fail_with: StatusCode,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.send_modify(|g| g.push(Received { headers, body }));
    if r.fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return r.fail_with;
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(fail: usize, fail_with: StatusCode) -> (Self, String) {
        let r = Self {
            got: watch::channel(Vec::new()).0,
            fail: Arc::new(AtomicUsize::new(fail)),
            fail_with,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    async fn wait(&self, n: usize) -> Vec<Received> {
        let mut rx = self.got.subscribe();
        common::within(
            &format!("{n} webhook deliveries"),
            rx.wait_for(|g| g.len() >= n),
        )
        .await
        .unwrap()
        .clone()
    }
}

fn fast() -> Retry {
    Retry {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_attempts: 3,
        max_total: Duration::from_secs(10),
    }
}

fn alice_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[1; 32])
}

/// A gate whose only channel is a webhook to `url`, its API served on loopback.
async fn gate_with_hook(url: &str) -> (Gate, Arc<MemoryAudit>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(
            StaticDirectory::new()
                .person(
                    Person::new("alice", PrincipalKind::Human).ed25519(alice_key().verifying_key()),
                )
                .group("data-owners", ["alice"]),
        )
        .store(MemoryStore::new())
        .audit(audit.clone())
        .approver(
            WebhookApprover::new(&base)
                .endpoint(url, WebhookSecret::parse(SECRET).unwrap())
                .retry(fast()),
        )
        .build()
        .unwrap();
    let app = ApprovalService::new(gate.clone()).router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (gate, audit, base)
}

/// The signature as the spec defines it, computed here without the library's code.
fn expected_signature(id: &str, ts: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn the_specs_example_signs_and_verifies_and_bad_ones_do_not() {
    let s = WebhookSecret::parse(SECRET).unwrap();
    let (id, ts, body) = (
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert_eq!(s.sign(id, ts, body), sig);
    let verify =
        |id, t: &str, sig, body: &[u8], now| s.verify(Some(id), Some(t), Some(sig), body, now);
    assert_eq!(verify(id, "1614265330", sig, body, ts), Ok(()));
    // Several signatures (a rotation): any one matching is enough.
    let rotated = format!("v1,bm90LXRoaXMtb25l {sig}");
    assert_eq!(verify(id, "1614265330", &rotated, body, ts), Ok(()));
    assert!(verify(id, "1614265330", sig, br#"{"test": 2432232315}"#, ts).is_err());
    assert!(verify("msg_other", "1614265330", sig, body, ts).is_err());
    assert!(
        verify(id, "1614265330", sig, body, ts + 301).is_err(),
        "stale"
    );
    assert!(
        verify(id, "1614265330", sig, body, ts - 301).is_err(),
        "future"
    );
    assert!(verify(id, "yesterday", sig, body, ts).is_err());
    assert!(
        s.verify(None, Some("1614265330"), Some(sig), body, ts)
            .is_err()
    );
    assert!(WebhookSecret::parse("whsec_not base64!").is_err());
    assert!(
        WebhookSecret::parse("whsec_c2hvcnQ=").is_err(),
        "too short a key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_posted_signed_and_decided_through_its_callback() {
    let (receiver, url) = Receiver::start(0, StatusCode::OK).await;
    let (gate, audit, base) = gate_with_hook(&url).await;
    let call = common::spawn_call(&gate);
    let got = receiver.wait(1).await;
    let msg = &got[0];
    let h = |n: &str| msg.headers[n].to_str().unwrap().to_owned();
    assert_eq!(h("content-type"), "application/json");
    let (id, ts) = (h("webhook-id"), h("webhook-timestamp"));
    assert_eq!(
        h("webhook-signature"),
        expected_signature(&id, &ts, &msg.body)
    );
    assert!((now() - ts.parse::<i64>().unwrap()).abs() < 60);
    let body: Value = serde_json::from_slice(&msg.body).unwrap();
    assert_eq!(body["type"], "approval.requested");
    let request = &body["data"]["request"];
    assert_eq!(request["action"]["name"], "billing::export_customers");
    assert_eq!(body["data"]["still_needed"], "1 more from data-owners");
    let request_id = request["id"].as_str().unwrap();
    assert_eq!(id, format!("msg_{request_id}"));
    let callback = body["data"]["callback_url"].as_str().unwrap();
    assert_eq!(
        callback,
        format!("{base}/api/v1/requests/{request_id}/reviews")
    );

    // The receiver (a CI system, say) posts alice's signed decision back.
    let signed = SignedDecision::sign(
        &alice_key(),
        request_id.parse().unwrap(),
        request["action"]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        "alice",
        ReviewDecision::Approve,
        Some("approved from the pipeline".into()),
        gate.clock().now(),
    );
    let r = reqwest::Client::new()
        .post(callback)
        .json(&json!({ "signed": signed }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    call.await.unwrap().unwrap();

    // Then the outcome follows.
    let got = receiver.wait(2).await;
    let decided: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(decided["type"], "approval.decided");
    assert_eq!(decided["data"]["status"], "approved");
    let notified: Vec<_> = audit
        .records()
        .into_iter()
        .filter_map(|r| match r.event.kind {
            EventKind::Notified { delivery_id, .. } => Some(delivery_id),
            _ => None,
        })
        .collect();
    assert_eq!(notified, [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_is_retried_with_the_same_id() {
    let (receiver, url) = Receiver::start(2, StatusCode::SERVICE_UNAVAILABLE).await;
    let (gate, audit, _) = gate_with_hook(&url).await;
    let _call = common::spawn_call(&gate);
    audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "notified"))
        .await;
    let got = receiver.wait(3).await;
    assert_eq!(got.len(), 3, "two failures, then accepted");
    let ids: Vec<_> = got
        .iter()
        .map(|g| g.headers["webhook-id"].clone())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(
        gate.pending().await.unwrap().len() == 1,
        "the request waits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_past_the_bound_fails_the_call_closed() {
    for (fail_with, attempts) in [
        (StatusCode::SERVICE_UNAVAILABLE, 3),
        // A receiver that refuses the message itself is not asked again.
        (StatusCode::BAD_REQUEST, 1),
    ] {
        let (receiver, url) = Receiver::start(usize::MAX, fail_with).await;
        let (gate, audit, _) = gate_with_hook(&url).await;
        let err = common::spawn_call(&gate).await.unwrap().unwrap_err();
        let Error::Delivery { channel, source } = &err else {
            panic!("{err}")
        };
        assert_eq!(channel, "webhook");
        assert!(source.message.contains(fail_with.as_str()), "{source}");
        assert_eq!(receiver.got.borrow().len(), attempts, "{fail_with}");
        assert!(gate.pending().await.unwrap().is_empty(), "cancelled");
        let names: Vec<_> = audit.records().iter().map(|r| r.event.name()).collect();
        assert!(names.contains(&"notify_failed"), "{names:?}");
        assert!(!names.contains(&"started"), "{names:?}");
    }
    // Nobody listening at all.
    let (gate, _, _) = gate_with_hook("http://127.0.0.1:9/hook").await;
    let err = common::spawn_call(&gate).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Delivery { .. }), "{err}");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
}

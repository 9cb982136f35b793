//! Slack, against a fake Slack on loopback that speaks the Web API's wire format (JSON
//! bodies, bearer token, `ok`/`error`, HTTP 429 with `Retry-After`) and a real HTTP server
//! for `/slack/interactions`, fed form-encoded, signed payloads as Slack sends them.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_backends::slack::{SigningSecret, SlackApprover, SlackClient, SlackInteractions};
use approvals_core::{
    CallOptions, CodePolicy, Error, Factor, Gate, GateBuilder, IfUndelivered, ManualClock, Person,
    PrincipalKind, Requirement, StaticDirectory, Timestamp,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

const SECRET: &str = "test-signing-secret";
const TOKEN: &str = "xoxb-test-token";

/// One Web API call the fake received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    body: Value,
}

/// A fake Slack Web API: records every call; answers as Slack does.
#[derive(Clone)]
struct Fake {
    calls: watch::Sender<Vec<Call>>,
    /// How many of the next calls to answer with HTTP 429 (`Retry-After: 0`).
    throttle: Arc<std::sync::atomic::AtomicUsize>,
    /// Channels that do not exist (`channel_not_found`).
    missing: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// Socket Mode: the fake's own address, connections opened, the envelope to send on
    /// the second connection, and the acknowledgements received.
    addr: Arc<std::sync::OnceLock<String>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    envelope: watch::Sender<Option<Value>>,
    acks: watch::Sender<Vec<Value>>,
    /// The workspace's accounts, as `users.info` describes them, by user id.
    users: Arc<std::sync::Mutex<std::collections::BTreeMap<String, Value>>>,
}

/// A Socket Mode connection: `hello`; on the first connection a `disconnect` (Slack
/// rotating it); on later ones the test's envelope, then the client's acknowledgements.
async fn socket(
    State(f): State<Fake>,
    Path(n): Path<usize>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    use axum::extract::ws::Message;
    use futures_util::StreamExt;
    ws.on_upgrade(move |mut sock| async move {
        let hello = json!({ "type": "hello", "num_connections": 1 }).to_string();
        if sock.send(Message::Text(hello.into())).await.is_err() {
            return;
        }
        if n == 1 {
            let bye = json!({ "type": "disconnect", "reason": "refresh_requested" }).to_string();
            let _ = sock.send(Message::Text(bye.into())).await;
            // Wait for the client to go.
            while let Some(Ok(_)) = sock.next().await {}
            return;
        }
        let mut rx = f.envelope.subscribe();
        let Ok(envelope) = rx.wait_for(Option::is_some).await.map(|e| e.clone()) else {
            return;
        };
        if sock
            .send(Message::Text(
                envelope.unwrap_or_default().to_string().into(),
            ))
            .await
            .is_err()
        {
            return;
        }
        while let Some(Ok(frame)) = sock.next().await {
            if let Message::Text(t) = frame {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                f.acks.send_modify(|a| a.push(v));
            }
        }
    })
}

/// A Web API body as Slack takes it: JSON, or form-encoded (read as an object of strings).
fn body_of(headers: &HeaderMap, raw: &[u8]) -> Option<Value> {
    let kind = headers.get("content-type")?.to_str().ok()?;
    if kind.starts_with("application/json") {
        serde_json::from_slice(raw).ok()
    } else if kind.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).ok()?;
        Some(Value::Object(
            pairs.into_iter().map(|(k, v)| (k, json!(v))).collect(),
        ))
    } else {
        None
    }
}

async fn api(
    State(f): State<Fake>,
    Path(method): Path<String>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    let Some(body) = body_of(&headers, &raw) else {
        return Json(json!({ "ok": false, "error": "invalid_arguments" })).into_response();
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Json(json!({ "ok": false, "error": "not_authed" })).into_response();
    }
    if f.throttle
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok()
    {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "").into_response();
    }
    let n = f.calls.borrow().len();
    f.calls.send_modify(|c| {
        c.push(Call {
            method: method.clone(),
            body: body.clone(),
        })
    });
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    if f.missing.lock().unwrap().contains(&channel) {
        return Json(json!({ "ok": false, "error": "channel_not_found" })).into_response();
    }
    match method.as_str() {
        "chat.postMessage" => {
            // A user id posts to the app's DM with them: Slack answers with a D… channel.
            let channel = match channel.strip_prefix('U') {
                Some(rest) => format!("D{rest}"),
                None => channel,
            };
            Json(json!({ "ok": true, "channel": channel, "ts": format!("1700000000.{n:06}") }))
                .into_response()
        }
        "chat.update" | "views.open" => Json(json!({ "ok": true })).into_response(),
        "chat.postEphemeral" => {
            Json(json!({ "ok": true, "message_ts": "1700000001.000001" })).into_response()
        }
        "apps.connections.open" => {
            let n = f
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            let addr = f.addr.get().cloned().unwrap_or_default();
            Json(json!({ "ok": true, "url": format!("ws://{addr}/socket/{n}") })).into_response()
        }
        "users.info" => {
            let users = f.users.lock().unwrap();
            match body["user"].as_str().and_then(|id| users.get(id)) {
                Some(u) => Json(json!({ "ok": true, "user": u })).into_response(),
                None => Json(json!({ "ok": false, "error": "user_not_found" })).into_response(),
            }
        }
        "users.lookupByEmail" => {
            let users = f.users.lock().unwrap();
            // Slack matches addresses without regard to case.
            let email = body["email"].as_str().unwrap_or_default();
            match users.values().find(|u| {
                u["profile"]["email"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            }) {
                Some(u) => Json(json!({ "ok": true, "user": u })).into_response(),
                None => Json(json!({ "ok": false, "error": "users_not_found" })).into_response(),
            }
        }
        _ => Json(json!({ "ok": false, "error": "unknown_method" })).into_response(),
    }
}

impl Fake {
    async fn start() -> (Self, String) {
        let fake = Fake {
            calls: watch::Sender::new(Vec::new()),
            throttle: Arc::default(),
            missing: Arc::default(),
            addr: Arc::default(),
            connections: Arc::default(),
            envelope: watch::Sender::new(None),
            acks: watch::Sender::new(Vec::new()),
            users: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/api/{method}", axum::routing::post(api))
            .route("/socket/{n}", axum::routing::get(socket))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let url = format!("http://{addr}/api/");
        fake.addr.set(addr).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    /// Waits until `n` calls of `method` have arrived; returns them.
    async fn wait(&self, method: &str, n: usize) -> Vec<Call> {
        let mut rx = self.calls.subscribe();
        let arrived = rx.wait_for(|c| c.iter().filter(|c| c.method == method).count() >= n);
        let calls = common::within(&format!("{n} calls of {method}"), arrived).await;
        let calls = calls.unwrap();
        calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Waits until `n` calls of `method` for which `matching` holds have arrived; returns
    /// them.
    async fn wait_matching(
        &self,
        method: &str,
        n: usize,
        matching: impl Fn(&Call) -> bool,
    ) -> Vec<Call> {
        let mut rx = self.calls.subscribe();
        let of = |c: &Call| c.method == method && matching(c);
        let arrived = rx.wait_for(|c| c.iter().filter(|c| of(c)).count() >= n);
        let calls = common::within(&format!("{n} calls of {method}"), arrived).await;
        calls.unwrap().iter().filter(|c| of(c)).cloned().collect()
    }

    /// The base URL of its Web API.
    fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr.get().unwrap())
    }

    /// Adds an account to the workspace, shaped as `users.info` returns it.
    fn add_user(&self, id: &str, team: &str, email: &str, extra: Value) {
        let mut user = json!({
            "id": id, "team_id": team, "name": id.to_lowercase(), "deleted": false,
            "is_bot": false, "is_restricted": false, "is_ultra_restricted": false,
            "is_email_confirmed": true,
            "profile": { "real_name": id, "display_name": id, "email": email },
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            user[k] = v.clone();
        }
        self.users.lock().unwrap().insert(id.to_owned(), user);
    }

    fn count(&self, method: &str) -> usize {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.method == method)
            .count()
    }
}

/// A gate whose only channel is Slack, a fake Slack, and the interactions endpoint served
/// on loopback.
struct Setup {
    api_url: String,
    interactions: SlackInteractions,
    gate: Gate,
    audit: Arc<MemoryAudit>,
    fake: Fake,
    endpoint: String,
    http: reqwest::Client,
}

fn person(id: &str, slack: &str) -> Person {
    let mut p = Person::new(id, PrincipalKind::Human);
    p.slack = Some(slack.into());
    p
}

async fn setup() -> Setup {
    setup_with(|b| b).await
}

/// [`setup`], with the gate builder changed by `f` (a clock, a policy, another approver).
async fn setup_with(f: impl FnOnce(GateBuilder) -> GateBuilder) -> Setup {
    let (fake, api_url) = Fake::start().await;
    let client = SlackClient::new(TOKEN).base_url(&api_url);
    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(
            CodePolicy::new().require(
                "export",
                Requirement::new("one-data-owner")
                    .factor(Factor::group("data-owners", 1))
                    .expires_in(Duration::from_secs(600)),
            ),
        )
        .directory(
            StaticDirectory::new()
                .group("data-owners", ["alice", "bob", "dana"])
                .person(person("alice", "UALICE"))
                .person(person("bob", "UBOB"))
                .person(person("dana", "UDANA")),
        )
        .store(MemoryStore::new())
        .audit(audit.clone())
        .approver(SlackApprover::new(client.clone()).channel("CAPPROVALS"));
    let gate = f(gate).build().unwrap();
    let interactions = SlackInteractions::new(gate.clone(), SigningSecret::new(SECRET), client);
    let app = interactions.clone().router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "http://{}/slack/interactions",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        api_url,
        interactions,
        gate,
        audit,
        fake,
        endpoint,
        http: reqwest::Client::new(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Setup {
    /// Starts a gated call; returns it and the message Slack received.
    async fn call(&self) -> (tokio::task::JoinHandle<Result<(), Error>>, Call) {
        let gate = self.gate.clone();
        let call = tokio::spawn(async move {
            let (action, context) = common::export_call();
            let permit = gate
                .authorize(action, context, CallOptions::default())
                .await?;
            permit.finish(Ok(())).await;
            Ok(())
        });
        let posted = self.fake.wait("chat.postMessage", 1).await.remove(0);
        (call, posted)
    }

    /// The first review the audit trail records as accepted.
    fn accepted_review(&self) -> approvals_core::Review {
        self.audit
            .records()
            .into_iter()
            .find_map(|r| match r.event.kind {
                approvals_core::EventKind::ReviewAccepted { review } => Some(*review),
                _ => None,
            })
            .expect("an accepted review")
    }

    /// POSTs a raw body to the interactions endpoint with the given headers.
    async fn post_raw(&self, body: Vec<u8>, ts: Option<String>, sig: Option<String>) -> StatusCode {
        let mut req = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(ts) = ts {
            req = req.header("x-slack-request-timestamp", ts);
        }
        if let Some(sig) = sig {
            req = req.header("x-slack-signature", sig);
        }
        req.send().await.unwrap().status()
    }

    /// POSTs `payload` as Slack does: form-encoded, signed now.
    async fn send(&self, payload: &Value) -> StatusCode {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let ts = now().to_string();
        let sig = SigningSecret::new(SECRET).sign(&ts, body.as_bytes());
        self.post_raw(body.into_bytes(), Some(ts), Some(sig)).await
    }
}

/// A `block_actions` payload for a click on `action_id` by `user`, with the button value
/// taken from the posted message.
fn click(posted: &Call, user: &str, action_id: &str) -> Value {
    let value = button(posted, action_id)["value"].clone();
    json!({
        "type": "block_actions",
        "user": { "id": user, "username": user.to_lowercase(), "team_id": "T1" },
        "team": { "id": "T1", "domain": "example" },
        "api_app_id": "A1",
        "trigger_id": "12345.98765.abcd",
        "container": { "type": "message", "message_ts": "1700000000.000000", "channel_id": "CAPPROVALS", "is_ephemeral": false },
        "channel": { "id": "CAPPROVALS", "name": "approvals" },
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [{
            "type": "button", "action_id": action_id, "block_id": "approvals:x",
            "value": value, "text": { "type": "plain_text", "text": "Approve" },
            "action_ts": "1700000002.000000"
        }]
    })
}

fn button(posted: &Call, action_id: &str) -> Value {
    posted.body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().iter())
        .find(|e| e["action_id"] == action_id)
        .cloned()
        .unwrap_or_else(|| panic!("no {action_id} button in {}", posted.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_call_is_posted_approved_by_a_signed_click_and_the_message_updated() {
    let s = setup().await;
    let (call, posted) = s.call().await;

    // The message: what, who, for whom, why, arguments (redacted masked), digest, needs.
    assert_eq!(posted.body["channel"], "CAPPROVALS");
    let text = posted.body["blocks"].to_string();
    for expected in [
        "Approval needed: billing::export_customers",
        "agent:ops-bot",
        "human:dana",
        "chat message from dana",
        "weekly churn report",
        "`export` / `one-data-owner`",
        "\\\"limit\\\": 500",
        "(redacted)",
        "Still needed: *1 more from data-owners*",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }
    assert!(
        !text.contains("sk-live-123"),
        "a redacted value must not reach Slack"
    );
    let request = s.gate.pending().await.unwrap().remove(0);
    assert!(
        text.contains(&request.action.digest.short(12)),
        "digest prefix shown"
    );
    assert_eq!(
        button(&posted, "approvals.approve")["value"],
        format!("{}:{}", request.id, request.action.digest.to_hex())
    );

    assert_eq!(
        s.send(&click(&posted, "UALICE", "approvals.approve")).await,
        StatusCode::OK
    );
    call.await.unwrap().unwrap();

    // The review in the thread, then the message updated without its buttons.
    let replies = s.fake.wait("chat.postMessage", 2).await;
    assert_eq!(replies[1].body["thread_ts"], "1700000000.000000");
    assert!(
        replies[1].body["text"]
            .as_str()
            .unwrap()
            .contains("alice approved")
    );
    let update = s.fake.wait("chat.update", 1).await.remove(0);
    assert_eq!(update.body["ts"], "1700000000.000000");
    let blocks = update.body["blocks"].to_string();
    assert!(blocks.contains("approved by alice"), "{blocks}");
    assert!(
        !blocks.contains("\"actions\""),
        "the buttons are gone: {blocks}"
    );

    let evidence = s.accepted_review().evidence;
    assert!(format!("{evidence:?}").contains("UALICE"), "{evidence:?}");
}

#[tokio::test]
async fn slacks_documented_signing_example_verifies() {
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    let secret = SigningSecret::new("8f742231b10e8888abcd99yyyzzz85a5");
    assert_eq!(secret.sign("1531420618", body.as_bytes()), expected);
    secret
        .verify(
            Some("1531420618"),
            Some(expected),
            body.as_bytes(),
            1531420618 + 299,
        )
        .unwrap();
    assert!(
        secret
            .verify(
                Some("1531420618"),
                Some(expected),
                body.as_bytes(),
                1531420618 + 301
            )
            .is_err()
    );
    let mut flipped = expected.to_owned();
    // The last hex digit changed (...b503 to ...b504).
    flipped.replace_range(66.., "4");
    assert!(
        secret
            .verify(
                Some("1531420618"),
                Some(&flipped),
                body.as_bytes(),
                1531420618
            )
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_the_body_is_read() {
    let s = setup().await;
    let payload = json!({ "type": "block_actions", "user": { "id": "UALICE" }, "actions": [] });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let ts = now().to_string();
    let good = SigningSecret::new(SECRET).sign(&ts, body.as_bytes());
    let wrong = SigningSecret::new("another-secret").sign(&ts, body.as_bytes());
    let unauthorized = StatusCode::UNAUTHORIZED;
    assert_eq!(
        s.post_raw(body.clone().into(), None, Some(good.clone()))
            .await,
        unauthorized,
        "no timestamp"
    );
    assert_eq!(
        s.post_raw(body.clone().into(), Some(ts.clone()), None)
            .await,
        unauthorized,
        "no signature"
    );
    assert_eq!(
        s.post_raw(body.clone().into(), Some(ts.clone()), Some(wrong))
            .await,
        unauthorized,
        "wrong secret"
    );
    assert_eq!(
        s.post_raw(body.clone().into(), Some(ts.clone()), Some("v0=zz".into()))
            .await,
        unauthorized,
        "malformed"
    );
    for stale in [now() - 301, now() + 301] {
        let t = stale.to_string();
        let sig = SigningSecret::new(SECRET).sign(&t, body.as_bytes());
        assert_eq!(
            s.post_raw(body.clone().into(), Some(t), Some(sig)).await,
            unauthorized,
            "stale or future"
        );
    }
    let tampered = body.replace("UALICE", "UBOB");
    assert_eq!(
        s.post_raw(tampered.into(), Some(ts.clone()), Some(good))
            .await,
        unauthorized,
        "tampered"
    );

    let big = vec![b'a'; approvals_backends::slack::MAX_BODY + 1];
    let sig = SigningSecret::new(SECRET).sign(&ts, &big);
    assert_eq!(
        s.post_raw(big, Some(ts.clone()), Some(sig)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let not_json = "payload=%7Bnot+json";
    let sig = SigningSecret::new(SECRET).sign(&ts, not_json.as_bytes());
    assert_eq!(
        s.post_raw(not_json.into(), Some(ts.clone()), Some(sig))
            .await,
        StatusCode::BAD_REQUEST
    );
    let no_payload = "token=abc";
    let sig = SigningSecret::new(SECRET).sign(&ts, no_payload.as_bytes());
    assert_eq!(
        s.post_raw(no_payload.into(), Some(ts), Some(sig)).await,
        StatusCode::BAD_REQUEST
    );
    assert!(s.audit.records().is_empty(), "nothing was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_clicks_get_an_ephemeral_reply_and_the_review_counts_once() {
    let s = setup().await;
    let (call, posted) = s.call().await;

    // Someone Slack knows but the directory does not.
    assert_eq!(
        s.send(&click(&posted, "USTRANGER", "approvals.approve"))
            .await,
        StatusCode::OK
    );
    let e = s.fake.wait("chat.postEphemeral", 1).await;
    assert_eq!(e[0].body["user"], "USTRANGER");
    assert!(
        e[0].body["text"]
            .as_str()
            .unwrap()
            .contains("not in the approvers directory")
    );
    s.audit
        .wait_for(|r| {
            r.iter().any(|r| {
                matches!(&r.event.kind,
                approvals_core::EventKind::ReviewUnauthenticated { claimed: Some(c), .. }
                    if c == "slack:USTRANGER")
            })
        })
        .await;

    // dana is who the agent acts for: refused, audited, told why.
    assert_eq!(
        s.send(&click(&posted, "UDANA", "approvals.approve")).await,
        StatusCode::OK
    );
    let e = s.fake.wait("chat.postEphemeral", 2).await;
    assert_eq!(e[1].body["user"], "UDANA");
    assert!(
        e[1].body["text"].as_str().unwrap().contains("not recorded"),
        "{}",
        e[1].body
    );
    s.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "review_refused"))
        .await;

    // An unknown action id is acknowledged and ignored.
    assert_eq!(
        s.send(
            &json!({ "type": "block_actions", "user": { "id": "UALICE" }, "channel": { "id": "C" },
            "actions": [{ "action_id": "someone_elses_button", "value": "x" }] })
        )
        .await,
        StatusCode::OK
    );

    // alice approves; the same click delivered again records nothing more.
    let approve = click(&posted, "UALICE", "approvals.approve");
    assert_eq!(s.send(&approve).await, StatusCode::OK);
    call.await.unwrap().unwrap();
    assert_eq!(s.send(&approve).await, StatusCode::OK);
    let e = s.fake.wait("chat.postEphemeral", 3).await;
    assert_eq!(e[2].body["user"], "UALICE");
    assert!(
        e[2].body["text"].as_str().unwrap().contains("already"),
        "{}",
        e[2].body
    );
    let accepted = s
        .audit
        .records()
        .iter()
        .filter(|r| r.event.name() == "review_accepted")
        .count();
    assert_eq!(
        accepted, 1,
        "one review, however often Slack delivers the click"
    );

    // A click for a request that does not exist.
    let mut unknown = approve.clone();
    unknown["actions"][0]["value"] = json!(format!(
        "{}:{}",
        approvals_core::RequestId::generate(),
        "00".repeat(32)
    ));
    assert_eq!(s.send(&unknown).await, StatusCode::OK);
    let e = s.fake.wait("chat.postEphemeral", 4).await;
    assert!(
        e[3].body["text"]
            .as_str()
            .unwrap()
            .contains("no such approval request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_asks_for_a_reason_and_the_call_is_denied_with_it() {
    let s = setup().await;
    let (call, posted) = s.call().await;
    assert_eq!(
        s.send(&click(&posted, "UBOB", "approvals.deny")).await,
        StatusCode::OK
    );
    let view = s.fake.wait("views.open", 1).await.remove(0);
    assert_eq!(view.body["trigger_id"], "12345.98765.abcd");
    let modal = &view.body["view"];
    assert_eq!(modal["callback_id"], "approvals.deny_reason");
    let submission = json!({
        "type": "view_submission",
        "user": { "id": "UBOB" },
        "team": { "id": "T1" },
        "view": {
            "callback_id": modal["callback_id"],
            "private_metadata": modal["private_metadata"],
            "state": { "values": { "reason": { "reason": { "type": "plain_text_input", "value": "not before the audit" } } } }
        }
    });
    assert_eq!(s.send(&submission).await, StatusCode::OK);
    match call.await.unwrap() {
        Err(Error::Denied(d)) => assert_eq!(d.reason.as_deref(), Some("not before the audit")),
        other => panic!("expected a denial, got {other:?}"),
    }
    let update = s.fake.wait("chat.update", 1).await.remove(0);
    assert!(
        update.body["blocks"]
            .to_string()
            .contains("denied by bob: not before the audit")
    );
}

/// Issue 21: "Request changes…" asks what to change; the call is sent back with it, and
/// the message shows the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_changes_asks_what_to_change_and_the_call_is_sent_back() {
    let s = setup().await;
    let (call, posted) = s.call().await;
    let buttons = posted.body["blocks"].to_string();
    assert!(buttons.contains("approvals.request_changes"), "{buttons}");
    assert_eq!(
        s.send(&click(&posted, "UBOB", "approvals.request_changes"))
            .await,
        StatusCode::OK
    );
    let view = s.fake.wait("views.open", 1).await.remove(0);
    let modal = &view.body["view"];
    assert_eq!(modal["callback_id"], "approvals.changes_message");
    let submission = json!({
        "type": "view_submission",
        "user": { "id": "UBOB" },
        "team": { "id": "T1" },
        "view": {
            "callback_id": modal["callback_id"],
            "private_metadata": modal["private_metadata"],
            "state": { "values": { "reason": { "reason": { "type": "plain_text_input", "value": "500 rows, not 50,000" } } } }
        }
    });
    assert_eq!(s.send(&submission).await, StatusCode::OK);
    match call.await.unwrap() {
        Err(Error::ChangesRequested { by, message, .. }) => {
            assert_eq!(
                (by.as_str(), message.as_str()),
                ("bob", "500 rows, not 50,000")
            );
        }
        other => panic!("expected the call sent back, got {other:?}"),
    }
    let update = s.fake.wait("chat.update", 1).await.remove(0);
    assert!(
        update.body["blocks"]
            .to_string()
            .contains("changes requested by bob: 500 rows, not 50,000"),
        "{}",
        update.body["blocks"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_api_client_retries_when_rate_limited_and_surfaces_errors() {
    let (fake, url) = Fake::start().await;
    let client = SlackClient::new(TOKEN).base_url(&url).max_retries(2);
    fake.throttle.store(2, std::sync::atomic::Ordering::SeqCst);
    let posted = client.post_message("C1", "hi", None, None).await.unwrap();
    assert_eq!(posted.channel, "C1");
    fake.throttle.store(3, std::sync::atomic::Ordering::SeqCst);
    let err = client
        .post_message("C1", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "slack chat.postMessage: rate limited after 3 attempts"
    );
    fake.missing.lock().unwrap().insert("CGONE".into());
    let err = client
        .post_message("CGONE", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "slack chat.postMessage: channel_not_found");
    let bad_token = SlackClient::new("xoxb-wrong").base_url(&url);
    let err = bad_token
        .post_message("C1", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "slack chat.postMessage: not_authed");
    assert!(
        !format!("{err:?}{client:?}").contains("xoxb"),
        "no token in errors or Debug"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_when_the_request_is_made_fails_the_call_closed() {
    let s = setup().await;
    s.fake.missing.lock().unwrap().insert("CAPPROVALS".into());
    let (action, context) = common::export_call();
    let err = s
        .gate
        .authorize(action, context, CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Delivery { .. }), "{err}");
    assert!(err.to_string().contains("channel_not_found"), "{err}");
    assert!(
        s.gate.pending().await.unwrap().is_empty(),
        "nothing is left open, nothing approved"
    );
    assert_eq!(s.fake.count("chat.update"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_with_if_undelivered_wait_leaves_the_request_on_the_other_channels() {
    let (mock, handle) = approvals_backends::mock::MockApprover::new();
    let s = setup_with(|b| {
        b.policy(
            CodePolicy::new().require(
                "export",
                Requirement::new("one-data-owner")
                    .factor(Factor::group("data-owners", 1))
                    .if_undelivered(IfUndelivered::Wait),
            ),
        )
        .approver(mock)
    })
    .await;
    s.fake.missing.lock().unwrap().insert("CAPPROVALS".into());
    let gate = s.gate.clone();
    let call = tokio::spawn(async move {
        let (action, context) = common::export_call();
        let permit = gate
            .authorize(action, context, CallOptions::default())
            .await?;
        permit.finish(Ok(())).await;
        Ok::<_, Error>(())
    });
    // The other channel (the mock, standing in for the console) got it; Slack did not.
    let req = handle.next().await.expect("delivered on the other channel");
    let failed: Vec<_> = s
        .audit
        .records()
        .into_iter()
        .filter_map(|r| match r.event.kind {
            approvals_core::EventKind::NotifyFailed { channel, error } => Some((channel, error)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "slack");
    assert!(failed[0].1.contains("channel_not_found"), "{}", failed[0].1);
    req.approve_as("alice").await.unwrap();
    call.await.unwrap().unwrap();
    assert_eq!(
        s.fake.count("chat.update"),
        0,
        "no Slack message exists to update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_after_the_request_expired_is_refused_and_audited() {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let s = setup_with(|b| b.clock(clock.clone())).await;
    let (call, posted) = s.call().await;
    // Expire it once the delivery is recorded (a decision racing the delivery is shown by
    // the delivery itself: `tests/delivery.rs`).
    s.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "notified"))
        .await;
    clock.advance(Duration::from_secs(601));
    s.gate.run_due().await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    // The message now says expired and has no buttons.
    let updates = s.fake.wait("chat.update", 1).await;
    let shown = updates[0].body.to_string();
    assert!(shown.to_lowercase().contains("expired"), "{shown}");
    assert!(
        !shown.contains("approvals.approve"),
        "buttons removed: {shown}"
    );

    // A reviewer who still had the old message open clicks Approve.
    assert_eq!(
        s.send(&click(&posted, "UALICE", "approvals.approve")).await,
        StatusCode::OK
    );
    let e = s.fake.wait("chat.postEphemeral", 1).await;
    assert_eq!(e[0].body["user"], "UALICE");
    let text = e[0].body["text"].as_str().unwrap();
    assert!(text.contains("expired"), "{text}");
    s.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "review_refused"))
        .await;
    assert!(
        !s.audit
            .records()
            .iter()
            .any(|r| r.event.name() == "review_accepted"),
        "nothing counts after the expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_reconnects_when_slack_rotates_and_acknowledges_a_click_that_approves() {
    let s = setup().await;
    let app_token = SlackClient::new(TOKEN).base_url(&s.api_url);
    let socket = tokio::spawn(
        approvals_backends::slack::SlackSocketMode::new(s.interactions.clone(), app_token).run(),
    );
    let (call, posted) = s.call().await;
    s.fake.envelope.send_replace(Some(json!({
        "envelope_id": "57d6a792-4d35-4d0b-b6aa-3361493e1caf",
        "type": "interactive",
        "accepts_response_payload": false,
        "payload": click(&posted, "UALICE", "approvals.approve"),
    })));
    // A bound on failure only (the request would otherwise wait out its 10 minutes).
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the click over the socket approves the call")
        .unwrap()
        .unwrap();
    let mut acks = s.fake.acks.subscribe();
    let acks = acks.wait_for(|a| !a.is_empty()).await.unwrap().clone();
    assert_eq!(
        acks[0],
        json!({ "envelope_id": "57d6a792-4d35-4d0b-b6aa-3361493e1caf" })
    );
    assert_eq!(
        s.fake.connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a new connection after Slack's disconnect"
    );
    socket.abort();
}

/// Makes a deferred request on a gate whose only channel is `slack` (direct messages on)
/// over `directory`; returns where Slack was asked to post it once `n` posts arrived.
async fn direct_messages(
    fake: &Fake,
    directory: impl FnOnce(GateBuilder) -> GateBuilder,
    slack: impl FnOnce(SlackApprover) -> SlackApprover,
    n: usize,
) -> BTreeSet<String> {
    let client = SlackClient::new(TOKEN).base_url(fake.api_url());
    let gate = directory(Gate::builder())
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .approver(slack(SlackApprover::new(client).direct_messages(true)))
        .build()
        .unwrap();
    let (action, context) = common::export_call();
    let options = CallOptions {
        defer: true,
        ..CallOptions::default()
    };
    let err = gate.authorize(action, context, options).await.unwrap_err();
    assert!(matches!(err, Error::Pending { .. }), "{err}");
    let to = fake
        .wait("chat.postMessage", n)
        .await
        .iter()
        .map(|c| c.body["channel"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fake.count("chat.postMessage"), n, "no more posts than that");
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_go_to_eligible_reviewers_only() {
    let (fake, _) = Fake::start().await;
    let mut erin = person("erin", "UERIN");
    erin.slack = None; // no Slack id: nothing to send to
    let directory = |b: GateBuilder| {
        b.directory(
            StaticDirectory::new()
                .group("data-owners", ["alice", "bob", "dana", "erin"])
                .person(person("alice", "UALICE"))
                .person(person("bob", "UBOB"))
                .person(person("dana", "UDANA"))
                .person(erin),
        )
    };
    let to = direct_messages(&fake, directory, |s| s, 2).await;
    // dana is who the agent acts for: she is not asked.
    assert_eq!(to, BTreeSet::from(["UALICE".to_owned(), "UBOB".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_carrying_another_digest_is_refused_and_audited() {
    let s = setup().await;
    let (call, posted) = s.call().await;
    let mut stale = click(&posted, "UALICE", "approvals.approve");
    let value = stale["actions"][0]["value"].as_str().unwrap().to_owned();
    let (id, _) = value.split_once(':').unwrap();
    // As if the message showed an earlier version of the call.
    stale["actions"][0]["value"] = json!(format!("{id}:{}", "ab".repeat(32)));
    assert_eq!(s.send(&stale).await, StatusCode::OK);
    let e = s.fake.wait("chat.postEphemeral", 1).await;
    assert!(
        e[0].body["text"].as_str().unwrap().contains("not recorded"),
        "{}",
        e[0].body
    );
    s.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "review_refused"))
        .await;
    assert!(!call.is_finished(), "the call still waits");
    assert_eq!(
        s.send(&click(&posted, "UALICE", "approvals.approve")).await,
        StatusCode::OK
    );
    call.await.unwrap().unwrap();
}

impl Setup {
    /// Serves the same endpoint opted in to matching Slack users by email; later clicks go
    /// there.
    async fn match_users_by_email(&mut self) {
        let app = self
            .interactions
            .clone()
            .match_users_by_email(true)
            .router();
        self.endpoint = format!("{}/slack/interactions", common::serve(app).await);
    }

    /// Sends `user`'s approve click; returns the ephemeral reply, the `n`th this test saw.
    async fn refused(&self, posted: &Call, user: &str, n: usize) -> String {
        assert_eq!(
            self.send(&click(posted, user, "approvals.approve")).await,
            StatusCode::OK
        );
        let e = self.fake.wait("chat.postEphemeral", n).await;
        assert_eq!(e[n - 1].body["user"], user);
        e[n - 1].body["text"].as_str().unwrap().to_owned()
    }
}

/// data-owners who are in the directory by email only (erin, gina), or by email and
/// another Slack id (frank).
fn by_email(b: GateBuilder) -> GateBuilder {
    b.directory(
        StaticDirectory::new()
            .group("data-owners", ["alice", "dana", "erin", "frank", "gina"])
            .person(person("alice", "UALICE"))
            .person(person("dana", "UDANA"))
            .person(Person::new("erin", PrincipalKind::Human).email("Erin@Example.com"))
            .person(person("frank", "UFRANK1").email("frank@example.com"))
            .person(Person::new("gina", PrincipalKind::Human).email("gina@example.com")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_matching_is_off_unless_opted_in_and_then_trusts_full_members_only() {
    let mut s = setup_with(by_email).await;
    let f = &s.fake;
    f.add_user("UERIN", "T1", "erin@example.com", json!({}));
    f.add_user(
        "UGUEST",
        "T1",
        "gina@example.com",
        json!({ "is_restricted": true }),
    );
    f.add_user("UOTHERORG", "T2", "erin@example.com", json!({}));
    f.add_user(
        "UUNCONFIRMED",
        "T1",
        "gina@example.com",
        json!({ "is_email_confirmed": false }),
    );
    f.add_user(
        "UGONE",
        "T1",
        "gina@example.com",
        json!({ "deleted": true }),
    );
    f.add_user("UFRANK2", "T1", "frank@example.com", json!({}));
    f.add_user("UNOBODY", "T1", "nobody@example.com", json!({}));
    let (call, posted) = s.call().await;

    // Not opted in: the address is never looked at.
    let reply = s.refused(&posted, "UERIN", 1).await;
    assert!(reply.contains("not in the approvers directory"), "{reply}");
    assert_eq!(s.fake.count("users.info"), 0, "no lookup unless opted in");

    s.match_users_by_email().await;
    let cases = [
        ("UGUEST", "guest, bot and deactivated accounts"),
        ("UGONE", "guest, bot and deactivated accounts"),
        ("UOTHERORG", "another workspace"),
        ("UUNCONFIRMED", "not confirmed"),
        ("UFRANK2", "another Slack account for that address"),
        ("UNOBODY", "no one in it has the account's email address"),
        (
            "UNKNOWN",
            "Slack could not say who you are (slack users.info: user_not_found)",
        ),
    ];
    for (n, (user, why)) in cases.iter().enumerate() {
        let reply = s.refused(&posted, user, n + 2).await;
        assert!(reply.contains(why), "{user}: {reply}");
    }
    // Each refused click is in the audit trail, with who Slack says clicked.
    let audit = s.audit.clone();
    audit
        .wait_for(|r| {
            let refused: BTreeSet<String> = r
                .iter()
                .filter_map(|r| match &r.event.kind {
                    approvals_core::EventKind::ReviewUnauthenticated { claimed, .. } => {
                        claimed.clone()
                    }
                    _ => None,
                })
                .collect();
            cases
                .iter()
                .all(|(u, _)| refused.contains(&format!("slack:{u}")))
        })
        .await;
    assert!(!call.is_finished(), "no refused click counted");

    // A full member of the workspace whose address is erin's (case aside): erin approves.
    assert_eq!(
        s.send(&click(&posted, "UERIN", "approvals.approve")).await,
        StatusCode::OK
    );
    call.await.unwrap().unwrap();
    let review = s.accepted_review();
    assert_eq!(review.reviewer.id, "erin");
    let approvals_core::Evidence::Other { details, .. } = review.evidence else {
        panic!("{:?}", review.evidence)
    };
    assert_eq!(details["user_id"], "UERIN");
    assert_eq!(
        details["matched_by"],
        json!({ "email": "erin@example.com" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_known_by_email_only_get_direct_messages_when_opted_in() {
    let (fake, _) = Fake::start().await;
    fake.add_user("UERIN", "T1", "erin@example.com", json!({}));
    fake.add_user(
        "UGUEST",
        "T1",
        "gina@example.com",
        json!({ "is_restricted": true }),
    );
    let to = direct_messages(&fake, by_email, |s| s.find_reviewers_by_email(true), 3).await;
    // alice and frank by Slack id, erin found by her address; gina is a guest, dana is who
    // the agent acts for.
    assert_eq!(
        to,
        BTreeSet::from(["UALICE", "UFRANK1", "UERIN"].map(String::from))
    );
    let looked_up: BTreeSet<String> = fake
        .wait("users.lookupByEmail", 2)
        .await
        .iter()
        .map(|c| c.body["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        looked_up,
        BTreeSet::from(["Erin@Example.com".to_owned(), "gina@example.com".to_owned()])
    );
}

/// Issue 14: a Slack user id was matched without its workspace. Pinned to one workspace,
/// the same user id clicking from another (another install of the app, a Slack Connect
/// organisation) is nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_from_another_workspace_is_nobody_when_the_workspace_is_pinned() {
    let mut s = setup().await;
    let app = s.interactions.clone().workspace("T1").router();
    s.endpoint = format!("{}/slack/interactions", common::serve(app).await);
    let (call, posted) = s.call().await;
    let mut foreign = click(&posted, "UALICE", "approvals.approve");
    foreign["team"]["id"] = json!("T2");
    foreign["user"]["team_id"] = json!("T2");
    assert_eq!(s.send(&foreign).await, StatusCode::OK);
    let e = s.fake.wait("chat.postEphemeral", 1).await;
    let text = e[0].body["text"].as_str().unwrap();
    assert!(text.contains("only from the workspace T1"), "{text}");
    assert!(
        s.gate.pending().await.unwrap().len() == 1,
        "nothing counted"
    );
    // The same user id from the pinned workspace is alice.
    assert_eq!(
        s.send(&click(&posted, "UALICE", "approvals.approve")).await,
        StatusCode::OK
    );
    call.await.unwrap().unwrap();
    assert_eq!(s.accepted_review().reviewer.id, "alice");
}

/// The `view_submission` of the edit modal `modal` by `user`, with `limit` typed.
fn edit_submission(modal: &Value, user: &str, limit: &str, comment: &str) -> Value {
    json!({
        "type": "view_submission",
        "user": { "id": user },
        "team": { "id": "T1" },
        "view": {
            "callback_id": modal["callback_id"],
            "private_metadata": modal["private_metadata"],
            "state": { "values": {
                "set:limit": { "value": { "type": "plain_text_input", "value": limit } },
                "reason": { "reason": { "type": "plain_text_input", "value": comment } }
            } }
        }
    })
}

/// Issue 21: "Approve with changes…" opens a modal of the editable arguments' values. An
/// edit into a denied call and an edit by the person the call is for are refused, each in
/// an ephemeral reply, and the request stays open; alice's edit is a new call, posted with
/// its own buttons, that needs a second data owner; bob approves it; the call runs once
/// with the new limit; the original's message says it was edited; the signed log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_with_changes_makes_a_new_call_that_a_quorum_approves_and_it_runs_once() {
    let log = common::SignedLog::new();
    let s = setup_with(|b| b.policy(common::limits()).audit(log.sink())).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let call = common::spawn_editable_call(&s.gate, 50_000, runs.clone());
    let posted = s.fake.wait("chat.postMessage", 1).await.remove(0);
    let id = s.gate.pending().await.unwrap()[0].id;
    assert_eq!(
        button(&posted, "approvals.edit")["text"]["text"],
        "Approve with changes…"
    );

    assert_eq!(
        s.send(&click(&posted, "UALICE", "approvals.edit")).await,
        StatusCode::OK
    );
    let view = s.fake.wait("views.open", 1).await.remove(0);
    let modal = view.body["view"].clone();
    assert_eq!(modal["callback_id"], "approvals.edit_values");
    let input = modal["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["block_id"] == "set:limit")
        .unwrap_or_else(|| panic!("no input for limit in {modal}"));
    assert_eq!(input["element"]["initial_value"], "50000");

    // Refused: into a denied call; by dana, for whom the call is made; a value of another kind.
    for (n, (user, limit, says)) in [
        ("UALICE", "2000000", "never more than a million rows"),
        ("UDANA", "500", "dana"),
        ("UALICE", "many", "is not a value of that kind"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            s.send(&edit_submission(&modal, user, limit, "")).await,
            StatusCode::OK
        );
        let reply = s.fake.wait("chat.postEphemeral", n + 1).await.remove(n);
        assert_eq!(reply.body["user"], user);
        let text = reply.body["text"].as_str().unwrap();
        assert!(
            text.contains("not recorded") && text.contains(says),
            "{text}"
        );
        let open = s.gate.pending().await.unwrap();
        assert_eq!((open.len(), open[0].id), (1, id), "the request stays open");
    }

    assert_eq!(
        s.send(&edit_submission(&modal, "UALICE", "20000", "20k is plenty"))
            .await,
        StatusCode::OK
    );
    // The edit is posted as a request of its own, waiting for a second data owner.
    let is_request = |c: &Call| c.body["thread_ts"].is_null() && c.body["blocks"].is_array();
    let edit_post = s
        .fake
        .wait_matching("chat.postMessage", 2, is_request)
        .await
        .remove(1);
    let shown = edit_post.body["blocks"].to_string();
    assert!(
        shown.contains("20000") && shown.contains("1 more from data-owners"),
        "{shown}"
    );
    // The original's message now says what became of it.
    s.fake
        .wait_matching("chat.update", 1, |c| {
            c.body["blocks"]
                .to_string()
                .contains("edited by alice (limit: 50000 → 20000)")
        })
        .await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    assert_eq!(
        s.send(&click(&edit_post, "UBOB", "approvals.approve"))
            .await,
        StatusCode::OK
    );
    common::ran_once_with(call, &runs, 20_000).await;

    let records = log.verified().await;
    let edit = s.gate.request(id).await.unwrap().unwrap();
    let Some(approvals_core::Decision::Edited { edit, .. }) = edit.decision().cloned() else {
        panic!("the original is decided as edited");
    };
    let names = |rid| common::names_of(&records, rid);
    assert!(!names(id).contains(&"started"), "the original never ran");
    assert_eq!(
        names(id).iter().filter(|n| **n == "review_refused").count(),
        2
    );
    let accepted: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.event.kind {
            approvals_core::EventKind::ReviewAccepted { review } if review.request_id == edit => {
                Some((review.reviewer.id.as_str(), review.comment.as_deref()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(accepted, [("alice", Some("20k is plenty")), ("bob", None)]);
    // Delivery is recorded when Slack has answered, which may be after bob clicked: the
    // order of the rest is the rule.
    let done: Vec<_> = names(edit)
        .into_iter()
        .filter(|n| *n != "notified")
        .collect();
    assert!(
        done.ends_with(&["decided", "started", "finished"]),
        "{done:?}"
    );
}

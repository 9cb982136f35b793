//! The requester API over loopback: every route, role and bad input; the same rules, audit
//! records and run-once guarantee as an in-process call.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use approvals_backends::http::{ApprovalService, OnBehalfOf, TokenHash, Tokens, WebhookSecret};
use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_core::{CodePolicy, Factor, Gate, Principal, Requirement, StaticDirectory, Verdict};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOT: &str = "apv_requester-ops-bot";
const CI: &str = "apv_requester-ci";
const ALICE: &str = "apv_reviewer-alice";
const BOB: &str = "apv_reviewer-bob";

struct Api {
    base: String,
    http: reqwest::Client,
    audit: Arc<MemoryAudit>,
}

/// `deploy` needs one of sre (alice, bob); `read` is allowed; `drop` is denied. ops-bot may
/// act for dana; ci for nobody.
async fn start_with(f: impl FnOnce(ApprovalService) -> ApprovalService) -> Api {
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
                .allow("read")
                .deny("drop", "agents never drop tables")
                // One sre up to 1,000 rows, two above, never above a million.
                .rule("export", |action, _| {
                    let limit = action.args["limit"].as_u64().unwrap_or(u64::MAX);
                    let sre = |n| {
                        Verdict::require(
                            Requirement::new(if n == 1 { "one-sre" } else { "two-sre" })
                                .factor(Factor::group("sre", n))
                                .expires_in(Duration::from_secs(600)),
                        )
                    };
                    Ok(match limit {
                        0..=1_000 => sre(1),
                        1_001..=1_000_000 => sre(2),
                        _ => Verdict::deny("too-many-rows", "never more than a million rows"),
                    })
                })
                .rule("quick", |_, _| {
                    Ok(Verdict::require(
                        Requirement::new("quick")
                            .factor(Factor::group("sre", 1))
                            .expires_in(Duration::from_millis(300)),
                    ))
                }),
        )
        .directory(
            StaticDirectory::new()
                .person(approvals_core::Person::new(
                    "dana",
                    approvals_core::PrincipalKind::Human,
                ))
                .group("sre", ["alice", "bob"]),
        )
        .store(MemoryStore::new())
        .audit(audit.clone())
        .build()
        .unwrap();
    let tokens = Tokens::new()
        .human(TokenHash::of(ALICE), "alice")
        .human(TokenHash::of(BOB), "bob")
        .requester(
            TokenHash::of(BOT),
            Principal::agent("ops-bot"),
            OnBehalfOf::from_list(["dana"]),
        )
        .requester(
            TokenHash::of(CI),
            Principal::service("ci"),
            OnBehalfOf::Nobody,
        );
    let service = ApprovalService::new(gate)
        .tokens(tokens)
        .public_url("https://approvals.example.com")
        .max_wait(Duration::from_secs(5));
    let base = common::serve(f(service).router()).await;
    Api {
        base,
        http: reqwest::Client::new(),
        audit,
    }
}

async fn start() -> Api {
    start_with(|s| s).await
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ask(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, "/api/v1/requests", token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    async fn approve(&self, id: &str, digest: &str) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/reviews"),
            ALICE,
            Some(json!({ "verdict": "approve", "digest": digest })),
        )
        .await
    }

    async fn deny(&self, id: &str, digest: &str) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/reviews"),
            ALICE,
            Some(json!({ "verdict": "deny", "digest": digest, "comment": "not today" })),
        )
        .await
    }

    async fn post(
        &self,
        id: &str,
        what: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/{what}"),
            token,
            body,
        )
        .await
    }

    fn events(&self) -> Vec<&'static str> {
        self.audit
            .records()
            .iter()
            .map(|r| r.event.name())
            .collect()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

fn deploy() -> Value {
    json!({ "action": "deploy-web", "policy": "deploy", "args": { "env": "prod", "replicas": 3 },
            "on_behalf_of": "dana", "reason": "release 1.4", "trigger": "ci run 88",
            "labels": { "run": "88" } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_wait_start_run_once_finish() {
    let api = start().await;
    let (status, v) = api.ask(BOT, deploy()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["created"], true);
    assert_eq!(v["still_needed"], "1 more from sre");
    assert_eq!(v["may_approve"], json!(["alice", "bob"]));
    assert_eq!(v["request"]["context"]["requester"]["id"], "ops-bot");
    assert_eq!(v["request"]["context"]["on_behalf_of"]["id"], "dana");
    assert!(v["expires_in_secs"].as_u64().unwrap() > 590);
    let id = v["request"]["id"].as_str().unwrap().to_owned();
    let digest = v["request"]["action"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        v["console_url"],
        format!("https://approvals.example.com/console/requests/{id}")
    );

    // The identical call (a re-run pipeline) joins the same request.
    let (status, again) = api.ask(BOT, deploy()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["request"]["id"], id.as_str());
    assert_eq!(again["created"], false);

    // Not approved yet: no permit.
    let (status, v) = api.post(&id, "start", BOT, None).await;
    assert_eq!((status, code(&v)), (StatusCode::CONFLICT, "not_approved"));
    assert_eq!(v["status"], "pending");

    // A long-poll is woken by the approval.
    let poll = {
        let (http, base) = (api.http.clone(), api.base.clone());
        let id = id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = http
                .get(format!("{base}/api/v1/requests/{id}?wait=30"))
                .bearer_auth(BOT)
                .send()
                .await
                .unwrap();
            (r.json::<Value>().await.unwrap(), started.elapsed())
        })
    };
    api.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "attached"))
        .await;
    let (status, v) = api.approve(&id, &digest).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (polled, waited) = common::within("the long-poll", poll).await.unwrap();
    assert_eq!(polled["status"], "approved");
    assert!(
        waited < Duration::from_secs(20),
        "woken by the approval, not the wait: {waited:?}"
    );

    let (status, v) = api.post(&id, "start", BOT, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // One permit: the second start is refused, however it is asked.
    let (status, v) = api.post(&id, "start", BOT, None).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "already_started")
    );
    let (status, v) = api.ask(BOT, deploy()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an approved, started call shows as approved: {v}"
    );
    let (status, v) = api.post(&id, "start", BOT, None).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "already_started")
    );

    let (status, v) = api
        .post(
            &id,
            "finish",
            BOT,
            Some(json!({ "ok": true, "summary": "deployed 3 replicas" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["execution"]["execution"], "finished");
    let (status, v) = api
        .post(&id, "finish", BOT, Some(json!({ "ok": true })))
        .await;
    assert_eq!((status, code(&v)), (StatusCode::CONFLICT, "not_started"));

    // Finished: the identical call asks again.
    let (status, v) = api.ask(BOT, deploy()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(v["request"]["id"], id.as_str());

    assert_eq!(
        api.events(),
        [
            "requested",
            "attached",
            "review_accepted",
            "decided",
            "started",
            "attached",
            "finished",
            "requested"
        ]
    );
    let finished = api
        .audit
        .records()
        .into_iter()
        .find(|r| r.event.name() == "finished")
        .unwrap();
    assert_eq!(finished.event.actor.as_ref().unwrap().id, "ops-bot");
    assert!(finished.to_canonical_json().contains("deployed 3 replicas"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_denied_and_decided_against() {
    let api = start().await;
    let (status, v) = api
        .ask(CI, json!({ "action": "cat", "policy": "read" }))
        .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("allowed")),
        "{v}"
    );
    assert_eq!(v["rule"], "read");

    let (status, v) = api
        .ask(
            CI,
            json!({ "action": "drop", "policy": "drop", "args": { "table": "users" } }),
        )
        .await;
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "denied"));
    assert_eq!(v["denial"]["by"]["by"], "policy");
    assert_eq!(v["denial"]["reason"], "agents never drop tables");

    // Denied by a reviewer while the requester waits: 403 with who and why.
    let (status, v) = api.ask(BOT, deploy()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = v["request"]["id"].as_str().unwrap().to_owned();
    let digest = v["request"]["action"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = {
        let mut body = deploy();
        body["wait"] = json!(30);
        let (http, base) = (api.http.clone(), api.base.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("{base}/api/v1/requests"))
                .bearer_auth(BOT)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    api.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "attached"))
        .await;
    api.deny(&id, &digest).await;
    let (status, v) = common::within("the waiting POST", waiting).await.unwrap();
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "denied"), "{v}");
    assert_eq!(v["denial"]["by"]["reviewer"]["id"], "alice");
    assert_eq!(v["denial"]["reason"], "not today");
    assert_eq!(v["request"]["status"], "denied");
    // Told once: the identical call asks again.
    let (status, v) = api.ask(BOT, deploy()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(v["request"]["id"], id.as_str());

    // Expired while the requester waits: 409.
    let (status, v) = api
        .ask(CI, json!({ "action": "x", "policy": "quick", "wait": 10 }))
        .await;
    assert_eq!((status, code(&v)), (StatusCode::CONFLICT, "expired"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_parties_and_bad_input() {
    let api = start().await;
    // A reviewer's token may not ask; a requester's may not review or sign in.
    let (status, v) = api.ask(ALICE, deploy()).await;
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "wrong_role"));
    let (_, v) = api.ask(BOT, deploy()).await;
    let id = v["request"]["id"].as_str().unwrap().to_owned();
    let digest = v["request"]["action"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/reviews"),
            BOT,
            Some(json!({ "verdict": "approve", "digest": digest })),
        )
        .await;
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "wrong_role"));
    let (status, _) = api.ask("apv_nobody", deploy()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Acting for someone the token may not name: refused and audited.
    let mut for_alice = deploy();
    for_alice["on_behalf_of"] = json!("alice");
    let (status, v) = api.ask(BOT, for_alice).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::FORBIDDEN, "on_behalf_of_not_allowed")
    );
    assert!(api.events().contains(&"call_refused"));
    let (status, v) = api.ask(CI, deploy()).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::FORBIDDEN, "on_behalf_of_not_allowed")
    );
    // Another spelling of an allowed person is that person.
    let mut spelled = deploy();
    spelled["on_behalf_of"] = json!("DANA");
    let (status, v) = api.ask(BOT, spelled).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["request"]["context"]["on_behalf_of"]["id"], "dana");

    // Another requester cannot start or finish ops-bot's call, nor read it.
    let (status, v) = api.post(&id, "start", CI, None).await;
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "not_requester"));
    let (status, _) = api.get(&format!("/api/v1/requests/{id}"), CI).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = api.get("/api/v1/requests", CI).await;
    assert_eq!(
        list["requests"],
        json!([]),
        "a requester lists its own only"
    );
    let (_, list) = api.get("/api/v1/requests", BOT).await;
    assert_eq!(list["requests"].as_array().unwrap().len(), 1);

    // Unknown policy: 400 naming the known ones.
    let (status, v) = api
        .ask(CI, json!({ "action": "x", "policy": "depoly" }))
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "unknown_policy")
    );
    assert_eq!(
        v["known_policies"],
        json!(["deploy", "drop", "export", "quick", "read"])
    );
    // Bad bodies.
    for (body, want) in [
        (
            json!({ "action": "x", "policy": "read", "args": [1, 2] }),
            "bad_args",
        ),
        (
            json!({ "action": "x", "policy": "read", "args": "limit=5" }),
            "bad_args",
        ),
        (json!({ "action": "x" }), "invalid_json"),
        (
            json!({ "action": "x", "policy": "read", "requester": "alice" }),
            "invalid_json",
        ),
        (
            json!({ "action": "x", "policy": "read", "wait": -1 }),
            "bad_wait",
        ),
        (
            json!({ "action": "x", "policy": "read", "callback_url": "https://x.example/" }),
            "callbacks_not_configured",
        ),
        (
            json!({ "action": "x", "policy": "read", "labels": { "env": 3 } }),
            "invalid_json",
        ),
        (
            json!({ "action": "x", "policy": "read", "reason": "r".repeat(5000) }),
            "bad_context",
        ),
    ] {
        let (status, v) = api.ask(CI, body.clone()).await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::BAD_REQUEST, want),
            "{body}"
        );
    }
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let (status, v) = api
        .ask(
            CI,
            json!({ "action": "x", "policy": "read", "args": { "deep": deep } }),
        )
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_args"),
        "{v}"
    );
    let (status, v) = api
        .ask(
            CI,
            json!({ "action": "x", "policy": "read", "args": { "blob": "x".repeat(70_000) } }),
        )
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    // A wait beyond the cap is capped, not refused: answered pending after ~5 s.
    let started = Instant::now();
    let mut body = deploy();
    body["wait"] = json!(3600);
    let (status, _) = api.ask(BOT, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(30),
        "{waited:?}"
    );

    // finish without start.
    let (status, v) = api
        .post(&id, "finish", BOT, Some(json!({ "ok": true })))
        .await;
    assert_eq!((status, code(&v)), (StatusCode::CONFLICT, "not_started"));
    let (status, v) = api
        .post(&id, "finish", BOT, Some(json!({ "done": true })))
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
}

/// The decision is POSTed to the requester's callback URL, signed per Standard Webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_is_posted_to_the_callback_signed() {
    let (secret_text, secret) = WebhookSecret::generate();
    let (tx, rx) = tokio::sync::oneshot::channel::<(axum::http::HeaderMap, axum::body::Bytes)>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send((headers, body));
                    }
                    "ok"
                }
            },
        ),
    );
    let hook = common::serve(receiver).await;
    let api = start_with(|s| s.callback_secret(WebhookSecret::parse(&secret_text).unwrap())).await;
    let mut body = deploy();
    body["callback_url"] = json!(format!("{hook}/hook"));
    let (status, v) = api.ask(BOT, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["request"]["id"].as_str().unwrap().to_owned();
    let digest = v["request"]["action"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    api.approve(&id, &digest).await;
    let (headers, bytes) = common::within("the callback", rx).await.unwrap();
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    secret
        .verify(
            h("webhook-id"),
            h("webhook-timestamp"),
            h("webhook-signature"),
            &bytes,
            now,
        )
        .expect("signed with the service's callback secret");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["type"], "approval.decided");
    assert_eq!(v["data"]["request_id"], id.as_str());
    assert_eq!(v["data"]["status"], "approved");
}

/// Issue 21: a reviewer sends the call back over the API; a requester waiting on it learns
/// what to change (409 `changes_requested`, not a denial); asking for changes without saying
/// what is refused and the request stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_sends_the_call_back_with_what_to_change() {
    let api = start().await;
    let (status, v) = api.ask(BOT, deploy()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = v["request"]["id"].as_str().unwrap().to_owned();
    let digest = v["request"]["action"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let review = |comment: Option<&str>| {
        let mut body = json!({ "verdict": "request_changes", "digest": digest });
        if let Some(c) = comment {
            body["comment"] = json!(c);
        }
        body
    };
    let reviews = format!("/api/v1/requests/{id}/reviews");

    for blank in [None, Some(""), Some("  ")] {
        let (status, v) = api
            .send(reqwest::Method::POST, &reviews, ALICE, Some(review(blank)))
            .await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::BAD_REQUEST, "reason_required"),
            "{v}"
        );
    }
    let (_, v) = api.get(&format!("/api/v1/requests/{id}"), BOT).await;
    assert_eq!(v["status"], "pending", "{v}");

    let waiting = {
        let mut body = deploy();
        body["wait"] = json!(30);
        let (http, base) = (api.http.clone(), api.base.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("{base}/api/v1/requests"))
                .bearer_auth(BOT)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    api.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "attached"))
        .await;
    let (status, v) = api
        .send(
            reqwest::Method::POST,
            &reviews,
            ALICE,
            Some(review(Some("two replicas first, then three"))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "changes_requested", "{v}");

    let (status, v) = common::within("the waiting POST", waiting).await.unwrap();
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "changes_requested"),
        "{v}"
    );
    assert_eq!(v["changes"]["by"], "alice");
    assert_eq!(v["changes"]["message"], "two replicas first, then three");
    assert!(v.get("denial").is_none(), "not a denial: {v}");
    assert_eq!(v["request"]["status"], "changes_requested");
    // Nothing may start under it.
    let (status, v) = api.post(&id, "start", BOT, None).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "not_approved"),
        "{v}"
    );
    // The changed call is a new request.
    let mut changed = deploy();
    changed["args"]["replicas"] = json!(2);
    let (status, v) = api.ask(BOT, changed).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_ne!(v["request"]["id"], id.as_str());
    let events = api.events();
    assert!(
        events
            .windows(2)
            .any(|w| w == ["review_accepted", "decided"]),
        "{events:?}"
    );
}

/// Issue 21: a reviewer approves with an argument changed over the API. The edit is a new
/// request (its own id and digest), judged afresh: raising the limit needs two of sre, and
/// the proposer is one; a requester waiting on the original is answered with the edit; the
/// original never starts; bad edits are refused with the reason and the request stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_the_call_with_an_argument_changed() {
    let api = start().await;
    let export = json!({ "action": "billing::export", "policy": "export",
                         "args": { "limit": 500, "table": "customers" }, "editable": ["limit"] });
    let (status, v) = api.ask(BOT, export.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["request"]["id"].as_str().unwrap().to_owned();
    let digest = v["request"]["action"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(v["request"]["action"]["editable"], json!(["limit"]));
    let reviews = format!("/api/v1/requests/{id}/reviews");
    let edit = |token: &'static str, verdict: &str, set: Value| {
        let body = json!({ "verdict": verdict, "digest": digest, "set": set, "comment": "edited" });
        api.send(reqwest::Method::POST, &reviews, token, Some(body))
    };

    // Refused, each with its reason; the request stays open.
    let (status, v) = edit(ALICE, "approve", json!({ "table": "staff" })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "edit_refused"),
        "{v}"
    );
    assert_eq!(
        v["error"]["message"],
        "`table` is not editable for this call (editable: limit)"
    );
    let (status, v) = edit(ALICE, "approve", json!({ "limit": "all" })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "edit_refused"),
        "{v}"
    );
    let (status, v) = edit(ALICE, "approve", json!({ "limit": 5_000_000 })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::FORBIDDEN, "edit_refused"),
        "{v}"
    );
    assert_eq!(
        v["error"]["message"],
        "the policy denies the edited call (rule `too-many-rows`): never more than a million rows"
    );
    let (status, v) = edit(ALICE, "deny", json!({ "limit": 5 })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_review"),
        "{v}"
    );
    let (_, v) = api.get(&format!("/api/v1/requests/{id}"), BOT).await;
    assert_eq!(v["status"], "pending", "{v}");

    // A requester waiting on the original is answered with the edit.
    let waiting = {
        let mut body = export.clone();
        body["wait"] = json!(30);
        let (http, base) = (api.http.clone(), api.base.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("{base}/api/v1/requests"))
                .bearer_auth(BOT)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    api.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "attached"))
        .await;
    let (status, v) = edit(ALICE, "approve", json!({ "limit": 5_000 })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let edit_id = v["request"]["id"].as_str().unwrap().to_owned();
    assert_ne!(edit_id, id);
    assert_eq!(v["status"], "pending", "5,000 rows need two of sre: {v}");
    assert_eq!(v["approved_by"], json!(["alice"]));
    assert_eq!(v["still_needed"], "1 more from sre");
    assert_eq!(
        v["request"]["action"]["args"],
        json!({ "limit": 5_000, "table": "customers" })
    );
    assert_eq!(v["request"]["edit_of"]["original"], id.as_str());
    assert_eq!(
        v["request"]["edit_of"]["changes"],
        json!([{ "arg": "limit", "from": 500, "to": 5_000 }])
    );
    let edit_digest = v["request"]["action"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(edit_digest, digest);

    let (status, v) = common::within("the waiting POST", waiting).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v["request"]["id"],
        edit_id.as_str(),
        "the answer is the edit: {v}"
    );
    let (_, v) = api.get(&format!("/api/v1/requests/{id}"), BOT).await;
    assert_eq!(
        (v["status"].as_str(), v["edited_into"].as_str()),
        (Some("edited"), Some(edit_id.as_str())),
        "{v}"
    );

    // Nothing starts under the original, nor under the edit before its second approval.
    for (which, expected) in [(&id, "not_approved"), (&edit_id, "not_approved")] {
        let (status, v) = api.post(which, "start", BOT, None).await;
        assert_eq!((status, code(&v)), (StatusCode::CONFLICT, expected), "{v}");
    }
    // alice cannot approve her own edit twice; bob's approval completes it.
    let edit_reviews = format!("/api/v1/requests/{edit_id}/reviews");
    let approve_edit = |token: &'static str| {
        let body = json!({ "verdict": "approve", "digest": edit_digest });
        api.send(reqwest::Method::POST, &edit_reviews, token, Some(body))
    };
    let (status, v) = approve_edit(ALICE).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "duplicate_review"),
        "{v}"
    );
    let (status, v) = approve_edit(BOB).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "approved", "{v}");

    // The requester asks again as it asked first, and is answered with the approved edit.
    let (status, v) = api.ask(BOT, export.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["request"]["id"], edit_id.as_str());
    assert_eq!(v["request"]["action"]["args"]["limit"], 5_000);
    let (status, v) = api.post(&edit_id, "start", BOT, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = api.post(&id, "start", BOT, None).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "not_approved"),
        "{v}"
    );
    let (status, _) = api
        .post(&edit_id, "finish", BOT, Some(json!({ "ok": true })))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Told, the identical call asks afresh.
    let (status, v) = api.ask(BOT, export).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_ne!(v["request"]["id"], id.as_str());
    assert_ne!(v["request"]["id"], edit_id.as_str());

    let started: Vec<_> = api
        .audit
        .records()
        .into_iter()
        .filter(|r| r.event.name() == "started")
        .map(|r| r.event.request_id.unwrap().to_string())
        .collect();
    assert_eq!(started, [edit_id], "only the edit ran, once");
}

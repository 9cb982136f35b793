//! The REST API over loopback: every route, each way of authenticating, each bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use approvals_backends::http::{ApprovalService, ROUTES, ReviewerTokens, TokenHash};
use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_core::signed::SignedDecision;
use approvals_core::{
    Action, CallOptions, CodePolicy, Context, Error, EventKind, Evidence, Factor, Gate,
    ManualClock, Person, Principal, PrincipalKind, RequestId, Requirement, ReviewDecision,
    StaticDirectory, Timestamp,
};
use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

const EXPIRY: Duration = Duration::from_secs(600);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn token(who: &str) -> String {
    format!("apv_test-token-of-{who}")
}

struct Api {
    base: String,
    http: reqwest::Client,
    gate: Gate,
    audit: Arc<MemoryAudit>,
    clock: Arc<ManualClock>,
}

/// data-owners: alice, bob, dana; carol is known but not eligible; alice and carol have
/// keys. ops-bot asks, for dana.
async fn start() -> Api {
    let audit = Arc::new(MemoryAudit::new());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let human = |id: &str| Person::new(id, PrincipalKind::Human);
    let gate = Gate::builder()
        .policy(
            CodePolicy::new().require(
                "export",
                Requirement::new("one-data-owner")
                    .factor(Factor::group("data-owners", 1))
                    .expires_in(EXPIRY),
            ),
        )
        .directory(
            StaticDirectory::new()
                .person(human("alice").ed25519(key(1).verifying_key()))
                .person(human("bob"))
                .person(human("carol").ed25519(key(3).verifying_key()))
                .person(human("dana").ed25519(key(4).verifying_key()))
                .group("data-owners", ["alice", "bob", "dana"]),
        )
        .store(MemoryStore::new())
        .audit(audit.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut tokens = ReviewerTokens::new();
    for who in ["alice", "bob", "carol", "dana"] {
        tokens = tokens.human(TokenHash::of(&token(who)), who);
    }
    tokens = tokens.insert(
        TokenHash::of(&token("ops-bot")),
        Principal::agent("ops-bot"),
    );
    let app = ApprovalService::new(gate.clone())
        .tokens(tokens)
        .audit_log(audit.clone())
        .router();
    let base = common::serve(app).await;
    Api {
        base,
        http: reqwest::Client::new(),
        gate,
        audit,
        clock,
    }
}

type Call = tokio::task::JoinHandle<Result<(), Error>>;

impl Api {
    /// Starts a gated call and returns it with its request id and digest, once requested.
    async fn call(&self) -> (Call, RequestId, String) {
        let call = common::spawn_call(&self.gate);
        self.audit
            .wait_for(|r| r.iter().any(|r| r.event.name() == "requested"))
            .await;
        let r = self.gate.pending().await.unwrap().remove(0);
        (call, r.id, r.action.digest.to_hex())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, who: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(w) = who {
            req = req.bearer_auth(token(w));
        }
        answer(req.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, who: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(w) = who {
            req = req.bearer_auth(token(w));
        }
        answer(req.send().await.unwrap()).await
    }

    async fn review(&self, id: RequestId, who: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/api/v1/requests/{id}/reviews"), Some(who), &body)
            .await
    }

    fn events(&self, name: &str) -> Vec<EventKind> {
        self.audit
            .records()
            .into_iter()
            .filter(|r| r.event.name() == name)
            .map(|r| r.event.kind)
            .collect()
    }

    fn signed(&self, id: RequestId, digest: &str, who: &str, seed: u8) -> SignedDecision {
        SignedDecision::sign(
            &key(seed),
            id,
            digest.parse().unwrap(),
            who,
            ReviewDecision::Approve,
            Some("signed off".into()),
            self.gate.clock().now(),
        )
    }
}

async fn answer(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_with_a_token_lists_reads_and_approves_and_the_call_completes() {
    let api = start().await;
    let (call, id, digest) = api.call().await;

    let (status, list) = api.get("/api/v1/requests", Some("alice")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list["requests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["request"]["id"], id.to_string());

    let (status, one) = api
        .get(&format!("/api/v1/requests/{id}"), Some("bob"))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["status"], "pending");
    assert_eq!(one["still_needed"], "1 more from data-owners");
    // dana is whom the agent acts for; carol is not a data owner.
    assert_eq!(one["may_approve"], json!(["alice", "bob"]));
    let action = &one["request"]["action"];
    assert_eq!(action["name"], "billing::export_customers");
    assert_eq!(action["args"]["limit"], 500);
    assert!(
        !one.to_string().contains("sk-live-123"),
        "a redacted argument never leaves as itself"
    );
    assert_eq!(one["request"]["context"]["requester"]["id"], "ops-bot");
    assert_eq!(one["request"]["context"]["on_behalf_of"]["id"], "dana");

    // Filters.
    for (query, n) in [
        ("policy=export", 1),
        ("policy=deploy", 0),
        ("action=billing::export_customers", 1),
        ("requester=someone-else", 0),
        ("reviewable=true", 1),
    ] {
        let (status, v) = api
            .get(&format!("/api/v1/requests?{query}"), Some("alice"))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
        assert_eq!(v["requests"].as_array().unwrap().len(), n, "{query}");
    }
    let (_, v) = api
        .get("/api/v1/requests?reviewable=true", Some("carol"))
        .await;
    assert_eq!(v["requests"], json!([]), "carol may not approve it");

    let (status, after) = api
        .review(
            id,
            "alice",
            json!({ "verdict": "approve", "digest": digest, "comment": "ok for the report" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["status"], "approved");
    assert_eq!(after["approved_by"], json!(["alice"]));
    call.await.unwrap().unwrap();
    let accepted = api.events("review_accepted");
    let EventKind::ReviewAccepted { review } = &accepted[0] else {
        unreachable!()
    };
    assert_eq!(review.reviewer.id, "alice");
    assert_eq!(review.comment.as_deref(), Some("ok for the report"));
    assert!(matches!(&review.evidence, Evidence::Other { channel, .. } if channel == "api"));

    // The request's records come with inclusion proofs that check out on their own.
    let (_, one) = api
        .get(&format!("/api/v1/requests/{id}"), Some("bob"))
        .await;
    check_proofs(&one["audit"], None);
    let names: Vec<String> = one["audit"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let line: Value = serde_json::from_str(r["record"].as_str().unwrap()).unwrap();
            line["event"].as_str().unwrap().to_owned()
        })
        .collect();
    for e in [
        "requested",
        "review_accepted",
        "decided",
        "started",
        "finished",
    ] {
        assert!(names.iter().any(|n| n == e), "{e} in {names:?}");
    }

    // The history holds it now; the open list does not.
    let (_, v) = api
        .get("/api/v1/requests?status=decided", Some("bob"))
        .await;
    assert_eq!(v["requests"][0]["request"]["id"], id.to_string());
    assert_eq!(v["requests"][0]["status"], "approved");
    let (_, v) = api.get("/api/v1/requests", Some("bob")).await;
    assert_eq!(v["requests"], json!([]));
    let (status, v) = api
        .get("/api/v1/requests?status=everything", Some("bob"))
        .await;
    assert_eq!((status, code(&v)), (StatusCode::BAD_REQUEST, "bad_query"));

    // Decided: further reviews conflict.
    let (status, v) = api
        .review(id, "bob", json!({ "verdict": "approve", "digest": digest }))
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "already_decided")
    );
}

/// Checks each record's leaf hash and inclusion proof with SHA-256 computed here, against the
/// proof's root and, when given, the root of a checkpoint verified with `vkey`.
fn check_proofs(audit: &Value, vkey: Option<&str>) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let size = audit["tree_size"].as_u64().unwrap();
    let root = b64(&audit["root"]);
    if let Some(vkey) = vkey {
        let verifier = approvals_core::note::NoteVerifier::from_vkey(vkey).unwrap();
        let note = audit["checkpoint"].as_str().expect("a signed checkpoint");
        let cp = approvals_core::note::Checkpoint::verify(note, &verifier).unwrap();
        assert_eq!((cp.size, cp.root.to_vec()), (size, root.clone()));
    }
    let records = audit["records"].as_array().unwrap();
    assert!(!records.is_empty());
    for r in records {
        // The record's exact line, in canonical form.
        let line = r["record"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            approvals_core::canonical::to_canonical_string(&parsed),
            line
        );
        let mut h = sha2::Sha256::new();
        h.update([0u8]);
        h.update(line.as_bytes());
        let leaf = h.finalize().to_vec();
        assert_eq!(leaf, b64(&r["leaf_hash"]));
        let seq = r["seq"].as_u64().unwrap();
        if seq >= size || audit["checkpoint"].is_null() {
            assert!(
                r["inclusion_proof"].is_null() && r["checkpoint"].is_null(),
                "after the checkpoint, or without one: no proof yet"
            );
            continue;
        }
        assert_eq!(
            r["checkpoint"], audit["checkpoint"],
            "each bundle carries it"
        );
        let proof: Vec<Vec<u8>> = r["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(b64)
            .collect();
        approvals_core::merkle::verify_inclusion(seq, size, &leaf, &proof, &root)
            .unwrap_or_else(|e| panic!("record {seq}: {e}"));
        // And a proof for another position does not pass.
        if size > 1 {
            let other = (seq + 1) % size;
            assert!(
                approvals_core::merkle::verify_inclusion(
                    other,
                    size,
                    line.as_bytes(),
                    &proof,
                    &root
                )
                .is_err()
            );
        }
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_proof_is_against_a_signed_checkpoint() {
    use approvals_backends::sql::{Database, SqlAuditOptions};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&format!("sqlite:{}", dir.path().join("a.db").display()))
        .await
        .unwrap();
    let signer = approvals_core::note::NoteSigner::generate("test.example/audit").unwrap();
    let vkey = signer.verifier().to_vkey();
    let mut options = SqlAuditOptions::new("test.example/audit", signer);
    options.checkpoint_every = 1;
    let audit = db.audit(options).await.unwrap();
    let gate = Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(StaticDirectory::new().group("data-owners", ["alice"]))
        .store_arc(db.store())
        .audit(audit)
        .build()
        .unwrap();
    let app = ApprovalService::new(gate.clone())
        .tokens(ReviewerTokens::new().human(TokenHash::of(&token("alice")), "alice"))
        .audit_log(Arc::new(db.clone()))
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let action = Action::builder("billing::export_customers", "export")
        .arg("limit", &1)
        .build()
        .unwrap();
    let deferred = CallOptions {
        defer: true,
        ..CallOptions::default()
    };
    let Err(Error::Pending { request_id }) = gate
        .authorize(action, Context::new(Principal::agent("ops-bot")), deferred)
        .await
    else {
        panic!("expected a pending request")
    };
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/requests/{request_id}"))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    check_proofs(&v["audit"], Some(&vkey));
    let first: Value =
        serde_json::from_str(v["audit"]["records"][0]["record"].as_str().unwrap()).unwrap();
    assert_eq!(first["event"], "requested");
    // Each record's bundle checks out on its own, as `approvals audit check-proof` checks a
    // file.
    let verifier = approvals_core::note::NoteVerifier::from_vkey(&vkey).unwrap();
    for r in v["audit"]["records"].as_array().unwrap() {
        let bundle: approvals_core::log::ProofBundle = serde_json::from_value(r.clone()).unwrap();
        bundle.check(&verifier).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_decision_is_kept_as_evidence_and_bad_ones_are_refused_and_audited() {
    let api = start().await;
    let (call, id, digest) = api.call().await;
    let path = format!("/api/v1/requests/{id}/reviews");

    // Signed by carol's key but claiming to be alice.
    let forged = api.signed(id, &digest, "alice", 3);
    let (status, v) = api.post(&path, None, &json!({ "signed": forged })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "bad_signature")
    );

    // Altered after signing.
    let mut altered = api.signed(id, &digest, "alice", 1);
    altered.comment = Some("something else".into());
    let (status, v) = api.post(&path, None, &json!({ "signed": altered })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "bad_signature")
    );

    // bob has no key.
    let keyless = api.signed(id, &digest, "bob", 2);
    let (status, v) = api.post(&path, None, &json!({ "signed": keyless })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "unknown_reviewer")
    );

    // Signed ten minutes ago, and ten minutes ahead.
    for shift in [-600i64, 600] {
        let at =
            Timestamp::from_unix_micros(api.gate.clock().now().unix_micros() + shift * 1_000_000);
        let stale = SignedDecision::sign(
            &key(1),
            id,
            digest.parse().unwrap(),
            "alice",
            ReviewDecision::Approve,
            None,
            at,
        );
        let (status, v) = api.post(&path, None, &json!({ "signed": stale })).await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::UNAUTHORIZED, "stale_signature"),
            "{shift}"
        );
    }
    assert_eq!(api.events("review_unauthenticated").len(), 5);
    assert!(api.events("review_accepted").is_empty());

    // The real one.
    let good = api.signed(id, &digest, "alice", 1);
    let (status, v) = api.post(&path, None, &json!({ "signed": good })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    call.await.unwrap().unwrap();
    let (status, v) = api.post(&path, None, &json!({ "signed": good })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "replayed_signature")
    );
    // The same signature spaced differently is the same signature (the replay cache once
    // keyed on the text before trimming).
    let mut respaced = good.clone();
    respaced.signature = format!("  {}\n", good.signature);
    let (status, v) = api.post(&path, None, &json!({ "signed": respaced })).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "replayed_signature")
    );

    // The audit record carries the signature; it verifies on its own, and not if altered.
    let accepted = api.events("review_accepted");
    let EventKind::ReviewAccepted { review } = &accepted[0] else {
        unreachable!()
    };
    assert_eq!(review.reviewer.id, "alice");
    assert_eq!(review.evidence.verify_signature(), Some(true));
    let Evidence::Signed {
        public_key,
        message,
        ..
    } = &review.evidence
    else {
        panic!("{:?}", review.evidence)
    };
    assert_eq!(*public_key, hex::encode(key(1).verifying_key().to_bytes()));
    assert!(message.starts_with("approvals decision v1\n"));
    assert!(message.contains(&digest));
    let mut tampered = review.evidence.clone();
    if let Evidence::Signed { message, .. } = &mut tampered {
        *message = message.replace("approve", "deny");
    }
    assert_eq!(tampered.verify_signature(), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_their_status_and_code() {
    let api = start().await;
    let (_call, id, digest) = api.call().await;
    let reviews = format!("/api/v1/requests/{id}/reviews");
    let approve = json!({ "verdict": "approve", "digest": digest });

    // Authentication.
    let (status, v) = api.get("/api/v1/requests", None).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let r = api
        .http
        .get(api.url("/api/v1/requests"))
        .bearer_auth("apv_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"approvals\""
    );
    let (status, v) = answer(r).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let (status, v) = api.post(&reviews, None, &approve).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    // Unknown and malformed ids.
    let unknown = RequestId::generate();
    let (status, v) = api
        .get(&format!("/api/v1/requests/{unknown}"), Some("alice"))
        .await;
    assert_eq!((status, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, v) = api.review(unknown, "alice", approve.clone()).await;
    assert_eq!((status, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, v) = api.get("/api/v1/requests/not-an-id", Some("alice")).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request_id")
    );
    let (status, v) = api.get("/api/v1/requests?limit=0", Some("alice")).await;
    assert_eq!((status, code(&v)), (StatusCode::BAD_REQUEST, "bad_query"));
    let (status, v) = api.get("/api/v1/requests?colour=red", Some("alice")).await;
    assert_eq!((status, code(&v)), (StatusCode::BAD_REQUEST, "bad_query"));

    // Bodies.
    let r = api
        .http
        .post(api.url(&reviews))
        .bearer_auth(token("alice"))
        .header("content-type", "application/json")
        .body("{\"verdict\": \"approve\",")
        .send()
        .await
        .unwrap();
    let (status, v) = answer(r).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 1"),
        "{v}"
    );
    let (status, v) = api
        .review(id, "alice", json!({ "verdict": "maybe", "digest": digest }))
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("maybe"),
        "{v}"
    );
    let (status, v) = api
        .review(id, "alice", json!({ "verdict": "approve" }))
        .await;
    assert_eq!((status, code(&v)), (StatusCode::BAD_REQUEST, "bad_review"));
    let (status, v) = api
        .review(id, "alice", json!({ "verdict": "deny", "digest": digest }))
        .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "reason_required")
    );
    let big = json!({ "verdict": "approve", "digest": digest, "comment": "x".repeat(70_000) });
    let (status, v) = api.review(id, "alice", big).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    // The rules: each refused, each audited.
    let (status, v) = api.review(id, "dana", approve.clone()).await;
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "self_approval"));
    let (status, v) = api.review(id, "carol", approve.clone()).await;
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "not_eligible"));
    let other = json!({ "verdict": "approve", "digest": "00".repeat(32) });
    let (status, v) = api.review(id, "bob", other).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "digest_mismatch")
    );
    assert_eq!(api.events("review_refused").len(), 3);

    // Routes that do not exist.
    let (status, v) = api.get("/api/v1/nothing-here", Some("alice")).await;
    assert_eq!((status, code(&v)), (StatusCode::NOT_FOUND, "not_found"));

    // Expired: nothing approves it.
    api.clock.advance(EXPIRY + Duration::from_secs(1));
    let (status, v) = api.review(id, "alice", approve).await;
    assert_eq!((status, code(&v)), (StatusCode::CONFLICT, "expired"));
    assert!(api.events("review_accepted").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_requesters_side_cancels() {
    let api = start().await;
    let (call, id, _) = api.call().await;
    let path = format!("/api/v1/requests/{id}/cancel");
    let (status, v) = api.post(&path, Some("alice"), &json!({})).await;
    assert_eq!((status, code(&v)), (StatusCode::FORBIDDEN, "not_requester"));
    let (status, v) = api
        .post(
            &path,
            Some("ops-bot"),
            &json!({ "reason": "the report is not needed" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Cancelled { reason, .. } if reason == "the report is not needed"),
        "{err}"
    );
    let (status, v) = api.post(&path, Some("dana"), &json!({})).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "already_decided")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let api = start().await;
    let (status, _) = api.get("/api/v1/health", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, doc) = api.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // The checked-in file is what is served.
    let file: Value = serde_json::from_str(include_str!("../src/http/openapi.json")).unwrap();
    assert_eq!(file, doc);
    // And every listed route is routed (not the JSON 404 of unknown routes, not a 405).
    let id = RequestId::generate();
    for (method, path) in ROUTES {
        let url = api.url(&path.replace("{id}", &id.to_string()));
        let req = match *method {
            "get" => api.http.get(url),
            _ => api.http.post(url).json(&json!({})),
        };
        let (status, v) = answer(req.bearer_auth(token("alice")).send().await.unwrap()).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            v["error"]["message"] != "no such route",
            "{method} {path} is not routed"
        );
    }
    // Every error code the server uses is in the document's list.
    let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .unwrap()
        .clone();
    let sources = [
        include_str!("../src/http/api.rs"),
        include_str!("../src/http/requests.rs"),
        include_str!("../src/http/error.rs"),
    ];
    for c in codes.iter().map(|c| c.as_str().unwrap()) {
        assert!(
            sources.iter().any(|s| s.contains(&format!("\"{c}\""))),
            "documented code {c} is never used"
        );
    }
    // And every code the server uses is documented.
    let mut used = 0;
    for s in sources {
        // `ApiError::bad_request("code", ..)`, `ApiError::new(StatusCode::X, "code", ..)`,
        // and the same spread over lines.
        for code in s.split("ApiError::").skip(1).filter_map(|rest| {
            let args = rest.split_once('(')?.1;
            let args: String = args.chars().filter(|c| !c.is_whitespace()).collect();
            let first = args.split(',').next()?;
            let code = if first.starts_with("StatusCode::") {
                args.split(',').nth(1)?
            } else {
                first
            };
            let code = code.strip_prefix('"')?.strip_suffix('"')?;
            code.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
                .then(|| code.to_owned())
        }) {
            assert!(
                codes.iter().any(|c| *c == code),
                "code {code} is used but not documented"
            );
            used += 1;
        }
    }
    assert!(used > 30, "the codes in the source were found ({used})");
}

/// Slack's endpoint is served by the same router as the API.
#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_mount_on_the_shared_router() {
    use approvals_backends::slack::{SigningSecret, SlackClient, SlackInteractions};
    let api = start().await;
    let slack = SlackInteractions::new(
        api.gate.clone(),
        SigningSecret::new("secret"),
        SlackClient::new("xoxb-unused").base_url("http://127.0.0.1:9"),
    );
    let app = ApprovalService::new(api.gate.clone())
        .mount(slack.router())
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // Routed to Slack's handler, which refuses an unsigned body.
    let unsigned = http
        .post(format!("{base}/slack/interactions"))
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert!(unsigned.text().await.unwrap().contains("missing header"));
}

/// Whatever arrives, every route answers with a status, never a panic or a dropped
/// connection, and the service goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_a_status_and_the_service_stays_up() {
    let api = start().await;
    let (_call, id, _) = api.call().await;
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"approve\"".to_vec(),
        b"{\"verdict\": 1}".to_vec(),
        b"{\"verdict\": \"approve\", \"digest\": \"zz\"}".to_vec(),
        b"{\"signed\": {\"request_id\": \"x\"}}".to_vec(),
        b"{\"signed\": null, \"verdict\": \"deny\", \"digest\": 5}".to_vec(),
        b"{\"reason\": [1,2,3]}".to_vec(),
        b"{\"limit\": 1e999}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        deep.into_bytes(),
        "{\"comment\": \"\u{202e}\u{0}\"}".as_bytes().to_vec(),
    ];
    let http = &api.http;
    for path in [
        format!("/api/v1/requests/{id}/reviews"),
        format!("/api/v1/requests/{id}/cancel"),
        "/api/v1/requests/%00/reviews".to_owned(),
        format!("/api/v1/requests/{}/reviews", "9".repeat(5000)),
    ] {
        for body in &bodies {
            for who in [None, Some("alice")] {
                let mut req = http
                    .post(api.url(&path))
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(w) = who {
                    req = req.bearer_auth(token(w));
                }
                let status = req
                    .send()
                    .await
                    .expect("an answer, not a dropped connection")
                    .status();
                assert!(
                    status.is_client_error(),
                    "{path} {:?} as {who:?}: {status}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                );
            }
        }
    }
    for query in ["limit=-1", "limit=99999999999999999999", "reviewable=maybe"] {
        let (status, _) = api
            .get(&format!("/api/v1/requests?{query}"), Some("alice"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    // A policy name that is not UTF-8 matches nothing.
    let (status, v) = api.get("/api/v1/requests?policy=%ff", Some("alice")).await;
    assert_eq!((status, v["requests"].clone()), (StatusCode::OK, json!([])));
    let (status, _) = api.get("/api/v1/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api.gate.pending().await.unwrap().len(),
        1,
        "nothing changed"
    );
}

/// Issue 14, hole 4: 500 unauthenticated signed decisions with a 60,000-character reviewer
/// grew the audit log by 60 MB. What is recorded is bounded, in size and in number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_attempts_are_recorded_bounded_and_coalesced() {
    let api = start().await;
    let (_call, id, digest) = api.call().await;
    let huge = "m".repeat(60_000);
    let before = api.audit.records().len();
    let mut statuses = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let signed = api.signed(id, &digest, &huge, 9);
        let (status, _) = api
            .post(
                &format!("/api/v1/requests/{id}/reviews"),
                None,
                &json!({ "signed": signed }),
            )
            .await;
        statuses.insert(status.as_u16());
    }
    assert_eq!(statuses, [401].into(), "each is refused, none is served");
    let recorded = api.events("review_unauthenticated");
    assert_eq!(
        recorded.len(),
        approvals_core::gate::UNAUTHENTICATED_PER_MINUTE as usize,
        "one by one only up to the limit per minute"
    );
    let bytes: usize = api.audit.records()[before..]
        .iter()
        .map(|r| r.to_canonical_json().len())
        .sum();
    assert!(bytes < 20_000, "the trail grew by {bytes} bytes");
    let EventKind::ReviewUnauthenticated { claimed, .. } = &recorded[0] else {
        unreachable!()
    };
    let claimed = claimed.as_deref().unwrap();
    assert!(
        claimed.chars().count() < 200,
        "claimed name cut: {} chars",
        claimed.len()
    );
    assert!(claimed.ends_with("(60000 bytes in all)"), "{claimed}");

    // A minute later the next attempt is recorded, saying how many were left out.
    api.clock.advance(Duration::from_secs(61));
    let signed = api.signed(id, &digest, "mallory", 9);
    api.post(
        &format!("/api/v1/requests/{id}/reviews"),
        None,
        &json!({ "signed": signed }),
    )
    .await;
    let recorded = api.events("review_unauthenticated");
    let Some(EventKind::ReviewUnauthenticated { suppressed, .. }) = recorded.last() else {
        unreachable!()
    };
    assert_eq!(*suppressed, 190);
}

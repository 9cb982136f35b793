//! Teams, against a fake Bot Framework on loopback (token endpoint, OpenID metadata and
//! signing keys, connector) with RSA keys generated here, and a fake Workflows webhook.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use approvals_backends::http::{ApprovalService, LinkKey, ReviewerTokens, TokenHash};
use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_backends::teams::{
    BotAuth, Connector, TeamsApprover, TeamsInvokes, TeamsWebhookApprover,
};
use approvals_core::{
    CodePolicy, Error, EventKind, Factor, Gate, GateBuilder, ManualClock, Person, PrincipalKind,
    Requirement, StaticDirectory, Timestamp,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use tokio::sync::watch;

const APP_ID: &str = "5f3c1a0e-app-id";
const CHANNEL: &str = "19:approvals@thread.tacv2";

/// An RSA key the fake Bot Framework publishes (or not).
struct Key {
    kid: String,
    private: rsa::RsaPrivateKey,
}

impl Key {
    fn generate(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            private: rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap(),
        }
    }

    fn jwk(&self, endorsements: &[&str]) -> Value {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let public = self.private.to_public_key();
        json!({
            "kty": "RSA", "use": "sig", "kid": self.kid,
            "n": b64.encode(public.n().to_bytes_be()),
            "e": b64.encode(public.e().to_bytes_be()),
            "endorsements": endorsements,
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let der = self.private.to_pkcs1_der().unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes())).unwrap()
    }
}

/// One call the fake connector received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: Value,
}

#[derive(Clone)]
struct Fake {
    base: Arc<std::sync::OnceLock<String>>,
    keys: watch::Sender<Vec<Value>>,
    key_fetches: Arc<AtomicUsize>,
    calls: watch::Sender<Vec<Call>>,
}

impl Fake {
    async fn start() -> (Self, String) {
        let f = Self {
            base: Arc::default(),
            keys: watch::channel(Vec::new()).0,
            key_fetches: Arc::default(),
            calls: watch::channel(Vec::new()).0,
        };
        let app = axum::Router::new()
            .route("/login", axum::routing::post(login))
            .route("/openid", axum::routing::get(openid))
            .route("/keys", axum::routing::get(keys))
            .route("/v3/conversations", axum::routing::post(open_chat))
            .route(
                "/v3/conversations/{conv}/activities",
                axum::routing::post(send),
            )
            .route(
                "/v3/conversations/{conv}/activities/{id}",
                axum::routing::put(update),
            )
            .route("/workflow", axum::routing::post(workflow))
            .with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        f.base.set(base.clone()).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (f, base)
    }

    fn record(&self, method: &str, path: String, body: Value) {
        self.calls.send_modify(|c| {
            c.push(Call {
                method: method.into(),
                path,
                body,
            })
        });
    }

    async fn wait(&self, method: &str, n: usize) -> Vec<Call> {
        let mut rx = self.calls.subscribe();
        let arrived = rx.wait_for(|c| c.iter().filter(|c| c.method == method).count() >= n);
        let calls = common::within(&format!("{n} calls of {method}"), arrived)
            .await
            .unwrap()
            .clone();
        calls.into_iter().filter(|c| c.method == method).collect()
    }
}

async fn login(State(f): State<Fake>, body: String) -> Json<Value> {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(get("client_id").as_deref(), Some(APP_ID));
    assert_eq!(
        get("scope").as_deref(),
        Some("https://api.botframework.com/.default")
    );
    f.record("LOGIN", "/login".into(), json!({}));
    Json(json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": "bot-access-token" }))
}

async fn openid(State(f): State<Fake>) -> Json<Value> {
    let base = f.base.get().unwrap();
    Json(
        json!({ "issuer": "https://api.botframework.com", "jwks_uri": format!("{base}/keys"),
                 "id_token_signing_alg_values_supported": ["RS256"] }),
    )
}

async fn keys(State(f): State<Fake>) -> Json<Value> {
    f.key_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "keys": *f.keys.borrow() }))
}

fn authorized(h: &HeaderMap) {
    assert_eq!(h["authorization"], "Bearer bot-access-token");
}

async fn open_chat(State(f): State<Fake>, h: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    authorized(&h);
    let user = body["members"][0]["id"].as_str().unwrap().to_owned();
    f.record("OPEN", "/v3/conversations".into(), body);
    Json(json!({ "id": format!("a:chat-with-{user}") }))
}

async fn send(
    State(f): State<Fake>,
    Path(conv): Path<String>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    authorized(&h);
    let n = f.calls.borrow().len();
    f.record("POST", format!("/v3/conversations/{conv}/activities"), body);
    Json(json!({ "id": format!("activity-{n}") }))
}

async fn update(
    State(f): State<Fake>,
    Path((conv, id)): Path<(String, String)>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    authorized(&h);
    f.record(
        "PUT",
        format!("/v3/conversations/{conv}/activities/{id}"),
        body,
    );
    Json(json!({ "id": id }))
}

async fn workflow(State(f): State<Fake>, Json(body): Json<Value>) -> axum::http::StatusCode {
    f.record("WORKFLOW", "/workflow".into(), body);
    axum::http::StatusCode::ACCEPTED
}

fn human(id: &str, aad: &str) -> Person {
    Person::new(id, PrincipalKind::Human).teams(aad)
}

struct Setup {
    fake: Fake,
    base: String,
    gate: Gate,
    audit: Arc<MemoryAudit>,
    endpoint: String,
    key: Key,
    bare: Key,
    clock: Arc<ManualClock>,
}

/// A gate whose channel is `approver(fake base)`, the fake Bot Framework publishing one key,
/// and the shared router (API, console, `/teams/messages`) on loopback.
async fn setup(
    approver: impl FnOnce(&str, GateBuilder) -> GateBuilder,
    links: Option<LinkKey>,
) -> Setup {
    setup_refreshing(approver, links, approvals_backends::teams::jwt::MIN_REFRESH).await
}

/// [`setup`], refetching keys for unknown key ids at most every `refresh`.
async fn setup_refreshing(
    approver: impl FnOnce(&str, GateBuilder) -> GateBuilder,
    links: Option<LinkKey>,
    refresh: Duration,
) -> Setup {
    let (fake, base) = Fake::start().await;
    let key = Key::generate("key-1");
    // Published with no endorsements at all: endorsed for no channel.
    let bare = Key::generate("key-bare");
    fake.keys
        .send_replace(vec![key.jwk(&["msteams"]), bare.jwk(&[])]);
    let audit = Arc::new(MemoryAudit::new());
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let b = Gate::builder()
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
                .person(human("alice", "aad-alice"))
                .person(human("bob", "aad-bob"))
                .person(human("dana", "aad-dana"))
                .group("data-owners", ["alice", "bob", "dana"]),
        )
        .store(MemoryStore::new())
        .audit(audit.clone())
        .clock(clock.clone());
    let gate = approver(&base, b).build().unwrap();
    let invokes = TeamsInvokes::new(
        gate.clone(),
        BotAuth::new(APP_ID)
            .metadata_url(format!("{base}/openid"))
            .min_refresh(refresh),
    );
    let mut service = ApprovalService::new(gate.clone())
        .tokens(ReviewerTokens::new().human(TokenHash::of("apv_alice"), "alice"))
        .secure_cookies(false)
        .mount(invokes.router());
    if let Some(k) = links {
        service = service.link_key(k);
    }
    let app = service.router();
    let endpoint = common::serve(app).await;
    Setup {
        fake,
        base,
        gate,
        audit,
        endpoint,
        key,
        bare,
        clock,
    }
}

fn bot(base: &str, b: GateBuilder) -> GateBuilder {
    b.approver(
        TeamsApprover::new(
            Connector::new(APP_ID, "bot-secret").login_url(format!("{base}/login")),
            base,
        )
        .conversation(CHANNEL),
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Setup {
    fn call(&self) -> tokio::task::JoinHandle<Result<(), Error>> {
        common::spawn_call(&self.gate)
    }

    fn claims(&self) -> Value {
        json!({
            "iss": "https://api.botframework.com",
            "aud": APP_ID,
            "exp": now_secs() + 300,
            "nbf": now_secs() - 10,
            "serviceurl": self.base,
        })
    }

    /// An `adaptiveCard/action` invoke from `aad` pressing `verb` on `card`.
    fn invoke(&self, card: &Value, verb: &str, aad: &str, reason: Option<&str>) -> Value {
        let action = card["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["verb"] == verb)
            .unwrap();
        let mut data = action["data"].clone();
        if let Some(r) = reason {
            data["reason"] = json!(r);
        }
        self.activity(verb, aad, data)
    }

    /// An invoke from `aad` pressing Approve changed in `card`'s Approve with changes…,
    /// with `limit` typed into its input.
    fn edit_invoke(&self, card: &Value, aad: &str, limit: &str) -> Value {
        let shown = card["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "Action.ShowCard")
            .unwrap_or_else(|| panic!("no Approve with changes… in {card}"));
        let mut data = shown["card"]["actions"][0]["data"].clone();
        data["set:limit"] = json!(limit);
        self.activity(
            shown["card"]["actions"][0]["verb"].as_str().unwrap(),
            aad,
            data,
        )
    }

    /// An `adaptiveCard/action` invoke from `aad` of `verb` with `data` (the card's inputs
    /// merged in, as Teams sends them).
    fn activity(&self, verb: &str, aad: &str, data: Value) -> Value {
        json!({
            "type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
            "serviceUrl": self.base, "id": "f:invoke-1",
            "from": { "id": format!("29:{aad}"), "aadObjectId": aad },
            "conversation": { "id": CHANNEL },
            "value": { "action": { "type": "Action.Execute", "verb": verb, "data": data } },
        })
    }

    async fn post(&self, token: Option<&str>, activity: &Value) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .post(format!("{}/teams/messages", self.endpoint))
            .json(activity);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn events(&self, name: &str) -> usize {
        self.audit
            .records()
            .iter()
            .filter(|r| r.event.name() == name)
            .count()
    }
}

fn fact<'a>(card: &'a Value, title: &str) -> &'a str {
    card["body"][1]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["title"] == title)
        .and_then(|f| f["value"].as_str())
        .unwrap_or_else(|| panic!("no fact {title} in {card}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_is_sent_a_signed_invoke_approves_and_the_card_is_updated() {
    let s = setup(bot, None).await;
    let call = s.call();
    let posted = s.fake.wait("POST", 1).await;
    assert_eq!(
        posted[0].path,
        format!("/v3/conversations/{CHANNEL}/activities")
    );
    let attachment = &posted[0].body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["version"], "1.4");
    assert_eq!(fact(card, "Action"), "billing::export_customers");
    assert_eq!(fact(card, "Requester"), "agent:ops-bot");
    assert_eq!(fact(card, "On behalf of"), "human:dana");
    assert_eq!(fact(card, "Trigger"), "chat message from dana");
    assert_eq!(fact(card, "Reason"), "weekly churn report");
    assert_eq!(fact(card, "Policy / rule"), "export / one-data-owner");
    assert_eq!(fact(card, "Still needed"), "1 more from data-owners");
    assert_eq!(fact(card, "Argument api_key"), "•••••• (redacted)");
    assert_eq!(fact(card, "Argument limit"), "500");
    assert!(!card.to_string().contains("sk-live-123"));
    let request = s.gate.pending().await.unwrap().remove(0);
    assert_eq!(
        fact(card, "Digest"),
        format!("{}…", request.action.digest.short(12))
    );
    let verbs: Vec<&str> = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["verb"].as_str().unwrap())
        .collect();
    assert_eq!(verbs, ["approve", "request_changes", "deny"]);

    let token = s.key.sign(&s.claims());
    let (status, answer) = s
        .post(Some(&token), &s.invoke(card, "approve", "aad-alice", None))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["statusCode"], 200);
    assert_eq!(answer["type"], "application/vnd.microsoft.card.adaptive");
    assert!(
        answer["value"]["actions"].is_null(),
        "the clicker's card has no buttons"
    );
    call.await.unwrap().unwrap();

    // Everyone's card is replaced by the outcome.
    let updated = s.fake.wait("PUT", 1).await;
    assert_eq!(
        updated[0].path,
        format!("/v3/conversations/{CHANNEL}/activities/{}", "activity-1")
    );
    let card = &updated[0].body["attachments"][0]["content"];
    assert!(card["actions"].is_null());
    assert!(
        card.to_string().contains("APPROVED: approved by alice"),
        "{card}"
    );
    // One app token served every connector call.
    assert_eq!(s.fake.wait("LOGIN", 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_and_record_nothing() {
    let s = setup(bot, None).await;
    let _call = s.call();
    let posted = s.fake.wait("POST", 1).await;
    let card = posted[0].body["attachments"][0]["content"].clone();
    let click = s.invoke(&card, "approve", "aad-alice", None);
    let good = s.claims();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let stranger = Key::generate("key-1"); // the published kid, another key
    let unknown = Key::generate("key-unpublished");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not a JWT", Some("not.a.jwt".into())),
        ("expired beyond the skew", Some(s.key.sign(&with("exp", json!(now_secs() - 301 - 60))))),
        ("not valid yet", Some(s.key.sign(&with("nbf", json!(now_secs() + 3600))))),
        ("wrong signature", Some(stranger.sign(&good))),
        ("unknown key id", Some(unknown.sign(&good))),
        ("another bot", Some(s.key.sign(&with("aud", json!("another-app"))))),
        ("another issuer", Some(s.key.sign(&with("iss", json!("https://evil.example"))))),
        ("another serviceUrl", Some(s.key.sign(&with("serviceurl", json!("https://evil.example/"))))),
        ("no serviceUrl", Some(s.key.sign(&json!({ "iss": "https://api.botframework.com", "aud": APP_ID, "exp": now_secs() + 300 })))),
        ("HS256", Some(jsonwebtoken::encode(
            &Header { kid: Some("key-1".into()), ..Header::new(Algorithm::HS256) },
            &good,
            &EncodingKey::from_secret(b"guess"),
        ).unwrap())),
    ];
    for (what, token) in &cases {
        let (status, v) = s.post(token.as_deref(), &click).await;
        assert_eq!(status, 401, "{what}: {v}");
    }
    // Keys were fetched once; the unknown key id, seconds later, did not make it refetch:
    // refetches are rate-limited, so forged key ids cannot hammer the key endpoint.
    assert_eq!(s.fake.key_fetches.load(Ordering::SeqCst), 1);
    // A key endorsed for another channel only.
    let mut other_channel = click.clone();
    other_channel["channelId"] = json!("slack");
    let (status, _) = s.post(Some(&s.key.sign(&good)), &other_channel).await;
    assert_eq!(status, 401, "not endorsed for the channel");
    // Issue 14, hole 13: a published key with no endorsements was trusted for every
    // channel; the Bot Framework SDKs require the channel to be endorsed.
    let (status, v) = s.post(Some(&s.bare.sign(&good)), &click).await;
    assert_eq!(status, 401, "a key endorsed for no channel: {v}");
    assert_eq!(s.events("review_accepted"), 0);
    assert_eq!(s.events("review_refused"), 0);
    assert!(s.gate.pending().await.unwrap().len() == 1);
    // Malformed activities: 400, never a panic.
    let r = reqwest::Client::new()
        .post(format!("{}/teams/messages", s.endpoint))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_clicks_say_why_and_are_audited() {
    let s = setup(bot, None).await;
    let call = s.call();
    let posted = s.fake.wait("POST", 1).await;
    let card = posted[0].body["attachments"][0]["content"].clone();
    let token = s.key.sign(&s.claims());

    // Someone Teams knows but the directory does not.
    let (_, v) = s
        .post(
            Some(&token),
            &s.invoke(&card, "approve", "aad-stranger", None),
        )
        .await;
    assert_eq!(v["statusCode"], 403);
    assert!(
        v["value"]
            .as_str()
            .unwrap()
            .contains("not in the approvers directory")
    );
    assert_eq!(s.events("review_unauthenticated"), 1);

    // dana is whom the agent acts for.
    let (_, v) = s
        .post(Some(&token), &s.invoke(&card, "approve", "aad-dana", None))
        .await;
    assert_eq!(v["statusCode"], 409);
    assert!(
        v["value"].as_str().unwrap().contains("self-approval"),
        "{v}"
    );
    assert_eq!(s.events("review_refused"), 1);

    // Deny needs the reason field.
    let (_, v) = s
        .post(Some(&token), &s.invoke(&card, "deny", "aad-bob", None))
        .await;
    assert_eq!(v["statusCode"], 400);

    // A card for a request that does not exist.
    let mut ghost = s.invoke(&card, "approve", "aad-alice", None);
    ghost["value"]["action"]["data"]["request_id"] =
        json!(approvals_core::RequestId::generate().to_string());
    let (_, v) = s.post(Some(&token), &ghost).await;
    assert_eq!(v["statusCode"], 404);

    // bob denies with a reason; then a click after the final state.
    let (_, v) = s
        .post(
            Some(&token),
            &s.invoke(&card, "deny", "aad-bob", Some("not this week")),
        )
        .await;
    assert_eq!(v["statusCode"], 200, "{v}");
    let err = call.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("not this week"), "{err}");
    let (_, v) = s
        .post(Some(&token), &s.invoke(&card, "approve", "aad-alice", None))
        .await;
    assert_eq!(v["statusCode"], 409);
    assert!(
        v["value"].as_str().unwrap().contains("already denied"),
        "{v}"
    );
    assert_eq!(s.events("review_accepted"), 1);
}

/// Issue 21: "Request changes" on the card needs what to change (in the card's input); then
/// the call is sent back with it and the card shows the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_changes_on_the_card_sends_the_call_back() {
    let s = setup(bot, None).await;
    let call = s.call();
    let posted = s.fake.wait("POST", 1).await;
    let card = posted[0].body["attachments"][0]["content"].clone();
    let token = s.key.sign(&s.claims());

    let (_, v) = s
        .post(
            Some(&token),
            &s.invoke(&card, "request_changes", "aad-bob", None),
        )
        .await;
    assert_eq!(v["statusCode"], 400, "{v}");
    assert!(
        v["value"].as_str().unwrap().contains("what to change"),
        "{v}"
    );
    assert!(!call.is_finished(), "the request stays open");

    let (_, v) = s
        .post(
            Some(&token),
            &s.invoke(
                &card,
                "request_changes",
                "aad-bob",
                Some("500 rows, not 50,000"),
            ),
        )
        .await;
    assert_eq!(v["statusCode"], 200, "{v}");
    match call.await.unwrap() {
        Err(Error::ChangesRequested { by, message, .. }) => {
            assert_eq!(
                (by.as_str(), message.as_str()),
                ("bob", "500 rows, not 50,000")
            );
        }
        other => panic!("expected the call sent back, got {other:?}"),
    }
    let updated = s.fake.wait("PUT", 1).await;
    let shown = updated[0].body.to_string();
    assert!(
        shown.contains("CHANGES_REQUESTED: changes requested by bob: 500 rows, not 50,000"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_fetched_when_a_new_key_id_appears() {
    let s = setup_refreshing(bot, None, Duration::ZERO).await;
    let call = s.call();
    let posted = s.fake.wait("POST", 1).await;
    let card = posted[0].body["attachments"][0]["content"].clone();
    // A message activity: verified (keys fetched), acknowledged, nothing decided.
    let mut message = s.invoke(&card, "approve", "aad-alice", None);
    message["type"] = json!("message");
    let (status, _) = s.post(Some(&s.key.sign(&s.claims())), &message).await;
    assert_eq!(status, 200);
    assert_eq!(s.fake.key_fetches.load(Ordering::SeqCst), 1);
    // The Bot Framework rotates: a new key is published, and the next token uses it.
    let next = Key::generate("key-2");
    s.fake
        .keys
        .send_replace(vec![s.key.jwk(&["msteams"]), next.jwk(&["msteams"])]);
    let click = s.invoke(&card, "approve", "aad-alice", None);
    let (status, v) = s.post(Some(&next.sign(&s.claims())), &click).await;
    assert_eq!((status, v["statusCode"].clone()), (200, json!(200)), "{v}");
    assert_eq!(
        s.fake.key_fetches.load(Ordering::SeqCst),
        2,
        "refetched for key-2"
    );
    call.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_cards_link_to_the_console_and_each_link_works_once() {
    let key = LinkKey::generate();
    let k2 = key.clone();
    let s = setup(
        move |base, b| {
            b.approver(TeamsWebhookApprover::new(
                format!("{base}/workflow"),
                // The console is on the service's own address, set below: links use a
                // placeholder host rewritten by the test.
                "http://console.invalid",
                k2,
            ))
        },
        Some(key.clone()),
    )
    .await;
    let call = s.call();
    let posted = s.fake.wait("WORKFLOW", 1).await;
    let card = &posted[0].body["attachments"][0]["content"];
    assert_eq!(fact(card, "Argument api_key"), "•••••• (redacted)");
    let links: Vec<String> = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["type"], "Action.OpenUrl");
            a["url"]
                .as_str()
                .unwrap()
                .replace("http://console.invalid", &s.endpoint)
        })
        .collect();
    let approve = &links[0];
    assert!(approve.contains("/console/links/"));

    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    // Opening the link without a session asks the reviewer to sign in, and comes back.
    let page = http
        .get(approve)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Reviewer token"), "{page}");
    let field = |html: &str, name: &str| {
        let m = format!("name=\"{name}\" value=\"");
        let i = html.find(&m).unwrap() + m.len();
        html[i..].split('"').next().unwrap().to_owned()
    };
    let next = field(&page, "next");
    assert!(next.starts_with("/console/links/"));
    let page = http
        .post(format!("{}/console/login", s.endpoint))
        .form(&[
            ("token", "apv_alice"),
            ("csrf", &field(&page, "csrf")),
            ("next", &next),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("You are about to <b>approve</b>"), "{page}");
    assert!(!page.contains("sk-live-123"));
    let csrf = field(&page, "csrf");
    // Opening it did not spend it; confirming does.
    let r = http
        .post(approve)
        .form(&[("csrf", csrf.as_str()), ("comment", "ok from Teams")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    call.await.unwrap().unwrap();
    let review = s
        .audit
        .records()
        .into_iter()
        .find_map(|r| match r.event.kind {
            EventKind::ReviewAccepted { review } => Some(review),
            _ => None,
        })
        .unwrap();
    assert_eq!(review.reviewer.id, "alice");
    assert_eq!(review.comment.as_deref(), Some("ok from Teams"));

    // The second time, the link does not work.
    let r = http
        .post(approve)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410);
    let r = http.get(approve).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 410);
    assert!(r.text().await.unwrap().contains("already used"));

    // Nor after a restart, or on another replica: a service over the same store and link
    // key, which never saw the link spent, reads that from the review it recorded.
    let replica = ApprovalService::new(s.gate.clone())
        .tokens(ReviewerTokens::new().human(TokenHash::of("apv_alice"), "alice"))
        .secure_cookies(false)
        .link_key(key.clone());
    let replica = common::serve(replica.router()).await;
    let r = reqwest::get(approve.replace(&s.endpoint, &replica))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410);
    assert!(r.text().await.unwrap().contains("already used"));

    // An altered link is refused.
    let mut altered = links[1].clone();
    let flip = altered.len() - 3;
    altered.replace_range(
        flip..flip + 1,
        if &altered[flip..flip + 1] == "A" {
            "B"
        } else {
            "A"
        },
    );
    let r = http.get(&altered).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(s.events("review_accepted"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused() {
    let key = LinkKey::generate();
    let k2 = key.clone();
    let s = setup(
        move |base, b| {
            b.approver(
                TeamsWebhookApprover::new(format!("{base}/workflow"), "http://console.invalid", k2)
                    .link_lifetime(Duration::from_secs(60)),
            )
        },
        Some(key),
    )
    .await;
    let _call = s.call();
    let posted = s.fake.wait("WORKFLOW", 1).await;
    let url = posted[0].body["attachments"][0]["content"]["actions"][0]["url"]
        .as_str()
        .unwrap()
        .replace("http://console.invalid", &s.endpoint);
    s.clock.advance(Duration::from_secs(61));
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status().as_u16(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
}

/// Issue 21: Approve with changes… shows the editable arguments' values; an edit into a
/// denied call, an edit by the person the call is for and a value of another kind are
/// refused and the request stays open; alice's edit answers with the original's card, now
/// edited; the edit is a card of its own, which bob approves; the call runs once with the
/// new limit; the signed log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_with_changes_on_the_card_makes_a_new_call_that_a_quorum_approves() {
    let log = common::SignedLog::new();
    let sink = log.sink();
    let s = setup(
        |base, b| bot(base, b).policy(common::limits()).audit(sink),
        None,
    )
    .await;
    let runs = Arc::new(AtomicUsize::new(0));
    let call = common::spawn_editable_call(&s.gate, 50_000, runs.clone());
    let card = s.fake.wait("POST", 1).await[0].body["attachments"][0]["content"].clone();
    let id = s.gate.pending().await.unwrap()[0].id;
    let shown = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "Action.ShowCard")
        .unwrap_or_else(|| panic!("no Approve with changes… in {card}"));
    let input = shown["card"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "set:limit")
        .unwrap_or_else(|| panic!("no input for limit in {card}"));
    assert_eq!(
        (&input["type"], &input["value"]),
        (&json!("Input.Text"), &json!("50000"))
    );
    let token = s.key.sign(&s.claims());

    for (aad, limit, status, says) in [
        (
            "aad-alice",
            "2000000",
            409,
            "never more than a million rows",
        ),
        ("aad-dana", "500", 409, "dana"),
        ("aad-alice", "many", 400, "is not a value of that kind"),
    ] {
        let (_, v) = s
            .post(Some(&token), &s.edit_invoke(&card, aad, limit))
            .await;
        assert_eq!(v["statusCode"], status, "{v}");
        let text = v["value"].as_str().unwrap();
        assert!(
            text.contains("not recorded") && text.contains(says),
            "{text}"
        );
        let open = s.gate.pending().await.unwrap();
        assert_eq!((open.len(), open[0].id), (1, id), "the request stays open");
    }

    let (_, v) = s
        .post(Some(&token), &s.edit_invoke(&card, "aad-alice", "20000"))
        .await;
    assert_eq!(v["statusCode"], 200, "{v}");
    assert!(
        v["value"]
            .to_string()
            .contains("EDITED: edited by alice (limit: 50000 → 20000)"),
        "{v}"
    );
    let edit_card = s.fake.wait("POST", 2).await[1].body["attachments"][0]["content"].clone();
    assert_eq!(fact(&edit_card, "Still needed"), "1 more from data-owners");
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    let (_, v) = s
        .post(
            Some(&token),
            &s.invoke(&edit_card, "approve", "aad-bob", None),
        )
        .await;
    assert_eq!(v["statusCode"], 200, "{v}");
    common::ran_once_with(call, &runs, 20_000).await;

    let records = log.verified().await;
    let names = |rid| common::names_of(&records, rid);
    assert!(!names(id).contains(&"started"), "the original never ran");
    let edit = s.gate.pending().await.unwrap();
    assert!(edit.is_empty());
    let started: Vec<_> = records
        .iter()
        .filter(|r| r.event.name() == "started")
        .collect();
    assert_eq!(started.len(), 1);
    let edit = started[0].event.request_id.unwrap();
    assert_ne!(edit, id);
    // Delivery is recorded when the connector has answered, which may be after bob clicked:
    // the order of the rest is the rule.
    let done: Vec<_> = names(edit)
        .into_iter()
        .filter(|n| *n != "notified")
        .collect();
    assert_eq!(
        done,
        [
            "requested",
            "review_accepted",
            "review_accepted",
            "decided",
            "started",
            "finished"
        ]
    );
}

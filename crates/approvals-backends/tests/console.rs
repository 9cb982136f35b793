//! The web console: its protections over plain HTTP, and a reviewer in a real browser
//! (Debian's headless Chromium, driven by playwright-core) approving a waiting call.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals_backends::http::{ApprovalService, ReviewerTokens, TokenHash};
use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_core::{
    AuditSink, CodePolicy, Decision, Error, EventKind, Evidence, Factor, Gate, Requirement,
    StaticDirectory,
};
use reqwest::StatusCode;

const ALICE: &str = "apv_console-test-token-alice";
const DANA: &str = "apv_console-test-token-dana";
const BOB: &str = "apv_console-test-token-bob";

struct Console {
    base: String,
    gate: Gate,
    audit: Arc<MemoryAudit>,
}

async fn start() -> Console {
    let audit = Arc::new(MemoryAudit::new());
    let policy = CodePolicy::new().require(
        "export",
        Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
    );
    start_with(policy, audit.clone(), audit).await
}

/// A console over a gate judging by `policy` and writing to `sink`, of which `audit` sees
/// every record.
async fn start_with(
    policy: CodePolicy,
    sink: impl AuditSink + 'static,
    audit: Arc<MemoryAudit>,
) -> Console {
    let gate = Gate::builder()
        .policy(policy)
        .directory(StaticDirectory::new().group("data-owners", ["alice", "bob", "dana"]))
        .store(MemoryStore::new())
        .audit(sink)
        .build()
        .unwrap();
    let tokens = ReviewerTokens::new()
        .human(TokenHash::of(ALICE), "alice")
        .human(TokenHash::of(BOB), "bob")
        .human(TokenHash::of(DANA), "dana");
    // Plain HTTP on loopback: the cookies cannot be `Secure` here.
    let app = ApprovalService::new(gate.clone())
        .tokens(tokens)
        .secure_cookies(false)
        .audit_log(audit.clone())
        .router();
    let base = common::serve(app).await;
    Console { base, gate, audit }
}

impl Console {
    async fn call(&self) -> tokio::task::JoinHandle<Result<(), Error>> {
        let call = common::spawn_call(&self.gate);
        self.audit
            .wait_for(|r| r.iter().any(|r| r.event.name() == "requested"))
            .await;
        call
    }

    /// Signs in over HTTP as a browser would; returns the client (with its cookies).
    async fn sign_in(&self, token: &str) -> reqwest::Client {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap();
        let login = html(&http, &self.base, "/console").await;
        let csrf = hidden(&login, "csrf");
        let r = http
            .post(format!("{}/console/login", self.base))
            .form(&[("token", token), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        http
    }
}

/// The page at `path`, as `http` (with its cookies) sees it.
async fn html(http: &reqwest::Client, base: &str, path: &str) -> String {
    http.get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of a hidden form field.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_forged_forms_and_bad_tokens_and_sends_strict_headers() {
    let c = start().await;
    let call = c.call().await;
    let id = c.gate.pending().await.unwrap()[0].id;

    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/console", c.base))
        .send()
        .await
        .unwrap();
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("script-src"), "no script is allowed at all");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let login_cookie = h["set-cookie"].to_str().unwrap();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));

    // Signing in without the form's own token, or with a wrong reviewer token.
    let r = http
        .post(format!("{}/console/login", c.base))
        .form(&[("token", ALICE), ("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let jar = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let page = html(&jar, &c.base, "/console").await;
    let r = jar
        .post(format!("{}/console/login", c.base))
        .form(&[("token", "apv_wrong"), ("csrf", &hidden(&page, "csrf"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Signed in: a review without this session's CSRF token is refused.
    let alice = c.sign_in(ALICE).await;
    let page = html(&alice, &c.base, &format!("/console/requests/{id}")).await;
    assert!(page.contains("redacted") && !page.contains("sk-live-123"));
    let digest = hidden(&page, "digest");
    let r = alice
        .post(format!("{}/console/requests/{id}/review", c.base))
        .form(&[
            ("csrf", "forged"),
            ("digest", &digest),
            ("verdict", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        c.gate.pending().await.unwrap().len() == 1,
        "nothing changed"
    );

    // dana is whom the agent acts for: refused, and the refusal is audited.
    let dana = c.sign_in(DANA).await;
    let page = html(&dana, &c.base, &format!("/console/requests/{id}")).await;
    let r = dana
        .post(format!("{}/console/requests/{id}/review", c.base))
        .form(&[
            ("csrf", hidden(&page, "csrf").as_str()),
            ("digest", &digest),
            ("verdict", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("self-approval"));
    assert!(
        c.audit
            .records()
            .iter()
            .any(|r| r.event.name() == "review_refused")
    );
    // Without a session, nothing but the sign-in page.
    let r = http
        .get(format!("{}/console/requests/{id}", c.base))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Reviewer token"));
    call.abort();
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_in_a_real_browser_and_the_call_completes() {
    let chromium =
        std::env::var("APPROVALS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = workspace().join("tests/browser/console.mjs");
    let modules = workspace().join("tests/browser/node_modules/playwright-core");
    let required = std::env::var_os("APPROVALS_REQUIRE_BROWSER").is_some();
    if !PathBuf::from(&chromium).exists() || !modules.exists() {
        assert!(
            !required,
            "the browser test is required here, but {chromium} or {} is missing",
            modules.display()
        );
        eprintln!(
            "skipped: the browser test needs {chromium} and `npm ci` in tests/browser (.ci/run installs both)"
        );
        return;
    }
    let log = common::SignedLog::new();
    let c = start_with(common::limits(), log.sink(), log.memory.clone()).await;
    let call = c.call().await;
    // And an export of 5,000 rows whose limit a reviewer may change.
    let runs = Arc::new(AtomicUsize::new(0));
    let edited = common::spawn_editable_call(&c.gate, 5_000, runs.clone());
    c.audit
        .wait_for(|r| r.iter().filter(|r| r.event.name() == "requested").count() == 2)
        .await;
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-approved.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args([
            c.base.as_str(),
            ALICE,
            shot.to_str().unwrap(),
            chromium.as_str(),
            // The README's picture of the console, made anew by every run.
            workspace().join("docs/console.png").to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\"status\":\"approved\""), "{text}");
    // The gated call the page approved has run; so has the edited one, once, with 500 rows.
    call.await.unwrap().unwrap();
    assert_eq!(edited.await.unwrap().unwrap(), 500);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let records = log.verified().await;
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.event.name() == "review_refused")
        .collect();
    assert_eq!(refused.len(), 1, "the edit into a denied call, audited");
    let accepted: Vec<_> = records
        .into_iter()
        .filter_map(|r| match r.event.kind {
            EventKind::ReviewAccepted { review } => Some(review),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 2, "the approval and the edit's");
    assert_eq!(accepted[1].reviewer.id, "alice");
    assert_ne!(accepted[1].request_id, accepted[0].request_id);
    assert_eq!(accepted[0].reviewer.id, "alice");
    assert_eq!(
        accepted[0].comment.as_deref(),
        Some("approved in the console")
    );
    assert!(
        matches!(&accepted[0].evidence, Evidence::Other { channel, .. } if channel == "console")
    );
    for saved in [shot.clone(), workspace().join("docs/console.png")] {
        let png = std::fs::read(&saved).unwrap();
        assert_eq!(
            &png[..8],
            b"\x89PNG\r\n\x1a\n",
            "{} is a PNG",
            saved.display()
        );
    }
    eprintln!("screenshot: {}", shot.display());
}

/// Issue 14, hole 8: a `next` holding CR/LF answered 500; and `/console/` was a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_hostile_next_lands_on_the_console() {
    let c = start().await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = html(&http, &c.base, "/console").await;
    let csrf = hidden(&login, "csrf");
    let r = http
        .post(format!("{}/console/login", c.base))
        .form(&[
            ("token", ALICE),
            ("csrf", &csrf),
            ("next", "/console/\r\nSet-Cookie: evil=1"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/console");
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .all(|v| !v.to_str().unwrap().contains("evil")),
        "no header was injected"
    );
    let r = http
        .get(format!("{}/console/", c.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/console");
}

/// Two services on one SQLite file, as two replicas behind a load balancer share one
/// database: a reviewer signs in on one, reviews on the other, and signs out of both at once.
/// The database keeps only a digest of the session cookie.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signed_in_on_one_replica_reviews_on_another() {
    use approvals_backends::sqlite::Sqlite;
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let db = Sqlite::open(&path).await.unwrap();
        let audit = Arc::new(MemoryAudit::new());
        let gate = Gate::builder()
            .policy(CodePolicy::new().require(
                "export",
                Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
            ))
            .directory(StaticDirectory::new().group("data-owners", ["alice", "bob", "dana"]))
            .store(db)
            .audit(audit.clone())
            .build()
            .unwrap();
        let tokens = ReviewerTokens::new().human(TokenHash::of(ALICE), "alice");
        let app = ApprovalService::new(gate.clone())
            .tokens(tokens)
            .secure_cookies(false)
            .router();
        replicas.push((common::serve(app).await, gate, audit));
    }
    let (a, b) = (&replicas[0].0, &replicas[1].0);
    let call = common::spawn_call(&replicas[0].1);
    replicas[0]
        .2
        .wait_for(|r| r.iter().any(|r| r.event.name() == "requested"))
        .await;
    // Replica B reads it from the shared file.
    let id = replicas[1].1.pending().await.unwrap()[0].id;

    // Sign in on replica A, by hand, to see the cookie.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{a}/console")).send().await.unwrap();
    let login_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let csrf = hidden(&r.text().await.unwrap(), "csrf");
    let r = http
        .post(format!("{a}/console/login"))
        .header("cookie", &login_cookie)
        .form(&[("token", ALICE), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("approvals_session=") && c.len() > "approvals_session=".len())
        .expect("a session cookie");
    let value = session.split_once('=').unwrap().1.to_owned();

    // Replica B knows her, shows the request, and takes her review.
    let get = |base: &str, path: &str| {
        http.get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
    };
    let front = get(b, "/console").await.unwrap().text().await.unwrap();
    assert!(front.contains("id=\"whoami\">alice<"), "{front}");
    let detail = get(b, &format!("/console/requests/{id}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .post(format!("{b}/console/requests/{id}/review"))
        .header("cookie", &session)
        .form(&[
            ("csrf", hidden(&detail, "csrf").as_str()),
            ("digest", hidden(&detail, "digest").as_str()),
            ("verdict", "approve"),
            ("comment", "fine"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    common::within("the call on replica A", call)
        .await
        .unwrap()
        .unwrap();

    // The file holds the cookie's digest, never the cookie.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(dir.path().join("shared.db-wal")).unwrap_or_default());
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(&value), "the cookie itself is not stored");
    assert!(contains(&hex::encode(sha2::Sha256::digest(
        value.as_bytes()
    ))));

    // Signing out on B ends the session on A too.
    let csrf = hidden(&front, "csrf");
    let r = http
        .post(format!("{b}/console/logout"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let after = get(a, "/console").await.unwrap().text().await.unwrap();
    assert!(!after.contains("whoami"), "{after}");
    assert!(after.contains("Sign in"), "{after}");
}

/// After ten failed sign-ins from one address, the next attempts, a right token included,
/// wait out the minute, and are told how long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_limited() {
    let c = start().await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let attempt = |token: &'static str| {
        let http = http.clone();
        let base = c.base.clone();
        async move {
            let login = html(&http, &base, "/console").await;
            let csrf = hidden(&login, "csrf");
            http.post(format!("{base}/console/login"))
                .form(&[("token", token), ("csrf", &csrf)])
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..10 {
        assert_eq!(
            attempt("apv_wrong").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = attempt(ALICE).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
}

/// Issue 21: "Request changes" in the console: refused without saying what to change (the
/// request stays open), then the caller gets the message and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_sends_a_call_back_from_the_console() {
    let c = start().await;
    let call = c.call().await;
    let id = c.gate.pending().await.unwrap()[0].id;
    let alice = c.sign_in(ALICE).await;
    let page = html(&alice, &c.base, &format!("/console/requests/{id}")).await;
    assert!(page.contains(r#"id="request-changes""#), "{page}");
    let form = |comment: &'static str| {
        vec![
            ("csrf", hidden(&page, "csrf")),
            ("digest", hidden(&page, "digest")),
            ("verdict", "request_changes".to_owned()),
            ("comment", comment.to_owned()),
        ]
    };
    let review = format!("{}/console/requests/{id}/review", c.base);
    let r = alice.post(&review).form(&form(" ")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Say what to change."));
    assert_eq!(c.gate.pending().await.unwrap().len(), 1, "still open");

    let r = alice
        .post(&review)
        .form(&form("export 500 rows, not 50,000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let shown = r.text().await.unwrap();
    assert!(
        shown.contains(r#"id="status">changes_requested<"#),
        "{shown}"
    );
    assert!(shown.contains("alice asked for changes"), "{shown}");
    let err = common::within("the sent-back call", call)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::ChangesRequested { message, .. } if message == "export 500 rows, not 50,000"),
        "{err}"
    );
}

/// Issue 21: a reviewer approves a call with a changed limit. Values that do not fit, an
/// unchanged form, an edit into a denied call and an edit by the person the call is for are
/// refused and the request stays open; the edit is a new request, alice's approval its
/// first; it needs a second data owner; the call runs once, with the new limit, and the
/// signed log verifies and links the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_a_call_with_changes_and_a_second_approves_the_edit() {
    let log = common::SignedLog::new();
    let c = start_with(common::limits(), log.sink(), log.memory.clone()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let call = common::spawn_editable_call(&c.gate, 50_000, runs.clone());
    c.audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "requested"))
        .await;
    let id = c.gate.pending().await.unwrap()[0].id;
    let alice = c.sign_in(ALICE).await;
    let page = html(&alice, &c.base, &format!("/console/requests/{id}")).await;
    assert!(
        page.contains(r#"id="set-limit" name="set:limit" value="50000""#),
        "{page}"
    );
    let form = |page: &str, limit: &str| {
        vec![
            ("csrf", hidden(page, "csrf")),
            ("digest", hidden(page, "digest")),
            ("verdict", "edit".to_owned()),
            ("comment", String::new()),
            ("set:limit", limit.to_owned()),
        ]
    };
    let review = format!("{}/console/requests/{id}/review", c.base);
    for (limit, status, says) in [
        (
            "lots",
            StatusCode::BAD_REQUEST,
            "is not a value of that kind",
        ),
        ("50000", StatusCode::BAD_REQUEST, "Change a value"),
        (
            r#""500""#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "takes a whole number, not negative, not a string",
        ),
        (
            "2000000",
            StatusCode::FORBIDDEN,
            "never more than a million rows",
        ),
    ] {
        let r = alice
            .post(&review)
            .form(&form(&page, limit))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{limit}");
        let shown = r.text().await.unwrap();
        assert!(shown.contains(says), "{limit}: {shown}");
        let open = c.gate.pending().await.unwrap();
        assert_eq!(
            (open.len(), open[0].id),
            (1, id),
            "{limit}: the request stays open"
        );
    }
    // Dana, for whom the call is made, cannot approve it changed either.
    let dana = c.sign_in(DANA).await;
    let dana_page = html(&dana, &c.base, &format!("/console/requests/{id}")).await;
    let r = dana
        .post(&review)
        .form(&form(&dana_page, "500"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = alice
        .post(&review)
        .form(&form(&page, "20000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let shown = r.text().await.unwrap();
    assert!(
        shown.contains("Approved with changes: this is the edited call, pending"),
        "{shown}"
    );
    assert!(shown.contains(r#"id="edit-of""#), "{shown}");
    let open = c.gate.pending().await.unwrap();
    let edit = &open[0];
    assert_ne!(edit.id, id);
    assert_eq!(edit.action.args["limit"], 20_000);
    assert_eq!(edit.edit_of.as_ref().unwrap().original, id);
    let before = html(&alice, &c.base, &format!("/console/requests/{id}")).await;
    assert!(before.contains(r#"id="status">edited<"#), "{before}");
    assert!(
        before.contains(&format!(r#"id="edited-into">{}<"#, edit.id)),
        "{before}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing ran yet");

    // Bob, a second data owner, approves the edit as it is.
    let bob = c.sign_in(BOB).await;
    let edit_page = html(&bob, &c.base, &format!("/console/requests/{}", edit.id)).await;
    let r = bob
        .post(format!("{}/console/requests/{}/review", c.base, edit.id))
        .form(&[
            ("csrf", hidden(&edit_page, "csrf")),
            ("digest", hidden(&edit_page, "digest")),
            ("verdict", "approve".to_owned()),
            ("comment", String::new()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains(r#"id="status">approved<"#));
    common::ran_once_with(call, &runs, 20_000).await;

    let records = log.verified().await;
    let of = |rid| common::names_of(&records, rid);
    assert!(!of(id).contains(&"started"), "the original never ran");
    assert!(records.iter().any(|r| matches!(&r.event.kind,
        EventKind::Decided { decision: Decision::Edited { edit: e, .. } } if *e == edit.id)));
    assert_eq!(
        of(edit.id),
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

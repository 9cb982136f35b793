//! `/console`: the web console for reviewers. Server-rendered HTML and no JavaScript: sign in
//! with a token, see what waits, read one request in full, approve or deny it.
//!
//! - Sessions are kept in the store ([`super::session`]), so every replica knows them, behind
//!   an `HttpOnly`, `SameSite=Strict` cookie (`Secure` unless turned off for plain-HTTP
//!   development); nothing secret is ever put in a URL. Failed sign-ins are limited per client.
//! - Every form carries a per-session CSRF token, compared in constant time; signing in
//!   carries a double-submit token of its own.
//! - Every page is sent with a strict Content-Security-Policy (no script at all), `nosniff`,
//!   no referrer, no caching, and may not be framed.
//!
//! The HTML is written here with one escaping function rather than a template engine: the
//! pages are few and small, and every interpolation goes through [`esc`].

use std::fmt::Write as _;

use approvals_core::store::Session;
use approvals_core::{Evidence, RequestId, Review, ReviewDecision, StoreError};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use super::ApprovalService;
use super::session::{ClientAddr, LOGIN_COOKIE, MaybeSignedIn, SESSION_COOKIE, SignedIn, random};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page shown when the store cannot be reached.
pub(crate) fn unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %e, "console: the store is unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        None,
        "<p class=\"error\">The approval service cannot reach its store; try again shortly.</p>",
    )
}

/// A complete page with the console's security headers.
fn page(status: StatusCode, title: &str, who: Option<&Session>, body: &str) -> Response {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · approvals</title><link rel=\"stylesheet\" href=\"/console/style.css\"></head>\
         <body><header><nav><a href=\"/console\" class=\"brand\">approvals</a> \
         <a href=\"/console\">Waiting</a> <a href=\"/console/history\" id=\"history-link\">History</a></nav>",
        esc(title)
    );
    if let Some(s) = who {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"/console/logout\" class=\"who\">\
             <span>signed in as <b id=\"whoami\">{}</b></span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            esc(&s.principal.id),
            esc(&s.csrf)
        );
    }
    let _ = write!(html, "</header><main>{body}</main></body></html>");
    let mut r = (status, html).into_response();
    secure_headers(r.headers_mut(), "text/html; charset=utf-8");
    r
}

fn secure_headers(h: &mut HeaderMap, content_type: &'static str) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(crate) async fn style() -> Response {
    let mut r = STYLE.into_response();
    secure_headers(r.headers_mut(), "text/css; charset=utf-8");
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}\
header{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1.2rem;background:#1b1f24;color:#fff}\
header a{color:#fff;margin-right:.9rem}header a.brand{font-weight:700;text-decoration:none}\
header form.who{display:flex;gap:.6rem;align-items:center;margin:0}\
main{max-width:60rem;margin:1.2rem auto;padding:0 1rem}\
table{border-collapse:collapse;width:100%;background:#fff}\
td,th{border-bottom:1px solid #e3e6ea;padding:.45rem .6rem;text-align:left;vertical-align:top}\
th{width:11rem;color:#57606a;font-weight:600}\
code,.mono{font-family:ui-monospace,monospace;font-size:.9em}\
.redacted{color:#8c959f;font-style:italic}\
.status{display:inline-block;padding:.1rem .5rem;border-radius:.8rem;background:#ddf4ff}\
.status.approved{background:#dafbe1}.status.denied,.status.expired,.status.cancelled{background:#ffebe9}\
.error{background:#ffebe9;border:1px solid #ff8182;padding:.6rem;margin:.6rem 0}\
.notice{background:#dafbe1;border:1px solid #4ac26b;padding:.6rem;margin:.6rem 0}\
form.review{background:#fff;padding:1rem;margin-top:1rem;border:1px solid #e3e6ea}\
textarea{width:100%;min-height:4rem;box-sizing:border-box}\
button{font:inherit;padding:.35rem .9rem;cursor:pointer}\
button.approve{background:#1f883d;color:#fff;border:0}button.deny{background:#cf222e;color:#fff;border:0}\
";

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    csrf: String,
    /// Where to go after signing in (a console page only).
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReviewForm {
    csrf: String,
    digest: String,
    verdict: String,
    #[serde(default)]
    comment: String,
}

fn login_page(s: &ApprovalService, status: StatusCode, error: Option<&str>) -> Response {
    login_page_to(s, status, error, "")
}

pub(crate) fn login_page_to(
    s: &ApprovalService,
    status: StatusCode,
    error: Option<&str>,
    next: &str,
) -> Response {
    let csrf = random();
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\">{}</p>", esc(e));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/console/login\">\
         <p><label for=\"token\">Reviewer token</label><br>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" size=\"60\" required></p>\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form>",
        next = esc(next)
    );
    let jar =
        CookieJar::new().add(s.cookie(LOGIN_COOKIE, csrf, std::time::Duration::from_secs(600)));
    (jar, page(status, "Sign in", None, &body)).into_response()
}

pub(crate) async fn index(State(s): State<ApprovalService>, who: SignedIn) -> Response {
    let session = who.session;
    let open = match s.gate().pending().await {
        Ok(o) => o,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                Some(&session),
                &format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
            );
        }
    };
    let mut body = String::from("<h1>Waiting for review</h1>");
    if open.is_empty() {
        body.push_str("<p id=\"none\">Nothing is waiting.</p>");
    } else {
        body.push_str(
            "<table id=\"pending\"><tr><th>Action</th><th>Requested by</th><th>Still needed</th><th>Expires</th></tr>",
        );
        for r in &open {
            let v = s.view(r);
            let mine = v.may_approve.contains(&session.principal.id);
            let _ = write!(
                body,
                "<tr><td><a href=\"/console/requests/{id}\" class=\"request\">{name}</a>{me}</td>\
                 <td>{who}{behalf}</td><td>{need}</td><td>{exp}</td></tr>",
                id = r.id,
                name = esc(&r.action.name),
                me = if mine {
                    " <span class=\"status\">you may approve</span>"
                } else {
                    ""
                },
                who = esc(&r.context.requester.id),
                behalf = r
                    .context
                    .on_behalf_of
                    .as_ref()
                    .map_or_else(String::new, |p| format!(" for {}", esc(&p.id))),
                need = esc(&v.still_needed),
                exp = esc(&r.expires_at.to_string()),
            );
        }
        body.push_str("</table>");
    }
    page(StatusCode::OK, "Waiting for review", Some(&session), &body)
}

pub(crate) async fn history(State(s): State<ApprovalService>, who: SignedIn) -> Response {
    let session = who.session;
    let decided = match s.gate().decided(200).await {
        Ok(d) => d,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "History",
                Some(&session),
                &format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
            );
        }
    };
    let mut body = String::from("<h1>History</h1>");
    if decided.is_empty() {
        body.push_str("<p>Nothing has been decided yet.</p>");
    } else {
        body.push_str(
            "<table id=\"decided\"><tr><th>Action</th><th>Decision</th><th>Requested by</th><th>Requested at</th></tr>",
        );
        for r in &decided {
            let word = r.decision().map_or("pending", |d| d.word());
            let _ = write!(
                body,
                "<tr><td><a href=\"/console/requests/{id}\" class=\"request\">{name}</a></td>\
                 <td><span class=\"status {word}\">{word}</span> {text}</td><td>{who}</td><td>{at}</td></tr>",
                id = r.id,
                name = esc(&r.action.name),
                text = esc(&r.decision().map_or_else(String::new, ToString::to_string)),
                who = esc(&r.context.requester.id),
                at = esc(&r.created_at.to_string()),
            );
        }
        body.push_str("</table>");
    }
    page(StatusCode::OK, "History", Some(&session), &body)
}

pub(crate) async fn login(
    State(s): State<ApprovalService>,
    ClientAddr(client): ClientAddr,
    jar: CookieJar,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Some(wait) = s.inner.sign_ins.wait(client) {
        tracing::warn!(client = ?client, "console: too many failed sign-ins; refusing for now");
        let mut r = login_page(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins from here; wait a minute and try again."),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let Ok(Form(form)) = form else {
        return login_page(
            &s,
            StatusCode::BAD_REQUEST,
            Some("The form was incomplete."),
        );
    };
    let expected = jar.get(LOGIN_COOKIE).map_or("", |c| c.value());
    if expected.is_empty() || !same(expected, &form.csrf) {
        return login_page(
            &s,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired; try again."),
        );
    }
    let Some(principal) = s
        .inner
        .tokens
        .authenticate(form.token.trim())
        .filter(|e| e.roles.review)
        .map(|e| e.principal.clone())
    else {
        tracing::warn!(client = ?client, "console: refused an unknown token, or one that may not review");
        s.inner.sign_ins.failed(client);
        return login_page(
            &s,
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid, or may not review."),
        );
    };
    let session = match s.start_session(principal).await {
        Ok(c) => c,
        Err(e) => return unavailable(&e),
    };
    let jar =
        jar.add(session)
            .add(s.cookie(LOGIN_COOKIE, String::new(), std::time::Duration::ZERO));
    (jar, Redirect::to(safe_next(&form.next))).into_response()
}

pub(crate) async fn logout(
    State(s): State<ApprovalService>,
    MaybeSignedIn(who): MaybeSignedIn,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let (Some(who), Ok(Form(f))) = (who, form)
        && same(&who.session.csrf, &f.csrf)
        && let Err(e) = s.end_session(&who).await
    {
        return unavailable(&e);
    }
    let jar =
        CookieJar::new().add(s.cookie(SESSION_COOKIE, String::new(), std::time::Duration::ZERO));
    (jar, Redirect::to("/console")).into_response()
}

/// One argument's value as shown: a redacted one masked, anything else as JSON.
fn show_arg(v: &Value) -> String {
    let keyed = v
        .get(approvals_core::action::REDACTED_KEY)
        .map(|h| ("hmac", h));
    let legacy = v
        .get(approvals_core::action::LEGACY_REDACTED_KEY)
        .map(|h| ("sha256", h));
    if let Some((kind, h)) = keyed
        .or(legacy)
        .and_then(|(k, h)| h.as_str().map(|h| (k, h)))
    {
        return format!(
            "<span class=\"redacted\">•••••• redacted ({kind} {}…)</span>",
            esc(&h[..h.len().min(12)])
        );
    }
    format!("<code>{}</code>", esc(&v.to_string()))
}

pub(crate) async fn detail(
    State(s): State<ApprovalService>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Response {
    render_detail(&s, &who.session, &id, StatusCode::OK, None).await
}

async fn render_detail(
    s: &ApprovalService,
    session: &Session,
    id: &str,
    status: StatusCode,
    message: Option<(&str, &str)>,
) -> Response {
    render_detail_with(s, session, id, status, message, true, "").await
}

async fn render_detail_with(
    s: &ApprovalService,
    session: &Session,
    id: &str,
    status: StatusCode,
    message: Option<(&str, &str)>,
    review_form: bool,
    extra: &str,
) -> Response {
    let not_found = |why: &str| {
        page(
            StatusCode::NOT_FOUND,
            "Not found",
            Some(session),
            &format!("<p class=\"error\">{}</p>", esc(why)),
        )
    };
    let Ok(rid) = id.parse::<RequestId>() else {
        return not_found("That is not a request id.");
    };
    let r = match s.find(rid).await {
        Ok(r) => r,
        Err(e) => return not_found(&e.message),
    };
    let v = s.view(&r);
    let state = v.status.word();
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{}</h1><p><span class=\"status {state}\" id=\"status\">{state}</span></p>",
        esc(&r.action.name)
    );
    if let Some((class, text)) = message {
        let _ = write!(b, "<p class=\"{class}\" id=\"message\">{}</p>", esc(text));
    }
    b.push_str("<table id=\"context\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(b, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("Policy", esc(&r.action.policy));
    row("Rule", esc(&r.requirement.rule));
    row("Requested by", esc(&r.context.requester.id));
    if let Some(p) = &r.context.on_behalf_of {
        row("On behalf of", esc(&p.id));
    }
    if let Some(t) = &r.context.trigger {
        row("Trigger", esc(t));
    }
    if let Some(t) = &r.context.reason {
        row("Reason", esc(t));
    }
    let digest = r.action.digest.to_hex();
    row(
        "Digest",
        format!(
            "<span class=\"mono\"><b>{}</b>{}</span>",
            &digest[..12],
            &digest[12..]
        ),
    );
    if let Some(args) = r.action.args.as_object() {
        for (k, val) in args {
            row(&format!("Argument <code>{}</code>", esc(k)), show_arg(val));
        }
    }
    if r.is_pending() {
        row("Still needed", esc(&v.still_needed));
        let may: Vec<String> = v.may_approve.iter().map(|m| esc(m)).collect();
        row("May approve", may.join(", "));
    }
    row("Requested at", esc(&r.created_at.to_string()));
    row("Expires", esc(&r.expires_at.to_string()));
    if let Some(d) = r.decision() {
        row("Decision", esc(&d.to_string()));
    }
    for rv in &r.reviews {
        let verb = match rv.review.decision {
            ReviewDecision::Approve => "approved",
            ReviewDecision::Deny => "denied",
        };
        row(
            "Review",
            format!(
                "{} {verb} at {}{}",
                esc(&rv.review.reviewer.id),
                esc(&rv.review.at.to_string()),
                rv.review
                    .comment
                    .as_deref()
                    .map_or_else(String::new, |c| format!(": {}", esc(c)))
            ),
        );
    }
    b.push_str("</table>");
    if let Some(log) = &s.inner.audit_log {
        b.push_str(&audit_section(log.as_ref(), rid).await);
    }
    if r.is_pending() && !extra.is_empty() {
        b.push_str(extra);
    }
    if r.is_pending() && review_form {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/console/requests/{id}/review\" class=\"review\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"digest\" value=\"{digest}\">\
             <p><label for=\"comment\">Comment (required to deny)</label><br>\
             <textarea id=\"comment\" name=\"comment\"></textarea></p>\
             <button type=\"submit\" name=\"verdict\" value=\"approve\" class=\"approve\" id=\"approve\">Approve</button> \
             <button type=\"submit\" name=\"verdict\" value=\"deny\" class=\"deny\" id=\"deny\">Deny</button></form>",
            id = r.id,
            csrf = esc(&session.csrf),
        );
    }
    page(status, &r.action.name, Some(session), &b)
}

pub(crate) async fn review(
    State(s): State<ApprovalService>,
    who: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<ReviewForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let session = who.session;
    let Ok(Form(f)) = form else {
        return render_detail(
            &s,
            &session,
            &id,
            StatusCode::BAD_REQUEST,
            Some(("error", "The form was incomplete.")),
        )
        .await;
    };
    if !same(&session.csrf, &f.csrf) {
        return render_detail(
            &s,
            &session,
            &id,
            StatusCode::FORBIDDEN,
            Some((
                "error",
                "The form did not come from this session; reload and try again.",
            )),
        )
        .await;
    }
    let verdict = match f.verdict.as_str() {
        "approve" => ReviewDecision::Approve,
        "deny" => ReviewDecision::Deny,
        _ => {
            return render_detail(
                &s,
                &session,
                &id,
                StatusCode::BAD_REQUEST,
                Some(("error", "Choose approve or deny.")),
            )
            .await;
        }
    };
    let comment = Some(f.comment.trim().to_owned()).filter(|c| !c.is_empty());
    if verdict == ReviewDecision::Deny && comment.is_none() {
        return render_detail(
            &s,
            &session,
            &id,
            StatusCode::BAD_REQUEST,
            Some(("error", "Say why you deny it.")),
        )
        .await;
    }
    let (Ok(rid), Ok(digest)) = (id.parse::<RequestId>(), f.digest.parse()) else {
        return render_detail(
            &s,
            &session,
            &id,
            StatusCode::BAD_REQUEST,
            Some(("error", "The form was altered.")),
        )
        .await;
    };
    let review = Review {
        request_id: rid,
        digest,
        reviewer: session.principal.clone(),
        decision: verdict,
        comment,
        at: s.gate().clock().now(),
        evidence: Evidence::Other {
            channel: "console".into(),
            details: json!({ "method": "session" }),
        },
        grant: None,
    };
    submit(&s, &session, &id, review, || {}).await
}

/// Submits a review from the console and shows the request with the outcome; `on_refused`
/// runs when the review decided nothing.
async fn submit(
    s: &ApprovalService,
    session: &Session,
    id: &str,
    review: Review,
    on_refused: impl FnOnce(),
) -> Response {
    match s.gate().submit_review(review).await {
        Ok(r) => {
            let word = r.decision().map_or("recorded; still pending", |d| d.word());
            let notice = format!("Your review is in: {word}.");
            render_detail(s, session, id, StatusCode::OK, Some(("notice", &notice))).await
        }
        Err(e) => {
            on_refused();
            let status = match e.refusal() {
                Some(approvals_core::Refusal::SelfApproval { .. })
                | Some(approvals_core::Refusal::NotEligible { .. }) => StatusCode::FORBIDDEN,
                Some(_) => StatusCode::CONFLICT,
                None => StatusCode::SERVICE_UNAVAILABLE,
            };
            render_detail(s, session, id, status, Some(("error", &e.to_string()))).await
        }
    }
}

/// The request's audit records, and how each is proven in the signed log.
async fn audit_section(log: &dyn super::AuditLog, id: RequestId) -> String {
    let proof = match super::proof::prove(log, id).await {
        Ok(p) => p,
        Err(e) => {
            return format!(
                "<p class=\"error\">The audit log could not be read: {}</p>",
                esc(&e)
            );
        }
    };
    let size = proof.tree_size;
    let root = &proof.root;
    let mut b = format!(
        "<h2>Audit trail</h2><p id=\"audit-summary\">{}</p><table id=\"audit\">\
         <tr><th>Record</th><th>Event</th><th>Proof</th></tr>",
        if proof.checkpoint.is_some() {
            format!(
                "Proven against the signed checkpoint of the first {size} records (root <code>{}…</code>).",
                esc(&root[..root.len().min(16)])
            )
        } else {
            format!("No checkpoint is signed yet: the {size} records are proven once one is.")
        }
    );
    for r in &proof.records {
        let event = serde_json::from_str::<serde_json::Value>(&r.record)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
        let proven = match &r.inclusion_proof {
            Some(p) => format!("inclusion proof, {} hashes", p.len()),
            None => "not yet covered by a checkpoint".to_owned(),
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.seq,
            esc(&event),
            esc(&proven)
        );
    }
    b.push_str("</table>");
    b
}

fn link_refused(session: Option<&Session>, e: &super::links::LinkError) -> Response {
    let status = match e {
        super::links::LinkError::Invalid => StatusCode::BAD_REQUEST,
        _ => StatusCode::GONE,
    };
    page(
        status,
        "Link",
        session,
        &format!(
            "<p class=\"error\" id=\"link-error\">{}.</p>",
            esc(&e.to_string())
        ),
    )
}

/// Whether `link` was used: in this process (also while its review is being submitted), or
/// by a review the store holds, which a restarted process or another replica sharing the
/// database sees too. A store error counts as used: refuse rather than guess.
async fn link_used(s: &ApprovalService, link: &super::links::Link) -> bool {
    if s.inner.used_links.is_used(link) {
        return true;
    }
    match s.gate().request(link.request_id).await {
        Ok(Some(r)) => r.reviews.iter().any(|r| match &r.review.evidence {
            Evidence::Other { details, .. } => {
                details["method"] == "signed_link" && details["nonce"] == link.nonce.as_str()
            }
            _ => false,
        }),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(request = %link.request_id, error = %e, "console: could not read the request of a link");
            true
        }
    }
}

/// Opens a link from a Teams card: checks it, then asks the signed-in reviewer to confirm.
pub(crate) async fn link(
    State(s): State<ApprovalService>,
    MaybeSignedIn(who): MaybeSignedIn,
    Path(token): Path<String>,
) -> Response {
    let session = who.map(|w| w.session);
    let Some(key) = &s.inner.link_key else {
        return Redirect::to("/console").into_response();
    };
    let link = match key.open(&token, s.gate().clock().now()) {
        Ok(l) => l,
        Err(e) => return link_refused(session.as_ref(), &e),
    };
    if link_used(&s, &link).await {
        return link_refused(session.as_ref(), &super::links::LinkError::Used);
    }
    let Some(session) = session else {
        return login_page_to(&s, StatusCode::OK, None, &format!("/console/links/{token}"));
    };
    let verb = match link.verdict {
        ReviewDecision::Approve => "approve",
        ReviewDecision::Deny => "deny",
    };
    let reason = if link.verdict == ReviewDecision::Deny {
        "<p><label for=\"comment\">Why (required)</label><br><textarea id=\"comment\" name=\"comment\" required></textarea></p>"
    } else {
        "<p><label for=\"comment\">Comment</label><br><textarea id=\"comment\" name=\"comment\"></textarea></p>"
    };
    let confirm = format!(
        "<form method=\"post\" action=\"/console/links/{token}\" class=\"review\">\
         <p>You are about to <b>{verb}</b> this request as <b>{who}</b>.</p>{reason}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" id=\"confirm\" class=\"{verb}\">Confirm: {verb}</button></form>",
        token = esc(&token),
        who = esc(&session.principal.id),
        csrf = esc(&session.csrf),
    );
    render_detail_with(
        &s,
        &session,
        &link.request_id.to_string(),
        StatusCode::OK,
        None,
        false,
        &confirm,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct LinkForm {
    csrf: String,
    #[serde(default)]
    comment: String,
}

/// Confirms a link's decision: spends the link, submits the review.
pub(crate) async fn link_confirm(
    State(s): State<ApprovalService>,
    MaybeSignedIn(who): MaybeSignedIn,
    Path(token): Path<String>,
    form: Result<Form<LinkForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(session) = who.map(|w| w.session) else {
        return login_page_to(
            &s,
            StatusCode::UNAUTHORIZED,
            None,
            &format!("/console/links/{token}"),
        );
    };
    let (Some(key), Ok(Form(f))) = (&s.inner.link_key, form) else {
        return link_refused(Some(&session), &super::links::LinkError::Invalid);
    };
    if !same(&session.csrf, &f.csrf) {
        return page(
            StatusCode::FORBIDDEN,
            "Link",
            Some(&session),
            "<p class=\"error\">The form did not come from this session; open the link again.</p>",
        );
    }
    let now = s.gate().clock().now();
    let link = match key.open(&token, now) {
        Ok(l) => l,
        Err(e) => return link_refused(Some(&session), &e),
    };
    let comment = Some(f.comment.trim().to_owned()).filter(|c| !c.is_empty());
    if link.verdict == ReviewDecision::Deny && comment.is_none() {
        return page(
            StatusCode::BAD_REQUEST,
            "Link",
            Some(&session),
            "<p class=\"error\">Say why you deny it; open the link again.</p>",
        );
    }
    if link_used(&s, &link).await || !s.inner.used_links.spend(&link, now) {
        return link_refused(Some(&session), &super::links::LinkError::Used);
    }
    let review = Review {
        request_id: link.request_id,
        digest: link.digest,
        reviewer: session.principal.clone(),
        decision: link.verdict,
        comment,
        at: now,
        evidence: Evidence::Other {
            channel: "teams".into(),
            details: json!({ "method": "signed_link", "nonce": link.nonce, "console_session": true }),
        },
        grant: None,
    };
    let id = link.request_id.to_string();
    // A refused review decided nothing: the link stays usable by someone who may.
    submit(&s, &session, &id, review, || {
        s.inner.used_links.release(&link)
    })
    .await
}

/// Where sign-in sends the reviewer: back to the console page they came from, when `next`
/// is one (a same-site path under `/console/` of safe characters), else `/console`. Never
/// an open redirect, and never a header value that cannot be sent (CR, LF, controls).
pub(crate) fn safe_next(next: &str) -> &str {
    let safe = next.starts_with("/console/")
        && next.len() <= 512
        && !next.contains("//")
        && next
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~?=&%".contains(&b));
    if safe { next } else { "/console" }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    /// Issue 14, hole 8: a `next` holding CR/LF answered 500 (the redirect's header could
    /// not be built).
    #[test]
    fn only_safe_console_paths_are_followed() {
        for ok in [
            "/console/requests/01J0000000000000000000000",
            "/console/history?x=1",
        ] {
            assert_eq!(safe_next(ok), ok);
        }
        for bad in [
            "/console/\r\nSet-Cookie: x=1",
            "/console/a\nb",
            "//evil.example/console/",
            "https://evil.example/console/",
            "/console//evil.example",
            "/console/\\evil",
            "/console/\u{202e}",
            "/api/v1/requests",
            "",
        ] {
            assert_eq!(safe_next(bad), "/console", "{bad:?}");
        }
    }
}

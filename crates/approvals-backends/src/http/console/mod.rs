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
//! The pages are maud templates in [`pages`], checked when the crate compiles and escaping
//! every value they show; the handlers here only decide which page, with what status.

mod pages;

use approvals_core::store::Session;
use approvals_core::{Evidence, RequestId, Review, ReviewDecision, StoreError};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::Markup;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::ApprovalService;
use super::session::{ClientAddr, LOGIN_COOKIE, MaybeSignedIn, SESSION_COOKIE, SignedIn, random};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The page shown when the store cannot be reached.
pub(crate) fn unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %e, "console: the store is unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        None,
        &pages::error("The approval service cannot reach its store; try again shortly."),
    )
}

/// A complete page with the console's security headers.
fn page(status: StatusCode, title: &str, who: Option<&Session>, body: &Markup) -> Response {
    let html = pages::layout(title, who, body).into_string();
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

const STYLE: &str = include_str!("style.css");

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
    /// `set:NAME` fields: new values for editable arguments.
    #[serde(flatten)]
    fields: std::collections::BTreeMap<String, String>,
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
    let body = pages::login(error, &csrf, next);
    let jar =
        CookieJar::new().add(s.cookie(LOGIN_COOKIE, csrf, std::time::Duration::from_secs(600)));
    (jar, page(status, "Sign in", None, &body)).into_response()
}

pub(crate) async fn index(State(s): State<ApprovalService>, who: SignedIn) -> Response {
    let session = who.session;
    let open = match s.gate().pending().await {
        Ok(o) => o,
        Err(e) => {
            let body = pages::error(&e.to_string());
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                Some(&session),
                &body,
            );
        }
    };
    let views: Vec<_> = open.iter().map(|r| s.view(r)).collect();
    let body = pages::waiting(&views, &session.principal.id);
    page(StatusCode::OK, "Waiting for review", Some(&session), &body)
}

pub(crate) async fn history(State(s): State<ApprovalService>, who: SignedIn) -> Response {
    let session = who.session;
    let body = match s.gate().decided(200).await {
        Ok(decided) => pages::history(&decided),
        Err(e) => {
            let body = pages::error(&e.to_string());
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "History",
                Some(&session),
                &body,
            );
        }
    };
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
    render_detail_with(s, session, id, status, message, None).await
}

/// The request page; with `confirm`, that form (a link's confirmation) in place of the
/// review form.
async fn render_detail_with(
    s: &ApprovalService,
    session: &Session,
    id: &str,
    status: StatusCode,
    message: Option<(&str, &str)>,
    confirm: Option<Markup>,
) -> Response {
    let not_found = |why: &str| {
        page(
            StatusCode::NOT_FOUND,
            "Not found",
            Some(session),
            &pages::error(why),
        )
    };
    let Ok(rid) = id.parse::<RequestId>() else {
        return not_found("That is not a request id.");
    };
    let r = match s.find(rid).await {
        Ok(r) => r,
        Err(e) => return not_found(&e.message),
    };
    let audit = match &s.inner.audit_log {
        Some(log) => {
            let proof = super::proof::prove(log.as_ref(), rid).await;
            Some(pages::audit(proof.as_ref().map_err(String::as_str)))
        }
        None => None,
    };
    let review_csrf = confirm.is_none().then_some(session.csrf.as_str());
    let detail = pages::Detail {
        message,
        audit,
        confirm,
        review_csrf,
    };
    let body = pages::request(&s.view(&r), detail);
    page(status, &r.action.name, Some(session), &body)
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
        "approve" | "edit" => ReviewDecision::Approve,
        "deny" => ReviewDecision::Deny,
        "request_changes" => ReviewDecision::RequestChanges,
        _ => {
            return render_detail(
                &s,
                &session,
                &id,
                StatusCode::BAD_REQUEST,
                Some(("error", "Choose approve, request changes or deny.")),
            )
            .await;
        }
    };
    let comment = Some(f.comment.trim().to_owned()).filter(|c| !c.is_empty());
    let needs = match verdict {
        ReviewDecision::Deny => Some("Say why you deny it."),
        ReviewDecision::RequestChanges => Some("Say what to change."),
        ReviewDecision::Approve => None,
    };
    if let (Some(needs), None) = (needs, &comment) {
        return render_detail(
            &s,
            &session,
            &id,
            StatusCode::BAD_REQUEST,
            Some(("error", needs)),
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
    let set = if f.verdict == "edit" {
        let edited = match s.find(rid).await {
            Ok(current) => crate::shown::typed_edits(
                &current,
                f.fields
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("set:")?, v.as_str()))),
            ),
            Err(e) => Err(e.message),
        };
        match edited {
            Ok(set) => Some(set),
            Err(why) => {
                return render_detail(
                    &s,
                    &session,
                    &id,
                    StatusCode::BAD_REQUEST,
                    Some(("error", &why)),
                )
                .await;
            }
        }
    } else {
        None
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
        set,
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
        // An approval with changes answers with the edited call: show that.
        Ok(r)
            if r.edit_of
                .as_ref()
                .is_some_and(|e| e.original.to_string() == id) =>
        {
            let word = r.decision().map_or("pending", |d| d.word());
            let notice = format!(
                "Approved with changes: this is the edited call, {word}; yours is its first approval."
            );
            let edit = r.id.to_string();
            render_detail(s, session, &edit, StatusCode::OK, Some(("notice", &notice))).await
        }
        Ok(r) => {
            let word = r.decision().map_or("recorded; still pending", |d| d.word());
            let notice = format!("Your review is in: {word}.");
            render_detail(s, session, id, StatusCode::OK, Some(("notice", &notice))).await
        }
        Err(e) => {
            on_refused();
            let status = e.refusal().map_or(StatusCode::SERVICE_UNAVAILABLE, |r| {
                super::api::refusal_status(r).0
            });
            render_detail(s, session, id, status, Some(("error", &e.to_string()))).await
        }
    }
}

fn link_refused(session: Option<&Session>, e: &super::links::LinkError) -> Response {
    let status = match e {
        super::links::LinkError::Invalid => StatusCode::BAD_REQUEST,
        _ => StatusCode::GONE,
    };
    page(status, "Link", session, &pages::link_error(&e.to_string()))
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
    let confirm = pages::confirm_link(&token, link.verdict, &session.principal.id, &session.csrf);
    render_detail_with(
        &s,
        &session,
        &link.request_id.to_string(),
        StatusCode::OK,
        None,
        Some(confirm),
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
            &pages::error("The form did not come from this session; open the link again."),
        );
    }
    let now = s.gate().clock().now();
    let link = match key.open(&token, now) {
        Ok(l) => l,
        Err(e) => return link_refused(Some(&session), &e),
    };
    let comment = Some(f.comment.trim().to_owned()).filter(|c| !c.is_empty());
    if link.verdict != ReviewDecision::Approve && comment.is_none() {
        return page(
            StatusCode::BAD_REQUEST,
            "Link",
            Some(&session),
            &pages::error("Say why (or what to change); open the link again."),
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
        set: None,
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

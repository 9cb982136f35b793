//! `/api/v1`: list, read, review and cancel approval requests.

use approvals_core::signed::{SignatureRefusal, SignedDecision};
use std::time::Duration;

use approvals_core::view::RequestView;
use approvals_core::{
    ApprovalRequest, Digest, Evidence, Principal, RequestId, Review, ReviewDecision, StoreError,
    SubmitError,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApprovalService;
use super::auth::TokenEntry;
use super::error::ApiError;

/// The OpenAPI 3.1 description of these routes, as checked in.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

pub(crate) async fn health(State(s): State<ApprovalService>) -> Result<Json<Value>, ApiError> {
    // A read of a request that cannot exist: proves the store answers, costs one lookup.
    s.gate()
        .request(RequestId::generate())
        .await
        .map_err(|e| ApiError::unavailable("store_unavailable", e.to_string()))?;
    Ok(Json(json!({ "status": "ok" })))
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The query of `GET /requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `pending` (the default) or `decided` (the history, newest first).
    status: Option<String>,
    policy: Option<String>,
    action: Option<String>,
    requester: Option<String>,
    /// Only requests the caller may still approve.
    #[serde(default)]
    reviewable: bool,
    limit: Option<usize>,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub(crate) async fn list(
    State(s): State<ApprovalService>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let me = s.token(&headers)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let found = match q.status.as_deref() {
        None | Some("pending") => s.gate().pending().await,
        Some("decided") => s.gate().decided(MAX_LIMIT).await,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("status is `pending` or `decided`, not `{other}`"),
            ));
        }
    }
    .map_err(store_error)?;
    let mut out = Vec::new();
    for r in found {
        // A requester's token sees its own requests only.
        let readable = me.roles.review || r.context.requester.same_party(&me.principal);
        if !readable
            || q.policy.as_ref().is_some_and(|p| *p != r.action.policy)
            || q.action.as_ref().is_some_and(|a| *a != r.action.name)
            || q.requester
                .as_ref()
                .is_some_and(|p| !approvals_core::principal::same_id(p, &r.context.requester.id))
        {
            continue;
        }
        let v = s.view(&r);
        if q.reviewable && !v.may_approve.iter().any(|id| *id == me.principal.id) {
            continue;
        }
        out.push(v);
        if out.len() == limit {
            break;
        }
    }
    Ok(Json(json!({ "requests": out })))
}

/// The query of `GET /requests/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    /// Hold the answer until the request is decided, or this many seconds pass.
    wait: Option<f64>,
}

pub(crate) async fn get_one(
    State(s): State<ApprovalService>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<GetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let me = s.token(&headers)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let id = parse_id(&id)?;
    let mut r = s.find(id).await?;
    if !me.roles.review && !r.context.requester.same_party(&me.principal) {
        // Another requester's request is none of this token's business: as if absent.
        return Err(ApiError::not_found(format!("no approval request {id}")));
    }
    let wait = s.capped_wait(q.wait)?;
    if r.is_pending() && !wait.is_zero() {
        r = s
            .gate()
            .await_decision(id, wait)
            .await
            .map_err(gate_error)?;
    }
    let mut v = serde_json::to_value(s.view(&r)).map_err(|e| {
        ApiError::unavailable("unavailable", format!("the request cannot be shown: {e}"))
    })?;
    if let Some(log) = &s.inner.audit_log {
        let proof = super::proof::prove(log.as_ref(), id)
            .await
            .map_err(|e| ApiError::unavailable("audit_unavailable", e))?;
        v["audit"] = serde_json::to_value(proof).map_err(|e| {
            ApiError::unavailable(
                "audit_unavailable",
                format!("the proof cannot be shown: {e}"),
            )
        })?;
    }
    Ok(Json(v))
}

/// The body of `POST /requests/{id}/reviews`: either a verdict by a bearer-token reviewer, or
/// a decision the reviewer signed with their key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    verdict: Option<ReviewDecision>,
    digest: Option<Digest>,
    comment: Option<String>,
    /// New values for editable arguments: approve the call changed so.
    set: Option<serde_json::Map<String, Value>>,
    signed: Option<SignedDecision>,
}

pub(crate) async fn review(
    State(s): State<ApprovalService>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: ReviewBody = json_body(body)?;
    let id = parse_id(&id)?;
    let review = match body.signed {
        Some(signed) => {
            if body.verdict.is_some()
                || body.digest.is_some()
                || body.comment.is_some()
                || body.set.is_some()
            {
                return Err(ApiError::bad_request(
                    "bad_review",
                    "a signed review carries its verdict, digest, comment and set inside `signed`",
                ));
            }
            s.signed_review(id, signed).await?
        }
        None => {
            let reviewer = s.reviewer(&headers)?;
            let verdict = body.verdict.ok_or_else(|| {
                ApiError::bad_request(
                    "bad_review",
                    "`verdict` is required: approve, deny or request_changes",
                )
            })?;
            let digest = body.digest.ok_or_else(|| {
                ApiError::bad_request(
                    "bad_review",
                    "`digest` is required: the digest of the call you reviewed",
                )
            })?;
            if let Some(why) = comment_needed(verdict, body.comment.as_deref()) {
                return Err(ApiError::bad_request("reason_required", why));
            }
            if body.set.is_some() && verdict != ReviewDecision::Approve {
                return Err(ApiError::bad_request(
                    "bad_review",
                    "`set` edits the call as you approve it: it goes with `\"verdict\": \"approve\"` only",
                ));
            }
            // An unknown request is the gate's to report (404), not a read of our own.
            Review {
                request_id: id,
                digest,
                reviewer,
                decision: verdict,
                comment: body.comment,
                at: s.gate().clock().now(),
                evidence: Evidence::Other {
                    channel: "api".into(),
                    details: json!({ "method": "bearer" }),
                },
                grant: None,
                set: body.set,
            }
        }
    };
    let r = s.gate().submit_review(review).await.map_err(submit_error)?;
    Ok(Json(json!(s.view(&r))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

pub(crate) async fn cancel(
    State(s): State<ApprovalService>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let me = s.token(&headers)?.principal;
    let body: CancelBody = match &body {
        Ok(b) if b.is_empty() => CancelBody::default(),
        _ => json_body(body)?,
    };
    let id = parse_id(&id)?;
    let r = s.find(id).await?;
    if r.context.role_of(&me.id).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_requester",
            format!(
                "only the requester ({}) or whom it acts for may cancel a request",
                r.context.requester.id
            ),
        ));
    }
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("cancelled by {} over the API", me.id));
    let cancelled = s
        .gate()
        .cancel(id, Some(me.clone()), &reason)
        .await
        .map_err(|e| match e {
            approvals_core::Error::Audit(e) => {
                ApiError::unavailable("audit_unavailable", e.to_string())
            }
            other => ApiError::unavailable("store_unavailable", other.to_string()),
        })?;
    if cancelled.is_none() {
        let word = r.decision().map_or("decided", |d| d.word());
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_decided",
            format!("the request is already {word}"),
        ));
    }
    let r = s.find(id).await?;
    Ok(Json(json!(s.view(&r))))
}

/// API-wide fallback: unknown paths under `/api/v1` get a JSON 404.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

impl ApprovalService {
    /// The entry of the bearer token presented, or 401.
    pub(crate) fn token(&self, headers: &HeaderMap) -> Result<TokenEntry, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthenticated(
                "unauthenticated",
                "send `Authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "unauthenticated",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        match self.inner.tokens.authenticate(token) {
            Some(e) => Ok(e.clone()),
            None => {
                tracing::warn!("api: refused an unknown bearer token");
                Err(ApiError::unauthenticated(
                    "invalid_token",
                    "the token is not valid",
                ))
            }
        }
    }

    /// The reviewer a bearer token belongs to: 401 without a valid token, 403 for a token
    /// that may not review.
    pub(crate) fn reviewer(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let e = self.token(headers)?;
        if !e.roles.review {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_role",
                format!(
                    "{}'s token may make requests, not review them",
                    e.principal.id
                ),
            ));
        }
        Ok(e.principal)
    }

    /// The requester a bearer token belongs to: 401 without a valid token, 403 for a token
    /// that may not make requests.
    pub(crate) fn requester(&self, headers: &HeaderMap) -> Result<TokenEntry, ApiError> {
        let e = self.token(headers)?;
        if !e.roles.request {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_role",
                format!(
                    "{}'s token may review requests, not make them (a requester token has role = \"request\")",
                    e.principal.id
                ),
            ));
        }
        Ok(e)
    }

    /// How long a long-poll may hold its answer: what was asked, capped by the service.
    pub(crate) fn capped_wait(&self, asked: Option<f64>) -> Result<Duration, ApiError> {
        let Some(secs) = asked else {
            return Ok(Duration::ZERO);
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(ApiError::bad_request(
                "bad_wait",
                "`wait` is a number of seconds, 0 or more",
            ));
        }
        Ok(Duration::from_secs_f64(
            secs.min(self.inner.max_wait.as_secs_f64()),
        ))
    }

    async fn signed_review(
        &self,
        id: RequestId,
        signed: SignedDecision,
    ) -> Result<Review, ApiError> {
        if signed.request_id != id {
            return Err(ApiError::bad_request(
                "bad_review",
                format!(
                    "the decision is signed for request {}, not {id}",
                    signed.request_id
                ),
            ));
        }
        let gate = self.gate();
        let checked = self
            .inner
            .signatures
            .check(&signed, gate.directory(), gate.clock().now());
        let (reviewer, key) = match checked {
            Ok(k) => k,
            Err(refusal) => {
                // Audited against the request when it exists: auditors want the attempts.
                let recorded = gate
                    .record_unauthenticated(id, "api", Some(&signed.reviewer), &refusal.to_string())
                    .await;
                if let Err(e) = recorded {
                    tracing::error!(request = %id, error = %e, "could not audit a refused signature");
                }
                let code = match refusal {
                    SignatureRefusal::Stale { .. } => "stale_signature",
                    SignatureRefusal::Replayed => "replayed_signature",
                    SignatureRefusal::UnknownKey { .. } => "unknown_reviewer",
                    _ => "bad_signature",
                };
                return Err(ApiError::unauthenticated(code, refusal.to_string()));
            }
        };
        if let Some(why) = comment_needed(signed.verdict, signed.comment.as_deref()) {
            return Err(ApiError::bad_request("reason_required", why));
        }
        Ok(signed.into_review(reviewer, &key, "api"))
    }

    pub(crate) async fn find(&self, id: RequestId) -> Result<ApprovalRequest, ApiError> {
        self.gate()
            .request(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("no approval request {id}")))
    }

    /// A request as the API, the CLI and the console show it.
    pub(crate) fn view(&self, r: &ApprovalRequest) -> RequestView {
        let gate = self.gate();
        RequestView::of(
            r,
            gate.directory(),
            gate.clock().now(),
            self.inner.public_url.as_deref(),
        )
    }
}

pub(crate) fn blank(s: Option<&str>) -> bool {
    s.is_none_or(|c| c.trim().is_empty())
}

pub(crate) fn parse_id(s: &str) -> Result<RequestId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request("bad_request_id", format!("`{s}` is not a request id")))
}

/// Reads a JSON body, mapping each failure to its status: 413 over the limit, 400 with
/// serde's line and column for anything that is not the expected JSON.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {} bytes", super::MAX_BODY),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid: {e}")))
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::UnknownRequest(id) => ApiError::not_found(format!("no approval request {id}")),
        other => ApiError::unavailable("store_unavailable", other.to_string()),
    }
}

/// A gate's error as the API answers it.
pub(crate) fn gate_error(e: approvals_core::Error) -> ApiError {
    use approvals_core::Error as E;
    match e {
        E::Denied(d) => {
            ApiError::new(StatusCode::FORBIDDEN, "denied", d.to_string()).with("denial", &d)
        }
        E::Store(e) => store_error(e),
        E::Audit(e) => ApiError::unavailable("audit_unavailable", e.to_string()),
        E::Policy(approvals_core::PolicyError::UnknownPolicy(p)) => ApiError::bad_request(
            "unknown_policy",
            format!("no policy named `{p}` is configured"),
        ),
        E::Policy(e) => ApiError::unavailable("policy_unavailable", e.to_string()),
        E::Arguments(e) => ApiError::bad_request("bad_args", e.to_string()),
        E::Context(e) => ApiError::bad_request("bad_context", e.to_string()),
        E::Delivery { .. } => ApiError::unavailable("delivery_failed", e.to_string()),
        E::AlreadyRan { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already_started", e.to_string())
        }
        E::NotApproved { status, .. } => {
            ApiError::new(StatusCode::CONFLICT, "not_approved", e.to_string())
                .with("status", status)
        }
        E::NotStarted { .. } => ApiError::new(StatusCode::CONFLICT, "not_started", e.to_string()),
        E::NotRequester { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "not_requester", e.to_string())
        }
        E::Expired { .. } => ApiError::new(StatusCode::CONFLICT, "expired", e.to_string()),
        E::Cancelled { .. } => ApiError::new(StatusCode::CONFLICT, "cancelled", e.to_string()),
        E::ChangesRequested {
            ref by,
            ref message,
            ..
        } => {
            let changes = serde_json::json!({ "by": by, "message": message });
            ApiError::new(StatusCode::CONFLICT, "changes_requested", e.to_string())
                .with("changes", &changes)
        }
        other => ApiError::unavailable("unavailable", other.to_string()),
    }
}

/// Why a review needs a `comment` it lacks: a denial says why, a request for changes says
/// what to change.
fn comment_needed(verdict: ReviewDecision, comment: Option<&str>) -> Option<&'static str> {
    if !blank(comment) {
        return None;
    }
    match verdict {
        ReviewDecision::Deny => Some("a denial needs a `comment` saying why"),
        ReviewDecision::RequestChanges => {
            Some("asking for changes needs a `comment` saying what to change")
        }
        ReviewDecision::Approve => None,
    }
}

/// 403 when the policy denies the edited call, 422 when the edit itself is wrong (an
/// argument that is not editable, a value of the wrong kind), 409 otherwise.
fn edit_status(refusal: &approvals_core::EditRefusal) -> StatusCode {
    use approvals_core::EditRefusal as E;
    match refusal {
        E::Denied { .. } => StatusCode::FORBIDDEN,
        E::NotEditable { .. } | E::WrongType { .. } | E::Empty | E::Invalid { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::CONFLICT,
    }
}

/// The status and code a refused review answers with, on the API and in the console.
pub(super) fn refusal_status(r: &approvals_core::Refusal) -> (StatusCode, &'static str) {
    use approvals_core::Refusal;
    match r {
        Refusal::SelfApproval { .. } => (StatusCode::FORBIDDEN, "self_approval"),
        Refusal::NotEligible { .. } => (StatusCode::FORBIDDEN, "not_eligible"),
        Refusal::Duplicate { .. } => (StatusCode::CONFLICT, "duplicate_review"),
        Refusal::DigestMismatch { .. } => (StatusCode::CONFLICT, "digest_mismatch"),
        // However the expiry was noticed (by this review or before it), it reads the same
        // to the client.
        Refusal::AlreadyDecided { decision } if decision == "expired" => {
            (StatusCode::CONFLICT, "expired")
        }
        Refusal::AlreadyDecided { .. } => (StatusCode::CONFLICT, "already_decided"),
        Refusal::Expired { .. } => (StatusCode::CONFLICT, "expired"),
        Refusal::NoChangesGiven => (StatusCode::BAD_REQUEST, "reason_required"),
        Refusal::Edit { refusal } => (edit_status(refusal), "edit_refused"),
        _ => (StatusCode::BAD_REQUEST, "review_refused"),
    }
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Refused(r) => {
            let (status, code) = refusal_status(&r);
            ApiError::new(status, code, r.to_string())
        }
        SubmitError::Store(e) => store_error(e),
        SubmitError::Audit(e) => ApiError::unavailable("audit_unavailable", e.to_string()),
        SubmitError::Invalid { message } => ApiError::bad_request("bad_review", message),
        other => ApiError::unavailable("unavailable", other.to_string()),
    }
}

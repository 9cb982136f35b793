//! The requester's side of `/api/v1`: ask for an approval, wait for it, take the one
//! permit, report the end. Agents in any language, pipelines and remote gates use these;
//! the gate judges each call exactly as an in-process one, under the same rules, with the
//! same audit records and the same run-once guarantee.

use std::collections::BTreeMap;

use approvals_core::{
    Action, ApprovalRequest, Context, Decision, Denial, DeniedBy, Principal, Resolution,
    SubmitOptions, Submitted, view::Status,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApprovalService;
use super::api::{gate_error, json_body, parse_id};
use super::error::ApiError;

/// The longest callback URL accepted.
const MAX_CALLBACK_URL: usize = 2048;

/// The body of `POST /api/v1/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    action: String,
    policy: String,
    #[serde(default)]
    args: Option<Value>,
    on_behalf_of: Option<String>,
    reason: Option<String>,
    trigger: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Arguments a reviewer may change when approving.
    #[serde(default)]
    editable: Vec<String>,
    callback_url: Option<String>,
    wait: Option<f64>,
}

/// `POST /api/v1/requests`: judges a call for the token's principal, and answers 200 when it
/// may run (`allowed`, or `approved`: take the permit with `/start`), 202 while it waits,
/// 403 when it is denied and 409 when it expired or was cancelled.
pub(crate) async fn create(
    State(s): State<ApprovalService>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let me = s.requester(&headers)?;
    let body: NewRequest = json_body(body)?;
    let args = match body.args {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::bad_request(
                "bad_args",
                "`args` is a JSON object of the call's arguments by name",
            ));
        }
    };
    let action = body
        .editable
        .iter()
        .fold(
            Action::builder(body.action, body.policy).args(&args),
            |b, e| b.editable(e),
        )
        .build()
        .map_err(|e| ApiError::bad_request("bad_args", e.to_string()))?;
    let mut context = Context::new(me.principal.clone());
    if let Some(who) = body.on_behalf_of {
        // Judged as the gate will name them: another spelling of an allowed person is
        // that person, and nobody else.
        let named = match s.gate().directory().resolve(&who) {
            Resolution::Known(p) => p.id.into(),
            Resolution::Unknown | Resolution::Ambiguous(_) => who.clone(),
        };
        if !me.on_behalf_of.allows(&named) {
            let reason = format!(
                "{}'s token may not make requests on behalf of {named}",
                me.principal.id
            );
            let refused =
                Context::new(me.principal.clone()).on_behalf_of(Principal::human(who.clone()));
            if let Err(e) = s
                .gate()
                .record_refused_call(&action, &refused, &reason)
                .await
            {
                tracing::error!(error = %e, "could not audit a refused request");
            }
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "on_behalf_of_not_allowed",
                reason,
            ));
        }
        context = context.on_behalf_of(Principal::human(who));
    }
    if let Some(r) = body.reason {
        context = context.reason(r);
    }
    if let Some(t) = body.trigger {
        context = context.trigger(t);
    }
    for (k, v) in body.labels {
        context = context.label(k, v);
    }
    let mut options = SubmitOptions::default();
    if let Some(url) = body.callback_url {
        check_callback(&s, &url)?;
        options = options.callback(url);
    }
    let wait = s.capped_wait(body.wait)?;
    let submitted = match s.gate().submit(action, context, options).await {
        Ok(x) => x,
        Err(approvals_core::Error::Policy(approvals_core::PolicyError::UnknownPolicy(p))) => {
            let known = s.gate().policy_names().unwrap_or_default();
            let list: Vec<&str> = known.iter().map(String::as_str).collect();
            return Err(ApiError::bad_request(
                "unknown_policy",
                format!(
                    "no policy named `{p}` is configured; the policies are: {}",
                    list.join(", ")
                ),
            )
            .with("known_policies", &list));
        }
        Err(e) => return Err(gate_error(e)),
    };
    let (request, created) = match submitted {
        Submitted::Allowed { rule, grant } => {
            return Ok((
                StatusCode::OK,
                Json(json!({ "status": "allowed", "rule": rule, "grant": grant })),
            )
                .into_response());
        }
        Submitted::Requested { request, created } => (*request, created),
        other => {
            return Err(ApiError::unavailable(
                "unavailable",
                format!("the gate answered in a way this service does not know: {other:?}"),
            ));
        }
    };
    let request = if request.is_pending() && !wait.is_zero() {
        s.gate()
            .await_decision(request.id, wait)
            .await
            .map_err(gate_error)?
    } else {
        request
    };
    answer(&s, request, Some(created)).await
}

/// The answer for a request as it stands: 202 pending, 200 approved, 403 denied, 409
/// expired or cancelled. A requester told of a negative decision has been told: the next
/// identical call asks again (as an in-process caller that learns it).
async fn answer(
    s: &ApprovalService,
    request: ApprovalRequest,
    created: Option<bool>,
) -> Result<Response, ApiError> {
    let id = request.id;
    let status = Status::of(&request);
    let negative = matches!(status, Status::Denied | Status::Expired | Status::Cancelled);
    let request = if negative {
        s.gate().report_outcome(id).await.map_err(gate_error)?
    } else {
        request
    };
    let mut view = serde_json::to_value(s.view(&request)).map_err(|e| {
        ApiError::unavailable("unavailable", format!("the request cannot be shown: {e}"))
    })?;
    if let Some(c) = created {
        view["created"] = json!(c);
    }
    let error = |code: &'static str, status: StatusCode, message: String| {
        Err(ApiError::new(status, code, message).with("request", &view))
    };
    match request.decision() {
        None => {
            let mut r = (StatusCode::ACCEPTED, Json(view)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/requests/{id}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Some(Decision::Approved { .. }) => Ok((StatusCode::OK, Json(view)).into_response()),
        Some(Decision::Denied { by, reason, .. }) => {
            let denial = Denial {
                by: DeniedBy::Reviewer {
                    reviewer: by.clone(),
                },
                reason: reason.clone(),
                request_id: Some(id),
            };
            Err(
                ApiError::new(StatusCode::FORBIDDEN, "denied", denial.to_string())
                    .with("denial", &denial)
                    .with("request", &view),
            )
        }
        Some(Decision::Expired { .. }) => error(
            "expired",
            StatusCode::CONFLICT,
            format!("approval request {id} expired without a decision"),
        ),
        Some(Decision::ChangesRequested { by, message, .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "changes_requested",
            format!(
                "{} asked for changes to approval request {id}: {message}",
                by.id
            ),
        )
        .with("changes", json!({ "by": by.id, "message": message }))
        .with("request", &view)),
        Some(Decision::Cancelled { reason, .. }) => error(
            "cancelled",
            StatusCode::CONFLICT,
            format!("approval request {id} was cancelled: {reason}"),
        ),
        // A reviewer changed the call: the answer is the edit's (its own id, its own
        // arguments), which says where it came from in `request.edit_of`. Once the edit is
        // decided its requester has been told, and the identical call asks afresh.
        Some(Decision::Edited { edit, .. }) => {
            let edited = s.find(*edit).await?;
            let decided = !edited.is_pending();
            let answered = Box::pin(answer(s, edited, created)).await;
            if decided {
                s.gate().report_outcome(id).await.map_err(gate_error)?;
            }
            answered
        }
    }
}

/// A callback URL must be http(s), of a sane length, and the service must be able to sign
/// what it sends there.
fn check_callback(s: &ApprovalService, url: &str) -> Result<(), ApiError> {
    if !s.inner.callbacks {
        return Err(ApiError::bad_request(
            "callbacks_not_configured",
            "this service sends no callbacks: it has no callback signing secret",
        ));
    }
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > MAX_CALLBACK_URL || reqwest::Url::parse(url).is_err() {
        return Err(ApiError::bad_request(
            "bad_callback_url",
            format!("`callback_url` is an http(s) URL of at most {MAX_CALLBACK_URL} bytes"),
        ));
    }
    Ok(())
}

/// `POST /api/v1/requests/{id}/start`: takes the one permit of an approved request; the
/// call may then run, once.
pub(crate) async fn start(
    State(s): State<ApprovalService>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let me = s.requester(&headers)?;
    let id = parse_id(&id)?;
    let r = s
        .gate()
        .start(id, &me.principal)
        .await
        .map_err(gate_error)?;
    Ok(Json(json!(s.view(&r))))
}

/// The body of `POST /api/v1/requests/{id}/finish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Finish {
    ok: bool,
    summary: Option<String>,
}

/// `POST /api/v1/requests/{id}/finish`: records how the call ended.
pub(crate) async fn finish(
    State(s): State<ApprovalService>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let me = s.requester(&headers)?;
    let body: Finish = json_body(body)?;
    let id = parse_id(&id)?;
    let outcome = if body.ok {
        Ok(body.summary)
    } else {
        Err(body.summary.unwrap_or_else(|| "failed".into()))
    };
    let r = s
        .gate()
        .finish(id, &me.principal, outcome)
        .await
        .map_err(gate_error)?;
    Ok(Json(json!(s.view(&r))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_refuses_unknown_fields_and_a_requester_field() {
        let ok: Result<NewRequest, _> =
            serde_json::from_str(r#"{"action": "deploy", "policy": "deploy"}"#);
        assert!(ok.is_ok());
        // The requester is the token's, never the body's.
        let forged: Result<NewRequest, _> = serde_json::from_str(
            r#"{"action": "deploy", "policy": "deploy", "requester": "alice"}"#,
        );
        assert!(forged.is_err());
    }
}

//! The REST API: any body, path and query on its routes gets a typed answer, never a panic
//! or a server error.
#![no_main]

use std::sync::OnceLock;

use approvals_backends::http::{ApprovalService, ReviewerTokens, TokenHash};
use approvals_core::RequestId;
use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "apv_fuzz-token-alice";

fn app() -> &'static (axum::Router, RequestId) {
    static APP: OnceLock<(axum::Router, RequestId)> = OnceLock::new();
    APP.get_or_init(|| {
        let _guard = approvals_fuzz::runtime().enter();
        let gate = approvals_fuzz::gate();
        let id = approvals_fuzz::pending(&gate);
        let tokens = ReviewerTokens::new().human(TokenHash::of(TOKEN), "alice");
        let app = ApprovalService::new(gate).tokens(tokens).router();
        (app, id)
    })
}

fuzz_target!(|data: &[u8]| {
    let (app, id) = app();
    let (route, rest) = data.split_first().unwrap_or((&0, &[]));
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once('\n').unwrap_or(("", &text));
    let (method, uri) = match route % 6 {
        0 => ("POST", format!("/api/v1/requests/{id}/reviews")),
        1 => ("POST", format!("/api/v1/requests/{id}/cancel")),
        2 => ("GET", format!("/api/v1/requests?{head}")),
        3 => ("GET", format!("/api/v1/requests/{head}")),
        4 => ("POST", format!("/api/v1/requests/{head}/reviews")),
        _ => ("POST", "/api/v1/requests".to_owned()),
    };
    let Ok(req) = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_owned()))
    else {
        return;
    };
    approvals_fuzz::send(app, req);
});

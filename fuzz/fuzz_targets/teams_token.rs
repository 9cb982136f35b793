//! Teams: the bearer token and the invoke body of `/teams/messages`, through the real
//! endpoint with a published key set; any input is refused or answered, never a panic or a
//! server error.
#![no_main]

use std::sync::OnceLock;

use approvals_backends::teams::{BotAuth, TeamsInvokes};
use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;

/// A published RSA key (public half only) endorsed for `msteams`.
const JWKS: &str = r#"{"keys": [{"kty": "RSA", "use": "sig", "kid": "key-1", "e": "AQAB", "endorsements": ["msteams"],
"n": "vindbQ5FpZ35U1zX5pXbxeb0bemew3bJSZnvXKwf3Hf927JJJ1-p2ysFN4qcW0W4DotDjcXByNoflVRJS4jeRoDBh2JMsSkTteVsJ0mFBeJur8s8DrUvzjM8hGmjOyEQ7AUMpGtMhMwWOtyguAPaJg5IjZbCW7B1vlEhp-IoUDIjwEGgtAt4oKz7zNoHhxnSHsvQIu6GRXE6PFUV20NQVColGFn7W5OimHiUOIbOVFUIsMXBwfFRhtyYLw8gMo0YfBKBUK6866P68iYHfV46Qf_T-iOwxYxH_D0zWMV6E9qWVX9NBveNyfrmFZUqohkHDa-nyNKTm9Wqsbe-KZpeUw"}]}"#;

fn app() -> &'static axum::Router {
    static APP: OnceLock<axum::Router> = OnceLock::new();
    APP.get_or_init(|| {
        let _guard = approvals_fuzz::runtime().enter();
        let gate = approvals_fuzz::gate();
        approvals_fuzz::pending(&gate);
        let auth = BotAuth::from_jwks("app-id", JWKS).expect("the key set parses");
        TeamsInvokes::new(gate, auth).router()
    })
}

fuzz_target!(|data: &[u8]| {
    // The token, a NUL, then the activity.
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let token = String::from_utf8_lossy(&data[..split]).into_owned();
    let body = data.get(split + 1..).unwrap_or(&[]).to_vec();
    let mut req = Request::post("/teams/messages").header("content-type", "application/json");
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("Bearer {token}")) {
        req = req.header("authorization", v);
    }
    let Ok(req) = req.body(Body::from(body)) else {
        return;
    };
    approvals_fuzz::send(app(), req);
});

//! Slack interaction bodies through the real endpoint: any body, correctly signed (so the
//! parser is reached) or with any signature headers, gets an answer, never a panic or a
//! server error.
#![no_main]

use std::sync::OnceLock;

use approvals_backends::slack::{SigningSecret, SlackClient, SlackInteractions};
use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn app() -> &'static axum::Router {
    static APP: OnceLock<axum::Router> = OnceLock::new();
    APP.get_or_init(|| {
        let _guard = approvals_fuzz::runtime().enter();
        let gate = approvals_fuzz::gate();
        approvals_fuzz::pending(&gate);
        // A Slack API nobody listens on: replies fail fast, and are only logged.
        let client = SlackClient::new("xoxb-fuzz").base_url("http://127.0.0.1:9");
        SlackInteractions::new(gate, SigningSecret::new(SECRET), client).router()
    })
}

fuzz_target!(|data: &[u8]| {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    // First byte: 0 signs the rest correctly; anything else takes the headers from the input.
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let (ts, sig, body) = if *mode == 0 {
        let sig = SigningSecret::new(SECRET).sign(&now, rest);
        (now, sig, rest.to_vec())
    } else {
        let text = String::from_utf8_lossy(rest);
        let mut parts = text.splitn(3, '\n');
        let ts = parts.next().unwrap_or("").to_owned();
        let sig = parts.next().unwrap_or("").to_owned();
        (ts, sig, parts.next().unwrap_or("").as_bytes().to_vec())
    };
    let mut req = Request::post("/slack/interactions")
        .header("content-type", "application/x-www-form-urlencoded");
    if let (Ok(ts), Ok(sig)) = (
        axum::http::HeaderValue::from_str(&ts),
        axum::http::HeaderValue::from_str(&sig),
    ) {
        req = req
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig);
    }
    let Ok(req) = req.body(Body::from(body)) else {
        return;
    };
    approvals_fuzz::send(app(), req);
});

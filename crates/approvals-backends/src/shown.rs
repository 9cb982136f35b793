//! How a request's arguments are shown to reviewers on a channel: redacted ones masked.

use approvals_core::ApprovalRequest;
use serde_json::{Value, json};

/// What a redacted argument shows.
pub(crate) const MASK: &str = "•••••• (redacted)";

/// The arguments as shown: redacted ones masked.
pub(crate) fn shown_args(request: &ApprovalRequest) -> Value {
    let a = &request.action;
    match &a.args {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if a.is_redacted(k) {
                        json!(MASK)
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

//! What a request looks like in Slack: Block Kit JSON.

use approvals_core::{ApprovalRequest, Decision, tally};
use serde_json::{Value, json};

/// `action_id` of the Approve button.
pub const APPROVE: &str = "approvals.approve";
/// `action_id` of the Deny button (it opens a modal asking for the reason).
pub const DENY: &str = "approvals.deny";
/// `callback_id` of the deny modal.
pub const DENY_VIEW: &str = "approvals.deny_reason";
/// What a redacted argument shows.
pub const MASK: &str = crate::shown::MASK;

/// The arguments as shown: redacted ones masked.
pub fn shown_args(request: &ApprovalRequest) -> Value {
    crate::shown::shown_args(request)
}

/// The value both buttons carry: the request id and the digest the reviewer saw, so a click
/// on an old message for a changed call is refused.
pub fn button_value(request: &ApprovalRequest) -> String {
    format!("{}:{}", request.id, request.action.digest.to_hex())
}

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The plain-text fallback (notifications, screen readers).
pub fn text(request: &ApprovalRequest) -> String {
    format!(
        "Approval needed: {} wants to run {} ({})",
        request.context.requester.id,
        request.action.name,
        tally::progress(request).still_needed()
    )
}

/// The message: what is asked, by whom, for whom and why, its arguments, the digest prefix,
/// what is still needed and when it expires; then the buttons, or the outcome once decided.
pub fn blocks(request: &ApprovalRequest, outcome: Option<&Decision>) -> Value {
    let a = &request.action;
    let c = &request.context;
    let r = &request.requirement;
    let mut fields = vec![
        json!({ "type": "mrkdwn", "text": format!("*Requester*\n{}", esc(&c.requester.to_string())) }),
        json!({ "type": "mrkdwn", "text": format!("*On behalf of*\n{}", c.on_behalf_of.as_ref().map_or("—".to_owned(), |p| esc(&p.to_string()))) }),
        json!({ "type": "mrkdwn", "text": format!("*Policy / rule*\n`{}` / `{}`", esc(&a.policy), esc(&r.rule)) }),
        json!({ "type": "mrkdwn", "text": format!("*Digest*\n`{}…`", a.digest.short(12)) }),
        json!({ "type": "mrkdwn", "text": format!("*Expires*\n{}", request.expires_at) }),
    ];
    if let Some(t) = &c.trigger {
        fields.push(json!({ "type": "mrkdwn", "text": format!("*Trigger*\n{}", esc(t)) }));
    }
    if let Some(why) = &c.reason {
        fields.push(json!({ "type": "mrkdwn", "text": format!("*Reason*\n{}", esc(why)) }));
    }
    let args = serde_json::to_string_pretty(&shown_args(request)).unwrap_or_default();
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": format!("Approval needed: {}", a.name) } }),
        json!({ "type": "section", "fields": fields }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*Arguments*\n```{}```", esc(&args)) } }),
    ];
    match outcome {
        None => {
            blocks.push(json!({ "type": "context", "elements": [
                { "type": "mrkdwn", "text": format!("Still needed: *{}*", esc(&tally::progress(request).still_needed())) }
            ] }));
            let value = button_value(request);
            blocks.push(json!({
                "type": "actions",
                "block_id": format!("approvals:{}", request.id),
                "elements": [
                    { "type": "button", "style": "primary", "action_id": APPROVE, "value": value,
                      "text": { "type": "plain_text", "text": "Approve" } },
                    { "type": "button", "style": "danger", "action_id": DENY, "value": value,
                      "text": { "type": "plain_text", "text": "Deny…" } }
                ]
            }));
        }
        Some(d) => {
            let icon = match d {
                Decision::Approved { .. } => ":white_check_mark:",
                Decision::Denied { .. } => ":no_entry:",
                Decision::Expired { .. } => ":hourglass:",
                Decision::Cancelled { .. } => ":heavy_multiplication_x:",
            };
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn",
                "text": format!("{icon} *{}*", esc(&d.to_string())) } }));
        }
    }
    Value::Array(blocks)
}

/// The modal a Deny click opens: the reason is required.
pub fn deny_view(request_value: &str, channel: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": DENY_VIEW,
        "private_metadata": format!("{request_value}|{channel}"),
        "title": { "type": "plain_text", "text": "Deny the request" },
        "submit": { "type": "plain_text", "text": "Deny" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": [{
            "type": "input",
            "block_id": "reason",
            "label": { "type": "plain_text", "text": "Why?" },
            "element": { "type": "plain_text_input", "action_id": "reason", "multiline": true }
        }]
    })
}

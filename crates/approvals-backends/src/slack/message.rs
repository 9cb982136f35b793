//! What a request looks like in Slack: Block Kit JSON.

use approvals_core::{ApprovalRequest, Decision, tally};
use serde_json::{Value, json};

use crate::shown::{args_preview, clip};

/// `action_id` of the Approve button.
pub const APPROVE: &str = "approvals.approve";
/// `action_id` of the Deny button (it opens a modal asking for the reason).
pub const DENY: &str = "approvals.deny";
/// `callback_id` of the deny modal.
pub const DENY_VIEW: &str = "approvals.deny_reason";
/// `action_id` of the Request changes button (it opens a modal asking what to change).
pub const CHANGES: &str = "approvals.request_changes";
/// `callback_id` of the request-changes modal.
pub const CHANGES_VIEW: &str = "approvals.changes_message";
/// `action_id` of the Approve with changes button, on calls with editable arguments (it
/// opens a modal of their values).
pub const EDIT: &str = "approvals.edit";
/// `callback_id` of the edit modal; each argument's input is the block `set:NAME`.
pub const EDIT_VIEW: &str = "approvals.edit_values";
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

/// Block Kit's limits, in characters (<https://api.slack.com/reference/block-kit/blocks>).
pub mod limits {
    /// A section's text.
    pub const SECTION_TEXT: usize = 3000;
    /// Each of a section's fields.
    pub const FIELD_TEXT: usize = 2000;
    /// A header's plain text.
    pub const HEADER_TEXT: usize = 150;
    /// A context element's text.
    pub const CONTEXT_TEXT: usize = 3000;
    /// A message's `text` (Slack truncates longer ones).
    pub const MESSAGE_TEXT: usize = 3000;
}

/// `s` escaped for mrkdwn (`&`, `<` and `>`, as Slack requires) in at most `max` characters (escapes counted as Slack counts
/// them), cut before an escape rather than through it.
fn esc_clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let len = if piece.is_empty() { 1 } else { piece.len() };
        // Room for this piece, and for the `…` if more follows.
        let reserve = usize::from(chars.peek().is_some());
        if n + len + reserve > max {
            out.push('…');
            return out;
        }
        if piece.is_empty() {
            out.push(c);
        } else {
            out.push_str(piece);
        }
        n += len;
    }
    out
}

/// The plain-text fallback (notifications, screen readers).
pub fn text(request: &ApprovalRequest) -> String {
    let t = format!(
        "Approval needed: {} wants to run {} ({})",
        request.context.requester.id,
        request.action.name,
        tally::progress(request).still_needed()
    );
    clip(&t, limits::MESSAGE_TEXT).into_owned()
}

/// A mrkdwn field: a bold title, then `value` escaped and cut to fit.
fn field(title: &str, value: &str) -> Value {
    let head = format!("*{title}*\n");
    let room = limits::FIELD_TEXT - head.chars().count();
    json!({ "type": "mrkdwn", "text": head + &esc_clip(value, room) })
}

/// The message: what is asked, by whom, for whom and why, its arguments, the digest prefix,
/// what is still needed and when it expires; then the buttons, or the outcome once decided.
///
/// Everything is cut to Block Kit's [`limits`]: a call too large to show whole says so and
/// links to the console (`console`, the service's public URL) for the rest.
pub fn blocks(
    request: &ApprovalRequest,
    outcome: Option<&Decision>,
    console: Option<&str>,
) -> Value {
    let a = &request.action;
    let c = &request.context;
    let r = &request.requirement;
    let mut fields = vec![
        field("Requester", &c.requester.to_string()),
        field(
            "On behalf of",
            &c.on_behalf_of
                .as_ref()
                .map_or("—".to_owned(), ToString::to_string),
        ),
        field("Policy / rule", &format!("`{}` / `{}`", a.policy, r.rule)),
        field("Digest", &format!("`{}…`", a.digest.short(12))),
        field("Expires", &request.expires_at.to_string()),
    ];
    if let Some(t) = &c.trigger {
        fields.push(field("Trigger", t));
    }
    if let Some(why) = &c.reason {
        fields.push(field("Reason", why));
    }
    // The arguments' section: its fixed parts, then as much of the arguments as fits.
    let frame = "*Arguments*\n``````".chars().count();
    let (args, cut) = args_preview(request, limits::SECTION_TEXT - frame);
    let args = esc_clip(&args, limits::SECTION_TEXT - frame);
    let header = clip(&format!("Approval needed: {}", a.name), limits::HEADER_TEXT).into_owned();
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": header } }),
        json!({ "type": "section", "fields": fields }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*Arguments*\n```{args}```") } }),
    ];
    let link = console.map(|base| crate::shown::console_link(base, request));
    if cut || link.is_some() {
        let text = match (&link, cut) {
            (Some(l), true) => format!(
                "The arguments are cut to fit Slack: <{l}|see the whole call in the console>"
            ),
            (Some(l), false) => format!("<{l}|Open in the console>"),
            (None, _) => format!(
                "The arguments are cut to fit Slack: `approvals show {}` shows the whole call",
                request.id
            ),
        };
        blocks.push(json!({ "type": "context", "elements": [
            { "type": "mrkdwn", "text": clip(&text, limits::CONTEXT_TEXT) }
        ] }));
    }
    match outcome {
        None => {
            let needed = esc_clip(
                &tally::progress(request).still_needed(),
                limits::CONTEXT_TEXT - 20,
            );
            blocks.push(json!({ "type": "context", "elements": [
                { "type": "mrkdwn", "text": format!("Still needed: *{needed}*") }
            ] }));
            let value = button_value(request);
            let mut buttons = vec![
                json!({ "type": "button", "style": "primary", "action_id": APPROVE, "value": value,
                  "text": { "type": "plain_text", "text": "Approve" } }),
            ];
            if !crate::shown::editable_inputs(request, INPUT_MAX).is_empty() {
                buttons.push(json!({ "type": "button", "action_id": EDIT, "value": value,
                  "text": { "type": "plain_text", "text": "Approve with changes…" } }));
            }
            buttons.push(
                json!({ "type": "button", "action_id": CHANGES, "value": value,
              "text": { "type": "plain_text", "text": "Request changes…" } }),
            );
            buttons.push(
                json!({ "type": "button", "style": "danger", "action_id": DENY, "value": value,
              "text": { "type": "plain_text", "text": "Deny…" } }),
            );
            blocks.push(json!({
                "type": "actions",
                "block_id": format!("approvals:{}", request.id),
                "elements": buttons
            }));
        }
        Some(d) => {
            let icon = match d {
                Decision::Approved { .. } => ":white_check_mark:",
                Decision::Denied { .. } => ":no_entry:",
                Decision::Expired { .. } => ":hourglass:",
                Decision::ChangesRequested { .. } => ":leftwards_arrow_with_hook:",
                Decision::Edited { .. } => ":pencil2:",
                Decision::Cancelled { .. } => ":heavy_multiplication_x:",
            };
            let said = esc_clip(&d.to_string(), limits::SECTION_TEXT - 40);
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn",
                "text": format!("{icon} *{said}*") } }));
        }
    }
    Value::Array(blocks)
}

/// The modal a Deny click opens: the reason is required.
pub fn deny_view(request_value: &str, channel: &str) -> Value {
    reason_view(
        DENY_VIEW,
        "Deny the request",
        "Deny",
        "Why?",
        request_value,
        channel,
    )
}

/// The modal a Request changes click opens: what to change is required.
pub fn changes_view(request_value: &str, channel: &str) -> Value {
    reason_view(
        CHANGES_VIEW,
        "Request changes",
        "Send back",
        "What should change?",
        request_value,
        channel,
    )
}

/// A modal with one required text input, `reason`, carrying the request and the channel.
fn reason_view(
    callback_id: &str,
    title: &str,
    submit: &str,
    label: &str,
    request_value: &str,
    channel: &str,
) -> Value {
    json!({
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": format!("{request_value}|{channel}"),
        "title": { "type": "plain_text", "text": title },
        "submit": { "type": "plain_text", "text": submit },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": [{
            "type": "input",
            "block_id": "reason",
            "label": { "type": "plain_text", "text": label },
            "element": { "type": "plain_text_input", "action_id": "reason", "multiline": true }
        }]
    })
}

/// The longest text a `plain_text_input` holds.
const INPUT_MAX: usize = 3000;

/// The modal Approve with changes opens: one input per editable argument (block `set:NAME`,
/// holding its value: text as text, anything else as JSON) and an optional comment.
pub fn edit_view(request: &ApprovalRequest, channel: &str) -> Value {
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": crate::shown::EDIT_HINT } }),
    ];
    for (arg, text) in crate::shown::editable_inputs(request, INPUT_MAX) {
        blocks.push(json!({
            "type": "input",
            "block_id": format!("set:{arg}"),
            "label": { "type": "plain_text", "text": clip(arg, 2000) },
            "element": { "type": "plain_text_input", "action_id": "value",
                         "initial_value": text, "max_length": INPUT_MAX }
        }));
    }
    blocks.push(json!({
        "type": "input",
        "block_id": "reason",
        "optional": true,
        "label": { "type": "plain_text", "text": "Comment" },
        "element": { "type": "plain_text_input", "action_id": "reason", "multiline": true }
    }));
    json!({
        "type": "modal",
        "callback_id": EDIT_VIEW,
        "private_metadata": format!("{}|{channel}", button_value(request)),
        "title": { "type": "plain_text", "text": "Approve with changes" },
        "submit": { "type": "plain_text", "text": "Approve changed" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": blocks
    })
}

//! What a request looks like in Teams: an Adaptive Card (schema 1.4, for `Action.Execute`).

use approvals_core::{ApprovalRequest, Decision, tally};
use serde_json::{Value, json};

/// The `verb` of the Approve button.
pub const APPROVE: &str = "approve";
/// The `verb` of the Deny button (the card's reason field travels with it).
pub const DENY: &str = "deny";
/// The id of the card's reason input.
pub const REASON: &str = "reason";
/// The content type of an Adaptive Card attachment.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// The facts every card shows: the same context as the Slack message.
fn facts(request: &ApprovalRequest) -> Vec<Value> {
    let a = &request.action;
    let c = &request.context;
    let mut facts = vec![
        json!({ "title": "Action", "value": a.name }),
        json!({ "title": "Requester", "value": c.requester.to_string() }),
        json!({ "title": "On behalf of", "value": c.on_behalf_of.as_ref().map_or("—".to_owned(), ToString::to_string) }),
    ];
    if let Some(t) = &c.trigger {
        facts.push(json!({ "title": "Trigger", "value": t }));
    }
    if let Some(r) = &c.reason {
        facts.push(json!({ "title": "Reason", "value": r }));
    }
    facts.push(json!({ "title": "Policy / rule", "value": format!("{} / {}", a.policy, request.requirement.rule) }));
    facts.push(json!({ "title": "Digest", "value": format!("{}…", a.digest.short(12)) }));
    if let Value::Object(args) = &crate::shown::shown_args(request) {
        for (k, v) in args {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            facts.push(json!({ "title": format!("Argument {k}"), "value": shown }));
        }
    }
    if request.is_pending() {
        facts.push(
            json!({ "title": "Still needed", "value": tally::progress(request).still_needed() }),
        );
    }
    facts.push(json!({ "title": "Expires", "value": request.expires_at.to_string() }));
    facts
}

/// The data both buttons carry: the request and the digest the reviewer saw.
pub fn action_data(request: &ApprovalRequest) -> Value {
    json!({ "request_id": request.id.to_string(), "digest": request.action.digest.to_hex() })
}

/// The card for a request: its facts, then Approve and Deny (`Action.Execute`) with a reason
/// field, or, once decided, the outcome and no buttons. `links`, for webhook mode, replaces
/// the buttons with `Action.OpenUrl` links to the console.
pub fn card(
    request: &ApprovalRequest,
    outcome: Option<&Decision>,
    links: Option<(&str, &str)>,
) -> Value {
    let mut body = vec![
        json!({ "type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                "text": format!("Approval needed: {}", request.action.name) }),
        json!({ "type": "FactSet", "facts": facts(request) }),
    ];
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
    });
    match (outcome, links) {
        (Some(d), _) => {
            body.push(json!({ "type": "TextBlock", "wrap": true, "weight": "Bolder",
                              "color": if matches!(d, Decision::Approved { .. }) { "Good" } else { "Attention" },
                              "text": format!("{}: {d}", d.word().to_uppercase()) }));
        }
        (None, Some((approve, deny))) => {
            card["actions"] = json!([
                { "type": "Action.OpenUrl", "title": "Approve…", "url": approve },
                { "type": "Action.OpenUrl", "title": "Deny…", "url": deny },
            ]);
        }
        (None, None) => {
            body.push(
                json!({ "type": "Input.Text", "id": REASON, "isMultiline": true,
                              "placeholder": "Reason (required to deny)" }),
            );
            card["actions"] = json!([
                { "type": "Action.Execute", "title": "Approve", "verb": APPROVE, "style": "positive", "data": action_data(request) },
                { "type": "Action.Execute", "title": "Deny", "verb": DENY, "style": "destructive", "data": action_data(request) },
            ]);
        }
    }
    card["body"] = Value::Array(body);
    card
}

/// A message activity carrying the card.
pub fn activity(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{ "contentType": CONTENT_TYPE, "content": card }],
    })
}

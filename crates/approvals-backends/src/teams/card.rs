//! What a request looks like in Teams: an Adaptive Card (schema 1.4, for `Action.Execute`).

use approvals_core::{ApprovalRequest, Decision, tally};
use serde_json::{Value, json};

use crate::shown::clip;

/// The `verb` of the Approve button.
pub const APPROVE: &str = "approve";
/// The `verb` of the Deny button (the card's reason field travels with it).
pub const DENY: &str = "deny";
/// The `verb` of the Request changes action (what to change is read from the card's input).
pub const CHANGES: &str = "request_changes";
/// The `verb` of Approve with changes, in the card that Approve with changes… shows: its
/// inputs (`set:NAME`, one per editable argument) travel with it.
pub const EDIT: &str = "approve_edited";
/// The longest value an edit input holds; longer values are edited in the console.
const EDIT_INPUT_MAX: usize = 1000;
/// The id of the card's reason input.
pub const REASON: &str = "reason";
/// The content type of an Adaptive Card attachment.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// The most bytes a card may take: Teams refuses messages over about 28 KB, and the
/// activity around the card needs some of it.
pub const MAX_CARD_BYTES: usize = 24 * 1024;

/// The most arguments shown one by one; the rest are counted, with the console a click away.
const MAX_ARGUMENT_FACTS: usize = 20;

/// The facts every card shows: the same context as the Slack message, each value cut to
/// `per_value` characters.
fn facts(request: &ApprovalRequest, per_value: usize) -> Vec<Value> {
    let a = &request.action;
    let c = &request.context;
    let fact = |title: &str, value: &str| json!({ "title": clip(title, 100), "value": clip(value, per_value) });
    let mut facts = vec![
        fact("Action", &a.name),
        fact("Requester", &c.requester.to_string()),
        fact(
            "On behalf of",
            &c.on_behalf_of
                .as_ref()
                .map_or("—".to_owned(), ToString::to_string),
        ),
    ];
    if let Some(t) = &c.trigger {
        facts.push(fact("Trigger", t));
    }
    if let Some(r) = &c.reason {
        facts.push(fact("Reason", r));
    }
    facts.push(fact(
        "Policy / rule",
        &format!("{} / {}", a.policy, request.requirement.rule),
    ));
    facts.push(fact("Digest", &format!("{}…", a.digest.short(12))));
    if let Value::Object(args) = &crate::shown::shown_args(request) {
        for (k, v) in args.iter().take(MAX_ARGUMENT_FACTS) {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            facts.push(fact(&format!("Argument {k}"), &shown));
        }
        if args.len() > MAX_ARGUMENT_FACTS {
            facts.push(fact(
                "More arguments",
                &format!(
                    "{} more, not shown here: open the request in the console",
                    args.len() - MAX_ARGUMENT_FACTS
                ),
            ));
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
/// the buttons with `Action.OpenUrl` links to the console; `console` (the service's public
/// URL) adds a link to the request's page.
///
/// The card stays under [`MAX_CARD_BYTES`]: long values are cut (to 500 characters, then
/// to 100 if that is still too much), and past 20 arguments the rest are counted.
pub fn card(
    request: &ApprovalRequest,
    outcome: Option<&Decision>,
    links: Option<(&str, &str)>,
    console: Option<&str>,
) -> Value {
    let mut built = Value::Null;
    for per_value in [500, 100, 40] {
        built = card_with(request, outcome, links, console, per_value);
        if built.to_string().len() <= MAX_CARD_BYTES {
            break;
        }
    }
    built
}

fn card_with(
    request: &ApprovalRequest,
    outcome: Option<&Decision>,
    links: Option<(&str, &str)>,
    console: Option<&str>,
    per_value: usize,
) -> Value {
    let mut body = vec![
        json!({ "type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                "text": clip(&format!("Approval needed: {}", request.action.name), 300) }),
        json!({ "type": "FactSet", "facts": facts(request, per_value) }),
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
                              "text": clip(&format!("{}: {d}", d.word().to_uppercase()), per_value.max(300)) }));
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
                              "placeholder": "Reason (required to deny), or what to change (required to request changes)" }),
            );
            let mut actions = vec![
                json!({ "type": "Action.Execute", "title": "Approve", "verb": APPROVE, "style": "positive", "data": action_data(request) }),
            ];
            let editable = crate::shown::editable_inputs(request, EDIT_INPUT_MAX);
            if !editable.is_empty() {
                let mut inputs = vec![json!({ "type": "TextBlock", "wrap": true, "isSubtle": true,
                    "text": crate::shown::EDIT_HINT })];
                for (arg, text) in editable {
                    inputs.push(json!({ "type": "Input.Text", "id": format!("set:{arg}"),
                        "label": clip(arg, 100), "value": text, "maxLength": EDIT_INPUT_MAX }));
                }
                actions.push(
                    json!({ "type": "Action.ShowCard", "title": "Approve with changes…",
                    "card": { "type": "AdaptiveCard", "body": inputs, "actions": [
                        { "type": "Action.Execute", "title": "Approve changed", "verb": EDIT,
                          "style": "positive", "data": action_data(request) }
                    ] } }),
                );
            }
            actions.push(json!({ "type": "Action.Execute", "title": "Request changes", "verb": CHANGES, "data": action_data(request) }));
            actions.push(json!({ "type": "Action.Execute", "title": "Deny", "verb": DENY, "style": "destructive", "data": action_data(request) }));
            card["actions"] = Value::Array(actions);
        }
    }
    if let Some(base) = console {
        let open = json!({ "type": "Action.OpenUrl", "title": "Open in the console",
                           "url": crate::shown::console_link(base, request) });
        match card.get_mut("actions").and_then(Value::as_array_mut) {
            Some(actions) => actions.push(open),
            None => card["actions"] = json!([open]),
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

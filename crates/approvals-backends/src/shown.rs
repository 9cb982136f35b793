//! How a request is shown to reviewers on a chat channel: redacted arguments masked, and
//! everything cut to fit the platform's limits (Slack: 3,000 characters a section, 2,000 a
//! field, 150 a header; a Teams card about 28 KB), with the whole call a link away in the
//! console.

use std::borrow::Cow;

use approvals_core::ApprovalRequest;
use serde_json::{Value, json};

/// What a redacted argument shows.
pub(crate) const MASK: &str = "•••••• (redacted)";

/// The arguments as shown: redacted ones masked.
pub(crate) fn shown_args(request: &ApprovalRequest) -> Value {
    let a = &request.action;
    match a.args.value() {
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

/// `s` in at most `max` characters: cut, and ending in `…`, when longer.
pub(crate) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let kept: String = s.chars().take(max.saturating_sub(1)).collect();
    Cow::Owned(kept + "…")
}

/// The arguments as shown, pretty-printed in at most `max` characters. When they do not fit,
/// the text is cut and ends with a line saying how much was left out. Returns the text and
/// whether it was cut.
pub(crate) fn args_preview(request: &ApprovalRequest, max: usize) -> (String, bool) {
    let whole = serde_json::to_string_pretty(&shown_args(request)).unwrap_or_default();
    let total = whole.chars().count();
    if total <= max {
        return (whole, false);
    }
    let note = format!("\n… cut: {total} characters in all");
    let keep = max.saturating_sub(note.chars().count());
    let mut text: String = whole.chars().take(keep).collect();
    text.push_str(&note);
    (text, true)
}

/// The console page of a request, under the service's public URL.
pub(crate) fn console_link(base: &str, request: &ApprovalRequest) -> String {
    format!(
        "{}/console/requests/{}",
        base.trim_end_matches('/'),
        request.id
    )
}

/// What every channel's edit form says of approving with changes.
pub(crate) const EDIT_HINT: &str = "The changed call is a new call: the policy judges it again, and it needs its own approvals, of which yours is the first.";

/// The arguments a reviewer may change on this call, in order: declared editable, recorded
/// and not redacted.
pub(crate) fn editable_args(request: &ApprovalRequest) -> Vec<&str> {
    let a = &request.action;
    a.editable
        .iter()
        .filter(|e| a.is_editable(e))
        .map(String::as_str)
        .collect()
}

/// The editable arguments a chat card or modal can offer, with their values as typed: those
/// whose text fits an input of `max` characters (a longer one is edited in the console or
/// over the API, where nothing is cut).
pub(crate) fn editable_inputs(request: &ApprovalRequest, max: usize) -> Vec<(&str, String)> {
    editable_args(request)
        .into_iter()
        .map(|arg| (arg, edit_text(&request.action.args[arg])))
        .filter(|(_, text)| text.chars().count() <= max)
        .collect()
}

/// An editable argument's value as a reviewer types it: a string as its text, anything
/// else as JSON (read back the same way by [`typed_edits`]).
pub(crate) fn edit_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a reviewer typed for editable arguments (`(argument, text)`), read against the
/// call's values: text where the argument is text, JSON otherwise. Only changed values are
/// kept; an error says which argument and why in words for the reviewer. The rules of an
/// edit (which arguments, which kinds) are core's: this only reads the typing.
pub(crate) fn typed_edits<'a>(
    request: &ApprovalRequest,
    typed: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut set = serde_json::Map::new();
    for (arg, text) in typed {
        let current = request.action.args.get(arg).unwrap_or(&Value::Null);
        let value = match current {
            Value::String(_) => Value::String(text.to_owned()),
            _ => serde_json::from_str(text.trim()).map_err(|_| {
                format!("`{arg}`: `{text}` is not a value of that kind: write it as JSON, e.g. 500 or true")
            })?,
        };
        if &value != current {
            set.insert(arg.to_owned(), value);
        }
    }
    if set.is_empty() {
        return Err("Change a value to approve it changed, or approve it as it is.".into());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("ééééé", 4).chars().count(), 4);
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn typed_values_are_read_by_the_kind_of_the_value_they_replace() {
        let action = approvals_core::Action::builder("export", "export")
            .arg("limit", &50_000)
            .arg("table", &"customers")
            .arg("dry", &false)
            .editable("limit")
            .editable("table")
            .editable("dry")
            .build()
            .unwrap();
        let request = ApprovalRequest::new(
            action,
            approvals_core::Context::new(approvals_core::Principal::agent("bot")),
            approvals_core::Requirement::new("r"),
            approvals_core::Timestamp::from_unix_micros(0),
        );
        // Text stays text, even when it looks like a number; the rest is JSON.
        let set = typed_edits(
            &request,
            [("limit", " 500 "), ("table", "42"), ("dry", "false")],
        )
        .unwrap();
        assert_eq!(Value::Object(set), json!({"limit": 500, "table": "42"}));
        let err = typed_edits(&request, [("limit", "lots")]).unwrap_err();
        assert!(err.starts_with("`limit`: `lots` is not a value"), "{err}");
        assert!(
            typed_edits(&request, [("limit", "50000")]).is_err(),
            "unchanged"
        );
        assert_eq!(editable_args(&request), ["limit", "table", "dry"]);
        assert_eq!(
            editable_inputs(&request, 5),
            [("limit", "50000".to_owned()), ("dry", "false".to_owned())]
        );
    }
}

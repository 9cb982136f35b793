//! Canonical JSON: the one byte form that digests and audit records are computed over.
//!
//! Rules: object keys sorted by Unicode code point (byte order of their UTF-8), no
//! whitespace, strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
//! control characters as `\u00xx`, everything else literal UTF-8), integers in plain decimal,
//! other numbers in their shortest round-trip form.
//!
//! Written here rather than taken from a crate because `serde_json`'s key order depends on a
//! cargo feature (`preserve_order`) that any crate in a build may switch on; the digest of a
//! call must not change because an unrelated dependency was added.

use serde_json::Value;

/// Appends the canonical encoding of `value` to `out`.
///
/// ```
/// use approvals_core::canonical::to_canonical_string;
/// let v = serde_json::json!({"b": 1, "a": [true, null, "x\n"]});
/// assert_eq!(to_canonical_string(&v), r#"{"a":[true,null,"x\n"],"b":1}"#);
/// ```
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
    }
}

/// The canonical encoding of `value` as a string.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_are_sorted_and_escapes_minimal() {
        let v = json!({"z": {"b": 2, "a": 1}, "é": "\u{1}", "A": -1.5});
        assert_eq!(
            to_canonical_string(&v),
            "{\"A\":-1.5,\"z\":{\"a\":1,\"b\":2},\"é\":\"\\u0001\"}"
        );
    }

    #[test]
    fn matches_serde_json_for_plain_strings() {
        for s in ["plain", "quote\"", "back\\slash", "tab\t", "ünï", "\u{7f}"] {
            assert_eq!(
                to_canonical_string(&json!(s)),
                serde_json::to_string(s).unwrap()
            );
        }
    }
}

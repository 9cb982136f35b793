//! Random and mutated policy files never panic the loader: each loads or is refused with
//! positioned errors; and a file that loads always judges calls without panicking.

use approvals_core::{Action, Context, Principal, Timestamp};
use approvals_policy::{FilePolicy, LoadError};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../examples/approvals.toml");

fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(pos, byte, op) in edits {
        if out.is_empty() {
            out.push(byte);
            continue;
        }
        let i = pos % out.len();
        match op % 4 {
            0 => out[i] = byte,
            1 => {
                out.remove(i);
            }
            2 => out.insert(i, byte),
            // Duplicate a run of bytes: repeats keys, tables and brackets.
            _ => {
                let end = (i + usize::from(byte % 40)).min(out.len());
                let run: Vec<u8> = out[i..end].to_vec();
                out.splice(i..i, run);
            }
        }
    }
    out
}

/// Loads `src`; if it loads, judges a few calls under each of its policies.
fn exercise(src: &str) {
    match FilePolicy::from_source("fuzz.toml", src) {
        Ok(p) => {
            let set = p.current();
            let ctx = Context::new(Principal::agent("ops-bot"))
                .on_behalf_of(Principal::human("dana"))
                .label("env", "prod");
            for name in set.names() {
                for args in [
                    serde_json::json!({}),
                    serde_json::json!({"limit": 5000, "env": "prod"}),
                    serde_json::json!({"limit": "x", "env": 3}),
                ] {
                    let mut b = Action::builder("app::f", &name);
                    for (k, v) in args.as_object().into_iter().flatten() {
                        b = b.arg(k, v);
                    }
                    let action = b.build().unwrap();
                    let _ = set.evaluate(&action, &ctx, Timestamp::from_unix_micros(0));
                }
            }
        }
        Err(LoadError::Invalid(d)) => {
            assert!(!d.errors.is_empty(), "refused with no reason");
            for e in &d.errors {
                assert!(e.line >= 1 && e.column >= 1);
                assert!(!e.message.is_empty());
            }
            // Display never panics either.
            let _ = d.to_string();
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_example_files(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
        let bytes = mutate(EXAMPLE.as_bytes(), &edits);
        if let Ok(src) = String::from_utf8(bytes) {
            exercise(&src);
        }
    }

    #[test]
    fn random_text(src in "[\\[\\]{}=\",.a-z0-9_ \n#'<>&|!()-]{0,300}") {
        exercise(&src);
    }

    #[test]
    fn random_conditions(cond in "[a-z_.()<>=!&|'\" 0-9\\[\\]+*/%?:-]{0,60}") {
        let src = format!(
            "[[people]]\nid = \"alice\"\n[groups]\ng = [\"alice\"]\n[[policies.p.rules]]\nwhen = {}\nallow = true\n",
            toml_string(&cond)
        );
        exercise(&src);
    }
}

fn toml_string(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[test]
fn the_example_itself_loads() {
    exercise(EXAMPLE);
    assert!(FilePolicy::from_source("x", EXAMPLE).is_ok());
}

//! Arguments recorded straight into canonical JSON, against the definition they stand for:
//! the arguments are the object a map of name to value makes (the last of a repeated name
//! kept), written by the canonical writer; the digest is SHA-256 of the documented bytes.
//! Checked on arguments given in any order (in order, out of order, repeated, names that
//! need an escape), typed values against their `serde_json` values, and the nesting bound
//! on both ways of recording.

use std::collections::{BTreeMap, HashMap};

use approvals_core::Action;
use approvals_core::action::MAX_ARG_DEPTH;
use approvals_core::canonical::{to_canonical_string, write_str};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

mod common;
use common::value;

/// The documented bytes the digest is taken over, built here by hand.
fn documented(args: &str, name: &str, policy: &str) -> Vec<u8> {
    let mut s = format!(r#"{{"args":{args},"name":"#);
    write_str(name, &mut s);
    s.push_str(r#","policy":"#);
    write_str(policy, &mut s);
    s.push('}');
    s.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arguments_in_any_order_are_the_object_of_their_last_values(
        given in prop::collection::vec(("[a-d]{1,2}|[a-c\"\\\\\u{1}é]{0,2}", value()), 0..7),
        sorted in any::<bool>(),
    ) {
        let mut given = given;
        if sorted {
            // As the macro gives them: in order of name, each once.
            given.sort_by(|a, b| a.0.cmp(&b.0));
            given.dedup_by(|a, b| a.0 == b.0);
        }
        let mut b = Action::builder("m::f", "p");
        let mut expected = Map::new();
        for (name, v) in &given {
            b = b.arg(name, v);
            expected.insert(name.clone(), v.clone());
        }
        let a = b.build().unwrap();
        let expected = Value::Object(expected);
        let text = to_canonical_string(&expected);
        prop_assert_eq!(a.args.text(), text.as_str());
        prop_assert_eq!(a.args.value(), &expected);
        let want = Sha256::digest(documented(&text, "m::f", "p"));
        prop_assert_eq!(a.digest.0.as_slice(), want.as_slice());
        prop_assert!(a.digest_is_consistent());
        // Read back from its serialised form: the same arguments, the same call.
        let back: Action = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        prop_assert_eq!(&back, &a);
        prop_assert_eq!(back.args.text(), text.as_str());
    }
}

#[derive(serde::Serialize)]
struct Typed {
    id: u64,
    ratio: f32,
    tags: Vec<&'static str>,
    by_number: HashMap<u32, &'static str>,
    note: Option<String>,
    nothing: (),
    wide: i128,
    shape: Shape,
}

#[derive(serde::Serialize)]
enum Shape {
    Square(u8),
    Rect { w: u8, h: u8 },
}

#[test]
fn typed_arguments_are_recorded_as_their_json_values_are() {
    // Integer map keys (unordered), a float, a unit, a 128-bit integer and enums: each
    // written as `serde_json` makes its value.
    let typed = |shape| Typed {
        id: u64::MAX,
        ratio: 0.1,
        tags: vec!["b", "a"],
        by_number: HashMap::from([(10, "ten"), (2, "two"), (33, "x")]),
        note: None,
        nothing: (),
        wide: -5,
        shape,
    };
    for shape in [Shape::Square(3), Shape::Rect { w: 1, h: 2 }] {
        let t = typed(shape);
        let direct = Action::builder("f", "p")
            .arg("t", &t)
            .arg("u", &0.5f64)
            .build()
            .unwrap();
        let through_value = Action::builder("f", "p")
            .arg("t", &serde_json::to_value(&t).unwrap())
            .arg("u", &json!(0.5))
            .build()
            .unwrap();
        assert_eq!(direct.args.text(), through_value.args.text());
        assert_eq!(direct.digest, through_value.digest);
    }
    // Where the value path refuses, so does the direct one, naming the argument.
    let err = Action::builder("f", "p")
        .arg("big", &(u128::MAX))
        .build()
        .unwrap_err();
    assert_eq!(err.arg, "big");
    let err = Action::builder("f", "p")
        .arg("m", &BTreeMap::from([((1, 2), 3)]))
        .build()
        .unwrap_err();
    assert_eq!(err.arg, "m");
}

#[test]
fn the_nesting_bound_is_the_same_in_order_and_out_of_order() {
    let nested = |levels: usize| {
        let mut v = json!(1);
        for _ in 1..levels {
            v = json!([v]);
        }
        v
    };
    for (levels, ok) in [(MAX_ARG_DEPTH, true), (MAX_ARG_DEPTH + 1, false)] {
        let v = nested(levels);
        // In order (written as text), then out of order (kept as a map).
        let in_order = Action::builder("f", "p").arg("a", &1).arg("b", &v).build();
        let out_of_order = Action::builder("f", "p").arg("c", &1).arg("b", &v).build();
        for built in [in_order, out_of_order] {
            match built {
                Ok(a) => {
                    assert!(ok, "{levels} levels accepted");
                    assert_eq!(a.args["b"], v);
                }
                Err(e) => {
                    assert!(!ok, "{levels} levels refused: {e}");
                    assert_eq!(e.arg, "b");
                    assert!(
                        e.message
                            .contains(&format!("nests {levels} levels deep; the most is 32")),
                        "{e}"
                    );
                }
            }
        }
    }
    // Brackets inside strings are not nesting.
    let a = Action::builder("f", "p")
        .arg("s", &"[[[[{{{{\"]]]]".repeat(20))
        .build()
        .unwrap();
    assert!(a.args["s"].is_string());
}

#[test]
fn a_redacted_argument_reads_the_same_recorded_in_order_or_not() {
    let secret = json!({"token": "s3cr3t", "n": [1, 2]});
    // Written as text in order; after a later name, redacted into the map.
    let in_order = Action::builder("f", "p")
        .redact("secret", &secret)
        .arg("z", &1)
        .build()
        .unwrap();
    let out_of_order = Action::builder("f", "p")
        .arg("z", &1)
        .redact("secret", &secret)
        .build()
        .unwrap();
    assert_eq!(in_order.args.text(), out_of_order.args.text());
    assert_eq!(in_order.digest, out_of_order.digest);
    assert!(in_order.is_redacted("secret"));
    assert!(!in_order.args.text().contains("s3cr3t"));
    let redacted = in_order.args["secret"].as_object().unwrap();
    assert_eq!(
        redacted.keys().collect::<Vec<_>>(),
        ["key_id", "redacted_hmac"]
    );
}

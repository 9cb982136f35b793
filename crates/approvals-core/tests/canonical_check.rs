//! The one-pass canonical-form checker a verifier runs, against the definition it stands
//! for: bytes are canonical when `serde_json` reads them as an object and the canonical
//! writer gives back exactly those bytes. Checked on canonical lines of random values, on
//! those lines with random edits, and at the nesting limit.

use approvals_core::canonical::{check_object, to_canonical_string, write_serialized};
use proptest::prelude::*;
use serde_json::Value;

mod common;
use common::value;

/// The definition: what the verifier checked before the one-pass checker.
fn oracle(line: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(line) {
        Ok(v) => v.is_object() && to_canonical_string(&v).as_bytes() == line,
        Err(_) => false,
    }
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_é\u{1}]{0,5}", value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

const EDITS: &[u8] = b" \t\"\\,:{}[]0-+.eEu1aZ\x01\x7f/";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_lines_pass_and_their_members_are_found(v in object()) {
        let line = to_canonical_string(&v);
        let mut keys = Vec::new();
        prop_assert!(check_object(line.as_bytes(), |k, _| keys.push(k.to_vec())).is_ok(), "{}", line);
        prop_assert_eq!(keys.len(), v.as_object().unwrap().len());
    }

    #[test]
    fn a_value_written_straight_is_written_as_through_the_value_path(v in value()) {
        let mut direct = String::new();
        prop_assert!(write_serialized(&v, &mut direct).is_ok());
        prop_assert_eq!(direct, to_canonical_string(&v));
    }

    /// Objects whose members come in any order, nested in each other: written straight
    /// when every object's keys are distinct, as the value path writes the map they make
    /// (members in order go straight out; the others are sorted when their object closes),
    /// and refused when one repeats a key.
    #[test]
    fn members_in_any_order_are_written_as_the_map_they_make(t in tree()) {
        let mut direct = String::new();
        let written = write_serialized(&t, &mut direct);
        if t.repeats_a_key() {
            prop_assert!(written.is_err());
        } else {
            prop_assert!(written.is_ok());
            prop_assert_eq!(direct, to_canonical_string(&t.value()));
        }
    }

    #[test]
    fn an_edited_line_passes_exactly_when_it_is_still_canonical(
        v in object(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, prop::sample::select(EDITS)), 1..4),
    ) {
        let mut line = to_canonical_string(&v).into_bytes();
        for (at, kind, byte) in edits {
            let i = at.index(line.len() + 1);
            match kind {
                0 => line.insert(i, byte),
                1 if i < line.len() => { line.remove(i); }
                _ if i < line.len() => line[i] = byte,
                _ => line.push(byte),
            }
        }
        prop_assert_eq!(
            check_object(&line, |_, _| {}).is_ok(),
            oracle(&line),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }
}

#[test]
fn hand_picked_lines_agree_with_the_definition() {
    for line in [
        r#"{}"#,
        r#"{"a":-0}"#,
        r#"{"a":-0.0}"#,
        r#"{"a":1.0}"#,
        r#"{"a":1e2}"#,
        r#"{"a":1E+2}"#,
        r#"{"a":1e+21}"#,
        r#"{"a":1.2345678901234568e+20}"#,
        r#"{"a":18446744073709551615}"#,
        r#"{"a":18446744073709551616}"#,
        r#"{"a":-9223372036854775808}"#,
        r#"{"a":-9223372036854775809}"#,
        r#"{"a":01}"#,
        r#"{"a":"\u001f"}"#,
        r#"{"a":"\u001F"}"#,
        r#"{"a":"\u000a"}"#,
        r#"{"a":"\/"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":1,"a":1}"#,
        r#"{"b":1,"a":1}"#,
        r#"{"\u0001":1,"a":1}"#,
        r#"{"a":1,"\u0001":1}"#,
        r#"{"a":true,"b":false,"c":null}"#,
        r#"{"a":tru}"#,
        r#"[1]"#,
        r#"{"a":1} "#,
        r#"{"a":[1,]}"#,
    ] {
        assert_eq!(
            check_object(line.as_bytes(), |_, _| {}).is_ok(),
            oracle(line.as_bytes()),
            "{line}"
        );
    }
    assert!(!oracle(b"{\"a\":\"\xff\"}") && check_object(b"{\"a\":\"\xff\"}", |_, _| {}).is_err());
}

#[test]
fn nesting_is_refused_where_serde_json_stops_reading() {
    for depth in 120..136 {
        let line = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            check_object(line.as_bytes(), |_, _| {}).is_ok(),
            oracle(line.as_bytes()),
            "depth {depth}"
        );
    }
}

/// The path a record's line takes (written straight from the record), against the
/// definition (the record made a `serde_json::Value`, then written): every record the audit
/// log's fuzzing corpus holds (eight kinds of event, with odd text in them). Every other
/// record a test writes is checked the same way in debug builds, in `to_canonical_json`.
#[test]
fn records_are_written_straight_as_through_a_value() {
    let corpus =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/audit_log");
    let mut kinds = std::collections::BTreeSet::new();
    let mut compared = 0;
    for file in std::fs::read_dir(&corpus).expect("the fuzzing corpus") {
        let bytes = std::fs::read(file.expect("an entry").path()).expect("a corpus file");
        for line in bytes.split(|b| *b == b'\n') {
            let Ok(record) = serde_json::from_slice::<approvals_core::AuditRecord>(line) else {
                continue;
            };
            let through_value = to_canonical_string(&serde_json::to_value(&record).unwrap());
            let mut direct = String::new();
            match write_serialized(&record, &mut direct) {
                Ok(()) => assert_eq!(direct, through_value),
                Err(e) => panic!("{e}: {through_value}"),
            }
            assert_eq!(record.to_canonical_json(), through_value);
            kinds.insert(record.event.name());
            compared += 1;
        }
    }
    assert!(
        compared >= 400 && kinds.len() >= 8,
        "{compared} records, kinds {kinds:?}"
    );
}

#[test]
fn what_the_value_path_would_treat_otherwise_is_refused() {
    #[derive(serde::Serialize)]
    struct Twice {
        a: u8,
        #[serde(flatten)]
        more: std::collections::BTreeMap<String, u8>,
    }
    let twice = Twice {
        a: 1,
        more: [("a".to_owned(), 2)].into(),
    };
    assert!(write_serialized(&twice, &mut String::new()).is_err());
    let keyed: std::collections::BTreeMap<bool, u8> = [(true, 1)].into();
    assert!(write_serialized(&keyed, &mut String::new()).is_err());
    assert!(write_serialized(&u128::MAX, &mut String::new()).is_err());
    // What it takes as serde_json does: integer keys, chars, bytes, non-finite numbers.
    let mut out = String::new();
    let odd: std::collections::BTreeMap<i32, (char, &[u8], f64, f32)> =
        [(-3, ('\u{1}', &b"ab"[..], f64::NAN, 0.1f32))].into();
    write_serialized(&odd, &mut out).unwrap();
    assert_eq!(
        out,
        to_canonical_string(&serde_json::to_value(&odd).unwrap())
    );
}

/// JSON whose objects give their members in any order (a `Value`'s come sorted).
#[derive(Debug, Clone)]
enum Tree {
    Leaf(Value),
    List(Vec<Tree>),
    Members(Vec<(String, Tree)>),
}

impl Tree {
    /// The value it stands for: each object the map its members make.
    fn value(&self) -> Value {
        match self {
            Tree::Leaf(v) => v.clone(),
            Tree::List(items) => Value::Array(items.iter().map(Tree::value).collect()),
            Tree::Members(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, t)| (k.clone(), t.value()))
                    .collect(),
            ),
        }
    }

    fn repeats_a_key(&self) -> bool {
        match self {
            Tree::Leaf(_) => false,
            Tree::List(items) => items.iter().any(Tree::repeats_a_key),
            Tree::Members(members) => {
                let keys: std::collections::BTreeSet<&String> =
                    members.iter().map(|(k, _)| k).collect();
                keys.len() < members.len() || members.iter().any(|(_, t)| t.repeats_a_key())
            }
        }
    }
}

impl serde::Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Tree::Leaf(v) => v.serialize(s),
            Tree::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for t in items {
                    seq.serialize_element(t)?;
                }
                seq.end()
            }
            Tree::Members(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, t) in members {
                    map.serialize_entry(k, t)?;
                }
                map.end()
            }
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    value()
        .prop_map(Tree::Leaf)
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Tree::List),
                // Few letters, so that keys repeat now and then.
                prop::collection::vec(("[abé\"\u{1}]{0,2}", inner), 0..6).prop_map(Tree::Members),
            ]
        })
}

//! docs/audit-format.md, checked byte for byte: its worked example (computed with Python's
//! hashlib and cryptography, not with this library) and its table of canonical numbers are
//! read from the document itself, and the library must agree with every value.

use std::str::FromStr;

use approvals_core::canonical::to_canonical_string;
use approvals_core::log::merkle::{leaf_hash, node_hash, root};
use approvals_core::log::note::{Checkpoint, NoteSigner, NoteVerifier};
use approvals_core::log::verify::{read_records, verify_log};
use approvals_core::log::{LogHead, LogOptions, ProofBundle};
use approvals_core::{Action, ActionRef, AuditEvent, AuditRecord, EventKind, Principal, Timestamp};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest as _;

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/audit-format.md"
    ))
    .unwrap()
}

/// The lines after `<!-- example: NAME -->`: the fenced block's body, or the table's rows.
fn example(doc: &str, name: &str) -> Vec<String> {
    let marker = format!("<!-- example: {name} -->\n");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no example {name:?}"));
    let rest = &doc[at + marker.len()..];
    if rest.starts_with("```") {
        let body = &rest[rest.find('\n').unwrap() + 1..];
        let end = body.find("\n```").unwrap();
        body[..end].lines().map(str::to_owned).collect()
    } else {
        rest.lines()
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(str::to_owned)
            .collect()
    }
}

/// The cells of a table row, each without its backticks.
fn cells(row: &str) -> Vec<String> {
    row.trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().trim_matches('`').to_owned())
        .collect()
}

/// The value of the row of the `values` table whose label starts with `label`.
fn value(doc: &str, label: &str) -> String {
    example(doc, "values")
        .iter()
        .map(|r| cells(r))
        .find(|c| c[0].starts_with(label))
        .unwrap_or_else(|| panic!("no value {label:?}"))[1]
        .clone()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[test]
fn the_worked_example_holds_byte_for_byte() {
    let doc = doc();
    let log = example(&doc, "log");
    assert_eq!(log.len(), 2);
    let (r0, r1) = (&log[0], &log[1]);

    // The hashes, from their definitions with nothing but SHA-256...
    let l0 = sha256(&[&[0], r0.as_bytes()]);
    let l1 = sha256(&[&[0], r1.as_bytes()]);
    let top = sha256(&[&[1], &l0, &l1]);
    assert_eq!(hex::encode(l0), value(&doc, "leaf hash of record 0"));
    assert_eq!(hex::encode(l1), value(&doc, "leaf hash of record 1"));
    assert_eq!(hex::encode(top), value(&doc, "root of the two"));
    assert_eq!(
        B64.encode(top),
        value(&doc, "the same, as a checkpoint line")
    );
    let digest =
        sha256(&[br#"{"args":{"service":"api"},"name":"ops::restart","policy":"restart"}"#]);
    assert_eq!(hex::encode(digest), value(&doc, "action digest"));

    // ...and the library computes the same.
    assert_eq!((leaf_hash(r0.as_bytes()), node_hash(&l0, &l1)), (l0, top));
    let action = Action::builder("ops::restart", "restart")
        .arg("service", "api")
        .build()
        .unwrap();
    assert_eq!(action.digest.0, digest);
    let first = AuditRecord {
        seq: 0,
        prev: None,
        event: AuditEvent {
            at: Timestamp::from_str("2026-11-22T09:00:00Z").unwrap(),
            request_id: None,
            action: ActionRef::from(&action),
            actor: Some(Principal::agent("ops-bot")),
            policy_version: "code".into(),
            kind: EventKind::Allowed {
                rule: "restarts-are-routine".into(),
            },
        },
    };
    assert_eq!(&first.to_canonical_json(), r0);
    let jsonl = format!("{r0}\n{r1}\n");
    let (records, leaves) = read_records(jsonl.as_bytes()).unwrap();
    assert_eq!((records.len(), root(&leaves)), (2, top));

    // The keys, the checkpoint and its line: a head driven by the library writes the
    // document's bytes (Ed25519 signing is deterministic).
    let signer = NoteSigner::from_skey(&value(&doc, "signer key")).unwrap();
    assert_eq!(signer.verifier().to_vkey(), value(&doc, "verifier key"));
    let mut head = LogHead::new();
    head.append(first.event.clone());
    let second: AuditRecord = serde_json::from_str(r1).unwrap();
    assert_eq!(head.append(second.event).line, *r1);
    let options = LogOptions::new("audit.example.com/approvals", signer.clone());
    let note = head.checkpoint(&options, 0, true).unwrap().unwrap().note;
    let line = serde_json::json!({ "note": note }).to_string();
    assert_eq!(example(&doc, "checkpoints"), [line]);
    let verifier = NoteVerifier::from_vkey(&value(&doc, "verifier key")).unwrap();
    let report = verify_log(jsonl.as_bytes(), std::slice::from_ref(&note), &verifier).unwrap();
    assert_eq!(
        report.checkpoint,
        Some(Checkpoint {
            origin: "audit.example.com/approvals".into(),
            size: 2,
            root: top
        })
    );

    // The proof bundle of record 0.
    let bundle: ProofBundle = serde_json::from_str(&example(&doc, "bundle").join("\n")).unwrap();
    assert_eq!(
        bundle,
        ProofBundle::prove(&leaves, 0, r0, Some(&note)).unwrap()
    );
    assert_eq!(bundle.inclusion_proof, Some(vec![B64.encode(l1)]));
    assert_eq!(bundle.check(&verifier).unwrap().record, first);
}

#[test]
fn the_table_of_canonical_numbers_holds() {
    let doc = doc();
    let rows = example(&doc, "canonical numbers");
    assert!(rows.len() > 10, "{rows:?}");
    for row in rows {
        let c = cells(&row);
        let read: serde_json::Value = serde_json::from_str(&c[0]).unwrap();
        assert_eq!(to_canonical_string(&read), c[1], "{row}");
        // A record holding the number in its canonical form verifies; any other spelling
        // of it is refused.
        let record = |n: &str| format!("{{\"args\":{n},\"seq\":0}}\n");
        assert!(check_form(&record(&c[1])).is_ok(), "{row}");
        if c[0] != c[1] {
            assert!(check_form(&record(&c[0])).is_err(), "{row}");
        }
    }
}

#[test]
fn strings_are_canonical_only_with_the_documented_escapes() {
    let form = |s: &str| check_form(&format!("{{\"a\":{s},\"seq\":0}}\n"));
    for good in [
        "\"\u{2028}\"",
        "\"\u{7f}\"",
        "\"é\"",
        "\"\\u001f\"",
        "\"\\n\\t\\\\\\\"\"",
    ] {
        assert!(form(good).is_ok(), "{good}");
    }
    for bad in [
        "\"\\u2028\"",
        "\"\\/\"",
        "\"\\u0041\"",
        "\"\\ud800\"",
        "\"\\u001F\"",
        "\"\\u000a\"",
    ] {
        assert!(form(bad).is_err(), "{bad}");
    }
    // A key twice, whitespace, unsorted keys.
    for bad in [
        "{\"seq\":0,\"seq\":0}\n",
        "{\"seq\": 0}\n",
        "{\"seq\":0,\"a\":1}\n",
    ] {
        assert!(check_form(bad).is_err(), "{bad}");
    }
    // `prev` in any other spelling than 64 lowercase hex digits.
    let r0 = "{\"seq\":0}\n";
    let prev = hex::encode(leaf_hash(b"{\"seq\":0}"));
    let ok = format!("{r0}{{\"prev\":\"{prev}\",\"seq\":1}}\n");
    assert!(check_form(&ok).is_ok());
    let upper = format!("{r0}{{\"prev\":\"{}\",\"seq\":1}}\n", prev.to_uppercase());
    assert!(check_form(&upper).is_err());
}

/// The line-form checks of verification alone (form, `seq`, `prev`).
fn check_form(jsonl: &str) -> Result<(), String> {
    let signer = NoteSigner::generate("k").unwrap();
    approvals_core::log::verify::check_log(jsonl.as_bytes(), &[], &signer.verifier())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_double_a_writer_records_verifies() {
    // Doubles from all over the range (a fixed xorshift sequence of bit patterns): written
    // in a record by the library, each reads back as itself and the line stays canonical.
    let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut checked = 0;
    while checked < 20_000 {
        bits ^= bits << 13;
        bits ^= bits >> 7;
        bits ^= bits << 17;
        let x = f64::from_bits(bits);
        if !x.is_finite() {
            continue;
        }
        let line = to_canonical_string(&serde_json::json!({ "args": x, "seq": 0 }));
        assert!(check_form(&format!("{line}\n")).is_ok(), "{x:e}: {line}");
        checked += 1;
    }
}

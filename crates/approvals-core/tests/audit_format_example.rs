//! The worked example of docs/audit-format.md, whose values were computed with Python's
//! hashlib: our encoder writes the same bytes and our reader computes the same hashes.

use std::str::FromStr;

use approvals_core::merkle::root;
use approvals_core::verify::read_records;
use approvals_core::{Action, ActionRef, AuditEvent, AuditRecord, EventKind, Principal, Timestamp};

const R0: &str = r#"{"action":{"digest":"ec645575b3d7d7a3c94e334ad2341c9c56e3b2cc5a485b1d58bd22c11b420fea","name":"ops::restart","policy":"restart"},"actor":{"id":"ops-bot","kind":"agent"},"at":"2026-11-22T09:00:00.000000Z","event":"allowed","rule":"restarts-are-routine","seq":0}"#;
const R1: &str = r#"{"action":{"digest":"ec645575b3d7d7a3c94e334ad2341c9c56e3b2cc5a485b1d58bd22c11b420fea","name":"ops::restart","policy":"restart"},"actor":{"id":"ops-bot","kind":"agent"},"at":"2026-11-22T09:00:01.000000Z","event":"policy_denied","prev":"df053915246749b55d296d1c9d68bc1c185fffdeb9075e58d9e265bf1200c9c4","reason":"not during the freeze","rule":"freeze","seq":1}"#;

#[test]
fn the_documented_example() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/audit-format.md"
    ))
    .unwrap();
    assert!(
        doc.contains(R0) && doc.contains(R1),
        "the document shows these exact records"
    );

    let action = Action::builder("ops::restart", "restart")
        .arg("service", "api")
        .build()
        .unwrap();
    assert_eq!(
        action.digest.to_hex(),
        "ec645575b3d7d7a3c94e334ad2341c9c56e3b2cc5a485b1d58bd22c11b420fea"
    );

    let first = AuditRecord {
        seq: 0,
        prev: None,
        event: AuditEvent {
            at: Timestamp::from_str("2026-11-22T09:00:00Z").unwrap(),
            request_id: None,
            action: ActionRef::from(&action),
            actor: Some(Principal::agent("ops-bot")),
            kind: EventKind::Allowed {
                rule: "restarts-are-routine".into(),
            },
        },
    };
    assert_eq!(first.to_canonical_json(), R0);
    assert_eq!(
        first.leaf_hash().to_hex(),
        "df053915246749b55d296d1c9d68bc1c185fffdeb9075e58d9e265bf1200c9c4"
    );

    let (records, leaves) = read_records(format!("{R0}\n{R1}\n").as_bytes()).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        hex::encode(leaves[1]),
        "d0055d372e9841a7660d0dd5beb940564ce79394b3fd0998f235e2a3c9cef84f"
    );
    assert_eq!(
        hex::encode(root(&leaves)),
        "480136984829a71ae23829d6a7ff76cbd227df79b0521dfa1937bc66d3e8d863"
    );
}

//! The worked example of docs/audit-format.md, whose values were computed with Python's
//! hashlib: our encoder writes the same bytes and our reader computes the same hashes.

use std::str::FromStr;

use approvals_core::merkle::root;
use approvals_core::verify::read_records;
use approvals_core::{Action, ActionRef, AuditEvent, AuditRecord, EventKind, Principal, Timestamp};

const R0: &str = r#"{"action":{"digest":"ec645575b3d7d7a3c94e334ad2341c9c56e3b2cc5a485b1d58bd22c11b420fea","name":"ops::restart","policy":"restart"},"actor":{"id":"ops-bot","kind":"agent"},"at":"2026-11-22T09:00:00.000000Z","event":"allowed","policy_version":"code","rule":"restarts-are-routine","seq":0}"#;
const R1: &str = r#"{"action":{"digest":"ec645575b3d7d7a3c94e334ad2341c9c56e3b2cc5a485b1d58bd22c11b420fea","name":"ops::restart","policy":"restart"},"actor":{"id":"ops-bot","kind":"agent"},"at":"2026-11-22T09:00:01.000000Z","event":"policy_denied","policy_version":"code","prev":"533979d37429abf0277054554f335374ace345c474d3714b53c56db7bf2e5b6b","reason":"not during the freeze","rule":"freeze","seq":1}"#;

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
            policy_version: "code".into(),
            kind: EventKind::Allowed {
                rule: "restarts-are-routine".into(),
            },
        },
    };
    assert_eq!(first.to_canonical_json(), R0);
    assert_eq!(
        first.leaf_hash().to_hex(),
        "533979d37429abf0277054554f335374ace345c474d3714b53c56db7bf2e5b6b"
    );

    let (records, leaves) = read_records(format!("{R0}\n{R1}\n").as_bytes()).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        hex::encode(leaves[1]),
        "feb787a5b4f8a8a7fbebe11d11a97849a2578d16fb388d7f97be7f35c2b3fd9e"
    );
    assert_eq!(
        hex::encode(root(&leaves)),
        "0831c693a103ccdab587d3f5e419b09f35864f932bd528bab6da2ad5aa2a5f7c"
    );
}

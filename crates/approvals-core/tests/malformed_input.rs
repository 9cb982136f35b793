//! Random and mutated input never panics the parsers of logs, notes, keys and checkpoints:
//! each returns an error (or, for a harmless mutation, a verdict).

use approvals_core::note::{Checkpoint, NoteSigner, NoteVerifier, verify_note};
use approvals_core::verify::{read_records, verify_log};
use proptest::prelude::*;

const R0: &str = r#"{"action":{"digest":"ec645575b3d7d7a3c94e334ad2341c9c56e3b2cc5a485b1d58bd22c11b420fea","name":"ops::restart","policy":"restart"},"actor":{"id":"ops-bot","kind":"agent"},"at":"2026-11-22T09:00:00.000000Z","event":"allowed","policy_version":"code","rule":"restarts-are-routine","seq":0}"#;
const R1: &str = r#"{"action":{"digest":"ec645575b3d7d7a3c94e334ad2341c9c56e3b2cc5a485b1d58bd22c11b420fea","name":"ops::restart","policy":"restart"},"actor":{"id":"ops-bot","kind":"agent"},"at":"2026-11-22T09:00:01.000000Z","event":"policy_denied","policy_version":"code","prev":"533979d37429abf0277054554f335374ace345c474d3714b53c56db7bf2e5b6b","reason":"not during the freeze","rule":"freeze","seq":1}"#;
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(pos, byte, op) in edits {
        if out.is_empty() {
            out.push(byte);
            continue;
        }
        let i = pos % out.len();
        match op % 3 {
            0 => out[i] = byte,
            1 => {
                out.remove(i);
            }
            _ => out.insert(i, byte),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn logs(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6), random in prop::collection::vec(any::<u8>(), 0..200)) {
        let signer = NoteSigner::from_skey("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz").unwrap();
        let log = format!("{R0}\n{R1}\n");
        let leaves: Vec<_> = [R0, R1].iter().map(|r| approvals_core::merkle::leaf_hash(r.as_bytes())).collect();
        let cp = Checkpoint { origin: "o".into(), size: 2, root: approvals_core::merkle::root(&leaves) }.sign(&signer).unwrap();
        let mutated = mutate(log.as_bytes(), &edits);
        let verdict = verify_log(&mutated, std::slice::from_ref(&cp), &signer.verifier());
        if mutated != log.as_bytes() {
            prop_assert!(verdict.is_err(), "a changed log must not verify: {:?}", String::from_utf8_lossy(&mutated));
        }
        let _ = read_records(&random);
        let _ = verify_log(&random, &[String::from_utf8_lossy(&random).into_owned()], &signer.verifier());
    }

    #[test]
    fn notes_keys_and_checkpoints(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4), text in ".{0,120}") {
        let signer = NoteSigner::generate("audit.test").unwrap();
        let note = signer.sign("o\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
        let mutated = String::from_utf8_lossy(&mutate(note.as_bytes(), &edits)).into_owned();
        if mutated != note {
            // Whatever changed (text, name, signature, layout), it no longer verifies.
            prop_assert!(Checkpoint::verify(&mutated, &signer.verifier()).is_err(), "{mutated:?}");
        }
        let _ = verify_note(&text, &signer.verifier());
        let _ = Checkpoint::parse(&text);
        let _ = NoteVerifier::from_vkey(&text);
        let _ = NoteSigner::from_skey(&text);
        let key = String::from_utf8_lossy(&mutate(GO_VKEY.as_bytes(), &edits)).into_owned();
        let _ = NoteVerifier::from_vkey(&key);
    }
}

/// Found by `notes_keys_and_checkpoints`: a note whose last signature line ended in "\r\n"
/// verified, so one checkpoint had two spellings. Lines end in "\n" alone.
#[test]
fn a_note_ends_its_lines_in_a_newline_alone() {
    let signer = NoteSigner::generate("audit.test").unwrap();
    let note = signer
        .sign("o\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
        .unwrap();
    assert!(Checkpoint::verify(&note, &signer.verifier()).is_ok());
    let crlf = format!("{}\r\n", note.strip_suffix('\n').unwrap());
    assert!(
        Checkpoint::verify(&crlf, &signer.verifier()).is_err(),
        "{crlf:?}"
    );
}

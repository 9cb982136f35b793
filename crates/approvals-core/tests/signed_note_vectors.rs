//! Signed notes against independent answers: the deterministic Ed25519 example of Go's
//! golang.org/x/mod/sumdb/note tests and C2SP's own example.

use approvals_core::merkle::{leaf_hash, root};
use approvals_core::note::{Checkpoint, NoteError, NoteSigner, NoteVerifier, verify_note};

const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

const C2SP_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const C2SP_TEXT: &str = "This is an example message.\n";
const C2SP_SIG: &str =
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=";

#[test]
fn go_example_signs_to_the_published_signature() {
    let signer = NoteSigner::from_skey(GO_SKEY).unwrap();
    assert_eq!(signer.verifier().to_vkey(), GO_VKEY);
    assert_eq!(signer.to_skey(), GO_SKEY);
    assert_eq!(signer.signature_line(GO_TEXT), GO_SIG);
    let note = format!("{GO_TEXT}\n{GO_SIG}\n");
    let v = NoteVerifier::from_vkey(GO_VKEY).unwrap();
    assert_eq!(verify_note(&note, &v).unwrap(), GO_TEXT);
}

#[test]
fn c2sp_example_verifies() {
    let v = NoteVerifier::from_vkey(C2SP_VKEY).unwrap();
    let note = format!("{C2SP_TEXT}\n\u{2014} example.com/foo {C2SP_SIG}\n");
    assert_eq!(verify_note(&note, &v).unwrap(), C2SP_TEXT);
    // One changed byte of text, and it no longer verifies.
    let changed = note.replacen("example", "exemple", 1);
    assert!(matches!(
        verify_note(&changed, &v),
        Err(NoteError::BadSignature(_))
    ));
}

#[test]
fn other_keys_and_malformed_notes_are_refused_clearly() {
    let v = NoteVerifier::from_vkey(GO_VKEY).unwrap();
    let other = NoteSigner::generate("PeterNeumann").unwrap();
    // Same name, another key: its id differs, so the note is unsigned for this verifier.
    let note = other.sign(GO_TEXT).unwrap();
    assert_eq!(
        verify_note(&note, &v),
        Err(NoteError::Unsigned("PeterNeumann".into()))
    );
    for bad in [
        "",
        "no blank line\n",
        "text\n\n",
        "text\n\nnot a signature line\n",
        "text\n\n\u{2014} PeterNeumann !!!\n",
        "text\n\n\u{2014} PeterNeumann AAAA\n",
        "text\n\n\u{2014} PeterNeumann x08go/ZJ\n",
        "text without newline\n\u{2014} x y",
    ] {
        assert!(verify_note(bad, &v).is_err(), "{bad:?} must be refused");
    }
    for bad in [
        "",
        "a+b",
        "name+zz+AAAA",
        "name+c74f20a3+AAAA",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(
            NoteVerifier::from_vkey(bad).is_err(),
            "{bad:?} must be refused"
        );
    }
    assert!(NoteSigner::from_skey(GO_VKEY).is_err());
}

#[test]
fn checkpoints_round_trip_and_bind_the_root() {
    let signer = NoteSigner::generate("audit.example.com").unwrap();
    let leaves: Vec<_> = (0..5u8).map(|i| leaf_hash(&[i])).collect();
    let cp = Checkpoint {
        origin: "audit.example.com/approvals".into(),
        size: 5,
        root: root(&leaves),
    };
    let note = cp.sign(&signer).unwrap();
    assert!(note.starts_with("audit.example.com/approvals\n5\n"));
    assert_eq!(Checkpoint::verify(&note, &signer.verifier()).unwrap(), cp);
    let shrunk = note.replacen("\n5\n", "\n4\n", 1);
    assert!(Checkpoint::verify(&shrunk, &signer.verifier()).is_err());
    for bad in [
        "o\n",
        "o\n05\nAAAA\n",
        "o\n-1\n",
        "o\n5\nnot-base64\n",
        "\n5\nAAAA\n",
    ] {
        assert!(Checkpoint::parse(bad).is_err(), "{bad:?} must be refused");
    }
}

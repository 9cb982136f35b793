//! Audit logs and checkpoints: any bytes verify or are refused with the record they concern,
//! never a panic; any note text parses or is refused.
#![no_main]

use std::sync::OnceLock;

use approvals_core::note::{Checkpoint, NoteSigner, NoteVerifier, verify_note};
use approvals_core::verify::{read_records, verify_log};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static NoteVerifier {
    static V: OnceLock<NoteVerifier> = OnceLock::new();
    V.get_or_init(|| {
        NoteSigner::from_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        )
        .expect("the Go vector's key")
        .verifier()
    })
}

fuzz_target!(|data: &[u8]| {
    // The log, then checkpoints, separated by a line `---`.
    let text = String::from_utf8_lossy(data);
    let (log, notes) = text.split_once("\n---\n").unwrap_or((&text, ""));
    let notes: Vec<String> = notes.split("\n===\n").map(str::to_owned).collect();
    let _ = read_records(log.as_bytes());
    let _ = verify_log(log.as_bytes(), &notes, verifier());
    let _ = verify_log(data, &[], verifier());
    for n in &notes {
        let _ = Checkpoint::parse(n);
        let _ = verify_note(n, verifier());
        let _ = NoteVerifier::from_vkey(n);
    }
});

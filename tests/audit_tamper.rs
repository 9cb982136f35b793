//! The file audit log: a real log written through a gate, then each tampering of the issue
//! applied to a copy; verification must fail and name the right sequence number.

mod common;
use std::path::Path;

use approvals::file::{Durability, FileAudit, FileAuditOptions, read_checkpoints};
use approvals::note::{Checkpoint, NoteSigner, NoteVerifier};
use approvals::verify::{VerifyError, verify_log};
use common::*;

struct Log {
    lines: Vec<String>,
    checkpoints: Vec<String>,
    verifier: NoteVerifier,
    signer: NoteSigner,
}

impl Log {
    fn bytes(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }
    fn verify(&self, lines: &[String], checkpoints: &[String]) -> Result<u64, VerifyError> {
        verify_log(&Self::bytes(lines), checkpoints, &self.verifier).map(|r| r.records)
    }
    fn failing_seq(&self, lines: &[String]) -> Option<u64> {
        self.verify(lines, &self.checkpoints).unwrap_err().seq()
    }
}

/// Three approved calls through a gate writing a file log, checkpoint every 4 records.
async fn written_log(dir: &Path) -> Log {
    let signer = NoteSigner::generate("audit.test").unwrap();
    let path = dir.join("audit.jsonl");
    let mut options = FileAuditOptions::new("audit.test/approvals", signer.clone());
    options.checkpoint_every = 4;
    let audit = FileAudit::open(&path, options).unwrap();
    let h = Harness::with(|b| b.audit(audit));
    for i in 0..3 {
        let call = h.spawn(export(i, h.runs.clone()));
        h.next().await.approve_as("alice").await.unwrap();
        call.await.unwrap().unwrap();
    }
    h.gate.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    Log {
        lines: text.lines().map(str::to_owned).collect(),
        checkpoints: read_checkpoints(&path).unwrap(),
        verifier: signer.verifier(),
        signer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_log_verifies_and_every_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let log = written_log(dir.path()).await;
    let n = log.lines.len();
    assert_eq!(n, 18, "6 events for each of 3 approved calls");
    assert_eq!(log.verify(&log.lines, &log.checkpoints), Ok(18));
    assert!(
        log.checkpoints.len() >= 4,
        "checkpoints every 4 records and at shutdown"
    );

    // A changed byte in a record in the middle: pinned by the next record's link.
    let mut t = log.lines.clone();
    t[7] = t[7]
        .replacen("alice", "alicf", 1)
        .replacen("billing", "bolling", 1);
    assert_ne!(t[7], log.lines[7]);
    assert_eq!(log.failing_seq(&t), Some(7));

    // A changed byte in the last record: pinned by the final checkpoint.
    let mut t = log.lines.clone();
    t[n - 1] = t[n - 1]
        .replacen("true", "fals", 1)
        .replacen("\"ok\":fals", "\"ok\":false", 1);
    assert_ne!(t[n - 1], log.lines[n - 1]);
    assert_eq!(log.failing_seq(&t), Some(n as u64 - 1));

    // A deleted record.
    let mut t = log.lines.clone();
    t.remove(5);
    assert_eq!(log.failing_seq(&t), Some(5));

    // An inserted (duplicated) record.
    let mut t = log.lines.clone();
    t.insert(9, log.lines[9].clone());
    assert_eq!(log.failing_seq(&t), Some(10));

    // Two records swapped.
    let mut t = log.lines.clone();
    t.swap(3, 4);
    assert_eq!(log.failing_seq(&t), Some(3));

    // A truncated tail, up to the latest checkpoint.
    let t = log.lines[..n - 2].to_vec();
    let err = log.verify(&t, &log.checkpoints).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(err.seq().is_some_and(|s| s <= n as u64 - 2), "{err}");

    // A malformed line.
    let mut t = log.lines.clone();
    t[2] = "{\"seq\":2,".into();
    assert_eq!(log.failing_seq(&t), Some(2));

    // A checkpoint signed by another key.
    let impostor = NoteSigner::generate("audit.test").unwrap();
    let mut cps = log.checkpoints.clone();
    let last = Checkpoint::verify(cps.last().unwrap(), &log.verifier).unwrap();
    *cps.last_mut().unwrap() = last.sign(&impostor).unwrap();
    let err = log.verify(&log.lines, &cps).unwrap_err();
    assert!(matches!(err, VerifyError::Checkpoint { .. }), "{err}");

    // A checkpoint whose size goes backwards.
    let mut cps = log.checkpoints.clone();
    cps.push(log.checkpoints[0].clone());
    let err = log.verify(&log.lines, &cps).unwrap_err();
    assert!(err.to_string().contains("backwards"), "{err}");

    // A rewritten record with its links fixed up is still caught by the checkpoints.
    let forged = log
        .signer
        .sign("audit.test/approvals\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
        .unwrap();
    let err = log.verify(&log.lines, &[forged]).unwrap_err();
    assert_eq!(err.seq(), Some(0), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_reported_not_accepted_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = written_log(dir.path()).await;
    let path = dir.path().join("audit.jsonl");
    let mut bytes = std::fs::read(&path).unwrap();
    let keep = bytes.len() - 20;
    bytes.truncate(keep);
    std::fs::write(&path, &bytes).unwrap();

    let err = verify_log(&bytes, &log.checkpoints, &log.verifier).unwrap_err();
    assert_eq!(err.seq(), Some(17));
    assert!(err.to_string().contains("torn"), "{err}");

    // The sink refuses to append after it, and leaves the file as it found it.
    let reopened = FileAudit::open(
        &path,
        FileAuditOptions::new("audit.test/approvals", log.signer.clone()),
    );
    let err = reopened.unwrap_err();
    assert!(err.to_string().contains("record 17: torn"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_appends_from_many_tasks_in_one_gap_free_log() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, signer, path) = sink(
        dir.path(),
        Durability::Group {
            max_delay: std::time::Duration::from_millis(1),
        },
        |_| {},
    );
    let h = Harness::with(|b| b.audit(audit).policy(policy()));
    let calls: Vec<_> = (0..50).map(|i| h.spawn(read_only(i))).collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    h.gate.shutdown().await.unwrap();
    let report = verify_file(&path, &signer);
    assert_eq!((report.records, report.unsigned_tail), (50, 0));

    // Reopening continues the same log.
    let audit = FileAudit::open(
        &path,
        FileAuditOptions::new("audit.test/approvals", signer.clone()),
    )
    .unwrap();
    let h = Harness::with(|b| b.audit(audit).policy(policy()));
    h.run(read_only(99)).await.unwrap();
    h.gate.shutdown().await.unwrap();
    assert_eq!(verify_file(&path, &signer).records, 51);
}

/// A file sink in `dir` with a fresh key; `tune` adjusts the options.
fn sink(
    dir: &Path,
    durability: Durability,
    tune: impl FnOnce(&mut FileAuditOptions),
) -> (FileAudit, NoteSigner, std::path::PathBuf) {
    let signer = NoteSigner::generate("audit.test").unwrap();
    let path = dir.join("audit.jsonl");
    let mut options = FileAuditOptions::new("audit.test/approvals", signer.clone());
    tune(&mut options);
    (
        FileAudit::open_with(&path, options, durability).unwrap(),
        signer,
        path,
    )
}

/// A plain event, for tests of the sink alone.
fn event() -> approvals::AuditEvent {
    let action = approvals::Action::builder("f", "p").build().unwrap();
    approvals::AuditEvent {
        at: approvals::Timestamp::now(),
        request_id: None,
        action: approvals::ActionRef::from(&action),
        actor: None,
        policy_version: "code".into(),
        kind: approvals::EventKind::Started,
    }
}

fn verify_file(path: &Path, signer: &NoteSigner) -> approvals::verify::LogReport {
    verify_log(
        &std::fs::read(path).unwrap(),
        &read_checkpoints(path).unwrap(),
        &signer.verifier(),
    )
    .unwrap()
}

#[approvals::requires_approval(policy = "read")]
async fn read_only(i: u32) -> Result<u32, approvals::Error> {
    Ok(i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_never_strands_an_appender() {
    use approvals::AuditSink;
    let dir = tempfile::tempdir().unwrap();
    let (audit, signer, path) = sink(
        dir.path(),
        Durability::Group {
            max_delay: std::time::Duration::ZERO,
        },
        |_| {},
    );
    let audit = std::sync::Arc::new(audit);
    for round in 0..40 {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let audit = audit.clone();
                tokio::spawn(async move { audit.append(event()).await.unwrap() })
            })
            .collect();
        // A stranded appender would wait forever; ten seconds is a failure, not a wait.
        tokio::time::timeout(std::time::Duration::from_secs(10), futures_join(tasks))
            .await
            .unwrap_or_else(|_| panic!("an appender was never synced in round {round}"));
    }
    audit.flush().await.unwrap();
    assert_eq!(verify_file(&path, &signer).records, 640);
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) {
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_log_is_still_signed_within_the_interval() {
    use approvals::AuditSink;
    let dir = tempfile::tempdir().unwrap();
    let (audit, signer, path) = sink(dir.path(), Durability::EveryRecord, |o| {
        o.checkpoint_every = 1000;
        o.checkpoint_interval = std::time::Duration::from_millis(200);
    });
    audit.append(event()).await.unwrap();
    audit.append(event()).await.unwrap();
    // 2 of 1000 records is not due by count, and nothing flushes: only the timer can sign
    // them. (Whether it already has by now depends on how busy the machine is, so that is
    // not asserted.) Ten seconds is a failure bound.
    tokio::time::timeout(std::time::Duration::from_secs(10), audit.signed(2))
        .await
        .expect("a checkpoint within the interval");
    let report = verify_file(&path, &signer);
    assert_eq!((report.records, report.unsigned_tail), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_no_longer_matches_its_checkpoints_is_not_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let log = written_log(dir.path()).await;
    let path = dir.path().join("audit.jsonl");
    // Truncated below its last checkpoint: the chain of what is left still holds.
    let kept = log.lines[..10].join("\n") + "\n";
    std::fs::write(&path, &kept).unwrap();
    let err = FileAudit::open(
        &path,
        FileAuditOptions::new("audit.test/approvals", log.signer.clone()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        kept,
        "the file is left as found"
    );
}

#[approvals::requires_approval(policy = "export", name = "billing::configure", skip(runs))]
async fn configure(
    cfg: serde_json::Value,
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(), approvals::Error> {
    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

fn nested(depth: usize) -> serde_json::Value {
    let mut v = serde_json::json!("leaf");
    for _ in 1..depth {
        v = serde_json::json!({ "x": v });
    }
    v
}

/// Issue 14, hole 3: an argument nested 126 deep was accepted, and then the log could never
/// be verified again. Now it is refused before anything is recorded, and a call at the
/// deepest accepted nesting is approved, run and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_is_bounded_so_the_verifier_reads_every_record_written() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::generate("audit.test").unwrap();
    let path = dir.path().join("audit.jsonl");
    let audit = FileAudit::open(
        &path,
        FileAuditOptions::new("audit.test/approvals", signer.clone()),
    )
    .unwrap();
    let h = Harness::with(|b| b.audit(audit));
    let err = h
        .run(configure(nested(126), h.runs.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, approvals::Error::Arguments(_)), "{err}");
    assert_eq!(h.runs(), 0);

    let deepest = approvals::action::MAX_ARG_DEPTH;
    let call = h.spawn(configure(nested(deepest), h.runs.clone()));
    h.next().await.approve_as("alice").await.unwrap();
    call.await.unwrap().unwrap();
    h.gate.shutdown().await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let report = verify_log(
        &bytes,
        &read_checkpoints(&path).unwrap(),
        &signer.verifier(),
    )
    .unwrap();
    assert_eq!(
        report.records, 6,
        "requested, notified, reviewed, decided, started, finished"
    );
    assert_eq!(h.runs(), 1);
}

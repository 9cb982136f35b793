//! The gate on an SQLite file: the whole flow, and what is due happening with nobody
//! waiting, in a gate that did not make the request.

mod common;

use std::time::Duration;

use approvals::sqlite::Sqlite;
use approvals::{CodePolicy, Decision, Execution, Factor, Requirement};
use common::*;

/// Allowed outright by the harness's policy: its only durable step is the audit record.
#[approvals::requires_approval(policy = "read", skip(runs))]
async fn read_report(
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(), approvals::Error> {
    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waits_is_approved_and_runs_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(dir.path().join("approvals.db")).await.unwrap();
    let h = Harness::with(|b| b.store(db.clone()));
    let call = h.spawn(export(7, h.runs.clone()));
    let req = h.next().await;
    req.approve_as("alice").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 7);
    assert_eq!(h.runs(), 1);
    // What the store holds is what a fresh open of the file reads.
    db.close().await;
    let reopened = Sqlite::open(dir.path().join("approvals.db")).await.unwrap();
    use approvals::store::Store;
    let stored = reopened.get(req.request.id).await.unwrap().unwrap();
    assert!(matches!(stored.decision(), Some(Decision::Approved { .. })));
    assert!(matches!(
        stored.execution,
        Execution::Finished { ok: true, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_and_expiry_happen_with_no_waiter_alive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let policy = || {
        CodePolicy::new().require(
            "export",
            Requirement::new("escalating")
                .factor(Factor::group("data-owners", 1))
                .expires_in(Duration::from_secs(600))
                .escalate(Duration::from_secs(60), ["mock"]),
        )
    };
    // One gate makes the request and goes away: nobody waits on it.
    let first = {
        let db = Sqlite::open(&path).await.unwrap();
        let h = Harness::with(|b| b.policy(policy()).store(db.clone()));
        let err = h.run(export_deferred(7, h.runs.clone())).await.unwrap_err();
        let id = err.request_id().unwrap();
        db.close().await;
        id
    };
    // Another gate, later, on the same file, drives what is due.
    let db = Sqlite::open(&path).await.unwrap();
    let h = Harness::with(|b| b.policy(policy()).store(db.clone()));
    // Both harnesses' clocks start at the same instant.
    assert_eq!(
        h.gate.run_due().await.unwrap().escalated,
        0,
        "nothing due yet"
    );
    h.clock.advance(Duration::from_secs(61));
    let did = h.gate.run_due().await.unwrap();
    assert_eq!((did.escalated, did.expired), (1, 0));
    assert_eq!(
        h.gate.run_due().await.unwrap().escalated,
        0,
        "each step fires once"
    );
    h.clock.advance(Duration::from_secs(600));
    assert_eq!(h.gate.run_due().await.unwrap().expired, 1);
    let r = h.gate.request(first).await.unwrap().unwrap();
    assert!(matches!(r.decision(), Some(Decision::Expired { .. })));
    assert_eq!(h.event_names(), ["escalated", "notified", "decided"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_fails_calls_closed_and_the_gate_recovers() {
    use approvals::note::NoteSigner;
    use approvals::sql::SqlAuditOptions;
    use approvals::sqlite::SqliteOptions;
    use sqlx::{ConnectOptions, Executor};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    };
    let db = Sqlite::open_with(&path, options).await.unwrap();
    let signer = NoteSigner::generate("test").unwrap();
    let audit = db
        .audit(SqlAuditOptions::new("test/audit", signer.clone()))
        .await
        .unwrap();
    let h = Harness::with(|b| b.store(db.clone()).audit(audit));

    // Another program holds the write lock.
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    other.execute("BEGIN EXCLUSIVE").await.unwrap();

    let read = h.run(read_report(h.runs.clone())).await;
    assert!(
        matches!(read, Err(approvals::Error::Audit(ref e)) if e.message.contains("locked")),
        "{read:?}"
    );
    let export = h.run(export(7, h.runs.clone())).await;
    assert!(
        matches!(export, Err(approvals::Error::Store(_))),
        "{export:?}"
    );
    assert_eq!(h.runs(), 0, "no body runs while the database is locked");

    other.execute("ROLLBACK").await.unwrap();
    h.run(read_report(h.runs.clone())).await.unwrap();
    assert_eq!(h.runs(), 1, "the gate works again once the lock is gone");
    let log = db.export_audit().await.unwrap();
    assert_eq!(
        log.records.len(),
        1,
        "the refused calls left no partial record"
    );
    h.gate.shutdown().await.unwrap();
    let log = db.export_audit().await.unwrap();
    approvals::verify::verify_log(log.jsonl().as_bytes(), &log.checkpoints, &signer.verifier())
        .unwrap();
}

/// A store and its audit log in one file: a review and its records (accepted, decided)
/// commit together, so the trail never lacks a state change the store holds. While another
/// program makes the log refuse records, an approval fails closed and the request is as it
/// was: still pending, with no review, and the call still waiting. Once the log takes
/// records again the same approval counts, the call runs once, and the log, signed and
/// verified, tells the whole story in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_and_its_records_commit_together() {
    use approvals::note::NoteSigner;
    use approvals::sql::SqlAuditOptions;
    use approvals::store::Store;
    use sqlx::{ConnectOptions, Executor};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let db = Sqlite::open(&path).await.unwrap();
    let signer = NoteSigner::generate("test").unwrap();
    let audit = db
        .audit(SqlAuditOptions::new("test/audit", signer.clone()))
        .await
        .unwrap();
    let h = Harness::with(|b| b.store(db.clone()).audit(audit));
    let call = h.spawn(export(7, h.runs.clone()));
    let req = h.next().await;

    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    other
        .execute(
            "CREATE TRIGGER refuse_records BEFORE INSERT ON approvals_audit \
             BEGIN SELECT RAISE(ABORT, 'the log refuses records'); END;",
        )
        .await
        .unwrap();
    let refused = req.approve_as("alice").await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("the log refuses records")),
        "{refused:?}"
    );
    let stored = db.get(req.request.id).await.unwrap().unwrap();
    assert!(stored.is_pending(), "{:?}", stored.decision());
    assert!(stored.reviews.is_empty(), "the review did not count");
    assert!(!call.is_finished(), "the call still waits");
    assert_eq!(h.runs(), 0);

    other.execute("DROP TRIGGER refuse_records").await.unwrap();
    req.approve_as("alice").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 7);
    assert_eq!(h.runs(), 1);
    h.gate.shutdown().await.unwrap();
    let log = db.export_audit().await.unwrap();
    let report =
        approvals::verify::verify_log(log.jsonl().as_bytes(), &log.checkpoints, &signer.verifier())
            .unwrap();
    assert_eq!(report.records, log.records.len() as u64);
    let names: Vec<String> = log
        .records
        .iter()
        .map(|line| {
            let record: approvals::AuditRecord = serde_json::from_str(line).unwrap();
            record.event.name().to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "requested",
            "notified",
            "review_accepted",
            "decided",
            "started",
            "finished"
        ]
    );
}

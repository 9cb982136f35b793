//! `approvals audit verify|show|prove|export --db`, against an SQLite file and (when
//! `APPROVALS_TEST_POSTGRES_URL` is set) a Postgres schema, written by the SQL audit sink.

use std::path::Path;
mod common;
use common::{approvals, text};

use approvals_backends::file::write_new_signer;
use approvals_backends::sql::{Database, SqlAuditOptions};
use approvals_core::{
    Action, ActionRef, AuditEvent, AuditSink, EventKind, Principal, RequestId, Timestamp,
};

/// Writes 7 events for one request into the database's audit log; returns the vkey file.
async fn fill(url: &str, dir: &Path) -> (String, RequestId) {
    let key = dir.join("audit.key");
    let signer = write_new_signer(&key, "audit.test").unwrap();
    let vkey = dir.join("audit.vkey");
    std::fs::write(&vkey, signer.verifier().to_vkey()).unwrap();
    let db = Database::open(url).await.unwrap();
    let mut options = SqlAuditOptions::new("audit.test/approvals", signer);
    options.checkpoint_every = 3;
    let audit = db.audit(options).await.unwrap();
    let action = Action::builder("ops::deploy", "deploy")
        .arg("service", "api")
        .build()
        .unwrap();
    let id = RequestId::generate();
    for i in 0..7u64 {
        audit
            .append(AuditEvent {
                at: Timestamp::from_unix_micros(1_700_000_000_000_000 + i as i64),
                request_id: Some(id),
                action: ActionRef::from(&action),
                actor: Some(Principal::agent("bot")),
                policy_version: "code".into(),
                kind: if i == 0 {
                    EventKind::Attached
                } else {
                    EventKind::Reminded { number: i as u32 }
                },
            })
            .await
            .unwrap();
    }
    audit.flush().await.unwrap();
    db.close().await;
    (vkey.to_str().unwrap().to_owned(), id)
}

fn check(url: &str, dir: &Path, vkey: &str, id: RequestId) {
    let verify = approvals(&["audit", "verify", "--db", url, "--vkey", vkey]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains("7 records, checkpoint at size 7 verified"),
        "{}",
        text(&verify)
    );

    let show = approvals(&["audit", "show", "--db", url, "--request", &id.to_string()]);
    assert!(show.status.success(), "{}", text(&show));
    assert_eq!(
        text(&show).matches("reminded").count(),
        6,
        "{}",
        text(&show)
    );

    let bundle = dir.join("proof.json");
    let prove = approvals(&[
        "audit",
        "prove",
        "--db",
        url,
        "--seq",
        "4",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(prove.status.success(), "{}", text(&prove));
    let checked = approvals(&[
        "audit",
        "check-proof",
        bundle.to_str().unwrap(),
        "--vkey",
        vkey,
    ]);
    assert!(checked.status.success(), "{}", text(&checked));

    // The export is the JSONL log: the file commands verify it the same way.
    let file = dir.join("export.jsonl");
    let export = approvals(&[
        "audit",
        "export",
        "--db",
        url,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", text(&export));
    let again = approvals(&["audit", "verify", file.to_str().unwrap(), "--vkey", vkey]);
    assert!(again.status.success(), "{}", text(&again));
    let stdout = approvals(&["audit", "export", "--db", url]);
    assert_eq!(
        stdout.stdout,
        std::fs::read(&file).unwrap(),
        "stdout and --out agree"
    );
    assert_eq!(String::from_utf8_lossy(&stdout.stdout).lines().count(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_verify_show_prove_export_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let url = format!("sqlite:{}", path.display());
    let (vkey, id) = fill(&url, dir.path()).await;
    check(&url, dir.path(), &vkey, id);

    // Someone with write access rewrites record 2: verification names it.
    {
        use sqlx::{ConnectOptions, Executor};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        conn.execute("UPDATE approvals_audit SET record = replace(record, '\"number\":2', '\"number\":9') WHERE seq = 2")
            .await
            .unwrap();
    }
    let verify = approvals(&["audit", "verify", "--db", &url, "--vkey", &vkey]);
    assert!(!verify.status.success());
    assert!(text(&verify).contains("record 2"), "{}", text(&verify));
}

#[tokio::test]
async fn a_missing_database_is_an_error_not_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.db");
    let url = format!("sqlite:{}", path.display());
    let out = approvals(&["audit", "verify", "--db", &url, "--vkey", "x"]);
    assert!(!out.status.success());
    assert!(!path.exists(), "reading must not create a database");
    let out = approvals(&["audit", "show", "--db", "mysql://nope"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not a database URL"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_show_prove_export() {
    let Ok(base) = std::env::var("APPROVALS_TEST_POSTGRES_URL") else {
        eprintln!("skipped: APPROVALS_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("c_{}", RequestId::generate()).to_lowercase();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let (vkey, id) = fill(&url, dir.path()).await;
    check(&url, dir.path(), &vkey, id);
    use sqlx::{ConnectOptions, Executor};
    let mut conn = base
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    conn.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_marks_a_call_that_started_and_never_finished_as_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("approvals.db").display());
    let db = Database::open(&url).await.unwrap();
    let signer = approvals_core::note::NoteSigner::generate("audit.test").unwrap();
    let audit = db
        .audit(SqlAuditOptions::new("audit.test/approvals", signer))
        .await
        .unwrap();
    let action = Action::builder("ops::deploy", "deploy").build().unwrap();
    let (done, doubtful) = (RequestId::generate(), RequestId::generate());
    let kinds = [
        (done, EventKind::Started),
        (doubtful, EventKind::Started),
        (
            done,
            EventKind::Finished {
                ok: true,
                error: None,
                summary: None,
            },
        ),
    ];
    for (id, kind) in kinds {
        audit
            .append(AuditEvent {
                at: Timestamp::now(),
                request_id: Some(id),
                action: ActionRef::from(&action),
                actor: Some(Principal::agent("bot")),
                policy_version: "code".into(),
                kind,
            })
            .await
            .unwrap();
    }
    db.close().await;
    let out = approvals(&["audit", "show", "--db", &url]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("request {doubtful} is IN DOUBT")),
        "{t}"
    );
    assert!(!t.contains(&format!("request {done} is IN DOUBT")), "{t}");
    let one = approvals(&[
        "audit",
        "show",
        "--db",
        &url,
        "--request",
        &done.to_string(),
    ]);
    assert!(!text(&one).contains("IN DOUBT"), "{}", text(&one));
}

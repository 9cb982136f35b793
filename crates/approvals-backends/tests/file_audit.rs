//! The JSONL file log against the conformance suite's log rules.

use std::sync::Arc;

use approvals_backends::conformance;
use approvals_backends::file::{FileAudit, FileAuditOptions};
use approvals_core::AuditSink;
use approvals_core::note::NoteSigner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_log_keeps_one_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let signer = NoteSigner::generate("audit.test").unwrap();
    let (open_path, open_signer) = (path.clone(), signer.clone());
    conformance::audit_keeps_one_origin(
        move |origin| {
            let (path, signer) = (open_path.clone(), open_signer.clone());
            async move {
                let sink = FileAudit::open(&path, FileAuditOptions::new(origin, signer))
                    .map_err(|e| e.to_string())?;
                Ok(Arc::new(sink) as Arc<dyn AuditSink>)
            }
        },
        move || {
            let path = path.clone();
            async move {
                let bytes = std::fs::read(&path).unwrap_or_default();
                approvals_core::verify::read_records(&bytes).unwrap().0
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_log_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let signer = NoteSigner::generate("audit.test").unwrap();
    let sink = FileAudit::open(&path, FileAuditOptions::new("audit.test/log", signer)).unwrap();
    conformance::audit_sink(Arc::new(sink), move || {
        let path = path.clone();
        async move {
            let bytes = std::fs::read(&path).unwrap_or_default();
            approvals_core::verify::read_records(&bytes).unwrap().0
        }
    })
    .await;
}

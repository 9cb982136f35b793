//! The memory backend passes the conformance suite.

use std::sync::Arc;

use approvals_backends::conformance;
use approvals_backends::memory::{MemoryAudit, MemoryStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_audit_conforms() {
    let audit = Arc::new(MemoryAudit::new());
    let read = audit.clone();
    conformance::audit_sink(audit, move || {
        let read = read.clone();
        async move { read.records() }
    })
    .await;
}

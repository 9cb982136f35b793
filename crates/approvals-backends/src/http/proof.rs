//! The audit proof the API and the console give with a request: its records, each a
//! [`ProofBundle`](approvals_core::log::ProofBundle) against the latest signed checkpoint.

use approvals_core::RequestId;
use approvals_core::log::{AuditLog, RequestProof};

/// Reads the log and proves `request`'s records.
pub(crate) async fn prove(log: &dyn AuditLog, request: RequestId) -> Result<RequestProof, String> {
    let stored = log.read_log().await.map_err(|e| e.to_string())?;
    stored.prove_request(request).map_err(|e| e.to_string())
}

//! How a store keeps a request when it does not keep it as a value: as its JSON document.
//!
//! The SQL stores write it to a row's `body`; the memory store keeps it in memory the same
//! way, because a request as a value is three times its size as text (a `serde_json` object
//! of one key is a map node with room for eleven), and a waiting call's request is most of
//! what the process keeps for it. One home for both, so that what one store can read, the
//! others read too.

use std::fmt::Display;

use approvals_core::{ApprovalRequest, StoreError};

/// Encodes a request as the JSON document a store keeps.
pub(crate) fn encode_request(backend: &str, r: &ApprovalRequest) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::backend(backend, e))
}

/// Decodes a stored request; `id` names it in the error.
pub(crate) fn decode_request(
    backend: &str,
    id: impl Display,
    body: &str,
) -> Result<ApprovalRequest, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::unreadable(backend, format!("request {id}"), e))
}

/// Decodes requests read in bulk, skipping (and logging) any that cannot be read: one bad
/// row never stops a list from showing the others. The due-work timer finds such a request
/// on its own, audits it and sets it aside ([`approvals_core::Gate::run_due`]).
#[cfg(feature = "sql")]
pub(crate) fn decode_rows<I: Display, B: AsRef<str>>(
    backend: &str,
    rows: impl IntoIterator<Item = (I, B)>,
) -> Vec<ApprovalRequest> {
    readable(
        rows.into_iter()
            .map(|(id, body)| decode_request(backend, id, body.as_ref())),
    )
}

/// The requests read, skipping (and logging) any that could not be: see [`decode_rows`].
pub(crate) fn readable(
    read: impl IntoIterator<Item = Result<ApprovalRequest, StoreError>>,
) -> Vec<ApprovalRequest> {
    read.into_iter()
        .filter_map(|r| {
            r.inspect_err(|e| {
                tracing::error!(error = %e, "skipping a stored request that cannot be read");
            })
            .ok()
        })
        .collect()
}

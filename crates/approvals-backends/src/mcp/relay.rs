//! The gateway's client side: the connection to the upstream server, and what the upstream
//! sends on its own (requests such as sampling, roots and elicitation; notifications such as
//! progress, logging and list changes), relayed to the downstream client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientResult, InitializeRequestParams, ProgressToken, ServerNotification, ServerRequest,
};
use rmcp::service::{
    NotificationContext, Peer, RequestContext, RoleClient, RoleServer, RunningService, Service,
    ServiceExt as _,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};

use super::{Shared, Upstream};

/// Progress tokens of calls in flight upstream, each mapped to the token the downstream
/// client gave (the SDK numbers its own requests' tokens).
#[derive(Debug, Default, Clone)]
pub(crate) struct ProgressMap(Arc<Mutex<HashMap<ProgressToken, ProgressToken>>>);

impl ProgressMap {
    pub(crate) fn insert(&self, upstream: ProgressToken, downstream: ProgressToken) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(upstream, downstream);
    }

    pub(crate) fn remove(&self, upstream: &ProgressToken) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(upstream);
    }

    fn get(&self, upstream: &ProgressToken) -> Option<ProgressToken> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(upstream)
            .cloned()
    }
}

/// What the upstream sends of its own accord goes to the downstream client, as it is.
pub(crate) struct Relay {
    downstream: Peer<RoleServer>,
    client: InitializeRequestParams,
    progress: ProgressMap,
}

impl Service<RoleClient> for Relay {
    async fn handle_request(
        &self,
        request: ServerRequest,
        _context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        if let ServerRequest::PingRequest(_) = request {
            return Ok(ClientResult::empty(()));
        }
        self.downstream
            .send_request(request)
            .await
            .map_err(|e| match e {
                rmcp::ServiceError::McpError(e) => e,
                other => McpError::internal_error(
                    format!("the MCP client did not answer the upstream's request: {other}"),
                    None,
                ),
            })
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), McpError> {
        let notification = match notification {
            ServerNotification::ProgressNotification(mut n) => {
                // Progress of a call the downstream asked progress for, under its token.
                let Some(token) = self.progress.get(&n.params.progress_token) else {
                    return Ok(());
                };
                n.params.progress_token = token;
                ServerNotification::ProgressNotification(n)
            }
            // The upstream cancels its own requests to us by its ids, which the client never
            // saw; the relayed request ends when its answer does.
            ServerNotification::CancelledNotification(_) => return Ok(()),
            other => other,
        };
        if let Err(e) = self.downstream.send_notification(notification).await {
            tracing::debug!(error = %e, "mcp: could not relay a notification to the client");
        }
        Ok(())
    }

    fn get_info(&self) -> InitializeRequestParams {
        self.client.clone()
    }
}

/// A live connection to the upstream.
pub(crate) type Link = RunningService<RoleClient, Relay>;

/// Starts (or reaches) the upstream and initializes it with the downstream client's own
/// `initialize` parameters, so the upstream sees the client it serves.
pub(crate) async fn connect(
    shared: &Shared,
    client: InitializeRequestParams,
    downstream: Peer<RoleServer>,
    progress: ProgressMap,
) -> Result<Link, McpError> {
    let relay = Relay {
        downstream,
        client,
        progress,
    };
    let failed = |e: &dyn std::fmt::Display| {
        McpError::internal_error(
            format!(
                "the gateway could not start the upstream MCP server {}: {e}",
                shared.upstream.describe()
            ),
            None,
        )
    };
    let started = async {
        match &shared.upstream {
            Upstream::Command { program, args } => {
                let mut command = tokio::process::Command::new(program);
                command.args(args);
                let (child, _) = TokioChildProcess::builder(command)
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|e| failed(&e))?;
                relay.serve(child).await.map_err(|e| failed(&e))
            }
            Upstream::Url(url) => {
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                relay.serve(transport).await.map_err(|e| failed(&e))
            }
        }
    };
    match tokio::time::timeout(shared.upstream_timeout, started).await {
        Ok(link) => link,
        Err(_) => Err(failed(&format_args!(
            "it did not finish initializing within {:?}",
            shared.upstream_timeout
        ))),
    }
}

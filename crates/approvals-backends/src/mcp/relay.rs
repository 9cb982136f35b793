//! The gateway's client side: the connection to the upstream server, and what the upstream
//! sends on its own (requests such as sampling, roots and elicitation; notifications such as
//! progress, logging and list changes), relayed to the downstream client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::ErrorData as McpError;
use rmcp::model::{
    ClientResult, InitializeRequestParams, JsonRpcMessage, JsonRpcNotification,
    ProgressNotificationParam, ProgressToken, ServerNotification, ServerRequest,
};
use rmcp::service::{
    NotificationContext, Peer, RequestContext, RoleClient, RoleServer, RunningService, Service,
    ServiceExt as _,
};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess, Transport};
use tokio::sync::{mpsc, watch};

use super::{Shared, Upstream};

/// Progress of the calls in flight upstream, relayed to the downstream client in the order
/// the upstream sent it and always before the call's answer.
///
/// The SDK hands each incoming notification to a task of its own, so two notifications, or
/// the last notification and the answer, can overtake each other; the MCP specification wants
/// progress to increase and to stop once the call completes. So progress never reaches the
/// SDK's handler: [`Ordered`] takes it off the upstream's transport as it is read, in order,
/// and one task per connection relays it; a call's answer waits until everything read before
/// it has been relayed ([`ProgressMap::settled`]).
#[derive(Debug, Clone)]
pub(crate) struct ProgressMap {
    /// Upstream token (the SDK numbers its own requests' tokens) to the client's token.
    tokens: Arc<Mutex<HashMap<ProgressToken, ProgressToken>>>,
    /// Progress notifications read off the upstream transport so far.
    read: Arc<AtomicU64>,
    /// Of those, how many the relay task has dealt with (sent on or dropped).
    relayed: watch::Sender<u64>,
}

impl Default for ProgressMap {
    fn default() -> Self {
        Self {
            tokens: Arc::default(),
            read: Arc::default(),
            relayed: watch::Sender::new(0),
        }
    }
}

impl ProgressMap {
    pub(crate) fn insert(&self, upstream: ProgressToken, downstream: ProgressToken) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(upstream, downstream);
    }

    pub(crate) fn remove(&self, upstream: &ProgressToken) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(upstream);
    }

    fn get(&self, upstream: &ProgressToken) -> Option<ProgressToken> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(upstream)
            .cloned()
    }

    /// Waits until every progress notification read before now has been relayed. Called
    /// when a call's answer has arrived, it keeps the answer behind the call's progress.
    pub(crate) async fn settled(&self) {
        let read = self.read.load(Ordering::Acquire);
        let mut relayed = self.relayed.subscribe();
        // An error means the relay task has ended with the connection: nothing to wait for.
        let _ = relayed.wait_for(|done| *done >= read).await;
    }

    /// The task that relays progress, one per upstream connection, in the order read.
    fn relay(
        &self,
        downstream: Peer<RoleServer>,
    ) -> mpsc::UnboundedSender<ProgressNotificationParam> {
        let (tx, mut rx) = mpsc::unbounded_channel::<ProgressNotificationParam>();
        let map = self.clone();
        tokio::spawn(async move {
            while let Some(mut progress) = rx.recv().await {
                // Only progress of a call the downstream asked progress for, under its token.
                if let Some(token) = map.get(&progress.progress_token) {
                    progress.progress_token = token;
                    if let Err(e) = downstream.notify_progress(progress).await {
                        tracing::debug!(error = %e, "mcp: could not relay progress to the client");
                    }
                }
                map.relayed.send_modify(|done| *done += 1);
            }
        });
        tx
    }
}

/// The upstream's transport, with its progress notifications taken off in the order they are
/// read and handed to the relay task (see [`ProgressMap`]).
pub(crate) struct Ordered<T> {
    inner: T,
    progress: ProgressMap,
    relay: mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl<T> Ordered<T> {
    fn new(inner: T, progress: &ProgressMap, downstream: &Peer<RoleServer>) -> Self {
        Self {
            inner,
            relay: progress.relay(downstream.clone()),
            progress: progress.clone(),
        }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Ordered<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            let JsonRpcMessage::Notification(JsonRpcNotification {
                notification: ServerNotification::ProgressNotification(n),
                ..
            }) = message
            else {
                return Some(message);
            };
            // Counted before the next message (perhaps the call's answer) is read.
            self.progress.read.fetch_add(1, Ordering::AcqRel);
            if self.relay.send(n.params).is_err() {
                self.progress.relayed.send_modify(|done| *done += 1);
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// What the upstream sends of its own accord goes to the downstream client, as it is.
pub(crate) struct Relay {
    downstream: Peer<RoleServer>,
    client: InitializeRequestParams,
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
            // Relayed in order by the progress task; none reach here (see `Ordered`).
            ServerNotification::ProgressNotification(_) => return Ok(()),
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
    let to_client = downstream.clone();
    let relay = Relay { downstream, client };
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
                relay
                    .serve(Ordered::new(child, &progress, &to_client))
                    .await
                    .map_err(|e| failed(&e))
            }
            Upstream::Url(url) => {
                // The SDK's HTTP client is built on rustls without a provider of its own:
                // ring, the one this workspace uses, unless the program installed another.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                relay
                    .serve(Ordered::new(transport, &progress, &to_client))
                    .await
                    .map_err(|e| failed(&e))
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

//! One client's session: the MCP server the client sees. Every request goes to the upstream
//! as it came, except `tools/call` (judged first) and `tools/list` (what only ever refuses is
//! hidden; what may need approval says so).
// Logging (`logging/setLevel`) is deprecated by SEP-2577 but still spoken by servers and
// clients of the versions this gateway serves: it passes through like the rest.
#![allow(deprecated)]

use std::borrow::Cow;
use std::sync::{Arc, OnceLock, RwLock};

use approvals_core::Context;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientNotification, ClientRequest,
    CompleteRequestParams, CompleteResult, CustomNotification, CustomRequest, CustomResult,
    GetPromptRequestParams, GetPromptResponse, GetSkillRequestParams, GetSkillResult,
    InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListSkillsResult, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult,
    ReadResourceRequestParams, ReadResourceResponse, Request, RequestOptionalParam, ServerResult,
    SetLevelRequestParams, SubscribeRequestParams, TASKS_EXTENSION_ID, Tool,
    UnsubscribeRequestParams,
};
use rmcp::service::{
    NotificationContext, Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer,
};
use rmcp::{ErrorData as McpError, ServerHandler};

use super::Shared;
use super::judge::{self, Judged, Progress};
use super::relay::{self, Link, ProgressMap};

/// One downstream session and its upstream connection.
pub(crate) struct Session {
    shared: Arc<Shared>,
    /// The client's `initialize`, kept to start the upstream again if it exits.
    client: OnceLock<InitializeRequestParams>,
    /// What the upstream said it is, as the client is told.
    server: RwLock<Option<InitializeResult>>,
    upstream: tokio::sync::Mutex<Option<Link>>,
    progress: ProgressMap,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            client: OnceLock::new(),
            server: RwLock::new(None),
            upstream: tokio::sync::Mutex::new(None),
            progress: ProgressMap::default(),
        }
    }

    /// The upstream's peer; started again when it has exited since the last request.
    async fn upstream(&self, downstream: &Peer<RoleServer>) -> Result<Peer<RoleClient>, McpError> {
        let mut link = self.upstream.lock().await;
        if let Some(l) = link.as_ref() {
            if !l.peer().is_transport_closed() {
                return Ok(l.peer().clone());
            }
            tracing::warn!(upstream = %self.shared.upstream.describe(), "mcp: the upstream server has gone; starting it again");
            *link = None;
        }
        let Some(client) = self.client.get() else {
            return Err(McpError::invalid_request(
                "initialize the session first",
                None,
            ));
        };
        let l = relay::connect(
            &self.shared,
            client.clone(),
            downstream.clone(),
            self.progress.clone(),
        )
        .await?;
        let peer = l.peer().clone();
        *link = Some(l);
        Ok(peer)
    }

    /// Sends `request` upstream as the client sent it (its `_meta` too), and returns the
    /// answer. The upstream's failure (exit, silence past the timeout, an error) is the
    /// client's JSON-RPC error; the request is sent once, never again.
    async fn forward(
        &self,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, McpError> {
        let peer = self.upstream(&context.peer).await?;
        let options = PeerRequestOptions::with_timeout(self.shared.upstream_timeout)
            .with_meta(context.meta.clone());
        let handle = peer
            .send_cancellable_request(request, options)
            .await
            .map_err(|e| self.upstream_failed(&e))?;
        let upstream_token = handle.progress_token.clone();
        if let Some(token) = context.meta.get_progress_token() {
            self.progress.insert(upstream_token.clone(), token);
        }
        let id = handle.id.clone();
        let result = tokio::select! {
            r = handle.await_response() => r.map_err(|e| self.upstream_failed(&e)),
            () = context.ct.cancelled() => {
                let _ = peer
                    .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                        Some(id),
                        Some("the client cancelled it".into()),
                    ))
                    .await;
                Err(McpError::internal_error("cancelled by the client", None))
            }
        };
        // The call's progress reaches the client before its answer, all of it.
        self.progress.settled().await;
        self.progress.remove(&upstream_token);
        result
    }

    fn upstream_failed(&self, e: &rmcp::ServiceError) -> McpError {
        match e {
            rmcp::ServiceError::McpError(e) => e.clone(),
            rmcp::ServiceError::TransportClosed => {
                tracing::error!(upstream = %self.shared.upstream.describe(), "mcp: the upstream server went away during a request");
                McpError::internal_error(
                    format!(
                        "the upstream MCP server ({}) went away before answering; the gateway is still up and starts it again on the next request",
                        self.shared.upstream.describe()
                    ),
                    None,
                )
            }
            rmcp::ServiceError::Timeout { timeout } => McpError::internal_error(
                format!(
                    "the upstream MCP server did not answer within {}",
                    approvals_core::clock::human(*timeout)
                ),
                None,
            ),
            other => {
                McpError::internal_error(format!("the upstream MCP server failed: {other}"), None)
            }
        }
    }

    /// Who makes this call: the configured agent, for the configured person (stdio) or the
    /// person the client's token names (HTTP).
    fn caller(&self, context: &RequestContext<RoleServer>) -> Context {
        let mut c = Context::new(self.shared.requester.clone());
        match super::http::caller(context) {
            Some(token) => {
                if let Some(p) = token.on_behalf_of {
                    c = c.on_behalf_of(p);
                }
                c = c.label("mcp_client", token.client.id);
            }
            None => {
                if let Some(p) = &self.shared.on_behalf_of {
                    c = c.on_behalf_of(p.clone());
                }
            }
        }
        c
    }
}

/// The client sees the upstream's own answer, without the tasks extension: a task would let
/// a tool call run later, outside the judgement made now.
fn as_told(mut info: InitializeResult) -> InitializeResult {
    if let Some(ext) = info.capabilities.extensions.as_mut() {
        ext.remove(TASKS_EXTENSION_ID);
    }
    info
}

macro_rules! expect {
    ($result:expr, $variant:ident) => {
        match $result? {
            ServerResult::$variant(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    };
}

/// Methods that send the client's request upstream as it came and return the upstream's
/// result of the expected kind (`Variant: Type` where the two names differ).
macro_rules! pass {
    ($($method:ident($params:ty) as $request:ident($wrap:path) -> $variant:ident $(: $ty:ty)?;)*) => {$(
        async fn $method(
            &self,
            request: $params,
            context: RequestContext<RoleServer>,
        ) -> Result<pass!(@ty $variant $($ty)?), McpError> {
            let r = self.forward(ClientRequest::$request($wrap(request)), &context);
            expect!(r.await, $variant)
        }
    )*};
    (@ty $variant:ident) => { $variant };
    (@ty $variant:ident $ty:ty) => { $ty };
}

/// Methods that send the client's request upstream as it came and answer with nothing.
macro_rules! pass_empty {
    ($($method:ident($params:ty) as $request:ident;)*) => {$(
        async fn $method(
            &self,
            request: $params,
            context: RequestContext<RoleServer>,
        ) -> Result<(), McpError> {
            let r = self.forward(ClientRequest::$request(Request::new(request)), &context);
            r.await.map(drop)
        }
    )*};
}

fn unexpected(r: &ServerResult) -> McpError {
    let kind = serde_json::to_value(r)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
        })
        .unwrap_or_default();
    McpError::internal_error(
        format!(
            "the upstream MCP server answered with a result of the wrong kind (fields: {kind})"
        ),
        None,
    )
}

impl ServerHandler for Session {
    fn get_info(&self) -> InitializeResult {
        self.server
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Only versions with an `initialize` handshake (the upstream is started then), and none
    /// newer than the upstream's.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        let ceiling = self
            .server
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|s| s.protocol_version.clone())
            .filter(|v| v.has_initialize())
            .unwrap_or(ProtocolVersion::LATEST_WITH_INITIALIZE);
        Cow::Borrowed(ProtocolVersion::known_up_to(&ceiling))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        if self.client.set(request).is_err() {
            return Err(McpError::invalid_request(
                "the session is already initialized",
                None,
            ));
        }
        self.upstream(&context.peer).await?;
        let info = {
            let link = self.upstream.lock().await;
            let peer_info = link.as_ref().and_then(|l| l.peer().peer_info());
            peer_info.ok_or_else(|| {
                McpError::internal_error("the upstream MCP server did not initialize", None)
            })?
        };
        let mut result = InitializeResult::new(info.capabilities.clone());
        result.protocol_version = info.protocol_version.clone();
        if let Some(s) = &info.server_info {
            result.server_info = s.clone();
        }
        result.instructions = info.instructions.clone();
        let result = as_told(result);
        *self
            .server
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result.clone());
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = self.caller(&context);
        let progress = context.meta.get_progress_token().map(|token| Progress {
            peer: context.peer.clone(),
            token,
        });
        let judged = judge::judge(
            &self.shared,
            &request.name,
            request.arguments.clone(),
            caller,
            progress,
            &context.ct,
        )
        .await?;
        let run = match judged {
            Judged::Answer(result) => return Ok(result.into()),
            Judged::Run(run) => run,
        };
        let forwarded = self
            .forward(
                ClientRequest::CallToolRequest(Request::new(request)),
                &context,
            )
            .await;
        let outcome = match &forwarded {
            Ok(ServerResult::CallToolResult(r)) if r.is_error == Some(true) => Err(text_of(r)),
            Ok(_) => Ok(None),
            Err(e) => Err(format!("the upstream failed: {}", e.message)),
        };
        // The answer goes out now; the end is recorded just after (the call was audited as
        // allowed, or its request started, before it was forwarded).
        let gate = self.shared.gate.clone();
        self.shared
            .finishing
            .spawn(async move { run.finish(&gate, outcome).await });
        match forwarded? {
            ServerResult::CallToolResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(r.into()),
            ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let r = self.forward(ClientRequest::ListToolsRequest(optional(request)), &context);
        let mut listed: ListToolsResult = expect!(r.await, ListToolsResult)?;
        let names = self.shared.gate.policy_names().unwrap_or_default();
        listed.tools.retain_mut(|tool| self.shown(&names, tool));
        Ok(listed)
    }

    async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), McpError> {
        Ok(())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let r = self.forward(
            ClientRequest::GetPromptRequest(Request::new(request)),
            &context,
        );
        match r.await? {
            ServerResult::GetPromptResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(r.into()),
            other => Err(unexpected(&other)),
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let r = self.forward(
            ClientRequest::ReadResourceRequest(Request::new(request)),
            &context,
        );
        match r.await? {
            ServerResult::ReadResourceResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(r.into()),
            other => Err(unexpected(&other)),
        }
    }

    pass! {
        complete(CompleteRequestParams) as CompleteRequest(Request::new) -> CompleteResult;
        list_prompts(Option<PaginatedRequestParams>) as ListPromptsRequest(optional) -> ListPromptsResult;
        list_resources(Option<PaginatedRequestParams>) as ListResourcesRequest(optional) -> ListResourcesResult;
        list_resource_templates(Option<PaginatedRequestParams>)
            as ListResourceTemplatesRequest(optional) -> ListResourceTemplatesResult;
        list_skills(Option<PaginatedRequestParams>) as ListSkillsRequest(optional) -> ListSkillsResult;
        get_skill(GetSkillRequestParams) as GetSkillRequest(Request::new) -> GetSkillResult;
        read_resource_directory(ReadResourceDirectoryRequestParams)
            as ReadResourceDirectoryRequest(Request::new) -> ListResourcesResult: ReadResourceDirectoryResult;
    }

    pass_empty! {
        set_level(SetLevelRequestParams) as SetLevelRequest;
        subscribe(SubscribeRequestParams) as SubscribeRequest;
        unsubscribe(UnsubscribeRequestParams) as UnsubscribeRequest;
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        if let Some(refusal) = super::bounded::refusal(&request) {
            return Err(refusal);
        }
        let r = self.forward(ClientRequest::CustomRequest(request), &context);
        expect!(r.await, CustomResult)
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.notify_upstream(
            ClientNotification::RootsListChangedNotification(Default::default()),
            &context.peer,
        )
        .await;
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) {
        self.notify_upstream(
            ClientNotification::CustomNotification(notification),
            &context.peer,
        )
        .await;
    }
}

impl Session {
    async fn notify_upstream(
        &self,
        notification: ClientNotification,
        downstream: &Peer<RoleServer>,
    ) {
        match self.upstream(downstream).await {
            Ok(peer) => {
                if let Err(e) = peer.send_notification(notification).await {
                    tracing::debug!(error = %e, "mcp: could not relay a notification upstream");
                }
            }
            Err(e) => tracing::debug!(error = %e.message, "mcp: no upstream for a notification"),
        }
    }

    /// Whether `tool` is listed, and its description as listed: hidden when no policy
    /// governs it or its policy can only refuse (unless configured to show them); marked
    /// when it may need approval.
    fn shown(&self, names: &std::collections::BTreeSet<String>, tool: &mut Tool) -> bool {
        let shared = &self.shared;
        let Some(policy) = judge::policy_for(names, &shared.server, &tool.name) else {
            return shared.show_refused;
        };
        let Some(possible) = shared.gate.possible(&policy) else {
            return true;
        };
        if possible.only_denies() {
            return shared.show_refused;
        }
        if possible.approval {
            let note = if possible.allow {
                "Some calls of this tool run only once people approve them (approvals gateway)."
            } else {
                "Calls of this tool run only once people approve them (approvals gateway)."
            };
            let described = match tool.description.as_deref() {
                Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
                _ => note.to_owned(),
            };
            tool.description = Some(described.into());
        }
        true
    }
}

fn optional<M: Default>(
    params: Option<PaginatedRequestParams>,
) -> RequestOptionalParam<M, PaginatedRequestParams> {
    match params {
        Some(p) => RequestOptionalParam::with_param(p),
        None => RequestOptionalParam {
            method: M::default(),
            params: None,
            extensions: Default::default(),
        },
    }
}

/// The text a failed tool result carries, for the audit record.
fn text_of(r: &CallToolResult) -> String {
    let text: Vec<&str> = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    if text.is_empty() {
        "the tool reported an error".into()
    } else {
        text.join("\n")
    }
}

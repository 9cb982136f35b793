//! The gateway over Streamable HTTP, for many clients: each presents a requester token of the
//! `[server]` table; the person its calls are made for comes from the token.

use std::sync::Arc;

use approvals_core::{Principal, PrincipalKind};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use super::Gateway;
use super::session::Session;
use crate::http::{OnBehalfOf, Tokens};

/// The header a client whose token may act for several people names the one it acts for.
pub const ON_BEHALF_OF_HEADER: &str = "x-approvals-on-behalf-of";

/// Who a client over HTTP is, as its token says.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's principal (recorded as the call's `mcp_client` label).
    pub(crate) client: Principal,
    /// The person its calls are made for.
    pub(crate) on_behalf_of: Option<Principal>,
}

/// The caller of a request that came over HTTP; `None` over stdio.
pub(crate) fn caller(context: &RequestContext<RoleServer>) -> Option<Caller> {
    context
        .extensions
        .get::<axum::http::request::Parts>()?
        .extensions
        .get::<Caller>()
        .cloned()
}

impl Gateway {
    /// The gateway as an axum router serving MCP's Streamable HTTP at `/mcp`. Every request
    /// needs `Authorization: Bearer` with a requester token (role `request`) of `tokens`.
    /// Its calls are made for the one person the token's `on_behalf_of` names, or the one
    /// the client names in `X-Approvals-On-Behalf-Of` among those it allows, or the token's
    /// own principal when that is a person; else for nobody. Each session has its own
    /// upstream connection (a started program is started per session).
    ///
    /// Host names are not checked (the token is): put it behind TLS when it leaves the host.
    pub fn router(&self, tokens: Tokens) -> axum::Router {
        let shared = self.shared.clone();
        let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
        let service = StreamableHttpService::new(
            move || Ok(Session::new(shared.clone())),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        axum::Router::new().route_service("/mcp", service).layer(
            axum::middleware::from_fn_with_state(Arc::new(tokens), authenticate),
        )
    }
}

async fn authenticate(State(tokens): State<Arc<Tokens>>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(entry) = presented.and_then(|t| tokens.authenticate(t)) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "send `Authorization: Bearer <token>` with a requester token of the gateway's [server] table",
        );
    };
    if !entry.roles.request {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "{}'s token may review requests, not make them (a requester token has role = \"request\")",
                entry.principal.id
            ),
        );
    }
    let named = req
        .headers()
        .get(ON_BEHALF_OF_HEADER)
        .map(|v| v.to_str().map(str::trim));
    let on_behalf_of = match named {
        Some(Ok(who)) if entry.on_behalf_of.allows(who) => Some(Principal::human(who)),
        Some(_) => {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!(
                    "{}'s token may not act for the person named in {ON_BEHALF_OF_HEADER}",
                    entry.principal.id
                ),
            );
        }
        None => match &entry.on_behalf_of {
            OnBehalfOf::These(ids) if ids.len() == 1 => Some(Principal::human(&ids[0])),
            _ if entry.principal.kind == PrincipalKind::Human => Some(entry.principal.clone()),
            _ => None,
        },
    };
    req.extensions_mut().insert(Caller {
        client: entry.principal.clone(),
        on_behalf_of,
    });
    next.run(req).await
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32001, "message": message},
    });
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

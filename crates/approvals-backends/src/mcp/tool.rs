//! Gating the tools of a server written with rmcp: `#[requires_approval]` on a `#[tool]`
//! method, with [`ToolError`] as its error, so that a refusal is what the model reads.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

/// The error of an rmcp `#[tool]` method gated with `#[requires_approval]`.
///
/// The gate's refusal (denied, expired, still waiting, unable to judge) becomes a tool result
/// with `isError: true` whose text says who refused and why, which the model reads and can
/// act on; an [`rmcp::ErrorData`] stays a JSON-RPC error.
///
/// ```
/// use approvals_backends::mcp::ToolError;
/// use approvals_core::{Denial, DeniedBy, Error};
/// use rmcp::handler::server::tool::IntoCallToolResult as _;
///
/// let refused = ToolError::from(Error::Denied(Denial {
///     by: DeniedBy::Policy { rule: "freeze".into() },
///     reason: Some("no deploys during the freeze".into()),
///     request_id: None,
/// }));
/// let rmcp::model::CallToolResponse::Complete(result) = refused.into_call_tool_result().unwrap()
/// else {
///     panic!("a refusal is a complete tool result")
/// };
/// let json = serde_json::to_value(&result).unwrap();
/// assert_eq!(json["isError"], true);
/// assert_eq!(
///     json["content"][0]["text"],
///     "Refused: denied by policy rule `freeze`: no deploys during the freeze. The call was not run."
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The gate did not let the call run.
    #[error("{}", .0.model_text())]
    NotRun(approvals_core::Error),
    /// The tool failed with a protocol error.
    #[error("{}", .0.message)]
    Protocol(rmcp::ErrorData),
}

impl From<approvals_core::Error> for ToolError {
    fn from(e: approvals_core::Error) -> Self {
        Self::NotRun(e)
    }
}

impl From<rmcp::ErrorData> for ToolError {
    fn from(e: rmcp::ErrorData) -> Self {
        Self::Protocol(e)
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        match self {
            Self::NotRun(_) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(self.to_string())]).into())
            }
            Self::Protocol(e) => Err(e),
        }
    }
}

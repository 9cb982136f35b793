//! `#[requires_approval]` on the `#[tool]` methods of an rmcp server, in both attribute
//! orders, called by an rmcp client over a real MCP session: an allowed call runs and returns
//! its result; a refused one never runs its body and reaches the model as a tool result with
//! `isError`, saying why.
#![cfg(feature = "mcp")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::mcp::ToolError;
use approvals::{CodePolicy, Gate, Verdict, requires_approval};
use common::*;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ServerConfig};
use rmcp::{ServerHandler, ServiceExt as _, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
struct Target {
    /// The service.
    service: String,
}

#[derive(Clone)]
struct Deployer {
    gate: Gate,
    runs: Arc<AtomicUsize>,
}

#[tool_router]
impl Deployer {
    // The order docs/mcp.md recommends: the tool's declaration, then the gate.
    #[tool(description = "Deploy a service")]
    #[requires_approval(policy = "deploy", gate = self.gate)]
    async fn deploy(
        &self,
        Parameters(target): Parameters<Target>,
    ) -> Result<CallToolResult, ToolError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "deployed {}",
            target.service
        ))]))
    }

    // The other order works too.
    #[requires_approval(policy = "deploy", gate = self.gate)]
    #[tool(description = "Roll a service back")]
    async fn rollback(
        &self,
        Parameters(target): Parameters<Target>,
    ) -> Result<CallToolResult, ToolError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "rolled back {}",
            target.service
        ))]))
    }
}

#[tool_handler]
impl ServerHandler for Deployer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
    }
}

fn policy() -> CodePolicy {
    CodePolicy::new().rule("deploy", |action, _| {
        Ok(if action.args["target"]["service"] == "db" {
            Verdict::deny("no-db", "the database is deployed by hand")
        } else {
            Verdict::allow("services")
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_rmcp_tools_run_when_allowed_and_tell_the_model_when_refused() {
    let h = Harness::with(|b| b.policy(policy()).default_context(agent()));
    let runs = Arc::new(AtomicUsize::new(0));
    let server = Deployer {
        gate: h.gate.clone(),
        runs: runs.clone(),
    };
    let (server_side, client_side) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move {
        let running = server.serve(tokio::io::split(server_side)).await.unwrap();
        running.waiting().await.unwrap();
    });
    let client = ().serve(tokio::io::split(client_side)).await.unwrap();

    let tools = client.peer().list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["deploy", "rollback"]);
    let schema = serde_json::to_value(&tools[0].input_schema).unwrap();
    assert_eq!(schema["required"], serde_json::json!(["service"]));

    for (tool, verb) in [("deploy", "deployed"), ("rollback", "rolled back")] {
        let call = |service: &str| {
            CallToolRequestParams::new(tool).with_arguments(
                serde_json::json!({ "service": service })
                    .as_object()
                    .unwrap()
                    .clone(),
            )
        };
        let ok = client.peer().call_tool(call("web")).await.unwrap();
        assert_eq!(ok.is_error, Some(false), "{tool}: {ok:?}");
        assert_eq!(ok.content[0].as_text().unwrap().text, format!("{verb} web"));

        let before = runs.load(Ordering::SeqCst);
        let refused = client.peer().call_tool(call("db")).await.unwrap();
        assert_eq!(refused.is_error, Some(true), "{tool}: {refused:?}");
        assert_eq!(
            refused.content[0].as_text().unwrap().text,
            "Refused: denied by policy rule `no-db`: the database is deployed by hand. The call was not run."
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            before,
            "a refused body never runs"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The macro recorded the tool's arguments for the policy and the audit trail.
    assert_eq!(
        h.event_names(),
        ["allowed", "policy_denied", "allowed", "policy_denied"]
    );
    client.cancel().await.unwrap();
    serving.await.unwrap();
}

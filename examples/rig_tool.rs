//! A rig tool gated by approvals: `#[requires_approval]` on the `call` of a rig
//! [`PortableTool`], and the gate's refusal handed to the model as rig's own refusal.
//!
//! ```sh
//! cargo run --example rig_tool --features policy
//! ```
//!
//! No model is called here: the example calls the tool as rig's agent loop would, and prints
//! what the model would read. It checks what it prints, so CI runs it as a test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::{CodePolicy, Context, Gate, Principal, Verdict, requires_approval};
use rig_core::tool::{PortableTool, ToolExecutionError};
use serde::{Deserialize, Serialize};

/// What the model asks for. `Serialize` too, so that the call can be recorded and judged.
#[derive(Debug, Deserialize, Serialize)]
struct DeployArgs {
    service: String,
}

/// The tool's error: the gate's refusal, or a failure of its own.
#[derive(Debug)]
enum DeployError {
    NotRun(approvals::Error),
}

impl std::error::Error for DeployError {}

impl std::fmt::Display for DeployError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeployError::NotRun(e) => write!(f, "{e}"),
        }
    }
}

impl From<approvals::Error> for DeployError {
    fn from(e: approvals::Error) -> Self {
        DeployError::NotRun(e)
    }
}

struct Deploy {
    gate: Gate,
    runs: Arc<AtomicUsize>,
}

impl PortableTool for Deploy {
    const NAME: &'static str = "deploy";
    type Args = DeployArgs;
    type Output = String;
    type Error = DeployError;

    fn description(&self) -> String {
        "Deploy a service".into()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": { "service": { "type": "string" } },
            "required": ["service"],
        })
    }

    /// A refusal is rig's refusal, with the words the model needs to adapt.
    fn map_error(&self, error: DeployError) -> ToolExecutionError {
        match error {
            DeployError::NotRun(e) => ToolExecutionError::refused(e.model_text()),
        }
    }

    #[requires_approval(policy = "deploy", gate = self.gate)]
    async fn call(&self, args: DeployArgs) -> Result<String, DeployError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("deployed {}", args.service))
    }
}

#[tokio::main]
async fn main() {
    let policy = CodePolicy::new().rule("deploy", |action, _| {
        Ok(if action.args["args"]["service"] == "db" {
            Verdict::deny("no-db", "the database is deployed by hand")
        } else {
            Verdict::allow("services")
        })
    });
    let gate = Gate::builder()
        .policy(policy)
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .default_context(Context::new(Principal::agent("rig-agent")))
        .build()
        .expect("the gate builds");
    let tool = Deploy {
        gate,
        runs: Arc::new(AtomicUsize::new(0)),
    };

    let ok = tool
        .call(DeployArgs {
            service: "web".into(),
        })
        .await;
    println!("deploy web: {ok:?}");
    assert_eq!(ok.unwrap(), "deployed web");

    let refused = tool
        .call(DeployArgs {
            service: "db".into(),
        })
        .await
        .expect_err("the policy refuses the database");
    let told = tool.map_error(refused);
    println!("deploy db: the model reads {:?}", told.model_feedback());
    assert_eq!(
        told.model_feedback(),
        Some(
            "Refused: denied by policy rule `no-db`: the database is deployed by hand. The call was not run."
        )
    );
    assert_eq!(
        tool.runs.load(Ordering::SeqCst),
        1,
        "the refused body never ran"
    );
    println!("bodies run: 1 (the refused one never ran)");
}

//! A condition that reads an argument no gated function records is refused when the gate is
//! built, with the functions' real arguments and a did-you-mean, instead of denying every
//! call at run time.

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::policy::FilePolicy;
use approvals::{BuildError, Gate, requires_approval};

#[requires_approval(policy = "deploy")]
async fn deploy(environment: &str, replicas: u32) -> Result<(), approvals::Error> {
    let _ = (environment, replicas);
    Ok(())
}

fn gate(src: &str) -> Result<Gate, BuildError> {
    let policy = FilePolicy::from_source("approvals.toml", src).unwrap();
    Gate::builder()
        .policy(policy)
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .build()
}

#[test]
fn a_misspelt_argument_stops_the_gate_from_building() {
    let err = gate(
        r#"
[[policies.deploy.rules]]
name = "staging-runs"
when = "args.enviroment == 'staging' && args.replicas < 5"
allow = true
"#,
    )
    .unwrap_err();
    let BuildError::UnknownArguments(unknown) = &err else {
        panic!("{err}")
    };
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].argument, "enviroment");
    assert_eq!(unknown[0].closest.as_deref(), Some("environment"));
    assert_eq!(
        err.to_string(),
        "policy conditions read arguments the gated functions do not have (every such call would be denied):\n  - policy `deploy`, rule `staging-runs` (line 2): reads `args.enviroment`, which no function gated by it records (argument_check::deploy(environment, replicas)); did you mean `args.environment`?"
    );
}

#[test]
fn real_arguments_pass_and_the_manifest_lists_them() {
    gate(
        r#"
[[policies.deploy.rules]]
when = "args.environment == 'staging' && has(args.replicas)"
allow = true
"#,
    )
    .unwrap();
    let manifest: Vec<approvals::registry::FunctionUse> =
        serde_json::from_str(&approvals::registry::manifest()).unwrap();
    let deploy = manifest
        .iter()
        .find(|f| f.function == "argument_check::deploy")
        .unwrap();
    assert_eq!(deploy.policy, "deploy");
    assert_eq!(deploy.params, ["environment", "replicas"]);
}

//! Every body shape compiles without a warning in a crate that denies them.
#![deny(warnings)]

use approvals::requires_approval;

#[requires_approval(policy = "p")]
fn sync_one_line(env: &str) -> Result<String, approvals::Error> {
    Ok(env.into())
}

#[requires_approval(policy = "p")]
async fn async_one_line(env: &str) -> Result<String, approvals::Error> {
    Ok(env.into())
}

#[requires_approval(policy = "p")]
async fn async_block_body(n: u32) -> Result<u32, approvals::Error> {
    let doubled = { n * 2 };
    Ok(doubled)
}

#[requires_approval(policy = "p")]
fn sync_early_return(n: u32) -> Result<u32, approvals::Error> {
    if n == 0 {
        return Ok(0);
    }
    Ok(n)
}

struct Agent;

impl Agent {
    #[requires_approval(policy = "p")]
    async fn method(&self, env: &str) -> Result<String, approvals::Error> {
        Ok(env.to_owned())
    }

    #[requires_approval(policy = "p")]
    fn sync_method(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[requires_approval(policy = "p")]
async fn unit_body() -> Result<(), approvals::Error> {
    Ok(())
}

#[requires_approval(policy = "p", editable(env, n))]
async fn async_editable(env: String, n: u32) -> Result<String, approvals::Error> {
    Ok(format!("{env}{n}"))
}

#[requires_approval(policy = "p", editable(n))]
fn sync_editable(n: u32) -> Result<u32, approvals::Error> {
    if n == 0 {
        return Ok(0);
    }
    Ok(n)
}

impl Agent {
    #[requires_approval(policy = "p", editable(replicas))]
    async fn editable_method(&self, replicas: u8) -> Result<u8, approvals::Error> {
        Ok(replicas)
    }
}

fn main() {
    let _ = (sync_one_line, async_one_line, async_block_body, sync_early_return, unit_body);
    let _ = (async_editable, sync_editable, Agent::editable_method);
    let _ = Agent::method;
    let _ = Agent::sync_method;
}

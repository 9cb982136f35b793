use approvals::requires_approval;

#[derive(serde::Serialize)]
struct Target {
    env: String,
}

#[requires_approval(policy = "deploy", editable(target))]
async fn deploy(target: Target) -> Result<String, approvals::Error> {
    Ok(target.env)
}

fn main() {}

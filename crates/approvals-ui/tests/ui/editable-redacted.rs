use approvals::requires_approval;

#[requires_approval(policy = "rotate", redact(secret), editable(secret))]
async fn rotate(secret: String) -> Result<usize, approvals::Error> {
    Ok(secret.len())
}

fn main() {}

use approvals::requires_approval;

#[requires_approval(policy = "export", redact(tokn))]
async fn export(token: String) -> Result<(), approvals::Error> {
    let _ = token;
    Ok(())
}

fn main() {}

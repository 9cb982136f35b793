use approvals::requires_approval;

#[requires_approval(policy = "export", timeout = "5 mintues")]
async fn export(limit: u32) -> Result<u32, approvals::Error> {
    Ok(limit)
}

fn main() {}

use approvals::requires_approval;

#[requires_approval(policy = "export", polcy = "typo")]
async fn export(limit: u32) -> Result<u32, approvals::Error> {
    Ok(limit)
}

fn main() {}

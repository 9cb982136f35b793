use approvals::requires_approval;

#[requires_approval(name = "x")]
async fn export(limit: u32) -> Result<u32, approvals::Error> {
    Ok(limit)
}

fn main() {}

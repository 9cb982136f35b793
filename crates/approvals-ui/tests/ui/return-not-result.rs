use approvals::requires_approval;

#[requires_approval(policy = "export")]
async fn export(limit: u32) -> u32 {
    limit
}

fn main() {}

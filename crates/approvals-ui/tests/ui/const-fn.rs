use approvals::requires_approval;

#[requires_approval(policy = "export")]
const fn export(limit: u32) -> Result<u32, ()> {
    Ok(limit)
}

fn main() {}

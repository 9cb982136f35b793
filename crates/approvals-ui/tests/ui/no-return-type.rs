use approvals::requires_approval;

#[requires_approval(policy = "export")]
fn export(limit: u32) {
    let _ = limit;
}

fn main() {}

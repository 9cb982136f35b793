use approvals::requires_approval;

#[derive(Debug)]
struct MyError;

#[requires_approval(policy = "export")]
fn export(limit: u32) -> Result<u32, MyError> {
    Ok(limit)
}

fn main() {}

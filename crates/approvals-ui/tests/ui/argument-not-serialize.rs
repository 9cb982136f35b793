use approvals::requires_approval;

struct Connection;

#[requires_approval(policy = "export")]
async fn export(conn: &Connection, limit: u32) -> Result<u32, approvals::Error> {
    let _ = conn;
    Ok(limit)
}

fn main() {}

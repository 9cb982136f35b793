//! The approvals router mounted inside an existing axum application, next to its own routes.
//!
//! ```text
//! cargo run --example embed_axum --features http              # serve on 127.0.0.1:8080
//! cargo run --example embed_axum --features http -- --demo    # approve over HTTP, then exit
//! ```
//!
//! A gated call (`billing::export_customers`) waits in the background. Approve it with the
//! printed token and `curl`, or pass `--demo` to have the example do that itself over
//! loopback and exit once the call has run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals::http::{ApprovalService, ReviewerTokens, generate_token};
use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::{
    CodePolicy, Context, Factor, Gate, Principal, Requirement, StaticDirectory, requires_approval,
    scope,
};
use axum::Router;
use axum::routing::get;

static EXPORTS: AtomicUsize = AtomicUsize::new(0);

#[requires_approval(policy = "export")]
async fn export_customers(limit: u32) -> Result<String, approvals::Error> {
    EXPORTS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("exported {limit} customers"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = std::env::args().any(|a| a == "--demo");
    let listen = if demo {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:8080"
    };

    let audit = Arc::new(MemoryAudit::new());
    let gate = Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(StaticDirectory::new().group("data-owners", ["alice"]))
        .store(MemoryStore::new())
        .audit(audit.clone())
        .build()?;

    // Tokens are shown once and kept only as hashes.
    let (alice_token, alice_hash) = generate_token();
    let approvals = ApprovalService::new(gate.clone())
        .tokens(ReviewerTokens::new().human(alice_hash, "alice"))
        .router();

    // The application's own routes, and the approvals routes beside them.
    let app = Router::new()
        .route("/", get(|| async { "the billing service\n" }))
        .route("/orders", get(|| async { "[]\n" }))
        .merge(approvals);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on {base}: / and /orders (the app), /api/v1/... (approvals)");

    // An agent's gated call, waiting for alice.
    let agent = Context::new(Principal::agent("billing-bot")).reason("monthly export");
    let call = tokio::spawn(scope::with_gate(
        gate.clone(),
        scope::with_context(agent, export_customers(500)),
    ));
    // The request exists once the audit trail holds it.
    audit
        .wait_for(|r| r.iter().any(|r| r.event.name() == "requested"))
        .await;
    let request = gate.pending().await?.remove(0);
    let id = request.id;
    let digest = request.action.digest;
    println!("waiting for approval of request {id}");
    println!("  curl -s -H 'Authorization: Bearer {alice_token}' {base}/api/v1/requests/{id}");
    println!(
        "  curl -s -H 'Authorization: Bearer {alice_token}' -H 'content-type: application/json' \\\n    -d '{{\"verdict\":\"approve\",\"digest\":\"{digest}\"}}' {base}/api/v1/requests/{id}/reviews"
    );

    if demo {
        let http = reqwest::Client::new();
        let app_root = http.get(format!("{base}/")).send().await?.text().await?;
        print!("GET / -> {app_root}");
        let r = http
            .post(format!("{base}/api/v1/requests/{id}/reviews"))
            .bearer_auth(&alice_token)
            .json(&serde_json::json!({ "verdict": "approve", "digest": digest, "comment": "demo" }))
            .send()
            .await?;
        println!("POST review -> {}", r.status());
    }
    let out = call.await??;
    println!(
        "{out} (the body ran {} time)",
        EXPORTS.load(Ordering::SeqCst)
    );
    if !demo {
        server.await??;
    }
    Ok(())
}

//! Shared by the channel tests: a server on loopback, and the gated call they decide.
#![allow(dead_code, unreachable_pub)]

use approvals_core::{Action, CallOptions, Context, Error, Gate, Principal};

/// Awaits `fut`, failing the test with `what` if it has not finished after 30 s: a bound,
/// so that a test whose awaited event never comes fails instead of hanging.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(std::time::Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("waited 30 s for {what}"),
    }
}

/// Serves `app` on a free loopback port; returns its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    base
}

/// The call every channel test asks about: `ops-bot`, for `dana`, exports 500 customers
/// with an API key that is redacted.
pub fn export_call() -> (Action, Context) {
    let action = Action::builder("billing::export_customers", "export")
        .arg("limit", &500)
        .redact("api_key", "sk-live-123")
        .build()
        .unwrap();
    let context = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .trigger("chat message from dana")
        .reason("weekly churn report");
    (action, context)
}

/// Starts the gated call: it waits for a decision, then runs and finishes.
pub fn spawn_call(gate: &Gate) -> tokio::task::JoinHandle<Result<(), Error>> {
    let gate = gate.clone();
    tokio::spawn(async move {
        let (action, context) = export_call();
        let permit = gate
            .authorize(action, context, CallOptions::default())
            .await?;
        permit.finish(Ok(())).await;
        Ok(())
    })
}

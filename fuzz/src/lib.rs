//! What the fuzz targets share: a gate over memory, a runtime, and one request served
//! through the real router, so every target reaches the code a remote client would.

use std::sync::OnceLock;
use std::time::Duration;

use approvals_backends::memory::{MemoryAudit, MemoryStore};
use approvals_core::{
    Action, CallOptions, CodePolicy, Context, Factor, Gate, Person, Principal, PrincipalKind,
    RequestId, Requirement, StaticDirectory,
};
use tower::ServiceExt as _;

/// One runtime for every input: building one per input would dominate the run.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// data-owners: alice, bob, dana (alice has the Slack id UALICE and Teams id aad-alice).
pub fn gate() -> Gate {
    Gate::builder()
        .policy(
            CodePolicy::new().require(
                "export",
                Requirement::new("one-data-owner")
                    .factor(Factor::group("data-owners", 1))
                    .expires_in(Duration::from_secs(3600)),
            ),
        )
        .directory(
            StaticDirectory::new()
                .person(
                    Person::new("alice", PrincipalKind::Human)
                        .slack("UALICE")
                        .teams("aad-alice"),
                )
                .person(Person::new("bob", PrincipalKind::Human))
                .group("data-owners", ["alice", "bob", "dana"]),
        )
        .store(MemoryStore::new())
        .audit(MemoryAudit::new())
        .skip_policy_check()
        .build()
        .expect("the gate builds")
}

/// Opens a pending request (a deferred call) and returns its id.
pub fn pending(gate: &Gate) -> RequestId {
    let action = Action::builder("billing::export", "export")
        .arg("limit", &500)
        .build()
        .expect("a plain argument");
    let ctx = Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human("dana"));
    let options = CallOptions {
        defer: true,
        ..CallOptions::default()
    };
    match runtime().block_on(gate.authorize(action, ctx, options)) {
        Err(approvals_core::Error::Pending { request_id }) => request_id,
        other => panic!("expected a pending request, got {other:?}"),
    }
}

/// Sends one request through `app`; fails the run on a server error (a 5xx other than 503,
/// which is a typed "unavailable" answer) or a panic.
pub fn send(app: &axum::Router, request: axum::http::Request<axum::body::Body>) -> u16 {
    let response = runtime()
        .block_on(app.clone().oneshot(request))
        .expect("the router always answers");
    let status = response.status().as_u16();
    assert!(
        status < 500 || status == 503,
        "server error {status} on fuzzed input"
    );
    status
}

//! Shared by the channel tests: a server on loopback, and the gated call they decide.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use approvals_backends::file::{FileAudit, FileAuditOptions, read_checkpoints};
use approvals_backends::memory::MemoryAudit;
use approvals_core::{
    Action, AuditError, AuditEvent, AuditReceipt, AuditRecord, AuditSink, CallOptions, CodePolicy,
    Context, Error, Factor, Gate, Principal, Requirement, Verdict,
};

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

/// What [`limits`] judges: an export of `limit` rows whose `limit` a reviewer may change.
pub fn editable_call(limit: u64) -> (Action, Context) {
    let action = Action::builder("billing::export_limited", "export")
        .arg("limit", &limit)
        .editable("limit")
        .build()
        .unwrap();
    let context = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .reason("churn report");
    (action, context)
}

/// One data owner for up to 10,000 rows, two above, never more than a million: the policy
/// the edit tests of every channel judge [`editable_call`] by.
pub fn limits() -> CodePolicy {
    CodePolicy::new().rule("export", |action, _| {
        let limit = action.args["limit"].as_u64().unwrap_or(u64::MAX);
        Ok(if limit > 1_000_000 {
            Verdict::deny("too-many-rows", "never more than a million rows")
        } else {
            let owners = if limit > 10_000 { 2 } else { 1 };
            Verdict::require(
                Requirement::new(if owners == 2 { "big-export" } else { "export" })
                    .factor(Factor::group("data-owners", owners)),
            )
        })
    })
}

/// Starts [`editable_call`] for `limit` rows: once approved, its body counts its run in
/// `runs` and answers the limit it ran with (a reviewer's, if they changed it).
pub fn spawn_editable_call(
    gate: &Gate,
    limit: u64,
    runs: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Result<u64, Error>> {
    let gate = gate.clone();
    tokio::spawn(async move {
        let (action, context) = editable_call(limit);
        let permit = gate
            .authorize(action, context, CallOptions::default())
            .await?;
        let ran_with = permit
            .edited_value("limit")
            .map_or(limit, |v| v.as_u64().unwrap());
        runs.fetch_add(1, Ordering::SeqCst);
        permit.finish(Ok(())).await;
        Ok(ran_with)
    })
}

/// Awaits a call started by [`spawn_editable_call`]: it must have run its body once, with
/// `limit` rows.
pub async fn ran_once_with(
    call: tokio::task::JoinHandle<Result<u64, Error>>,
    runs: &AtomicUsize,
    limit: u64,
) {
    let ran_with = within("the edited call", call).await.unwrap().unwrap();
    assert_eq!(ran_with, limit);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

/// The names of the records of request `id`, in order.
pub fn names_of(records: &[AuditRecord], id: approvals_core::RequestId) -> Vec<&'static str> {
    records
        .iter()
        .filter(|r| r.event.request_id == Some(id))
        .map(|r| r.event.name())
        .collect()
}

/// A signed audit log file, mirrored in memory so that a test can wait on what is written
/// ([`MemoryAudit::wait_for`]) and then verify the file as an auditor would.
pub struct SignedLog {
    pub memory: Arc<MemoryAudit>,
    sink: Arc<Mirror>,
    path: std::path::PathBuf,
    verifier: approvals_core::note::NoteVerifier,
    _dir: tempfile::TempDir,
}

struct Mirror {
    file: FileAudit,
    memory: Arc<MemoryAudit>,
}

#[async_trait::async_trait]
impl AuditSink for Mirror {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        let receipt = self.file.append(event.clone()).await?;
        self.memory.append(event).await?;
        Ok(receipt)
    }
    async fn flush(&self) -> Result<(), AuditError> {
        self.file.flush().await
    }
}

impl SignedLog {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let signer = approvals_core::note::NoteSigner::generate("channels.test").unwrap();
        let mut options = FileAuditOptions::new("channels.test/approvals", signer.clone());
        options.checkpoint_every = 3;
        let memory = Arc::new(MemoryAudit::new());
        let sink = Arc::new(Mirror {
            file: FileAudit::open(&path, options).unwrap(),
            memory: memory.clone(),
        });
        Self {
            memory,
            sink,
            path,
            verifier: signer.verifier(),
            _dir: dir,
        }
    }

    /// The sink to give the gate.
    pub fn sink(&self) -> Arc<dyn AuditSink> {
        self.sink.clone()
    }

    /// Every record, once the file and its signed checkpoints verify.
    pub async fn verified(&self) -> Vec<AuditRecord> {
        self.sink.flush().await.unwrap();
        let bytes = std::fs::read(&self.path).unwrap();
        let checkpoints = read_checkpoints(&self.path).unwrap();
        approvals_core::verify::verify_log(&bytes, &checkpoints, &self.verifier)
            .expect("the audit log verifies");
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

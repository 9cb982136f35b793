//! Programs that run one hot path of the gate a given number of times, for
//! `valgrind --tool=callgrind` to count its instructions (`.ci/instructions`). Counting
//! instructions, not time, gives a figure that does not move with the machine's load.

use std::sync::Arc;

use approvals::memory::{MemoryAudit, MemoryStore};
use approvals::store::Store;
use approvals::{
    AuditSink, CodePolicy, Context, Factor, Gate, Principal, Requirement, StaticDirectory,
};
use tokio::sync::watch;

/// The gate the waiting programs use: `export` waits for one of data-owners (alice), calls
/// come from ops-bot, the store and the audit log are in memory (the log is returned, to
/// wait on its records).
pub fn export_gate() -> Result<(Gate, Arc<MemoryAudit>), approvals::BuildError> {
    let audit = Arc::new(MemoryAudit::new());
    let gate = export_gate_on(Arc::new(MemoryStore::new()), audit.clone())?;
    Ok((gate, audit))
}

/// [`export_gate`]'s policy, directory and caller on the given store and audit sink.
pub fn export_gate_on(
    store: Arc<dyn Store>,
    audit: impl AuditSink + 'static,
) -> Result<Gate, approvals::BuildError> {
    Gate::builder()
        .policy(CodePolicy::new().require(
            "export",
            Requirement::new("one-data-owner").factor(Factor::group("data-owners", 1)),
        ))
        .directory(StaticDirectory::new().group("data-owners", ["alice"]))
        .store_arc(store)
        .audit(audit)
        .default_context(Context::new(Principal::agent("ops-bot")))
        .build()
}

/// How many callers wait for a decision, as the gate reports it (its
/// [`WAITERS`](approvals::telemetry::names::WAITERS) gauge), for a program to wait until
/// that many calls are in their wait (without a sleep): a `metrics` recorder that keeps that
/// one gauge and drops every other metric.
pub struct Waiters {
    count: Arc<WaitersGauge>,
}

struct WaitersGauge(watch::Sender<f64>);

impl metrics::GaugeFn for WaitersGauge {
    fn increment(&self, by: f64) {
        self.0.send_modify(|n| *n += by);
    }
    fn decrement(&self, by: f64) {
        self.0.send_modify(|n| *n -= by);
    }
    fn set(&self, to: f64) {
        self.0.send_replace(to);
    }
}

impl Waiters {
    /// Installs the recorder for the process; the receiver sees how many callers wait.
    pub fn install() -> Result<watch::Receiver<f64>, metrics::SetRecorderError<Self>> {
        let (count, seen) = watch::channel(0.0);
        metrics::set_global_recorder(Self {
            count: Arc::new(WaitersGauge(count)),
        })?;
        Ok(seen)
    }
}

impl metrics::Recorder for Waiters {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        if key.name() == approvals::telemetry::names::WAITERS {
            metrics::Gauge::from_arc(self.count.clone())
        } else {
            metrics::Gauge::noop()
        }
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// A two-worker runtime, as a small service would run.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

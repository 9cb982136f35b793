//! What the gate tells an operator as it works: `tracing` spans and events, and `metrics`
//! (the facade; a program installs a recorder, such as the Prometheus exporter
//! `approvals serve` uses). One home for every name, so the docs and the code agree.
//!
//! Spans: every gated call is a span [`CALL`] with the fields `action`, `policy`, `verdict`
//! and, once a request is made or joined, `request_id`; inside it [`POLICY`], [`REQUEST`]
//! (making or joining the request), [`DELIVERY`] (each channel), [`WAIT`] and, for calls
//! gated by `#[requires_approval]`, [`BODY`]. Each span after the request exists carries
//! `request_id` too. When nothing could see them (neither a subscriber nor a `log` logger
//! wants INFO), the spans of an allowed call are not made at all.
//!
//! Metrics (names as Prometheus shows them):
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `approvals_calls_total` | counter | `verdict` (`allow`, `deny`, `require_approval`) | calls judged |
//! | `approvals_decisions_total` | counter | `outcome`, `policy` | requests decided: approved, denied, expired, cancelled |
//! | `approvals_decision_seconds` | histogram | `outcome` | from a request's making to its decision |
//! | `approvals_gate_seconds` | histogram | | a call's judgement, from the gate's entry to its verdict or request (the gated-call overhead; waiting excluded) |
//! | `approvals_audit_append_seconds` | histogram | | one audit record's append, synced |
//! | `approvals_audit_failures_total` | counter | | audit appends that failed (the call failed closed) |
//! | `approvals_delivery_failures_total` | counter | `channel` | a channel that could not show a request |
//! | `approvals_waiters` | gauge | | callers in this process waiting for a decision |
//! | `approvals_requests_open` | gauge | | open requests in the store (set by the exporter when scraped) |

use std::time::Instant;

use crate::request::{ApprovalRequest, Decision};

/// The span of one gated call.
pub const CALL: &str = "approvals.call";
/// Judging the call by policy.
pub const POLICY: &str = "approvals.policy";
/// Making, or joining, the call's request in the store.
pub const REQUEST: &str = "approvals.request";
/// Showing the request on one channel.
pub const DELIVERY: &str = "approvals.delivery";
/// Waiting for people to decide.
pub const WAIT: &str = "approvals.wait";
/// The gated function's body, once allowed or approved.
pub const BODY: &str = "approvals.body";

/// The metric names, as registered (the Prometheus exporter shows them as they are).
pub mod names {
    /// Calls judged, by verdict.
    pub const CALLS: &str = "approvals_calls_total";
    /// Requests decided, by outcome and policy.
    pub const DECISIONS: &str = "approvals_decisions_total";
    /// From a request's making to its decision.
    pub const DECISION_SECONDS: &str = "approvals_decision_seconds";
    /// A call's judgement: the gated-call overhead.
    pub const GATE_SECONDS: &str = "approvals_gate_seconds";
    /// One audit append.
    pub const AUDIT_APPEND_SECONDS: &str = "approvals_audit_append_seconds";
    /// Failed audit appends.
    pub const AUDIT_FAILURES: &str = "approvals_audit_failures_total";
    /// Channels that could not show a request.
    pub const DELIVERY_FAILURES: &str = "approvals_delivery_failures_total";
    /// Callers waiting for a decision.
    pub const WAITERS: &str = "approvals_waiters";
    /// Open requests in the store.
    pub const REQUESTS_OPEN: &str = "approvals_requests_open";
}

/// The keys of the metrics every call touches, built (and hashed) once. The `metrics`
/// macros build a static key only from a literal name; from a constant such as
/// [`names::CALLS`] they build and hash the key again on every call.
mod keys {
    use metrics::{Key, Label, Level, Metadata};

    use super::names;

    pub(super) static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    static ALLOW: [Label; 1] = [Label::from_static_parts("verdict", "allow")];
    static DENY: [Label; 1] = [Label::from_static_parts("verdict", "deny")];
    static REQUIRE: [Label; 1] = [Label::from_static_parts("verdict", "require_approval")];

    pub(super) static CALLS_ALLOW: Key = Key::from_static_parts(names::CALLS, &ALLOW);
    pub(super) static CALLS_DENY: Key = Key::from_static_parts(names::CALLS, &DENY);
    pub(super) static CALLS_REQUIRE: Key = Key::from_static_parts(names::CALLS, &REQUIRE);
    pub(super) static GATE_SECONDS: Key = Key::from_static_name(names::GATE_SECONDS);
    pub(super) static AUDIT_APPEND_SECONDS: Key =
        Key::from_static_name(names::AUDIT_APPEND_SECONDS);
}

/// The time from one reading of the clock to another, worked out only if a histogram
/// records it (about 75 instructions a subtraction).
struct Between(Instant, Instant);

impl metrics::IntoF64 for Between {
    fn into_f64(self) -> f64 {
        self.1.duration_since(self.0).as_secs_f64()
    }
}

/// Whether a span at INFO (as all the gate's are) made now could be seen: a `tracing`
/// subscriber wants that level, or a `log` logger does. When neither does, the gate makes
/// no span on an allowed call's path.
///
/// A span no subscriber wants costs little, unless `tracing`'s `log` feature is on, which
/// any crate in the build can turn on (sqlx does). Then each such span keeps its metadata
/// to be offered to `log`, and is offered at each step: made, entered, left, dropped. On an
/// allowed call that was about 630 instructions and 45 ns (0.54 µs a call against 0.49 µs:
/// `allowed_call` built with and without `approvals-perf`'s `sqlite` and `postgres`
/// features), for lines that no logger would write.
pub(crate) fn spans_seen() -> bool {
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    (STATIC_MAX_LEVEL >= tracing::Level::INFO && LevelFilter::current() >= tracing::Level::INFO)
        || log::max_level() >= log::Level::Info
}

/// The start of something a histogram times: a reading of the clock, taken only if a
/// metrics recorder records that histogram. Without one, an allowed call reads the clock
/// once (its record's time), not four times (16 ns a reading on the machine in the README).
#[must_use]
pub(crate) struct Stopwatch(Option<(metrics::Histogram, Instant)>);

impl Stopwatch {
    /// The start of a call's judging ([`names::GATE_SECONDS`]).
    pub(crate) fn judging() -> Self {
        Self::start(&keys::GATE_SECONDS)
    }

    /// The start of an audit append ([`names::AUDIT_APPEND_SECONDS`]).
    pub(crate) fn append() -> Self {
        Self::start(&keys::AUDIT_APPEND_SECONDS)
    }

    fn start(key: &'static metrics::Key) -> Self {
        let histogram = metrics::with_recorder(|r| r.register_histogram(key, &keys::METADATA));
        if records(&histogram) {
            Stopwatch(Some((histogram, Instant::now())))
        } else {
            Stopwatch(None)
        }
    }

    /// Records the time from the start to `end`, or to now if `end` is none, `times` times
    /// (records committed together each took the transaction's time). Gives back the end
    /// if the time was recorded, so that a caller timing what this ends need not read the
    /// clock again.
    fn stop(self, end: Option<Instant>, times: usize) -> Option<Instant> {
        let (histogram, start) = self.0?;
        let end = end.unwrap_or_else(Instant::now);
        histogram.record_many(Between(start, end), times);
        Some(end)
    }
}

/// Whether `histogram` records what it is given: no handle says so, but only one that
/// records takes a value's number ([`metrics::IntoF64`]), which recording it zero times
/// asks for and records nothing.
fn records(histogram: &metrics::Histogram) -> bool {
    struct Probe<'a>(&'a std::cell::Cell<bool>);
    impl metrics::IntoF64 for Probe<'_> {
        fn into_f64(self) -> f64 {
            self.0.set(true);
            0.0
        }
    }
    let asked = std::cell::Cell::new(false);
    histogram.record_many(Probe(&asked), 0);
    asked.get()
}

/// A call's verdict, counted, and its judging timed from `since` to `now` (a reading the
/// caller already took, on the allowed path the end of its record's append; else now).
pub(crate) fn judged(verdict: &'static str, since: Stopwatch, now: Option<Instant>) {
    let calls = match verdict {
        "allow" => &keys::CALLS_ALLOW,
        "deny" => &keys::CALLS_DENY,
        _ => &keys::CALLS_REQUIRE,
    };
    metrics::with_recorder(|r| r.register_counter(calls, &keys::METADATA).increment(1));
    since.stop(now, 1);
    // On the call's span: when it was not made it is not there to record on, and finding
    // the current span costs more than the rest of this.
    if spans_seen() {
        tracing::Span::current().record("verdict", verdict);
    }
}

/// A request decided here: a log line at info, and the counters.
pub(crate) fn decided(req: &ApprovalRequest, d: &Decision) {
    let outcome = d.word();
    let by: Vec<&str> = match d {
        Decision::Approved { by, .. } => by.iter().map(|p| p.id.as_str()).collect(),
        Decision::Denied { by, .. }
        | Decision::ChangesRequested { by, .. }
        | Decision::Edited { by, .. } => vec![by.id.as_str()],
        Decision::Cancelled { by, .. } => by.iter().map(|p| p.id.as_str()).collect(),
        Decision::Expired { .. } => Vec::new(),
    };
    tracing::info!(
        request_id = %req.id,
        action = %req.action.name,
        policy = %req.action.policy,
        outcome,
        by = %by.join(","),
        "request decided"
    );
    metrics::counter!(names::DECISIONS, "outcome" => outcome, "policy" => req.action.policy.to_string())
        .increment(1);
    let waited = d.at().duration_since(req.created_at);
    metrics::histogram!(names::DECISION_SECONDS, "outcome" => outcome).record(waited);
}

/// An audit append that `started` timed, ended now; gives back the end if it was timed.
pub(crate) fn audit_appended(started: Stopwatch, ok: bool) -> Option<Instant> {
    let ended = started.stop(None, 1);
    if !ok {
        metrics::counter!(names::AUDIT_FAILURES).increment(1);
    }
    ended
}

/// Records committed with a store change since `started`: each is an append, timed by its
/// transaction. (A failed transaction is the store's error: the change was not made either.)
pub(crate) fn audit_committed(started: Stopwatch, records: usize) {
    started.stop(None, records);
}

/// A channel that could not show a request.
pub(crate) fn delivery_failed(channel: &str) {
    metrics::counter!(names::DELIVERY_FAILURES, "channel" => channel.to_owned()).increment(1);
}

/// Counts a caller as waiting while it lives.
pub(crate) struct Waiting;

impl Waiting {
    pub(crate) fn start() -> Self {
        metrics::gauge!(names::WAITERS).increment(1.0);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!(names::WAITERS).decrement(1.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

    use super::*;

    /// Records the gate's judging times (every value given), and nothing else.
    #[derive(Default)]
    struct JudgingTimes(Arc<Mutex<Vec<f64>>>);

    struct Values(Arc<Mutex<Vec<f64>>>);

    impl metrics::HistogramFn for Values {
        fn record(&self, value: f64) {
            self.0.lock().unwrap().push(value);
        }
    }

    impl metrics::Recorder for JudgingTimes {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            if key.name() == names::GATE_SECONDS {
                Histogram::from_arc(Arc::new(Values(self.0.clone())))
            } else {
                Histogram::noop()
            }
        }
    }

    #[test]
    fn a_stopwatch_reads_the_clock_only_for_a_histogram_that_records() {
        // No recorder: nothing read, nothing recorded.
        assert!(Stopwatch::judging().0.is_none());
        assert!(Stopwatch::judging().stop(None, 1).is_none());

        let recorder = JudgingTimes::default();
        let times = recorder.0.clone();
        metrics::with_local_recorder(&recorder, || {
            // A recorder that does not record this histogram.
            assert!(Stopwatch::append().0.is_none());
            // One that does: timed from the reading at the start to the end given.
            let watch = Stopwatch::judging();
            let (_, start) = watch.0.as_ref().expect("the judging is timed");
            let end = *start + std::time::Duration::from_millis(3);
            assert_eq!(watch.stop(Some(end), 1), Some(end));
            // Records committed together: each takes the same time.
            let watch = Stopwatch::judging();
            let (_, start) = watch.0.as_ref().unwrap();
            let end = *start + std::time::Duration::from_millis(5);
            watch.stop(Some(end), 2);
            // The probe itself recorded nothing.
            assert_eq!(*times.lock().unwrap(), [0.003, 0.005, 0.005]);
        });
    }
}

//! The gate's spans reach a subscriber: an allowed call makes `approvals.call`, judged
//! inside `approvals.policy`, and its body runs in `approvals.body`, a child of the call's.
//! (Without a subscriber or a `log` logger the gate makes none of them: see
//! `telemetry::spans_seen`.) Its own test binary: the subscriber it sets changes the
//! process's maximum level, which every test in a binary shares.

use std::sync::{Arc, Mutex};

use approvals_core::doc_support::{NullAudit, NullStore};
use approvals_core::{Action, CallOptions, CodePolicy, Context, Gate, Principal};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span's name, and its explicit parent's.
type Made = (&'static str, Option<&'static str>);

/// Every span made, in order.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Made>>>);

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut made = self.0.lock().unwrap();
        // Ids are positions from 1; a span's explicit parent is one made before it.
        let parent = span
            .parent()
            .and_then(|p| made.get(p.into_u64() as usize - 1))
            .map(|(name, _)| *name);
        made.push((span.metadata().name(), parent));
        Id::from_u64(made.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn an_allowed_call_makes_its_spans_for_a_subscriber() {
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let gate = Gate::builder()
        .policy(CodePolicy::new().allow("read"))
        .store(NullStore)
        .audit(NullAudit)
        .build()
        .unwrap();
    let action = Action::builder("read_dashboard", "read").build().unwrap();
    let permit = gate
        .authorize(
            action,
            Context::new(Principal::agent("ops-bot")),
            CallOptions::default(),
        )
        .await
        .unwrap();
    drop(permit.body_span());
    let made = spans.0.lock().unwrap().clone();
    assert!(made.contains(&("approvals.call", None)), "{made:?}");
    assert!(
        made.iter().any(|(name, _)| *name == "approvals.policy"),
        "{made:?}"
    );
    assert!(
        made.contains(&("approvals.body", Some("approvals.call"))),
        "{made:?}"
    );
}

//! Every gated call is a `tracing` span carrying its action, policy, verdict and request id,
//! with the policy, the request, each delivery, the wait and the body inside it: what an
//! operator's OpenTelemetry pipeline sees. Collected here by a test subscriber.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use approvals::mock::MockApprover;
use approvals::{Error, requires_approval, scope};
use common::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// One span as the subscriber saw it: its name, fields and parent.
#[derive(Debug, Clone)]
struct Seen {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<u64>,
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<BTreeMap<u64, Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = attrs
            .parent()
            .cloned()
            .or_else(|| {
                attrs
                    .is_contextual()
                    .then(|| ctx.current_span().id().cloned())
                    .flatten()
            })
            .map(|p| p.into_u64());
        self.0.lock().unwrap().insert(
            id.into_u64(),
            Seen {
                name: attrs.metadata().name(),
                fields,
                parent,
            },
        );
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: LayerContext<'_, S>) {
        if let Some(s) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut s.fields));
        }
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    fn id_of(&self, name: &str) -> u64 {
        let all = self.0.lock().unwrap();
        let found: Vec<u64> = all
            .iter()
            .filter(|(_, s)| s.name == name)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(found.len(), 1, "one {name} span: {all:?}");
        found[0]
    }
}

#[requires_approval(policy = "export")]
async fn export(limit: u32) -> Result<u32, Error> {
    Ok(limit)
}

#[requires_approval(policy = "read")]
async fn read() -> Result<(), Error> {
    Ok(())
}

#[tokio::test]
async fn every_gated_call_is_a_span_with_its_request_id_on_each_step() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let h = Harness::with(|b| {
        b.policy(policy())
            .approver(MockApprover::auto_approve("alice").named("auto"))
    });
    scope::with_gate(
        h.gate.clone(),
        scope::with_context(agent(), async {
            assert_eq!(export(7).await.unwrap(), 7);
        }),
    )
    .await;

    let request_id = h.gate.decided(10).await.unwrap()[0].id.to_string();
    let call = &spans.named("approvals.call")[0];
    assert_eq!(call.fields["action"], "telemetry::export");
    assert_eq!(call.fields["policy"], "export");
    assert_eq!(call.fields["verdict"], "require_approval");
    assert_eq!(call.fields["request_id"], request_id);
    for step in ["approvals.request", "approvals.wait", "approvals.body"] {
        let seen = spans.named(step);
        assert_eq!(seen.len(), 1, "{step}: {seen:?}");
        assert_eq!(seen[0].fields["request_id"], request_id, "{step}");
    }
    // One delivery span per channel (the harness's mock, and the approving one).
    let deliveries = spans.named("approvals.delivery");
    let mut channels: Vec<&str> = deliveries
        .iter()
        .map(|d| d.fields["channel"].as_str())
        .collect();
    channels.sort_unstable();
    assert_eq!(channels, ["auto", "mock"]);
    assert!(
        deliveries
            .iter()
            .all(|d| d.fields["request_id"] == request_id)
    );
    // Each step is inside the call's span.
    let call_id = spans.id_of("approvals.call");
    for step in [
        "approvals.policy",
        "approvals.request",
        "approvals.wait",
        "approvals.body",
    ] {
        assert_eq!(spans.named(step)[0].parent, Some(call_id), "{step}");
    }
}

#[tokio::test]
async fn an_allowed_call_is_a_span_with_its_verdict_and_no_request() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let h = Harness::new();
    scope::with_gate(
        h.gate.clone(),
        scope::with_context(agent(), async {
            read().await.unwrap();
        }),
    )
    .await;
    let call = &spans.named("approvals.call")[0];
    assert_eq!(call.fields["verdict"], "allow");
    assert!(!call.fields.contains_key("request_id"), "{call:?}");
    let body = &spans.named("approvals.body")[0];
    assert_eq!(body.parent, Some(spans.id_of("approvals.call")));
}

//! What `approvals` tells an operator: logs (text, or JSON lines for log shippers, on
//! standard error), metrics (the Prometheus text format at `/metrics`) and, with the feature
//! `otel`, every gated call's spans over OTLP. The names are core's
//! ([`approvals_core::telemetry`]).

#[cfg(feature = "otel")]
use std::time::Duration;

use approvals_backends::http::Tokens;
use approvals_core::Gate;
use approvals_core::telemetry::names;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::output::Failure;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// What the logs show unless `APPROVALS_LOG` (an `EnvFilter`) says otherwise: this
/// project's own events at `level`, everyone else's warnings.
fn default_filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!(
        "warn,approvals={level},approvals_core={level},approvals_backends={level},approvals_cli={level},approvals_policy={level}"
    ))
}

/// Kept for the life of the process: flushes exported spans when dropped.
pub(crate) struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider.take() {
            // Bounded: an unreachable collector never holds the exit up for long.
            if let Err(e) = p.shutdown_with_timeout(Duration::from_secs(2)) {
                eprintln!("approvals: could not flush the last spans: {e}");
            }
        }
    }
}

/// Installs the log subscriber (and, with `otlp`, the span exporter).
pub(crate) fn init(
    format: LogFormat,
    level: &str,
    otlp: Option<&str>,
) -> Result<Telemetry, Failure> {
    let filter = EnvFilter::try_from_env("APPROVALS_LOG").unwrap_or_else(|_| default_filter(level));
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otel")]
    if let Some(endpoint) = otlp {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
        // Batched on the exporter's own thread: a collector that is slow or gone delays
        // nothing but its own batches, and drops spans past the queue.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("approvals")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("approvals");
        registry
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .try_init()
            .map_err(|e| e.to_string())?;
        return Ok(Telemetry {
            provider: Some(provider),
        });
    }
    #[cfg(not(feature = "otel"))]
    if let Some(endpoint) = otlp {
        return Err(format!(
            "--otlp-endpoint {endpoint}: this build has no OpenTelemetry export (build with --features otel)"
        )
        .into());
    }
    registry.try_init().map_err(|e| e.to_string())?;
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        provider: None,
    })
}

/// Seconds, from a tenth of a millisecond (a call's judgement) to a day (a decision).
const BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
];

/// Installs the Prometheus recorder every metric of the process goes to.
pub(crate) fn prometheus() -> Result<PrometheusHandle, Failure> {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| Failure::from(format!("metrics: {e}")))
}

/// The `/metrics` route: the Prometheus text format, for a token with the `metrics` role
/// (`tokens`), or for anyone on a separate listener (`None`).
pub(crate) fn router(gate: Gate, handle: PrometheusHandle, tokens: Option<Tokens>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(Scrape {
            gate,
            handle,
            tokens: tokens.map(std::sync::Arc::new),
        })
}

#[derive(Clone)]
struct Scrape {
    gate: Gate,
    handle: PrometheusHandle,
    tokens: Option<std::sync::Arc<Tokens>>,
}

async fn scrape(State(s): State<Scrape>, headers: HeaderMap) -> Response {
    if let Some(tokens) = &s.tokens {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented.and_then(|t| tokens.authenticate(t)) {
            None => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "send `Authorization: Bearer <token>` with a token whose role is \"metrics\"\n",
                )
                    .into_response();
            }
            Some(e) if !e.roles.metrics => {
                return (
                    StatusCode::FORBIDDEN,
                    "this token may not read metrics (a scraper's token has role = \"metrics\")\n",
                )
                    .into_response();
            }
            Some(_) => {}
        }
    }
    match s.gate.pending().await {
        Ok(open) => metrics::gauge!(names::REQUESTS_OPEN).set(open.len() as f64),
        Err(e) => tracing::warn!(error = %e, "metrics: could not count the open requests"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.handle.render(),
    )
        .into_response()
}

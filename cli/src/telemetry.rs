//! OpenTelemetry export: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the spans the library
//! starts (`herald::telemetry`) go over OTLP/HTTP to that collector.
//! Without it nothing is installed: the library's spans stay no-ops.
//!
//! The standard variables are read by the SDK itself: `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`,
//! `OTEL_SPAN_*_LIMIT`, `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, `…TIMEOUT`,
//! `…COMPRESSION`; this module decides only whether to export and how.
//!
//! Exporting never holds up email: spans are queued (dropped when the
//! queue is full) and sent by the SDK's own thread; a failed export is
//! logged once, then at most every five minutes, and again when it works.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

use crate::commands::Command;

/// At most one "still failing" log line per this long.
const REPORT_EVERY: Duration = Duration::from_secs(300);
/// How long shutdown waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the environment asks for.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Off,
    Export {
        endpoint: String,
        protocol: Proto,
    },
    /// Asked for, but not something this build can do: export stays off.
    Refused(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Protobuf,
    Json,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Protobuf => "http/protobuf",
            Proto::Json => "http/json",
        }
    }
}

/// Decide from the environment (`get` reads one variable).
fn plan(get: impl Fn(&str) -> Option<String>) -> Plan {
    let var = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Plan::Off;
    }
    let Some(endpoint) =
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Plan::Off;
    };
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Plan::Off,
        Some(other) => {
            return Plan::Refused(format!(
                "OTEL_TRACES_EXPORTER={other}: herald exports traces only over OTLP (otlp)"
            ));
        }
    }
    let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        None | Some("http/protobuf") => Proto::Protobuf,
        Some("http/json") => Proto::Json,
        Some("grpc") => {
            return Plan::Refused(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: herald speaks OTLP over HTTP only; \
                 use http/protobuf and the collector's HTTP port (4318)"
                    .into(),
            );
        }
        Some(other) => {
            return Plan::Refused(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not an OTLP protocol (http/protobuf, http/json)"
            ));
        }
    };
    Plan::Export { endpoint, protocol }
}

/// The service name when the environment gives none: the command's role.
fn service_name(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Relay(_) => "herald-relay",
        Command::Worker(_) => "herald-worker",
        Command::Up(_) | Command::Demo(_) => "herald",
        Command::Replay(_) => "herald-replay",
        Command::Dlq(_) => "herald-dlq",
        _ => return None,
    })
}

/// The exporter, when one was installed; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Install the OTLP exporter if the environment asks for one and
    /// `command` does work that makes spans. A setting this build cannot
    /// honour is logged and export stays off: telemetry never stops email.
    pub fn init(command: &Command) -> Telemetry {
        let off = Telemetry { provider: None };
        let Some(default_name) = service_name(command) else {
            return off;
        };
        let (endpoint, protocol) = match plan(|k| std::env::var(k).ok()) {
            Plan::Off => return off,
            Plan::Refused(why) => {
                tracing::error!("OpenTelemetry export is off: {why}");
                return off;
            }
            Plan::Export { endpoint, protocol } => (endpoint, protocol),
        };
        let endpoint = herald::secret::redact_url(&endpoint);
        // reqwest is built without a TLS provider of its own: rustls uses
        // the process default, ring, as the rest of Herald does. An error
        // means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(match protocol {
                Proto::Protobuf => Protocol::HttpBinary,
                Proto::Json => Protocol::HttpJson,
            })
            .build();
        let exporter = match exporter {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(%endpoint, error = %e, "OpenTelemetry export is off: cannot build the OTLP exporter");
                return off;
            }
        };
        let resource = resource(default_name);
        let service = resource
            .get(&opentelemetry::Key::new("service.name"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Reported::new(exporter, endpoint.clone()))
            .with_resource(resource)
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::info!(%endpoint, protocol = protocol.name(), %service, "exporting traces over OTLP");
        Telemetry {
            provider: Some(provider),
        }
    }

    /// Export what is still queued (at most [`FLUSH_TIMEOUT`]) and stop.
    /// Called after the command's work has stopped, outside the runtime:
    /// the SDK's thread does the export.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!(error = %e, "the last spans may not have been exported");
        }
    }
}

/// The resource every span carries: the environment's (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), else `default_name` and Herald's version.
fn resource(default_name: &'static str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let versioned = detected
        .get(&opentelemetry::Key::new("service.version"))
        .is_some();
    let mut b = Resource::builder();
    if !named {
        b = b.with_service_name(default_name);
    }
    if !versioned {
        b = b.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    b.build()
}

/// An exporter that says when exports fail, without flooding the log.
#[derive(Debug)]
struct Reported<E> {
    inner: E,
    endpoint: String,
    state: Mutex<Failing>,
}

#[derive(Debug, Default)]
struct Failing {
    since: Option<Instant>,
    last_report: Option<Instant>,
    dropped: u64,
}

impl<E> Reported<E> {
    fn new(inner: E, endpoint: String) -> Self {
        Reported {
            inner,
            endpoint,
            state: Mutex::new(Failing::default()),
        }
    }

    fn note(&self, result: &OTelSdkResult, spans: usize) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        match result {
            Ok(()) => {
                if let Some(since) = s.since.take() {
                    tracing::info!(endpoint = %self.endpoint, dropped_spans = s.dropped,
                        failing_for_s = since.elapsed().as_secs(), "exporting traces again");
                }
                *s = Failing::default();
            }
            Err(e) => {
                s.dropped += spans as u64;
                if s.since.is_none() {
                    s.since = Some(now);
                    s.last_report = Some(now);
                    tracing::warn!(endpoint = %self.endpoint, error = %e,
                        "cannot export traces; email delivery is unaffected, these spans are dropped (reported again at most every 5 minutes)");
                } else if s
                    .last_report
                    .is_none_or(|t| now.duration_since(t) >= REPORT_EVERY)
                {
                    s.last_report = Some(now);
                    tracing::warn!(endpoint = %self.endpoint, error = %e, dropped_spans = s.dropped,
                        "still cannot export traces");
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let r = self.inner.export(batch).await;
        self.note(&r, spans);
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(plan(env(&[])), Plan::Off);
        assert_eq!(
            plan(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            Plan::Off
        );
        assert_eq!(plan(env(&[("OTEL_SERVICE_NAME", "x")])), Plan::Off);
        let e = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(plan(env(&[e, ("OTEL_SDK_DISABLED", "TRUE")])), Plan::Off);
        assert_eq!(plan(env(&[e, ("OTEL_TRACES_EXPORTER", "none")])), Plan::Off);
    }

    #[test]
    fn http_protobuf_by_default_json_on_request() {
        let e = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(
            plan(env(&[e])),
            Plan::Export {
                endpoint: "http://c:4318".into(),
                protocol: Proto::Protobuf
            }
        );
        assert_eq!(
            plan(env(&[e, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])),
            Plan::Export {
                endpoint: "http://c:4318".into(),
                protocol: Proto::Json
            }
        );
        // The traces-only variables win over the general ones.
        assert_eq!(
            plan(env(&[
                e,
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://t:4318/v1/traces"
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ])),
            Plan::Export {
                endpoint: "http://t:4318/v1/traces".into(),
                protocol: Proto::Protobuf
            }
        );
    }

    #[test]
    fn what_this_build_cannot_do_is_refused_with_the_fix() {
        let e = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        let Plan::Refused(why) = plan(env(&[e, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])) else {
            panic!("grpc is refused");
        };
        assert!(why.contains("4318"), "{why}");
        assert!(matches!(
            plan(env(&[e, ("OTEL_TRACES_EXPORTER", "zipkin")])),
            Plan::Refused(_)
        ));
    }
}

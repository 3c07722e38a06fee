//! `observe.otlp`'s settings as the config resolves them (the exporter is
//! `crate::observe::otlp`).

use std::time::Duration;

/// `observe.otlp`, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpSettings {
    /// The collector's base URL (`/v1/traces` and `/v1/metrics` are appended); `None`: the
    /// `OTEL_EXPORTER_OTLP_*` environment variables, as the OpenTelemetry SDK reads them.
    pub endpoint: Option<String>,
    /// Headers sent with every export (`${VAR}` expanded).
    pub headers: Vec<(String, String)>,
    /// Export spans.
    pub traces: bool,
    /// Export metrics.
    pub metrics: bool,
    /// Share of new traces recorded (a caller's `traceparent` decides for its own).
    pub sample_ratio: f64,
    /// How often metrics are exported.
    pub metrics_interval: Duration,
    /// `service.name` (else `OTEL_SERVICE_NAME`, else `bitrouter`).
    pub service_name: Option<String>,
    /// Prompts and answers (guardrail-redacted) as a span event of sampled requests.
    pub capture_content: bool,
    /// `observe.otlp.compression`; `None`: `OTEL_EXPORTER_OTLP_[SIGNAL_]COMPRESSION`, else
    /// none.
    pub compression: Option<Compression>,
}

/// How export bodies are encoded on the wire (the specification's `gzip` or `none`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// As is.
    #[default]
    None,
    /// gzip, with `Content-Encoding: gzip`.
    Gzip,
}

impl Compression {
    /// `gzip` or `none` (case-insensitive).
    pub fn parse(text: &str) -> Option<Compression> {
        match text.trim().to_ascii_lowercase().as_str() {
            "gzip" => Some(Compression::Gzip),
            "none" => Some(Compression::None),
            _ => None,
        }
    }
}

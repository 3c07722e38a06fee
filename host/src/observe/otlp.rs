//! OpenTelemetry over OTLP/HTTP (protobuf): a sink that turns each finished request into a
//! span tree — the request (SERVER) with one CLIENT span per upstream attempt, guardrail
//! findings, budget reservation and settlement and the first token as span events — and
//! records the GenAI client metrics. It runs on its sink thread like every observer, behind
//! the bounded queue whose drops `/admin/metrics` counts, so exporting never slows or fails
//! a request. Spans are built from the request event with the ids the request carried
//! (`trace_context.rs`), so the trace ids the provider saw in `traceparent` are the ones
//! exported, and exported with the `opentelemetry-otlp` exporter; metrics go through the
//! SDK's meter provider and its periodic reader.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use serde::Serialize;

use super::{ObserveCallback, RequestEvent};

/// Sampled requests whose spans wait for the collector (while it is down, or for the
/// batch to fill); the oldest are dropped (and their spans counted) past this.
const MAX_PENDING: usize = 2048;
/// A batch goes out when this many requests wait, or [`BATCH_AGE`] after the last export.
/// Measured: exporting each 20 ms sink batch cost ~35 µs of gateway CPU per request at
/// saturation (one HTTP post and a copy of every span per batch); a second's batch costs
/// a few µs.
const BATCH_REQUESTS: usize = 512;
const BATCH_AGE: Duration = Duration::from_secs(1);
/// The longest wait between two tries at a collector that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
}

/// What the exporter did, for `/admin/metrics` (`observe.otlp`).
#[derive(Debug, Default)]
pub struct OtlpStats {
    exported_spans: AtomicU64,
    dropped_spans: AtomicU64,
    failed_exports: AtomicU64,
}

/// A snapshot of [`OtlpStats`].
#[derive(Clone, Debug, Serialize)]
pub struct OtlpCounts {
    /// Spans the collector accepted.
    pub exported_spans: u64,
    /// Spans given up on: the collector was down and [`MAX_PENDING`] requests' were waiting.
    pub dropped_spans: u64,
    /// Export calls that failed (each retried later with backoff).
    pub failed_exports: u64,
}

impl OtlpStats {
    /// The counters now.
    pub fn snapshot(&self) -> OtlpCounts {
        OtlpCounts {
            exported_spans: self.exported_spans.load(Ordering::Relaxed),
            dropped_spans: self.dropped_spans.load(Ordering::Relaxed),
            failed_exports: self.failed_exports.load(Ordering::Relaxed),
        }
    }
}

/// The GenAI client metrics.
struct Instruments {
    provider: SdkMeterProvider,
    tokens: Histogram<u64>,
    duration: Histogram<f64>,
    first_token: Histogram<f64>,
}

/// Sampled requests waiting to be exported as spans, and when to try the collector next.
/// Events (shared with the other sinks) are kept rather than spans: a batch's spans are
/// built once, when it goes out, and a failed export keeps its events for the retry.
struct Pending {
    events: VecDeque<Arc<RequestEvent>>,
    last_export: Instant,
    next_try: Option<Instant>,
    backoff: Duration,
    /// The collector is failing: it was logged, and is not again until it recovers.
    failing: bool,
}

/// What the sink thread and the batch timer share.
struct Inner {
    exporter: Option<opentelemetry_otlp::SpanExporter>,
    instruments: Option<Instruments>,
    scope: InstrumentationScope,
    pending: Mutex<Pending>,
    stats: Arc<OtlpStats>,
}

/// The OTLP sink; see the module header. A timer thread sends what waits once a second, so
/// the last spans before a quiet spell do not wait for the next request.
pub struct OtlpSink {
    inner: Arc<Inner>,
    /// Dropping it stops the timer thread.
    _stop: std::sync::mpsc::Sender<()>,
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("observe.otlp: {0}")]
pub struct OtlpError(String);

fn signal_url(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

impl OtlpSink {
    /// The exporters for `settings`; the collector is not contacted until the first export.
    pub fn new(settings: &OtlpSettings) -> Result<OtlpSink, OtlpError> {
        let headers: std::collections::HashMap<String, String> =
            settings.headers.iter().cloned().collect();
        let mut resource = Resource::builder();
        if let Some(name) = &settings.service_name {
            resource = resource.with_service_name(name.clone());
        } else if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("bitrouter");
        }
        let resource = resource
            .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
            .build();
        let exporter = if settings.traces {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_timeout(Duration::from_secs(5));
            if let Some(base) = &settings.endpoint {
                b = b.with_endpoint(signal_url(base, "v1/traces"));
            }
            if !headers.is_empty() {
                b = b.with_headers(headers.clone());
            }
            let mut e = b.build().map_err(|e| OtlpError(e.to_string()))?;
            e.set_resource(&resource);
            Some(e)
        } else {
            None
        };
        let instruments = if settings.metrics {
            let mut b = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_timeout(Duration::from_secs(5));
            if let Some(base) = &settings.endpoint {
                b = b.with_endpoint(signal_url(base, "v1/metrics"));
            }
            if !headers.is_empty() {
                b = b.with_headers(headers);
            }
            let exporter = b.build().map_err(|e| OtlpError(e.to_string()))?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(settings.metrics_interval)
                .build();
            let provider = SdkMeterProvider::builder()
                .with_resource(resource)
                .with_reader(reader)
                .build();
            let meter = provider.meter("bitrouter");
            Some(Instruments {
                tokens: meter
                    .u64_histogram("gen_ai.client.token.usage")
                    .with_unit("{token}")
                    .with_description("Input and output tokens per model call")
                    .build(),
                duration: meter
                    .f64_histogram("gen_ai.client.operation.duration")
                    .with_unit("s")
                    .with_description("Model call duration, as the gateway's caller saw it")
                    .build(),
                first_token: meter
                    .f64_histogram("gen_ai.server.time_to_first_token")
                    .with_unit("s")
                    .with_description("Time to the first byte of a streamed answer")
                    .build(),
                provider,
            })
        } else {
            None
        };
        let inner = Arc::new(Inner {
            exporter,
            instruments,
            scope: InstrumentationScope::builder("bitrouter")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            pending: Mutex::new(Pending {
                events: VecDeque::new(),
                last_export: Instant::now(),
                next_try: None,
                backoff: Duration::from_secs(1),
                failing: false,
            }),
            stats: Arc::new(OtlpStats::default()),
        });
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let timer = inner.clone();
        std::thread::Builder::new()
            .name("otlp-batch".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(BATCH_AGE)
                {
                    let mut pending = timer.pending.lock().unwrap_or_else(|p| p.into_inner());
                    timer.export(&mut pending, false);
                }
            })
            .map_err(|e| OtlpError(format!("cannot start the batch timer thread: {e}")))?;
        Ok(OtlpSink { inner, _stop: stop })
    }

    /// Its counters, for `/admin/metrics`.
    pub fn stats(&self) -> Arc<OtlpStats> {
        self.inner.stats.clone()
    }
}

impl Inner {
    fn record_metrics(&self, e: &RequestEvent) {
        let Some(m) = &self.instruments else { return };
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", e.requested_model.clone()),
        ];
        if let Some(p) = &e.provider {
            attrs.push(KeyValue::new("gen_ai.provider.name", provider_name(p)));
        }
        if let Some(model) = &e.model {
            attrs.push(KeyValue::new("gen_ai.response.model", model.clone()));
        }
        if let Some(t) = &e.error_type {
            attrs.push(KeyValue::new("error.type", t.clone()));
        }
        m.duration.record(e.latency_ms / 1000.0, &attrs);
        if e.stream
            && let Some(ttfb) = e.ttfb_ms
        {
            m.first_token.record(ttfb / 1000.0, &attrs);
        }
        if e.success {
            for (kind, n) in [("input", e.input_tokens), ("output", e.output_tokens)] {
                let mut a = attrs.clone();
                a.push(KeyValue::new("gen_ai.token.type", kind));
                m.tokens.record(n, &a);
            }
        }
    }

    /// Sends what is pending when the batch is full or old enough (or `now`), unless the
    /// collector is in its backoff.
    fn export(&self, pending: &mut Pending, now: bool) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let due = now
            || pending.events.len() >= BATCH_REQUESTS
            || pending.last_export.elapsed() >= BATCH_AGE;
        if pending.events.is_empty() || !due || pending.next_try.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        pending.last_export = Instant::now();
        let batch: Vec<SpanData> = pending
            .events
            .iter()
            .flat_map(|e| spans(e, &self.scope))
            .collect();
        let n = batch.len() as u64;
        // The exporter's HTTP client is reqwest's blocking one: this thread is the sink's own.
        match futures_executor::block_on(exporter.export(batch)) {
            Ok(()) => {
                pending.events.clear();
                pending.next_try = None;
                pending.backoff = Duration::from_secs(1);
                self.stats.exported_spans.fetch_add(n, Ordering::Relaxed);
                if pending.failing {
                    pending.failing = false;
                    tracing::info!("OTLP collector reachable again; spans are exported");
                }
            }
            Err(e) => {
                self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                if !pending.failing {
                    pending.failing = true;
                    tracing::warn!(error = %e, "OTLP export failed; the spans of at most {MAX_PENDING} requests are kept and retried with backoff (logged once until it recovers)");
                }
                pending.next_try = Some(Instant::now() + pending.backoff);
                pending.backoff = (pending.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl ObserveCallback for OtlpSink {
    fn name(&self) -> &str {
        "otlp"
    }

    fn on_events(&self, events: &[Arc<RequestEvent>]) {
        let inner = &self.inner;
        for e in events {
            inner.record_metrics(e);
        }
        if inner.exporter.is_none() {
            return;
        }
        let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            if !e.trace.as_ref().is_some_and(|t| t.sampled) {
                continue;
            }
            if pending.events.len() >= MAX_PENDING
                && let Some(old) = pending.events.pop_front()
            {
                let lost = 1 + old.attempts.iter().filter(|a| a.span_id.is_some()).count();
                inner
                    .stats
                    .dropped_spans
                    .fetch_add(lost as u64, Ordering::Relaxed);
            }
            pending.events.push_back(e.clone());
        }
        inner.export(&mut pending, false);
    }

    fn flush(&self) {
        let inner = &self.inner;
        let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.next_try = None;
        inner.export(&mut pending, true);
        if let Some(m) = &inner.instruments {
            let _ = m.provider.force_flush();
            let _ = m.provider.shutdown();
        }
    }
}

/// `gen_ai.provider.name` for a provider of the config: the well-known names where the
/// provider is one (or derives from one, by name), else the config's name.
fn provider_name(provider: &str) -> String {
    match provider {
        "google" | "gemini" => "gcp.gemini".to_owned(),
        "xai" => "x_ai".to_owned(),
        "mistral" => "mistral_ai".to_owned(),
        other => other.to_owned(),
    }
}

fn at(ms: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64((ms / 1000.0).max(0.0))
}

fn span_id(hex: &str) -> SpanId {
    SpanId::from_hex(hex).unwrap_or(SpanId::INVALID)
}

/// The request's span and its attempts', if the request was sampled.
pub fn spans(e: &RequestEvent, scope: &InstrumentationScope) -> Vec<SpanData> {
    let Some(t) = &e.trace else { return Vec::new() };
    if !t.sampled {
        return Vec::new();
    }
    let trace_id = TraceId::from_hex(&t.trace_id).unwrap_or(TraceId::INVALID);
    let context = |span: SpanId| {
        SpanContext::new(
            trace_id,
            span,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    };
    let start_ms = e.time_ms as f64;
    let start = at(start_ms);
    let end = at(start_ms + e.latency_ms);
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.request.model", e.requested_model.clone()),
        KeyValue::new("http.response.status_code", i64::from(e.status)),
        KeyValue::new("bitrouter.dialect", e.dialect),
        KeyValue::new("bitrouter.stream", e.stream),
        KeyValue::new("bitrouter.cost_usd", e.cost_nano_usd as f64 / 1e9),
        KeyValue::new("gen_ai.usage.input_tokens", e.input_tokens as i64),
        KeyValue::new("gen_ai.usage.output_tokens", e.output_tokens as i64),
        KeyValue::new(
            "gen_ai.usage.cache_read.input_tokens",
            e.tokens.input_cache_read as i64,
        ),
        KeyValue::new(
            "gen_ai.usage.cache_creation.input_tokens",
            e.tokens.input_cache_write as i64,
        ),
        KeyValue::new(
            "bitrouter.usage.reasoning_tokens",
            e.tokens.output_reasoning as i64,
        ),
    ];
    let mut optional = |key: &'static str, v: Option<&String>| {
        if let Some(v) = v {
            attrs.push(KeyValue::new(key, v.clone()));
        }
    };
    optional("gen_ai.response.model", e.model.as_ref());
    optional("bitrouter.route", e.route.as_ref());
    optional("bitrouter.account", e.account_id.as_ref());
    optional("bitrouter.agent", e.agent.as_ref());
    optional("bitrouter.session", e.session_id.as_ref());
    optional("server.address", e.server_address.as_ref());
    optional("error.type", e.error_type.as_ref());
    optional("bitrouter.rate_limited", e.rate_limited.as_ref());
    if let Some(p) = &e.provider {
        let name = provider_name(p);
        attrs.push(KeyValue::new("gen_ai.provider.name", name.clone()));
        attrs.push(KeyValue::new("gen_ai.system", name));
    }
    if let Some(f) = &e.finish_reason {
        attrs.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(*f)].into()),
        ));
    }
    if e.estimated {
        attrs.push(KeyValue::new("bitrouter.usage.estimated", true));
    }
    let mut events = Vec::new();
    if let Some(ttfb) = e.ttfb_ms.filter(|_| e.stream) {
        attrs.push(KeyValue::new(
            "gen_ai.server.time_to_first_token",
            ttfb / 1000.0,
        ));
        events.push(Event::new(
            "gen_ai.first_token",
            at(start_ms + ttfb),
            Vec::new(),
            0,
        ));
    }
    for f in &e.guardrail_findings {
        events.push(Event::new(
            "bitrouter.guardrail.finding",
            start,
            vec![
                KeyValue::new("bitrouter.guardrail.pattern", f.pattern.clone()),
                KeyValue::new("bitrouter.guardrail.count", i64::from(f.count)),
                KeyValue::new("bitrouter.guardrail.action", f.action.clone()),
            ],
            0,
        ));
    }
    if let Some(held) = e.budget_reserved_nano_usd {
        events.push(Event::new(
            "bitrouter.budget.reserve",
            start,
            vec![KeyValue::new(
                "bitrouter.budget.reserved_usd",
                held as f64 / 1e9,
            )],
            0,
        ));
        events.push(Event::new(
            "bitrouter.budget.settle",
            end,
            vec![KeyValue::new(
                "bitrouter.budget.settled_usd",
                e.cost_nano_usd as f64 / 1e9,
            )],
            0,
        ));
    }
    let request_span = span_id(&t.span_id);
    let name = format!("chat {}", e.requested_model);
    let mut out = Vec::with_capacity(1 + e.attempts.len());
    for a in &e.attempts {
        let Some(id) = a.span_id.as_deref() else {
            continue;
        };
        let a_start = start_ms + a.start_ms;
        let model = a
            .target
            .split_once(':')
            .map_or(a.target.as_str(), |(_, m)| m);
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", model.to_owned()),
            KeyValue::new("bitrouter.endpoint", a.target.clone()),
        ];
        if let Some((p, _)) = a.target.split_once(':') {
            attrs.push(KeyValue::new("gen_ai.provider.name", provider_name(p)));
        }
        if let Some(t) = &a.error_type {
            attrs.push(KeyValue::new("error.type", t.clone()));
        }
        if let Some(s) = a.status {
            attrs.push(KeyValue::new("http.response.status_code", i64::from(s)));
        }
        if let Some(j) = a.joined {
            attrs.push(KeyValue::new("bitrouter.mid_stream.joined", j));
        }
        if let Some(c) = a.cost_nano_usd {
            attrs.push(KeyValue::new("bitrouter.cost_usd", c as f64 / 1e9));
        }
        out.push(SpanData {
            span_context: context(span_id(id)),
            parent_span_id: request_span,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(format!("chat {model}")),
            start_time: at(a_start),
            end_time: at(a_start + a.duration_ms),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match &a.error {
                Some(m) => Status::error(m.clone()),
                None => Status::Unset,
            },
            instrumentation_scope: scope.clone(),
        });
    }
    out.insert(
        0,
        SpanData {
            span_context: context(request_span),
            parent_span_id: t.parent_span_id.as_deref().map_or(SpanId::INVALID, span_id),
            parent_span_is_remote: t.parent_span_id.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: start,
            end_time: end,
            attributes: attrs,
            dropped_attributes_count: 0,
            events: {
                let mut e = SpanEvents::default();
                e.events = events;
                e
            },
            links: SpanLinks::default(),
            status: match &e.error {
                Some(m) if !e.success => Status::error(m.clone()),
                _ => Status::Unset,
            },
            instrumentation_scope: scope.clone(),
        },
    );
    out
}

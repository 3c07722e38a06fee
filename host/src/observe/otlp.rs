//! OpenTelemetry over OTLP/HTTP (protobuf): a sink that turns each finished request into a
//! span tree — the request (SERVER) with one CLIENT span per upstream attempt, guardrail
//! findings, budget reservation and settlement and the first token as span events — and
//! records the GenAI client metrics. It runs on its sink thread like every observer, behind
//! the bounded queue whose drops `/admin/metrics` counts, so exporting never slows or fails
//! a request. Spans carry the ids the request carried (`trace_context.rs`), so the trace ids
//! the provider saw in `traceparent` are the ones exported. The sink thread encodes each
//! request's spans as it arrives (`spans.rs`); an exporter thread of its own posts them in
//! batches, so a slow collector holds up neither. Metrics go through the SDK's meter
//! provider, its periodic reader and `opentelemetry-otlp`'s metric exporter.

mod http;
pub mod spans;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use serde::Serialize;

use self::http::{Client, Destination, Signal};
use self::spans::{Framing, SpanWriter, provider_name};
use super::{ObserveCallback, RequestEvent};

pub use crate::config::{Compression, OtlpSettings};

/// Sampled requests whose spans wait for the collector (while it is down, or for the batch
/// to fill), and their encoded size; past either, the oldest quarter is dropped (and its
/// spans counted).
const MAX_PENDING: usize = 2048;
const MAX_PENDING_BYTES: usize = 16 << 20;
/// A batch goes out when this many requests wait, or [`BATCH_AGE`] after the last export:
/// a few posts a second at any load (posting every 20 ms sink batch made 5× the posts, for
/// no measurable CPU; the cost per request is the encoding, see `spans.rs`).
const BATCH_REQUESTS: usize = 512;
const BATCH_AGE: Duration = Duration::from_secs(1);
/// The longest wait between two tries at a collector that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
    /// Spans given up on: the collector was down and [`MAX_PENDING`] requests' were waiting,
    /// it refused their batch (a status that is not retried), or the gateway was shutting
    /// down.
    pub dropped_spans: u64,
    /// Export calls that failed (retried with backoff where the failure is retryable).
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

/// Where spans go.
struct Traces {
    to: Destination,
    client: Client,
    framing: Framing,
}

/// Sampled requests' spans, encoded, waiting to be exported; and the exporter's state.
struct Pending {
    writer: SpanWriter,
    /// `ScopeSpans.spans` entries, oldest request first.
    spans: Vec<u8>,
    /// Each waiting request's encoded length and span count, oldest first.
    requests: VecDeque<(usize, u64)>,
    last_export: Instant,
    next_try: Option<Instant>,
    backoff: Duration,
    /// The collector is failing: it was logged, and is not again until it recovers.
    failing: bool,
    /// A batch is being posted (its spans are out of `spans`).
    in_flight: bool,
    /// The sink is gone: the exporter thread ends.
    stopping: bool,
}

/// What the sink thread and the exporter thread share.
struct Inner {
    traces: Option<Traces>,
    instruments: Option<Instruments>,
    pending: Mutex<Pending>,
    /// Wakes the exporter thread: a full batch, or the sink going away.
    wake: Condvar,
    stats: Arc<OtlpStats>,
}

/// The OTLP sink; see the module header.
pub struct OtlpSink {
    inner: Arc<Inner>,
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("observe.otlp: {0}")]
pub struct OtlpError(String);

impl OtlpSink {
    /// The exporters for `settings`; the collector is not contacted until the first export.
    pub fn new(settings: &OtlpSettings) -> Result<OtlpSink, OtlpError> {
        let mut resource = Resource::builder();
        if let Some(name) = &settings.service_name {
            resource = resource.with_service_name(name.clone());
        } else if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("bitrouter");
        }
        let resource = resource
            .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
            .build();
        let client = Client::new()?;
        let traces = if settings.traces {
            let to = http::destination(Signal::Traces, settings)?;
            let resource_attrs =
                opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema::from(
                    &resource,
                );
            Some(Traces {
                client: client.with_timeout(to.timeout),
                to,
                framing: Framing::new(
                    opentelemetry_proto::tonic::resource::v1::Resource {
                        attributes: resource_attrs.attributes.0,
                        ..Default::default()
                    },
                    resource_attrs.schema_url.unwrap_or_default(),
                    opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                        name: "bitrouter".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    },
                ),
            })
        } else {
            None
        };
        let instruments = if settings.metrics {
            let to = http::destination(Signal::Metrics, settings)?;
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client.with_timeout(to.timeout))
                .with_endpoint(to.url)
                .with_headers(to.headers)
                .with_timeout(to.timeout);
            let exporter = match to.compression {
                Compression::Gzip => {
                    exporter.with_compression(opentelemetry_otlp::Compression::Gzip)
                }
                Compression::None => exporter,
            };
            let exporter = exporter.build().map_err(|e| OtlpError(e.to_string()))?;
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
            traces,
            instruments,
            pending: Mutex::new(Pending {
                writer: SpanWriter::default(),
                spans: Vec::new(),
                requests: VecDeque::new(),
                last_export: Instant::now(),
                next_try: None,
                backoff: Duration::from_secs(1),
                failing: false,
                in_flight: false,
                stopping: false,
            }),
            wake: Condvar::new(),
            stats: Arc::new(OtlpStats::default()),
        });
        if inner.traces.is_some() {
            let exporter = inner.clone();
            std::thread::Builder::new()
                .name("otlp-export".into())
                .spawn(move || exporter.run())
                .map_err(|e| OtlpError(format!("cannot start the exporter thread: {e}")))?;
        }
        Ok(OtlpSink { inner })
    }

    /// Its counters, for `/admin/metrics`.
    pub fn stats(&self) -> Arc<OtlpStats> {
        self.inner.stats.clone()
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.inner.lock().stopping = true;
        self.inner.wake.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_metrics(&self, e: &RequestEvent) {
        let Some(m) = &self.instruments else { return };
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", e.requested_model.clone()),
        ];
        if let Some(p) = &e.provider {
            attrs.push(KeyValue::new(
                "gen_ai.provider.name",
                provider_name(p).to_owned(),
            ));
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
                attrs.push(KeyValue::new("gen_ai.token.type", kind));
                m.tokens.record(n, &attrs);
                attrs.pop();
            }
        }
    }

    /// Encodes the sampled requests' spans into the pending batch, dropping the oldest
    /// quarter when the batch is at its bounds.
    fn add(&self, events: &[Arc<RequestEvent>]) {
        let mut p = self.lock();
        let p = &mut *p;
        for e in events {
            self.trim(p);
            let before = p.spans.len();
            let n = p.writer.write(e, &mut p.spans);
            if n > 0 {
                p.requests.push_back((p.spans.len() - before, u64::from(n)));
            }
        }
        if p.requests.len() >= BATCH_REQUESTS {
            self.wake.notify_one();
        }
    }

    /// Drops the oldest quarter of what waits while it is at its bounds (a batch put back
    /// after a failed post can bring it there too).
    fn trim(&self, p: &mut Pending) {
        while p.requests.len() >= MAX_PENDING || p.spans.len() >= MAX_PENDING_BYTES {
            let n = p.requests.len().div_ceil(4);
            let (bytes, spans) = p
                .requests
                .drain(..n)
                .fold((0, 0), |(b, s), (rb, rs)| (b + rb, s + rs));
            p.spans.drain(..bytes);
            self.stats.dropped_spans.fetch_add(spans, Ordering::Relaxed);
        }
    }

    /// The exporter thread: sends the batch when it is full or [`BATCH_AGE`] old, unless
    /// the collector is in its backoff; ends when the sink is dropped.
    fn run(&self) {
        let mut p = self.lock();
        loop {
            if p.stopping {
                return;
            }
            let now = Instant::now();
            let backoff = p.next_try.filter(|&t| now < t);
            let age = p.last_export + BATCH_AGE;
            let due = p.requests.len() >= BATCH_REQUESTS || now >= age;
            if p.requests.is_empty() || !due || backoff.is_some() {
                let until = backoff.unwrap_or(if now >= age { now + BATCH_AGE } else { age });
                p = self
                    .wake
                    .wait_timeout(p, until.saturating_duration_since(now))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
                continue;
            }
            p = self.send(p, true);
        }
    }

    /// Posts what is pending, without holding the lock during the post. A retryable
    /// failure puts the batch back (before what arrived meanwhile) when `retry`.
    fn send<'a>(&'a self, mut p: MutexGuard<'a, Pending>, retry: bool) -> MutexGuard<'a, Pending> {
        let Some(traces) = &self.traces else { return p };
        p.last_export = Instant::now();
        p.in_flight = true;
        let spans = std::mem::take(&mut p.spans);
        let requests = std::mem::take(&mut p.requests);
        drop(p);
        let count: u64 = requests.iter().map(|r| r.1).sum();
        let result = traces.client.post(&traces.to, traces.framing.body(&spans));
        let mut p = self.lock();
        p.in_flight = false;
        self.wake.notify_all();
        let failure = match result {
            Ok(a) if a.status.is_success() => {
                p.next_try = None;
                p.backoff = Duration::from_secs(1);
                self.stats
                    .exported_spans
                    .fetch_add(count, Ordering::Relaxed);
                if p.failing {
                    p.failing = false;
                    tracing::info!("OTLP collector reachable again; spans are exported");
                }
                return p;
            }
            Ok(a) if !a.retryable() => {
                // Sending the same batch again would be refused again.
                self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_spans.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(status = %a.status, spans = count, "the OTLP collector refused a batch of spans; it is dropped");
                return p;
            }
            Ok(a) => (format!("collector answered {}", a.status), a.retry_after),
            Err(e) => (e.to_string(), None),
        };
        self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
        if !retry {
            self.stats.dropped_spans.fetch_add(count, Ordering::Relaxed);
            tracing::warn!(error = %failure.0, spans = count, "OTLP export at shutdown failed; the spans are dropped");
            return p;
        }
        if !p.failing {
            p.failing = true;
            tracing::warn!(error = %failure.0, "OTLP export failed; the spans of at most {MAX_PENDING} requests are kept and retried with backoff (logged once until it recovers)");
        }
        let wait = failure.1.unwrap_or(p.backoff).min(MAX_BACKOFF);
        p.next_try = Some(Instant::now() + wait);
        p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
        let (mut spans, mut requests) = (spans, requests);
        spans.extend_from_slice(&p.spans);
        requests.extend(p.requests.drain(..));
        p.spans = spans;
        p.requests = requests;
        self.trim(&mut p);
        p
    }
}

impl ObserveCallback for OtlpSink {
    fn name(&self) -> &str {
        "otlp"
    }

    fn on_events(&self, events: &[Arc<RequestEvent>]) {
        for e in events {
            self.inner.record_metrics(e);
        }
        if self.inner.traces.is_some() {
            self.inner.add(events);
        }
    }

    /// Shutdown: sends what waits once, on this thread (after a post in flight ends).
    fn flush(&self) {
        let inner = &self.inner;
        let mut p = inner.lock();
        while p.in_flight {
            p = inner.wake.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        if p.requests.is_empty() {
            drop(p);
        } else {
            drop(inner.send(p, false));
        }
        if let Some(m) = &inner.instruments {
            let _ = m.provider.force_flush();
            let _ = m.provider.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::event::TraceRecord;

    /// A collector that is down: spans wait, at most [`MAX_PENDING`] requests' worth, the
    /// oldest dropped and counted beyond it; nothing blocks the caller.
    #[test]
    fn spans_wait_for_a_down_collector_within_their_bound() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let sink = OtlpSink::new(&OtlpSettings {
            endpoint: Some(format!("http://{addr}")),
            headers: Vec::new(),
            traces: true,
            metrics: false,
            sample_ratio: 1.0,
            metrics_interval: Duration::from_secs(60),
            service_name: None,
            capture_content: false,
            compression: None,
        })
        .unwrap();
        let event = |i: usize| {
            let mut e = crate::context::RequestContext::new(
                format!("r{i}"),
                crate::canonical::Dialect::OpenAiChat,
            )
            .event(200, None);
            e.trace = Some(TraceRecord {
                trace_id: format!("{:032x}", i + 1),
                span_id: format!("{:016x}", i + 1),
                parent_span_id: None,
                sampled: true,
            });
            Arc::new(e)
        };
        let n = MAX_PENDING * 2;
        let events: Vec<Arc<RequestEvent>> = (0..n).map(event).collect();
        let started = Instant::now();
        sink.on_events(&events);
        // Recording is a local append, whatever the collector does.
        assert!(started.elapsed() < Duration::from_secs(5));
        let waiting = sink.inner.lock().requests.len();
        assert!(waiting <= MAX_PENDING, "{waiting} requests' spans wait");
        let counts = sink.stats().snapshot();
        assert!(counts.dropped_spans > 0, "{counts:?}");
        assert_eq!(counts.exported_spans, 0);
        // Every request's span is either waiting or counted as dropped (the exporter may
        // have taken a batch out to post meanwhile: those are put back or counted too).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = sink.inner.lock();
            let waiting = p.requests.len() as u64;
            let in_flight = p.in_flight;
            drop(p);
            let dropped = sink.stats().snapshot().dropped_spans;
            if !in_flight && waiting + dropped == n as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{waiting} waiting + {dropped} dropped of {n}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

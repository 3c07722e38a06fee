//! A request's spans as OTLP protobuf, encoded the moment the sink receives the request.
//!
//! Built straight into the `opentelemetry-proto` message types and encoded with `prost`,
//! into buffers the sink reuses from request to request: no attribute, event or span is
//! allocated once the buffers have grown to the shape of the traffic. Measured (criterion
//! `otlp` bench, 2-CPU VM, scenario 3's request shape): the SDK's path — `SpanData`, then the
//! exporter's conversion to these same types, grouping and `encode_to_vec` — cost 11.6 µs
//! per request on the sink thread, two thirds of it allocating and freeing strings.
//!
//! A batch is the concatenation of its requests' encodings: a repeated protobuf field is
//! the concatenation of its entries, so each span is written as one `ScopeSpans.spans`
//! entry, and [`Framing::body`] wraps the batch in its scope, resource and request.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::observe::RequestEvent;

/// `ScopeSpans.spans`, `ResourceSpans.scope_spans`, `ExportTraceServiceRequest.resource_spans`
/// (opentelemetry-proto's `trace.proto` and `trace_service.proto`).
const SCOPE_SPANS_SPANS: u32 = 2;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const REQUEST_RESOURCE_SPANS: u32 = 1;
/// `Span.flags`: the W3C sampled flag, and whether the parent's remoteness is known / true.
const FLAG_SAMPLED: u32 = 0x1;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// The fixed part of every export: the resource and the instrumentation scope, encoded once.
pub struct Framing {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Framing {
    /// The framing for spans of `scope` from `resource`.
    pub fn new(resource: Resource, resource_schema: String, scope: InstrumentationScope) -> Self {
        Framing {
            resource: ResourceSpans {
                resource: Some(resource),
                scope_spans: Vec::new(),
                schema_url: resource_schema,
            }
            .encode_to_vec(),
            scope: ScopeSpans {
                scope: Some(scope),
                spans: Vec::new(),
                schema_url: String::new(),
            }
            .encode_to_vec(),
        }
    }

    /// An `ExportTraceServiceRequest` holding `spans` (entries written by [`SpanWriter`]).
    pub fn body(&self, spans: &[u8]) -> Vec<u8> {
        let scope_len = self.scope.len() + spans.len();
        let resource_len = self.resource.len()
            + key_len(RESOURCE_SPANS_SCOPE_SPANS)
            + encoded_len_varint(scope_len as u64)
            + scope_len;
        let mut out = Vec::with_capacity(
            key_len(REQUEST_RESOURCE_SPANS)
                + encoded_len_varint(resource_len as u64)
                + resource_len,
        );
        encode_key(REQUEST_RESOURCE_SPANS, WireType::LengthDelimited, &mut out);
        encode_varint(resource_len as u64, &mut out);
        out.extend_from_slice(&self.resource);
        encode_key(
            RESOURCE_SPANS_SCOPE_SPANS,
            WireType::LengthDelimited,
            &mut out,
        );
        encode_varint(scope_len as u64, &mut out);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(spans);
        out
    }
}

/// Writes requests' spans; keeps the message buffers between requests.
#[derive(Default)]
pub struct SpanWriter {
    request: Span,
    attempt: Span,
}

impl SpanWriter {
    /// Appends `e`'s spans (the request's and one per attempt that had a span id) to `out`;
    /// returns how many, 0 when the request was not sampled.
    pub fn write(&mut self, e: &RequestEvent, out: &mut Vec<u8>) -> u32 {
        let Some(t) = e.trace.as_ref().filter(|t| t.sampled) else {
            return 0;
        };
        let start_ms = e.time_ms as f64;
        let end_ms = start_ms + e.latency_ms;
        let s = &mut self.request;
        set_hex(&mut s.trace_id, &t.trace_id);
        set_hex(&mut s.span_id, &t.span_id);
        match &t.parent_span_id {
            Some(p) => set_hex(&mut s.parent_span_id, p),
            None => s.parent_span_id.clear(),
        }
        s.flags = FLAG_SAMPLED
            | FLAG_HAS_IS_REMOTE
            | if t.parent_span_id.is_some() {
                FLAG_IS_REMOTE
            } else {
                0
            };
        s.kind = SpanKind::Server as i32;
        set_name(&mut s.name, &e.requested_model);
        s.start_time_unix_nano = nanos(start_ms);
        s.end_time_unix_nano = nanos(end_ms);
        set_status(&mut s.status, e.error.as_deref().filter(|_| !e.success));

        let mut a = Attrs::new(&mut s.attributes);
        a.str("gen_ai.operation.name", "chat");
        a.str("gen_ai.request.model", &e.requested_model);
        a.int("http.response.status_code", i64::from(e.status));
        a.str("bitrouter.dialect", e.dialect);
        a.bool("bitrouter.stream", e.stream);
        a.double("bitrouter.cost_usd", e.cost_nano_usd as f64 / 1e9);
        a.int("gen_ai.usage.input_tokens", e.input_tokens as i64);
        a.int("gen_ai.usage.output_tokens", e.output_tokens as i64);
        a.int(
            "gen_ai.usage.cache_read.input_tokens",
            e.tokens.input_cache_read as i64,
        );
        a.int(
            "gen_ai.usage.cache_creation.input_tokens",
            e.tokens.input_cache_write as i64,
        );
        a.int(
            "bitrouter.usage.reasoning_tokens",
            e.tokens.output_reasoning as i64,
        );
        if let Some(p) = &e.provider {
            let name = provider_name(p);
            a.str("gen_ai.provider.name", name);
            a.str("gen_ai.system", name);
        }
        a.opt("gen_ai.response.model", e.model.as_deref());
        a.opt("bitrouter.route", e.route.as_deref());
        a.opt("bitrouter.account", e.account_id.as_deref());
        a.opt("bitrouter.agent", e.agent.as_deref());
        a.opt("bitrouter.session", e.session_id.as_deref());
        a.opt("server.address", e.server_address.as_deref());
        a.opt("error.type", e.error_type.as_deref());
        a.opt("bitrouter.rate_limited", e.rate_limited.as_deref());
        if let Some(f) = e.finish_reason {
            a.strings("gen_ai.response.finish_reasons", f);
        }
        if e.estimated {
            a.bool("bitrouter.usage.estimated", true);
        }
        let ttfb = e.ttfb_ms.filter(|_| e.stream);
        if let Some(ttfb) = ttfb {
            a.double("gen_ai.server.time_to_first_token", ttfb / 1000.0);
        }
        a.finish();

        let mut events = Events::new(&mut s.events);
        if let Some(ttfb) = ttfb {
            events.add("gen_ai.first_token", start_ms + ttfb).finish();
        }
        for f in &e.guardrail_findings {
            let mut a = events.add("bitrouter.guardrail.finding", start_ms);
            a.str("bitrouter.guardrail.pattern", &f.pattern);
            a.int("bitrouter.guardrail.count", i64::from(f.count));
            a.str("bitrouter.guardrail.action", &f.action);
            a.finish();
        }
        if let Some(held) = e.budget_reserved_nano_usd {
            let mut a = events.add("bitrouter.budget.reserve", start_ms);
            a.double("bitrouter.budget.reserved_usd", held as f64 / 1e9);
            a.finish();
            let mut a = events.add("bitrouter.budget.settle", end_ms);
            a.double("bitrouter.budget.settled_usd", e.cost_nano_usd as f64 / 1e9);
            a.finish();
        }
        if let Some(c) = &e.content {
            // The GenAI conventions' event for a call's content (opt-in there too).
            let mut a = events.add("gen_ai.client.inference.operation.details", end_ms);
            a.str("gen_ai.input.messages", &c.input);
            a.str("gen_ai.output.messages", &c.output);
            if c.truncated {
                a.bool("bitrouter.content.truncated", true);
            }
            a.finish();
        }
        events.finish();
        prost::encoding::message::encode(SCOPE_SPANS_SPANS, &self.request, out);

        let mut n = 1;
        for at in &e.attempts {
            let Some(id) = at.span_id.as_deref() else {
                continue;
            };
            let s = &mut self.attempt;
            set_copy(&mut s.trace_id, &self.request.trace_id);
            set_hex(&mut s.span_id, id);
            set_copy(&mut s.parent_span_id, &self.request.span_id);
            s.flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
            s.kind = SpanKind::Client as i32;
            let (provider, model) = at
                .target
                .split_once(':')
                .map_or((None, at.target.as_str()), |(p, m)| (Some(p), m));
            set_name(&mut s.name, model);
            let a_start = start_ms + at.start_ms;
            s.start_time_unix_nano = nanos(a_start);
            s.end_time_unix_nano = nanos(a_start + at.duration_ms);
            set_status(&mut s.status, at.error.as_deref());
            let mut a = Attrs::new(&mut s.attributes);
            a.str("gen_ai.operation.name", "chat");
            a.str("gen_ai.request.model", model);
            a.str("bitrouter.endpoint", &at.target);
            if let Some(p) = provider {
                a.str("gen_ai.provider.name", provider_name(p));
            }
            a.opt("error.type", at.error_type.as_deref());
            if let Some(status) = at.status {
                a.int("http.response.status_code", i64::from(status));
            }
            a.opt("bitrouter.mid_stream.joined", at.joined);
            if let Some(c) = at.cost_nano_usd {
                a.double("bitrouter.cost_usd", c as f64 / 1e9);
            }
            a.finish();
            prost::encoding::message::encode(SCOPE_SPANS_SPANS, &self.attempt, out);
            n += 1;
        }
        n
    }
}

/// `gen_ai.provider.name` for a provider of the config: the well-known names where the
/// provider is one (or derives from one, by name), else the config's name.
pub fn provider_name(provider: &str) -> &str {
    match provider {
        "google" | "gemini" => "gcp.gemini",
        "xai" => "x_ai",
        "mistral" => "mistral_ai",
        other => other,
    }
}

fn nanos(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6) as u64
}

/// The span name: `chat {model}` (the GenAI conventions' `{operation} {model}`).
fn set_name(name: &mut String, model: &str) {
    name.clear();
    name.push_str("chat ");
    name.push_str(model);
}

fn set_status(status: &mut Option<Status>, error: Option<&str>) {
    match error {
        Some(m) => {
            let s = status.get_or_insert_with(Status::default);
            s.code = StatusCode::Error as i32;
            set_str(&mut s.message, m);
        }
        None => *status = None,
    }
}

fn set_str(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

fn set_copy(b: &mut Vec<u8>, v: &[u8]) {
    b.clear();
    b.extend_from_slice(v);
}

/// Hex ids as the request event carries them (its own, always well formed; anything else
/// leaves the id empty, which a collector reads as invalid rather than as a wrong id).
fn set_hex(b: &mut Vec<u8>, hex: &str) {
    b.clear();
    b.resize(hex.len() / 2, 0);
    if hex::decode_to_slice(hex, b).is_err() {
        b.clear();
    }
}

/// Writes entries over a reused list: each keeps its allocations for the next request that
/// has an entry in that place; [`Reuse::finish`] drops what a previous request had beyond.
struct Reuse<'a, T> {
    items: &'a mut Vec<T>,
    n: usize,
}

impl<'a, T: Default> Reuse<'a, T> {
    fn new(items: &'a mut Vec<T>) -> Self {
        Reuse { items, n: 0 }
    }

    fn next(&mut self) -> &mut T {
        if self.n == self.items.len() {
            self.items.push(T::default());
        }
        self.n += 1;
        &mut self.items[self.n - 1]
    }

    fn finish(self) {
        self.items.truncate(self.n);
    }
}

/// Writes attributes over a reused list (see [`Reuse`]).
struct Attrs<'a>(Reuse<'a, KeyValue>);

impl<'a> Attrs<'a> {
    fn new(kvs: &'a mut Vec<KeyValue>) -> Self {
        Attrs(Reuse::new(kvs))
    }

    fn slot(&mut self, key: &str) -> &mut Option<Value> {
        let kv = self.0.next();
        set_str(&mut kv.key, key);
        &mut kv.value.get_or_insert_with(AnyValue::default).value
    }

    fn str(&mut self, key: &str, v: &str) {
        match self.slot(key) {
            Some(Value::StringValue(s)) => set_str(s, v),
            slot => *slot = Some(Value::StringValue(v.to_owned())),
        }
    }

    fn opt(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }

    fn int(&mut self, key: &str, v: i64) {
        *self.slot(key) = Some(Value::IntValue(v));
    }

    fn double(&mut self, key: &str, v: f64) {
        *self.slot(key) = Some(Value::DoubleValue(v));
    }

    fn bool(&mut self, key: &str, v: bool) {
        *self.slot(key) = Some(Value::BoolValue(v));
    }

    /// A one-element string array.
    fn strings(&mut self, key: &str, v: &str) {
        let slot = self.slot(key);
        if let Some(Value::ArrayValue(a)) = slot
            && let [
                AnyValue {
                    value: Some(Value::StringValue(s)),
                },
            ] = a.values.as_mut_slice()
        {
            set_str(s, v);
            return;
        }
        *slot = Some(Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(Value::StringValue(v.to_owned())),
            }],
        }));
    }

    fn finish(self) {
        self.0.finish();
    }
}

/// Writes span events over a reused list (see [`Reuse`]).
struct Events<'a>(Reuse<'a, Event>);

impl<'a> Events<'a> {
    fn new(events: &'a mut Vec<Event>) -> Self {
        Events(Reuse::new(events))
    }

    /// A new event; write its attributes into what this returns (and `finish` it).
    fn add(&mut self, name: &str, at_ms: f64) -> Attrs<'_> {
        let e = self.0.next();
        set_str(&mut e.name, name);
        e.time_unix_nano = nanos(at_ms);
        Attrs::new(&mut e.attributes)
    }

    fn finish(self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    use super::*;
    use crate::observe::{AttemptRecord, TraceRecord};

    fn event(model: &str, attempts: usize) -> RequestEvent {
        let mut e =
            crate::context::RequestContext::new("r".into(), crate::canonical::Dialect::OpenAiChat)
                .event(200, None);
        e.requested_model = model.into();
        e.provider = Some("google".into());
        e.trace = Some(TraceRecord {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            parent_span_id: Some("00f067aa0ba902b7".into()),
            sampled: true,
        });
        e.attempts = (0..attempts)
            .map(|i| AttemptRecord {
                target: format!("google:gemini-{i}"),
                duration_ms: 1.0,
                error_type: (i + 1 < attempts).then(|| "upstream_error".into()),
                status: (i + 1 < attempts).then_some(503),
                error: (i + 1 < attempts).then(|| "overloaded".into()),
                start_ms: i as f64,
                span_id: Some(format!("{:016x}", i + 1)),
                joined: None,
                cost_nano_usd: None,
            })
            .collect();
        e
    }

    fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    /// Every attribute and event the request span promises, read back through the official
    /// definitions: cost, account, agent, cache and reasoning tokens, `gen_ai.system`, time to
    /// first token, guardrail findings and the budget's reserve and settle events.
    #[test]
    fn the_request_span_carries_every_promised_attribute_and_event() {
        let framing = Framing::new(
            Resource::default(),
            String::new(),
            InstrumentationScope::default(),
        );
        let mut e = event("m", 1);
        e.stream = true;
        e.ttfb_ms = Some(250.0);
        e.cost_nano_usd = 1_500_000_000;
        e.budget_reserved_nano_usd = Some(4_000_000_000);
        e.account_id = Some("eip155:1:0xabc".into());
        e.agent = Some("planner".into());
        e.route = Some("r".into());
        e.server_address = Some("api.example".into());
        e.finish_reason = Some("stop");
        e.tokens.input_cache_read = 7;
        e.tokens.input_cache_write = 5;
        e.tokens.output_reasoning = 11;
        e.guardrail_findings = vec![crate::observe::GuardrailFinding {
            pattern: "acme/internal_token".into(),
            count: 2,
            action: "redact".into(),
        }];
        let mut spans = Vec::new();
        SpanWriter::default().write(&e, &mut spans);
        let req = ExportTraceServiceRequest::decode(framing.body(&spans).as_slice()).unwrap();
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        let text = |k: &str| match attr(s, k) {
            Some(Value::StringValue(v)) => v.clone(),
            other => panic!("{k}: {other:?}"),
        };
        let int = |k: &str| match attr(s, k) {
            Some(Value::IntValue(v)) => *v,
            other => panic!("{k}: {other:?}"),
        };
        let double = |k: &str| match attr(s, k) {
            Some(Value::DoubleValue(v)) => *v,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(text("gen_ai.system"), "gcp.gemini");
        assert_eq!(text("gen_ai.provider.name"), "gcp.gemini");
        assert_eq!(text("bitrouter.account"), "eip155:1:0xabc");
        assert_eq!(text("bitrouter.agent"), "planner");
        assert_eq!(text("bitrouter.route"), "r");
        assert_eq!(text("server.address"), "api.example");
        assert!((double("bitrouter.cost_usd") - 1.5).abs() < 1e-9);
        assert!((double("gen_ai.server.time_to_first_token") - 0.25).abs() < 1e-9);
        assert_eq!(int("gen_ai.usage.cache_read.input_tokens"), 7);
        assert_eq!(int("gen_ai.usage.cache_creation.input_tokens"), 5);
        assert_eq!(int("bitrouter.usage.reasoning_tokens"), 11);
        assert!(matches!(
            attr(s, "gen_ai.response.finish_reasons"),
            Some(Value::ArrayValue(a)) if a.values.len() == 1
        ));
        let names: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gen_ai.first_token",
                "bitrouter.guardrail.finding",
                "bitrouter.budget.reserve",
                "bitrouter.budget.settle"
            ]
        );
        let event_attr = |i: usize, k: &str| {
            s.events[i]
                .attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.as_ref()?.value.clone())
        };
        assert_eq!(
            event_attr(1, "bitrouter.guardrail.pattern"),
            Some(Value::StringValue("acme/internal_token".into()))
        );
        assert_eq!(
            event_attr(1, "bitrouter.guardrail.count"),
            Some(Value::IntValue(2))
        );
        assert_eq!(
            event_attr(1, "bitrouter.guardrail.action"),
            Some(Value::StringValue("redact".into()))
        );
        assert_eq!(
            event_attr(2, "bitrouter.budget.reserved_usd"),
            Some(Value::DoubleValue(4.0))
        );
        assert_eq!(
            event_attr(3, "bitrouter.budget.settled_usd"),
            Some(Value::DoubleValue(1.5))
        );
        // The first token's event sits at the start plus the time to it.
        let offset = s.events[0].time_unix_nano - s.start_time_unix_nano;
        assert!(offset.abs_diff(250_000_000) < 1_000, "{offset}");
    }

    /// Requests of different shapes through one writer decode as if each had been written
    /// alone: nothing of a bigger request is left in a smaller one's spans.
    #[test]
    fn a_batch_decodes_with_the_official_definitions_and_reuse_leaks_nothing() {
        let framing = Framing::new(
            Resource::default(),
            String::new(),
            InstrumentationScope {
                name: "bitrouter".into(),
                ..Default::default()
            },
        );
        let mut w = SpanWriter::default();
        let mut spans = Vec::new();
        let mut big = event("big", 3);
        big.guardrail_findings = vec![crate::observe::GuardrailFinding {
            pattern: "pii_emails".into(),
            count: 2,
            action: "redact".into(),
        }];
        big.account_id = Some("acct".into());
        big.error = Some("all endpoints failed".into());
        big.success = false;
        assert_eq!(w.write(&big, &mut spans), 4);
        let mut small = event("small", 1);
        small.trace.as_mut().unwrap().parent_span_id = None;
        assert_eq!(w.write(&small, &mut spans), 2);
        let mut unsampled = event("no", 1);
        unsampled.trace.as_mut().unwrap().sampled = false;
        assert_eq!(w.write(&unsampled, &mut spans), 0);

        let req = ExportTraceServiceRequest::decode(framing.body(&spans).as_slice()).unwrap();
        let scope = &req.resource_spans[0].scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "bitrouter");
        let got: Vec<&str> = scope.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            got,
            [
                "chat big",
                "chat gemini-0",
                "chat gemini-1",
                "chat gemini-2",
                "chat small",
                "chat gemini-0"
            ]
        );
        let (b, s) = (&scope.spans[0], &scope.spans[4]);
        assert_eq!(hex::encode(&b.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(&b.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(b.flags, 0x301);
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert!(matches!(attr(b, "bitrouter.account"), Some(Value::StringValue(a)) if a == "acct"));
        assert!(
            matches!(attr(b, "gen_ai.provider.name"), Some(Value::StringValue(p)) if p == "gcp.gemini")
        );
        assert_eq!(scope.spans[1].parent_span_id, b.span_id);
        assert!(matches!(
            attr(&scope.spans[1], "http.response.status_code"),
            Some(Value::IntValue(503))
        ));
        // The small request after the big one: its own attributes only.
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.flags, 0x101);
        assert!(s.events.is_empty() && s.status.is_none());
        assert!(attr(s, "bitrouter.account").is_none());
        assert_eq!(s.attributes.len(), b.attributes.len() - 1);
        assert!(attr(&scope.spans[5], "error.type").is_none());
    }
}

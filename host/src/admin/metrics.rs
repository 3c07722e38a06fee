//! `GET /admin/metrics` (JSON, what the dashboard draws) and `GET /metrics` (Prometheus
//! text): the request metrics plus the ledger's, the observer sinks' and the guardrail
//! patterns' counters, read at scrape time.

use std::sync::atomic::Ordering::Relaxed;

use http::{HeaderValue, Response};
use serde_json::{Value, json};

use crate::guardrails::GuardrailEngine;
use crate::outcome::Outcomes;
use crate::respond::{Body, full};

/// The `/admin/metrics` document.
pub fn metrics_document(
    outcomes: &Outcomes,
    engine: &GuardrailEngine,
    guardrails_enabled: bool,
) -> Value {
    let mut doc = outcomes.metrics.snapshot();
    let sinks = outcomes
        .observers
        .read()
        .map(|o| o.stats())
        .unwrap_or_default();
    doc["observe"] = json!({ "sinks": sinks });
    if let Some(otlp) = &outcomes.otlp {
        doc["observe"]["otlp"] = json!(otlp.snapshot());
    }
    doc["ledger"] = json!({ "engine": outcomes.ledger.engine(), "stats": outcomes.ledger.stats() });
    let patterns: serde_json::Map<String, Value> =
        super::guardrail_patterns(engine).into_iter().collect();
    doc["guardrails"] = json!({
        "enabled": guardrails_enabled,
        "patterns": patterns,
    });
    doc
}

/// The Prometheus exposition.
pub fn prometheus(outcomes: &Outcomes, engine: &GuardrailEngine) -> Response<Body> {
    let m = &outcomes.metrics;
    let l = outcomes.ledger.stats();
    for (state, v) in [
        ("written", l.written),
        ("dropped", l.dropped),
        ("failed", l.failed),
        ("queued", l.queued),
    ] {
        m.set_state("ledger", state, v);
    }
    for s in outcomes
        .observers
        .read()
        .map(|o| o.stats())
        .unwrap_or_default()
    {
        let component = format!("observe_{}", s.name);
        m.set_state(&component, "delivered", s.delivered);
        m.set_state(&component, "dropped", s.dropped);
        m.set_state(&component, "panicked", s.panicked);
    }
    for p in engine.patterns() {
        // `counts` is indexed block, redact, warn (as in `guardrail_patterns`).
        for (i, action) in ["block", "redact", "warn"].into_iter().enumerate() {
            m.set_guardrail(&p.id, action, p.counts[i].load(Relaxed));
        }
        m.set_guardrail(&p.id, "plugin_failure", p.failures.load(Relaxed));
    }
    let mut r = Response::new(full(m.prometheus()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

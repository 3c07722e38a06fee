//! The Prometheus side of the metrics (`GET /metrics`), kept with the `prometheus-client`
//! crate: counters and histograms labelled by route, provider, model and status. Label sets
//! are capped so arbitrary `provider:model` names cannot grow the exposition without bound.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::event::RequestEvent;

const MAX_LABEL_SETS: usize = 1_000;
const OTHER: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    provider: String,
    model: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    route: String,
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    route: String,
    provider: String,
    model: String,
    /// `json` (end to end) or `stream_start` (time to the stream's first byte).
    kind: String,
}

/// A failed attempt at one endpoint: failed over, or the request's last (a stream that broke
/// after it started counts here too, though its request's status is 200).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptErrorLabels {
    route: String,
    /// `provider:model_id`.
    endpoint: String,
    error_type: String,
}

/// A rate limit that refused a request on a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    route: String,
    /// `account:requests`, `provider:tokens`, …
    limit: String,
}

/// An endpoint of a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    route: String,
    /// `provider:model_id`.
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    route: String,
    provider: String,
    model: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardrailLabels {
    pattern: String,
    /// block | redact | warn | plugin_failure
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    component: String,
    state: String,
}

pub struct PromMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<TargetLabels, Counter>,
    attempt_errors: Family<AttemptErrorLabels, Counter>,
    mid_stream_failovers: Family<EndpointLabels, Counter>,
    rate_limited: Family<RateLimitLabels, Counter>,
    pub in_flight: Gauge,
    overhead: Histogram,
    uptime: Gauge<f64, AtomicU64>,
    /// Ledger and sink counters, set from their owners when the page is rendered.
    states: Family<StateLabels, Gauge>,
    /// Guardrail findings per pattern and action, copied from the engine's counters when the
    /// page is rendered (a reload starts them again, hence a gauge).
    guardrails: Family<GuardrailLabels, Gauge>,
    seen: Mutex<HashSet<(String, String, String)>>,
    /// (route, endpoint) pairs with attempt errors, capped like `seen`.
    seen_endpoints: Mutex<HashSet<(String, String)>>,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 50 µs … ~100 s.
    exponential_buckets(0.000_05, 2.0, 22)
}

impl PromMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bitrouter");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route, endpoint and HTTP status",
            requests.clone(),
        );
        let duration = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        registry.register(
            "request_duration_seconds",
            "End-to-end latency (json) and time to stream start (stream_start)",
            duration.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register("tokens", "Tokens by billing category", tokens.clone());
        let cost = Family::<TargetLabels, Counter>::default();
        registry.register("cost_nano_usd", "Spend in nano-USD", cost.clone());
        let attempt_errors = Family::<AttemptErrorLabels, Counter>::default();
        registry.register(
            "upstream_attempt_errors",
            "Failed attempts by route, endpoint (provider:model_id) and error type: those failed over, and streams that broke after they started",
            attempt_errors.clone(),
        );
        let rate_limited = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, or whose endpoint a provider quota skipped, by route and limit (scope:kind)",
            rate_limited.clone(),
        );
        let mid_stream_failovers = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "mid_stream_failovers",
            "Streams that broke after they started at this endpoint (route, provider:model_id) and were carried on by another (routing.mid_stream_failover)",
            mid_stream_failovers.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being served",
            in_flight.clone(),
        );
        let overhead = Histogram::new(seconds_buckets());
        registry.register(
            "gateway_overhead_seconds",
            "Time added by the gateway: latency minus time waiting on providers",
            overhead.clone(),
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register("uptime_seconds", "Seconds since start", uptime.clone());
        let states = Family::<StateLabels, Gauge>::default();
        registry.register("component_events", "Ledger rows, observer events and plugin update checks by state (written, dropped, failed, queued, delivered, panicked, applied)", states.clone());
        let guardrails = Family::<GuardrailLabels, Gauge>::default();
        registry.register(
            "guardrail_findings",
            "Guardrail findings by pattern and action since the plugins were (re)loaded, and failed plugin calls (action=plugin_failure)",
            guardrails.clone(),
        );
        PromMetrics {
            registry,
            guardrails,
            requests,
            duration,
            tokens,
            cost,
            in_flight,
            overhead,
            uptime,
            states,
            attempt_errors,
            mid_stream_failovers,
            rate_limited,
            seen: Mutex::new(HashSet::new()),
            seen_endpoints: Mutex::new(HashSet::new()),
        }
    }

    /// The (route, provider, model) labels for an event, folded into `_other` past the cap.
    fn target(&self, route: &str, e: &RequestEvent) -> (String, String, String) {
        let key = (
            route.to_owned(),
            e.provider.clone().unwrap_or_else(|| "-".into()),
            e.model.clone().unwrap_or_else(|| "-".into()),
        );
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) || seen.len() < MAX_LABEL_SETS {
            seen.insert(key.clone());
            key
        } else {
            (OTHER.into(), OTHER.into(), OTHER.into())
        }
    }

    /// Counts the event's failed attempts per endpoint, folded into `_other` past the cap.
    fn attempt_errors(&self, route: &str, e: &RequestEvent) {
        for a in &e.attempts {
            let Some(kind) = &a.error_type else { continue };
            let key = (route.to_owned(), a.target.clone());
            let (route, endpoint) = {
                let mut seen = self
                    .seen_endpoints
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if seen.contains(&key) || seen.len() < MAX_LABEL_SETS {
                    seen.insert(key.clone());
                    key
                } else {
                    (OTHER.into(), OTHER.into())
                }
            };
            if a.cost_nano_usd.is_some() {
                self.mid_stream_failovers
                    .get_or_create(&EndpointLabels {
                        route: route.clone(),
                        endpoint: endpoint.clone(),
                    })
                    .inc();
            }
            self.attempt_errors
                .get_or_create(&AttemptErrorLabels {
                    route,
                    endpoint,
                    error_type: kind.clone(),
                })
                .inc();
        }
    }

    pub fn record(&self, e: &RequestEvent, route: Option<&str>, overhead_ms: f64) {
        if let Some(limit) = &e.rate_limited {
            // Routes folded past the label cap like every series; limits are a fixed set.
            let (route, _, _) = self.target(route.unwrap_or("-"), e);
            self.rate_limited
                .get_or_create(&RateLimitLabels {
                    route,
                    limit: limit.clone(),
                })
                .inc();
        }
        if e.attempts.iter().any(|a| a.error_type.is_some()) {
            self.attempt_errors(route.unwrap_or("-"), e);
        }
        let (route, provider, model) = self.target(route.unwrap_or("-"), e);
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                provider: provider.clone(),
                model: model.clone(),
                status: e.status.to_string(),
            })
            .inc();
        let (kind, seconds) = if e.stream {
            ("stream_start", e.ttfb_ms.unwrap_or(e.latency_ms))
        } else {
            ("json", e.latency_ms)
        };
        self.duration
            .get_or_create(&DurationLabels {
                route: route.clone(),
                provider: provider.clone(),
                model: model.clone(),
                kind: kind.into(),
            })
            .observe(seconds / 1000.0);
        let t = &e.tokens;
        for (kind, n) in [
            ("input_no_cache", t.input_no_cache),
            ("input_cache_read", t.input_cache_read),
            ("input_cache_write", t.input_cache_write),
            ("output_text", t.output_text),
            ("output_reasoning", t.output_reasoning),
        ] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        route: route.clone(),
                        provider: provider.clone(),
                        model: model.clone(),
                        kind: kind.into(),
                    })
                    .inc_by(n);
            }
        }
        if e.cost_nano_usd > 0 {
            self.cost
                .get_or_create(&TargetLabels {
                    route,
                    provider,
                    model,
                })
                .inc_by(e.cost_nano_usd);
        }
        self.overhead.observe(overhead_ms / 1000.0);
    }

    pub fn set_state(&self, component: &str, state: &str, value: i64) {
        self.states
            .get_or_create(&StateLabels {
                component: component.into(),
                state: state.into(),
            })
            .set(value);
    }

    pub fn set_guardrail(&self, pattern: &str, action: &str, value: u64) {
        self.guardrails
            .get_or_create(&GuardrailLabels {
                pattern: pattern.into(),
                action: action.into(),
            })
            .set(value.min(i64::MAX as u64) as i64);
    }

    /// Overhead histogram as (upper bound in ms, cumulative count) pairs, for the JSON page.
    pub fn overhead_buckets(&self) -> Vec<(f64, u64)> {
        let mut text = String::new();
        let mut r = Registry::default();
        r.register("o", "", self.overhead.clone());
        if prometheus_client::encoding::text::encode(&mut text, &r).is_err() {
            return Vec::new();
        }
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("o_bucket{le=\"")?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>().ok()? * 1000.0
                };
                Some((le, count.trim().parse().ok()?))
            })
            .filter(|(le, _)| le.is_finite())
            .collect()
    }

    /// The Prometheus text format (0.0.4), which every scraper and `promtool` read.
    pub fn encode(&self, uptime_seconds: f64) -> String {
        self.uptime.set(uptime_seconds);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        openmetrics_to_prometheus(&out)
    }
}

/// prometheus-client writes OpenMetrics, where a counter family `x` has samples `x_total`;
/// the Prometheus text format names the family `x_total` itself and has no `# EOF`.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + counters.len() * 16);
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_get_their_total_suffix_in_help_and_type() {
        let om = "# HELP x Things.\n# TYPE x counter\nx_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            super::openmetrics_to_prometheus(om),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}

//! The Prometheus side of the metrics (`GET /metrics`), kept with the `prometheus-client`
//! crate: counters and histograms labelled by route, provider, model and status. Label sets
//! are capped so arbitrary `provider:model` names cannot grow the exposition without bound.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

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

/// A serving runtime: `0` for the default runtime, one per thread with `server.runtime:
/// per_core`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    runtime: String,
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
    connections_accepted: Family<RuntimeLabels, Counter>,
    connections_open: Family<RuntimeLabels, Gauge>,
    overhead: Histogram,
    uptime: Gauge<f64, AtomicU64>,
    /// Ledger and sink counters, set from their owners when the page is rendered.
    states: Family<StateLabels, Gauge>,
    /// Guardrail findings per pattern and action, copied from the engine's counters when the
    /// page is rendered (a reload starts them again, hence a gauge).
    guardrails: Family<GuardrailLabels, Gauge>,
    seen: Mutex<HashSet<(String, String, String)>>,
    /// The series of each label set in `seen`, by route, provider and model.
    series: Mutex<SeriesByTarget>,
    /// (route, endpoint) pairs with attempt errors, capped like `seen`.
    seen_endpoints: Mutex<HashSet<(String, String)>>,
}

/// route → provider → model → series: looked up by `&str`, with no key to build.
type SeriesByTarget = HashMap<String, HashMap<String, HashMap<String, Arc<TargetSeries>>>>;

/// `kind` of `request_duration_seconds`, by index.
const DURATION_KINDS: [&str; 2] = ["json", "stream_start"];
/// `kind` of `tokens`, by index.
const TOKEN_KINDS: [&str; 5] = [
    "input_no_cache",
    "input_cache_read",
    "input_cache_write",
    "output_text",
    "output_reasoning",
];

/// The series of one (route, provider, model), each created in its family on first use (so
/// the exposition shows what happened, as before) and then kept: a metric handle shares its
/// value with the family's. Recording a request through `Family::get_or_create` built each
/// series' labels anew — 22 of the gateway's 209 heap allocations per request
/// (`examples/alloc_count.rs`).
struct TargetSeries {
    labels: TargetLabels,
    /// By HTTP status.
    requests: Mutex<Vec<(u16, Counter)>>,
    /// By `DURATION_KINDS`.
    duration: [OnceLock<Histogram>; 2],
    /// By `TOKEN_KINDS`.
    tokens: [OnceLock<Counter>; 5],
    cost: OnceLock<Counter>,
}

impl TargetSeries {
    /// Counts one request that ended with `status`.
    fn count_request(&self, family: &Family<RequestLabels, Counter>, status: u16) {
        let mut by_status = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = by_status.iter().find(|(s, _)| *s == status) {
            c.inc();
            return;
        }
        let c = family
            .get_or_create(&RequestLabels {
                route: self.labels.route.clone(),
                provider: self.labels.provider.clone(),
                model: self.labels.model.clone(),
                status: status.to_string(),
            })
            .clone();
        c.inc();
        by_status.push((status, c));
    }

    fn duration(&self, family: &Family<DurationLabels, Histogram>, kind: usize) -> &Histogram {
        self.duration[kind].get_or_init(|| {
            family
                .get_or_create(&DurationLabels {
                    route: self.labels.route.clone(),
                    provider: self.labels.provider.clone(),
                    model: self.labels.model.clone(),
                    kind: DURATION_KINDS[kind].into(),
                })
                .clone()
        })
    }

    fn tokens(&self, family: &Family<TokenLabels, Counter>, kind: usize) -> &Counter {
        self.tokens[kind].get_or_init(|| {
            family
                .get_or_create(&TokenLabels {
                    route: self.labels.route.clone(),
                    provider: self.labels.provider.clone(),
                    model: self.labels.model.clone(),
                    kind: TOKEN_KINDS[kind].into(),
                })
                .clone()
        })
    }

    fn cost(&self, family: &Family<TargetLabels, Counter>) -> &Counter {
        self.cost
            .get_or_init(|| family.get_or_create(&self.labels).clone())
    }
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
        let connections_accepted = Family::<RuntimeLabels, Counter>::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted, by serving runtime (one per thread with server.runtime: per_core)",
            connections_accepted.clone(),
        );
        let connections_open = Family::<RuntimeLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Client connections open, by serving runtime",
            connections_open.clone(),
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
            connections_accepted,
            connections_open,
            overhead,
            uptime,
            states,
            attempt_errors,
            mid_stream_failovers,
            rate_limited,
            seen: Mutex::new(HashSet::new()),
            series: Mutex::new(HashMap::new()),
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

    /// The series of the event's (route, provider, model), found without building a label
    /// string once they exist. Label sets folded into `_other` are not kept here (so what an
    /// outsider names cannot grow it): they look up `_other`'s series each time.
    fn series(&self, route: &str, e: &RequestEvent) -> Arc<TargetSeries> {
        let provider = e.provider.as_deref().unwrap_or("-");
        let model = e.model.as_deref().unwrap_or("-");
        let found = {
            let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            series
                .get(route)
                .and_then(|p| p.get(provider))
                .and_then(|m| m.get(model))
                .cloned()
        };
        if let Some(found) = found {
            return found;
        }
        let labels = self.target(route, e);
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let folded = labels.0 == OTHER;
        let (r, p, m) = if folded {
            (OTHER, OTHER, OTHER)
        } else {
            (route, provider, model)
        };
        series
            .entry(r.to_owned())
            .or_default()
            .entry(p.to_owned())
            .or_default()
            .entry(m.to_owned())
            .or_insert_with(|| {
                Arc::new(TargetSeries {
                    labels: TargetLabels {
                        route: labels.0,
                        provider: labels.1,
                        model: labels.2,
                    },
                    requests: Mutex::new(Vec::new()),
                    duration: Default::default(),
                    tokens: Default::default(),
                    cost: OnceLock::new(),
                })
            })
            .clone()
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
        let series = self.series(route.unwrap_or("-"), e);
        series.count_request(&self.requests, e.status);
        let (kind, seconds) = if e.stream {
            (1, e.ttfb_ms.unwrap_or(e.latency_ms))
        } else {
            (0, e.latency_ms)
        };
        series
            .duration(&self.duration, kind)
            .observe(seconds / 1000.0);
        let t = &e.tokens;
        let counts = [
            t.input_no_cache,
            t.input_cache_read,
            t.input_cache_write,
            t.output_text,
            t.output_reasoning,
        ];
        for (kind, n) in counts.into_iter().enumerate() {
            if n > 0 {
                series.tokens(&self.tokens, kind).inc_by(n);
            }
        }
        if e.cost_nano_usd > 0 {
            series.cost(&self.cost).inc_by(e.cost_nano_usd);
        }
        self.overhead.observe(overhead_ms / 1000.0);
    }

    /// The accepted-connections counter and open-connections gauge of serving runtime
    /// `runtime` (handles sharing the family's series).
    pub fn connection_series(&self, runtime: usize) -> (Counter, Gauge) {
        let labels = RuntimeLabels {
            runtime: runtime.to_string(),
        };
        (
            self.connections_accepted.get_or_create(&labels).clone(),
            self.connections_open.get_or_create(&labels).clone(),
        )
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
    use super::*;

    fn event(model: &str, status: u16) -> RequestEvent {
        let mut e =
            crate::context::RequestContext::new("r".into(), crate::canonical::Dialect::OpenAiChat)
                .event(status, None);
        e.provider = Some("openai".into());
        e.model = Some(model.into());
        e.tokens.input_no_cache = 10;
        e.tokens.output_text = 2;
        e.cost_nano_usd = 7;
        e
    }

    fn sample<'a>(page: &'a str, prefix: &str) -> Option<&'a str> {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
    }

    /// Kept series add up like the family's own, per status; label sets past the cap fold
    /// into `_other` without being kept one by one.
    #[test]
    fn kept_series_count_like_the_family_and_fold_past_the_cap() {
        let m = PromMetrics::new();
        for status in [200, 200, 429, 200] {
            m.record(&event("gpt", status), Some("default"), 0.1);
        }
        let page = m.encode(1.0);
        let labels = r#"route="default",provider="openai",model="gpt""#;
        let requests = |status: &str| {
            sample(
                &page,
                &format!(r#"bitrouter_requests_total{{{labels},status="{status}"}}"#),
            )
            .map(str::to_owned)
        };
        assert_eq!(requests("200").as_deref(), Some("3"), "{page}");
        assert_eq!(requests("429").as_deref(), Some("1"), "{page}");
        let tokens = format!(r#"bitrouter_tokens_total{{{labels},kind="output_text"}}"#);
        assert_eq!(sample(&page, &tokens), Some("8"), "{page}");
        let cost = format!(r#"bitrouter_cost_nano_usd_total{{{labels}}}"#);
        assert_eq!(sample(&page, &cost), Some("28"), "{page}");
        let json = format!(r#"bitrouter_request_duration_seconds_count{{{labels},kind="json"}}"#);
        assert_eq!(sample(&page, &json), Some("4"), "{page}");

        for i in 0..MAX_LABEL_SETS + 5 {
            m.record(&event(&format!("m{i}"), 200), Some("default"), 0.1);
        }
        let page = m.encode(1.0);
        let other = r#"bitrouter_requests_total{route="_other",provider="_other",model="_other",status="200"}"#;
        // The first label set took one place under the cap.
        assert_eq!(sample(&page, other), Some("6"), "{page}");
        let kept: usize = m
            .series
            .lock()
            .unwrap()
            .values()
            .flat_map(|p| p.values())
            .map(|models| models.len())
            .sum();
        assert_eq!(kept, MAX_LABEL_SETS + 1, "the capped sets and `_other`");
    }

    #[test]
    fn counters_get_their_total_suffix_in_help_and_type() {
        let om = "# HELP x Things.\n# TYPE x counter\nx_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            super::openmetrics_to_prometheus(om),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}

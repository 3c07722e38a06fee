//! Model name → ordered list of upstream targets. A route name uses its strategy (priority
//! order, or weighted round-robin for load_balance); `provider:model_id` goes straight to
//! that provider. Endpoints that keep failing sit out a cool-down and are then probed again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::api;
use crate::config::{Config, Cooldown, MidStream, Provider, Strategy, Timeouts};
use crate::error::{Error, ErrorKind};
use crate::spend::PriceTable;

/// How the gateway talks to a target; with `Adapter`, `Target::url` is the base the
/// adapter's path is appended to.
pub use crate::canonical::Protocol;

/// One upstream model behind one provider, ready to be called: URL and headers are built
/// once at start-up, not per request.
#[derive(Debug)]
pub struct Target {
    /// The provider's name (a key of `providers:`).
    pub provider: String,
    /// The model's id at the provider.
    pub model_id: String,
    /// How requests to it are encoded: a native dialect or the provider's adapter plugin.
    pub protocol: Protocol,
    /// The full request URL (for an adapter: the `api_base` its path is appended to).
    pub url: String,
    /// `url`, parsed once (with IDNA) for either HTTP client, not on every request.
    pub parsed_url: UpstreamUrl,
    /// Where streams go when the protocol streams at another URL (Gemini's
    /// `:streamGenerateContent?alt=sse`); `None`: `parsed_url`, with `stream: true` in the body.
    pub stream_url: Option<UpstreamUrl>,
    /// Headers sent with every request: content type, credentials, the provider's
    /// `default_headers` (marked sensitive, so `Debug` hides them).
    pub headers: HeaderMap,
    /// The endpoint's timeouts, every override layered in.
    pub timeouts: Timeouts,
    /// Prices from the registry or config; `None` for a model nobody priced (cost 0, logged).
    pub prices: Option<PriceTable>,
    /// The model's context window, where the registry or config knows it: what bounds
    /// input a request only refers to (budgets).
    pub max_input_tokens: Option<u64>,
    /// The largest answer read from this endpoint (`max_response_size`).
    pub max_response_size: u64,
    health: Health,
}

impl Target {
    /// `provider:model_id`, the name the target goes by in logs and errors.
    pub fn label(&self) -> String {
        format!("{}:{}", self.provider, self.model_id)
    }

    /// The endpoint answered well (a JSON answer, or a stream that ended cleanly).
    pub fn record_success(&self) {
        self.health.failures.store(0, Ordering::Relaxed);
    }

    /// The provider answered 429 with `Retry-After`: the endpoint is skipped for that long
    /// (then probed like after any cool-down), however few failures it had.
    pub fn cool_for(&self, wait: std::time::Duration) {
        self.health.failures.store(u32::MAX / 2, Ordering::Relaxed);
        self.health
            .cool_until
            .store(clock_ms() + wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// Counts a failure that says the endpoint is unhealthy (not a caller mistake), before
    /// or after its first byte: a stream it cut counts like a refused request.
    pub fn record_failure(&self, cooldown: Cooldown) {
        let failures = self.health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= cooldown.failures {
            self.health.cool_until.store(
                clock_ms() + cooldown.duration.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
    }
}

/// Milliseconds on one process-wide monotonic clock, for cool-downs.
fn clock_ms() -> u64 {
    static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    EPOCH.elapsed().as_millis() as u64
}

/// Consecutive failures of a target and when its cool-down ends, shared by every route
/// that uses the same provider, model, URL and key.
#[derive(Debug, Default)]
struct Health {
    failures: AtomicU32,
    /// Milliseconds on [`clock_ms`] until which the target is skipped.
    cool_until: AtomicU64,
}

#[derive(Debug)]
struct RouteState {
    strategy: Strategy,
    targets: Vec<Arc<Target>>,
    cooldown: Cooldown,
    mid_stream: MidStream,
    /// Target indices in smooth weighted round-robin order (load_balance only).
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

/// The targets to try for one request, in order, and the cool-down policy that applies.
pub struct Plan {
    /// The route the model name resolved to; `None` for `provider:model_id`.
    pub route: Option<String>,
    /// The targets, in the order to try them.
    pub targets: Vec<Arc<Target>>,
    /// When a failing target is skipped.
    pub cooldown: Cooldown,
    /// What a stream does when its upstream fails after content went out.
    pub mid_stream: MidStream,
}

/// Model name → targets, built once from the config; keeps each target's health between
/// requests.
pub struct Router {
    routes: HashMap<String, RouteState>,
    providers: HashMap<String, Provider>,
    direct_timeouts: HashMap<String, Timeouts>,
    /// `routing.mid_stream_failover`, for `provider:model_id` requests.
    direct_mid_stream: MidStream,
    /// Targets for `provider:model_id` requests, created on first use so their health persists.
    direct: Mutex<HashMap<String, Arc<Target>>>,
}

impl Router {
    /// Builds every route's targets (URLs, headers, prices) from `config`.
    pub fn new(config: &Config) -> Result<Router, Error> {
        let mut shared: HashMap<(String, String, String, Option<String>), Arc<Target>> =
            HashMap::new();
        let mut routes = HashMap::new();
        for (name, route) in &config.routes {
            let mut targets = Vec::with_capacity(route.endpoints.len());
            for e in &route.endpoints {
                let provider = &config.providers[&e.provider];
                let base = e.api_base.as_deref().unwrap_or(&provider.api_base);
                let key = e.api_key.clone().or_else(|| provider.api_key.clone());
                let id = (
                    e.provider.clone(),
                    e.model_id.clone(),
                    base.to_owned(),
                    key.clone(),
                );
                let target = match shared.get(&id) {
                    Some(t) if t.timeouts == e.timeouts => t.clone(),
                    _ => {
                        let t = Arc::new(build_target(
                            provider,
                            &e.model_id,
                            base,
                            key.as_deref(),
                            e.timeouts,
                        )?);
                        shared.insert(id, t.clone());
                        t
                    }
                };
                targets.push(target);
            }
            let weights: Vec<u32> = route.endpoints.iter().map(|e| e.weight).collect();
            routes.insert(
                name.clone(),
                RouteState {
                    strategy: route.strategy,
                    schedule: smooth_weighted_schedule(&weights),
                    targets,
                    cooldown: route.cooldown,
                    mid_stream: route.mid_stream,
                    cursor: AtomicUsize::new(0),
                },
            );
        }
        let direct_timeouts = config
            .providers
            .values()
            .map(|p| (p.name.clone(), config.direct_timeouts(p)))
            .collect();
        Ok(Router {
            routes,
            providers: config.providers.clone().into_iter().collect(),
            direct_timeouts,
            direct_mid_stream: config.mid_stream,
            direct: Mutex::new(HashMap::new()),
        })
    }

    /// Resolves a requested model name into the targets to try.
    pub fn plan(&self, model: &str) -> Result<Plan, Error> {
        if let Some(route) = self.routes.get(model) {
            return Ok(self.plan_route(model, route));
        }
        if let Some((provider, model_id)) = model.split_once(':')
            && let Some(p) = self.providers.get(provider)
        {
            let target = self.direct_target(p, model_id)?;
            return Ok(Plan {
                route: None,
                targets: vec![target],
                cooldown: Cooldown::default(),
                mid_stream: self.direct_mid_stream,
            });
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "model {model:?} is neither a route nor provider:model_id; GET /v1/models lists the names this gateway serves, and `bitrouter route list` prints the routes"
            ),
        ))
    }

    fn plan_route(&self, name: &str, route: &RouteState) -> Plan {
        let n = route.targets.len();
        let start = match route.strategy {
            Strategy::Priority => 0,
            Strategy::LoadBalance => {
                let tick = route.cursor.fetch_add(1, Ordering::Relaxed);
                route.schedule[tick % route.schedule.len()]
            }
        };
        let now = clock_ms();
        let mut ready = Vec::with_capacity(n);
        let mut cooling = Vec::new();
        for i in 0..n {
            let t = &route.targets[(start + i) % n];
            if self.available(t, route.cooldown, now) {
                ready.push(t.clone());
            } else {
                cooling.push(t.clone());
            }
        }
        // Endpoints in cool-down are a last resort, not excluded: when everything else fails,
        // one of them may have recovered.
        ready.extend(cooling);
        Plan {
            route: Some(name.to_owned()),
            targets: ready,
            cooldown: route.cooldown,
            mid_stream: route.mid_stream,
        }
    }

    /// Whether a target may be tried now. A target past its cool-down is claimed for one
    /// probe: concurrent requests keep skipping it until the probe reports back.
    fn available(&self, t: &Target, cooldown: Cooldown, now: u64) -> bool {
        if t.health.failures.load(Ordering::Relaxed) < cooldown.failures {
            return true;
        }
        let until = t.health.cool_until.load(Ordering::Relaxed);
        now >= until
            && t.health
                .cool_until
                .compare_exchange(
                    until,
                    now + cooldown.duration.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn direct_target(&self, provider: &Provider, model_id: &str) -> Result<Arc<Target>, Error> {
        if model_id.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{:?} names no model after the colon", provider.name),
            ));
        }
        if !provider.usable() {
            return Err(Error::new(
                ErrorKind::NotConfigured,
                format!(
                    "provider {:?} has no API key: {}",
                    provider.name,
                    provider.key_hint()
                ),
            ));
        }
        let key = format!("{}:{model_id}", provider.name);
        let mut cache = self.direct.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        let timeouts = self
            .direct_timeouts
            .get(&provider.name)
            .copied()
            .unwrap_or_default();
        let t = Arc::new(build_target(
            provider,
            model_id,
            &provider.api_base,
            provider.api_key.as_deref(),
            timeouts,
        )?);
        cache.insert(key, t.clone());
        Ok(t)
    }

    /// Route names in name order, for `/v1/models` and the CLI.
    pub fn route_names(&self) -> impl Iterator<Item = &String> {
        let mut names: Vec<&String> = self.routes.keys().collect();
        names.sort();
        names.into_iter()
    }
}

fn build_target(
    provider: &Provider,
    model_id: &str,
    base: &str,
    key: Option<&str>,
    timeouts: Timeouts,
) -> Result<Target, Error> {
    let base = base.trim_end_matches('/');
    let protocol = provider.protocol;
    let (url, stream_url) = match protocol {
        Protocol::Native(dialect) => api::upstream_urls(dialect, base, model_id),
        Protocol::Adapter => (base.to_owned(), None),
    };
    let bad = |what: &str| {
        Error::new(
            ErrorKind::NotConfigured,
            format!(
                "provider {:?}: {what} is not a valid HTTP header value",
                provider.name
            ),
        )
    };
    let mut headers = HeaderMap::new();
    if protocol != Protocol::Adapter {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    match protocol {
        Protocol::Native(dialect) => {
            let auth = api::upstream_auth_headers(dialect, key).map_err(|_| bad("the API key"))?;
            headers.extend(auth);
        }
        // Adapters never see the key; most APIs take it as a bearer token, and
        // `default_headers` covers the rest (with `api_key_required: false`).
        Protocol::Adapter => {
            if let Some(key) = key {
                let v = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| bad("the API key"))?;
                headers.insert(http::header::AUTHORIZATION, v);
            }
        }
    }
    for (k, v) in &provider.default_headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad(k))?;
        headers.insert(name, HeaderValue::from_str(v).map_err(|_| bad(k))?);
    }
    let mut sensitive = headers.clone();
    for (_, v) in &mut sensitive {
        v.set_sensitive(true);
    }
    let parse = |url: &str| {
        UpstreamUrl::parse(url).map_err(|e| {
            Error::new(
                ErrorKind::NotConfigured,
                format!(
                    "provider {:?}: {url} is not a valid URL: {e}",
                    provider.name
                ),
            )
        })
    };
    let parsed_url = parse(&url)?;
    let stream_url = stream_url.as_deref().map(parse).transpose()?;
    Ok(Target {
        provider: provider.name.clone(),
        model_id: model_id.to_owned(),
        protocol,
        url,
        parsed_url,
        stream_url,
        headers: sensitive,
        timeouts,
        prices: provider
            .models
            .get(model_id)
            .map(|m| PriceTable::from_pricing(&m.pricing)),
        max_input_tokens: provider
            .models
            .get(model_id)
            .and_then(|m| m.max_input_tokens),
        max_response_size: provider.max_response_size,
        health: Health::default(),
    })
}

/// Smooth weighted round-robin (as in nginx): weights 5,1,1 give a a b a c a a, spreading
/// the heavy endpoint out instead of sending it five requests in a row.
fn smooth_weighted_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += *w as i64;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        current[best] -= total;
        schedule.push(best);
    }
    if schedule.is_empty() {
        schedule.push(0);
    }
    schedule
}

/// An address an upstream request goes to, parsed once for either client.
#[derive(Clone, Debug)]
pub struct UpstreamUrl {
    url: reqwest::Url,
    uri: http::Uri,
}

impl UpstreamUrl {
    /// Parses `s` as an absolute URL (the error says why not).
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(s).map_err(|e| e.to_string())?;
        let uri = url
            .as_str()
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())?;
        Ok(UpstreamUrl { url, uri })
    }

    /// The URL as written (normalised by the parser).
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host name or address (no port).
    pub fn host_str(&self) -> Option<&str> {
        self.url.host_str()
    }

    /// As reqwest takes it.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// As hyper takes it.
    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Dialect;
    use std::path::Path;
    use std::time::Duration;

    fn router(yaml: &str) -> Router {
        Router::new(&Config::parse(yaml, Path::new("t.yaml")).unwrap()).unwrap()
    }

    const TWO: &str = "providers:\n  a:\n    api_protocol: openai\n    api_base: http://127.0.0.1:1/v1\n    api_key: ka\n  b:\n    api_protocol: anthropic\n    api_base: http://127.0.0.1:2\n    api_key: kb\nmodels:\n  r:\n    strategy: STRATEGY\n    cooldown: { failures: 2, duration: 50ms }\n    endpoints:\n      - provider: a\n        model_id: m1\n        weight: 3\n      - provider: b\n        model_id: m2\n";

    #[test]
    fn schedule_spreads_by_weight() {
        assert_eq!(
            smooth_weighted_schedule(&[5, 1, 1]),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
        assert_eq!(smooth_weighted_schedule(&[1, 1]), vec![0, 1]);
    }

    #[test]
    fn targets_carry_url_and_auth() {
        let r = router(&TWO.replace("STRATEGY", "priority"));
        let p = r.plan("r").unwrap();
        assert_eq!(p.targets[0].url, "http://127.0.0.1:1/v1/chat/completions");
        assert_eq!(p.targets[0].headers["authorization"], "Bearer ka");
        assert_eq!(p.targets[1].url, "http://127.0.0.1:2/v1/messages");
        assert_eq!(p.targets[1].headers["x-api-key"], "kb");
        assert_eq!(
            p.targets[1].headers["anthropic-version"],
            api::anthropic::API_VERSION
        );
    }

    #[test]
    fn google_targets_have_two_urls_and_the_goog_key() {
        let r = router(
            "providers:\n  g:\n    api_protocol: google\n    api_base: http://127.0.0.1:3/v1beta/\n    api_key: kg\n",
        );
        let t = &r.plan("g:gemini-2.5-flash").unwrap().targets[0];
        assert_eq!(t.protocol, Protocol::Native(Dialect::Gemini));
        assert_eq!(
            t.url,
            "http://127.0.0.1:3/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            t.stream_url.as_ref().unwrap().as_str(),
            "http://127.0.0.1:3/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(t.headers["x-goog-api-key"], "kg");
        assert!(t.headers.get("authorization").is_none());
    }

    #[test]
    fn load_balance_rotates_the_first_choice() {
        let r = router(&TWO.replace("STRATEGY", "load_balance"));
        let firsts: Vec<String> = (0..8)
            .map(|_| r.plan("r").unwrap().targets[0].provider.clone())
            .collect();
        assert_eq!(firsts.iter().filter(|p| *p == "a").count(), 6);
        assert_eq!(firsts.iter().filter(|p| *p == "b").count(), 2);
    }

    #[test]
    fn cooldown_moves_a_failing_target_last_then_probes_it_once() {
        let r = router(&TWO.replace("STRATEGY", "priority"));
        let plan = r.plan("r").unwrap();
        let a = plan.targets[0].clone();
        a.record_failure(plan.cooldown);
        assert_eq!(
            r.plan("r").unwrap().targets[0].provider,
            "a",
            "one failure is below the threshold"
        );
        a.record_failure(plan.cooldown);
        assert_eq!(r.plan("r").unwrap().targets[0].provider, "b");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            r.plan("r").unwrap().targets[0].provider,
            "a",
            "probe after the cool-down"
        );
        assert_eq!(
            r.plan("r").unwrap().targets[0].provider,
            "b",
            "only one probe at a time"
        );
        a.record_success();
        assert_eq!(r.plan("r").unwrap().targets[0].provider, "a");
    }

    #[test]
    fn direct_and_unknown_models() {
        let r = router(&TWO.replace("STRATEGY", "priority"));
        let p = r.plan("b:claude-x").unwrap();
        assert_eq!(p.targets[0].model_id, "claude-x");
        assert!(p.route.is_none());
        let e = r.plan("nope").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("/v1/models"));
        // A registry provider without a key is a clear configuration error.
        // SAFETY: no other test reads this variable.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var("XAI_API_KEY");
        };
        let e = router("").plan("xai:grok-4").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::NotConfigured);
        assert!(e.message().contains("XAI_API_KEY"));
    }
}

//! Typed configuration, validated once at load: `bitrouter.yaml` layered over the built-in
//! provider registry, `${VAR}` expanded from the environment and a `.env` beside the file.
//! Everything the gateway runs on comes out of `Config::load`; nothing re-reads the file.

mod env;
mod error;
mod file;
mod guardrails;
mod otlp;
mod providers;
mod rate_limits;
mod registry;
mod sections;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::canonical::Protocol;

pub use crate::auth::settings::{Auth, AuthMode, OperatorAlg, OperatorKey};
pub use crate::spend::cost::{InputPricing, OutputPricing, Pricing};
pub use crate::spend::ledger::{DEFAULT_REDB_CACHE, Database, Durability, OnFull};
use env::Env;
pub use error::{ConfigError, Invalid, locate};
use file::{CooldownSection, FileConfig, TimeoutsSection};
pub use file::{MidStream, ModelInfo, RuntimeKind, Strategy};
pub use guardrails::{
    ActionName, CustomPattern, DEFAULT_MAX_ARTIFACT_SIZE, DEFAULT_STREAM_WINDOW, Guardrails,
    OnFailure, POLICY_FRAGMENT_KEYS, PluginRef, Plugins, PolicyRef, Registries, RegistryLogin,
    TrustRule, resolve_policy_fragment,
};
pub use otlp::{Compression, OtlpSettings};
pub use rate_limits::{OnStoreError, RateLimitsConfig, RateStore};

/// `server.listen` when the config does not set it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;

/// The whole configuration, resolved and validated: what `bitrouter.yaml` says, with defaults
/// filled in and `${VAR}` expanded.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from (`None` for the built-in defaults).
    pub source: Option<PathBuf>,
    /// `server:`: the listener and its limits.
    pub server: Server,
    /// Every provider: the built-in registry with the user's entries merged over it.
    pub providers: BTreeMap<String, Provider>,
    /// `models:`: route name → its endpoints, the model names callers can use besides
    /// `provider:model`.
    pub routes: BTreeMap<String, Route>,
    /// `routing.connect_timeout`: how long a TCP + TLS connect to an upstream may take (default
    /// 10 s).
    pub connect_timeout: Duration,
    /// `routing.timeouts` (with `routing.stream_idle_timeout`) over the defaults: what a
    /// `provider:model` request that names no route starts from.
    pub routing_timeouts: Timeouts,
    /// `routing.mid_stream_failover`: the default for every route, and the mode of
    /// `provider:model` requests.
    pub mid_stream: MidStream,
    /// `database:`: the spend ledger's store.
    pub database: Database,
    /// `observe:`: the request-event sinks.
    pub observe: Observe,
    /// `guardrails:`: the firewall's rules.
    pub guardrails: Guardrails,
    /// `plugins:`: the WASM plugins to load.
    pub plugins: Plugins,
    /// `budgets:`: how token-carried budgets are enforced.
    pub budgets: BudgetSettings,
    /// `auth:`: who may call the gateway.
    pub auth: Auth,
    /// `rate_limits:`: requests and tokens per minute.
    pub rate_limits: RateLimitsConfig,
    /// Things the file says that this build does not act on.
    pub warnings: Vec<String>,
}

/// How budgets carried by tokens are enforced.
#[derive(Clone, Copy, Debug)]
pub struct BudgetSettings {
    /// Output tokens reserved for a request without `max_tokens` (default 4096); sent
    /// upstream as the request's cap.
    pub default_max_output_tokens: u64,
    /// Input tokens reserved for what a request only refers to (stored state, documents,
    /// built-in tools) when the model's `max_input_tokens` is not known (default 1,000,000).
    pub default_max_input_tokens: u64,
    /// Shared stores: how long an unsettled reservation counts (default 10 minutes).
    pub reservation_ttl: Duration,
}

/// Request-event sinks.
#[derive(Clone, Debug)]
pub struct Observe {
    /// JSON-lines log of every request event.
    pub jsonl: Option<PathBuf>,
    /// Rotate the log past this size…
    pub jsonl_max_bytes: u64,
    /// …keeping this many old files.
    pub jsonl_keep: u32,
    /// Events queued per sink before new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// `observe.otlp` (or the `OTEL_EXPORTER_OTLP_*` environment): OpenTelemetry export.
    pub otlp: Option<otlp::OtlpSettings>,
}

impl Config {
    /// Whether requests need a token: `auth.mode`, else on for a non-loopback listener.
    pub fn auth_enabled(&self) -> bool {
        match self.auth.mode {
            Some(m) => m == AuthMode::On,
            None => !self.server.listen.ip().is_loopback(),
        }
    }
}

/// Where BitRouter keeps its files when no config file says otherwise.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("BITROUTER_HOME") {
        return PathBuf::from(h);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".bitrouter"))
        .unwrap_or_else(|| PathBuf::from(".bitrouter"))
}

/// `server:`: the listener and its limits.
#[derive(Clone, Debug)]
pub struct Server {
    /// `server.listen`: the address to bind (default 127.0.0.1:8787).
    pub listen: SocketAddr,
    /// `server.log_level`: a tracing filter (default `info`).
    pub log_level: String,
    /// `server.max_body_size`: the largest request body accepted, in bytes (default 32 MiB).
    pub max_body_size: u64,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// How long a client may take to send its request body.
    pub body_timeout: Duration,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// `server.threads`: threads serving requests; `None`: one per CPU the process may use.
    /// `1` runs a single-threaded runtime (no cross-thread hand-offs at all), the better
    /// choice for a gateway pinned to one core (`bench/REPORT.md`, "One thread").
    pub threads: Option<NonZeroUsize>,
    /// `server.runtime`: one shared multi-thread runtime (default) or one runtime per thread.
    pub runtime: RuntimeKind,
}

impl Server {
    /// How many runtimes serve requests, each with its own upstream connection pool: one
    /// shared runtime, or with `runtime: per_core` one per thread (`threads`, else one per
    /// CPU the process may use).
    pub fn runtimes(&self) -> usize {
        match self.runtime {
            RuntimeKind::MultiThread => 1,
            RuntimeKind::PerCore => self.threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
                NonZeroUsize::get,
            ),
        }
    }
}

/// One upstream provider: its API, where it is and how to authenticate.
#[derive(Clone, Debug)]
pub struct Provider {
    /// The key under `providers:` (or the registry's name).
    pub name: String,
    /// `api_protocol`: the dialect it speaks, or its adapter plugin.
    pub protocol: Protocol,
    /// `api_base`: the base URL, without a trailing slash.
    pub api_base: String,
    /// `api_key`, else `${env_prefix}_API_KEY` from the environment.
    pub api_key: Option<String>,
    /// `api_key_required`: whether requests need a key (false for local servers; default true).
    pub api_key_required: bool,
    /// `env_prefix`: where `_API_KEY` and `_BASE_URL` are looked up in the environment.
    pub env_prefix: Option<String>,
    /// `default_headers`: sent with every request to this provider.
    pub default_headers: Vec<(String, String)>,
    /// `timeouts`: this provider's overrides of `routing.timeouts`.
    pub timeouts: Option<TimeoutOverrides>,
    /// `models`: model id → what is known of it (pricing, limits).
    pub models: BTreeMap<String, ModelInfo>,
    /// Named in the user's file (as opposed to only known from the registry).
    pub configured: bool,
    /// The provider-adapter plugin that speaks this provider's API (`api_protocol: plugin`).
    pub adapter: Option<PluginRef>,
    /// The largest answer read from this provider: its own `max_response_size`, else
    /// `upstream.max_response_size`, else [`DEFAULT_MAX_RESPONSE`].
    pub max_response_size: u64,
}

/// `upstream.max_response_size` when the config does not set it: far above any real
/// completion (a 128k-token answer is well under 1 MiB of JSON), far below what a few
/// at once would need to hurt the gateway.
pub const DEFAULT_MAX_RESPONSE: u64 = 32 << 20;

impl Provider {
    /// Whether requests can be sent: it has a key, or needs none.
    pub fn usable(&self) -> bool {
        !self.api_key_required || self.api_key.is_some()
    }

    /// Where the key would come from, for error messages.
    pub fn key_hint(&self) -> String {
        match &self.env_prefix {
            Some(p) => format!("set {p}_API_KEY or providers.{}.api_key", self.name),
            None => format!("set providers.{}.api_key", self.name),
        }
    }
}

/// Timeout overrides of one layer (global `routing.timeouts`, provider, route), applied in
/// that order by `Timeouts::layer`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeoutOverrides {
    /// Override of [`Timeouts::first_byte`].
    pub first_byte: Option<Duration>,
    /// Override of [`Timeouts::idle`].
    pub idle: Option<Duration>,
    /// Override of [`Timeouts::total`].
    pub total: Option<Duration>,
}

impl From<TimeoutsSection> for TimeoutOverrides {
    fn from(t: TimeoutsSection) -> Self {
        TimeoutOverrides {
            first_byte: t.first_byte,
            idle: t.idle,
            total: t.total,
        }
    }
}

/// The timeouts of one attempt on one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connect + request + response headers + (streams) the first event. Expiry fails over.
    pub first_byte: Duration,
    /// Longest silence between stream events once the stream has started.
    pub idle: Duration,
    /// The whole attempt, body included.
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(120),
            total: None,
        }
    }
}

impl Timeouts {
    /// These timeouts with the set ones of `o` over them.
    pub fn layer(mut self, o: Option<TimeoutOverrides>) -> Self {
        if let Some(o) = o {
            self.first_byte = o.first_byte.unwrap_or(self.first_byte);
            self.idle = o.idle.unwrap_or(self.idle);
            self.total = o.total.or(self.total);
        }
        self
    }
}

/// `routing.cooldown`, or a route's `cooldown`: when a failing endpoint is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cooldown {
    /// Consecutive failures after which an endpoint is skipped.
    pub failures: u32,
    /// How long it is skipped before one request probes it again.
    pub duration: Duration,
}

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown {
            failures: 3,
            duration: Duration::from_secs(30),
        }
    }
}

impl Cooldown {
    fn layer(mut self, c: Option<CooldownSection>) -> Self {
        if let Some(c) = c {
            self.failures = c.failures.unwrap_or(self.failures);
            self.duration = c.duration.unwrap_or(self.duration);
        }
        self
    }
}

/// A route (`models.<name>`): a model name callers use and the endpoints that serve it.
#[derive(Clone, Debug)]
pub struct Route {
    /// The name under `models:`.
    pub name: String,
    /// `strategy`: how the endpoints are ordered for a request.
    pub strategy: Strategy,
    /// `endpoints`, in the order the file lists them.
    pub endpoints: Vec<Endpoint>,
    /// `routing.timeouts` with the route's `timeouts` over them.
    pub timeouts: Timeouts,
    /// `routing.cooldown` with the route's `cooldown` over it.
    pub cooldown: Cooldown,
    /// `mid_stream_failover`, the route's over `routing`'s.
    pub mid_stream: MidStream,
}

/// One target of a route: a provider and a model id there.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `provider`: a key of [`Config::providers`].
    pub provider: String,
    /// `model_id`: the model's name at the provider.
    pub model_id: String,
    /// `api_key`: overrides the provider's key for this endpoint.
    pub api_key: Option<String>,
    /// `api_base`: overrides the provider's base URL for this endpoint.
    pub api_base: Option<String>,
    /// `weight`: its share under `load_balance` (default 1).
    pub weight: u32,
    /// Timeouts with the provider's and then the route's overrides applied.
    pub timeouts: Timeouts,
}

impl Config {
    /// The configuration with no file: defaults and the built-in registry, no routes.
    pub fn builtin() -> Config {
        let path = PathBuf::from("<built-in defaults>");
        Self::from_file(FileConfig::default(), "", &path, None)
            .unwrap_or_else(|e| unreachable!("built-in defaults are valid: {e}"))
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Validates YAML `text` as if it had been read from `path` (whose folder holds the `.env`).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file_path = path.to_owned();
        let only_comments = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let file: FileConfig = if only_comments {
            FileConfig::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let line = inner.location().map(|l| l.line());
                // A syntax error has no key (serde_path_to_error shows `?` for it).
                let key = if key == "." || key.contains('?') {
                    String::new()
                } else {
                    key
                };
                let line = line.or_else(|| locate(text, &key));
                let msg = inner.to_string();
                // serde_yaml appends "at line N column M"; the prefix already says where.
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                let msg = strip_path_prefix(&msg, &key).to_owned();
                ConfigError::invalid(&file_path, line, key, msg)
            })?
        };
        Self::from_file(file, text, &file_path, path.parent())
    }

    fn from_file(
        mut file: FileConfig,
        text: &str,
        path: &Path,
        dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let env = Env::load(dir.map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        }));
        let invalid = |key: &str, msg: String| {
            ConfigError::invalid(path, locate_nearest(text, key), key, msg)
        };
        let builtin = path.to_str() == Some("<built-in defaults>");
        // Where relative paths (ledger files, plugins, logs) start: the config's folder.
        let base_dir = match dir {
            Some(d) if !builtin => {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_owned()
                }
            }
            _ => home_dir(),
        };
        let server = sections::server(&file.server, &env, &invalid)?;
        let providers = providers::providers(&file, &env, &base_dir, &invalid)?;
        let routing_timeouts = providers::routing_timeouts(&file.routing, &invalid)?;
        let routes = providers::routes(&file, &providers, routing_timeouts, &env, &invalid)?;
        let database = sections::database(&file.database, &base_dir, &env, &invalid)?;
        let observe = sections::observe(&file.observe, &base_dir, &env, &invalid)?;
        let budgets = sections::budgets(&file, &invalid)?;
        let rate_limits = rate_limits::resolve(
            file.rate_limits.take(),
            &routes,
            &providers,
            &database.url,
            &env,
            &invalid,
        )?;
        let expand = |s: &str| env.expand(s);
        let guardrails =
            guardrails::resolve_guardrails(file.guardrails.unwrap_or_default(), &base_dir, &expand)
                .map_err(|(key, msg)| invalid(&key, msg))?;
        let plugins =
            guardrails::resolve_plugins(file.plugins.unwrap_or_default(), &base_dir, &expand)
                .map_err(|(key, msg)| invalid(&key, msg))?;
        let auth = sections::auth(file.auth, &base_dir, &env, &invalid)?;
        Ok(Config {
            budgets,
            rate_limits,
            auth,
            observe,
            database,
            guardrails,
            plugins,
            source: (!builtin).then(|| path.to_owned()),
            server,
            providers,
            routes,
            connect_timeout: file
                .routing
                .connect_timeout
                .unwrap_or(Duration::from_secs(10)),
            routing_timeouts,
            mid_stream: file.routing.mid_stream_failover.unwrap_or_default(),
            warnings: Vec::new(),
        })
    }

    /// Timeouts for a `provider:model` request that names no route.
    pub fn direct_timeouts(&self, provider: &Provider) -> Timeouts {
        self.routing_timeouts.layer(provider.timeouts)
    }
}

/// serde_yaml prefixes its messages with the path of the enclosing map (`server: unknown
/// field`); the error already names the key, so drop any such prefix of it.
fn strip_path_prefix<'a>(msg: &'a str, key: &str) -> &'a str {
    match msg.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && key.starts_with(prefix) => rest,
        _ => msg,
    }
}

/// The line of `key`, or of its closest ancestor present in the file (a missing key is
/// reported at the section that lacks it).
fn locate_nearest(text: &str, key: &str) -> Option<usize> {
    let mut key = key;
    loop {
        if let Some(line) = locate(text, key) {
            return Some(line);
        }
        key = &key[..key.rfind(['.', '['])?];
    }
}

/// A price entry, for tests elsewhere in the crate.
#[cfg(test)]
pub fn file_pricing(
    no_cache: f64,
    read: Option<f64>,
    write: Option<f64>,
    text: f64,
    reasoning: Option<f64>,
) -> Pricing {
    Pricing {
        input_tokens: InputPricing {
            no_cache,
            cache_read: read,
            cache_write: write,
        },
        output_tokens: OutputPricing { text, reasoning },
    }
}

#[cfg(test)]
mod tests;

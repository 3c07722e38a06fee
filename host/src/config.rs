//! Typed configuration, validated once at load: `bitrouter.yaml` layered over the built-in
//! provider registry, `${VAR}` expanded from the environment and a `.env` beside the file.
//! Everything the gateway runs on comes out of `Config::load`; nothing re-reads the file.

mod error;
mod file;
mod guardrails;
mod registry;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::canonical::Protocol;

pub use error::{ConfigError, Invalid, locate};
use file::{CooldownSection, FileConfig, ProviderSection, TimeoutsSection};
pub use file::{Durability, ModelInfo, OnFull, Pricing, Strategy};
pub use guardrails::{
    ActionName, CustomPattern, DEFAULT_STREAM_WINDOW, Guardrails, PluginRef, Plugins,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
const DEFAULT_MAX_BODY: u64 = 32 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from (`None` for the built-in defaults).
    pub source: Option<PathBuf>,
    pub server: Server,
    /// Every provider: the built-in registry with the user's entries merged over it.
    pub providers: BTreeMap<String, Provider>,
    pub routes: BTreeMap<String, Route>,
    pub connect_timeout: Duration,
    pub database: Database,
    pub observe: Observe,
    pub guardrails: Guardrails,
    pub plugins: Plugins,
    pub budgets: BudgetSettings,
    pub auth: Auth,
    /// Things the file says that this build does not act on.
    pub warnings: Vec<String>,
}

/// The spend ledger's store and queue.
#[derive(Clone, Debug)]
pub struct Database {
    /// `redb://PATH` (default), `sqlite://PATH`, `postgres://…`, `mysql://…` or `memory://`.
    pub url: String,
    /// Where relative redb/SQLite paths start: the config file's folder, or ~/.bitrouter.
    pub base_dir: PathBuf,
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub on_full: OnFull,
    pub durability: Durability,
    /// How long the writer lets a batch fill after its first row (async durability).
    pub flush_interval: Duration,
    pub retention_days: Option<u32>,
    /// redb: memory for cached pages. redb's own default (1 GiB) would let a long-running
    /// gateway's RSS grow with its ledger file.
    pub cache_size: u64,
}

/// `database.cache_size` when the config does not set it.
pub const DEFAULT_REDB_CACHE: u64 = 16 << 20;

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
}

/// `auth:`: who may call the gateway (see `crate::auth`).
#[derive(Clone, Debug)]
pub struct Auth {
    /// `None`: on when listening on a non-loopback address, off on loopback.
    pub mode: Option<AuthMode>,
    /// CAIP-10 globs allowed to use the API; `None`: the local key store's accounts.
    pub accounts: Option<Vec<String>>,
    /// CAIP-10 globs whose admin tokens are honoured; `None`: the local key store's accounts.
    pub admins: Option<Vec<String>>,
    pub clock_skew: Duration,
    /// The longest an admin token may still have to live (default 24 h).
    pub max_admin_token_lifetime: Duration,
    pub max_token_bytes: usize,
    pub operator_keys: Vec<OperatorKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Off,
    On,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum OperatorAlg {
    EdDSA,
    ES256,
}

/// A public key that signs operator tokens.
#[derive(Clone, Debug)]
pub struct OperatorKey {
    pub alg: OperatorAlg,
    pub pem: String,
    pub issuer: Option<String>,
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

#[derive(Clone, Debug)]
pub struct Server {
    pub listen: SocketAddr,
    pub log_level: String,
    pub max_body_size: u64,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// How long a client may take to send its request body.
    pub body_timeout: Duration,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub protocol: Protocol,
    pub api_base: String,
    pub api_key: Option<String>,
    pub api_key_required: bool,
    pub env_prefix: Option<String>,
    pub default_headers: Vec<(String, String)>,
    pub timeouts: Option<TimeoutOverrides>,
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
    pub first_byte: Option<Duration>,
    pub idle: Option<Duration>,
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
    pub fn layer(mut self, o: Option<TimeoutOverrides>) -> Self {
        if let Some(o) = o {
            self.first_byte = o.first_byte.unwrap_or(self.first_byte);
            self.idle = o.idle.unwrap_or(self.idle);
            self.total = o.total.or(self.total);
        }
        self
    }
}

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

#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub strategy: Strategy,
    pub endpoints: Vec<Endpoint>,
    pub timeouts: Timeouts,
    pub cooldown: Cooldown,
}

#[derive(Clone, Debug)]
pub struct Endpoint {
    pub provider: String,
    pub model_id: String,
    pub api_key: Option<String>,
    pub api_base: Option<String>,
    pub weight: u32,
    /// Timeouts with the provider's and then the route's overrides applied.
    pub timeouts: Timeouts,
}

/// Environment lookups: the process environment first, then the `.env` beside the config.
struct Env {
    dotenv: HashMap<String, String>,
}

impl Env {
    fn load(config_dir: Option<&Path>) -> Self {
        let mut dotenv = HashMap::new();
        if let Some(dir) = config_dir
            && let Ok(iter) = dotenvy::from_path_iter(dir.join(".env"))
        {
            dotenv.extend(iter.flatten());
        }
        Env { dotenv }
    }

    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
            .filter(|v| !v.is_empty())
    }

    /// Expands `${VAR}` and `${VAR:-default}`; an unset variable expands to nothing.
    fn expand(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let inner = &after[..end];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    match self.get(name.trim()) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(default.unwrap_or("")),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn expand_opt(&self, s: Option<&String>) -> Option<String> {
        s.map(|s| self.expand(s)).filter(|s| !s.is_empty())
    }
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
        file: FileConfig,
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
        let warnings = Vec::new();

        let s = &file.server;
        let listen_text = env
            .expand_opt(s.listen.as_ref())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("expected an address such as 127.0.0.1:8787, found {listen_text:?}"),
            )
        })?;
        let log_level = s.log_level.clone().unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(invalid(
                "server.log_level",
                format!(
                    "expected trace, debug, info, warn, error or a tracing filter, found {log_level:?}"
                ),
            ));
        }
        let max_body_size = s.max_body_size.map(|b| b.0).unwrap_or(DEFAULT_MAX_BODY);
        if max_body_size == 0 {
            return Err(invalid(
                "server.max_body_size",
                "expected a size above zero".into(),
            ));
        }
        let server = Server {
            listen,
            log_level,
            max_body_size,
            header_timeout: s.header_timeout.unwrap_or(Duration::from_secs(30)),
            body_timeout: s.body_timeout.unwrap_or(Duration::from_secs(60)),
            shutdown_grace: s.shutdown_grace.unwrap_or(Duration::from_secs(30)),
        };

        let builtin = path.to_str() == Some("<built-in defaults>");
        // Where relative paths (ledger files, plugins) start: the config's folder.
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
        let max_response_size = match file.upstream.max_response_size {
            Some(file::ByteSize(0)) => {
                return Err(invalid(
                    "upstream.max_response_size",
                    "expected a size larger than zero".into(),
                ));
            }
            Some(file::ByteSize(n)) => n,
            None => DEFAULT_MAX_RESPONSE,
        };
        let mut providers = BTreeMap::new();
        for (name, _) in registry::BUILTIN {
            let section = registry::builtin(name).unwrap_or_default();
            providers.insert(
                name.to_string(),
                resolve_provider(
                    name,
                    section,
                    false,
                    max_response_size,
                    &env,
                    &base_dir,
                    &invalid,
                )?,
            );
        }
        // User providers, resolving `derives` chains between them.
        let mut pending: Vec<(&String, &ProviderSection)> = file.providers.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut waiting = Vec::new();
            for (name, section) in pending {
                let base = match &section.derives {
                    Some(parent) if file.providers.contains_key(parent) && parent != name => {
                        if !providers.contains_key(parent) || !providers[parent].configured {
                            waiting.push((name, section));
                            continue;
                        }
                        Some(file.providers[parent].clone())
                    }
                    Some(parent) => Some(registry::builtin(parent).ok_or_else(|| {
                        let known: Vec<&str> = registry::BUILTIN.iter().map(|(n, _)| *n).collect();
                        invalid(
                            &format!("providers.{name}.derives"),
                            format!("unknown provider {parent:?}; expected one of {} or another provider in this file", known.join(", ")),
                        )
                    })?),
                    None => registry::builtin(name),
                };
                let merged = match base {
                    Some(b) => merge_provider(b, section.clone()),
                    None => section.clone(),
                };
                providers.insert(
                    name.clone(),
                    resolve_provider(
                        name,
                        merged,
                        true,
                        max_response_size,
                        &env,
                        &base_dir,
                        &invalid,
                    )?,
                );
            }
            if waiting.len() == before {
                let (name, _) = waiting[0];
                return Err(invalid(
                    &format!("providers.{name}.derives"),
                    "`derives` forms a cycle".into(),
                ));
            }
            pending = waiting;
        }

        let global_timeouts = Timeouts::default().layer(file.routing.timeouts.map(Into::into));
        let global_cooldown = Cooldown::default().layer(file.routing.cooldown);
        let mut routes = BTreeMap::new();
        for (route_name, r) in &file.models {
            let at = format!("models.{route_name}");
            if r.endpoints.is_empty() {
                return Err(invalid(
                    &format!("{at}.endpoints"),
                    "expected at least one endpoint".into(),
                ));
            }
            let cooldown = global_cooldown.layer(r.cooldown);
            if cooldown.failures == 0 {
                return Err(invalid(
                    &format!("{at}.cooldown.failures"),
                    "expected 1 or more".into(),
                ));
            }
            let route_timeouts = r.timeouts.map(TimeoutOverrides::from);
            let mut endpoints = Vec::with_capacity(r.endpoints.len());
            for (i, e) in r.endpoints.iter().enumerate() {
                let eat = format!("{at}.endpoints[{i}]");
                let Some(p) = providers.get(&e.provider) else {
                    return Err(invalid(
                        &format!("{eat}.provider"),
                        format!(
                            "unknown provider {:?}; expected one of {}",
                            e.provider,
                            providers.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                if e.model_id.trim().is_empty() {
                    return Err(invalid(
                        &format!("{eat}.model_id"),
                        "expected a model id".into(),
                    ));
                }
                let api_key = env.expand_opt(e.api_key.as_ref());
                if api_key.is_none() && !p.usable() {
                    return Err(invalid(
                        &format!("{eat}.provider"),
                        format!("provider {:?} has no API key: {}", p.name, p.key_hint()),
                    ));
                }
                let api_base = env.expand_opt(e.api_base.as_ref());
                if let Some(b) = &api_base {
                    check_url(b).map_err(|m| invalid(&format!("{eat}.api_base"), m))?;
                }
                let weight = e.weight.unwrap_or(1);
                if weight == 0 {
                    return Err(invalid(
                        &format!("{eat}.weight"),
                        "expected 1 or more (remove the endpoint to stop using it)".into(),
                    ));
                }
                endpoints.push(Endpoint {
                    provider: e.provider.clone(),
                    model_id: e.model_id.clone(),
                    api_key,
                    api_base,
                    weight,
                    timeouts: global_timeouts.layer(p.timeouts).layer(route_timeouts),
                });
            }
            routes.insert(
                route_name.clone(),
                Route {
                    name: route_name.clone(),
                    strategy: r.strategy,
                    endpoints,
                    timeouts: global_timeouts.layer(route_timeouts),
                    cooldown,
                },
            );
        }

        let d = &file.database;
        let url = std::env::var("BITROUTER_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| env.expand_opt(d.url.as_ref()))
            .unwrap_or_else(|| "redb://bitrouter.redb".to_owned());
        let known = [
            "redb://",
            "sqlite://",
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
            "memory://",
        ];
        if !known.iter().any(|k| url.starts_with(k)) {
            return Err(invalid(
                "database.url",
                format!(
                    "expected redb://PATH, sqlite://PATH, postgres://…, mysql://… or memory://, found {url:?}"
                ),
            ));
        }
        let database = Database {
            url,
            base_dir: base_dir.clone(),
            queue_capacity: d.queue_capacity.unwrap_or(10_000),
            batch_size: d.batch_size.unwrap_or(1_000),
            on_full: d.on_full.unwrap_or_default(),
            durability: d.durability.unwrap_or_default(),
            flush_interval: d.flush_interval.unwrap_or(Duration::from_millis(10)),
            retention_days: d.retention_days,
            cache_size: d.cache_size.map(|b| b.0).unwrap_or(DEFAULT_REDB_CACHE),
        };
        if database.cache_size < 1 << 20 {
            return Err(invalid(
                "database.cache_size",
                format!(
                    "expected at least 1MiB (redb's page cache), found {} bytes",
                    database.cache_size
                ),
            ));
        }
        if database.queue_capacity == 0 || database.batch_size == 0 {
            return Err(invalid(
                "database",
                "queue_capacity and batch_size must be 1 or more".into(),
            ));
        }
        // Rows wait this long in memory; a crash loses them. Minutes would be a typo.
        if database.flush_interval > Duration::from_secs(10) {
            return Err(invalid(
                "database.flush_interval",
                format!(
                    "expected a duration of at most 10s (rows wait that long in memory and a crash loses them), found {}",
                    humantime::format_duration(database.flush_interval)
                ),
            ));
        }

        let o = &file.observe;
        let observe = Observe {
            jsonl: env.expand_opt(o.jsonl.as_ref()).map(|p| {
                let p = PathBuf::from(p);
                if p.is_absolute() {
                    p
                } else {
                    database.base_dir.join(p)
                }
            }),
            jsonl_max_bytes: o.jsonl_max_size.map(|b| b.0).unwrap_or(100 * 1024 * 1024),
            jsonl_keep: o.jsonl_keep.unwrap_or(5),
            queue_capacity: o.queue_capacity.unwrap_or(10_000),
        };
        if observe.queue_capacity == 0 {
            return Err(invalid(
                "observe.queue_capacity",
                "expected 1 or more".into(),
            ));
        }

        let expand = |s: &str| env.expand(s);
        let guardrails = guardrails::resolve_guardrails(
            file.guardrails.unwrap_or_default(),
            &database.base_dir,
            &expand,
        )
        .map_err(|(key, msg)| invalid(&key, msg))?;
        let plugins = guardrails::resolve_plugins(
            file.plugins.unwrap_or_default(),
            &database.base_dir,
            &expand,
        )
        .map_err(|(key, msg)| invalid(&key, msg))?;

        let budgets = BudgetSettings {
            default_max_output_tokens: file.budgets.default_max_output_tokens.unwrap_or(4096),
            default_max_input_tokens: file.budgets.default_max_input_tokens.unwrap_or(1_000_000),
            reservation_ttl: file
                .budgets
                .reservation_ttl
                .unwrap_or(Duration::from_secs(600)),
        };
        for (key, v) in [
            (
                "budgets.default_max_output_tokens",
                budgets.default_max_output_tokens,
            ),
            (
                "budgets.default_max_input_tokens",
                budgets.default_max_input_tokens,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "expected a positive number of tokens".into()));
            }
        }
        if budgets.reservation_ttl.is_zero() {
            return Err(invalid(
                "budgets.reservation_ttl",
                "expected a duration longer than zero".into(),
            ));
        }

        let auth = resolve_auth(file.auth, &database.base_dir, &env, &invalid)?;

        Ok(Config {
            budgets,
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
            warnings,
        })
    }

    /// Timeouts for a `provider:model` request that names no route.
    pub fn direct_timeouts(&self, provider: &Provider) -> Timeouts {
        Timeouts::default().layer(provider.timeouts)
    }
}

fn resolve_auth(
    a: file::AuthSection,
    base_dir: &Path,
    env: &Env,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Auth, ConfigError> {
    for (key, list) in [("auth.accounts", &a.accounts), ("auth.admins", &a.admins)] {
        for (i, p) in list.iter().flatten().enumerate() {
            // A pattern names a CAIP-10 account: namespace:reference:address, globs allowed.
            if !p.contains(':') && p != "*" {
                return Err(invalid(
                    &format!("{key}[{i}]"),
                    format!(
                        "expected a CAIP-10 pattern such as solana:*:<pubkey> or eip155:*:0x…, found {p:?}"
                    ),
                ));
            }
        }
        if let Some(list) = list {
            crate::auth::AccountPatterns::new(list, key).map_err(|m| invalid(key, m))?;
        }
    }
    let mut operator_keys = Vec::new();
    for (i, k) in a.operator_keys.into_iter().enumerate() {
        let at = format!("auth.operator_keys[{i}]");
        let pem = match (env.expand_opt(k.public_key.as_ref()), &k.public_key_file) {
            (Some(pem), None) => pem,
            (None, Some(f)) => {
                let f = env.expand(f);
                let path = if Path::new(&f).is_absolute() {
                    PathBuf::from(&f)
                } else {
                    base_dir.join(&f)
                };
                std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        &format!("{at}.public_key_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
            }
            _ => {
                return Err(invalid(
                    &at,
                    "expected exactly one of public_key (PEM text) or public_key_file".into(),
                ));
            }
        };
        operator_keys.push(OperatorKey {
            alg: k.alg,
            pem,
            issuer: k.issuer,
        });
    }
    crate::auth::operator::OperatorKeys::new(&operator_keys)
        .map_err(|(i, m)| invalid(&format!("auth.operator_keys[{i}]"), m))?;
    let max_admin_token_lifetime = a
        .max_admin_token_lifetime
        .unwrap_or(Duration::from_secs(24 * 3600));
    if max_admin_token_lifetime.is_zero() {
        return Err(invalid(
            "auth.max_admin_token_lifetime",
            "expected a duration longer than zero".into(),
        ));
    }
    let max_token_bytes = a.max_token_size.map(|b| b.0).unwrap_or(8 * 1024);
    if max_token_bytes == 0 {
        return Err(invalid(
            "auth.max_token_size",
            "expected a size above zero".into(),
        ));
    }
    Ok(Auth {
        mode: a.mode,
        accounts: a.accounts,
        admins: a.admins,
        clock_skew: a.clock_skew.unwrap_or(Duration::from_secs(30)),
        max_admin_token_lifetime,
        max_token_bytes: usize::try_from(max_token_bytes).unwrap_or(usize::MAX),
        operator_keys,
    })
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

fn merge_provider(base: ProviderSection, over: ProviderSection) -> ProviderSection {
    let mut models = base.models.unwrap_or_default();
    models.extend(over.models.unwrap_or_default());
    let mut headers = base.default_headers.unwrap_or_default();
    headers.extend(over.default_headers.unwrap_or_default());
    ProviderSection {
        derives: over.derives,
        api_protocol: over.api_protocol.or(base.api_protocol),
        api_base: over.api_base.or(base.api_base),
        api_key: over.api_key.or(base.api_key),
        env_prefix: over.env_prefix.or(base.env_prefix),
        api_key_required: over.api_key_required.or(base.api_key_required),
        default_headers: Some(headers),
        timeouts: over.timeouts.or(base.timeouts),
        models: Some(models),
        adapter: over.adapter.or(base.adapter),
        max_response_size: over.max_response_size.or(base.max_response_size),
    }
}

fn check_url(u: &str) -> Result<(), String> {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        _ => Err(format!("expected an http:// or https:// URL, found {u:?}")),
    }
}

fn resolve_provider(
    name: &str,
    s: ProviderSection,
    configured: bool,
    max_response_size: u64,
    env: &Env,
    base_dir: &Path,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Provider, ConfigError> {
    let at = format!("providers.{name}");
    let protocol = s
        .api_protocol
        .ok_or_else(|| invalid(&format!("{at}.api_protocol"), "is required for a provider that is not built in (openai, openai_responses, anthropic, google, or plugin with an `adapter`), or use `derives`".into()))?;
    let expand = |v: &str| env.expand(v);
    let adapter = match (protocol, s.adapter.clone()) {
        (Protocol::Adapter, Some(e)) => Some(
            guardrails::resolve_plugin_entry(e, format!("{at}.adapter"), base_dir, &expand)
                .map_err(|(key, msg)| invalid(&key, msg))?,
        ),
        (Protocol::Adapter, None) => {
            return Err(invalid(
                &format!("{at}.adapter"),
                "is required with api_protocol: plugin: the provider-adapter plugin, e.g. `adapter: { path: plugins/cohere-chat.wasm }`".into(),
            ));
        }
        (_, Some(_)) => {
            return Err(invalid(
                &format!("{at}.adapter"),
                "is only used with `api_protocol: plugin`; set that, or remove `adapter`".into(),
            ));
        }
        (_, None) => None,
    };
    let prefix = s.env_prefix.clone();
    let from_env = |suffix: &str| {
        prefix
            .as_ref()
            .and_then(|p| env.get(&format!("{p}_{suffix}")))
    };
    let api_base = env
        .expand_opt(s.api_base.as_ref())
        .or_else(|| from_env("BASE_URL"))
        .ok_or_else(|| {
            invalid(
                &format!("{at}.api_base"),
                "is required: the provider's base URL".into(),
            )
        })?;
    // An explicit `${PREFIX}_BASE_URL` wins over the registry's default, not over the user's file.
    let api_base = match (configured && s.api_base.is_some(), from_env("BASE_URL")) {
        (false, Some(b)) => b,
        _ => api_base,
    };
    check_url(&api_base).map_err(|m| invalid(&format!("{at}.api_base"), m))?;
    let api_key = env
        .expand_opt(s.api_key.as_ref())
        .or_else(|| from_env("API_KEY"));
    let mut default_headers = Vec::new();
    for (k, v) in s.default_headers.unwrap_or_default() {
        let v = env.expand(&v);
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(&v).is_err()
        {
            return Err(invalid(
                &format!("{at}.default_headers.{k}"),
                "expected a valid HTTP header name and value".into(),
            ));
        }
        default_headers.push((k, v));
    }
    Ok(Provider {
        name: name.to_owned(),
        protocol,
        api_base: api_base.trim_end_matches('/').to_owned(),
        api_key,
        api_key_required: s.api_key_required.unwrap_or(true),
        env_prefix: prefix,
        default_headers,
        timeouts: s.timeouts.map(Into::into),
        models: s.models.unwrap_or_default(),
        configured,
        adapter,
        max_response_size: match s.max_response_size {
            Some(file::ByteSize(0)) => {
                return Err(invalid(
                    &format!("{at}.max_response_size"),
                    "expected a size larger than zero".into(),
                ));
            }
            Some(file::ByteSize(n)) => n,
            None => max_response_size,
        },
    })
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
        input_tokens: file::InputPricing {
            no_cache,
            cache_read: read,
            cache_write: write,
        },
        output_tokens: file::OutputPricing { text, reasoning },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/nonexistent/bitrouter.yaml"))
    }

    #[test]
    fn builtin_registry_is_merged_under_the_file() {
        let c = parse(
            "providers:\n  openai:\n    api_key: sk-test\n  mine:\n    derives: anthropic\n    api_key: k\n    api_base: http://127.0.0.1:1\nmodels:\n  smart:\n    endpoints:\n      - provider: mine\n        service_id: claude\n      - provider: openai\n        model_id: gpt-4o\n",
        )
        .unwrap();
        assert_eq!(
            c.providers["mine"].protocol,
            Protocol::Native(crate::canonical::Dialect::Anthropic)
        );
        assert_eq!(c.providers["openai"].api_base, "https://api.openai.com/v1");
        assert!(c.providers["openai"].models.contains_key("gpt-4o"));
        assert_eq!(c.routes["smart"].endpoints[0].model_id, "claude");
        assert_eq!(c.providers.len(), 12);
    }

    #[test]
    fn database_cache_size_defaults_and_bounds() {
        let c = parse("{}").unwrap();
        assert_eq!(c.database.cache_size, DEFAULT_REDB_CACHE);
        let c = parse("database:\n  cache_size: 64MiB\n").unwrap();
        assert_eq!(c.database.cache_size, 64 << 20);
        let e = parse("database:\n  url: memory://\n  cache_size: 4KiB\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bitrouter.yaml:3")
                && e.contains("database.cache_size")
                && e.contains("at least 1MiB"),
            "{e}"
        );
    }

    #[test]
    fn database_flush_interval_defaults_and_bounds() {
        let c = parse("{}").unwrap();
        assert_eq!(c.database.flush_interval, Duration::from_millis(10));
        let c = parse("database:\n  flush_interval: 0s\n").unwrap();
        assert_eq!(c.database.flush_interval, Duration::ZERO);
        let e = parse("database:\n  url: memory://\n  flush_interval: 5m\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bitrouter.yaml:3")
                && e.contains("database.flush_interval")
                && e.contains("at most 10s"),
            "{e}"
        );
    }

    #[test]
    fn env_expansion_and_env_prefix() {
        // SAFETY: tests in this module use variable names no other test touches.
        unsafe {
            std::env::set_var("BR_TEST_KEY_1", "from-env");
            std::env::set_var("BRTESTPFX_API_KEY", "prefixed");
        }
        let c = parse("providers:\n  a:\n    api_protocol: openai\n    api_base: http://h/v1\n    api_key: ${BR_TEST_KEY_1}\n  b:\n    api_protocol: openai\n    api_base: ${BR_UNSET_VAR:-http://fallback/v1}\n    env_prefix: BRTESTPFX\n").unwrap();
        assert_eq!(c.providers["a"].api_key.as_deref(), Some("from-env"));
        assert_eq!(c.providers["b"].api_key.as_deref(), Some("prefixed"));
        assert_eq!(c.providers["b"].api_base, "http://fallback/v1");
    }

    #[test]
    fn dotenv_beside_the_config_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "BR_DOTENV_ONLY_KEY=dot\n").unwrap();
        let path = dir.path().join("bitrouter.yaml");
        std::fs::write(&path, "providers:\n  a:\n    api_protocol: anthropic\n    api_base: http://h\n    api_key: ${BR_DOTENV_ONLY_KEY}\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.providers["a"].api_key.as_deref(), Some("dot"));
    }

    #[test]
    fn errors_name_file_line_key_and_expectation() {
        let e = parse("server:\n  listen: 127.0.0.1:8787\nmodels:\n  fast:\n    strategy: fastest\n    endpoints: []\n").unwrap_err().to_string();
        assert!(
            e.starts_with("/nonexistent/bitrouter.yaml:5: `models.fast.strategy`"),
            "{e}"
        );
        assert!(e.contains("priority") && e.contains("load_balance"), "{e}");

        let e = parse("server:\n  listne: x\n").unwrap_err().to_string();
        assert!(
            e.contains(":2") && e.contains("listne") && e.contains("listen"),
            "{e}"
        );

        let e = parse(
            "models:\n  fast:\n    endpoints:\n      - provider: nope\n        model_id: m\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(":4: `models.fast.endpoints[0].provider`")
                && e.contains("unknown provider \"nope\""),
            "{e}"
        );

        let e = parse("server:\n  listen: not-an-addr\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2: `server.listen`") && e.contains("127.0.0.1:8787"),
            "{e}"
        );

        let e = parse("models:\n  x:\n    endpoints:\n      - provider: deepseek\n        model_id: deepseek-chat\n").unwrap_err().to_string();
        assert!(e.contains("DEEPSEEK_API_KEY"), "{e}");

        let e = parse("providers:\n  p:\n    api_base: http://x\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`providers.p.api_protocol`") && e.contains(":2"),
            "{e}"
        );

        let e = parse("server:\n  max_body_size: lots\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_body_size") && e.contains("32MiB"), "{e}");

        let e = parse("models: [1, 2]\n").unwrap_err().to_string();
        assert!(e.contains("`models`") && e.contains(":1"), "{e}");
    }

    #[test]
    fn timeouts_layer_global_provider_route() {
        let c = parse("routing:\n  timeouts: { first_byte: 5s }\nproviders:\n  p:\n    api_protocol: openai\n    api_base: http://x\n    api_key_required: false\n    timeouts: { idle: 7s }\nmodels:\n  r:\n    timeouts: { total: 9s }\n    endpoints:\n      - provider: p\n        model_id: m\n").unwrap();
        let t = c.routes["r"].endpoints[0].timeouts;
        assert_eq!(t.first_byte, Duration::from_secs(5));
        assert_eq!(t.idle, Duration::from_secs(7));
        assert_eq!(t.total, Some(Duration::from_secs(9)));
    }

    #[test]
    fn database_defaults_beside_the_config() {
        let c = parse("database:\n  durability: sync\n  on_full: block\n").unwrap();
        assert_eq!(c.database.url, "redb://bitrouter.redb");
        assert_eq!(c.database.base_dir, PathBuf::from("/nonexistent"));
        assert_eq!(
            (c.database.durability, c.database.on_full),
            (Durability::Sync, OnFull::Block)
        );
        let e = parse("database:\n  url: oracle://x\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2: `database.url`") && e.contains("postgres://"),
            "{e}"
        );
    }

    #[test]
    fn auth_section_is_typed_and_checked() {
        let c =
            parse("auth:\n  mode: on\n  accounts: ['solana:*:Abc*']\n  clock_skew: 5s\n").unwrap();
        assert!(c.warnings.is_empty());
        assert_eq!(c.auth.mode, Some(AuthMode::On));
        assert_eq!(c.auth.clock_skew, Duration::from_secs(5));
        assert!(c.auth_enabled());
        // Loopback defaults to off, anything else to on.
        assert!(
            !parse("server: { listen: 127.0.0.1:1 }\n")
                .unwrap()
                .auth_enabled()
        );
        assert!(
            parse("server: { listen: 0.0.0.0:1 }\n")
                .unwrap()
                .auth_enabled()
        );
        let e = parse("auth:\n  mode: maybe\n").unwrap_err().to_string();
        assert!(e.contains("auth.mode") && e.contains("off"), "{e}");
        let e = parse("auth:\n  accounts: [bob]\n").unwrap_err().to_string();
        assert!(
            e.contains(":2: `auth.accounts[0]`") && e.contains("CAIP-10"),
            "{e}"
        );
        let e = parse("auth:\n  operator_keys:\n    - alg: EdDSA\n      public_key: nope\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.operator_keys[0]") && e.contains("PEM"),
            "{e}"
        );
        let e = parse("auth:\n  operator_keys:\n    - alg: HS256\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.operator_keys[0].alg") && e.contains("EdDSA"),
            "{e}"
        );
    }

    #[test]
    fn guardrail_errors_name_the_key_and_line() {
        let e = parse("guardrails:\n  custom_patterns:\n    - name: t\n      regex: \"a(\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("guardrails.custom_patterns[0].regex"), "{e}");
        let e = parse("guardrails:\n  upgoing: { api_keys: shout }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("guardrails.upgoing.api_keys") && e.contains("block"),
            "{e}"
        );
    }
}

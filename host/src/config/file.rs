//! The on-disk shape of `bitrouter.yaml` and of the built-in registry files, exactly as
//! serde reads them; `config.rs` resolves these into the typed `Config` the gateway runs on.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::canonical::Protocol;
use crate::spend::cost::Pricing;
use crate::spend::ledger::{Durability, OnFull};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    #[serde(default)]
    pub models: BTreeMap<String, RouteSection>,
    #[serde(default)]
    pub routing: RoutingSection,
    /// Sections that later parts of BitRouter read; accepted so one config file serves every
    /// version, and reported as ignored by this build.
    #[serde(default)]
    pub guardrails: Option<super::guardrails::GuardrailsSection>,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub observe: ObserveSection,
    #[serde(default)]
    pub plugins: Option<super::guardrails::PluginsSection>,
    #[serde(default)]
    pub budgets: BudgetsSection,
    #[serde(default)]
    pub upstream: UpstreamSection,
    #[serde(default)]
    pub rate_limits: Option<super::rate_limits::RateLimitsSection>,
}

/// Limits on what upstreams send back, for every provider (each may override).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The largest answer (JSON body or error body) read from an upstream.
    pub max_response_size: Option<ByteSize>,
}

/// How budgets carried by tokens are enforced (the limits themselves are in the tokens).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BudgetsSection {
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub default_max_output_tokens: Option<u64>,
    /// Input tokens reserved for content a request only refers to, where the model's
    /// context window is not known.
    pub default_max_input_tokens: Option<u64>,
    /// How long a reservation in a shared (PostgreSQL) store counts if its replica dies.
    #[serde(default, with = "humantime_serde")]
    pub reservation_ttl: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ObserveSection {
    pub jsonl: Option<String>,
    pub jsonl_max_size: Option<ByteSize>,
    pub jsonl_keep: Option<u32>,
    pub queue_capacity: Option<usize>,
    pub otlp: Option<OtlpSection>,
}

/// `observe.otlp`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OtlpSection {
    pub endpoint: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub traces: Option<bool>,
    pub metrics: Option<bool>,
    pub sample_ratio: Option<f64>,
    pub capture_content: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub metrics_interval: Option<Duration>,
    pub service_name: Option<String>,
    pub compression: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: Option<String>,
    pub queue_capacity: Option<usize>,
    pub batch_size: Option<usize>,
    pub on_full: Option<OnFull>,
    pub durability: Option<Durability>,
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
    pub retention_days: Option<u32>,
    pub cache_size: Option<ByteSize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub log_level: Option<String>,
    pub max_body_size: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub body_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    pub threads: Option<u32>,
    pub runtime: Option<RuntimeKind>,
}

/// `server.runtime`: how the threads that serve requests are organised.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// One tokio multi-thread runtime: its workers share one accept loop and one upstream
    /// pool, and steal each other's tasks.
    #[default]
    MultiThread,
    /// One single-threaded runtime per thread, each with its own listener on the port
    /// (`SO_REUSEPORT`: the kernel spreads new connections) and its own upstream pool, so a
    /// request stays on the thread that accepted its connection.
    PerCore,
}

/// A size in bytes: a plain integer or a string such as `32MiB` / `512 KB`.
#[derive(Deserialize, Clone, Copy)]
#[serde(try_from = "ByteSizeRepr")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSizeRepr {
    Int(u64),
    Text(String),
}

impl TryFrom<ByteSizeRepr> for ByteSize {
    type Error = String;
    fn try_from(r: ByteSizeRepr) -> Result<Self, String> {
        match r {
            ByteSizeRepr::Int(n) => Ok(ByteSize(n)),
            ByteSizeRepr::Text(s) => s
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|_| {
                    format!("expected a size such as 32MiB or a number of bytes, found {s:?}")
                }),
        }
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub derives: Option<String>,
    pub api_protocol: Option<Protocol>,
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub env_prefix: Option<String>,
    pub api_key_required: Option<bool>,
    pub default_headers: Option<BTreeMap<String, String>>,
    pub timeouts: Option<TimeoutsSection>,
    pub models: Option<BTreeMap<String, ModelInfo>>,
    /// The provider-adapter plugin of an `api_protocol: plugin` provider.
    pub adapter: Option<super::guardrails::PluginEntry>,
    /// Overrides `upstream.max_response_size` for this provider.
    pub max_response_size: Option<ByteSize>,
}

/// What the registry knows of one model. Prices are USD per million tokens.
#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// The context window, in tokens: what bounds input a request only refers to (budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    /// The most tokens the model generates in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// What the model accepts as input (`text`, `image`, `audio`, `video`, `file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_modalities: Vec<String>,
    /// What the model costs.
    #[serde(default)]
    pub pricing: Pricing,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    #[serde(default, with = "humantime_serde")]
    pub first_byte: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub total: Option<Duration>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct CooldownSection {
    pub failures: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    pub cooldown: Option<CooldownSection>,
    pub timeouts: Option<TimeoutsSection>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// The same setting as `timeouts.idle`, under the name callers look for.
    #[serde(default, with = "humantime_serde")]
    pub stream_idle_timeout: Option<Duration>,
    pub mid_stream_failover: Option<MidStream>,
}

/// `strategy` of a route: the order its endpoints are tried in.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `priority`: in the order listed; the next only on failure.
    #[default]
    Priority,
    /// `load_balance`: weighted round robin over the endpoints (by `weight`), the rest as
    /// failover.
    LoadBalance,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    #[serde(default)]
    pub strategy: Strategy,
    pub endpoints: Vec<EndpointSection>,
    pub timeouts: Option<TimeoutsSection>,
    pub cooldown: Option<CooldownSection>,
    pub mid_stream_failover: Option<MidStream>,
}

/// `routing.mid_stream_failover` (or a route's): what a stream does when its upstream cuts,
/// stalls or errors after content reached the caller.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MidStream {
    /// The failure reaches the caller as the dialect's error event (the default).
    #[default]
    Off,
    /// The next endpoint continues the answer from what was already streamed.
    Continue,
    /// The next endpoint starts the answer over when nothing but whitespace or reasoning
    /// was streamed (or the caller asked with `x-bitrouter-mid-stream: restart`); otherwise
    /// as `continue`.
    Restart,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    pub provider: String,
    /// BitRouter 0.14 called this `service_id`.
    #[serde(alias = "service_id")]
    pub model_id: String,
    pub api_key: Option<String>,
    pub api_base: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub mode: Option<super::AuthMode>,
    pub accounts: Option<Vec<String>>,
    pub admins: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub clock_skew: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_admin_token_lifetime: Option<Duration>,
    pub max_token_size: Option<ByteSize>,
    #[serde(default)]
    pub operator_keys: Vec<OperatorKeySection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorKeySection {
    pub alg: super::OperatorAlg,
    /// PEM text (SubjectPublicKeyInfo); `${VAR}` is expanded.
    pub public_key: Option<String>,
    /// A file holding the PEM, relative to the config's folder.
    pub public_key_file: Option<String>,
    /// When set, the token's `iss` must equal it.
    pub issuer: Option<String>,
}

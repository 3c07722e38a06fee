//! The config file's sections, each resolved and checked on its own: defaults filled in,
//! `${VAR}` expanded, relative paths anchored, and any bad value reported with its key.
//! Providers and routes are in `providers.rs`; guardrails and plugins in `guardrails.rs`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::Env;
use super::file::{self, FileConfig};

/// Most `server.threads` accepted: more than any machine has cores, fewer than a typo's zeros.
const MAX_THREADS: u32 = 1024;
use super::{
    Auth, BudgetSettings, ConfigError, DEFAULT_LISTEN, DEFAULT_MAX_BODY, DEFAULT_REDB_CACHE,
    Database, Observe, OperatorKey, Server,
};

/// Reports a bad value at its key (the file and line are the caller's).
pub(super) type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;

/// `server:`.
pub(super) fn server(
    s: &file::ServerSection,
    env: &Env,
    invalid: Invalid,
) -> Result<Server, ConfigError> {
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
    let threads = match s.threads {
        None => None,
        Some(n) if (1..=MAX_THREADS).contains(&n) => NonZeroUsize::new(n as usize),
        Some(n) => {
            return Err(invalid(
                "server.threads",
                format!("expected 1 to {MAX_THREADS} threads, found {n}"),
            ));
        }
    };
    let server = Server {
        listen,
        log_level,
        max_body_size,
        header_timeout: s.header_timeout.unwrap_or(Duration::from_secs(30)),
        body_timeout: s.body_timeout.unwrap_or(Duration::from_secs(60)),
        shutdown_grace: s.shutdown_grace.unwrap_or(Duration::from_secs(30)),
        threads,
        runtime: s.runtime.unwrap_or_default(),
    };
    Ok(server)
}

/// `database:` (and `BITROUTER_DATABASE_URL`); relative paths start at `base_dir`.
pub(super) fn database(
    d: &file::DatabaseSection,
    base_dir: &Path,
    env: &Env,
    invalid: Invalid,
) -> Result<Database, ConfigError> {
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
        base_dir: base_dir.to_owned(),
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
    Ok(database)
}

/// `observe:`; a relative `jsonl` path starts at `base_dir`.
pub(super) fn observe(
    o: &file::ObserveSection,
    base_dir: &Path,
    env: &Env,
    invalid: Invalid,
) -> Result<Observe, ConfigError> {
    let observe = Observe {
        jsonl: env.expand_opt(o.jsonl.as_ref()).map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base_dir.join(p) }
        }),
        jsonl_max_bytes: o.jsonl_max_size.map(|b| b.0).unwrap_or(100 * 1024 * 1024),
        jsonl_keep: o.jsonl_keep.unwrap_or(5),
        queue_capacity: o.queue_capacity.unwrap_or(10_000),
        otlp: otlp(o.otlp.as_ref(), env, invalid)?,
    };
    if observe.queue_capacity == 0 {
        return Err(invalid(
            "observe.queue_capacity",
            "expected 1 or more".into(),
        ));
    }
    Ok(observe)
}

/// The standard `OTEL_TRACES_SAMPLER` (and `…_ARG`), for a file that sets no `sample_ratio`.
/// The gateway's sampler always follows a caller's sampled flag, so each name and its
/// `parentbased_` form mean the same here.
fn sampler_ratio(var: impl Fn(&str) -> Option<String>) -> Result<Option<f64>, String> {
    let Some(sampler) = var("OTEL_TRACES_SAMPLER").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let sampler = sampler.trim().to_ascii_lowercase();
    match sampler.strip_prefix("parentbased_").unwrap_or(&sampler) {
        "always_on" => Ok(Some(1.0)),
        "always_off" => Ok(Some(0.0)),
        "traceidratio" => match var("OTEL_TRACES_SAMPLER_ARG").filter(|v| !v.trim().is_empty()) {
            None => Ok(Some(1.0)),
            Some(arg) => arg.trim().parse().map(Some).map_err(|_| {
                format!("OTEL_TRACES_SAMPLER_ARG: expected a number from 0 to 1, found {arg:?}")
            }),
        },
        other => Err(format!(
            "OTEL_TRACES_SAMPLER={other:?}: the gateway samples by trace-id ratio (always_on, always_off, traceidratio, each also as parentbased_…)"
        )),
    }
}

/// `observe.otlp`, or — without it — the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `…_TRACES_ENDPOINT`) in the environment, which turns the exporter on with the defaults.
fn otlp(
    o: Option<&file::OtlpSection>,
    env: &Env,
    invalid: Invalid,
) -> Result<Option<super::otlp::OtlpSettings>, ConfigError> {
    let from_env = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    let default = file::OtlpSection::default();
    let o = match o {
        Some(o) => o,
        None if from_env => &default,
        None => return Ok(None),
    };
    let endpoint = env.expand_opt(o.endpoint.as_ref());
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(invalid(
            "observe.otlp.endpoint",
            format!(
                "expected an http:// or https:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318), found {e:?}"
            ),
        ));
    }
    let sample_ratio = match o.sample_ratio {
        Some(r) => r,
        None => sampler_ratio(|name| std::env::var(name).ok())
            .map_err(|m| invalid("observe.otlp.sample_ratio", m))?
            .unwrap_or(1.0),
    };
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(invalid(
            "observe.otlp.sample_ratio",
            "expected a number from 0 to 1".into(),
        ));
    }
    let metrics_interval = o.metrics_interval.unwrap_or(Duration::from_secs(10));
    if metrics_interval < Duration::from_millis(100) {
        return Err(invalid(
            "observe.otlp.metrics_interval",
            "expected 100ms or more".into(),
        ));
    }
    let mut headers = Vec::new();
    for (k, v) in &o.headers {
        let v = env.expand(v);
        if http::HeaderName::try_from(k.as_str()).is_err()
            || http::HeaderValue::try_from(v.as_str()).is_err()
        {
            return Err(invalid(
                &format!("observe.otlp.headers.{k}"),
                "not a valid HTTP header".into(),
            ));
        }
        headers.push((k.clone(), v));
    }
    let compression = match o.compression.as_deref() {
        None => None,
        Some(c) => Some(super::otlp::Compression::parse(c).ok_or_else(|| {
            invalid(
                "observe.otlp.compression",
                format!("expected gzip or none, found {c:?}"),
            )
        })?),
    };
    Ok(Some(super::otlp::OtlpSettings {
        endpoint,
        compression,
        headers,
        traces: o.traces.unwrap_or(true),
        metrics: o.metrics.unwrap_or(true),
        sample_ratio,
        metrics_interval,
        service_name: o.service_name.clone(),
        capture_content: o.capture_content.unwrap_or(false),
    }))
}

/// `budgets:`.
pub(super) fn budgets(file: &FileConfig, invalid: Invalid) -> Result<BudgetSettings, ConfigError> {
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
    Ok(budgets)
}

/// `auth:`.
pub(super) fn auth(
    a: file::AuthSection,
    base_dir: &Path,
    env: &Env,
    invalid: Invalid,
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

#[cfg(test)]
mod sampler_tests {
    use super::sampler_ratio;

    fn with(vars: &[(&str, &str)]) -> Result<Option<f64>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        sampler_ratio(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_standard_sampler_variables_give_the_ratio() {
        assert_eq!(with(&[]), Ok(None));
        assert_eq!(
            with(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            Ok(Some(0.0))
        );
        assert_eq!(
            with(&[("OTEL_TRACES_SAMPLER", "parentbased_always_on")]),
            Ok(Some(1.0))
        );
        assert_eq!(
            with(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]),
            Ok(Some(0.25))
        );
        assert_eq!(
            with(&[("OTEL_TRACES_SAMPLER", "traceidratio")]),
            Ok(Some(1.0))
        );
        let bad = with(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "half"),
        ]);
        assert!(bad.unwrap_err().contains("OTEL_TRACES_SAMPLER_ARG"));
        assert!(with(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).is_err());
    }
}

//! `rate_limits:`: the store the windows live in, what happens when it cannot be reached,
//! and the limits per account, per account on a route and per provider, each checked
//! against the routes and providers the file defines.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::env::Env;
use super::sections::Invalid;
use super::{ConfigError, Provider, Route};
use crate::ratelimit::{Rates, Settings};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSection {
    /// `memory` (default), `redis://…` / `rediss://…`, or `postgres` (the ledger's).
    pub store: Option<String>,
    pub on_store_error: Option<OnStoreError>,
    pub defaults: Option<RatesSection>,
    #[serde(default)]
    pub routes: BTreeMap<String, RatesSection>,
    #[serde(default)]
    pub providers: BTreeMap<String, RatesSection>,
}

/// `rate_limits.on_store_error`.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Limited callers get a 503 while the store is down (the default).
    #[default]
    Closed,
    /// Callers are let in unlimited while the store is down.
    Open,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RatesSection {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// Where the windows live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RateStore {
    /// This process (`memory`, the default): replicas do not share limits.
    #[default]
    Memory,
    /// A Redis server, by URL.
    Redis(String),
    /// The ledger's PostgreSQL (`database.url` must be `postgres://…`).
    Postgres,
}

/// `rate_limits:`, resolved.
#[derive(Clone, Debug, Default)]
pub struct RateLimitsConfig {
    /// `store`.
    pub store: RateStore,
    /// The limits and `on_store_error`.
    pub settings: Settings,
}

fn rates(at: &str, r: RatesSection, invalid: Invalid) -> Result<Rates, ConfigError> {
    for (name, v) in [
        ("requests_per_minute", r.requests_per_minute),
        ("tokens_per_minute", r.tokens_per_minute),
    ] {
        if v == Some(0) {
            return Err(invalid(
                &format!("{at}.{name}"),
                "expected 1 or more (leave the key out for no limit)".into(),
            ));
        }
    }
    if r.requests_per_minute.is_none() && r.tokens_per_minute.is_none() {
        return Err(invalid(
            at,
            "expected requests_per_minute and/or tokens_per_minute".into(),
        ));
    }
    Ok(Rates {
        requests: r.requests_per_minute,
        tokens: r.tokens_per_minute,
    })
}

/// `rate_limits.{section}.NAME` entries, each NAME one that the file's `{defined_in}`
/// defines.
fn named<T>(
    section: &str,
    defined_in: &str,
    entries: BTreeMap<String, RatesSection>,
    defined: &BTreeMap<String, T>,
    invalid: Invalid,
) -> Result<std::collections::HashMap<String, Rates>, ConfigError> {
    entries
        .into_iter()
        .map(|(name, r)| {
            let at = format!("rate_limits.{section}.{name}");
            if !defined.contains_key(&name) {
                let kind = section.trim_end_matches('s');
                return Err(invalid(
                    &at,
                    format!(
                        "unknown {kind} {name:?}; expected one of {defined_in} {}",
                        defined.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            Ok((name, rates(&at, r, invalid)?))
        })
        .collect()
}

/// Resolves `section` against the routes and providers of the file and its database URL.
pub(super) fn resolve(
    section: Option<RateLimitsSection>,
    routes: &BTreeMap<String, Route>,
    providers: &BTreeMap<String, Provider>,
    database_url: &str,
    env: &Env,
    invalid: Invalid,
) -> Result<RateLimitsConfig, ConfigError> {
    let Some(s) = section else {
        return Ok(RateLimitsConfig::default());
    };
    let store = match s.store.as_deref().map(|v| env.expand(v)) {
        None => RateStore::Memory,
        Some(v) if v == "memory" => RateStore::Memory,
        Some(v) if v == "postgres" => {
            if !(database_url.starts_with("postgres://")
                || database_url.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "rate_limits.store",
                    format!(
                        "postgres keeps the windows in the ledger's database, but database.url is {database_url:?}; set a postgres:// database.url or use redis://"
                    ),
                ));
            }
            RateStore::Postgres
        }
        Some(v) if v.starts_with("redis://") || v.starts_with("rediss://") => {
            if let Err(e) = redis::Client::open(v.as_str()) {
                return Err(invalid(
                    "rate_limits.store",
                    format!("not a Redis URL: {e}"),
                ));
            }
            RateStore::Redis(v)
        }
        Some(v) => {
            return Err(invalid(
                "rate_limits.store",
                format!("expected memory, postgres or a redis:// URL, found {v:?}"),
            ));
        }
    };
    let defaults = match s.defaults {
        Some(d) => rates("rate_limits.defaults", d, invalid)?,
        None => Rates::default(),
    };
    let route_rates = named("routes", "models:", s.routes, routes, invalid)?;
    let provider_rates = named("providers", "providers:", s.providers, providers, invalid)?;
    Ok(RateLimitsConfig {
        store,
        settings: Settings {
            defaults,
            routes: route_rates,
            providers: provider_rates,
            fail_open: s.on_store_error.unwrap_or_default() == OnStoreError::Open,
        },
    })
}

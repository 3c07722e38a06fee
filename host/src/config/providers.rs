//! `providers:` layered over the built-in registry (with `derives` chains and the
//! `${PREFIX}_API_KEY` / `_BASE_URL` environment), and `models:` (routes) over them.

use std::collections::BTreeMap;
use std::path::Path;

use super::env::Env;
use super::file::{self, FileConfig, ProviderSection};
use super::sections::Invalid;
use super::{
    ConfigError, Cooldown, DEFAULT_MAX_RESPONSE, Endpoint, Provider, Route, TimeoutOverrides,
    Timeouts, guardrails, registry,
};
use crate::canonical::Protocol;

/// Every provider: the built-in registry's, then the file's (which may derive from them or
/// from each other).
pub(super) fn providers(
    file: &FileConfig,
    env: &Env,
    base_dir: &Path,
    invalid: Invalid,
) -> Result<BTreeMap<String, Provider>, ConfigError> {
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
                env,
                base_dir,
                invalid,
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
                    env,
                    base_dir,
                    invalid,
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
    Ok(providers)
}

/// `routing.timeouts` over the defaults, with `routing.stream_idle_timeout` as the idle
/// timeout (the same setting under a second name: giving both is an error, not a guess).
pub(super) fn routing_timeouts(
    routing: &super::file::RoutingSection,
    invalid: Invalid,
) -> Result<Timeouts, ConfigError> {
    let mut overrides: Option<TimeoutOverrides> = routing.timeouts.map(Into::into);
    if let Some(idle) = routing.stream_idle_timeout {
        if overrides.is_some_and(|o| o.idle.is_some()) {
            return Err(invalid(
                "routing.stream_idle_timeout",
                "routing.timeouts.idle sets the same timeout; keep one of the two".into(),
            ));
        }
        overrides.get_or_insert_default().idle = Some(idle);
    }
    let t = Timeouts::default().layer(overrides);
    if t.idle.is_zero() {
        let key = match routing.stream_idle_timeout {
            Some(_) => "routing.stream_idle_timeout",
            None => "routing.timeouts.idle",
        };
        return Err(invalid(key, "expected a duration above 0".into()));
    }
    Ok(t)
}

/// `models:`: each route's endpoints checked against the providers, with the global,
/// provider and route timeouts layered.
pub(super) fn routes(
    file: &FileConfig,
    providers: &BTreeMap<String, Provider>,
    global_timeouts: Timeouts,
    env: &Env,
    invalid: Invalid,
) -> Result<BTreeMap<String, Route>, ConfigError> {
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
                mid_stream: r
                    .mid_stream_failover
                    .or(file.routing.mid_stream_failover)
                    .unwrap_or_default(),
            },
        );
    }
    Ok(routes)
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
    invalid: Invalid,
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

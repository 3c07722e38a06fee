//! Which plugins a config asks for, loaded into one [`PluginHost`]: the built-in guardrails
//! (compiled into the binary by `build.rs`), `guardrails.plugins`, `plugins.observers`, and
//! each provider's `adapter`. The guardrail engine and the observer sinks are built over the
//! result by their own modules; policy distribution (fetching and verifying what these
//! entries name) grows here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{
    AdapterPlugin, EmbeddedPlugin, GuardrailPlugin, HostConfig, ObserverPlugin, Plugin,
    PluginError, PluginHost, PluginSpec, World,
};
use crate::config::{Config, PluginRef};

include!(concat!(env!("OUT_DIR"), "/default_plugins.rs"));

/// Provider-adapter plugins by provider name (`providers.<name>.adapter`).
pub type Adapters = HashMap<String, AdapterPlugin>;

/// A plugin that could not be loaded, and the config entry that named it.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {error}")]
pub struct LoadError {
    /// The config key (`guardrails.plugins[0]`, `providers.acme.adapter`, ...).
    pub key: String,
    /// Why it could not be loaded.
    pub error: PluginError,
}

/// Every plugin one config loads.
pub struct LoadedPlugins {
    /// `None` when no plugin is loaded at all.
    pub host: Option<PluginHost>,
    /// Provider-adapter plugins by provider name.
    pub adapters: Arc<Adapters>,
    /// Built-in plugins this binary was built without (see `build.rs`).
    pub missing_builtins: Vec<&'static str>,
    /// The OCI tags the config follows (not pinned by digest), each with the digest loaded.
    pub followed: Vec<(String, String)>,
}

impl LoadedPlugins {
    /// Every loaded plugin, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Plugin> {
        self.host.iter().flat_map(|h| h.plugins())
    }

    /// The loaded guardrail plugins (built-in first, then `guardrails.plugins`).
    pub fn guardrails(&self) -> Vec<GuardrailPlugin> {
        self.host
            .iter()
            .flat_map(|h| h.guardrails())
            .cloned()
            .collect()
    }

    /// The loaded observer plugins.
    pub fn observers(&self) -> Vec<ObserverPlugin> {
        self.iter()
            .filter_map(|p| match p {
                Plugin::Observer(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The plugin host's settings from the config.
pub fn host_config(config: &Config) -> HostConfig {
    let p = &config.plugins;
    HostConfig {
        cache_dir: p.cache_dir.clone(),
        max_instances: p.max_instances,
        memory_limit: p.memory_limit,
        call_deadline: p.call_deadline,
        configure_deadline: p.configure_deadline,
        trusted_keys: p.trusted_keys.clone(),
        trust: p.trust.clone(),
        ..HostConfig::default()
    }
}

fn spec(r: &PluginRef, world: World) -> PluginSpec {
    PluginSpec {
        origin: r.oci.clone(),
        path: r.path.clone(),
        world: Some(world),
        sha256: r.sha256.clone(),
        config: r.config.clone(),
        grants: r.grants.clone(),
        memory_limit: r.memory_limit,
        call_deadline: r.call_deadline,
        embedded: None,
    }
}

/// `r` with its component at hand: an `oci:` entry is pulled into the artifact store (or
/// found there), and its spec's `origin` records the reference and digest.
fn fetched(r: &PluginRef, plugins: &crate::config::Plugins) -> Result<PluginRef, LoadError> {
    let Some(reference) = &r.oci else {
        return Ok(r.clone());
    };
    let pulled = super::oci::pull_blocking(
        reference,
        &plugins.artifact_dir,
        plugins.max_artifact_size,
        &plugins.registries,
    )
    .map_err(|e| LoadError {
        key: format!("{}.oci", r.key),
        error: PluginError::new(reference, super::PluginErrorKind::Fetch(e.to_string())),
    })?;
    Ok(PluginRef {
        path: pulled.wasm,
        oci: Some(format!("{}@{}", oci_name(reference), pulled.digest)),
        ..r.clone()
    })
}

/// `oci://registry/repository[:tag]` of a reference, without its digest.
fn oci_name(reference: &str) -> String {
    format!("oci://{}", super::oci::without_digest(reference))
}

fn builtin_spec(id: &str, embedded: EmbeddedPlugin) -> PluginSpec {
    PluginSpec {
        path: PathBuf::from(format!("builtin:{id}")),
        world: Some(World::Guardrail),
        embedded: Some(embedded),
        ..PluginSpec::default()
    }
}

/// Loads the built-in and configured plugins (guardrails, observers, and the providers'
/// adapters). Any plugin that fails to load is an error naming its config entry.
pub fn load(config: &Config) -> Result<LoadedPlugins, LoadError> {
    let g = &config.guardrails;
    let mut specs: Vec<(String, PluginSpec)> = Vec::new();
    let mut missing_builtins = Vec::new();
    if g.enabled && g.builtin {
        for (id, embedded) in DEFAULT_PLUGINS {
            match embedded {
                Some(e) => specs.push(("guardrails.builtin".to_owned(), builtin_spec(id, *e))),
                None => missing_builtins.push(*id),
            }
        }
    }
    if g.enabled {
        for r in &g.plugins {
            let r = fetched(r, &config.plugins)?;
            specs.push((r.key.clone(), spec(&r, World::Guardrail)));
        }
    }
    for r in &config.plugins.observers {
        let r = fetched(r, &config.plugins)?;
        specs.push((r.key.clone(), spec(&r, World::Observer)));
    }
    let adapter_refs: Vec<(&String, &PluginRef)> = config
        .providers
        .iter()
        .filter_map(|(name, p)| Some((name, p.adapter.as_ref()?)))
        .collect();
    if !missing_builtins.is_empty() {
        tracing::warn!(
            missing = ?missing_builtins,
            "this binary was built without the default guardrail plugins; run scripts/build-plugins.sh and rebuild"
        );
    }
    if specs.is_empty() && adapter_refs.is_empty() {
        return Ok(LoadedPlugins {
            host: None,
            adapters: Arc::default(),
            missing_builtins,
            followed: Vec::new(),
        });
    }
    let mut host = PluginHost::new(host_config(config)).map_err(|error| LoadError {
        key: "plugins".into(),
        error,
    })?;
    for (key, spec) in &specs {
        host.add(spec).map_err(|error| LoadError {
            key: key.clone(),
            error,
        })?;
    }
    // Providers that name the same component with the same settings share one plugin.
    let mut adapters = Adapters::new();
    let mut loaded: Vec<(PluginRef, AdapterPlugin)> = Vec::new();
    for (provider, r) in adapter_refs {
        let r = &fetched(r, &config.plugins)?;
        let same = |o: &PluginRef| {
            o.path == r.path
                && o.config == r.config
                && o.sha256 == r.sha256
                && o.grants == r.grants
                && o.memory_limit == r.memory_limit
                && o.call_deadline == r.call_deadline
        };
        let plugin = match loaded.iter().find(|(o, _)| same(o)) {
            Some((_, p)) => p.clone(),
            None => {
                let plugin = host
                    .add(&spec(r, World::ProviderAdapter))
                    .map_err(|error| LoadError {
                        key: r.key.clone(),
                        error,
                    })?;
                let Plugin::ProviderAdapter(a) = plugin else {
                    unreachable!("the spec asks for the provider-adapter world")
                };
                loaded.push((r.clone(), a.clone()));
                a
            }
        };
        adapters.insert(provider.clone(), plugin);
    }
    // Everything loaded and verified: these are now the tags' last good digests.
    let mut followed = Vec::new();
    let entries = config
        .guardrails
        .plugins
        .iter()
        .chain(&config.plugins.observers);
    for (reference, digest) in entries.filter_map(|r| {
        let reference = r.oci.as_ref()?;
        let origin = host.plugins().iter().find_map(|p| {
            let (name, digest) = p.info().origin.as_deref()?.split_once('@')?;
            (name == oci_name(reference)).then(|| digest.to_owned())
        })?;
        Some((reference, origin))
    }) {
        if super::oci::reference(reference).is_ok_and(|r| r.digest().is_none()) {
            followed.push((reference.clone(), digest.clone()));
        }
        if let Err(e) =
            super::oci::remember_verified(&config.plugins.artifact_dir, reference, &digest)
        {
            tracing::warn!(reference = %reference, error = %e, "cannot record the verified digest");
        }
    }
    Ok(LoadedPlugins {
        host: Some(host),
        adapters: Arc::new(adapters),
        missing_builtins,
        followed,
    })
}

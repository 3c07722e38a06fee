//! The guardrail firewall: inspects every text between agents and providers, both ways.
//!
//! Patterns come from guardrail plugins (the seven built-in ones are compiled into the
//! binary by `build.rs`; more by path from `guardrails.plugins`) and from the config's
//! `custom_patterns`. `GuardrailEngine` (`engine.rs`) holds them with their actions and finds
//! hits; `inspect.rs` walks a canonical request or response and redacts in place;
//! `stream.rs` holds back and scans streamed text; `tally.rs` keeps what was found for the
//! request event, the warning headers and the block error.

mod engine;
mod inspect;
mod stream;
mod tally;

use std::path::PathBuf;
use std::sync::Arc;

pub use engine::{ActivePattern, GuardrailEngine, Hit, action_str};
pub use stream::{Blocked, StreamGuard};
pub use tally::{HELP_LINK, Tally};

use crate::config::{Config, PluginRef};
use crate::plugins::{
    AdapterPlugin, EmbeddedPlugin, GuardrailPlugin, HostConfig, Plugin, PluginError, PluginHost,
    PluginSpec, World,
};

include!(concat!(env!("OUT_DIR"), "/default_plugins.rs"));

/// Why the firewall could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GuardrailError {
    /// A config value that only makes sense once the plugins are loaded.
    #[error("`{key}`: {message}")]
    Config { key: String, message: String },
    /// A plugin that loaded but declared something unusable.
    #[error("plugin `{plugin}`: {message}")]
    Plugin { plugin: String, message: String },
    /// A plugin that could not be loaded (`key` says which config entry named it).
    #[error("`{key}`: {error}")]
    Load { key: String, error: PluginError },
}

impl GuardrailError {
    pub fn config(key: &str, message: impl Into<String>) -> Self {
        GuardrailError::Config {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    pub fn plugin(plugin: &str, message: impl Into<String>) -> Self {
        GuardrailError::Plugin {
            plugin: plugin.to_owned(),
            message: message.into(),
        }
    }
}

/// The loaded plugins and the engine built over them.
pub struct Firewall {
    pub engine: Arc<GuardrailEngine>,
    /// Provider-adapter plugins by provider name (`providers.<name>.adapter`).
    pub adapters: Arc<crate::proxy::Adapters>,
    /// `None` when no plugin is loaded at all.
    pub host: Option<PluginHost>,
    /// Built-in plugins this binary was built without (see `build.rs`).
    pub missing_builtins: Vec<&'static str>,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall")
            .field("engine", &self.engine)
            .field("missing_builtins", &self.missing_builtins)
            .finish_non_exhaustive()
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
        ..HostConfig::default()
    }
}

fn spec(r: &PluginRef, world: World) -> PluginSpec {
    PluginSpec {
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

/// Loads the built-in and configured plugins (guardrails, observers, and the providers'
/// adapters) and builds the engine. Any plugin that fails to load is an error naming it.
pub fn load(config: &Config) -> Result<Firewall, GuardrailError> {
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
            specs.push((r.key.clone(), spec(r, World::Guardrail)));
        }
    }
    for r in &config.plugins.observers {
        specs.push((r.key.clone(), spec(r, World::Observer)));
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
        let engine = GuardrailEngine::build(g, &[])?;
        return Ok(Firewall {
            engine: Arc::new(engine),
            adapters: Arc::default(),
            host: None,
            missing_builtins,
        });
    }
    let mut host = PluginHost::new(host_config(config)).map_err(|error| GuardrailError::Load {
        key: "plugins".into(),
        error,
    })?;
    for (key, spec) in &specs {
        host.add(spec).map_err(|error| GuardrailError::Load {
            key: key.clone(),
            error,
        })?;
    }
    // Providers that name the same component with the same settings share one plugin.
    let mut adapters = crate::proxy::Adapters::new();
    let mut loaded: Vec<(&PluginRef, AdapterPlugin)> = Vec::new();
    for (provider, r) in adapter_refs {
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
                    .map_err(|error| GuardrailError::Load {
                        key: r.key.clone(),
                        error,
                    })?;
                let Plugin::ProviderAdapter(a) = plugin else {
                    unreachable!("the spec asks for the provider-adapter world")
                };
                loaded.push((r, a.clone()));
                a
            }
        };
        adapters.insert(provider.clone(), plugin);
    }
    let guardrails: Vec<GuardrailPlugin> = host.guardrails().cloned().collect();
    let engine = GuardrailEngine::build(g, &guardrails)?;
    Ok(Firewall {
        engine: Arc::new(engine),
        adapters: Arc::new(adapters),
        host: Some(host),
        missing_builtins,
    })
}

fn builtin_spec(id: &str, embedded: EmbeddedPlugin) -> PluginSpec {
    PluginSpec {
        path: PathBuf::from(format!("builtin:{id}")),
        world: Some(World::Guardrail),
        embedded: Some(embedded),
        ..PluginSpec::default()
    }
}

impl Firewall {
    /// The loaded observer plugins.
    pub fn observers(&self) -> Vec<crate::plugins::ObserverPlugin> {
        self.host
            .iter()
            .flat_map(|h| h.plugins())
            .filter_map(|p| match p {
                Plugin::Observer(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }
}

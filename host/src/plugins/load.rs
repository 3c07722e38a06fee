//! Which plugins a config asks for, loaded into one [`PluginHost`]: the built-in guardrails
//! (compiled into the binary by `build.rs`), `guardrails.plugins`, the plugins of each of
//! `guardrails.policies` (fetched, signature checked, unpacked), `plugins.observers`, and
//! each provider's `adapter`. `oci:` entries are pulled first (`oci.rs`). The guardrail
//! engine and the observer sinks are built over the result by their own modules; the
//! policies' config fragments are merged by `guardrails::merge`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::policy::{Policy, PolicyError};
use super::trust::{Trust, trust_source};
use super::{
    AdapterPlugin, EmbeddedPlugin, GuardrailPlugin, HostConfig, ObserverPlugin, Plugin,
    PluginError, PluginErrorKind, PluginHost, PluginSpec, Vouched, World,
};
use crate::config::{Config, Guardrails, PluginRef, PolicyRef};

include!(concat!(env!("OUT_DIR"), "/default_plugins.rs"));

/// Provider-adapter plugins by provider name (`providers.<name>.adapter`).
pub type Adapters = HashMap<String, AdapterPlugin>;

/// A plugin or policy that could not be loaded, and the config entry that named it.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {error}")]
pub struct LoadError {
    /// The config key (`guardrails.plugins[0]`, `providers.acme.adapter`, ...).
    pub key: String,
    /// Why it could not be loaded.
    pub error: LoadFailure,
}

/// Why an entry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// A plugin was refused.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A policy could not be read or unpacked.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A policy could not be pulled from its registry.
    #[error(transparent)]
    Fetch(#[from] super::oci::OciError),
    /// A policy's signature or trust failed.
    #[error("policy `{policy}`: {kind}")]
    PolicyRefused {
        /// The policy's id.
        policy: String,
        /// Why.
        kind: PluginErrorKind,
    },
    /// A policy's guardrails fragment is invalid.
    #[error("policy `{policy}`: `{key}`: {message}")]
    Fragment {
        /// The policy's id.
        policy: String,
        /// The fragment's key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// What the gateway knows about a loaded policy (`GET /admin/plugins`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyInfo {
    /// The config entry (`guardrails.policies[0]`).
    pub key: String,
    /// The document's id.
    pub id: String,
    /// The document's version.
    pub version: String,
    /// The document's description.
    pub description: Option<String>,
    /// The `.policy` file, or `oci://registry/repository[:tag]@<digest>`.
    pub source: String,
    /// The key (hex) whose signature verified; `None` when no trust is configured.
    pub signer: Option<String>,
    /// The trust scope that allowed the signer (`*` for `plugins.trusted_keys`).
    pub trust_scope: Option<String>,
    /// When it was loaded, ms since the Unix epoch.
    pub loaded_at_ms: i64,
    /// The config names it by digest: this exact policy is wanted, even if older than the
    /// one running.
    pub pinned: bool,
    /// The registry could not be reached; this is the artifact store's verified copy.
    pub from_store: bool,
    /// The ids of its plugins.
    pub plugins: Vec<String>,
}

/// A loaded policy: what it is, and its guardrails fragment, resolved.
#[derive(Clone, Debug)]
pub struct LoadedPolicy {
    /// What it is and where it came from.
    pub info: PolicyInfo,
    /// Its `guardrails` fragment, merged under the local settings by `guardrails::merge`.
    pub fragment: Guardrails,
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
    /// Every OCI reference loaded (plugins and policies), each with its digest.
    pub fetched: Vec<(String, String)>,
    /// The loaded policies, in config order.
    pub policies: Vec<LoadedPolicy>,
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
        reuse_instances: r.reuse_instances,
        on_failure: r.plugin_failure,
        embedded: None,
        vouched: None,
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
        error: PluginError::new(reference, PluginErrorKind::Fetch(e.to_string())).into(),
    })?;
    Ok(PluginRef {
        path: pulled.wasm(),
        oci: Some(format!("{}@{}", oci_name(reference), pulled.digest)),
        ..r.clone()
    })
}

/// `oci://registry/repository[:tag]` of a reference, without its digest.
fn oci_name(reference: &str) -> String {
    format!("oci://{}", super::oci::without_digest(reference))
}

/// Fetches the policy `r` names (unpacks a `.policy` file, or pulls an `oci:` reference,
/// into the artifact store), checks its signature against the keys allowed for its source,
/// and resolves its fragment. Returns it with the specs of its plugins.
fn load_policy(
    r: &PolicyRef,
    plugins: &crate::config::Plugins,
    trust: &Trust,
) -> Result<(LoadedPolicy, Vec<PluginSpec>, Option<String>), LoadError> {
    let fail = |error: LoadFailure| LoadError {
        key: r.key.clone(),
        error,
    };
    let (dir, origin, from_store, digest) = match &r.oci {
        Some(reference) => {
            let pulled = super::oci::pull_policy_blocking(
                reference,
                &plugins.artifact_dir,
                plugins.max_artifact_size,
                &plugins.registries,
            )
            .map_err(|e| LoadError {
                key: format!("{}.oci", r.key),
                error: e.into(),
            })?;
            let origin = format!("{}@{}", oci_name(reference), pulled.digest);
            (
                pulled.dir,
                Some(origin),
                pulled.from_store,
                Some(pulled.digest),
            )
        }
        None => {
            let dir =
                super::policy::unpack(&r.path, &plugins.artifact_dir, plugins.max_artifact_size)
                    .map_err(|e| fail(e.into()))?;
            (dir, None, false, None)
        }
    };
    let policy = Policy::read(&dir).map_err(|e| fail(e.into()))?;
    let id = policy.document.id.clone();
    let source = trust_source(origin.as_deref(), &r.path);
    let signer = trust
        .check(&source, |keys| policy.verify(keys))
        .map_err(|kind| {
            fail(LoadFailure::PolicyRefused {
                policy: id.clone(),
                kind,
            })
        })?;
    let fragment = crate::config::resolve_policy_fragment(
        policy
            .document
            .guardrails
            .as_ref()
            .unwrap_or(&serde_json::json!({})),
        "guardrails",
    )
    .map_err(|(key, message)| {
        fail(LoadFailure::Fragment {
            policy: id.clone(),
            key,
            message,
        })
    })?;
    let specs = policy
        .document
        .plugins
        .iter()
        .map(|p| PluginSpec {
            path: super::policy::component_path(&dir, &p.sha256),
            world: Some(World::Guardrail),
            sha256: Some(p.sha256.clone()),
            config: p.config.clone(),
            grants: r.grants.clone(),
            origin: origin.clone(),
            vouched: Some(Vouched {
                policy: id.clone(),
                signer: signer.clone(),
                manifest: p.manifest.clone(),
            }),
            ..PluginSpec::default()
        })
        .collect();
    let pinned = r
        .oci
        .as_deref()
        .is_some_and(|o| super::oci::reference(o).is_ok_and(|r| r.digest().is_some()));
    let info = PolicyInfo {
        key: r.key.clone(),
        id,
        version: policy.document.version.clone(),
        description: policy.document.description.clone(),
        source: origin.unwrap_or(source),
        trust_scope: signer.as_ref().map(|s| s.scope.clone()),
        signer: signer.map(|s| s.key),
        loaded_at_ms: crate::spend::query_now_ms(),
        pinned,
        from_store,
        plugins: policy.plugin_ids(),
    };
    Ok((LoadedPolicy { info, fragment }, specs, digest))
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
    let mut policies = Vec::new();
    // Tags followed through policies, with the digest loaded.
    let mut policy_digests: Vec<(String, String)> = Vec::new();
    if g.enabled {
        for r in &g.plugins {
            let r = fetched(r, &config.plugins)?;
            specs.push((r.key.clone(), spec(&r, World::Guardrail)));
        }
        let trust =
            Trust::new(&config.plugins.trusted_keys, &config.plugins.trust).map_err(|m| {
                LoadError {
                    key: "plugins.trust".into(),
                    error: PluginError::new("(host)", PluginErrorKind::Engine(m)).into(),
                }
            })?;
        for r in &g.policies {
            let (policy, policy_specs, digest) = load_policy(r, &config.plugins, &trust)?;
            if let Some(other) = policies
                .iter()
                .find(|p: &&LoadedPolicy| p.info.id == policy.info.id)
            {
                return Err(LoadError {
                    key: r.key.clone(),
                    error: LoadFailure::Fragment {
                        policy: policy.info.id.clone(),
                        key: "id".into(),
                        message: format!("{} loads a policy with the same id", other.info.key),
                    },
                });
            }
            specs.extend(policy_specs.into_iter().map(|s| (r.key.clone(), s)));
            if let (Some(reference), Some(digest)) = (&r.oci, digest) {
                policy_digests.push((reference.clone(), digest));
            }
            policies.push(policy);
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
            followed: tags(&policy_digests),
            fetched: policy_digests,
            policies,
        });
    }
    let mut host = PluginHost::new(host_config(config)).map_err(|error| LoadError {
        key: "plugins".into(),
        error: error.into(),
    })?;
    for (key, spec) in &specs {
        host.add(spec).map_err(|error| LoadError {
            key: key.clone(),
            error: error.into(),
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
                        error: error.into(),
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
    let mut loaded_digests = policy_digests;
    let entries = config
        .guardrails
        .plugins
        .iter()
        .chain(&config.plugins.observers);
    for (reference, digest) in entries.filter_map(|r| {
        let reference = r.oci.as_ref()?;
        let origin = host.plugins().iter().find_map(|p| {
            let (name, digest) = p.info().origin.as_deref()?.split_once('@')?;
            (p.info().policy.is_none() && name == oci_name(reference)).then(|| digest.to_owned())
        })?;
        Some((reference, origin))
    }) {
        loaded_digests.push((reference.clone(), digest));
    }
    Ok(LoadedPlugins {
        host: Some(host),
        adapters: Arc::new(adapters),
        missing_builtins,
        followed: tags(&loaded_digests),
        fetched: loaded_digests,
        policies,
    })
}

/// The tags among loaded references (what the update poller follows).
fn tags(loaded: &[(String, String)]) -> Vec<(String, String)> {
    loaded
        .iter()
        .filter(|(reference, _)| {
            super::oci::reference(reference).is_ok_and(|r| r.digest().is_none())
        })
        .cloned()
        .collect()
}

impl LoadedPlugins {
    /// Records each loaded OCI reference's digest as its last verified one in the artifact
    /// store: what a start with the registry unreachable falls back to. Called once the
    /// whole set is accepted (loaded, verified, and not a rollback), never for a mere pull.
    pub fn remember_verified(&self, store: &std::path::Path) {
        for (reference, digest) in &self.fetched {
            if let Err(e) = super::oci::remember_verified(store, reference, digest) {
                tracing::warn!(reference = %reference, error = %e, "cannot record the verified digest");
            }
        }
    }
}

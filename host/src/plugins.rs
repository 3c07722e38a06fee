//! WASM plugins: sandboxed WebAssembly components implementing one of the worlds of the WIT
//! package `bitrouter:plugin@0.1.0` (`wit/`): `guardrail`, `provider-adapter`, `observer`.
//!
//! Loading a plugin ([`PluginHost::load`]) goes, for each [`PluginSpec`]:
//!
//! 1. read the `.wasm` and its manifest (`manifest.rs`), hash the component, compare the
//!    hash with the manifest's and with the config's pin, verify the signature when
//!    `trusted_keys` are set, check each capability the manifest asks for is granted;
//! 2. compile, or load the compiled artifact from the disk cache (`cache.rs`);
//! 3. check the component exports the manifest's world and imports only what the host
//!    provides, and pre-link it into an `InstancePre` (`engine.rs`);
//! 4. instantiate once to run `configure` (1 s deadline) and, for guardrails, `describe`.
//!
//! Any failure is a [`PluginError`] naming the plugin and the reason.
//!
//! Calls ([`GuardrailPlugin::check`], [`GuardrailPlugin::scan`], [`ObserverPlugin::observe`],
//! [`AdapterPlugin::encode_request`], ...) wait for a slot (a semaphore sized like the
//! instance pool), then run in a fresh instance from the pooling allocator with a memory cap
//! and an epoch deadline (`sandbox.rs`). A trap, a deadline, a memory blow-up or an invalid
//! result fails that call only, with a [`CallError`]; it is counted ([`PluginStats`]) and
//! logged with the plugin id.

mod adapter;
mod cache;
mod engine;
mod error;
mod guardrail;
mod load;
mod manifest;
mod observer;
pub mod oci;
pub mod policy;
mod sandbox;
mod trust;
pub mod versions;
mod wit;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use adapter::{AdapterPlugin, HttpRequest, StreamState, UpstreamError};
pub use cache::{CacheStats, CompileSource, default_cache_dir, show_compile_progress};
pub use engine::EPOCH_TICK;
pub use error::{CallError, CallErrorKind, PluginError, PluginErrorKind, World};
pub use guardrail::{
    Action, Direction, Finding, GuardrailPlugin, MAX_FINDINGS, MAX_PATTERNS, MAX_REPLACEMENT,
    Pattern,
};
pub use load::{
    Adapters, DEFAULT_PLUGINS, LoadError, LoadFailure, LoadedPlugins, LoadedPolicy, PolicyInfo,
    host_config, load,
};
pub use manifest::{
    Capability, Manifest, parse_trusted_keys, public_key_hex, sha256_hex, sign, signed_message,
};
pub use observer::{EventUsage, GuardrailCount, ObserverPlugin, RequestEvent};
pub use sandbox::{LogSink, MAX_LOG_LINE, MAX_LOG_LINES_PER_CALL, PluginLog, PluginStats};

use engine::PluginEngine;
pub use policy::{Policy, PolicyDocument, PolicyError, PolicyPlugin};
use sandbox::{Counters, Sandbox};
pub use trust::{Signed, TrustRule};
use trust::{Trust, trust_source};

/// Settings of the plugin host, shared by every plugin.
#[derive(Clone)]
pub struct HostConfig {
    /// Where compiled components are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (fast instantiation). Off only to measure the difference.
    pub pooling: bool,
    /// Instances that may exist at once: the pool's size and the semaphore in front of it.
    pub max_instances: u32,
    /// Memory cap per instance, in bytes (default 64 MiB); also the pool's slot size.
    pub memory_limit: u64,
    /// Bytes at the start of each pool slot's memory kept resident between uses: dirty pages
    /// there are reset in place (found with PAGEMAP_SCAN on Linux 6.7+) instead of being
    /// unmapped and faulted in again by the next instance (default 1 MiB: all of a Rust
    /// guest's initial memory as `scripts/build-plugins.sh` links it). Ignored without
    /// PAGEMAP_SCAN.
    pub keep_resident: usize,
    /// Deadline of one call (default 10 ms): a plugin burning CPU is stopped after
    /// 1.25–1.5× this; one merely waiting for a core after at most 10× (see `sandbox.rs`).
    pub call_deadline: Duration,
    /// Deadline of `configure` (and `describe`) at load (default 1 s).
    pub configure_deadline: Duration,
    /// Fuel per call, for deterministic tests; `None` (the default) disables fuel metering.
    pub fuel: Option<u64>,
    /// ed25519 public keys (hex) that may sign any plugin. When any key is set here or in
    /// `trust`, every plugin file must be signed by a key allowed for it.
    pub trusted_keys: Vec<String>,
    /// Keys that may sign only the plugins whose source matches a scope.
    pub trust: Vec<TrustRule>,
    /// Where plugin log lines go (default: `tracing`, tagged with the plugin id).
    pub log_sink: Option<LogSink>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: default_cache_dir(),
            pooling: true,
            max_instances: 64,
            memory_limit: 64 << 20,
            keep_resident: 1 << 20,
            call_deadline: Duration::from_millis(10),
            configure_deadline: Duration::from_secs(1),
            fuel: None,
            trusted_keys: Vec::new(),
            trust: Vec::new(),
            log_sink: None,
        }
    }
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("cache_dir", &self.cache_dir)
            .field("pooling", &self.pooling)
            .field("max_instances", &self.max_instances)
            .field("memory_limit", &self.memory_limit)
            .field("call_deadline", &self.call_deadline)
            .field("configure_deadline", &self.configure_deadline)
            .field("fuel", &self.fuel)
            .field("trusted_keys", &self.trusted_keys)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

pub use crate::config::OnFailure;

/// A component compiled into the binary (the default guardrails), with its manifest.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedPlugin {
    /// The component's bytes.
    pub wasm: &'static [u8],
    /// The text of its `plugin.toml`.
    pub manifest: &'static str,
}

/// One plugin to load, as the config describes it.
#[derive(Clone, Debug, Default)]
pub struct PluginSpec {
    /// The component (`.wasm`); its manifest is `<stem>.plugin.toml` or `plugin.toml` beside it.
    /// For an embedded plugin, only a label (`builtin:<id>`).
    pub path: PathBuf,
    /// Bytes and manifest compiled into the binary; `path` is not read when set.
    pub embedded: Option<EmbeddedPlugin>,
    /// The world the config uses it as; a manifest saying otherwise is refused.
    pub world: Option<World>,
    /// Pin: the component's sha256 (hex, optionally prefixed `sha256:`).
    pub sha256: Option<String>,
    /// The plugin's own settings, handed to `configure` as JSON.
    pub config: Option<serde_json::Value>,
    /// Capabilities granted to this plugin (`wall-clock`, `env:NAME`).
    pub grants: Vec<String>,
    /// Overrides of the host's memory cap (at most the host's) and call deadline.
    pub memory_limit: Option<u64>,
    /// This plugin's per-call deadline, over [`HostConfig::call_deadline`].
    pub call_deadline: Option<Duration>,
    /// `Some(false)`: a fresh instance per call even when the manifest says `stateless`
    /// (default: reuse warm instances of a stateless guardrail).
    pub reuse_instances: Option<bool>,
    /// What a failed call of this guardrail does to the request (the guardrail engine's
    /// default when `None`).
    pub on_failure: Option<OnFailure>,
    /// Where the component came from when not from `path` itself: `oci://<ref>@<digest>`.
    pub origin: Option<String>,
    /// Part of a policy whose signature was checked already: the manifest is the policy's
    /// signed copy (not a file beside the component) and `sha256` must be set (the policy's
    /// signed hash), so the component is bound to what was signed.
    pub vouched: Option<Vouched>,
}

/// A plugin that a policy's verified signature covers (see [`PluginSpec::vouched`]).
#[derive(Clone, Debug)]
pub struct Vouched {
    /// The policy's id.
    pub policy: String,
    /// The key that signed the policy and its scope (`None` when no trust is configured).
    pub signer: Option<Signed>,
    /// The plugin's `plugin.toml`, as the policy's signed document holds it.
    pub manifest: String,
}

impl PluginSpec {
    /// A spec for the component at `path`, with nothing pinned, configured or granted.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PluginSpec {
            path: path.into(),
            ..PluginSpec::default()
        }
    }
}

/// What the host knows about a loaded plugin.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    /// The manifest's `id`, unique among the loaded plugins.
    pub id: Arc<str>,
    /// The manifest's `version`.
    pub version: String,
    /// The world it implements.
    pub world: World,
    /// Where it was loaded from (`builtin:<id>` for an embedded plugin).
    pub path: PathBuf,
    /// The component's sha256, lowercase hex.
    pub sha256: String,
    /// Capabilities it has: those both granted and asked for in the manifest.
    pub capabilities: Vec<Capability>,
    /// The component imports WASI p2 (and gets a deny-all WASI context).
    pub uses_wasi: bool,
    /// What a failed call of this guardrail does (`None`: the engine's default).
    pub on_failure: Option<OnFailure>,
    /// Calls run in warm instances kept between calls (a guardrail whose manifest says
    /// `stateless`, unless its config entry says `reuse_instances: false`); else each call
    /// gets a fresh instance.
    pub reuses_instances: bool,
    /// Whether the compiled code came from the disk cache.
    pub compiled: CompileSource,
    /// The trusted key (hex) whose signature verified, when `trusted_keys` are set (`None`
    /// for a built-in plugin, trusted as part of the binary).
    pub signer: Option<String>,
    /// The trust scope that allowed the signer (`*` for `plugins.trusted_keys`).
    pub trust_scope: Option<String>,
    /// When it was loaded, ms since the Unix epoch.
    pub loaded_at_ms: i64,
    /// The config pins the component by its sha256: this exact build is wanted, even if an
    /// older version than the one running (rollback protection lets it through).
    pub pinned: bool,
    /// `oci://<reference>@<digest>` for a plugin pulled from a registry (`path` is then its
    /// copy in the artifact store).
    pub origin: Option<String>,
    /// The id of the policy that brought it (`guardrails.policies`).
    pub policy: Option<String>,
}

/// A loaded plugin of any world.
#[derive(Clone, Debug)]
pub enum Plugin {
    /// A `guardrail` plugin.
    Guardrail(GuardrailPlugin),
    /// A `provider-adapter` plugin.
    ProviderAdapter(AdapterPlugin),
    /// An `observer` plugin.
    Observer(ObserverPlugin),
}

impl Plugin {
    /// What the host knows about the plugin.
    pub fn info(&self) -> &PluginInfo {
        match self {
            Plugin::Guardrail(p) => p.info(),
            Plugin::ProviderAdapter(p) => p.info(),
            Plugin::Observer(p) => p.info(),
        }
    }

    /// A snapshot of the plugin's call counters.
    pub fn stats(&self) -> PluginStats {
        match self {
            Plugin::Guardrail(p) => p.stats(),
            Plugin::ProviderAdapter(p) => p.stats(),
            Plugin::Observer(p) => p.stats(),
        }
    }
}

/// The loaded plugins and the engine they run on.
pub struct PluginHost {
    engine: Arc<PluginEngine>,
    config: HostConfig,
    trust: Trust,
    plugins: Vec<Plugin>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.config)
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with no plugins yet.
    pub fn new(config: HostConfig) -> Result<PluginHost, PluginError> {
        let host_err = |kind| PluginError::new("(host)", kind);
        let trust = Trust::new(&config.trusted_keys, &config.trust)
            .map_err(|m| host_err(PluginErrorKind::Engine(m)))?;
        let engine = Arc::new(PluginEngine::new(&config).map_err(host_err)?);
        Ok(PluginHost {
            engine,
            config,
            trust,
            plugins: Vec::new(),
        })
    }

    /// A host with every plugin of `specs` loaded, or the first error.
    pub fn load(config: HostConfig, specs: &[PluginSpec]) -> Result<PluginHost, PluginError> {
        let mut host = PluginHost::new(config)?;
        for spec in specs {
            host.add(spec)?;
        }
        Ok(host)
    }

    /// Loads one more plugin.
    pub fn add(&mut self, spec: &PluginSpec) -> Result<Plugin, PluginError> {
        let plugin = self.load_one(spec)?;
        let id = &plugin.info().id;
        if self.plugins.iter().any(|p| p.info().id == *id) {
            return Err(PluginError::new(
                &**id,
                PluginErrorKind::Manifest {
                    path: spec.path.clone(),
                    message: "another loaded plugin has the same id".into(),
                },
            ));
        }
        self.plugins.push(plugin.clone());
        Ok(plugin)
    }

    /// Every loaded plugin, in load order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The loaded plugin with manifest id `id`.
    pub fn get(&self, id: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| &*p.info().id == id)
    }

    /// The loaded guardrail plugins.
    pub fn guardrails(&self) -> impl Iterator<Item = &GuardrailPlugin> {
        self.plugins.iter().filter_map(|p| match p {
            Plugin::Guardrail(g) => Some(g),
            _ => None,
        })
    }

    /// The loaded observer plugins.
    pub fn observers(&self) -> impl Iterator<Item = &ObserverPlugin> {
        self.plugins.iter().filter_map(|p| match p {
            Plugin::Observer(o) => Some(o),
            _ => None,
        })
    }

    /// The loaded provider-adapter plugins.
    pub fn adapters(&self) -> impl Iterator<Item = &AdapterPlugin> {
        self.plugins.iter().filter_map(|p| match p {
            Plugin::ProviderAdapter(a) => Some(a),
            _ => None,
        })
    }

    /// The imports and exports of a component (compiled on this host's engine, through its
    /// cache), for `bitrouter plugin inspect`.
    pub fn component_interface(
        &self,
        bytes: &[u8],
    ) -> Result<(Vec<String>, Vec<String>), PluginError> {
        let sha = sha256_hex(bytes);
        let (component, _) = self
            .engine
            .compile("(inspect)", bytes, &sha)
            .map_err(|k| PluginError::new("(inspect)", k))?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports = ty
            .exports(&self.engine.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        Ok((imports, exports))
    }

    /// Compile-cache use since the host started.
    pub fn cache_stats(&self) -> CacheStats {
        self.engine.cache.stats()
    }

    /// The compile cache's folder, if the cache is on.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.engine.cache.dir()
    }

    /// The signer of a plugin file among the keys allowed for its source (see [`Trust`]).
    fn check_signature(
        &self,
        manifest: &Manifest,
        spec: &PluginSpec,
    ) -> Result<Option<Signed>, PluginErrorKind> {
        let source = trust_source(spec.origin.as_deref(), &spec.path);
        self.trust
            .check(&source, |keys| manifest::verify(manifest, keys))
    }

    fn load_one(&self, spec: &PluginSpec) -> Result<Plugin, PluginError> {
        let mut name = spec.path.display().to_string();
        let err = |name: &str, kind| PluginError::new(name, kind);

        let manifest_error = |message| PluginErrorKind::Manifest {
            path: spec.path.clone(),
            message,
        };
        let (bytes, manifest) = match (spec.embedded, &spec.vouched) {
            (Some(e), _) => {
                let manifest =
                    Manifest::parse(e.manifest).map_err(|m| err(&name, manifest_error(m)))?;
                (std::borrow::Cow::Borrowed(e.wasm), manifest)
            }
            (None, vouched) => {
                let bytes = std::fs::read(&spec.path).map_err(|source| {
                    err(
                        &name,
                        PluginErrorKind::Read {
                            path: spec.path.clone(),
                            source,
                        },
                    )
                })?;
                let manifest = match vouched {
                    Some(v) if spec.sha256.is_some() => {
                        Manifest::parse(&v.manifest).map_err(|m| err(&name, manifest_error(m)))?
                    }
                    Some(_) => {
                        return Err(err(
                            &name,
                            manifest_error("a policy's plugin needs its signed sha256".into()),
                        ));
                    }
                    None => {
                        let manifest_path =
                            Manifest::locate(&spec.path).map_err(|k| err(&name, k))?;
                        Manifest::read(&manifest_path).map_err(|k| err(&name, k))?
                    }
                };
                (std::borrow::Cow::Owned(bytes), manifest)
            }
        };
        name = manifest.id.clone();

        let actual = sha256_hex(&bytes);
        if !manifest.sha256.eq_ignore_ascii_case(&actual) {
            return Err(err(
                &name,
                PluginErrorKind::HashMismatch {
                    source_of_expected: "the manifest",
                    expected: manifest.sha256.to_ascii_lowercase(),
                    actual,
                },
            ));
        }
        if let Some(pin) = &spec.sha256 {
            let pin = pin.trim();
            let pin = pin.strip_prefix("sha256:").unwrap_or(pin);
            if !pin.eq_ignore_ascii_case(&actual) {
                return Err(err(
                    &name,
                    PluginErrorKind::HashMismatch {
                        source_of_expected: "the config",
                        expected: pin.to_ascii_lowercase(),
                        actual,
                    },
                ));
            }
        }
        // The built-in plugins are part of the binary (component and manifest compiled in,
        // the hash checked above), trusted as the binary is: turning trust on must not
        // refuse them.
        // A policy's plugin is covered by the policy's signature, checked when the policy
        // was read (its manifest text and the hash pinned above are the signed ones).
        let signer = match (&spec.embedded, &spec.vouched) {
            (Some(_), _) => None,
            (None, Some(v)) => v.signer.clone(),
            (None, None) => self
                .check_signature(&manifest, spec)
                .map_err(|k| err(&name, k))?,
        };

        let capabilities = manifest.capabilities().map_err(|k| err(&name, k))?;
        let grants = spec
            .grants
            .iter()
            .map(|g| Capability::parse(g))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|k| err(&name, k))?;
        if let Some(missing) = capabilities.iter().find(|c| !grants.contains(c)) {
            let label = match missing {
                Capability::WallClock => "wall-clock".to_owned(),
                Capability::Env(n) => format!("env:{n}"),
            };
            return Err(err(&name, PluginErrorKind::NotGranted(label)));
        }
        if let Some(expected) = spec.world
            && expected != manifest.world
        {
            return Err(err(
                &name,
                PluginErrorKind::WorldMismatch(format!(
                    "the config uses it as a {expected} plugin, the manifest says {}",
                    manifest.world
                )),
            ));
        }

        let (component, compiled) = self
            .engine
            .compile(&name, &bytes, &actual)
            .map_err(|k| err(&name, k))?;
        let exported = self.engine.exported_worlds(&component);
        if !exported.contains(&manifest.world) {
            let found = if exported.is_empty() {
                "no bitrouter:plugin interface".to_owned()
            } else {
                exported
                    .iter()
                    .map(|w| format!("the {w} world"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(err(
                &name,
                PluginErrorKind::WorldMismatch(format!(
                    "the manifest says {}, the component implements {found}",
                    manifest.world
                )),
            ));
        }
        let prepared = self.engine.prepare(&component).map_err(|k| err(&name, k))?;

        let memory_limit = spec
            .memory_limit
            .unwrap_or(self.config.memory_limit)
            .min(self.config.memory_limit);
        let info = PluginInfo {
            id: Arc::from(manifest.id.as_str()),
            version: manifest.version.clone(),
            world: manifest.world,
            path: spec.path.clone(),
            sha256: actual,
            capabilities: grants
                .into_iter()
                .filter(|g| capabilities.contains(g))
                .collect(),
            uses_wasi: prepared.uses_wasi,
            on_failure: spec.on_failure,
            reuses_instances: manifest.stateless
                && manifest.world == World::Guardrail
                && spec.reuse_instances != Some(false),
            compiled,
            trust_scope: signer.as_ref().map(|s| s.scope.clone()),
            signer: signer.map(|s| s.key),
            loaded_at_ms: crate::spend::query_now_ms(),
            pinned: spec.sha256.is_some() && spec.vouched.is_none(),
            origin: spec.origin.clone(),
            policy: spec.vouched.as_ref().map(|v| v.policy.clone()),
        };
        let sandbox = Arc::new(Sandbox {
            id: info.id.clone(),
            engine: self.engine.clone(),
            memory_limit,
            call_deadline: spec.call_deadline.unwrap_or(self.config.call_deadline),
            configure_deadline: self.config.configure_deadline,
            fuel: self.config.fuel,
            grants: info.capabilities.clone(),
            log_sink: self
                .config
                .log_sink
                .clone()
                .unwrap_or_else(sandbox::tracing_sink),
            counters: Counters::default(),
        });
        let config_json = spec
            .config
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "null".to_owned());
        let plugin = match manifest.world {
            World::Guardrail => {
                GuardrailPlugin::load(info, sandbox, prepared, config_json).map(Plugin::Guardrail)
            }
            World::Observer => {
                ObserverPlugin::load(info, sandbox, prepared, config_json).map(Plugin::Observer)
            }
            World::ProviderAdapter => AdapterPlugin::load(info, sandbox, prepared, config_json)
                .map(Plugin::ProviderAdapter),
        };
        let plugin = plugin.map_err(|k| err(&name, k))?;
        let info = plugin.info();
        tracing::info!(
            plugin = &*info.id,
            version = %info.version,
            world = %info.world,
            sha256 = %info.sha256,
            compiled = ?info.compiled,
            wasi = info.uses_wasi,
            "plugin loaded"
        );
        Ok(plugin)
    }
}

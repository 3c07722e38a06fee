//! Errors of the plugin host: [`PluginError`] refuses to load a plugin, [`CallError`] fails
//! one call. Both name the plugin; neither message is API (match on the kind).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A plugin could not be loaded. Startup (or a reload) stops with this error.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`: {kind}")]
pub struct PluginError {
    /// The plugin's id from its manifest, or its path when the manifest was not read yet.
    pub plugin: String,
    pub kind: PluginErrorKind,
}

impl PluginError {
    pub(crate) fn new(plugin: impl Into<String>, kind: PluginErrorKind) -> Self {
        PluginError {
            plugin: plugin.into(),
            kind,
        }
    }
}

/// Why a plugin was refused.
#[derive(Debug, thiserror::Error)]
pub enum PluginErrorKind {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no manifest: expected {0} beside the component")]
    MissingManifest(PathBuf),
    #[error("invalid manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("sha256 mismatch: {source_of_expected} says {expected}, the component is {actual}")]
    HashMismatch {
        /// `the manifest` or `the config`.
        source_of_expected: &'static str,
        expected: String,
        actual: String,
    },
    #[error("not signed, and plugins.trusted_keys makes signatures mandatory")]
    Unsigned,
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("world mismatch: {0}")]
    WorldMismatch(String),
    #[error("the manifest asks for capability `{0}`, which the config does not grant")]
    NotGranted(String),
    #[error("unknown capability `{0}` (known: wall-clock, env:NAME)")]
    UnknownCapability(String),
    #[error("imports `{0}`, which the host does not provide")]
    UnsupportedImport(String),
    #[error("not a valid component for this host: {0}")]
    Compile(String),
    #[error("configure failed: {0}")]
    Configure(String),
    #[error("describe failed: {0}")]
    Describe(String),
    #[error("cannot set up the plugin engine: {0}")]
    Engine(String),
}

/// One call into a plugin failed. The plugin stays loaded; the caller's policy (fail closed
/// or fail open) decides what the request sees.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`: {func}: {kind}")]
pub struct CallError {
    pub plugin: Arc<str>,
    /// The export that was called (`check`, `scan`, `observe`, ...).
    pub func: &'static str,
    pub kind: CallErrorKind,
}

impl CallError {
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            CallErrorKind::Deadline | CallErrorKind::OutOfFuel
        )
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallErrorKind {
    /// The plugin trapped (panic, `unreachable`, out-of-bounds access, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The epoch deadline passed.
    #[error("deadline exceeded")]
    Deadline,
    /// The fuel budget (tests) ran out.
    #[error("out of fuel")]
    OutOfFuel,
    /// The plugin tried to grow its memory past its cap.
    #[error("memory limit of {0} bytes reached")]
    MemoryLimit(u64),
    /// The plugin answered, but the answer breaks the contract.
    #[error("invalid result: {0}")]
    InvalidResult(String),
    /// The host could not create an instance (pool exhausted, resource limits).
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// The plugin reported an error of its own (e.g. `configure` returned `err`).
    #[error("{0}")]
    Failed(String),
}

impl CallErrorKind {
    /// The counter this failure is recorded under.
    pub fn label(&self) -> &'static str {
        match self {
            CallErrorKind::Trap(_) => "trap",
            CallErrorKind::Deadline | CallErrorKind::OutOfFuel => "deadline",
            CallErrorKind::MemoryLimit(_) => "memory",
            CallErrorKind::InvalidResult(_) => "invalid_result",
            CallErrorKind::Instantiate(_) => "instantiate",
            CallErrorKind::Failed(_) => "failed",
        }
    }
}

/// The three plugin worlds of `bitrouter:plugin@0.1.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Guardrail,
    ProviderAdapter,
    Observer,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Guardrail => "guardrail",
            World::ProviderAdapter => "provider-adapter",
            World::Observer => "observer",
        }
    }

    /// The interface a component of this world exports.
    pub(crate) fn export_name(self) -> &'static str {
        match self {
            World::Guardrail => "bitrouter:plugin/guard@0.1.0",
            World::ProviderAdapter => "bitrouter:plugin/adapter@0.1.0",
            World::Observer => "bitrouter:plugin/observe@0.1.0",
        }
    }

    pub(crate) fn from_export(name: &str) -> Option<World> {
        [World::Guardrail, World::ProviderAdapter, World::Observer]
            .into_iter()
            .find(|w| w.export_name() == name)
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

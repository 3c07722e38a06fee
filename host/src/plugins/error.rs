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
    /// Why it was refused.
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
    /// An `oci:` reference could not be pulled (registry error, layout, size, offline).
    #[error("{0}")]
    Fetch(String),
    /// The component or its manifest could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither `<name>.plugin.toml` nor `plugin.toml` beside the component; the path looked for.
    #[error("no manifest: expected {0} beside the component")]
    MissingManifest(PathBuf),
    /// The manifest does not parse or fails validation.
    #[error("invalid manifest {path}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The component's sha256 is not the one the manifest or the config pins.
    #[error("sha256 mismatch: {source_of_expected} says {expected}, the component is {actual}")]
    HashMismatch {
        /// `the manifest` or `the config`.
        source_of_expected: &'static str,
        /// The pinned hash, lowercase hex.
        expected: String,
        /// The component's hash, lowercase hex.
        actual: String,
    },
    /// `plugins.trusted_keys` is set and the manifest has no signature.
    #[error("not signed, and plugins.trusted_keys makes signatures mandatory")]
    Unsigned,
    /// The signature is malformed or no trusted key verifies it.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The component's world is not the one the manifest or the config expects.
    #[error("world mismatch: {0}")]
    WorldMismatch(String),
    /// The manifest asks for a capability its config entry's `grants` lacks.
    #[error("the manifest asks for capability `{0}`, which the config does not grant")]
    NotGranted(String),
    /// A capability name the host does not know.
    #[error("unknown capability `{0}` (known: wall-clock, env:NAME)")]
    UnknownCapability(String),
    /// The component imports an interface the host does not provide.
    #[error("imports `{0}`, which the host does not provide")]
    UnsupportedImport(String),
    /// Wasmtime cannot compile the component.
    #[error("not a valid component for this host: {0}")]
    Compile(String),
    /// The plugin's `configure` export failed or refused its config.
    #[error("configure failed: {0}")]
    Configure(String),
    /// The plugin's `describe` export failed or returned an invalid description.
    #[error("describe failed: {0}")]
    Describe(String),
    /// The Wasmtime engine itself could not be set up.
    #[error("cannot set up the plugin engine: {0}")]
    Engine(String),
}

/// One call into a plugin failed. The plugin stays loaded; the caller's policy (fail closed
/// or fail open) decides what the request sees.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`: {func}: {kind}")]
pub struct CallError {
    /// The plugin's id.
    pub plugin: Arc<str>,
    /// The export that was called (`check`, `scan`, `observe`, ...).
    pub func: &'static str,
    /// Why the call failed.
    pub kind: CallErrorKind,
}

impl CallError {
    /// Whether the call ran out of time (deadline or fuel).
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
    /// `guardrail`: scans requests and answers for patterns.
    Guardrail,
    /// `provider-adapter`: translates canonical requests for a provider's own API.
    ProviderAdapter,
    /// `observer`: receives request events in batches.
    Observer,
}

impl World {
    /// The world's name, as the manifest spells it (`guardrail`, `provider-adapter`, `observer`).
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

//! The guardrail firewall: inspects every text between agents and providers, both ways.
//!
//! Patterns come from guardrail plugins (the seven built-in ones are compiled into the
//! binary by `build.rs`; more by path from `guardrails.plugins`) and from the config's
//! `custom_patterns`. `GuardrailEngine` (`engine.rs`) holds them with their actions and finds
//! hits; `inspect.rs` walks a canonical request or response and redacts in place;
//! `stream.rs` holds back and scans streamed text; `tally.rs` keeps what was found for the
//! request event, the warning headers and the block error.

mod candidates;
mod engine;
mod inspect;
mod merge;
mod stream;
mod tally;

use std::sync::Arc;

pub use engine::{ActivePattern, CHECK_CONTEXT, GuardrailEngine, Hit, action_str};
pub use merge::merge;
pub use stream::{Blocked, StreamGuard};
pub use tally::{FAILED_OPEN, HELP_LINK, Tally};

use crate::config::Config;
use crate::plugins::LoadedPlugins;

/// Why the firewall could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GuardrailError {
    /// A config value that only makes sense once the plugins are loaded.
    #[error("`{key}`: {message}")]
    Config {
        /// The config key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A plugin that loaded but declared something unusable.
    #[error("plugin `{plugin}`: {message}")]
    Plugin {
        /// The plugin's id.
        plugin: String,
        /// What is wrong with it.
        message: String,
    },
    /// A plugin that could not be loaded.
    #[error(transparent)]
    Load(#[from] crate::plugins::LoadError),
}

impl GuardrailError {
    /// A [`GuardrailError::Config`] at `key`.
    pub fn config(key: &str, message: impl Into<String>) -> Self {
        GuardrailError::Config {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A [`GuardrailError::Plugin`] naming `plugin`.
    pub fn plugin(plugin: &str, message: impl Into<String>) -> Self {
        GuardrailError::Plugin {
            plugin: plugin.to_owned(),
            message: message.into(),
        }
    }
}

/// The loaded plugins and the guardrail engine built over them.
pub struct Firewall {
    /// The guardrail engine: every active pattern and its actions.
    pub engine: Arc<GuardrailEngine>,
    /// Every plugin the config loads (guardrails, observers, adapters).
    pub plugins: LoadedPlugins,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall")
            .field("engine", &self.engine)
            .field("missing_builtins", &self.plugins.missing_builtins)
            .finish_non_exhaustive()
    }
}

/// Loads every plugin and policy the config names (`crate::plugins::load`), merges the
/// policies' fragments under the config's settings (`merge.rs`), and builds the engine over
/// the guardrails among the plugins and the custom patterns.
pub fn load(config: &Config) -> Result<Firewall, GuardrailError> {
    let plugins = crate::plugins::load(config)?;
    let merged = merge(&config.guardrails, &plugins.policies)?;
    let fragments: Vec<(String, &crate::config::Guardrails)> = plugins
        .policies
        .iter()
        .map(|p| (format!("{} guardrails", merge::label(p)), &p.fragment))
        .collect();
    let engine = GuardrailEngine::build_merged(&merged, &plugins.guardrails(), &fragments)?;
    Ok(Firewall {
        engine: Arc::new(engine),
        plugins,
    })
}

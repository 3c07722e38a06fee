//! The on-disk shape of the `guardrails:` and `plugins:` sections, and their resolution into
//! the typed settings the firewall and the plugin host run on. Pattern ids are checked
//! against the loaded plugins later (`guardrails::GuardrailEngine::build`): plugins declare
//! their patterns only once they are loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::file::ByteSize;

/// What happens to a finding.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    /// Let it through; log and count the finding.
    Warn,
    /// Replace the matched text before it travels on.
    Redact,
    /// Refuse the request (upgoing) or cut the answer (downgoing).
    Block,
}

/// Which way a custom pattern looks.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectionName {
    Upgoing,
    Downgoing,
    Both,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsSection {
    pub enabled: Option<bool>,
    /// Load the built-in pattern plugins (default true).
    pub builtin: Option<bool>,
    #[serde(default)]
    pub disabled_patterns: Vec<String>,
    #[serde(default)]
    pub upgoing: BTreeMap<String, ActionName>,
    #[serde(default)]
    pub downgoing: BTreeMap<String, ActionName>,
    #[serde(default)]
    pub custom_patterns: Vec<CustomPatternSection>,
    #[serde(default)]
    pub custom_upgoing: BTreeMap<String, ActionName>,
    #[serde(default)]
    pub custom_downgoing: BTreeMap<String, ActionName>,
    #[serde(default)]
    pub block_message: BlockMessageSection,
    pub stream_window: Option<ByteSize>,
    #[serde(default)]
    pub plugins: Vec<PluginEntry>,
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
    /// What a failed plugin call does: `open` or `closed` (default: by the pattern's action).
    pub plugin_failure: Option<OnFailure>,
}

/// One `guardrails.policies` entry.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// A `.policy` file.
    pub path: Option<String>,
    /// An OCI reference instead (`registry/repository:tag` or `@sha256:…`).
    pub oci: Option<String>,
    /// Capabilities granted to the policy's plugins.
    #[serde(default)]
    pub grants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPatternSection {
    pub name: String,
    pub regex: String,
    pub direction: Option<DirectionName>,
    /// Default action when neither `custom_upgoing` nor `custom_downgoing` names it.
    pub action: Option<ActionName>,
    /// Longest match, in bytes (default 256); sizes the stream window.
    pub max_match_len: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BlockMessageSection {
    pub include_details: Option<bool>,
    pub include_help_link: Option<bool>,
}

/// One plugin by path, with its own settings.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    pub path: Option<String>,
    /// An OCI reference instead of a path (`registry/repository:tag` or `@sha256:…`).
    pub oci: Option<String>,
    pub sha256: Option<String>,
    pub config: Option<serde_yaml::Value>,
    #[serde(default)]
    pub grants: Vec<String>,
    pub memory_limit: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub call_deadline: Option<Duration>,
    /// `false`: a fresh instance per call even for a plugin whose manifest says `stateless`.
    pub reuse_instances: Option<bool>,
    /// What a failed call of this plugin does (over `guardrails.plugin_failure`).
    pub plugin_failure: Option<OnFailure>,
}

/// One `plugins.registries.<host>` entry.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// The user name.
    pub username: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// Plain HTTP for a registry not on loopback.
    #[serde(default)]
    pub plain_http: bool,
}

/// One `plugins.trust` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// ed25519 public keys, hex.
    pub keys: Vec<String>,
    /// The glob over plugin sources these keys may sign.
    pub scope: String,
}

/// The plugin host's settings.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginsSection {
    /// Compiled-component cache; `false` turns it off.
    pub cache_dir: Option<serde_yaml::Value>,
    pub max_instances: Option<u32>,
    pub memory_limit: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub call_deadline: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub configure_deadline: Option<Duration>,
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Keys trusted for a scope of sources only.
    #[serde(default)]
    pub trust: Vec<TrustSection>,
    /// How to reach registries, by host.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySection>,
    /// Where pulled OCI artifacts are kept.
    pub artifact_dir: Option<String>,
    /// The largest component pulled from a registry.
    pub max_artifact_size: Option<ByteSize>,
    /// How often followed OCI tags are checked for a new digest.
    #[serde(default, with = "humantime_serde")]
    pub update_interval: Option<Duration>,
    /// Observer plugins: receive every request event in batches.
    #[serde(default)]
    pub observers: Vec<PluginEntry>,
}

/// The firewall's settings, validated except for pattern ids (see the module comment).
#[derive(Clone, Debug)]
pub struct Guardrails {
    /// `guardrails.enabled`: whether the firewall runs at all (default true).
    pub enabled: bool,
    /// `guardrails.builtin`: load the built-in pattern plugins (default true).
    pub builtin: bool,
    /// `guardrails.disabled_patterns`: pattern ids (plugin or custom) that are switched off.
    pub disabled_patterns: Vec<String>,
    /// `guardrails.upgoing`: pattern id → action on requests, over each pattern's default.
    pub upgoing: BTreeMap<String, ActionName>,
    /// `guardrails.downgoing`: pattern id → action on answers, over each pattern's default.
    pub downgoing: BTreeMap<String, ActionName>,
    /// `guardrails.custom_patterns`: regex patterns defined in the config.
    pub custom_patterns: Vec<CustomPattern>,
    /// `guardrails.custom_upgoing`: custom pattern name → action on requests.
    pub custom_upgoing: BTreeMap<String, ActionName>,
    /// `guardrails.custom_downgoing`: custom pattern name → action on answers.
    pub custom_downgoing: BTreeMap<String, ActionName>,
    /// `guardrails.block_message.include_details`: name the blocking patterns in the error
    /// (unset: true).
    pub include_details: Option<bool>,
    /// `guardrails.block_message.include_help_link`: end the error with a help link (unset:
    /// true).
    pub include_help_link: Option<bool>,
    /// Response text held back in streams before it is released (default 1 KiB; raised to
    /// 4 × the longest downgoing pattern's match when that is longer).
    pub stream_window: usize,
    /// `guardrails.plugins`: extra guardrail plugins to load.
    pub plugins: Vec<PluginRef>,
    /// `guardrails.policies`: signed policies (plugins + a fragment of these settings), merged
    /// under these settings when loaded (`guardrails::merge`).
    pub policies: Vec<PolicyRef>,
    /// `guardrails.plugin_failure`: what a failed plugin call does for every plugin whose
    /// entry does not say (`None`: fail closed for a blocking pattern, open otherwise).
    pub plugin_failure: Option<OnFailure>,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            enabled: true,
            builtin: true,
            disabled_patterns: Vec::new(),
            upgoing: BTreeMap::new(),
            downgoing: BTreeMap::new(),
            custom_patterns: Vec::new(),
            custom_upgoing: BTreeMap::new(),
            custom_downgoing: BTreeMap::new(),
            include_details: None,
            include_help_link: None,
            stream_window: DEFAULT_STREAM_WINDOW,
            plugins: Vec::new(),
            policies: Vec::new(),
            plugin_failure: None,
        }
    }
}

/// `guardrails.stream_window` when the config does not set it, in bytes.
pub const DEFAULT_STREAM_WINDOW: usize = 1024;

/// A regex pattern from `guardrails.custom_patterns`.
#[derive(Clone, Debug)]
pub struct CustomPattern {
    /// `name`: its id in `custom_upgoing`/`custom_downgoing`, findings and errors.
    pub name: String,
    /// `regex`: what it matches (Rust regex syntax).
    pub regex: regex::Regex,
    /// It scans requests (`direction: upgoing` or `both`; the default).
    pub upgoing: bool,
    /// It scans answers (`direction: downgoing` or `both`).
    pub downgoing: bool,
    /// `action`: what a match does when the direction's map does not name it (default `warn`).
    pub action: ActionName,
    /// `max_match_len`: the longest match, in bytes (default 256); sizes the stream window.
    pub max_match_len: usize,
}

/// A plugin the config names, with the config key it came from (for errors).
#[derive(Clone, Debug)]
pub struct PluginRef {
    /// Where the entry sits in the file (`guardrails.plugins[0]`), for errors.
    pub key: String,
    /// `path`: the `.wasm` component, relative paths from the config's folder; for an `oci:`
    /// entry, where the loader found it in the artifact store once pulled.
    pub path: PathBuf,
    /// `oci`: the OCI reference the component is pulled from (`plugins::oci`).
    pub oci: Option<String>,
    /// `sha256`: the component's expected hash, lowercase hex; loading fails on a mismatch.
    pub sha256: Option<String>,
    /// `config`: handed to the plugin's `configure`, as JSON.
    pub config: Option<serde_json::Value>,
    /// `grants`: capabilities granted (`wall-clock`, `env:NAME`); each one the manifest asks for
    /// must be here.
    pub grants: Vec<String>,
    /// `memory_limit`: this plugin's memory cap in bytes, at most `plugins.memory_limit`.
    pub memory_limit: Option<u64>,
    /// `call_deadline`: this plugin's per-call deadline, over `plugins.call_deadline`.
    pub call_deadline: Option<Duration>,
    /// `reuse_instances`: `false` gives every call a fresh instance even when the manifest
    /// says `stateless` (default: warm instances for a stateless guardrail).
    pub reuse_instances: Option<bool>,
    /// `plugin_failure`: what a failed call of this plugin does, over
    /// `guardrails.plugin_failure`.
    pub plugin_failure: Option<OnFailure>,
}

/// A policy the config names (`guardrails.policies`).
#[derive(Clone, Debug)]
pub struct PolicyRef {
    /// Where the entry sits in the file (`guardrails.policies[0]`), for errors.
    pub key: String,
    /// `path`: a `.policy` file, relative paths from the config's folder (empty for `oci:`).
    pub path: PathBuf,
    /// `oci`: the OCI reference the policy is pulled from.
    pub oci: Option<String>,
    /// `grants`: capabilities granted to the policy's plugins.
    pub grants: Vec<String>,
}

/// The plugin host's settings, resolved.
#[derive(Clone, Debug)]
pub struct Plugins {
    /// `None`: no compile cache.
    pub cache_dir: Option<PathBuf>,
    /// `plugins.max_instances`: plugin instances alive at once, across all plugins (default 64).
    pub max_instances: u32,
    /// `plugins.memory_limit`: each instance's memory cap in bytes (default 64 MiB).
    pub memory_limit: u64,
    /// `plugins.call_deadline`: how long one plugin call may run (default 10 ms).
    pub call_deadline: Duration,
    /// `plugins.configure_deadline`: how long a plugin's `configure` may run (default 1 s).
    pub configure_deadline: Duration,
    /// `plugins.trusted_keys`: ed25519 public keys (hex); when set, every plugin must be signed by
    /// one.
    pub trusted_keys: Vec<String>,
    /// `plugins.trust`: keys that may sign only plugins whose source (an OCI reference's
    /// `registry/repository`, or a file path) matches the scope's glob.
    pub trust: Vec<TrustRule>,
    /// `plugins.registries`: per registry host, its credentials and whether it speaks plain
    /// HTTP.
    pub registries: Registries,
    /// `plugins.artifact_dir`: the content-addressed store of pulled OCI artifacts (default
    /// `~/.bitrouter/artifacts`).
    pub artifact_dir: PathBuf,
    /// `plugins.max_artifact_size`: the largest component pulled from a registry, bytes
    /// (default 64 MiB).
    pub max_artifact_size: u64,
    /// `plugins.update_interval`: how often followed OCI tags are checked for a new digest
    /// (`None`, the default: only at start and on reload).
    pub update_interval: Option<Duration>,
    /// `plugins.observers`: observer plugins, which receive every request event in batches.
    pub observers: Vec<PluginRef>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            cache_dir: Some(super::home_dir().join("cache/plugins")),
            max_instances: 64,
            memory_limit: 64 << 20,
            call_deadline: Duration::from_millis(10),
            configure_deadline: Duration::from_secs(1),
            trusted_keys: Vec::new(),
            trust: Vec::new(),
            registries: Default::default(),
            artifact_dir: super::home_dir().join("artifacts"),
            max_artifact_size: DEFAULT_MAX_ARTIFACT_SIZE,
            update_interval: None,
            observers: Vec::new(),
        }
    }
}

/// Key and message of the first problem found.
pub type Problem = (String, String);

/// A pattern id or name: what plugins and config keys may use.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

pub fn resolve_guardrails(
    section: GuardrailsSection,
    base_dir: &Path,
    expand: &dyn Fn(&str) -> String,
) -> Result<Guardrails, Problem> {
    let policies = section.policies.clone();
    let mut g = resolve_section(section, "guardrails", base_dir, expand)?;
    for (i, e) in policies.into_iter().enumerate() {
        let key = format!("guardrails.policies[{i}]");
        let (path, oci) = match (e.path.map(|p| expand(&p)), e.oci.map(|o| expand(&o))) {
            (Some(path), None) if !path.is_empty() => (base_dir.join(path), None),
            (None, Some(oci)) => {
                check_oci_reference(&oci).map_err(|e| (format!("{key}.oci"), e))?;
                (PathBuf::new(), Some(oci))
            }
            (Some(_), Some(_)) => {
                return Err((key, "expected one of path or oci, not both".into()));
            }
            _ => {
                return Err((
                    format!("{key}.path"),
                    "expected the path of a .policy file (or `oci:` and a registry reference)"
                        .into(),
                ));
            }
        };
        g.policies.push(PolicyRef {
            key,
            path,
            oci,
            grants: e.grants,
        });
    }
    Ok(g)
}

/// The keys of `guardrails:` a policy's fragment may set.
pub const POLICY_FRAGMENT_KEYS: &str = "disabled_patterns, upgoing, downgoing, custom_patterns, custom_upgoing, custom_downgoing, block_message";

/// A policy's guardrails fragment (JSON), resolved like the config's own section; `prefix`
/// names it in errors. Environment variables are not expanded: a policy says what it says.
pub fn resolve_policy_fragment(
    fragment: &serde_json::Value,
    prefix: &str,
) -> Result<Guardrails, Problem> {
    let section: GuardrailsSection = serde_json::from_value(fragment.clone()).map_err(|e| {
        (
            prefix.to_owned(),
            format!("{e}; a policy may set {POLICY_FRAGMENT_KEYS}"),
        )
    })?;
    let operational = [
        ("enabled", section.enabled.is_some()),
        ("builtin", section.builtin.is_some()),
        ("stream_window", section.stream_window.is_some()),
        ("plugins", !section.plugins.is_empty()),
        ("policies", !section.policies.is_empty()),
        ("plugin_failure", section.plugin_failure.is_some()),
    ];
    if let Some((name, _)) = operational.iter().find(|(_, set)| *set) {
        return Err((
            format!("{prefix}.{name}"),
            format!(
                "the local config's to set, not a policy's; a policy may set {POLICY_FRAGMENT_KEYS}"
            ),
        ));
    }
    resolve_section(section, prefix, Path::new(""), &|s| s.to_owned())
}

fn resolve_section(
    section: GuardrailsSection,
    prefix: &str,
    base_dir: &Path,
    expand: &dyn Fn(&str) -> String,
) -> Result<Guardrails, Problem> {
    let mut g = Guardrails {
        enabled: section.enabled.unwrap_or(true),
        builtin: section.builtin.unwrap_or(true),
        disabled_patterns: section.disabled_patterns,
        upgoing: section.upgoing,
        downgoing: section.downgoing,
        custom_upgoing: section.custom_upgoing,
        custom_downgoing: section.custom_downgoing,
        include_details: section.block_message.include_details,
        include_help_link: section.block_message.include_help_link,
        plugin_failure: section.plugin_failure,
        ..Guardrails::default()
    };
    if let Some(w) = section.stream_window {
        if w.0 == 0 || w.0 > 1 << 20 {
            return Err((
                format!("{prefix}.stream_window"),
                "expected a size between 1 byte and 1 MiB".into(),
            ));
        }
        g.stream_window = w.0 as usize;
    }
    for (i, c) in section.custom_patterns.into_iter().enumerate() {
        let key = format!("{prefix}.custom_patterns[{i}]");
        if !valid_name(&c.name) {
            return Err((
                format!("{key}.name"),
                format!(
                    "expected 1-64 characters of [a-z0-9._-] (lowercase), found {:?}",
                    c.name
                ),
            ));
        }
        if g.custom_patterns.iter().any(|p| p.name == c.name) {
            return Err((
                format!("{key}.name"),
                format!("`{}` is defined twice", c.name),
            ));
        }
        let regex = regex::RegexBuilder::new(&c.regex)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                (
                    format!("{key}.regex"),
                    format!("expected a valid regex (Rust regex syntax): {e}"),
                )
            })?;
        if regex.is_match("") {
            return Err((
                format!("{key}.regex"),
                "the regex matches the empty string, so it would match everywhere".into(),
            ));
        }
        let (upgoing, downgoing) = match c.direction.unwrap_or(DirectionName::Upgoing) {
            DirectionName::Upgoing => (true, false),
            DirectionName::Downgoing => (false, true),
            DirectionName::Both => (true, true),
        };
        g.custom_patterns.push(CustomPattern {
            name: c.name,
            regex,
            upgoing,
            downgoing,
            action: c.action.unwrap_or(ActionName::Warn),
            max_match_len: match c.max_match_len {
                None => 256,
                Some(n) if (1..=65_536).contains(&n) => n,
                Some(_) => {
                    return Err((
                        format!("{key}.max_match_len"),
                        "expected a number of bytes between 1 and 65536".into(),
                    ));
                }
            },
        });
    }
    for (map, key, direction) in [
        (&g.custom_upgoing, "custom_upgoing", "upgoing"),
        (&g.custom_downgoing, "custom_downgoing", "downgoing"),
    ] {
        for name in map.keys() {
            match g.custom_patterns.iter().find(|p| &p.name == name) {
                None => {
                    let known: Vec<&str> =
                        g.custom_patterns.iter().map(|p| p.name.as_str()).collect();
                    return Err((
                        format!("{prefix}.{key}.{name}"),
                        format!(
                            "unknown custom pattern `{name}`; expected one of {prefix}.custom_patterns ({})",
                            if known.is_empty() {
                                "none defined".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
                Some(p)
                    if (direction == "upgoing" && !p.upgoing)
                        || (direction == "downgoing" && !p.downgoing) =>
                {
                    return Err((
                        format!("{prefix}.{key}.{name}"),
                        format!(
                            "custom pattern `{name}` does not look {direction}; set its `direction` to {direction} or both"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    g.plugins = resolve_plugin_entries(
        section.plugins,
        &format!("{prefix}.plugins"),
        base_dir,
        expand,
    )?;
    Ok(g)
}

pub fn resolve_plugins(
    section: PluginsSection,
    base_dir: &Path,
    expand: &dyn Fn(&str) -> String,
) -> Result<Plugins, Problem> {
    let mut p = Plugins::default();
    match section.cache_dir {
        None => {}
        Some(serde_yaml::Value::Bool(false) | serde_yaml::Value::Null) => p.cache_dir = None,
        Some(serde_yaml::Value::String(s)) => {
            let s = expand(&s);
            p.cache_dir = Some(match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => base_dir.join(s),
            });
        }
        Some(_) => {
            return Err((
                "plugins.cache_dir".into(),
                "expected a folder path, or false for no cache".into(),
            ));
        }
    }
    if let Some(n) = section.max_instances {
        if n == 0 || n > 10_000 {
            return Err((
                "plugins.max_instances".into(),
                "expected a number between 1 and 10000".into(),
            ));
        }
        p.max_instances = n;
    }
    if let Some(m) = section.memory_limit {
        if m.0 < 1 << 20 || m.0 > 4 << 30 {
            return Err((
                "plugins.memory_limit".into(),
                "expected a size between 1 MiB and 4 GiB".into(),
            ));
        }
        p.memory_limit = m.0;
    }
    if let Some(d) = section.call_deadline {
        if d.is_zero() {
            return Err((
                "plugins.call_deadline".into(),
                "expected a duration above zero".into(),
            ));
        }
        p.call_deadline = d;
    }
    if let Some(d) = section.configure_deadline {
        if d.is_zero() {
            return Err((
                "plugins.configure_deadline".into(),
                "expected a duration above zero".into(),
            ));
        }
        p.configure_deadline = d;
    }
    for (i, k) in section.trusted_keys.iter().enumerate() {
        let k = expand(k);
        if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((
                format!("plugins.trusted_keys[{i}]"),
                "expected an ed25519 public key as 64 hex digits".into(),
            ));
        }
        p.trusted_keys.push(k);
    }
    for (i, rule) in section.trust.into_iter().enumerate() {
        let at = format!("plugins.trust[{i}]");
        if rule.keys.is_empty() {
            return Err((format!("{at}.keys"), "expected at least one key".into()));
        }
        let mut keys = Vec::new();
        for (j, k) in rule.keys.iter().enumerate() {
            let k = expand(k);
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    format!("{at}.keys[{j}]"),
                    "expected an ed25519 public key as 64 hex digits".into(),
                ));
            }
            keys.push(k);
        }
        let scope = expand(&rule.scope);
        if let Err(e) = globset::GlobBuilder::new(&scope)
            .literal_separator(true)
            .build()
        {
            return Err((format!("{at}.scope"), format!("not a glob: {e}")));
        }
        p.trust.push(TrustRule { keys, scope });
    }
    for (host, r) in section.registries {
        let at = format!("plugins.registries.{host}");
        if r.username.is_some() != r.password_env.is_some() {
            return Err((
                at,
                "expected both username and password_env (the variable holding the password), or neither".into(),
            ));
        }
        p.registries.insert(
            host,
            RegistryLogin {
                username: r.username.map(|u| expand(&u)),
                password_env: r.password_env,
                plain_http: r.plain_http,
            },
        );
    }
    if let Some(dir) = section.artifact_dir {
        let dir = expand(&dir);
        p.artifact_dir = match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            _ => base_dir.join(dir),
        };
    }
    if let Some(m) = section.max_artifact_size {
        if m.0 == 0 || m.0 > 1 << 30 {
            return Err((
                "plugins.max_artifact_size".into(),
                "expected a size between 1 byte and 1 GiB".into(),
            ));
        }
        p.max_artifact_size = m.0;
    }
    if let Some(d) = section.update_interval {
        if d < Duration::from_secs(1) {
            return Err((
                "plugins.update_interval".into(),
                "expected a duration of at least 1s".into(),
            ));
        }
        p.update_interval = Some(d);
    }
    p.observers = resolve_plugin_entries(section.observers, "plugins.observers", base_dir, expand)?;
    Ok(p)
}

fn resolve_plugin_entries(
    entries: Vec<PluginEntry>,
    key: &str,
    base_dir: &Path,
    expand: &dyn Fn(&str) -> String,
) -> Result<Vec<PluginRef>, Problem> {
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        out.push(resolve_plugin_entry(
            e,
            format!("{key}[{i}]"),
            base_dir,
            expand,
        )?);
    }
    Ok(out)
}

/// One plugin entry; `key` is where it sits in the file, for errors.
pub fn resolve_plugin_entry(
    e: PluginEntry,
    key: String,
    base_dir: &Path,
    expand: &dyn Fn(&str) -> String,
) -> Result<PluginRef, Problem> {
    let (path, oci) = match (e.path.map(|p| expand(&p)), e.oci.map(|o| expand(&o))) {
        (Some(path), None) if !path.is_empty() => (base_dir.join(path), None),
        (None, Some(oci)) => {
            check_oci_reference(&oci).map_err(|e| (format!("{key}.oci"), e))?;
            (PathBuf::new(), Some(oci))
        }
        (Some(_), Some(_)) => {
            return Err((key, "expected one of path or oci, not both".into()));
        }
        _ => {
            return Err((
                format!("{key}.path"),
                "expected the path of a .wasm component (or `oci:` and a registry reference)"
                    .into(),
            ));
        }
    };
    let config = match e.config {
        None => None,
        Some(v) => Some(serde_json::to_value(&v).map_err(|err| {
            (
                format!("{key}.config"),
                format!("expected JSON-compatible YAML: {err}"),
            )
        })?),
    };
    Ok(PluginRef {
        key,
        path,
        oci,
        sha256: e.sha256.map(|s| expand(&s)),
        config,
        grants: e.grants,
        memory_limit: e.memory_limit.map(|m| m.0),
        call_deadline: e.call_deadline,
        reuse_instances: e.reuse_instances,
        plugin_failure: e.plugin_failure,
    })
}

/// What a failed guardrail plugin call (deadline, trap, memory, invalid result) does to the
/// request (`guardrails.plugin_failure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The request goes on as if the pattern found nothing: counted, logged, and flagged on
    /// the response (`x-bitrouter-guardrail-failures`).
    Open,
    /// The request (or the rest of the answer) is refused, whatever the pattern's action.
    Closed,
}

/// Keys trusted for a scope (`plugins.trust`): they may sign a plugin or policy whose source
/// — an OCI reference's `registry/repository`, or a file's path — matches the glob (`*`
/// stays within one `/` segment, `**` crosses them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustRule {
    /// ed25519 public keys, hex.
    pub keys: Vec<String>,
    /// The glob over sources.
    pub scope: String,
}

/// How to reach one registry (`plugins.registries.<host>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryLogin {
    /// The user name, if the registry wants one.
    pub username: Option<String>,
    /// The environment variable holding the password (read when a request needs it, never
    /// stored in the config).
    pub password_env: Option<String>,
    /// Speak plain HTTP to it even though it is not on loopback.
    pub plain_http: bool,
}

/// `plugins.registries`: per registry host (`host` or `host:port`), how to reach it.
pub type Registries = BTreeMap<String, RegistryLogin>;

/// `plugins.max_artifact_size` when the config does not set it.
pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 64 << 20;

/// Whether `text` is an OCI reference (`oci://` optional), as `plugins::oci::reference`
/// parses it; the error reads like its.
fn check_oci_reference(text: &str) -> Result<(), String> {
    let bare = text.strip_prefix("oci://").unwrap_or(text);
    bare.parse::<oci_client::Reference>()
        .map(drop)
        .map_err(|e| format!("`{text}` is not an OCI reference: {e}"))
}

#[cfg(test)]
mod tests;

//! Who may sign what: `plugins.trusted_keys` (any source) and `plugins.trust` (keys allowed
//! for a glob of sources). One [`Trust`] checks plugin manifests and policy documents alike,
//! and fails closed: with any key configured, something no allowed key signed is refused, and
//! one signed by a key of another scope says so.

use ed25519_dalek::VerifyingKey;

use super::error::PluginErrorKind;
use super::{manifest, oci};
pub use crate::config::TrustRule;

/// A parsed [`TrustRule`].
struct ScopedKeys {
    scope: String,
    matcher: globset::GlobMatcher,
    keys: Vec<VerifyingKey>,
}

/// Who signed something, and the trust scope that allowed the key (`*`: `trusted_keys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The public key, hex.
    pub key: String,
    /// The `plugins.trust` scope that allows it, or `*` for `plugins.trusted_keys`.
    pub scope: String,
}

/// The parsed `trusted_keys` and `trust` rules.
pub(crate) struct Trust {
    trusted: Vec<VerifyingKey>,
    scoped: Vec<ScopedKeys>,
}

/// What a source is for `plugins.trust` scopes: `registry/repository` of an OCI origin (no
/// tag, no digest), else the file's absolute path with symlinks resolved (so a config read
/// from a relative path, or a link into a trusted folder, is judged by where the file is).
pub(crate) fn trust_source(origin: Option<&str>, path: &std::path::Path) -> String {
    match origin {
        Some(origin) => {
            let bare = oci::without_digest(origin);
            // A `:tag` after the last `/` (a `:port` sits before it).
            match bare.rsplit_once('/') {
                Some((head, last)) => {
                    format!("{head}/{}", last.split_once(':').map_or(last, |(n, _)| n))
                }
                None => bare.to_owned(),
            }
        }
        None => std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_owned())
            .display()
            .to_string(),
    }
}

impl Trust {
    /// Parses the keys and compiles the scopes.
    pub(crate) fn new(trusted_keys: &[String], rules: &[TrustRule]) -> Result<Trust, String> {
        let trusted = manifest::parse_trusted_keys(trusted_keys)?;
        let mut scoped = Vec::new();
        for rule in rules {
            let keys = manifest::parse_trusted_keys(&rule.keys)?;
            let matcher = globset::GlobBuilder::new(&rule.scope)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("trust scope {:?}: {e}", rule.scope))?
                .compile_matcher();
            scoped.push(ScopedKeys {
                scope: rule.scope.clone(),
                matcher,
                keys,
            });
        }
        Ok(Trust { trusted, scoped })
    }

    /// The signer of something from `source`, among the keys allowed for it;
    /// `verify(keys)` checks the signature against a key list the way
    /// [`manifest::verify`] does (no keys: `Ok(None)`, unsigned: `Unsigned`).
    pub(crate) fn check(
        &self,
        source: &str,
        verify: impl Fn(&[VerifyingKey]) -> Result<Option<String>, PluginErrorKind>,
    ) -> Result<Option<Signed>, PluginErrorKind> {
        let mut allowed = self.trusted.clone();
        let matching: Vec<&ScopedKeys> = self
            .scoped
            .iter()
            .filter(|r| r.matcher.is_match(source))
            .collect();
        for rule in &matching {
            allowed.extend(rule.keys.iter().copied());
        }
        let signed = |key: String| {
            let scope = match matching
                .iter()
                .find(|r| r.keys.iter().any(|k| hex::encode(k.to_bytes()) == key))
            {
                Some(rule)
                    if !self
                        .trusted
                        .iter()
                        .any(|k| hex::encode(k.to_bytes()) == key) =>
                {
                    rule.scope.clone()
                }
                _ => "*".to_owned(),
            };
            Signed { key, scope }
        };
        if self.scoped.is_empty() {
            return Ok(verify(&self.trusted)?.map(signed));
        }
        let refused = match (allowed.is_empty(), verify(&allowed)) {
            (false, Ok(signer)) => return Ok(signer.map(signed)),
            (false, Err(PluginErrorKind::Unsigned)) => return Err(PluginErrorKind::Unsigned),
            (true, _) => None,
            (false, Err(e)) => Some(e),
        };
        // Signed by a key that is trusted, but for other sources?
        for rule in &self.scoped {
            if let Ok(Some(key)) = verify(&rule.keys) {
                return Err(PluginErrorKind::BadSignature(format!(
                    "signed by key {key}, which plugins.trust allows only for `{}`; this comes from `{source}`",
                    rule.scope
                )));
            }
        }
        Err(refused.unwrap_or_else(|| {
            PluginErrorKind::BadSignature(format!(
                "no trusted key may sign `{source}`: no plugins.trust scope matches it and plugins.trusted_keys is empty"
            ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_sources_are_registry_and_repository_or_the_path() {
        let none = std::path::Path::new("");
        assert_eq!(
            trust_source(
                Some("oci://registry.acme.internal:5000/guardrails/acme:1.2@sha256:ab"),
                none
            ),
            "registry.acme.internal:5000/guardrails/acme"
        );
        assert_eq!(
            trust_source(
                Some("oci://registry.acme.internal/guardrails/acme@sha256:ab"),
                none
            ),
            "registry.acme.internal/guardrails/acme"
        );
        assert_eq!(
            trust_source(None, std::path::Path::new("/srv/plugins/acme.wasm")),
            "/srv/plugins/acme.wasm"
        );
    }
}

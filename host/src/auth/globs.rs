//! Glob allowlists: a token's `models` (route names and `provider:model_id`) and the
//! config's `accounts`/`admins` (CAIP-10 ids). Compiled once per token or config, matched
//! per request.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::AuthError;

/// A compiled `models` claim. Patterns are kept for display and equality.
#[derive(Clone, Debug)]
pub struct ModelAllowlist {
    /// The globs as the claim wrote them.
    pub patterns: Vec<String>,
    set: GlobSet,
}

impl ModelAllowlist {
    /// Compiles the globs; a bad glob is a [`AuthError::BadClaim`].
    pub fn new(patterns: &[String]) -> Result<ModelAllowlist, AuthError> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(Glob::new(p).map_err(|e| {
                AuthError::BadClaim(format!("models pattern {p:?} is not a glob: {e}"))
            })?);
        }
        let set = b
            .build()
            .map_err(|e| AuthError::BadClaim(format!("models: {e}")))?;
        Ok(ModelAllowlist {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// Whether `model` (a route name or `provider:model_id`) matches a glob.
    pub fn allows(&self, model: &str) -> bool {
        self.set.is_match(model)
    }
}

/// CAIP-10 patterns. EVM addresses compare case-insensitively (checksums are advisory);
/// Solana's base58 keys are case-sensitive, so their patterns are too.
#[derive(Clone, Debug)]
pub struct AccountPatterns {
    /// The globs as the config wrote them.
    pub patterns: Vec<String>,
    set: GlobSet,
}

impl AccountPatterns {
    /// `key` names the config key in errors.
    pub fn new(patterns: &[String], key: &str) -> Result<AccountPatterns, String> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let evm = p.starts_with("eip155:");
            let glob = GlobBuilder::new(p)
                .case_insensitive(evm)
                .build()
                .map_err(|e| format!("{key}: {p:?} is not a glob: {e}"))?;
            b.add(glob);
        }
        let set = b.build().map_err(|e| format!("{key}: {e}"))?;
        Ok(AccountPatterns {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// Whether the CAIP-10 `account` matches a pattern.
    pub fn matches(&self, account: &str) -> bool {
        self.set.is_match(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_globs_cover_routes_and_provider_ids() {
        let m =
            ModelAllowlist::new(&["openai:*".into(), "fast".into(), "claude-?".into()]).unwrap();
        assert!(m.allows("openai:gpt-4o"));
        assert!(m.allows("fast"));
        assert!(m.allows("claude-3"));
        assert!(!m.allows("anthropic:claude"));
        assert!(!m.allows("faster"));
        assert!(ModelAllowlist::new(&["[".into()]).is_err());
    }

    #[test]
    fn account_globs_fold_case_for_evm_only() {
        let a = AccountPatterns::new(
            &["eip155:*:0xABC*".into(), "solana:*:Abc*".into()],
            "auth.accounts",
        )
        .unwrap();
        assert!(a.matches("eip155:1:0xabcdef"));
        assert!(a.matches("eip155:10:0xAbCdef"));
        assert!(a.matches("solana:ref:Abcdef"));
        assert!(!a.matches("solana:ref:abcdef"));
        assert!(!a.matches("eip155:1:0xdef"));
    }
}

//! The built-in provider registry: the YAML files under `host/registry/`, compiled into the
//! binary so a fresh install knows every provider's URL, protocol, models and prices.

use super::file::ProviderSection;

/// Name and YAML text of every built-in provider.
pub const BUILTIN: &[(&str, &str)] = &[
    ("openai", include_str!("../../registry/openai.yaml")),
    ("anthropic", include_str!("../../registry/anthropic.yaml")),
    ("google", include_str!("../../registry/google.yaml")),
    ("openrouter", include_str!("../../registry/openrouter.yaml")),
    ("groq", include_str!("../../registry/groq.yaml")),
    ("deepseek", include_str!("../../registry/deepseek.yaml")),
    ("mistral", include_str!("../../registry/mistral.yaml")),
    ("together", include_str!("../../registry/together.yaml")),
    ("xai", include_str!("../../registry/xai.yaml")),
    ("ollama", include_str!("../../registry/ollama.yaml")),
    ("vllm", include_str!("../../registry/vllm.yaml")),
];

/// Parses the built-in entry for `name`.
pub fn builtin(name: &str) -> Option<ProviderSection> {
    let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    // The files are checked by a unit test, so a parse failure here is a build defect.
    serde_yaml::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_and_prices_every_model() {
        for (name, text) in BUILTIN {
            let p: ProviderSection =
                serde_yaml::from_str(text).unwrap_or_else(|e| panic!("registry/{name}.yaml: {e}"));
            assert!(
                p.api_protocol.is_some() && p.api_base.is_some() && p.env_prefix.is_some(),
                "{name}"
            );
            for (id, m) in p.models.unwrap_or_default() {
                let pr = &m.pricing;
                for v in [
                    Some(pr.input_tokens.no_cache),
                    pr.input_tokens.cache_read,
                    pr.input_tokens.cache_write,
                    Some(pr.output_tokens.text),
                    pr.output_tokens.reasoning,
                ] {
                    let v = v.unwrap_or_else(|| {
                        panic!("{name}/{id}: registry entries give all five prices")
                    });
                    assert!(v >= 0.0 && v.is_finite(), "{name}/{id}");
                }
            }
        }
    }
}

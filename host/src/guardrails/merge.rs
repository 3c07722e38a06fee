//! How the guardrails fragments of `guardrails.policies` merge under the local `guardrails:`
//! settings (documented in docs/plugins.md, "Distributing policy"):
//!
//! - **The local config wins.** Where it sets an action for a pattern (`upgoing`,
//!   `downgoing`, `custom_upgoing`, `custom_downgoing`), disables a pattern, or sets a
//!   `block_message` option, a policy's setting for the same thing does not apply (and the
//!   override is logged).
//! - **Policies must agree.** Two policies that set different actions for one pattern in one
//!   direction, or different `block_message` options, or where one disables a pattern that
//!   one sets an action for (the same policy included), are refused with an error naming
//!   both sides.
//! - **Custom patterns are a union**; a name defined twice (locally, or by two policies) is
//!   refused. `disabled_patterns` are a union.

use std::collections::BTreeMap;

use super::GuardrailError;
use crate::config::{ActionName, Guardrails};
use crate::plugins::LoadedPolicy;

/// The four action maps of a settings block, by key name.
fn action_maps(g: &Guardrails) -> [(&'static str, &BTreeMap<String, ActionName>); 4] {
    [
        ("upgoing", &g.upgoing),
        ("downgoing", &g.downgoing),
        ("custom_upgoing", &g.custom_upgoing),
        ("custom_downgoing", &g.custom_downgoing),
    ]
}

fn action_map_mut<'a>(g: &'a mut Guardrails, name: &str) -> &'a mut BTreeMap<String, ActionName> {
    match name {
        "upgoing" => &mut g.upgoing,
        "downgoing" => &mut g.downgoing,
        "custom_upgoing" => &mut g.custom_upgoing,
        _ => &mut g.custom_downgoing,
    }
}

/// How a policy is named in errors: `guardrails.policies[0] (policy baseline)`.
pub(crate) fn label(p: &LoadedPolicy) -> String {
    format!("{} (policy {})", p.info.key, p.info.id)
}

fn sets_action(g: &Guardrails, pattern: &str) -> bool {
    action_maps(g).iter().any(|(_, m)| m.contains_key(pattern))
}

/// The local settings with every policy's fragment merged under them (module comment).
pub fn merge(local: &Guardrails, policies: &[LoadedPolicy]) -> Result<Guardrails, GuardrailError> {
    let mut out = local.clone();
    let contradiction = |key: String, message: String| Err(GuardrailError::config(&key, message));

    let mut defined_by: BTreeMap<String, String> = local
        .custom_patterns
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                "the local guardrails.custom_patterns".to_owned(),
            )
        })
        .collect();
    for p in policies {
        for c in &p.fragment.custom_patterns {
            if let Some(by) = defined_by.get(&c.name) {
                return contradiction(
                    format!("{} guardrails.custom_patterns", label(p)),
                    format!("custom pattern `{}` is also defined by {by}", c.name),
                );
            }
            defined_by.insert(c.name.clone(), label(p));
            out.custom_patterns.push(c.clone());
        }
    }

    // Patterns the policies disable (the local config's own word aside).
    let mut disabled_by: BTreeMap<&str, String> = BTreeMap::new();
    for p in policies {
        for name in &p.fragment.disabled_patterns {
            if sets_action(local, name) {
                tracing::info!(policy = %p.info.id, pattern = %name, "the local config sets an action for a pattern the policy disables; the local config wins");
                continue;
            }
            disabled_by.entry(name).or_insert_with(|| label(p));
            if !out.disabled_patterns.contains(name) {
                out.disabled_patterns.push(name.clone());
            }
        }
    }

    let mut set_by: BTreeMap<(&str, &str), (ActionName, String)> = BTreeMap::new();
    for p in policies {
        for (map, actions) in action_maps(&p.fragment) {
            for (name, action) in actions {
                let key = format!("{} guardrails.{map}.{name}", label(p));
                if let Some(by) = disabled_by.get(name.as_str()) {
                    return contradiction(
                        key,
                        format!("sets an action for pattern `{name}`, which {by} disables"),
                    );
                }
                let local_map = action_maps(local)
                    .into_iter()
                    .find(|(m, _)| *m == map)
                    .map(|(_, m)| m);
                if local_map.is_some_and(|m| m.contains_key(name))
                    || local.disabled_patterns.contains(name)
                {
                    tracing::info!(policy = %p.info.id, pattern = %name, direction = map, "the local config overrides the policy's action");
                    continue;
                }
                match set_by.get(&(map, name.as_str())) {
                    Some((other, by)) if other != action => {
                        return contradiction(
                            key,
                            format!(
                                "{action:?} contradicts {by}, which sets {other:?} for the same pattern; set it in the local config to decide"
                            )
                            .to_lowercase(),
                        );
                    }
                    _ => {}
                }
                set_by.insert((map, name), (*action, label(p)));
                action_map_mut(&mut out, map).insert(name.clone(), *action);
            }
        }
    }

    for (field, local_value) in [
        ("include_details", local.include_details),
        ("include_help_link", local.include_help_link),
    ] {
        if local_value.is_some() {
            continue;
        }
        let mut chosen: Option<(bool, String)> = None;
        for p in policies {
            let value = match field {
                "include_details" => p.fragment.include_details,
                _ => p.fragment.include_help_link,
            };
            let Some(v) = value else { continue };
            match &chosen {
                Some((other, by)) if *other != v => {
                    return contradiction(
                        format!("{} guardrails.block_message.{field}", label(p)),
                        format!(
                            "{v} contradicts {by}, which sets {other}; set it in the local config to decide"
                        ),
                    );
                }
                _ => chosen = Some((v, label(p))),
            }
        }
        if let Some((v, _)) = chosen {
            match field {
                "include_details" => out.include_details = Some(v),
                _ => out.include_help_link = Some(v),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::PolicyInfo;

    fn policy(id: &str, fragment: serde_json::Value) -> LoadedPolicy {
        LoadedPolicy {
            info: PolicyInfo {
                key: format!("guardrails.policies[{id}]"),
                id: id.into(),
                version: "1.0.0".into(),
                description: None,
                source: format!("{id}.policy"),
                signer: None,
                trust_scope: None,
                loaded_at_ms: 0,
                pinned: false,
                from_store: false,
                plugins: Vec::new(),
            },
            fragment: crate::config::resolve_policy_fragment(&fragment, "guardrails").unwrap(),
        }
    }

    fn local(fragment: serde_json::Value) -> Guardrails {
        crate::config::resolve_policy_fragment(&fragment, "guardrails").unwrap()
    }

    #[test]
    fn policies_fill_in_and_the_local_config_wins() {
        let a = policy(
            "a",
            serde_json::json!({
                "upgoing": {"api_keys": "block", "credentials": "block"},
                "disabled_patterns": ["ip_addresses"],
                "custom_patterns": [{"name": "acme_token", "regex": "acme_[0-9]{8}"}],
                "custom_upgoing": {"acme_token": "block"},
                "block_message": {"include_help_link": false},
            }),
        );
        let g = merge(
            &local(serde_json::json!({"upgoing": {"credentials": "warn"}})),
            &[a],
        )
        .unwrap();
        assert_eq!(g.upgoing["api_keys"], ActionName::Block);
        assert_eq!(g.upgoing["credentials"], ActionName::Warn, "local wins");
        assert_eq!(g.disabled_patterns, ["ip_addresses"]);
        assert_eq!(g.custom_patterns[0].name, "acme_token");
        assert_eq!(g.custom_upgoing["acme_token"], ActionName::Block);
        assert_eq!(g.include_help_link, Some(false));
        assert_eq!(g.include_details, None);

        // The local config may switch a policy's pattern off, or on again with an action.
        let b = policy(
            "b",
            serde_json::json!({"upgoing": {"api_keys": "block"}, "disabled_patterns": ["pii_emails"]}),
        );
        let g = merge(
            &local(serde_json::json!({"disabled_patterns": ["api_keys"], "upgoing": {"pii_emails": "warn"}})),
            &[b],
        )
        .unwrap();
        assert!(!g.upgoing.contains_key("api_keys"));
        assert!(g.disabled_patterns.contains(&"api_keys".to_owned()));
        assert!(!g.disabled_patterns.contains(&"pii_emails".to_owned()));
    }

    #[test]
    fn contradictions_between_policies_are_refused() {
        let e = merge(
            &Guardrails::default(),
            &[
                policy("a", serde_json::json!({"upgoing": {"api_keys": "block"}})),
                policy("b", serde_json::json!({"upgoing": {"api_keys": "warn"}})),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("policy b") && e.contains("policy a") && e.contains("api_keys"),
            "{e}"
        );

        // Agreeing is fine.
        merge(
            &Guardrails::default(),
            &[
                policy("a", serde_json::json!({"upgoing": {"api_keys": "block"}})),
                policy("b", serde_json::json!({"upgoing": {"api_keys": "block"}})),
            ],
        )
        .unwrap();

        let e = merge(
            &Guardrails::default(),
            &[
                policy("a", serde_json::json!({"disabled_patterns": ["api_keys"]})),
                policy("b", serde_json::json!({"downgoing": {"api_keys": "block"}})),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("disables"), "{e}");

        let e = merge(
            &local(
                serde_json::json!({"custom_patterns": [{"name": "t", "regex": "tok_[0-9]{4}"}]}),
            ),
            &[policy(
                "a",
                serde_json::json!({"custom_patterns": [{"name": "t", "regex": "x_[0-9]{4}"}]}),
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("also defined by the local"), "{e}");

        let e = merge(
            &Guardrails::default(),
            &[
                policy(
                    "a",
                    serde_json::json!({"block_message": {"include_details": true}}),
                ),
                policy(
                    "b",
                    serde_json::json!({"block_message": {"include_details": false}}),
                ),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("include_details"), "{e}");
    }
}

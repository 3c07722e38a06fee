//! `GET /admin/plugins` (and the answer of `POST /admin/plugins/reload`): the loaded
//! plugins with their call counters, and every active guardrail pattern with its actions
//! and findings.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Value, json};

use crate::guardrails::{GuardrailEngine, action_str};
use crate::plugins::{CompileSource, Direction, LoadedPlugins};

/// The `/admin/plugins` document.
pub fn plugins_document(plugins: &LoadedPlugins, engine: &GuardrailEngine) -> Value {
    let loaded: Vec<Value> = plugins
        .iter()
        .map(|p| {
            let i = p.info();
            let st = p.stats();
            json!({
                "id": &*i.id, "version": i.version, "world": i.world.to_string(),
                "path": i.path.display().to_string(), "sha256": i.sha256,
                "wasi": i.uses_wasi, "signer": i.signer, "trust_scope": i.trust_scope,
                "verified": i.signer.is_some(), "pinned": i.pinned, "origin": i.origin,
                "policy": i.policy, "loaded_at_ms": i.loaded_at_ms,
                "compiled": match i.compiled { CompileSource::Cache => "cache", CompileSource::Compiled => "compiled" },
                "calls": st.calls, "failures": st.failures(), "traps": st.traps,
                "deadlines": st.deadlines, "memory": st.memory, "invalid_results": st.invalid_results,
                "setups": st.setups, "renewals": st.renewals,
            })
        })
        .collect();
    let patterns: Vec<Value> = guardrail_patterns(engine)
        .into_iter()
        .map(|(id, mut v)| {
            v["id"] = json!(id);
            v
        })
        .collect();
    let policies: Vec<Value> = plugins
        .policies
        .iter()
        .map(|p| {
            let mut v = json!(p.info);
            v["verified"] = json!(p.info.signer.is_some());
            v
        })
        .collect();
    json!({
        "plugins": loaded,
        "policies": policies,
        "guardrail_patterns": patterns,
        "missing_builtins": plugins.missing_builtins,
    })
}

/// Every active guardrail pattern with its actions and its findings so far (since the
/// plugins were last loaded), in the engine's order.
pub fn guardrail_patterns(engine: &GuardrailEngine) -> Vec<(String, Value)> {
    engine
        .patterns()
        .iter()
        .map(|p| {
            let action = |d| p.action(d).map(action_str);
            let n = |i: usize| p.counts[i].load(Relaxed);
            let doc = json!({
                "plugin": p.plugin.as_ref().map(|pp| pp.plugin.id().to_owned()),
                "upgoing": action(Direction::Request),
                "downgoing": action(Direction::Response),
                "findings": {"block": n(0), "redact": n(1), "warn": n(2)},
                "plugin_failures": p.failures.load(Relaxed),
            });
            (p.id.to_string(), doc)
        })
        .collect()
}

//! Counts requests and tokens per route, requests per registered agent and guardrail findings
//! per pattern, and logs a summary every `summary_every` batches (config:
//! `{"summary_every": N}`, default 1).
//!
//! An observer keeps its instance across batches, so the totals live in a `static`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bitrouter_plugin::observer::*;

#[derive(Default)]
struct Totals {
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
}

struct State {
    summary_every: u64,
    batches: u64,
    routes: BTreeMap<String, Totals>,
    /// Requests per agent name (callers with a registered agent card only).
    agents: BTreeMap<String, u64>,
    /// Findings per (pattern, action).
    findings: BTreeMap<(String, String), u64>,
}

static STATE: Mutex<State> = Mutex::new(State {
    summary_every: 1,
    batches: 0,
    routes: BTreeMap::new(),
    agents: BTreeMap::new(),
    findings: BTreeMap::new(),
});

struct TokensPerRoute;

impl Observer for TokensPerRoute {
    fn configure(config: &str) -> Result<(), String> {
        let every = match number_after(config, "\"summary_every\"") {
            Some(0) => return Err("summary_every must be at least 1".into()),
            Some(n) => n,
            None if config.trim() == "null" || config.trim() == "{}" => 1,
            None => return Err(format!("expected {{\"summary_every\": N}}, got {config}")),
        };
        lock().summary_every = every;
        Ok(())
    }

    fn observe(batch: Vec<RequestEvent>) {
        let mut state = lock();
        for event in &batch {
            let t = state.routes.entry(event.route.clone()).or_default();
            t.requests += 1;
            t.errors += u64::from(event.error.is_some());
            t.input_tokens += event.usage.input_tokens;
            t.output_tokens += event.usage.output_tokens;
            if let Some(agent) = &event.agent {
                *state.agents.entry(agent.clone()).or_default() += 1;
            }
            for f in &event.guardrail_findings {
                let key = (f.pattern.clone(), f.action.clone());
                *state.findings.entry(key).or_default() += u64::from(f.count);
            }
        }
        state.batches += 1;
        if state.batches % state.summary_every == 0 {
            for (route, t) in &state.routes {
                log::info(&format!(
                    "route {route}: {} requests ({} failed), {} input tokens, {} output tokens",
                    t.requests, t.errors, t.input_tokens, t.output_tokens
                ));
            }
            for (agent, requests) in &state.agents {
                log::info(&format!("agent {agent}: {requests} requests"));
            }
            for ((pattern, action), n) in &state.findings {
                log::info(&format!("guardrail {pattern} ({action}): {n} findings"));
            }
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The unsigned integer after `key` and a colon in a flat JSON object (no JSON library: it
/// would triple the component's size for one number).
fn number_after(json: &str, key: &str) -> Option<u64> {
    let rest = &json[json.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

bitrouter_plugin::export_observer!(TokensPerRoute);

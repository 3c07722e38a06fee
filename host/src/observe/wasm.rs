//! Observer plugins as request-event sinks: each batch the sink thread receives is handed to
//! the WASM observer (world `observer`) in one call. The sink runs on its own thread behind
//! the bounded queue like every sink, so a slow or failing plugin never touches a request.

use std::sync::Arc;

use super::{ObserveCallback, RequestEvent};
use crate::plugins::{EventUsage, GuardrailCount, ObserverPlugin, RequestEvent as PluginEvent};

/// Delivers request events to an observer plugin, converted to the WIT `request-event`.
pub struct WasmObserverSink {
    plugin: ObserverPlugin,
    name: String,
    runtime: tokio::runtime::Handle,
}

impl WasmObserverSink {
    /// Must be created inside the gateway's runtime: calls are driven on it.
    pub fn new(plugin: ObserverPlugin) -> Self {
        WasmObserverSink {
            name: format!("plugin:{}", plugin.id()),
            plugin,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

fn convert(e: &RequestEvent) -> PluginEvent {
    let t = &e.tokens;
    PluginEvent {
        request_id: e.request_id.clone(),
        timestamp_ms: e.time_ms.max(0) as u64,
        account: e.account_id.clone(),
        agent: e.agent.clone(),
        route: e.route.clone().unwrap_or_else(|| e.requested_model.clone()),
        endpoint: match (&e.provider, &e.model) {
            (Some(p), Some(m)) => Some(format!("{p}:{m}")),
            _ => None,
        },
        dialect: e.dialect.to_owned(),
        stream: e.stream,
        status: e.status,
        latency_us: (e.latency_ms * 1000.0) as u64,
        ttfb_us: e.ttfb_ms.map(|t| (t * 1000.0) as u64),
        attempts: e.attempts.len() as u32,
        usage: EventUsage {
            input_tokens: e.input_tokens,
            cache_read_tokens: t.input_cache_read,
            cache_write_tokens: t.input_cache_write,
            output_tokens: e.output_tokens,
            reasoning_tokens: t.output_reasoning,
        },
        cost_micro_usd: (e.cost_nano_usd > 0).then_some(e.cost_nano_usd / 1000),
        error: e.error_type.clone(),
        guardrail_findings: e
            .guardrail_findings
            .iter()
            .map(|f| GuardrailCount {
                pattern: f.pattern.clone(),
                count: f.count,
                action: f.action.clone(),
            })
            .collect(),
    }
}

impl ObserveCallback for WasmObserverSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_events(&self, events: &[Arc<RequestEvent>]) {
        let batch: Vec<PluginEvent> = events.iter().map(|e| convert(e)).collect();
        // A failure is counted and logged by the plugin host; the next batch gets a fresh
        // instance.
        let _ = self.runtime.block_on(self.plugin.observe(&batch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Dialect;
    use crate::context::RequestContext;

    #[test]
    fn the_plugin_event_carries_who_called_and_what_answered() {
        let mut c = RequestContext::new("r1".into(), Dialect::Anthropic);
        c.model = "fast".into();
        c.who.agent = Some(std::sync::Arc::from("Alice agent"));
        c.served.provider = Some("openai".into());
        c.served.upstream_model = Some("gpt-4o".into());
        let mut event = c.event(200, None);
        // The account comes from a verified token; the event carries it as a string.
        event.account_id = Some("eip155:1:0xabc".into());
        event.guardrail_findings = vec![crate::observe::GuardrailFinding {
            pattern: "api_keys".into(),
            count: 2,
            action: "redact".into(),
        }];
        let e = convert(&event);
        assert_eq!(e.account.as_deref(), Some("eip155:1:0xabc"));
        assert_eq!(e.agent.as_deref(), Some("Alice agent"));
        assert_eq!(e.route, "fast");
        assert_eq!(e.endpoint.as_deref(), Some("openai:gpt-4o"));
        assert_eq!(e.dialect, "anthropic");
        let findings: Vec<(&str, u32, &str)> = e
            .guardrail_findings
            .iter()
            .map(|f| (f.pattern.as_str(), f.count, f.action.as_str()))
            .collect();
        assert_eq!(findings, [("api_keys", 2, "redact")]);
        // No card, no name: the field stays empty rather than falling back to the account.
        c.who.agent = None;
        assert_eq!(convert(&c.event(200, None)).agent, None);
    }
}

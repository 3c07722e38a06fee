//! The request event: everything known about a request once it is over.

use serde::Serialize;

use crate::spend::{SpendRecord, TokenBreakdown};

/// One failover hop.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AttemptRecord {
    /// `provider:model_id`.
    pub target: String,
    pub duration_ms: f64,
    /// `None` for the attempt that answered.
    pub error_type: Option<String>,
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RequestEvent {
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    /// The virtual model (route) the caller named; `None` for `provider:model` requests.
    pub route: Option<String>,
    /// The model name exactly as the caller sent it.
    pub requested_model: String,
    pub provider: Option<String>,
    /// The upstream model id.
    pub model: Option<String>,
    pub account_id: Option<String>,
    pub session_id: Option<String>,
    /// The name on the caller's registered agent card, when its account has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The caller's dialect: `openai` or `anthropic`.
    pub dialect: &'static str,
    pub stream: bool,
    pub status: u16,
    pub success: bool,
    pub error_type: Option<String>,
    pub error: Option<String>,
    pub latency_ms: f64,
    /// Time to the first byte of the answer (for streams: the stream's start).
    pub ttfb_ms: Option<f64>,
    /// Time spent waiting on providers (every attempt), so latency − this is our overhead.
    pub upstream_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens: TokenBreakdown,
    pub estimated: bool,
    pub cost_nano_usd: u64,
    pub attempts: Vec<AttemptRecord>,
    /// Guardrail findings (pattern id, count, action); empty until guardrails exist.
    pub guardrail_findings: Vec<GuardrailFinding>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GuardrailFinding {
    pub pattern: String,
    pub count: u32,
    pub action: String,
}

impl RequestEvent {
    /// The time the gateway itself added: end-to-end latency minus time waiting on providers.
    pub fn overhead_ms(&self) -> f64 {
        let total = if self.stream {
            self.ttfb_ms.unwrap_or(self.latency_ms)
        } else {
            self.latency_ms
        };
        (total - self.upstream_ms).max(0.0)
    }
}

/// The ledger row of a finished request.
impl From<&RequestEvent> for SpendRecord {
    fn from(e: &RequestEvent) -> Self {
        SpendRecord {
            id: e.request_id.clone(),
            time_ms: e.time_ms,
            account: e.account_id.clone(),
            session: e.session_id.clone(),
            agent: e.agent.clone(),
            route: e.route.clone(),
            provider: e.provider.clone(),
            model: e.model.clone(),
            tokens: e.tokens,
            cost_nano_usd: e.cost_nano_usd,
            latency_ms: e.latency_ms as u64,
            success: e.success,
            error_type: e.error_type.clone(),
            attempts: e.attempts.len() as u32,
            estimated: e.estimated,
        }
    }
}

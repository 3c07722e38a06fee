//! The request event: everything known about a request once it is over.

use serde::Serialize;

use crate::spend::{SpendRecord, TokenBreakdown};

/// One failover hop.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AttemptRecord {
    /// `provider:model_id`.
    pub target: String,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: f64,
    /// `None` for the attempt that answered.
    pub error_type: Option<String>,
    /// The upstream's HTTP status, when it answered with an error.
    pub status: Option<u16>,
    /// The failure's message; `None` for the attempt that answered.
    pub error: Option<String>,
    /// Milliseconds from the request's arrival to this attempt's start.
    pub start_ms: f64,
    /// The attempt's span id (hex), sent to the provider in `traceparent` (OTLP on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Mid-stream failover: how this attempt joined the stream an earlier one started
    /// (`continue` or `restart`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<&'static str>,
    /// Mid-stream failover: what this attempt cost when it failed after producing part of
    /// the answer (nano-USD); the request's `cost_nano_usd` is the sum over attempts. Set
    /// exactly on the attempts another endpoint carried on from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_nano_usd: Option<u64>,
}

/// Trace and span ids of a request (W3C Trace Context, lowercase hex).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TraceRecord {
    /// The trace: the caller's (`traceparent`), or one the gateway started.
    pub trace_id: String,
    /// The request's span.
    pub span_id: String,
    /// The caller's span, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// Whether the trace is exported.
    pub sampled: bool,
}

/// Everything known about one request once it is over: what observers, the JSONL log and
/// the ledger receive.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RequestEvent {
    /// The gateway's request id (`x-request-id`).
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    /// The virtual model (route) the caller named; `None` for `provider:model` requests.
    pub route: Option<String>,
    /// The model name exactly as the caller sent it.
    pub requested_model: String,
    /// The provider that served the request, or was tried last.
    pub provider: Option<String>,
    /// The upstream model id.
    pub model: Option<String>,
    /// The CAIP-10 account of the verified token; `None` without auth.
    pub account_id: Option<String>,
    /// The token's session (its `jti`, else a hash of it), or the `x-bitrouter-session` header.
    pub session_id: Option<String>,
    /// The name on the caller's registered agent card, when its account has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The caller's dialect, as `api_protocol` names it: `openai`, `openai_responses`, `anthropic` or `google`.
    pub dialect: &'static str,
    /// The caller asked for a stream.
    pub stream: bool,
    /// The HTTP status sent to the caller.
    pub status: u16,
    /// No error reached the caller.
    pub success: bool,
    /// The error's kind (`ErrorKind::as_str`), when it failed.
    pub error_type: Option<String>,
    /// The error message the caller received, when it failed.
    pub error: Option<String>,
    /// End-to-end time, arrival to the last byte, in milliseconds.
    pub latency_ms: f64,
    /// Time to the first byte of the answer (for streams: the stream's start).
    pub ttfb_ms: Option<f64>,
    /// Time spent waiting on providers (every attempt), so latency − this is our overhead.
    pub upstream_ms: f64,
    /// Input tokens charged, cached ones included.
    pub input_tokens: u64,
    /// Output tokens charged, reasoning included.
    pub output_tokens: u64,
    /// The charged tokens by price category.
    pub tokens: TokenBreakdown,
    /// The tokens are partly estimated (a stream cut before the upstream reported usage).
    pub estimated: bool,
    /// What the request cost, in nano-USD (0 when the model has no price).
    pub cost_nano_usd: u64,
    /// Every target tried, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Guardrail findings (pattern id, count, action); empty until guardrails exist.
    pub guardrail_findings: Vec<GuardrailFinding>,
    /// The request's place in a trace (OTLP tracing on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceRecord>,
    /// The host of the endpoint that served the request, or was tried last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    /// Why the model stopped (`stop`, `length`, `tool_calls`, …), when it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<&'static str>,
    /// What the request's budget hold was, in nano-USD (a budgeted caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_reserved_nano_usd: Option<u64>,
    /// The rate limit that refused the request or one of its endpoints (`account:requests`,
    /// `route:tokens`, `provider:requests`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<String>,
    /// Prompt and answer (`observe.otlp.capture_content`, sampled traces only): for the
    /// trace exporter alone, never in the event log.
    #[serde(skip)]
    pub content: Option<Box<crate::observe::content::Content>>,
}

/// How often one pattern fired with one action over a request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GuardrailFinding {
    /// The pattern id.
    pub pattern: String,
    /// Matches in the request and its answer.
    pub count: u32,
    /// `warn`, `redact`, `block`, or `plugin_failed_closed` for a failed plugin that blocks.
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

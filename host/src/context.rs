//! What is known about one request while it runs — attempts, usage, timing — and what it
//! leaves behind when it ends: its log line and its spend ledger row.
//!
//! Who writes what: `dispatch.rs` fills in who is calling (`Identity`), the URL's model and
//! the in-flight gauge before the body is read; from then on `proxy.rs` alone writes the
//! rest (model, route, attempts, usage, budget hold, guardrail tally).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::canonical::{Dialect, Usage};
use crate::error::{Error, ErrorKind};
use crate::observe::metrics::InFlight;
use crate::observe::{AttemptRecord, RequestEvent};
use crate::router::Target;
use crate::spend::{PriceTable, TokenBreakdown, cost_nano_usd};
use crate::stream::JoinMode;

/// One try of one target, kept for the log line and the observe event.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// `provider:model_id`.
    pub target: String,
    /// From sending the request to its answer or failure.
    pub duration: Duration,
    /// `None` when this attempt answered the caller.
    pub error: Option<AttemptError>,
    /// How this attempt joined a stream an earlier attempt started (mid-stream failover).
    pub joined: Option<JoinMode>,
    /// What the attempt cost, when it failed after producing part of a streamed answer.
    pub cost_nano_usd: Option<u64>,
    /// When it started, from the request's arrival.
    pub start: Duration,
    /// Its span id, sent to the provider in `traceparent` (tracing on).
    pub span_id: Option<[u8; 8]>,
}

impl Attempt {
    /// An attempt at `target` that took `duration`; `error` when it failed.
    pub fn new(target: &Target, duration: Duration, error: Option<&Error>) -> Self {
        Attempt {
            target: target.label(),
            duration,
            error: error.map(AttemptError::from),
            joined: None,
            cost_nano_usd: None,
            start: Duration::ZERO,
            span_id: None,
        }
    }

    /// Notes when the attempt started and its span.
    pub fn at(mut self, start: Duration, span_id: Option<[u8; 8]>) -> Self {
        self.start = start;
        self.span_id = span_id;
        self
    }
}

impl From<&Error> for AttemptError {
    fn from(e: &Error) -> Self {
        AttemptError {
            kind: e.kind(),
            status: e.upstream().map(|u| u.status.as_u16()),
            message: e.message().to_owned(),
        }
    }
}

/// What the earlier attempts of a stream that failed over mid-stream produced and cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Carried {
    /// Their usage, summed (estimated where they were cut before reporting it).
    pub usage: Usage,
    /// Their cost, each at its own endpoint's prices.
    pub cost_nano_usd: u64,
    /// Some of it was estimated.
    pub estimated: bool,
    /// The part of `cost_nano_usd` already settled against the budget holds the earlier
    /// attempts ran under (each attempt's hold is settled when the next is taken).
    pub settled_nano_usd: u64,
}

/// Why an attempt failed.
#[derive(Clone, Debug)]
pub struct AttemptError {
    /// The failure's kind, which decides failover.
    pub kind: ErrorKind,
    /// The upstream's HTTP status, when it answered with an error.
    pub status: Option<u16>,
    /// What went wrong, for the log and the observe event.
    pub message: String,
}

/// Who is calling. Written once, when the request is let in (`dispatch.rs`); the caller is
/// held in one place and account and session are read from it.
#[derive(Debug, Default)]
pub struct Identity {
    /// The verified token when auth is on: its caller (account, session, scope, budget) and
    /// its compiled `models` allowlist.
    pub token: Option<Arc<crate::auth::Verified>>,
    /// A caller without a token: the library's test hook (`Gateway::set_caller_for_tests`).
    pub untokened: Option<Arc<crate::caller::Caller>>,
    /// The caller's registered agent name (agent cards), looked up once per request.
    pub agent: Option<Arc<str>>,
    /// The session a caller without a verified one named (`x-bitrouter-session`).
    pub session_header: Option<String>,
}

impl Identity {
    /// The verified caller, if any.
    pub fn caller(&self) -> Option<&Arc<crate::caller::Caller>> {
        self.token
            .as_ref()
            .map(|t| &t.caller)
            .or(self.untokened.as_ref())
    }

    /// The account a verified token names (the ledger's account column).
    pub fn account(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.caller.account.as_str())
    }

    /// The token's session, else the one the caller named in a header.
    pub fn session(&self) -> Option<&str> {
        match &self.token {
            Some(t) => Some(t.caller.session.as_str()),
            None => self.session_header.as_deref(),
        }
    }
}

/// The endpoint answering the request (or tried last) and what its answer has said so far:
/// set by [`RequestContext::trying`] when an attempt starts, then filled in by the proxy and
/// the stream relay as the answer comes; what a stream cut short is charged is computed from
/// it here ([`Served::billed_usage`]).
#[derive(Debug, Default)]
pub struct Served {
    /// The target that served the request, or was tried last.
    pub provider: Option<String>,
    /// The upstream model id of that target.
    pub upstream_model: Option<String>,
    /// That target's prices, per token.
    pub prices: Option<PriceTable>,
    /// Usage the upstream reported, as last known.
    pub usage: Option<Usage>,
    /// The answer arrived whole (JSON, or a stream that finished its message).
    pub complete: bool,
    /// Prompt size estimate and bytes of content streamed so far, for charging a stream
    /// that ends before the upstream reports usage.
    pub input_estimate: u64,
    /// Bytes of answer content streamed to the caller so far.
    pub output_bytes: u64,
    /// Time until the first byte of the answer went to the caller.
    pub ttfb: Option<Duration>,
    /// Why the model stopped, when it said.
    pub finish_reason: Option<&'static str>,
    /// The host of the endpoint tried last.
    pub server_address: Option<String>,
}

impl Served {
    /// Tokens to charge, and whether they are an estimate. A complete answer is charged from
    /// the upstream's usage; a stream cut short is charged for what was produced — the
    /// upstream's figures where it sent them, else 4 bytes per token (flagged as estimated).
    pub fn billed_tokens(&self) -> (TokenBreakdown, bool) {
        let (u, estimated) = self.billed_usage();
        (TokenBreakdown::from_usage(&u), estimated)
    }

    /// The current attempt's usage to charge, and whether it is an estimate (see
    /// `billed_tokens`).
    pub fn billed_usage(&self) -> (Usage, bool) {
        if self.complete || (self.usage.is_none() && self.output_bytes == 0) {
            return (self.usage.unwrap_or_default(), false);
        }
        let mut u = self.usage.unwrap_or_default();
        let produced = self.output_bytes.div_ceil(4);
        let estimated = self.usage.is_none() || produced > u.output_tokens;
        u.output_tokens = u.output_tokens.max(produced);
        if u.input_tokens == 0 {
            u.input_tokens = self.input_estimate;
        }
        (u, estimated)
    }

    /// The current attempt's cost at its endpoint's prices.
    pub fn cost_nano_usd(&self) -> u64 {
        let (tokens, _) = self.billed_tokens();
        self.prices.map(|p| cost_nano_usd(&tokens, &p)).unwrap_or(0)
    }
}

/// The caller's budget while the request runs: the proxy's budget step holds it, the relay
/// or the proxy settles it.
#[derive(Debug, Default)]
pub struct BudgetState {
    /// The caller's hold on its budget while the request runs; dropped unsettled, it is
    /// released.
    pub hold: Option<crate::budget::Reservation>,
    /// What is left of the caller's budget, as last known (micro-USD).
    pub remaining: Option<u64>,
    /// The budget hold taken for the request, nano-USD.
    pub reserved_nano_usd: Option<u64>,
}

/// What is known about one request while it runs; it becomes the log line, the observe
/// event and the ledger row.
#[derive(Debug)]
pub struct RequestContext {
    /// The request id (`x-request-id`).
    pub id: String,
    /// The dialect the caller speaks.
    pub dialect: Dialect,
    /// The model name the caller asked for.
    pub model: String,
    /// The route (virtual model) the model name resolved to; `None` for `provider:model`.
    pub route: Option<String>,
    /// The caller asked for a stream.
    pub stream: bool,
    /// When the request arrived, for latency.
    pub started: Instant,
    /// Wall-clock start, Unix milliseconds (the ledger's time column).
    pub time_ms: i64,
    /// Who is calling.
    pub who: Identity,
    /// Every target tried, in order.
    pub attempts: Vec<Attempt>,
    /// The endpoint answering and what its answer said so far.
    pub served: Served,
    /// The caller's budget while the request runs.
    pub budget: BudgetState,
    /// Holds the request in the in-flight gauge until the context is dropped.
    pub in_flight: Option<InFlight>,
    /// What the guardrail firewall found and did, both directions.
    pub guardrail: crate::guardrails::Tally,
    /// Model and stream flag from the URL, for dialects that put them there (Gemini).
    pub url_model: Option<crate::api::UrlModel>,
    /// Earlier attempts of a stream that failed over mid-stream; `usage`, `output_bytes`
    /// and `prices` are the current attempt's alone.
    pub carried: Carried,
    /// Rate limits: the caller's headroom, token holds, what refused it.
    pub rate: crate::ratelimit::RequestRate,
    /// The request's trace (OTLP tracing on).
    pub trace: Option<crate::observe::trace_context::RequestTrace>,
    /// Prompt and answer being captured for the trace (`observe.otlp.capture_content`).
    pub content: Option<Box<crate::observe::content::Capture>>,
}

impl RequestContext {
    /// A context for a request that just arrived.
    pub fn new(id: String, dialect: Dialect) -> Self {
        RequestContext {
            id,
            dialect,
            model: String::new(),
            route: None,
            stream: false,
            started: Instant::now(),
            time_ms: crate::spend::query_now_ms(),
            who: Identity::default(),
            attempts: Vec::new(),
            served: Served::default(),
            budget: BudgetState::default(),
            in_flight: None,
            guardrail: crate::guardrails::Tally::default(),
            url_model: None,
            carried: Carried::default(),
            rate: Default::default(),
            trace: None,
            content: None,
        }
    }

    /// Notes the target about to be tried.
    pub fn trying(&mut self, target: &Target) {
        if self.trace.is_some() {
            // Only spans carry it: no allocation per attempt when tracing is off.
            self.served.server_address = target.parsed_url.host_str().map(str::to_owned);
        }
        self.served.provider = Some(target.provider.clone());
        self.served.upstream_model = Some(target.model_id.clone());
        self.served.prices = target.prices;
    }

    fn served_by(&self) -> &str {
        self.attempts
            .last()
            .filter(|a| a.error.is_none())
            .map(|a| a.target.as_str())
            .unwrap_or("-")
    }

    /// Tokens to charge for the current attempt, and whether they are an estimate
    /// ([`Served::billed_tokens`]).
    pub fn billed_tokens(&self) -> (TokenBreakdown, bool) {
        self.served.billed_tokens()
    }

    /// The current attempt's usage to charge ([`Served::billed_usage`]).
    pub fn billed_usage(&self) -> (Usage, bool) {
        self.served.billed_usage()
    }

    /// The current attempt's cost at its endpoint's prices.
    pub fn attempt_cost_nano_usd(&self) -> u64 {
        self.served.cost_nano_usd()
    }

    /// Closes the current attempt of a stream that failed mid-stream: its usage and cost
    /// join the carried ones, and returns its cost; the next attempt starts from zero.
    pub fn carry_attempt(&mut self) -> u64 {
        let (usage, estimated) = self.billed_usage();
        let cost = self.attempt_cost_nano_usd();
        self.carried = Carried {
            usage: crate::stream::sum_usage(self.carried.usage, usage),
            cost_nano_usd: self.carried.cost_nano_usd + cost,
            estimated: self.carried.estimated || estimated,
            settled_nano_usd: self.carried.settled_nano_usd,
        };
        self.served.usage = None;
        self.served.output_bytes = 0;
        cost
    }

    /// The request event: everything about this request, once it is over.
    pub fn event(&self, status: u16, error: Option<&Error>) -> RequestEvent {
        let (usage, estimated) = self.billed_usage();
        let cost = self.attempt_cost_nano_usd() + self.carried.cost_nano_usd;
        let tokens =
            TokenBreakdown::from_usage(&crate::stream::sum_usage(self.carried.usage, usage));
        let estimated = estimated || self.carried.estimated;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        RequestEvent {
            request_id: self.id.clone(),
            time_ms: self.time_ms,
            route: self.route.clone(),
            requested_model: self.model.clone(),
            provider: self.served.provider.clone(),
            model: self.served.upstream_model.clone(),
            account_id: self.who.account().map(str::to_owned),
            agent: self.who.agent.as_deref().map(str::to_owned),
            session_id: self.who.session().map(str::to_owned),
            dialect: self.dialect.as_str(),
            stream: self.stream,
            status,
            success: error.is_none(),
            error_type: error.map(|e| e.kind().as_str().to_owned()),
            error: error.map(|e| e.message().to_owned()),
            latency_ms: ms(self.started.elapsed()),
            ttfb_ms: self.served.ttfb.map(ms),
            upstream_ms: self.attempts.iter().map(|a| ms(a.duration)).sum(),
            input_tokens: tokens.input_total(),
            output_tokens: tokens.output_total(),
            cost_nano_usd: cost,
            tokens,
            estimated,
            attempts: self
                .attempts
                .iter()
                .map(|a| AttemptRecord {
                    target: a.target.clone(),
                    duration_ms: ms(a.duration),
                    error_type: a.error.as_ref().map(|e| e.kind.as_str().to_owned()),
                    status: a.error.as_ref().and_then(|e| e.status),
                    error: a.error.as_ref().map(|e| e.message.clone()),
                    joined: a.joined.map(JoinMode::as_str),
                    cost_nano_usd: a.cost_nano_usd,
                    start_ms: ms(a.start),
                    span_id: a.span_id.map(hex::encode),
                })
                .collect(),
            guardrail_findings: self.guardrail.findings(),
            rate_limited: self.rate.limited.clone(),
            trace: self.trace.as_ref().map(|t| crate::observe::TraceRecord {
                trace_id: hex::encode(t.trace_id),
                span_id: hex::encode(t.span_id),
                parent_span_id: t.parent_span_id.map(hex::encode),
                sampled: t.sampled,
            }),
            server_address: self.served.server_address.clone(),
            finish_reason: self.served.finish_reason,
            budget_reserved_nano_usd: self.budget.reserved_nano_usd,
            content: self
                .content
                .as_ref()
                .map(|c| Box::new(c.finish(self.served.finish_reason))),
        }
    }

    /// The request's one log line.
    pub fn log(&self, status: u16, error: Option<&Error>) {
        let usage = self.served.usage.unwrap_or_default();
        tracing::info!(
            request_id = %self.id,
            dialect = self.dialect.as_str(),
            model = %self.model,
            route = self.route.as_deref().unwrap_or("-"),
            served_by = self.served_by(),
            stream = self.stream,
            status,
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            ttfb_ms = self.served.ttfb.map(|t| t.as_secs_f64() * 1000.0),
            attempts = self.attempts.len(),
            input_tokens = usage.input_tokens,
            output_tokens = usage.output_tokens,
            error_type = error.map(|e| e.kind().as_str()),
            error = error.map(|e| e.message()),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_streams_are_charged_for_what_was_produced() {
        let mut c = RequestContext::new("r".into(), Dialect::OpenAiChat);
        c.served.input_estimate = 100;
        c.served.output_bytes = 41;
        assert_eq!(
            c.billed_tokens(),
            (
                TokenBreakdown {
                    input_no_cache: 100,
                    output_text: 11,
                    ..Default::default()
                },
                true
            )
        );
        // Anthropic sent input usage in message_start, then the stream was cut.
        c.served.usage = Some(Usage {
            input_tokens: 80,
            output_tokens: 1,
            ..Default::default()
        });
        assert_eq!(
            c.billed_tokens(),
            (
                TokenBreakdown {
                    input_no_cache: 80,
                    output_text: 11,
                    ..Default::default()
                },
                true
            )
        );
        // A complete answer is charged from usage alone.
        c.served.complete = true;
        assert_eq!(
            c.billed_tokens(),
            (
                TokenBreakdown {
                    input_no_cache: 80,
                    output_text: 1,
                    ..Default::default()
                },
                false
            )
        );
        // A failure that produced nothing costs nothing.
        let c = RequestContext::new("r".into(), Dialect::OpenAiChat);
        assert_eq!(c.billed_tokens(), (TokenBreakdown::default(), false));
    }
}

//! Mid-stream failover: when a stream's upstream cuts, stalls or errors after content
//! reached the caller, the next endpoints of the plan are asked — in order, like failover
//! before the first byte — to carry the answer on, and the first that starts streaming is
//! joined into the same client stream (`stream::Relay` does the joining).
//!
//! How an endpoint is asked:
//! - `continue`: the request, plus what the caller already has as the assistant's partial
//!   answer. Anthropic and Gemini continue a trailing assistant turn (prefill); OpenAI's
//!   APIs answer one with a new message, so they also get a user turn asking to continue.
//!   The output cap shrinks by what was produced. An endpoint that refuses the prefill
//!   (HTTP 400) is asked again, from the start.
//! - `restart`: the request as it came. Chosen when nothing but whitespace or reasoning
//!   was streamed, when the caller asked (`x-bitrouter-mid-stream: restart`, under
//!   `mid_stream_failover: restart`), and whenever the caller already holds a whole tool
//!   call: neither dialect family takes an assistant turn ending in a call without its
//!   result, so the answer is asked for again and the calls the caller has are not sent
//!   twice.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

use super::{Answer, Attempt, Health, refused_by, try_adapted_stream, try_stream};
use crate::budget::{BudgetError, Budgets};
use crate::canonical::{Message, Protocol, Request, Role};
use crate::config::MidStream;
use crate::context::RequestContext;
use crate::error::Error;
use crate::observe::trace_context;
use crate::plugins::Adapters;
use crate::ratelimit::RateLimits;
use crate::router::Target;
use crate::stream::{JoinMode, Partial, Resumed};
use crate::upstream::Upstream;

/// The header a caller sets to `restart` to have a broken stream started over rather than
/// continued (under `mid_stream_failover: restart`).
pub const MID_STREAM_HEADER: &str = "x-bitrouter-mid-stream";

/// What an OpenAI-dialect endpoint is told after the partial answer: it does not continue
/// a trailing assistant turn by itself.
const CONTINUE_INSTRUCTION: &str = "Your previous answer was cut off. Continue it exactly where it stops, without repeating any of it and without mentioning the interruption.";

/// Whether the caller asked for `restart` on a mid-stream failure.
pub(super) fn restart_asked(headers: &HeaderMap) -> bool {
    headers
        .get(MID_STREAM_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"restart"))
}

/// Everything a stream needs to be carried on by the endpoints after the one answering.
pub(crate) struct Resumer {
    pub(super) upstream: Upstream,
    pub(super) adapters: Arc<Adapters>,
    /// The request as the first endpoint got it (redacted, output cap set).
    pub(super) request: Request,
    /// The plan's endpoints not tried yet, in order.
    pub(super) targets: Vec<Arc<Target>>,
    /// Same-dialect passthrough headers.
    pub(super) extra: HeaderMap,
    pub(super) mode: MidStream,
    pub(super) restart_asked: bool,
    pub(super) budgets: Budgets,
    pub(super) rate_limits: Arc<RateLimits>,
    /// The plan's route, for its rate limits.
    pub(super) route: Option<String>,
    pub(super) default_max_output: u64,
    pub(super) default_max_input: u64,
}

impl Resumer {
    /// The endpoint of `health` failed with `error` after the caller got `partial`:
    /// accounts for that attempt and tries the rest of the plan until one streams.
    pub(super) async fn resume(
        &mut self,
        ctx: &mut RequestContext,
        health: &mut Health,
        partial: &Partial,
        error: &Error,
    ) -> Option<Resumed> {
        if !super::stream_log::is_endpoint_failure(error) || self.targets.is_empty() {
            return None;
        }
        // The broken attempt counts against its endpoint and is charged for what it made.
        health.stream_ended(Err(error));
        // The relay counts bytes as they are encoded, behind the guard's hold-back; the
        // splice saw all the attempt produced.
        ctx.served.output_bytes = ctx.served.output_bytes.max(partial.attempt_bytes);
        let cost = ctx.carry_attempt();
        if let Some(last) = ctx.attempts.last_mut() {
            last.error = Some(error.into());
            last.cost_nano_usd = Some(cost);
        }
        tracing::info!(request_id = %ctx.id, target = %health.target.label(), error = %error, "stream failed mid-way; failing over");
        while !self.targets.is_empty() {
            let target = self.targets.remove(0);
            if let Some(why) = refused_by(&self.request, &target) {
                ctx.attempts.push(Attempt::new(
                    &target,
                    std::time::Duration::ZERO,
                    Some(&Error::bad_request(why)),
                ));
                continue;
            }
            let prefill = match target.protocol {
                Protocol::Native(d) => crate::api::continues_prefill(d),
                Protocol::Adapter => false,
            };
            let mut mode = self.join_mode(partial);
            loop {
                let mut request = match mode {
                    JoinMode::Restart => self.request.clone(),
                    JoinMode::Continue => continuation(&self.request, partial, prefill),
                };
                match self.admit_rate(ctx, &request, &target).await {
                    RateStep::Go => {}
                    RateStep::Skip => break,
                    RateStep::Stop => return None,
                }
                if !self.reserve(ctx, &mut request, &target).await {
                    return None;
                }
                ctx.trying(&target);
                // Traced like the first attempts: its own span, named in its `traceparent`.
                let span = ctx.trace.as_ref().map(|_| trace_context::span_id());
                let trace_headers = match (&ctx.trace, span) {
                    (Some(t), Some(s)) => t.headers_for(s),
                    _ => HeaderMap::new(),
                };
                let offset = ctx.started.elapsed();
                let started = Instant::now();
                let outcome = self
                    .attempt(&request, &target, ctx.dialect, trace_headers)
                    .await;
                let mut attempt = Attempt::new(&target, started.elapsed(), outcome.as_ref().err())
                    .at(offset, span);
                attempt.joined = Some(mode);
                match outcome {
                    Ok(Answer::Stream {
                        events,
                        first,
                        idle,
                        total,
                        ..
                    }) => {
                        ctx.attempts.push(attempt);
                        health.target = target;
                        return Some(Resumed {
                            upstream: events,
                            first,
                            mode,
                            carried: ctx.carried.usage,
                            idle,
                            total,
                        });
                    }
                    // A streamed request is always answered as a stream.
                    Ok(Answer::Json { .. }) => break,
                    Err(e) => {
                        let refused_prefill = mode == JoinMode::Continue
                            && prefill
                            && e.upstream().is_some_and(|u| u.status.as_u16() == 400);
                        if let Some(err) = attempt.error.as_mut()
                            && refused_prefill
                        {
                            err.message.push_str(
                                " (the endpoint refused the partial answer as prefill; asked again to start over)",
                            );
                        }
                        ctx.attempts.push(attempt);
                        if refused_prefill {
                            mode = JoinMode::Restart;
                            continue;
                        }
                        if e.is_retryable() {
                            super::count_failure(&target, &e, health.cooldown);
                        }
                        tracing::debug!(request_id = %ctx.id, target = %target.label(), error = %e, "mid-stream failover attempt failed");
                        break;
                    }
                }
            }
        }
        None
    }

    fn join_mode(&self, partial: &Partial) -> JoinMode {
        let restart = partial.is_blank()
            || !partial.tool_calls.is_empty()
            || (self.mode == MidStream::Restart && self.restart_asked);
        if restart {
            JoinMode::Restart
        } else {
            JoinMode::Continue
        }
    }

    async fn attempt(
        &self,
        request: &Request,
        target: &Target,
        dialect: crate::canonical::Dialect,
        trace_headers: HeaderMap,
    ) -> Result<Answer, Error> {
        match target.protocol {
            Protocol::Native(upstream) => {
                try_stream(
                    &self.upstream,
                    request,
                    target,
                    upstream,
                    dialect,
                    super::upstream_headers(upstream, dialect, &self.extra, trace_headers),
                )
                .await
            }
            Protocol::Adapter => match self.adapters.get(&target.provider) {
                Some(a) => {
                    try_adapted_stream(&self.upstream, request, target, a, dialect, trace_headers)
                        .await
                }
                None => Err(super::no_adapter(target)),
            },
        }
    }

    /// Takes what `request` at `target` may use from the rate limits before it is sent:
    /// its worst-case tokens from the caller's tokens limits (the first attempt's
    /// reservation did not cover a continuation's longer prompt; all of a request's holds
    /// are settled together to what it used), and a request and those tokens from the
    /// provider's quota, whose endpoint is skipped when it is spent, as before the stream.
    async fn admit_rate(
        &self,
        ctx: &mut RequestContext,
        request: &Request,
        target: &Arc<Target>,
    ) -> RateStep {
        let worst = || {
            super::worst_tokens(
                request,
                std::slice::from_ref(target),
                self.default_max_input,
                self.default_max_output,
            )
        };
        if super::take_provider_quota(&self.rate_limits, ctx, target, worst)
            .await
            .is_err()
        {
            return RateStep::Skip;
        }
        let limits = self
            .rate_limits
            .limits_for(ctx.who.caller().map(Arc::as_ref), self.route.as_deref());
        if !limits.count_tokens() {
            return RateStep::Go;
        }
        match self.rate_limits.reserve_tokens(limits, worst()).await {
            Ok(a) => {
                ctx.rate.holds.extend(a.holds);
                RateStep::Go
            }
            Err(r) => {
                tracing::info!(request_id = %ctx.id, error = %r.error, "the caller's tokens limit cannot cover a mid-stream failover");
                RateStep::Stop
            }
        }
    }

    /// Holds the caller's budget for `request` at `target` before it is sent; what the
    /// earlier attempts cost is settled against the hold they ran under. `false` when the
    /// budget cannot cover it (the stream then ends with its failure).
    async fn reserve(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
        target: &Arc<Target>,
    ) -> bool {
        let held = self
            .budgets
            .hold_for(
                ctx.who.caller().map(Arc::as_ref),
                request,
                std::slice::from_ref(target),
                self.default_max_output,
                self.default_max_input,
            )
            .await;
        let next = match held {
            Ok(None) => return true,
            Ok(Some(r)) => r,
            Err(BudgetError::Exceeded(e)) => {
                ctx.budget.remaining = Some(e.remaining.remaining_micro_usd);
                tracing::info!(request_id = %ctx.id, "the budget cannot cover a mid-stream failover");
                return false;
            }
            Err(e) => {
                tracing::warn!(request_id = %ctx.id, error = %e, "cannot hold the budget for a mid-stream failover");
                return false;
            }
        };
        let unsettled = ctx.carried.cost_nano_usd - ctx.carried.settled_nano_usd;
        if let Some(held) = ctx.budget.hold.replace(next) {
            match held.settle(unsettled).await {
                Ok(left) => ctx.budget.remaining = Some(left.remaining_micro_usd),
                Err(e) => {
                    tracing::warn!(request_id = %ctx.id, error = %e, "budget settle failed");
                }
            }
        }
        ctx.carried.settled_nano_usd = ctx.carried.cost_nano_usd;
        true
    }
}

/// What the rate limits say about a continuation at one endpoint.
enum RateStep {
    Go,
    /// The endpoint's provider is at its quota: try the next endpoint.
    Skip,
    /// The caller's own tokens limit cannot cover it: the stream ends with its failure.
    Stop,
}

/// The request that asks an endpoint to carry on from `partial`: the partial answer as the
/// assistant's turn (trailing whitespace trimmed: Anthropic refuses a prefill ending in
/// it, and the join drops a repeat of it), then — where the dialect does not continue a
/// trailing assistant turn — a user turn asking to continue. The output cap is what is
/// left of it (at 4 bytes a token, the gateway's estimate elsewhere too).
fn continuation(request: &Request, partial: &Partial, prefill: bool) -> Request {
    let mut r = request.clone();
    r.messages
        .push(Message::text(Role::Assistant, partial.text.trim_end()));
    if !prefill {
        r.messages
            .push(Message::text(Role::User, CONTINUE_INSTRUCTION));
    }
    if let Some(cap) = r.max_tokens {
        let produced = partial.text.len().div_ceil(4) as u64;
        r.max_tokens = Some(cap.saturating_sub(produced).max(1));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Part;

    fn texts(r: &Request) -> Vec<(Role, String)> {
        r.messages
            .iter()
            .map(|m| {
                let t = m
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                (m.role, t)
            })
            .collect()
    }

    #[test]
    fn a_continuation_carries_the_partial_answer_in_the_dialects_way() {
        let request = Request {
            messages: vec![Message::text(Role::User, "Count to ten.")],
            max_tokens: Some(100),
            ..Default::default()
        };
        let partial = Partial {
            text: "One, two, three, ".into(),
            ..Default::default()
        };
        let r = continuation(&request, &partial, true);
        assert_eq!(
            texts(&r),
            [
                (Role::User, "Count to ten.".to_owned()),
                (Role::Assistant, "One, two, three,".to_owned())
            ]
        );
        assert_eq!(r.max_tokens, Some(100 - 5));
        let r = continuation(&request, &partial, false);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[2].role, Role::User);
        // A cap already spent still asks for something rather than nothing.
        let long = Partial {
            text: "x".repeat(1000),
            ..Default::default()
        };
        assert_eq!(continuation(&request, &long, true).max_tokens, Some(1));
    }

    #[test]
    fn the_restart_header_is_read_case_blind() {
        let mut h = HeaderMap::new();
        assert!(!restart_asked(&h));
        h.insert(MID_STREAM_HEADER, "Restart".parse().unwrap());
        assert!(restart_asked(&h));
        h.insert(MID_STREAM_HEADER, "continue".parse().unwrap());
        assert!(!restart_asked(&h));
    }
}

//! What a stream leaves behind when it ends — or when its caller hangs up first: the
//! endpoint's health (a stream that broke after it started counts against it), the failed
//! attempt, the log line, metrics and ledger row, and the budget settled to what was produced.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::canonical::StreamEvent;
use crate::context::{AttemptError, RequestContext};
use crate::error::{Error, ErrorKind};
use crate::guardrails::Tally;
use crate::outcome::Outcomes;
use crate::router::Target;
use crate::stream::{Partial, RelayObserver, Resumed};

/// The endpoint that answered, whose health the answer's end reports.
pub(super) struct Health {
    pub(super) target: Arc<Target>,
    pub(super) cooldown: crate::config::Cooldown,
}

impl Health {
    /// A stream reports when it ends: one that started and then broke, stalled or sent an
    /// error counts against its endpoint like a refused request, so an endpoint that cuts
    /// every stream cools down instead of keeping the traffic.
    pub(super) fn stream_ended(&self, outcome: Result<(), &Error>) {
        match outcome {
            Ok(()) => self.target.record_success(),
            Err(e) if is_endpoint_failure(e) => self.target.record_failure(self.cooldown),
            // The caller left, or the firewall stopped the answer: not the endpoint's doing.
            Err(_) => {}
        }
    }
}

/// Whether a failure after the answer started is the endpoint's: the kinds failover
/// treats as the endpoint's before the first byte.
pub(super) fn is_endpoint_failure(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Transport
            | ErrorKind::Timeout
            | ErrorKind::RateLimited
            | ErrorKind::Provider
            | ErrorKind::BadUpstreamResponse
    )
}

/// Accounts for a stream when it ends, or when the caller hangs up first.
pub(super) struct StreamLog {
    pub(super) ctx: Option<RequestContext>,
    pub(super) outcomes: Arc<Outcomes>,
    pub(super) health: Health,
    /// Where the stream's token reservations are settled.
    pub(super) rate_limits: Arc<crate::ratelimit::RateLimits>,
    /// Mid-stream failover: the endpoints that may carry the stream on.
    pub(super) resume: Option<super::Resumer>,
}

impl RelayObserver for StreamLog {
    fn guarded(&mut self, tally: &Tally) {
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.guardrail.merge(tally);
        }
    }

    fn event(&mut self, event: &StreamEvent) {
        let Some(ctx) = self.ctx.as_mut() else { return };
        if let Some(c) = ctx.content.as_mut() {
            c.event(event);
        }
        match event {
            // After a mid-stream failover the caller's usage includes the earlier
            // attempts' (carried); the context keeps the current attempt's own.
            StreamEvent::Usage(u) => {
                ctx.served.usage = Some(crate::stream::usage_less(*u, ctx.carried.usage));
            }
            StreamEvent::TextDelta(t) | StreamEvent::ReasoningDelta(t) => {
                ctx.served.output_bytes += t.len() as u64;
            }
            StreamEvent::ToolCallDelta { arguments, .. } => {
                ctx.served.output_bytes += arguments.len() as u64;
            }
            StreamEvent::Finish(f) => ctx.served.finish_reason = Some(f.as_str()),
            _ => {}
        }
    }

    fn resume<'a>(
        &'a mut self,
        partial: &'a Partial,
        error: &'a Error,
    ) -> BoxFuture<'a, Option<Resumed>> {
        Box::pin(async move {
            let (Some(ctx), Some(resumer)) = (self.ctx.as_mut(), self.resume.as_mut()) else {
                return None;
            };
            resumer.resume(ctx, &mut self.health, partial, error).await
        })
    }

    fn end(&mut self, outcome: Result<(), &Error>) -> Option<BoxFuture<'static, ()>> {
        let mut ctx = self.ctx.take()?;
        ctx.served.complete = outcome.is_ok();
        // A failure that a mid-stream failover already accounted for (its attempts all
        // failed) is not counted twice.
        let accounted = outcome.is_err() && ctx.attempts.last().is_some_and(|a| a.error.is_some());
        if !accounted {
            self.health.stream_ended(outcome);
            if let (Err(e), Some(last)) = (outcome, ctx.attempts.last_mut()) {
                // The attempt that answered is the one that failed.
                last.error = Some(AttemptError::from(e));
            }
        }
        let row = self.outcomes.finish(&ctx, 200, outcome.err());
        self.rate_limits
            .settle_request(&mut ctx.rate, &row, ctx.served.provider.as_deref());
        let outcomes = self.outcomes.clone();
        let budget = ctx.budget.hold.take();
        // Earlier attempts were settled against their own holds.
        let unsettled = row
            .cost_nano_usd
            .saturating_sub(ctx.carried.settled_nano_usd);
        Some(Box::pin(async move {
            if let Some(r) = budget
                && let Err(e) = r.settle(unsettled).await
            {
                tracing::warn!(request_id = %row.id, error = %e, "budget settle failed");
            }
            outcomes.ledger.record(row).await;
        }))
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            // The caller is gone, so nothing can wait for the write.
            let e = Error::new(
                ErrorKind::ClientClosed,
                "the caller closed the stream before it ended; upstream request cancelled",
            );
            let mut ctx = ctx;
            let row = self.outcomes.finish(&ctx, 499, Some(&e));
            self.rate_limits
                .settle_request(&mut ctx.rate, &row, ctx.served.provider.as_deref());
            // Charged for what was produced before the caller left.
            if let Some(r) = ctx.budget.hold.take() {
                r.settle_detached(
                    row.cost_nano_usd
                        .saturating_sub(ctx.carried.settled_nano_usd),
                );
            }
            self.outcomes.ledger.record_now(row);
        }
    }
}

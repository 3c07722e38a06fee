//! One model call, start to finish: decode the caller's dialect, plan the targets, try them
//! in order (failing over on transport errors, timeouts, 429 and 5xx — for streams, until
//! the first event is in hand), and answer in the caller's dialect.

mod attempt;
mod resume;
mod stream_log;

use attempt::{Answer, encode_for, no_adapter, refused_by, try_adapted_stream, try_stream};

use resume::Resumer;
use stream_log::{Health, StreamLog};

use std::convert::Infallible;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};

use std::sync::Arc;

use crate::api;
use crate::budget::{BudgetError, Budgets};
use crate::canonical::{Dialect, Request};
use crate::config::MidStream;
pub use crate::context::{Attempt, AttemptError, RequestContext};
use crate::error::{Error, ErrorKind};
use crate::guardrails::{GuardrailEngine, StreamGuard, Tally};
use crate::observe::content::Capture;
use crate::observe::trace_context::{self, RequestTrace};
use crate::outcome::Outcomes;
use crate::plugins::{AdapterPlugin, Adapters};
use crate::ratelimit::RateLimits;
use crate::respond::{Body, error_response, json_response};
use crate::router::{Protocol, Router, Target};
use crate::stream::Relay;
use crate::upstream::{Upstream, read_body};

/// Handles model calls for every dialect.
pub struct Proxy {
    /// Model name → targets, with each target's health.
    pub router: Router,
    upstream: Upstream,
    /// Where finished requests go: log, metrics, ledger, observers.
    pub outcomes: Arc<Outcomes>,
    /// Swapped whole on plugin reload; a request keeps the engine it started with.
    guardrails: std::sync::RwLock<Arc<GuardrailEngine>>,
    /// Provider name → its adapter plugin (`api_protocol: plugin`); swapped on reload too.
    adapters: std::sync::RwLock<Arc<Adapters>>,
    /// Token-carried budgets: reservations and settlement.
    pub budgets: Budgets,
    /// Requests and tokens per minute (`rate_limits`, claims `rpm` / `tpm`).
    pub rate_limits: Arc<RateLimits>,
    /// Output tokens reserved (and sent upstream as the cap) for a budgeted request
    /// without `max_tokens`.
    default_max_output: u64,
    /// Input tokens reserved for what a request only refers to, where the model's context
    /// window is not known.
    default_max_input: u64,
}

impl Proxy {
    /// A proxy over `router`'s targets; `settings` are the config's `budgets:`.
    pub fn new(
        router: Router,
        upstream: Upstream,
        outcomes: Arc<Outcomes>,
        guardrails: Arc<GuardrailEngine>,
        budgets: Budgets,
        settings: crate::config::BudgetSettings,
    ) -> Self {
        Proxy {
            router,
            upstream,
            outcomes,
            guardrails: std::sync::RwLock::new(guardrails),
            adapters: std::sync::RwLock::new(Arc::default()),
            budgets,
            rate_limits: RateLimits::memory(),
            default_max_output: settings.default_max_output_tokens,
            default_max_input: settings.default_max_input_tokens,
        }
    }

    /// The adapters new requests use.
    pub fn adapters(&self) -> Arc<Adapters> {
        self.adapters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs (re)loaded adapters; requests in flight finish with the old ones.
    pub fn set_adapters(&self, adapters: Arc<Adapters>) {
        *self.adapters.write().unwrap_or_else(|p| p.into_inner()) = adapters;
    }

    /// The firewall new requests use.
    pub fn guardrails(&self) -> Arc<GuardrailEngine> {
        self.guardrails
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a reloaded firewall; requests in flight finish with the old one.
    pub fn set_guardrails(&self, engine: Arc<GuardrailEngine>) {
        *self.guardrails.write().unwrap_or_else(|p| p.into_inner()) = engine;
    }

    /// Ends a request that failed: log line, ledger row, budget settled to what the failure
    /// cost (usually nothing), error in the caller's dialect.
    pub async fn fail(&self, ctx: &mut RequestContext, e: Error) -> Response<Body> {
        let row = self.outcomes.finish(ctx, e.status().as_u16(), Some(&e));
        self.rate_limits
            .settle_request(&mut ctx.rate, &row, ctx.served.provider.as_deref());
        let remaining = self.settle_budget(ctx, row.cost_nano_usd).await;
        self.outcomes.ledger.record(row).await;
        let mut response = error_response(ctx.dialect, &e);
        budget_header(&mut response, remaining);
        rate_headers(&mut response, &ctx.rate);
        response
    }

    /// Lets the request in under the caller's rate limits, or refuses it (429, or 503 for a
    /// store that cannot be reached). A tokens limit reserves the request's worst case, so,
    /// as for budgets, a request without an output cap gets the one it was reserved for.
    async fn admit_rate(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
        plan: &crate::router::Plan,
    ) -> Result<(), Error> {
        let limits = self
            .rate_limits
            .limits_for(ctx.who.caller().map(Arc::as_ref), plan.route.as_deref());
        if limits.is_empty() {
            return Ok(());
        }
        let worst = if limits.count_tokens() {
            request.max_tokens.get_or_insert(self.default_max_output);
            self.worst_tokens(request, &plan.targets)
        } else {
            0
        };
        match self.rate_limits.admit(limits, worst).await {
            Ok(a) => {
                ctx.rate.headroom = Some(a.headroom);
                ctx.rate.holds.extend(a.holds);
                Ok(())
            }
            Err(r) => {
                ctx.rate.refused(&r);
                Err(r.error)
            }
        }
    }

    /// The most tokens `request` can use at any of `targets`.
    fn worst_tokens(&self, request: &Request, targets: &[Arc<Target>]) -> u64 {
        worst_tokens(
            request,
            targets,
            self.default_max_input,
            self.default_max_output,
        )
    }

    /// Settles the request's reservation to `cost` and returns what is left of the budget
    /// (micro-USD) for the response header; `None` for a caller without a budget.
    async fn settle_budget(&self, ctx: &mut RequestContext, cost: u64) -> Option<u64> {
        if let Some(r) = ctx.budget.hold.take() {
            match r.settle(cost).await {
                Ok(left) => ctx.budget.remaining = Some(left.remaining_micro_usd),
                Err(e) => tracing::warn!(request_id = %ctx.id, error = %e, "budget settle failed"),
            }
        } else if ctx.budget.remaining.is_none()
            && let Some((claim, id)) = ctx.who.caller().and_then(|c| c.budget_key())
        {
            // Failed before its budget was looked at (bad request, unknown model).
            ctx.budget.remaining = self
                .budgets
                .remaining(id, &claim)
                .await
                .ok()
                .map(|r| r.remaining_micro_usd);
        }
        ctx.budget.remaining
    }

    /// Reserves the request's worst case at the dearest endpoint of its plan. One
    /// reservation covers every failover attempt: a second round trip to a shared store per
    /// attempt would cost more than the over-reservation it saves. A budgeted request without
    /// an output cap gets the cap it was reserved for, so no answer can cost more than its
    /// reservation.
    async fn reserve_budget(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
        targets: &[Arc<Target>],
    ) -> Result<(), Error> {
        let held = self
            .budgets
            .hold_for(
                ctx.who.caller().map(Arc::as_ref),
                request,
                targets,
                self.default_max_output,
                self.default_max_input,
            )
            .await;
        match held {
            Ok(None) => Ok(()),
            Ok(Some(r)) => {
                ctx.budget.remaining = Some(r.remaining().remaining_micro_usd);
                ctx.budget.reserved_nano_usd = Some(r.amount_nano_usd());
                ctx.budget.hold = Some(r);
                Ok(())
            }
            Err(BudgetError::Exceeded(e)) => {
                ctx.budget.remaining = Some(e.remaining.remaining_micro_usd);
                Err(e.to_error())
            }
            Err(e) => Err(Error::new(
                ErrorKind::NotConfigured,
                format!("cannot check the caller's budget: {e}"),
            )),
        }
    }

    /// Serves one model call whose body has been read.
    pub async fn model_call(
        &self,
        mut ctx: RequestContext,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let dialect = ctx.dialect;
        let mut request = match api::decode_request_at(dialect, body, ctx.url_model.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(
                        &mut ctx,
                        Error::bad_request(format!("invalid request: {e}")),
                    )
                    .await;
            }
        };
        ctx.model = request.model.clone();
        if let Some(ratio) = self.outcomes.trace_ratio {
            ctx.trace = Some(RequestTrace::start(headers, ratio));
        }
        ctx.stream = request.stream;
        // A verified token's session wins over a header the caller picked.
        if ctx.who.caller().is_none() {
            ctx.who.session_header = session_id(headers);
        }
        if let Some(t) = &ctx.who.token
            && let Err(e) = t.check_model(&request.model)
        {
            return self.fail(&mut ctx, e.to_error()).await;
        }
        if request.stream {
            ctx.served.input_estimate = request.estimate_input_tokens();
        }
        let plan = match self.router.plan(&request.model) {
            Ok(p) => p,
            Err(e) => return self.fail(&mut ctx, e).await,
        };
        ctx.route = plan.route.clone();
        // The firewall sees the request after routing (an unknown model is a 404 first) and
        // before any upstream does; redactions change what every upstream receives.
        let guardrails = self.guardrails();
        guardrails
            .inspect_request(&mut request, &mut ctx.guardrail)
            .await;
        if ctx.guardrail.is_blocked() {
            let e = ctx.guardrail.block_error(&guardrails);
            return self.fail(&mut ctx, e).await;
        }
        if self.outcomes.capture_content && ctx.trace.as_ref().is_some_and(|t| t.sampled) {
            ctx.content = Some(Box::new(Capture::new(&request)));
        }
        if let Err(e) = self.admit_rate(&mut ctx, &mut request, &plan).await {
            return self.fail(&mut ctx, e).await;
        }
        if let Err(e) = self
            .reserve_budget(&mut ctx, &mut request, &plan.targets)
            .await
        {
            return self.fail(&mut ctx, e).await;
        }
        let extra_headers = api::passthrough_headers(dialect, headers);
        let adapters = self.adapters();
        let mut last_error = None;
        for (i, target) in plan.targets.iter().enumerate() {
            // A provider at its quota is skipped like an endpoint in cool-down.
            if let Err(e) = take_provider_quota(&self.rate_limits, &mut ctx, target, || {
                self.worst_tokens(&request, std::slice::from_ref(target))
            })
            .await
            {
                last_error = Some(e);
                continue;
            }
            ctx.trying(target);
            let span = ctx.trace.as_ref().map(|_| trace_context::span_id());
            let trace_headers = match (&ctx.trace, span) {
                (Some(t), Some(s)) => t.headers_for(s),
                _ => HeaderMap::new(),
            };
            let offset = ctx.started.elapsed();
            let started = Instant::now();
            let outcome = if let Some(why) = refused_by(&request, target) {
                Err(Error::bad_request(why))
            } else {
                match target.protocol {
                    Protocol::Native(upstream) if request.stream => {
                        try_stream(
                            &self.upstream,
                            &request,
                            target,
                            upstream,
                            dialect,
                            upstream_headers(upstream, dialect, &extra_headers, trace_headers),
                        )
                        .await
                    }
                    Protocol::Native(upstream) => {
                        self.try_json(
                            &request,
                            target,
                            upstream,
                            dialect,
                            upstream_headers(upstream, dialect, &extra_headers, trace_headers),
                        )
                        .await
                    }
                    Protocol::Adapter => match adapters.get(&target.provider) {
                        Some(a) if request.stream => {
                            try_adapted_stream(
                                &self.upstream,
                                &request,
                                target,
                                a,
                                dialect,
                                trace_headers,
                            )
                            .await
                        }
                        Some(a) => {
                            self.try_adapted_json(&request, target, a, trace_headers)
                                .await
                        }
                        None => Err(no_adapter(target)),
                    },
                }
            };
            let duration = started.elapsed();
            match outcome {
                Ok(answer) => {
                    ctx.attempts
                        .push(Attempt::new(target, duration, None).at(offset, span));
                    let health = Health {
                        target: target.clone(),
                        cooldown: plan.cooldown,
                    };
                    // Only a stream with somewhere to go keeps what a failover needs.
                    let resume = (request.stream
                        && plan.mid_stream != MidStream::Off
                        && i + 1 < plan.targets.len())
                    .then(|| Resumer {
                        upstream: self.upstream.clone(),
                        adapters: adapters.clone(),
                        request,
                        targets: plan.targets[i + 1..].to_vec(),
                        extra: extra_headers,
                        mode: plan.mid_stream,
                        restart_asked: resume::restart_asked(headers),
                        budgets: self.budgets.clone(),
                        rate_limits: self.rate_limits.clone(),
                        route: plan.route.clone(),
                        default_max_output: self.default_max_output,
                        default_max_input: self.default_max_input,
                    });
                    return self.answer(answer, ctx, health, &guardrails, resume).await;
                }
                Err(e) => {
                    ctx.attempts
                        .push(Attempt::new(target, duration, Some(&e)).at(offset, span));
                    if !e.is_retryable() {
                        return self.fail(&mut ctx, e).await;
                    }
                    tracing::debug!(request_id = %ctx.id, target = %target.label(), error = %e, "attempt failed; trying the next endpoint");
                    count_failure(target, &e, plan.cooldown);
                    last_error = Some(e);
                }
            }
        }
        let error = match last_error {
            Some(e) if ctx.attempts.len() == 1 => e,
            Some(e) => {
                let summary: Vec<String> = ctx
                    .attempts
                    .iter()
                    .map(|a| match &a.error {
                        Some(err) => format!(
                            "{} → {}{}: {}",
                            a.target,
                            err.kind.as_str(),
                            err.status.map(|s| format!(" {s}")).unwrap_or_default(),
                            err.message
                        ),
                        None => a.target.clone(),
                    })
                    .collect();
                Error::new(
                    e.kind(),
                    format!(
                        "all {} endpoints failed: {}",
                        ctx.attempts.len(),
                        summary.join("; ")
                    ),
                )
            }
            None => Error::new(ErrorKind::NotFound, "the route has no endpoints"),
        };
        self.fail(&mut ctx, error).await
    }

    /// `headers`: what goes to the upstream besides the target's own (`upstream_headers`).
    async fn try_json(
        &self,
        request: &Request,
        target: &Target,
        upstream: Dialect,
        dialect: Dialect,
        headers: HeaderMap,
    ) -> Result<Answer, Error> {
        let body = encode_for(request, target, upstream)?;
        let t = target.timeouts;
        let response = self
            .upstream
            .send(
                target,
                upstream,
                false,
                body,
                headers,
                t.total.unwrap_or(t.first_byte).min(t.first_byte),
            )
            .await?;
        let bytes = read_body(response, t.idle, target.max_response_size).await?;
        let decoded = api::decode_response(upstream, &bytes).map_err(|e| {
            Error::new(
                ErrorKind::BadUpstreamResponse,
                format!("undecodable answer from {}: {e}", target.label()),
            )
        })?;
        // Same dialect: the upstream's bytes go back untouched, fields we do not model
        // included (unless the firewall redacts something; see `answer`).
        let body = (upstream == dialect).then_some(bytes);
        Ok(Answer::Json {
            body,
            response: decoded,
        })
    }

    /// An adapter-built request, answered as a whole: the adapter decodes any status.
    async fn try_adapted_json(
        &self,
        request: &Request,
        target: &Target,
        adapter: &AdapterPlugin,
        trace_headers: HeaderMap,
    ) -> Result<Answer, Error> {
        let t = target.timeouts;
        let http = adapter
            .encode_request(request, &target.model_id)
            .await
            .map_err(crate::upstream::adapter_call_error)?;
        let limit = t.total.unwrap_or(t.first_byte).min(t.first_byte);
        let response = self
            .upstream
            .send_adapted(target, http, trace_headers, limit)
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = read_body(response, t.idle, target.max_response_size).await?;
        let mut decoded = match adapter.decode_response(status, &headers, &bytes).await {
            Err(e) => return Err(crate::upstream::adapter_call_error(e)),
            Ok(Err(e)) => return Err(crate::upstream::adapter_upstream_error(e)),
            Ok(Ok(r)) => r,
        };
        if decoded.model.is_empty() {
            decoded.model.clone_from(&target.model_id);
        }
        Ok(Answer::Json {
            body: None,
            response: decoded,
        })
    }
}

impl Proxy {
    /// Turns a successful attempt into the caller's response. A JSON answer is accounted
    /// here; a stream is accounted by its relay when it ends.
    async fn answer(
        &self,
        answer: Answer,
        mut ctx: RequestContext,
        health: Health,
        guardrails: &Arc<GuardrailEngine>,
        resume: Option<Resumer>,
    ) -> Response<Body> {
        let served_by = HeaderValue::from_str(&health.target.label()).ok();
        let attempts = HeaderValue::from(ctx.attempts.len());
        let rate = ctx.rate.headers(false);
        // Streams send their headers before the answer's text is inspected: only the
        // request's findings can be reported there.
        let warnings;
        let dialect = ctx.dialect;
        let mut response = match answer {
            Answer::Json { body, mut response } => {
                health.target.record_success();
                ctx.served.usage = Some(response.usage);
                ctx.served.finish_reason = Some(response.finish.as_str());
                ctx.served.complete = true;
                let redacted = guardrails
                    .inspect_response(&mut response, &mut ctx.guardrail)
                    .await;
                if ctx.guardrail.is_blocked() {
                    let e = ctx.guardrail.block_error(guardrails);
                    return self.fail(&mut ctx, e).await;
                }
                if let Some(c) = ctx.content.as_mut() {
                    c.response(&response);
                }
                let body = match body {
                    Some(b) if !redacted => b,
                    _ => api::encode_response(dialect, &response),
                };
                ctx.served.ttfb = Some(ctx.started.elapsed());
                warnings = guardrail_headers(&ctx.guardrail);
                let row = self.outcomes.finish(&ctx, 200, None);
                self.rate_limits.settle_request(
                    &mut ctx.rate,
                    &row,
                    ctx.served.provider.as_deref(),
                );
                let remaining = self.settle_budget(&mut ctx, row.cost_nano_usd).await;
                self.outcomes.ledger.record(row).await;
                let mut r = json_response(StatusCode::OK, body);
                budget_header(&mut r, remaining);
                r
            }
            Answer::Stream {
                events,
                encoder,
                first,
                idle,
                total,
            } => {
                ctx.served.ttfb = Some(ctx.started.elapsed());
                // Headers leave first: what is left after this stream's reservation.
                let remaining = ctx.budget.remaining;
                let guard = StreamGuard::new(guardrails);
                warnings = guardrail_headers(&ctx.guardrail);
                let fail_over = resume.is_some();
                let relay = Relay::new(
                    events,
                    encoder,
                    first,
                    idle,
                    total,
                    StreamLog {
                        ctx: Some(ctx),
                        outcomes: self.outcomes.clone(),
                        health,
                        rate_limits: self.rate_limits.clone(),
                        resume,
                    },
                    guard,
                    fail_over,
                );
                let body = StreamBody::new(
                    relay
                        .into_stream()
                        .map(|b| Ok::<_, Infallible>(http_body::Frame::data(b))),
                );
                let mut r = Response::new(BodyExt::boxed_unsync(body));
                let h = r.headers_mut();
                h.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                h.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache"),
                );
                budget_header(&mut r, remaining);
                r
            }
        };
        let h = response.headers_mut();
        if let Some(v) = served_by {
            h.insert(HeaderName::from_static("x-bitrouter-upstream"), v);
        }
        h.insert(HeaderName::from_static("x-bitrouter-attempts"), attempts);
        for (name, value) in warnings.into_iter().chain(rate) {
            h.insert(name, value);
        }
        response
    }
}

/// `Retry-After` and `x-ratelimit-*` for a caller under a rate limit.
fn rate_headers(response: &mut Response<Body>, rate: &crate::ratelimit::RequestRate) {
    let h = response.headers_mut();
    for (name, value) in rate.headers(true) {
        h.insert(name, value);
    }
}

/// `x-bitrouter-budget-remaining`: micro-USD left of the caller's budget.
fn budget_header(response: &mut Response<Body>, remaining: Option<u64>) {
    if let Some(left) = remaining {
        response.headers_mut().insert(
            HeaderName::from_static(crate::budget::REMAINING_HEADER),
            HeaderValue::from(left),
        );
    }
}

/// `x-bitrouter-guardrail-warnings` / `-redactions` / `-failures` (plugin calls that failed
/// open): `pattern=count` pairs, never the text.
fn guardrail_headers(tally: &Tally) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, action) in [
        ("x-bitrouter-guardrail-warnings", "warn"),
        ("x-bitrouter-guardrail-redactions", "redact"),
        (
            "x-bitrouter-guardrail-failures",
            crate::guardrails::FAILED_OPEN,
        ),
    ] {
        if let Some(v) = tally
            .header(action)
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            out.push((HeaderName::from_static(name), v));
        }
    }
    out
}

/// The caller's session, from `x-bitrouter-session` (or `x-session-id`).
fn session_id(headers: &HeaderMap) -> Option<String> {
    ["x-bitrouter-session", "x-session-id"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
}

/// The caller's passthrough headers (only to an upstream of its own dialect) and the trace
/// context (to every upstream).
fn upstream_headers(
    upstream: Dialect,
    dialect: Dialect,
    extra: &HeaderMap,
    trace: HeaderMap,
) -> HeaderMap {
    if upstream != dialect {
        return trace;
    }
    let mut h = extra.clone();
    h.extend(trace);
    h
}

/// The most tokens `request` can use at any of `targets`: its input bound (where the
/// model's window bounds what it only refers to) plus its output bound.
pub(crate) fn worst_tokens(
    request: &Request,
    targets: &[Arc<Target>],
    default_max_input: u64,
    default_max_output: u64,
) -> u64 {
    let context = targets
        .iter()
        .map(|t| t.max_input_tokens.unwrap_or(default_max_input))
        .max()
        .unwrap_or(default_max_input);
    crate::budget::input_bound(request)
        .for_context(context)
        .saturating_add(crate::budget::output_bound(request, default_max_output))
}

/// Takes a request and its worst-case tokens (`worst`, computed only when needed) from
/// `target`'s provider quota, if it has one. A provider at its quota skips the endpoint like
/// one in cool-down: the attempt record says why, and the refusal comes back for the
/// caller's answer should every endpoint be skipped.
pub(crate) async fn take_provider_quota(
    rate_limits: &RateLimits,
    ctx: &mut RequestContext,
    target: &Target,
    worst: impl FnOnce() -> u64,
) -> Result<(), Error> {
    if !rate_limits.has_provider_quota(&target.provider) {
        return Ok(());
    }
    match rate_limits.provider(&target.provider, worst()).await {
        Ok(a) => {
            ctx.rate.holds.extend(a.into_iter().flat_map(|a| a.holds));
            Ok(())
        }
        Err(r) => {
            ctx.rate.skipped(&r);
            ctx.attempts.push(
                Attempt::new(target, Duration::ZERO, Some(&r.error))
                    .at(ctx.started.elapsed(), None),
            );
            Err(r.error)
        }
    }
}

/// Counts a retryable failure `e` of `target`: a provider's 429 with `Retry-After` takes
/// it out for that long; anything else counts toward its cool-down.
pub(crate) fn count_failure(target: &Target, e: &Error, cooldown: crate::config::Cooldown) {
    match e.retry_after() {
        Some(wait) if e.kind() == ErrorKind::RateLimited => target.cool_for(wait),
        _ => target.record_failure(cooldown),
    }
}

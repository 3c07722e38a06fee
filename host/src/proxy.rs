//! One model call, start to finish: decode the caller's dialect, plan the targets, try them
//! in order (failing over on transport errors, timeouts, 429 and 5xx — for streams, until
//! the first event is in hand), and answer in the caller's dialect.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::api::{self, StreamEncoder};
use crate::canonical::{Dialect, Request, StreamEvent};
pub use crate::context::{Attempt, AttemptError, RequestContext};
use crate::error::{Error, ErrorKind, UpstreamError};
use crate::guardrails::{GuardrailEngine, StreamGuard, Tally};
use crate::outcome::Outcomes;
use crate::router::{Router, Target};
use crate::stream::{Relay, RelayObserver, UpstreamEvents};
use crate::upstream::Upstream;

/// Response body type of every route.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn error_response(dialect: Dialect, e: &Error) -> Response<Body> {
    json_response(e.status(), e.body(dialect))
}

/// Handles model calls for every dialect.
pub struct Proxy {
    pub router: Router,
    upstream: Upstream,
    pub outcomes: Arc<Outcomes>,
    /// Swapped whole on plugin reload; a request keeps the engine it started with.
    guardrails: std::sync::RwLock<Arc<GuardrailEngine>>,
}

impl Proxy {
    pub fn new(
        router: Router,
        upstream: Upstream,
        outcomes: Arc<Outcomes>,
        guardrails: Arc<GuardrailEngine>,
    ) -> Self {
        Proxy {
            router,
            upstream,
            outcomes,
            guardrails: std::sync::RwLock::new(guardrails),
        }
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

    /// Ends a request that failed: log line, ledger row, error in the caller's dialect.
    pub async fn fail(&self, ctx: &RequestContext, e: Error) -> Response<Body> {
        let row = self.outcomes.finish(ctx, e.status().as_u16(), Some(&e));
        self.outcomes.ledger.record(row).await;
        error_response(ctx.dialect, &e)
    }

    /// Serves one model call whose body has been read.
    pub async fn model_call(
        &self,
        mut ctx: RequestContext,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let dialect = ctx.dialect;
        let mut request = match api::decode_request(dialect, body) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(&ctx, Error::bad_request(format!("invalid request: {e}")))
                    .await;
            }
        };
        ctx.model = request.model.clone();
        ctx.stream = request.stream;
        // A verified token's session wins over a header the caller picked.
        if ctx.caller.is_none() {
            ctx.session = session_id(headers);
        }
        if let Some(t) = &ctx.token
            && let Err(e) = t.check_model(&request.model)
        {
            return self.fail(&ctx, e.to_error()).await;
        }
        if request.stream {
            ctx.input_estimate = request.estimate_input_tokens();
        }
        let plan = match self.router.plan(&request.model) {
            Ok(p) => p,
            Err(e) => return self.fail(&ctx, e).await,
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
            return self.fail(&ctx, e).await;
        }
        let extra_headers = passthrough_headers(dialect, headers);
        let mut last_error = None;
        for target in &plan.targets {
            ctx.trying(target);
            let started = Instant::now();
            let outcome = if request.stream {
                self.try_stream(&request, target, dialect, &extra_headers)
                    .await
            } else {
                self.try_json(&request, target, dialect, &extra_headers)
                    .await
            };
            let duration = started.elapsed();
            match outcome {
                Ok(answer) => {
                    self.router.record_success(target);
                    ctx.attempts.push(Attempt {
                        target: target.label(),
                        duration,
                        error: None,
                    });
                    return self.answer(answer, ctx, target, &guardrails).await;
                }
                Err(e) => {
                    ctx.attempts.push(Attempt {
                        target: target.label(),
                        duration,
                        error: Some(AttemptError {
                            kind: e.kind(),
                            status: e.upstream().map(|u| u.status.as_u16()),
                            message: e.message().to_owned(),
                        }),
                    });
                    if !e.is_retryable() {
                        return self.fail(&ctx, e).await;
                    }
                    tracing::debug!(request_id = %ctx.id, target = %target.label(), error = %e, "attempt failed; trying the next endpoint");
                    self.router.record_failure(target, plan.cooldown);
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
        self.fail(&ctx, error).await
    }

    fn encode_for(&self, request: &Request, target: &Target) -> Result<Bytes, Error> {
        let value = api::encode_request(target.dialect, request, &target.model_id);
        serde_json::to_vec(&value).map(Bytes::from).map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!("cannot encode the upstream request: {e}"),
            )
        })
    }

    async fn try_json(
        &self,
        request: &Request,
        target: &Target,
        dialect: Dialect,
        extra: &HeaderMap,
    ) -> Result<Answer, Error> {
        let body = self.encode_for(request, target)?;
        let t = target.timeouts;
        let response = self
            .upstream
            .send(
                target,
                body,
                same_dialect_headers(target, dialect, extra),
                t.total.unwrap_or(t.first_byte).min(t.first_byte),
            )
            .await?;
        let bytes = match tokio::time::timeout(t.idle, response.bytes()).await {
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "the upstream stopped sending its answer",
                ));
            }
            Ok(Err(e)) => return Err(crate::upstream::transport_error(e)),
            Ok(Ok(b)) => b,
        };
        let decoded = api::decode_response(target.dialect, &bytes).map_err(|e| {
            Error::new(
                ErrorKind::BadUpstreamResponse,
                format!("undecodable answer from {}: {e}", target.label()),
            )
        })?;
        // Same dialect: the upstream's bytes go back untouched, fields we do not model
        // included (unless the firewall redacts something; see `answer`).
        let body = (target.dialect == dialect).then_some(bytes);
        Ok(Answer::Json {
            body,
            response: decoded,
        })
    }

    async fn try_stream(
        &self,
        request: &Request,
        target: &Target,
        dialect: Dialect,
        extra: &HeaderMap,
    ) -> Result<Answer, Error> {
        let body = self.encode_for(request, target)?;
        let t = target.timeouts;
        let started = Instant::now();
        let response = self
            .upstream
            .send(
                target,
                body,
                same_dialect_headers(target, dialect, extra),
                t.first_byte,
            )
            .await?;
        let mut events = UpstreamEvents::new(response, target.dialect);
        // Hold back metadata (message start, usage) until the first piece of content: an
        // upstream that dies in between (Anthropic's mid-stream `overloaded_error`) can still
        // be failed over, and the caller waits no longer for its first token.
        let mut first = Vec::new();
        let mut more = true;
        while more && !first.iter().any(is_content) {
            let remaining = t
                .first_byte
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            more = events.next_batch(&mut first, remaining).await?;
        }
        if !more && !first.iter().any(is_content) {
            return Err(Error::new(
                ErrorKind::Transport,
                "the upstream closed the stream before sending any content",
            ));
        }
        // An error before anything reached the caller is as good as an error status.
        if let Some(StreamEvent::Error(message)) =
            first.iter().find(|e| matches!(e, StreamEvent::Error(_)))
        {
            return Err(Error::from_upstream(UpstreamError {
                status: StatusCode::BAD_GATEWAY,
                dialect: target.dialect,
                body: Bytes::new(),
                message: message.clone(),
            }));
        }
        let encoder = StreamEncoder::new(dialect, request.include_usage);
        Ok(Answer::Stream {
            events,
            encoder,
            first,
            idle: t.idle,
            total: t.total,
        })
    }
}

/// Whether an event carries what the caller asked for (as opposed to stream metadata).
fn is_content(e: &StreamEvent) -> bool {
    !matches!(e, StreamEvent::Start { .. } | StreamEvent::Usage(_))
}

/// A successful attempt, not yet turned into the caller's response.
// Moved once per request, never stored: boxing the stream variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Json {
        /// The upstream's own bytes, when they can go back as they are.
        body: Option<Bytes>,
        response: crate::canonical::Response,
    },
    Stream {
        events: UpstreamEvents,
        encoder: StreamEncoder,
        first: Vec<StreamEvent>,
        idle: Duration,
        total: Option<Duration>,
    },
}

impl Proxy {
    /// Turns a successful attempt into the caller's response. A JSON answer is accounted
    /// here; a stream is accounted by its relay when it ends.
    async fn answer(
        &self,
        answer: Answer,
        mut ctx: RequestContext,
        target: &Target,
        guardrails: &Arc<GuardrailEngine>,
    ) -> Response<Body> {
        let served_by = HeaderValue::from_str(&target.label()).ok();
        let attempts = HeaderValue::from(ctx.attempts.len());
        // Streams send their headers before the answer's text is inspected: only the
        // request's findings can be reported there.
        let warnings;
        let dialect = ctx.dialect;
        let mut response = match answer {
            Answer::Json { body, mut response } => {
                ctx.usage = Some(response.usage);
                ctx.complete = true;
                let redacted = guardrails
                    .inspect_response(&mut response, &mut ctx.guardrail)
                    .await;
                if ctx.guardrail.is_blocked() {
                    let e = ctx.guardrail.block_error(guardrails);
                    return self.fail(&ctx, e).await;
                }
                let body = match body {
                    Some(b) if !redacted => b,
                    _ => api::encode_response(dialect, &response),
                };
                ctx.ttfb = Some(ctx.started.elapsed());
                warnings = guardrail_headers(&ctx.guardrail);
                let row = self.outcomes.finish(&ctx, 200, None);
                self.outcomes.ledger.record(row).await;
                json_response(StatusCode::OK, body)
            }
            Answer::Stream {
                events,
                encoder,
                first,
                idle,
                total,
            } => {
                ctx.ttfb = Some(ctx.started.elapsed());
                let guard = StreamGuard::new(guardrails);
                warnings = guardrail_headers(&ctx.guardrail);
                let relay = Relay::new(
                    events,
                    encoder,
                    first,
                    idle,
                    total,
                    StreamLog {
                        ctx: Some(ctx),
                        outcomes: self.outcomes.clone(),
                    },
                    guard,
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
                r
            }
        };
        let h = response.headers_mut();
        if let Some(v) = served_by {
            h.insert(HeaderName::from_static("x-bitrouter-upstream"), v);
        }
        h.insert(HeaderName::from_static("x-bitrouter-attempts"), attempts);
        for (name, value) in warnings {
            h.insert(name, value);
        }
        response
    }
}

/// Accounts for a stream when it ends, or when the caller hangs up first.
struct StreamLog {
    ctx: Option<RequestContext>,
    outcomes: Arc<Outcomes>,
}

impl RelayObserver for StreamLog {
    fn guarded(&mut self, tally: &Tally) {
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.guardrail.merge(tally);
        }
    }

    fn event(&mut self, event: &StreamEvent) {
        let Some(ctx) = self.ctx.as_mut() else { return };
        match event {
            StreamEvent::Usage(u) => ctx.usage = Some(*u),
            StreamEvent::TextDelta(t) | StreamEvent::ReasoningDelta(t) => {
                ctx.output_bytes += t.len() as u64
            }
            StreamEvent::ToolCallDelta { arguments, .. } => {
                ctx.output_bytes += arguments.len() as u64
            }
            _ => {}
        }
    }

    fn end(&mut self, outcome: Result<(), &Error>) -> Option<BoxFuture<'static, ()>> {
        let mut ctx = self.ctx.take()?;
        ctx.complete = outcome.is_ok();
        let row = self.outcomes.finish(&ctx, 200, outcome.err());
        let outcomes = self.outcomes.clone();
        Some(Box::pin(async move { outcomes.ledger.record(row).await }))
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
            let row = self.outcomes.finish(&ctx, 499, Some(&e));
            self.outcomes.ledger.record_now(row);
        }
    }
}

/// `x-bitrouter-guardrail-warnings` / `-redactions`: `pattern=count` pairs, never the text.
fn guardrail_headers(tally: &Tally) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, action) in [
        ("x-bitrouter-guardrail-warnings", "warn"),
        ("x-bitrouter-guardrail-redactions", "redact"),
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

fn same_dialect_headers(target: &Target, dialect: Dialect, extra: &HeaderMap) -> HeaderMap {
    if target.dialect == dialect {
        extra.clone()
    } else {
        HeaderMap::new()
    }
}

/// Caller headers an upstream of the same dialect understands and should see.
fn passthrough_headers(dialect: Dialect, headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if dialect == Dialect::Anthropic
        && let Some(v) = headers.get("anthropic-beta")
    {
        out.insert(HeaderName::from_static("anthropic-beta"), v.clone());
    }
    out
}

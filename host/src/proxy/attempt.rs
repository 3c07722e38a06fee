//! One streamed attempt at an upstream, up to its first content: the request encoded for the
//! endpoint's dialect (or built by its adapter plugin), sent, and read until it either
//! fails (so it can still be failed over) or has content to relay. `Answer` is what a
//! successful attempt hands back to `Proxy`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::api::{self, StreamEncoder};
use crate::canonical::{Dialect, Request, StreamEvent};
use crate::error::{Error, ErrorKind, UpstreamError};
use crate::plugins::AdapterPlugin;
use crate::router::{Protocol, Target};
use crate::stream::{Gather, UpstreamEvents};
use crate::upstream::{Upstream, read_body};

pub(super) fn encode_for(
    request: &Request,
    target: &Target,
    upstream: Dialect,
) -> Result<Bytes, Error> {
    let value = api::encode_request(upstream, request, &target.model_id);
    serde_json::to_vec(&value).map(Bytes::from).map_err(|e| {
        Error::new(
            ErrorKind::BadRequest,
            format!("cannot encode the upstream request: {e}"),
        )
    })
}

/// A streamed request in a dialect the gateway speaks, read up to its first content;
/// `headers` as for `Proxy::try_json`.
pub(super) async fn try_stream(
    client: &Upstream,
    request: &Request,
    target: &Target,
    upstream: Dialect,
    dialect: Dialect,
    headers: HeaderMap,
) -> Result<Answer, Error> {
    let body = encode_for(request, target, upstream)?;
    let t = target.timeouts;
    let started = Instant::now();
    let response = client
        .send(target, upstream, true, body, headers, t.first_byte)
        .await?;
    let events = UpstreamEvents::new(response, upstream, target.max_response_size);
    prime(events, request, target, dialect, started).await
}

/// An adapter-built streamed request; an error status is read whole and decoded.
pub(super) async fn try_adapted_stream(
    client: &Upstream,
    request: &Request,
    target: &Target,
    adapter: &AdapterPlugin,
    dialect: Dialect,
    trace_headers: HeaderMap,
) -> Result<Answer, Error> {
    let t = target.timeouts;
    let started = Instant::now();
    let http = adapter
        .encode_request(request, &target.model_id)
        .await
        .map_err(crate::upstream::adapter_call_error)?;
    let response = client
        .send_adapted(target, http, trace_headers, t.first_byte)
        .await?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let rest = t.first_byte.saturating_sub(started.elapsed());
        let bytes = read_body(
            response,
            rest.max(Duration::from_millis(1)),
            target.max_response_size,
        )
        .await?;
        return Err(
            match adapter.decode_response(status, &headers, &bytes).await {
                Err(e) => crate::upstream::adapter_call_error(e),
                Ok(Err(e)) => crate::upstream::adapter_upstream_error(e),
                Ok(Ok(_)) => Error::new(
                    ErrorKind::BadUpstreamResponse,
                    format!(
                        "{} answered {status}, which the adapter took for an answer",
                        target.label()
                    ),
                ),
            },
        );
    }
    let events = UpstreamEvents::adapted(response, adapter.clone(), &target.model_id);
    prime(events, request, target, dialect, started).await
}

/// The error of a target whose provider's adapter plugin is not loaded (fails over).
pub(super) fn no_adapter(target: &Target) -> Error {
    Error::new(
        ErrorKind::NotConfigured,
        format!(
            "provider {:?} has no loaded adapter plugin",
            target.provider
        ),
    )
    .retryable(true)
}

/// Reads a stream until its first content event, so an upstream that fails before then can
/// still be failed over, and turns it into an answer.
pub(super) async fn prime(
    mut events: UpstreamEvents,
    request: &Request,
    target: &Target,
    dialect: Dialect,
    started: Instant,
) -> Result<Answer, Error> {
    let t = target.timeouts;
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
        more = events
            .next_batch(&mut first, remaining, Gather::Ready)
            .await?;
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
            dialect,
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

/// Why `target` cannot serve `request` at all: a Responses request that needs OpenAI's stored
/// state is refused by every other upstream rather than answered without that state.
pub(super) fn refused_by(request: &Request, target: &Target) -> Option<String> {
    if target.protocol == Protocol::Native(Dialect::OpenAiResponses) {
        return None;
    }
    api::openai_responses::needs_responses_upstream(request).map(|why| {
        format!(
            "{why} ({} does not speak the Responses API)",
            target.label()
        )
    })
}

/// Whether an event carries what the caller asked for (as opposed to stream metadata).
pub(super) fn is_content(e: &StreamEvent) -> bool {
    !matches!(e, StreamEvent::Start { .. } | StreamEvent::Usage(_))
}

/// A successful attempt, not yet turned into the caller's response.
// Moved once per request, never stored: boxing the stream variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Answer {
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

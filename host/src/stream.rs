//! Streaming: SSE frames from an upstream → canonical events (`UpstreamEvents`), and the
//! response body that re-encodes them in the caller's dialect (`Relay`). The body owns the
//! upstream response, so a caller that hangs up drops it and the upstream request with it.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::time::Instant;

use crate::api::{StreamDecoder, StreamEncoder};
use crate::canonical::{Dialect, StreamEvent};
use crate::error::{Error, ErrorKind};

type SseEvents = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// An upstream's SSE response, decoded into canonical events batch by batch.
pub struct UpstreamEvents {
    events: SseEvents,
    decoder: StreamDecoder,
    /// How the stream ended, seen while draining events that were already there; reported
    /// on the next call so the batch before it goes out first.
    ended: Option<Result<(), Error>>,
}

/// Most SSE events folded into one batch (one body frame, one write to the caller).
const MAX_COALESCED: usize = 64;

impl UpstreamEvents {
    pub fn new(response: reqwest::Response, dialect: Dialect) -> Self {
        UpstreamEvents {
            events: Box::pin(response.bytes_stream().eventsource()),
            decoder: StreamDecoder::new(dialect),
            ended: None,
        }
    }

    fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), Error> {
        self.decoder.decode(data, out).map_err(|e| {
            Error::new(
                ErrorKind::BadUpstreamResponse,
                format!("undecodable stream event from the upstream: {e}"),
            )
        })
    }

    /// Appends the next non-empty batch of events to `out`: what arrives first plus whatever
    /// else has already arrived, so a burst becomes one write. `Ok(false)` means the upstream
    /// closed the stream; `wait` bounds the silence before giving up.
    pub async fn next_batch(
        &mut self,
        out: &mut Vec<StreamEvent>,
        wait: Duration,
    ) -> Result<bool, Error> {
        if let Some(end) = self.ended.take() {
            return end.map(|()| false);
        }
        let deadline = Instant::now() + wait;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.events.next()).await {
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the upstream sent nothing for {}",
                            humantime::format_duration(wait)
                        ),
                    ));
                }
                Ok(n) => n,
            };
            match next.map(sse_result) {
                None => return Ok(false),
                Some(Err(e)) => return Err(e),
                Some(Ok(event)) => self.decode(&event.data, out)?,
            }
            if !out.is_empty() {
                break;
            }
        }
        for _ in 0..MAX_COALESCED {
            let ready = match self.events.next().now_or_never() {
                None => break,
                Some(ready) => ready,
            };
            let outcome = match ready.map(sse_result) {
                None => Err(Ok(())),
                Some(Err(e)) => Err(Err(e)),
                Some(Ok(event)) => self.decode(&event.data, out).map_err(Err),
            };
            if let Err(end) = outcome {
                self.ended = Some(end);
                break;
            }
        }
        Ok(true)
    }

    /// Whether the upstream finished the message (as opposed to the connection just ending).
    pub fn finished(&self) -> bool {
        self.decoder.finished()
    }
}

fn sse_result(
    r: Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>,
) -> Result<eventsource_stream::Event, Error> {
    match r {
        Ok(e) => Ok(e),
        Err(EventStreamError::Transport(e)) => Err(crate::upstream::transport_error(e)),
        Err(e) => Err(Error::new(
            ErrorKind::BadUpstreamResponse,
            format!("malformed SSE from the upstream: {e}"),
        )),
    }
}

/// Watches the events that pass through a relay; the request context implements it to
/// record usage and the outcome when the stream ends or the caller leaves.
pub trait RelayObserver: Send {
    fn event(&mut self, event: &StreamEvent);
    /// The stream is over; a returned future is awaited before the last frame goes out
    /// (so a synchronous ledger write finishes before the caller sees the end).
    fn end(&mut self, outcome: Result<(), &Error>) -> Option<BoxFuture<'static, ()>>;
}

/// The caller-facing side of a stream: encodes canonical events into the caller's dialect,
/// one body frame per upstream batch so every event is flushed as it arrives.
pub struct Relay<O: RelayObserver> {
    upstream: UpstreamEvents,
    encoder: StreamEncoder,
    pending: Vec<StreamEvent>,
    idle: Duration,
    deadline: Option<Instant>,
    done: bool,
    observer: O,
}

impl<O: RelayObserver> Relay<O> {
    /// `first` holds the events already read while deciding whether to fail over.
    pub fn new(
        upstream: UpstreamEvents,
        encoder: StreamEncoder,
        first: Vec<StreamEvent>,
        idle: Duration,
        total: Option<Duration>,
        observer: O,
    ) -> Self {
        Relay {
            upstream,
            encoder,
            pending: first,
            idle,
            deadline: total.map(|t| Instant::now() + t),
            done: false,
            observer,
        }
    }

    fn encode_pending(&mut self, out: &mut Vec<u8>) {
        for e in self.pending.drain(..) {
            self.observer.event(&e);
            self.encoder.encode(&e, out);
        }
    }

    /// The next body frame, or `None` once the stream is over.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = Vec::with_capacity(256);
        if !self.pending.is_empty() {
            self.encode_pending(&mut out);
            return Some(out.into());
        }
        let wait = match self.deadline {
            Some(d) => self.idle.min(d.saturating_duration_since(Instant::now())),
            None => self.idle,
        };
        let result = self.upstream.next_batch(&mut self.pending, wait).await;
        self.encode_pending(&mut out);
        let mut pending_end = None;
        match result {
            Ok(true) => {}
            Ok(false) if self.upstream.finished() => {
                self.done = true;
                self.encoder.finish(&mut out);
                pending_end = self.observer.end(Ok(()));
            }
            Ok(false) => {
                self.done = true;
                let e = Error::new(
                    ErrorKind::Transport,
                    "the upstream ended the stream before finishing the message",
                );
                self.encoder
                    .encode(&StreamEvent::Error(e.message().to_owned()), &mut out);
                pending_end = self.observer.end(Err(&e));
            }
            Err(e) => {
                self.done = true;
                self.encoder
                    .encode(&StreamEvent::Error(e.message().to_owned()), &mut out);
                pending_end = self.observer.end(Err(&e));
            }
        }
        if let Some(f) = pending_end {
            f.await;
        }
        Some(out.into())
    }

    /// The relay as a body stream.
    pub fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static
    where
        O: 'static,
    {
        futures_util::stream::unfold(self, |mut relay| async move {
            relay.next_frame().await.map(|b| (b, relay))
        })
    }
}

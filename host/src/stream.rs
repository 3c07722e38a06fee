//! Streaming: SSE frames from an upstream → canonical events (`UpstreamEvents`), or for a
//! provider-adapter plugin, body chunks → the adapter's `decode-stream` fold → canonical
//! events; and the response body that re-encodes them in the caller's dialect (`Relay`). The
//! body owns the upstream response, so a caller that hangs up drops it and the upstream
//! request with it.

mod splice;
pub mod sse;

use splice::Splice;
pub use splice::{JoinMode, Partial, sum_usage, usage_less};
use sse::SseSplitter;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use http_body_util::BodyDataStream;

use tokio::time::Instant;

use crate::api::{StreamDecoder, StreamEncoder};
use crate::canonical::{Dialect, StreamEvent, Usage};
use crate::error::{Error, ErrorKind};
use crate::guardrails::{StreamGuard, Tally};
use crate::plugins::{AdapterPlugin, StreamState};
use crate::upstream::{BodyError, UpstreamResponse};

type ByteChunks = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// Where the events come from.
enum Source {
    Sse(Box<Sse>),
    Adapter(Box<Adapted>),
}

/// A streamed body of server-sent events in one of the dialects' formats.
struct Sse {
    body: ByteChunks,
    /// Its bytes split into events; what it holds past the last whole event is an event the
    /// upstream has not finished, which is what a stall or a close has cut when it comes now.
    splitter: SseSplitter,
    decoder: StreamDecoder,
    body_done: bool,
    /// The most bytes one unfinished event may hold (the endpoint's `max_response_size`): an
    /// upstream that never ends its event cannot make the gateway buffer without bound.
    max_event: u64,
}

impl Sse {
    /// Decodes every whole event the splitter holds into `out`.
    fn drain(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), Error> {
        while let Some(data) = self.splitter.next_event(self.body_done).map_err(|e| {
            Error::new(
                ErrorKind::BadUpstreamResponse,
                format!("malformed SSE from the upstream: {e}"),
            )
        })? {
            UpstreamEvents::decode(&mut self.decoder, data, out)?;
        }
        let held = self.splitter.unfinished() as u64;
        if held > self.max_event {
            return Err(Error::new(
                ErrorKind::BadUpstreamResponse,
                format!(
                    "the upstream's SSE event is larger than max_response_size ({held} > {} bytes, unfinished)",
                    self.max_event
                ),
            ));
        }
        Ok(())
    }

    /// How the body's end reads, once it has ended: bytes after the message's end are a
    /// comment or padding; before it, an event the upstream never terminated.
    fn end(&self) -> Result<(), Error> {
        match self.splitter.unfinished() {
            n if n == 0 || self.decoder.finished() => Ok(()),
            n => Err(closed_inside_an_event(n as u64)),
        }
    }
}

/// A streamed body decoded by an adapter plugin. The host keeps the adapter's state between
/// chunks, since each call runs in a fresh instance.
struct Adapted {
    body: ByteChunks,
    adapter: AdapterPlugin,
    state: StreamState,
    /// Filled into a `start` event that names no model (the adapter may not know it).
    model_id: String,
    body_done: bool,
    finished: bool,
    /// A transport error seen after events that still had to go out.
    cut: Option<Error>,
}

impl Adapted {
    async fn decode(
        &mut self,
        chunk: &[u8],
        end: bool,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Error> {
        let events = match self
            .adapter
            .decode_stream(&mut self.state, chunk, end)
            .await
        {
            Err(e) => return Err(crate::upstream::adapter_call_error(e)),
            Ok(Err(e)) => return Err(crate::upstream::adapter_upstream_error(e)),
            Ok(Ok(events)) => events,
        };
        for mut e in events {
            match &mut e {
                StreamEvent::Start { model, .. } if model.is_empty() => {
                    model.clone_from(&self.model_id);
                }
                StreamEvent::Finish(_) => self.finished = true,
                _ => {}
            }
            out.push(e);
        }
        Ok(())
    }

    /// Like `UpstreamEvents::next_batch`: one adapter call per batch of ready chunks.
    async fn next_batch(
        &mut self,
        out: &mut Vec<StreamEvent>,
        wait: Duration,
        gather: Gather,
    ) -> Result<bool, Error> {
        if let Some(e) = self.cut.take() {
            return Err(e);
        }
        let deadline = Instant::now() + wait;
        while !self.body_done {
            let first = match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the upstream sent nothing for {}",
                            humantime::format_duration(wait)
                        ),
                    ));
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => return Err(crate::upstream::transport_error(e)),
                Ok(Some(Ok(b))) => Some(b),
            };
            let Some(first) = first else {
                self.body_done = true;
                self.decode(&[], true, out).await?;
                return Ok(!out.is_empty());
            };
            let mut buf = first.to_vec();
            let mut cut = None;
            for _ in 0..MAX_COALESCED {
                match next_ready(&mut self.body, gather).await {
                    None => break,
                    Some(None) => {
                        self.body_done = true;
                        break;
                    }
                    Some(Some(Ok(b))) => buf.extend_from_slice(&b),
                    Some(Some(Err(e))) => {
                        cut = Some(crate::upstream::transport_error(e));
                        break;
                    }
                }
            }
            self.decode(&buf, self.body_done, out).await?;
            if let Some(e) = cut {
                if out.is_empty() {
                    return Err(e);
                }
                // The events before the cut go out first; the cut ends the stream next time.
                self.cut = Some(e);
            }
            if !out.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// An upstream's streamed response, decoded into canonical events batch by batch.
pub struct UpstreamEvents {
    source: Source,
    /// How the stream ended, seen while draining events that were already there; reported
    /// on the next call so the batch before it goes out first.
    ended: Option<Result<(), Error>>,
}

/// Most body chunks (of one or more SSE events each) folded into one batch (one body frame,
/// one write to the caller).
const MAX_COALESCED: usize = 64;

/// How a batch gathers what follows its first item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gather {
    /// Only what is ready now: the first content goes out at once (time to first byte).
    Ready,
    /// Also what becomes ready once the tasks already woken have run. hyper's client hands a
    /// body over one chunk per turn of its connection task, so a burst that arrived in one
    /// read is only ready one turn at a time; without waiting for those turns each event
    /// would be a write of its own to the caller (a syscall and a wake-up on both sides).
    Burst,
}

/// Scheduler turns a `Gather::Burst` batch waits for its next item before it goes out.
/// Measured: with the upstream's burst already read, the next SSE event is ready after two
/// turns (one to run hyper's connection task, one for the hand-over); the third covers a
/// read of the next segment. A stream whose next token has not arrived pays three turns
/// per batch, a few µs, against a write and a wake-up per event saved in a burst.
const BURST_TURNS: usize = 3;

/// The stream's next item if it is ready, under `gather`'s rule; `None` if it is not.
async fn next_ready<S: Stream + Unpin>(s: &mut S, gather: Gather) -> Option<Option<S::Item>> {
    if let Some(item) = s.next().now_or_never() {
        return Some(item);
    }
    if gather == Gather::Ready {
        return None;
    }
    for turn in 1..=BURST_TURNS {
        if turn < BURST_TURNS {
            requeue().await;
        } else {
            // The last turn also lets the runtime poll its I/O driver, for a segment of
            // the burst that reached the socket but has not been read yet.
            tokio::task::yield_now().await;
        }
        if let Some(item) = s.next().now_or_never() {
            return Some(item);
        }
    }
    None
}

/// Gives the tasks already woken one turn: the task wakes itself and goes to the back of
/// the run queue. `tokio::task::yield_now` instead defers the wake-up until the runtime has
/// polled its I/O driver, an `epoll_wait` system call per turn: ~105 per 100-chunk stream
/// when every turn of the burst gather was one (bench/REPORT.md, "Where a stream's first
/// byte goes").
async fn requeue() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if queued {
            return std::task::Poll::Ready(());
        }
        queued = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

impl UpstreamEvents {
    /// Decodes `response`'s SSE body as `dialect` events; an event that grows past
    /// `max_event` bytes before it ends fails the stream.
    pub fn new(response: UpstreamResponse, dialect: Dialect, max_event: u64) -> Self {
        UpstreamEvents {
            source: Source::Sse(Box::new(Sse {
                body: Box::pin(BodyDataStream::new(response.into_body())),
                splitter: SseSplitter::default(),
                decoder: StreamDecoder::new(dialect),
                body_done: false,
                max_event,
            })),
            ended: None,
        }
    }

    /// A stream whose body `adapter` decodes; `model_id` names the model when it does not.
    pub fn adapted(response: UpstreamResponse, adapter: AdapterPlugin, model_id: &str) -> Self {
        UpstreamEvents {
            source: Source::Adapter(Box::new(Adapted {
                body: Box::pin(BodyDataStream::new(response.into_body())),
                adapter,
                state: StreamState::default(),
                model_id: model_id.to_owned(),
                body_done: false,
                finished: false,
                cut: None,
            })),
            ended: None,
        }
    }

    fn decode(
        decoder: &mut StreamDecoder,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Error> {
        decoder.decode(data, out).map_err(|e| {
            Error::new(
                ErrorKind::BadUpstreamResponse,
                format!("undecodable stream event from the upstream: {e}"),
            )
        })
    }

    /// Appends the next non-empty batch of events to `out`: what arrives first plus whatever
    /// else has already arrived (`gather`), so a burst becomes one write. `Ok(false)` means
    /// the upstream closed the stream; `wait` bounds the silence before giving up.
    pub async fn next_batch(
        &mut self,
        out: &mut Vec<StreamEvent>,
        wait: Duration,
        gather: Gather,
    ) -> Result<bool, Error> {
        if let Some(end) = self.ended.take() {
            return end.map(|()| false);
        }
        let sse = match &mut self.source {
            Source::Adapter(a) => return a.next_batch(out, wait, gather).await,
            Source::Sse(sse) => sse,
        };
        let deadline = Instant::now() + wait;
        let had = out.len();
        // Until there is something to send: events already held, then what arrives.
        loop {
            if let Err(e) = sse.drain(out) {
                if out.len() == had {
                    return Err(e);
                }
                // The events before the failure go out first.
                self.ended = Some(Err(e));
                return Ok(true);
            }
            if out.len() > had {
                break;
            }
            if sse.body_done {
                return sse.end().map(|()| false);
            }
            match tokio::time::timeout_at(deadline, sse.body.next()).await {
                Err(_) => {
                    let wait = humantime::format_duration(wait);
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        match sse.splitter.unfinished() {
                            0 => format!("the upstream sent nothing for {wait}"),
                            n => format!(
                                "the upstream sent {n} bytes of an event it did not finish, then nothing for {wait}"
                            ),
                        },
                    ));
                }
                Ok(None) => sse.body_done = true,
                Ok(Some(Err(e))) => return Err(crate::upstream::transport_error(e)),
                Ok(Some(Ok(chunk))) => sse.splitter.push(&chunk),
            }
        }
        // Then whatever else has arrived (`gather`), so a burst becomes one write.
        for _ in 0..MAX_COALESCED {
            if sse.body_done {
                self.ended = Some(sse.end());
                break;
            }
            match next_ready(&mut sse.body, gather).await {
                None => break,
                Some(None) => sse.body_done = true,
                Some(Some(Err(e))) => {
                    self.ended = Some(Err(crate::upstream::transport_error(e)));
                    break;
                }
                Some(Some(Ok(chunk))) => sse.splitter.push(&chunk),
            }
            if let Err(e) = sse.drain(out) {
                self.ended = Some(Err(e));
                break;
            }
        }
        Ok(true)
    }

    /// Whether the upstream finished the message (as opposed to the connection just ending).
    pub fn finished(&self) -> bool {
        match &self.source {
            Source::Sse(sse) => sse.decoder.finished(),
            Source::Adapter(a) => a.finished,
        }
    }
}

/// The upstream closed the connection, its message unfinished, `n` bytes after its last
/// event: an event it never terminated (or a comment line, which does not change that the
/// message was cut).
fn closed_inside_an_event(n: u64) -> Error {
    Error::new(
        ErrorKind::Transport,
        format!(
            "the upstream closed the stream inside an unfinished event ({n} bytes without the blank line that ends it)"
        ),
    )
}

/// A later attempt that carries on a stream whose upstream failed after it started.
pub struct Resumed {
    /// The new upstream's events.
    pub upstream: UpstreamEvents,
    /// Its events read while deciding whether it answers (up to its first content).
    pub first: Vec<StreamEvent>,
    /// How it joins what the caller already has.
    pub mode: JoinMode,
    /// Usage of every attempt before it, added to its usage events.
    pub carried: Usage,
    /// Its endpoint's idle and total timeouts.
    pub idle: Duration,
    /// See `idle`.
    pub total: Option<Duration>,
}

/// Watches the events that pass through a relay; the request context implements it to
/// record usage and the outcome when the stream ends or the caller leaves.
pub trait RelayObserver: Send {
    /// Called for each event, in order, as it goes to the caller.
    fn event(&mut self, event: &StreamEvent);
    /// The stream is over; a returned future is awaited before the last frame goes out
    /// (so a synchronous ledger write finishes before the caller sees the end).
    fn end(&mut self, outcome: Result<(), &Error>) -> Option<BoxFuture<'static, ()>>;
    /// What the downgoing firewall found; called before `end` (or when the caller leaves).
    fn guarded(&mut self, tally: &Tally) {
        let _ = tally;
    }
    /// The upstream failed with `error` after the stream started and the caller has
    /// `partial`: a later attempt to carry on with, if the failover policy and the plan
    /// have one. Only asked when the relay was built with mid-stream failover.
    fn resume<'a>(
        &'a mut self,
        partial: &'a Partial,
        error: &'a Error,
    ) -> BoxFuture<'a, Option<Resumed>> {
        let _ = (partial, error);
        Box::pin(async { None })
    }
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
    guard: Option<StreamGuard>,
    /// Mid-stream failover: what the caller has, and the join of later attempts. `None`
    /// when it is off, so a stream pays nothing for it.
    splice: Option<Splice>,
}

impl<O: RelayObserver> Relay<O> {
    /// `first` holds the events already read while deciding whether to fail over; `guard`,
    /// when set, holds back and scans the answer's text before it is encoded; with
    /// `fail_over`, an upstream that fails mid-stream is replaced through
    /// [`RelayObserver::resume`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        upstream: UpstreamEvents,
        encoder: StreamEncoder,
        first: Vec<StreamEvent>,
        idle: Duration,
        total: Option<Duration>,
        observer: O,
        guard: Option<StreamGuard>,
        fail_over: bool,
    ) -> Self {
        Relay {
            upstream,
            encoder,
            pending: first,
            idle,
            deadline: total.map(|t| Instant::now() + t),
            done: false,
            observer,
            guard,
            splice: fail_over.then(Splice::default),
        }
    }

    /// Passes this batch through the splice; when the upstream failed mid-stream, asks for
    /// later attempts until one carries on (its first events joined in) or none is left.
    /// Returns how the stream ends now, if it does.
    async fn splice(
        &mut self,
        splice: &mut Splice,
        mut end: Option<Result<(), Error>>,
    ) -> Option<Result<(), Error>> {
        let mut passed = Vec::with_capacity(self.pending.len());
        let mut events = std::mem::take(&mut self.pending);
        loop {
            if let Some(message) = splice.pass(events, &mut passed, true) {
                end = Some(Err(Error::new(
                    ErrorKind::Provider,
                    format!("the upstream sent an error event mid-stream: {message}"),
                )));
            }
            match &end {
                Some(Ok(())) => splice.flush(&mut passed),
                // The answer was complete: a failure after its finish (a cut before the
                // usage or the terminator) loses the caller nothing.
                Some(Err(_)) if splice.finished() => {
                    splice.flush(&mut passed);
                    end = Some(Ok(()));
                }
                // An answer too long to keep is not carried on.
                Some(Err(_)) if !splice.can_resume() => {}
                Some(Err(e)) => {
                    splice.cut();
                    let Some(next) = self.observer.resume(splice.partial(), e).await else {
                        break;
                    };
                    splice.join(next.mode, next.carried);
                    self.upstream = next.upstream;
                    self.idle = next.idle;
                    self.deadline = next.total.map(|t| Instant::now() + t);
                    events = next.first;
                    end = None;
                    continue;
                }
                None => {}
            }
            break;
        }
        self.pending = passed;
        end
    }

    fn encode_pending(&mut self, out: &mut Vec<u8>) {
        for e in self.pending.drain(..) {
            self.observer.event(&e);
            self.encoder.encode(&e, out);
        }
    }

    /// The next body frame, or `None` once the stream is over.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        while !self.done {
            // The first batch was read while deciding whether to fail over.
            let read = if self.pending.is_empty() {
                let wait = match self.deadline {
                    Some(d) => self.idle.min(d.saturating_duration_since(Instant::now())),
                    None => self.idle,
                };
                Some(
                    self.upstream
                        .next_batch(&mut self.pending, wait, Gather::Burst)
                        .await,
                )
            } else {
                None
            };
            let mut end = match read {
                None | Some(Ok(true)) => None,
                Some(Ok(false)) if self.upstream.finished() => Some(Ok(())),
                Some(Ok(false)) => Some(Err(Error::new(
                    ErrorKind::Transport,
                    "the upstream ended the stream before finishing the message",
                ))),
                Some(Err(e)) => Some(Err(e)),
            };
            if let Some(mut splice) = self.splice.take() {
                end = self.splice(&mut splice, end).await;
                self.splice = Some(splice);
            }
            if let Some(guard) = &mut self.guard {
                let events = std::mem::take(&mut self.pending);
                let mut passed = Vec::with_capacity(events.len());
                let mut verdict = guard.process(events, &mut passed).await;
                if verdict.is_ok() && end.is_some() {
                    verdict = guard.flush(&mut passed).await;
                }
                self.pending = passed;
                if verdict.is_err() {
                    end = Some(Err(guard.block_error()));
                }
            }
            let mut out = Vec::with_capacity(256);
            self.encode_pending(&mut out);
            if let Some(end) = end {
                self.done = true;
                match &end {
                    Ok(()) => self.encoder.finish(&mut out),
                    Err(e) => self.encoder.fail(e, &mut out),
                }
                if let Some(guard) = &self.guard {
                    self.observer.guarded(&guard.tally);
                }
                if let Some(f) = self.observer.end(end.as_ref().map(|_| ())) {
                    f.await;
                }
            }
            if !out.is_empty() {
                return Some(out.into());
            }
        }
        None
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

impl<O: RelayObserver> Drop for Relay<O> {
    fn drop(&mut self) {
        // The caller left mid-stream: the observer accounts for it, findings included.
        if !self.done
            && let Some(guard) = &self.guard
        {
            self.observer.guarded(&guard.tally);
        }
    }
}

#[cfg(test)]
mod tests;

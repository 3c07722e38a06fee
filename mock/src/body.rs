//! Response bodies: a whole JSON document, or an SSE stream that renders one event per frame,
//! lazily, with the delays, cuts and stalls the behavior asks for.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A dialect's stream, rendered one event at a time so a long stream costs no memory up front.
pub(crate) trait EventSource: Send + 'static {
    fn event_count(&self) -> usize;
    /// Whether event `i` carries reasoning, text or tool-argument text. Deltas are what
    /// `chunks`, `cut_after` and `stall_after_chunks` count and what `chunk_delay_ms` separates;
    /// the structural events before the first delta (role chunk, `message_start`, ...) travel
    /// with it, so "after 0 deltas" means right after the headers.
    fn is_delta(&self, i: usize) -> bool;
    /// Appends event `i`, SSE framing included, to `out`.
    fn render(&self, i: usize, out: &mut BytesMut);
    /// Appends the error event the provider sends when it fails mid-stream (an overloaded
    /// upstream), framing included, to `out`: what `error_after` sends instead of the rest.
    fn render_error(&self, message: &str, out: &mut BytesMut);
}

/// The message of the error event `error_after` sends.
pub(crate) const ERROR_AFTER_MESSAGE: &str = "mock upstream: overloaded (error_after)";

/// What happens once `after` deltas went out.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ending {
    Cut {
        after: usize,
    },
    Stall {
        after: usize,
    },
    /// One event whose data is not JSON, then the end of the body.
    Malformed {
        after: usize,
    },
    /// One error event in the dialect's shape, then the end of the body.
    Error {
        after: usize,
    },
}

pub(crate) struct StreamTiming {
    pub ttft: Duration,
    pub chunk_delay: Duration,
    pub ending: Option<Ending>,
}

pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Sse(Box<SseBody>),
    /// `head`, then `left` bytes of spaces in 64 KiB frames; length unknown to the client.
    Padded {
        head: Option<Bytes>,
        left: u64,
    },
    /// `head` (part of a body whose `Content-Length` promised more), then an error: hyper
    /// drops the connection with the body unfinished.
    Cut(Option<Bytes>),
    /// Nothing, ever: headers sent, the body never comes.
    Stalled,
}

/// One frame of padding, shared by every padded body.
static PAD: Bytes = Bytes::from_static(&[b' '; 64 * 1024]);

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> MockBody {
        MockBody::Full(Some(bytes.into()))
    }

    pub(crate) fn sse(source: Box<dyn EventSource>, timing: StreamTiming) -> MockBody {
        MockBody::Sse(Box::new(SseBody {
            source,
            timing,
            next: 0,
            deltas_sent: 0,
            phase: Phase::Next,
            sleep: None,
            buf: BytesMut::new(),
        }))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Sse(sse) => sse.poll_event(cx),
            MockBody::Padded { head, left } => {
                if let Some(h) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(h))));
                }
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(PAD.len() as u64);
                *left -= n;
                Poll::Ready(Some(Ok(Frame::data(PAD.slice(..n as usize)))))
            }
            MockBody::Cut(head) => match head.take() {
                Some(h) => Poll::Ready(Some(Ok(Frame::data(h)))),
                None => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "cut_body: the answer is cut here",
                )))),
            },
            MockBody::Stalled => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Sse(_) | MockBody::Padded { .. } | MockBody::Cut(_) | MockBody::Stalled => {
                SizeHint::default()
            }
        }
    }
}

enum Phase {
    /// Decide what to do about event `next`.
    Next,
    /// Sleeping before event `next`.
    Waiting,
    /// Event `next` is due now.
    Emit,
    /// Gave the connection one turn to flush before cutting.
    Cutting,
    Stalled,
    /// The body is over (after a malformed or an error event).
    Ended,
}

pub(crate) struct SseBody {
    source: Box<dyn EventSource>,
    timing: StreamTiming,
    next: usize,
    deltas_sent: usize,
    phase: Phase,
    /// Allocated on the first delay only, then re-armed: zero-delay streams never touch the timer.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Events are split off one shared allocation instead of allocating each.
    buf: BytesMut,
}

impl SseBody {
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            match self.phase {
                Phase::Stalled => return Poll::Pending,
                Phase::Ended => return Poll::Ready(None),
                Phase::Cutting => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock upstream: stream cut (cut_after)",
                    ))));
                }
                Phase::Waiting => {
                    if let Some(sleep) = self.sleep.as_mut() {
                        ready!(sleep.as_mut().poll(cx));
                    }
                    self.phase = Phase::Emit;
                }
                Phase::Next => {
                    if self.next >= self.source.event_count() {
                        return Poll::Ready(None);
                    }
                    match self.timing.ending {
                        Some(Ending::Cut { after }) if self.deltas_sent >= after => {
                            // An error now would make hyper drop events it has buffered but not
                            // yet written; one pending turn lets it flush them first.
                            self.phase = Phase::Cutting;
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        Some(Ending::Malformed { after }) if self.deltas_sent >= after => {
                            let bad = Bytes::from_static(b"data: {\"choices\": [{\"delta\": \n\n");
                            self.phase = Phase::Ended;
                            return Poll::Ready(Some(Ok(Frame::data(bad))));
                        }
                        Some(Ending::Error { after }) if self.deltas_sent >= after => {
                            self.source.render_error(ERROR_AFTER_MESSAGE, &mut self.buf);
                            self.phase = Phase::Ended;
                            return Poll::Ready(Some(Ok(Frame::data(self.buf.split().freeze()))));
                        }
                        Some(Ending::Stall { after }) if self.deltas_sent >= after => {
                            // Never woken: the connection ends when the client or the server
                            // goes away.
                            self.phase = Phase::Stalled;
                            return Poll::Pending;
                        }
                        _ => {}
                    }
                    let is_delta = self.source.is_delta(self.next);
                    let delay = if self.next == 0 {
                        self.timing.ttft
                    } else if is_delta && self.deltas_sent > 0 {
                        self.timing.chunk_delay
                    } else {
                        Duration::ZERO
                    };
                    if delay.is_zero() {
                        self.phase = Phase::Emit;
                    } else {
                        let deadline = Instant::now() + delay;
                        match self.sleep.as_mut() {
                            Some(sleep) => sleep.as_mut().reset(deadline),
                            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                        }
                        self.phase = Phase::Waiting;
                    }
                }
                Phase::Emit => {
                    let i = self.next;
                    self.next += 1;
                    if self.source.is_delta(i) {
                        self.deltas_sent += 1;
                    }
                    if self.buf.capacity() < 512 {
                        self.buf.reserve(8 * 1024);
                    }
                    self.source.render(i, &mut self.buf);
                    self.phase = Phase::Next;
                    return Poll::Ready(Some(Ok(Frame::data(self.buf.split().freeze()))));
                }
            }
        }
    }
}

/// Appends `data: {json}\n\n`.
pub(crate) fn push_data<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    out.extend_from_slice(b"data: ");
    push_json(out, value);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: {name}\ndata: {json}\n\n`.
pub(crate) fn push_event<T: serde::Serialize + ?Sized>(out: &mut BytesMut, name: &str, value: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    push_data(out, value);
}

fn push_json<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    use bytes::BufMut;
    // Serializing plain structs and `Value`s into memory cannot fail.
    let _ = serde_json::to_writer(out.writer(), value);
}

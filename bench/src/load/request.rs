//! One timed request: send, read the response to the end, and note when the head, the first
//! body byte and the last byte arrived. A response counts as a success only when its status is
//! 2xx and, for streams, its body ends the way a complete stream ends — a gateway that cuts a
//! stream short must not look fast.

use http_body_util::BodyExt;

use super::clock::now_ns;
use super::conn::{Pool, RequestSpec};

/// How to tell a complete response.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Bytes the body must end with (ignoring trailing whitespace), e.g. `data: [DONE]`.
    pub tail: Option<&'static [u8]>,
}

impl Expect {
    /// Any 2xx response read to its end.
    pub const JSON: Expect = Expect { tail: None };
    /// An OpenAI chat stream that reached `data: [DONE]`.
    pub const OPENAI_STREAM: Expect = Expect {
        tail: Some(b"data: [DONE]"),
    };
}

/// When each part of a successful response arrived, on the [`now_ns`] clock.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub head: u64,
    /// First non-empty body frame (for SSE: the first event), or the end for an empty body.
    pub first_byte: u64,
    pub end: u64,
}

/// What went wrong with a request, short enough to show in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure(pub String);

/// Sends one request over a pooled connection and reads the whole response. `on_first_byte`
/// runs when the first body byte arrives (a watcher counts streams that are open).
pub async fn send(
    pool: &Pool,
    spec: &RequestSpec,
    expect: Expect,
    on_first_byte: impl FnOnce(),
) -> Result<Timing, Failure> {
    let request = spec
        .build()
        .map_err(|e| Failure(format!("bad request: {e}")))?;
    let mut sender = pool
        .get()
        .await
        .map_err(|e| Failure(format!("connect: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure(format!("send: {e}")))?;
    let head = now_ns();
    let status = response.status();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut on_first_byte = Some(on_first_byte);
    // Only the last few bytes are kept: enough to check the ending without buffering streams.
    let mut tail: Vec<u8> = Vec::new();
    let mut error_text: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure(format!("body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if data.is_empty() {
                continue;
            }
            if first_byte.is_none() {
                first_byte = Some(now_ns());
                if let Some(f) = on_first_byte.take() {
                    f();
                }
            }
            if !status.is_success() && error_text.len() < 300 {
                error_text.extend_from_slice(&data[..data.len().min(300)]);
            }
            if expect.tail.is_some() {
                tail.extend_from_slice(&data[data.len().saturating_sub(64)..]);
                let excess = tail.len().saturating_sub(64);
                tail.drain(..excess);
            }
        }
    }
    let end = now_ns();
    // Only a connection whose response was read to the end can carry the next request.
    pool.put(sender);
    if !status.is_success() {
        let text = String::from_utf8_lossy(&error_text);
        return Err(Failure(format!(
            "status {}: {}",
            status.as_u16(),
            text.trim()
        )));
    }
    if let Some(want) = expect.tail
        && !tail.trim_ascii_end().ends_with(want)
    {
        return Err(Failure(format!(
            "incomplete body: does not end with {:?}",
            String::from_utf8_lossy(want)
        )));
    }
    Ok(Timing {
        head,
        first_byte: first_byte.unwrap_or(end),
        end,
    })
}

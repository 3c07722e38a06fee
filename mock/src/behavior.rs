//! The knobs that steer the mock upstream, and the per-request overrides (the `x-mock` header and
//! `[[mock {...}]]` directives in the last user message) merged over them.

use serde::{Deserialize, Deserializer, Serialize};

/// Text deltas in a stream when [`MockBehavior::chunks`] is not set.
pub const DEFAULT_CHUNKS: usize = 4;

/// Upper bound on [`MockBehavior::chunks`], so a stray override cannot exhaust memory.
pub const MAX_CHUNKS: usize = 100_000;

/// Upper bound on every `*_ms` delay (one day), so deadlines never overflow.
pub const MAX_DELAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Reply text when [`MockBehavior::text`] is not set.
pub const DEFAULT_TEXT: &str = "Hello from the mock upstream.";

/// How the mock answers. Every field has a neutral default, so `MockBehavior::default()` is a
/// fast, well-behaved upstream.
///
/// Token semantics are the same for both dialects so a test can compare what the gateway
/// accounted: `input_tokens` are *uncached* input tokens (Anthropic's convention; OpenAI's
/// `prompt_tokens` is reported as `input + cache_read + cache_write`), and `output_tokens` is all
/// output *including* `reasoning_tokens` (both providers' convention).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct MockBehavior {
    /// Delay before the response headers (also before error responses).
    pub latency_ms: u64,
    /// Streams: delay after the headers before the first event.
    pub ttft_ms: u64,
    /// Text deltas in a stream (default 4, at most [`MAX_CHUNKS`]); the JSON reply text is their
    /// concatenation. Tool-call arguments are split into `max(chunks, 2)` deltas.
    pub chunks: Option<usize>,
    /// Streams: delay between two delta events.
    pub chunk_delay_ms: u64,
    /// Answer with this status and a provider-shaped error body (a 3xx: an empty redirect
    /// whose `Location` is the path that was asked for).
    pub status: Option<u16>,
    /// `Some(true)` forces a tool call, `Some(false)` forbids it, `None` calls the first declared
    /// tool unless the last message is a tool result.
    pub tool_call: Option<bool>,
    /// Include reasoning: OpenAI `reasoning_content`, Anthropic `thinking` block.
    pub reasoning: bool,
    /// Streams: after this many delta events, drop the connection (no finish, no `[DONE]` /
    /// `message_stop`). `0` cuts right after the headers, before any event.
    pub cut_after: Option<usize>,
    /// Never answer; hold the connection until the client goes away.
    pub stall_before_headers: bool,
    /// JSON answers: the headers (with the whole body's `Content-Length`) and the first half
    /// of the body, then the connection is dropped.
    pub cut_body: bool,
    /// JSON answers: the headers, then nothing; the connection is held open.
    pub stall_body: bool,
    /// Reset the connection (TCP RST) once a request's first bytes arrived, before any
    /// answer. Server-level only: read when the connection is accepted, so an in-prompt
    /// override cannot set it.
    pub reset: bool,
    /// Streams: after this many delta events, send nothing more and keep the connection open.
    /// `0` stalls right after the headers, before any event.
    pub stall_after_chunks: Option<usize>,
    /// Reply text (default [`DEFAULT_TEXT`], repeated when more chunks than words are asked for).
    pub text: Option<String>,
    /// Uncached input tokens (default: characters of the messages / 4, at least 1).
    pub input_tokens: Option<u64>,
    /// Output tokens including reasoning (default: delta count + `reasoning_tokens`).
    pub output_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// The reasoning share of `output_tokens`.
    pub reasoning_tokens: u64,
    /// Bill like a provider at its most expensive: input = every byte of the messages' text,
    /// tool definitions and schemas; output = `max_tokens` × `n`, whatever the text.
    pub bill_worst: bool,
    /// JSON answers: this many bytes of trailing whitespace (still valid JSON), sent chunked
    /// with no Content-Length, so only a reader that counts can stop early.
    pub pad_bytes: Option<u64>,
    /// Error statuses carry `Retry-After: N` (seconds), as providers send with a 429.
    pub retry_after_s: Option<u64>,
    /// Error statuses come as an HTML page (`text/html`), as a proxy in front of a provider
    /// sends them, instead of the provider's JSON error.
    pub html_error: bool,
    /// Streams: after this many delta events, one event whose data is not JSON, then the
    /// body ends.
    pub malformed_after: Option<usize>,
    /// Streams: after this many delta events, one error event in the dialect's own shape (an
    /// overloaded upstream), then the body ends cleanly: the mid-stream failure a provider
    /// reports in-band, which the gateway must not mistake for the end of the answer.
    pub error_after: Option<usize>,
    /// When the conversation holds an assistant turn (the partial answer the gateway carries
    /// over on a mid-stream failover) whose text, trailing whitespace trimmed, starts the reply
    /// text, answer only the rest of the reply text, like a model continuing its prefill.
    pub continue_partial: bool,
    /// With `continue_partial`: start the continuation this many words early, repeating the
    /// end of the partial answer, as models sometimes do; the gateway must strip the overlap.
    pub repeat_words: usize,
    /// Answer a 400 when the conversation ends with an assistant turn, like a model that does
    /// not support prefill, so a test can check the gateway does not send it one.
    pub refuse_prefill: bool,
}

impl MockBehavior {
    /// Text deltas of a stream: `chunks` or [`DEFAULT_CHUNKS`], at most [`MAX_CHUNKS`].
    pub fn chunk_count(&self) -> usize {
        self.chunks.unwrap_or(DEFAULT_CHUNKS).min(MAX_CHUNKS)
    }
}

/// A partial [`MockBehavior`]: fields left out keep their value, `null` clears an optional one.
/// Unknown fields are rejected so a typo in a test fails loudly instead of being ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BehaviorPatch {
    latency_ms: Option<u64>,
    ttft_ms: Option<u64>,
    #[serde(deserialize_with = "present")]
    chunks: Option<Option<usize>>,
    chunk_delay_ms: Option<u64>,
    #[serde(deserialize_with = "present")]
    status: Option<Option<u16>>,
    #[serde(deserialize_with = "present")]
    tool_call: Option<Option<bool>>,
    reasoning: Option<bool>,
    #[serde(deserialize_with = "present")]
    cut_after: Option<Option<usize>>,
    stall_before_headers: Option<bool>,
    #[serde(deserialize_with = "present")]
    stall_after_chunks: Option<Option<usize>>,
    #[serde(deserialize_with = "present")]
    text: Option<Option<String>>,
    #[serde(deserialize_with = "present")]
    input_tokens: Option<Option<u64>>,
    #[serde(deserialize_with = "present")]
    output_tokens: Option<Option<u64>>,
    cache_read_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    bill_worst: Option<bool>,
    #[serde(deserialize_with = "present")]
    pad_bytes: Option<Option<u64>>,
    html_error: Option<bool>,
    #[serde(deserialize_with = "present")]
    retry_after_s: Option<Option<u64>>,
    #[serde(deserialize_with = "present")]
    malformed_after: Option<Option<usize>>,
    #[serde(deserialize_with = "present")]
    error_after: Option<Option<usize>>,
    continue_partial: Option<bool>,
    repeat_words: Option<usize>,
    refuse_prefill: Option<bool>,
    cut_body: Option<bool>,
    stall_body: Option<bool>,
    /// Accepted as `false` only (a whole behavior serialized carries it): a connection is
    /// reset when it is accepted, before any request's overrides are read.
    reset: Option<bool>,
}

/// Only called for fields present in the input, so `null` becomes `Some(None)` ("clear it")
/// while an absent field stays `None` ("keep it").
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl BehaviorPatch {
    pub(crate) fn apply(self, b: &mut MockBehavior) {
        macro_rules! merge {
            ($($field:ident),* $(,)?) => {
                $( if let Some(v) = self.$field { b.$field = v; } )*
            };
        }
        merge!(
            latency_ms,
            ttft_ms,
            chunks,
            chunk_delay_ms,
            status,
            tool_call,
            reasoning,
            cut_after,
            stall_before_headers,
            stall_after_chunks,
            text,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            reasoning_tokens,
            bill_worst,
            pad_bytes,
            html_error,
            retry_after_s,
            malformed_after,
            error_after,
            continue_partial,
            repeat_words,
            refuse_prefill,
            cut_body,
            stall_body,
        );
    }

    /// Refuses what a per-request override cannot do.
    fn checked(self) -> Result<BehaviorPatch, String> {
        if self.reset == Some(true) {
            return Err("reset is server-level only (MockServer::set_behavior or --behavior): a connection is reset when it is accepted, before its requests' overrides are read".into());
        }
        Ok(self)
    }
}

/// Parses the `x-mock` header value.
pub(crate) fn parse_header(value: &[u8]) -> Result<BehaviorPatch, String> {
    serde_json::from_slice::<BehaviorPatch>(value)
        .map_err(|e| format!("invalid x-mock header: {e}"))?
        .checked()
}

const DIRECTIVE: &str = "[[mock";

/// Every `[[mock {json}]]` directive in `text`, in order. Words that merely start with `[[mock`
/// (`[[mockingbird]]`) are not directives; a real directive with bad JSON is an error.
pub(crate) fn parse_directives(text: &str) -> Result<Vec<BehaviorPatch>, String> {
    let mut patches = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(DIRECTIVE) {
        let after = &rest[at + DIRECTIVE.len()..];
        let body = after.trim_start();
        if !body.starts_with('{') {
            if body.len() == after.len() {
                rest = after;
                continue;
            }
            return Err(
                "invalid [[mock ...]] directive: expected a JSON object after `[[mock`".into(),
            );
        }
        // A stream deserializer stops right after the object, so a `]]` inside a JSON string
        // does not end the directive early.
        let mut values = serde_json::Deserializer::from_str(body).into_iter::<BehaviorPatch>();
        let patch = match values.next() {
            Some(Ok(patch)) => patch.checked()?,
            Some(Err(e)) => return Err(format!("invalid [[mock ...]] directive: {e}")),
            None => return Err("invalid [[mock ...]] directive: empty".into()),
        };
        let tail = body[values.byte_offset()..].trim_start();
        let Some(tail) = tail.strip_prefix("]]") else {
            return Err("invalid [[mock ...]] directive: missing the closing `]]`".into());
        };
        patches.push(patch);
        rest = tail;
    }
    Ok(patches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_overrides_only_present_fields_and_null_clears() {
        let mut b = MockBehavior {
            latency_ms: 5,
            status: Some(500),
            text: Some("x".into()),
            ..Default::default()
        };
        parse_header(br#"{"status": null, "chunks": 7}"#)
            .unwrap()
            .apply(&mut b);
        assert_eq!(b.latency_ms, 5);
        assert_eq!(b.status, None);
        assert_eq!(b.chunks, Some(7));
        assert_eq!(b.text.as_deref(), Some("x"));
    }

    #[test]
    fn failover_knobs_merge() {
        let mut b = MockBehavior {
            error_after: Some(3),
            ..Default::default()
        };
        parse_header(br#"{"continue_partial": true, "repeat_words": 2, "refuse_prefill": true}"#)
            .unwrap()
            .apply(&mut b);
        assert_eq!(b.error_after, Some(3));
        assert!(b.continue_partial && b.refuse_prefill);
        assert_eq!(b.repeat_words, 2);
        parse_header(br#"{"error_after": null}"#)
            .unwrap()
            .apply(&mut b);
        assert_eq!(b.error_after, None);
        // The JSON-body faults merge; a whole behavior (reset false) is accepted, a
        // per-request reset is not.
        parse_header(br#"{"cut_body": true, "stall_body": true, "reset": false}"#)
            .unwrap()
            .apply(&mut b);
        assert!(b.cut_body && b.stall_body && !b.reset);
        let e = parse_header(br#"{"reset": true}"#).err().unwrap();
        assert!(e.contains("server-level"), "{e}");
        let e = parse_directives(r#"hi [[mock {"reset": true}]]"#)
            .err()
            .unwrap();
        assert!(e.contains("server-level"), "{e}");
        // The whole default behavior, serialized as the bench sends it, parses.
        let whole = serde_json::to_vec(&MockBehavior::default()).unwrap();
        parse_header(&whole).unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse_header(br#"{"statuss": 500}"#).unwrap_err();
        assert!(err.contains("statuss"), "{err}");
    }

    #[test]
    fn directives_are_found_and_parsed() {
        let got =
            parse_directives(r#"hi [[mock {"status": 429}]] and [[mock{"text":"a]]b"} ]] bye"#)
                .unwrap();
        assert_eq!(got.len(), 2);
        let mut b = MockBehavior::default();
        for p in got {
            p.apply(&mut b);
        }
        assert_eq!(b.status, Some(429));
        assert_eq!(b.text.as_deref(), Some("a]]b"));
    }

    #[test]
    fn non_directives_are_ignored_and_bad_ones_rejected() {
        assert!(parse_directives("[[mockingbird]]").unwrap().is_empty());
        assert!(parse_directives("no directive").unwrap().is_empty());
        assert!(parse_directives(r#"[[mock {"status": "x"}]]"#).is_err());
        assert!(parse_directives(r#"[[mock {"status": 1}"#).is_err());
        assert!(parse_directives("[[mock status]]").is_err());
        assert!(parse_directives(r#"[[mock {"status": 1"#).is_err());
    }
}

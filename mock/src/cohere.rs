//! A Cohere-chat-style API (`POST /v1/chat`), a shape the gateway does not speak natively and
//! reaches through its provider-adapter plugin: the JSON reply (`text`, `finish_reason`,
//! `meta.billed_units`), the newline-delimited JSON stream (`stream-start`,
//! `text-generation`, `stream-end`) and `{"message": ...}` errors.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde_json::{Value, json};

use super::body::EventSource;
use super::reply::{Content, Finish, Reply};
use super::server::ReplyCtx;

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop | Finish::ToolCalls => "COMPLETE",
        Finish::Length => "MAX_TOKENS",
    }
}

/// The whole answer; tool calls are not modelled (the text is the arguments).
fn text(reply: &Reply) -> &str {
    match &reply.content {
        Content::Text(p) | Content::ToolCall { args: p, .. } => p.full(),
    }
}

fn response(ctx: &ReplyCtx, reply: &Reply) -> Value {
    json!({
        "response_id": format!("resp_mock{}", ctx.seq),
        "generation_id": format!("gen_mock{}", ctx.seq),
        "text": text(reply),
        "finish_reason": finish_reason(reply.finish),
        "meta": {
            "api_version": {"version": "1"},
            "billed_units": {
                "input_tokens": reply.usage.input,
                "output_tokens": reply.usage.output,
            },
        },
    })
}

pub(crate) fn json_reply(ctx: &ReplyCtx, reply: &Reply) -> Bytes {
    Bytes::from(response(ctx, reply).to_string())
}

pub(crate) fn error_body(_status: StatusCode, message: &str) -> Bytes {
    Bytes::from(json!({ "message": message }).to_string())
}

/// Event 0 is `stream-start`, then one `text-generation` per piece, then `stream-end`.
pub(crate) struct Stream {
    ctx: ReplyCtx,
    reply: Reply,
    deltas: usize,
}

impl Stream {
    pub(crate) fn new(ctx: ReplyCtx, reply: Reply) -> Stream {
        let deltas = reply.pieces(reply.main_part()).len();
        Stream { ctx, reply, deltas }
    }
}

impl EventSource for Stream {
    fn event_count(&self) -> usize {
        self.deltas + 2
    }

    fn is_delta(&self, i: usize) -> bool {
        (1..=self.deltas).contains(&i)
    }

    fn render(&self, i: usize, out: &mut BytesMut) {
        let event = if i == 0 {
            json!({"is_finished": false, "event_type": "stream-start", "generation_id": format!("gen_mock{}", self.ctx.seq)})
        } else if i <= self.deltas {
            let piece = self.reply.pieces(self.reply.main_part()).get(i - 1);
            json!({"is_finished": false, "event_type": "text-generation", "text": piece})
        } else if i == self.deltas + 1 {
            json!({
                "is_finished": true,
                "event_type": "stream-end",
                "finish_reason": finish_reason(self.reply.finish),
                "response": response(&self.ctx, &self.reply),
            })
        } else {
            return;
        };
        push_line(out, &event);
    }

    /// A `stream-end` that finishes with `ERROR` and says why, instead of the response.
    fn render_error(&self, message: &str, out: &mut BytesMut) {
        let event = json!({
            "is_finished": true,
            "event_type": "stream-end",
            "finish_reason": "ERROR",
            "error": message,
        });
        push_line(out, &event);
    }
}

/// Appends one event of the newline-delimited JSON stream.
fn push_line(out: &mut BytesMut, event: &Value) {
    out.extend_from_slice(event.to_string().as_bytes());
    out.extend_from_slice(b"\n");
}

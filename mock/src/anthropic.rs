//! Anthropic Messages: the `message` JSON reply, the `event: ...` SSE stream, and
//! Anthropic-shaped errors.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::body::{EventSource, push_event};
use super::reply::{Content, Finish, Part, Reply, Usage};
use super::server::ReplyCtx;

/// Thinking blocks must carry a signature; clients pass it back verbatim, so any opaque string
/// will do.
const SIGNATURE: &str = "bW9jay11cHN0cmVhbS1zaWduYXR1cmU=";

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::ToolCalls => "tool_use",
        Finish::Length => "max_tokens",
    }
}

fn usage_json(u: &Usage, output_tokens: u64) -> Value {
    json!({
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "output_tokens": output_tokens,
    })
}

fn tool_input(args: &str) -> Value {
    // The arguments were produced by the mock itself, so they always parse.
    serde_json::from_str(args).unwrap_or_else(|_| json!({}))
}

pub(crate) fn json_reply(ctx: &ReplyCtx, reply: &Reply) -> Bytes {
    let mut content = Vec::with_capacity(2);
    if let Some(reasoning) = &reply.reasoning {
        content.push(
            json!({ "type": "thinking", "thinking": reasoning.full(), "signature": SIGNATURE }),
        );
    }
    content.push(match &reply.content {
        Content::Text(text) => json!({ "type": "text", "text": text.full() }),
        Content::ToolCall { name, args } => json!({
            "type": "tool_use",
            "id": format!("toolu_mock{}", ctx.seq),
            "name": name,
            "input": tool_input(args.full()),
        }),
    });
    let body = json!({
        "id": format!("msg_mock{}", ctx.seq),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": stop_reason(reply.finish),
        "stop_sequence": null,
        "usage": usage_json(&reply.usage, reply.usage.output),
    });
    Bytes::from(body.to_string())
}

/// Anthropic's error envelope with the error type the API uses for that status.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Bytes {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    Bytes::from(body.to_string())
}

#[derive(Clone, Copy, Debug)]
enum Step {
    MessageStart,
    BlockStart {
        index: u32,
        part: Part,
    },
    Ping,
    Delta {
        index: u32,
        part: Part,
        piece: usize,
    },
    Signature {
        index: u32,
    },
    BlockStop {
        index: u32,
    },
    MessageDelta,
    MessageStop,
}

pub(crate) struct Stream {
    ctx: ReplyCtx,
    reply: Reply,
    steps: Vec<Step>,
}

impl Stream {
    pub(crate) fn new(ctx: ReplyCtx, reply: Reply) -> Stream {
        let mut steps = Vec::with_capacity(16 + reply.pieces(reply.main_part()).len());
        steps.push(Step::MessageStart);
        let mut index = 0;
        let mut block = |steps: &mut Vec<Step>, part: Part, pieces: usize| {
            steps.push(Step::BlockStart { index, part });
            if index == 0 {
                steps.push(Step::Ping);
            }
            steps.extend((0..pieces).map(|piece| Step::Delta { index, part, piece }));
            if part == Part::Reasoning {
                steps.push(Step::Signature { index });
            }
            steps.push(Step::BlockStop { index });
            index += 1;
        };
        if let Some(reasoning) = &reply.reasoning {
            block(&mut steps, Part::Reasoning, reasoning.len());
        }
        let main = reply.main_part();
        block(&mut steps, main, reply.pieces(main).len());
        steps.push(Step::MessageDelta);
        steps.push(Step::MessageStop);
        Stream { ctx, reply, steps }
    }

    fn block_start(&self, index: u32, part: Part) -> Value {
        let block = match (part, &self.reply.content) {
            (Part::Reasoning, _) => json!({ "type": "thinking", "thinking": "", "signature": "" }),
            (_, Content::ToolCall { name, .. }) => json!({
                "type": "tool_use",
                "id": format!("toolu_mock{}", self.ctx.seq),
                "name": name,
                "input": {},
            }),
            (_, Content::Text(_)) => json!({ "type": "text", "text": "" }),
        };
        json!({ "type": "content_block_start", "index": index, "content_block": block })
    }
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaBody<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

impl EventSource for Stream {
    fn event_count(&self) -> usize {
        self.steps.len()
    }

    fn is_delta(&self, i: usize) -> bool {
        matches!(self.steps.get(i), Some(Step::Delta { .. }))
    }

    fn render(&self, i: usize, out: &mut BytesMut) {
        let Some(&step) = self.steps.get(i) else {
            return;
        };
        let delta = |out: &mut BytesMut, index: u32, delta: DeltaBody<'_>| {
            let event = BlockDelta {
                kind: "content_block_delta",
                index,
                delta,
            };
            push_event(out, "content_block_delta", &event);
        };
        match step {
            Step::MessageStart => {
                let event = json!({
                    "type": "message_start",
                    "message": {
                        "id": format!("msg_mock{}", self.ctx.seq),
                        "type": "message",
                        "role": "assistant",
                        "model": self.ctx.model,
                        "content": [],
                        "stop_reason": null,
                        "stop_sequence": null,
                        // Like the API: the real output count arrives in `message_delta`.
                        "usage": usage_json(&self.reply.usage, 1),
                    },
                });
                push_event(out, "message_start", &event);
            }
            Step::BlockStart { index, part } => {
                push_event(out, "content_block_start", &self.block_start(index, part));
            }
            Step::Ping => push_event(out, "ping", &json!({ "type": "ping" })),
            Step::Delta { index, part, piece } => {
                let text = self.reply.pieces(part).get(piece);
                let body = match part {
                    Part::Reasoning => DeltaBody::Thinking { thinking: text },
                    Part::Text => DeltaBody::Text { text },
                    Part::ToolArgs => DeltaBody::InputJson { partial_json: text },
                };
                delta(out, index, body);
            }
            Step::Signature { index } => {
                delta(
                    out,
                    index,
                    DeltaBody::Signature {
                        signature: SIGNATURE,
                    },
                );
            }
            Step::BlockStop { index } => {
                let event = json!({ "type": "content_block_stop", "index": index });
                push_event(out, "content_block_stop", &event);
            }
            Step::MessageDelta => {
                let event = json!({
                    "type": "message_delta",
                    "delta": { "stop_reason": stop_reason(self.reply.finish), "stop_sequence": null },
                    "usage": { "output_tokens": self.reply.usage.output },
                });
                push_event(out, "message_delta", &event);
            }
            Step::MessageStop => {
                push_event(out, "message_stop", &json!({ "type": "message_stop" }));
            }
        }
    }

    /// Anthropic's `event: error`, as the API sends when it is overloaded mid-stream; no
    /// `message_stop` follows.
    fn render_error(&self, message: &str, out: &mut BytesMut) {
        let event = StreamError {
            kind: "error",
            error: StreamErrorDetail {
                kind: "overloaded_error",
                message,
            },
        };
        push_event(out, "error", &event);
    }
}

/// A struct rather than `json!`, so the fields keep the order the API sends them in.
#[derive(Serialize)]
struct StreamError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: StreamErrorDetail<'a>,
}

#[derive(Serialize)]
struct StreamErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

//! Google Gemini `generateContent`: the `GenerateContentResponse` JSON reply, the
//! `streamGenerateContent?alt=sse` stream (one whole response object per `data:`), and
//! Google-shaped errors. The model comes from the URL, not the body.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde_json::{Value, json};

use super::body::{EventSource, push_data};
use super::reply::{Content, Finish, Part, Reply, Usage};
use super::server::ReplyCtx;

fn finish_reason(f: Finish) -> &'static str {
    match f {
        // Gemini says STOP after a function call too.
        Finish::Stop | Finish::ToolCalls => "STOP",
        Finish::Length => "MAX_TOKENS",
    }
}

/// Gemini's usage: the prompt count includes cached tokens, and thoughts are counted apart
/// from the candidates.
fn usage_json(u: &Usage) -> Value {
    let prompt = u
        .input
        .saturating_add(u.cache_read)
        .saturating_add(u.cache_write);
    let candidates = u.output.saturating_sub(u.reasoning);
    let mut v = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt.saturating_add(u.output),
    });
    if u.cache_read > 0 {
        v["cachedContentTokenCount"] = u.cache_read.into();
    }
    if u.reasoning > 0 {
        v["thoughtsTokenCount"] = u.reasoning.into();
    }
    v
}

fn call_part(name: &str, args: &str) -> Value {
    // The arguments were produced by the mock itself, so they always parse.
    let args: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
    json!({ "functionCall": { "name": name, "args": args } })
}

fn response(
    ctx: &ReplyCtx,
    parts: Vec<Value>,
    finish: Option<Finish>,
    usage: Option<&Usage>,
) -> Value {
    let mut candidate = json!({ "content": { "role": "model", "parts": parts }, "index": 0 });
    if let Some(f) = finish {
        candidate["finishReason"] = finish_reason(f).into();
    }
    let mut v = json!({
        "candidates": [candidate],
        "modelVersion": ctx.model,
        "responseId": format!("resp_mock{}", ctx.seq),
    });
    if let Some(u) = usage {
        v["usageMetadata"] = usage_json(u);
    }
    v
}

pub(crate) fn json_reply(ctx: &ReplyCtx, reply: &Reply) -> Bytes {
    let mut parts = Vec::with_capacity(2);
    if let Some(reasoning) = &reply.reasoning {
        parts.push(json!({ "text": reasoning.full(), "thought": true }));
    }
    parts.push(match &reply.content {
        Content::Text(text) => json!({ "text": text.full() }),
        Content::ToolCall { name, args } => call_part(name, args.full()),
    });
    let body = response(ctx, parts, Some(reply.finish), Some(&reply.usage));
    Bytes::from(body.to_string())
}

/// Google's error envelope: `{"error": {"code", "message", "status"}}`.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Bytes {
    let name = match status.as_u16() {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    };
    let body = json!({ "error": { "code": status.as_u16(), "message": message, "status": name } });
    Bytes::from(body.to_string())
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Delta(Part, usize),
    /// The whole function call: Gemini does not stream arguments.
    Call,
    Finish,
}

pub(crate) struct Stream {
    ctx: ReplyCtx,
    reply: Reply,
    steps: Vec<Step>,
}

impl Stream {
    pub(crate) fn new(ctx: ReplyCtx, reply: Reply) -> Stream {
        let reasoning = reply.reasoning.as_ref().map_or(0, |r| r.len());
        let mut steps = Vec::with_capacity(reasoning + 8);
        steps.extend((0..reasoning).map(|i| Step::Delta(Part::Reasoning, i)));
        match &reply.content {
            Content::Text(p) => steps.extend((0..p.len()).map(|i| Step::Delta(Part::Text, i))),
            Content::ToolCall { .. } => steps.push(Step::Call),
        }
        steps.push(Step::Finish);
        Stream { ctx, reply, steps }
    }
}

impl EventSource for Stream {
    fn event_count(&self) -> usize {
        self.steps.len()
    }

    fn is_delta(&self, i: usize) -> bool {
        matches!(self.steps.get(i), Some(Step::Delta(..) | Step::Call))
    }

    fn render(&self, i: usize, out: &mut BytesMut) {
        let Some(&step) = self.steps.get(i) else {
            return;
        };
        let body = match step {
            Step::Delta(part, n) => {
                let text = self.reply.pieces(part).get(n);
                let p = match part {
                    Part::Reasoning => json!({ "text": text, "thought": true }),
                    _ => json!({ "text": text }),
                };
                response(&self.ctx, vec![p], None, None)
            }
            Step::Call => {
                let Content::ToolCall { name, args } = &self.reply.content else {
                    return;
                };
                response(&self.ctx, vec![call_part(name, args.full())], None, None)
            }
            // Like the API: the last chunk carries the finish reason and the usage.
            Step::Finish => response(
                &self.ctx,
                vec![json!({ "text": "" })],
                Some(self.reply.finish),
                Some(&self.reply.usage),
            ),
        };
        push_data(out, &body);
    }

    /// Gemini reports a mid-stream failure as a `data:` event holding its error envelope (a
    /// 503 `UNAVAILABLE`, what an overloaded model answers).
    fn render_error(&self, message: &str, out: &mut BytesMut) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error_body(StatusCode::SERVICE_UNAVAILABLE, message));
        out.extend_from_slice(b"\n\n");
    }
}

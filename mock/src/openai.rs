//! OpenAI Chat Completions: the `chat.completion` JSON reply, the `chat.completion.chunk` SSE
//! stream, and OpenAI-shaped errors.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::body::{EventSource, push_data};
use super::reply::{Content, Finish, Part, Reply, Usage};
use super::server::ReplyCtx;

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::ToolCalls => "tool_calls",
        Finish::Length => "length",
    }
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    /// Not an OpenAI field; OpenRouter-style gateways report cache writes here.
    #[serde(skip_serializing_if = "is_zero")]
    cache_write_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> UsageOut {
        // Saturating: the numbers come from test overrides and may be absurd.
        let prompt = u
            .input
            .saturating_add(u.cache_read)
            .saturating_add(u.cache_write);
        UsageOut {
            prompt_tokens: prompt,
            completion_tokens: u.output,
            total_tokens: prompt.saturating_add(u.output),
            prompt_tokens_details: PromptDetails {
                cached_tokens: u.cache_read,
                cache_write_tokens: u.cache_write,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: u.reasoning,
            },
        }
    }
}

pub(crate) fn json_reply(ctx: &ReplyCtx, reply: &Reply) -> Bytes {
    let mut message = json!({ "role": "assistant", "content": null, "refusal": null });
    match &reply.content {
        Content::Text(text) => message["content"] = json!(text.full()),
        Content::ToolCall { name, args } => {
            message["tool_calls"] = json!([{
                "id": format!("call_mock{}", ctx.seq),
                "type": "function",
                "function": { "name": name, "arguments": args.full() },
            }]);
        }
    }
    if let Some(reasoning) = &reply.reasoning {
        message["reasoning_content"] = json!(reasoning.full());
    }
    let body = json!({
        "id": format!("chatcmpl-mock{}", ctx.seq),
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(reply.finish),
        }],
        "usage": UsageOut::from(&reply.usage),
        "system_fingerprint": null,
    });
    Bytes::from(body.to_string())
}

/// OpenAI's error envelope; the `type`/`code` pair follows what the API sends for that status.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Bytes {
    let (kind, code) = match status.as_u16() {
        429 => ("requests", Value::from("rate_limit_exceeded")),
        500..=599 => ("server_error", Value::Null),
        401 => ("invalid_request_error", Value::from("invalid_api_key")),
        _ => ("invalid_request_error", Value::Null),
    };
    let body =
        json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    Bytes::from(body.to_string())
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Role,
    Delta(Part, usize),
    Finish,
    Usage,
    Done,
}

pub(crate) struct Stream {
    id: String,
    call_id: String,
    ctx: ReplyCtx,
    reply: Reply,
    include_usage: bool,
    steps: Vec<Step>,
}

impl Stream {
    pub(crate) fn new(ctx: ReplyCtx, reply: Reply, include_usage: bool) -> Stream {
        let reasoning = reply.reasoning.as_ref().map_or(0, |r| r.len());
        let main = reply.main_part();
        let content = reply.pieces(main).len();
        let mut steps = Vec::with_capacity(reasoning + content + 4);
        steps.push(Step::Role);
        steps.extend((0..reasoning).map(|i| Step::Delta(Part::Reasoning, i)));
        steps.extend((0..content).map(|i| Step::Delta(main, i)));
        steps.push(Step::Finish);
        if include_usage {
            steps.push(Step::Usage);
        }
        steps.push(Step::Done);
        Stream {
            id: format!("chatcmpl-mock{}", ctx.seq),
            call_id: format!("call_mock{}", ctx.seq),
            ctx,
            reply,
            include_usage,
            steps,
        }
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// With `include_usage`, OpenAI sends `"usage": null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl EventSource for Stream {
    fn event_count(&self) -> usize {
        self.steps.len()
    }

    fn is_delta(&self, i: usize) -> bool {
        matches!(self.steps.get(i), Some(Step::Delta(..)))
    }

    fn render(&self, i: usize, out: &mut BytesMut) {
        let Some(&step) = self.steps.get(i) else {
            return;
        };
        let mut delta = Delta::default();
        let mut finish = None;
        match step {
            Step::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                return;
            }
            Step::Usage => {
                let usage = UsageOut::from(&self.reply.usage);
                push_data(out, &self.chunk(&[], Some(Some(usage))));
                return;
            }
            Step::Role => {
                delta.role = Some("assistant");
                delta.content = Some("");
            }
            Step::Delta(part, n) => {
                let piece = self.reply.pieces(part).get(n);
                match part {
                    Part::Reasoning => delta.reasoning_content = Some(piece),
                    Part::Text => delta.content = Some(piece),
                    Part::ToolArgs => {
                        // The first tool delta names the call, as OpenAI does.
                        let name = match &self.reply.content {
                            Content::ToolCall { name, .. } if n == 0 => Some(name.as_str()),
                            _ => None,
                        };
                        delta.tool_calls = Some([ToolCallDelta {
                            index: 0,
                            id: name.map(|_| self.call_id.as_str()),
                            kind: name.map(|_| "function"),
                            function: FunctionDelta {
                                name,
                                arguments: piece,
                            },
                        }]);
                    }
                }
            }
            Step::Finish => finish = Some(finish_reason(self.reply.finish)),
        }
        let choice = [ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        }];
        let usage = self.include_usage.then_some(None);
        push_data(out, &self.chunk(&choice, usage));
    }

    /// OpenAI reports a mid-stream failure as a `data:` event holding its error envelope,
    /// with no finish chunk or `[DONE]` after it.
    fn render_error(&self, message: &str, out: &mut BytesMut) {
        let event = StreamError {
            error: StreamErrorDetail {
                message,
                kind: "server_error",
                param: None,
                code: None,
            },
        };
        push_data(out, &event);
    }
}

/// A struct rather than `json!`, so the fields keep the order the API sends them in.
#[derive(Serialize)]
struct StreamError<'a> {
    error: StreamErrorDetail<'a>,
}

#[derive(Serialize)]
struct StreamErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: Option<()>,
}

impl Stream {
    fn chunk<'a>(
        &'a self,
        choices: &'a [ChunkChoice<'a>],
        usage: Option<Option<UsageOut>>,
    ) -> Chunk<'a> {
        Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.ctx.created,
            model: &self.ctx.model,
            choices,
            usage,
        }
    }
}

//! Canonical answers out to a Responses caller: the `response` object (`encode_response`)
//! and the named SSE events of a stream (`StreamEncoder`).

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::DIALECT;
use crate::canonical::{FinishReason, Part, Response, StreamEvent, Usage};

/// One item of a response's `output`, as the encoders build it.
enum Item {
    Message {
        id: String,
        text: String,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
    Reasoning {
        id: String,
        text: String,
    },
    /// An output item only a Responses upstream produces (a `web_search_call`, ...).
    Raw(Value),
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Message { id, .. }
            | Item::FunctionCall { id, .. }
            | Item::Reasoning { id, .. } => id,
            Item::Raw(_) => "",
        }
    }

    fn to_json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, text } => json!({
                "type": "message",
                "id": id,
                "status": status,
                "role": "assistant",
                "content": if status == "in_progress" { json!([]) } else { json!([output_text(text)]) },
            }),
            Item::FunctionCall {
                id,
                call_id,
                name,
                arguments,
            } => json!({
                "type": "function_call",
                "id": id,
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
                "status": status,
            }),
            Item::Reasoning { id, text } => json!({
                "type": "reasoning",
                "id": id,
                "summary": if status == "in_progress" { json!([]) } else { json!([summary_text(text)]) },
            }),
            Item::Raw(v) => v.clone(),
        }
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn summary_text(text: &str) -> Value {
    json!({"type": "summary_text", "text": text})
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": { "reasoning_tokens": u.reasoning_tokens },
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// `status` and `incomplete_details` for how the model stopped.
fn status_of(finish: &FinishReason) -> (&'static str, Value) {
    match finish {
        FinishReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        FinishReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The `response` object. The request's settings are not known here; the fields the SDK
/// requires get the API's defaults.
struct ResponseObject<'a> {
    id: &'a str,
    model: &'a str,
    created_at: u64,
    status: &'a str,
    output: Vec<Value>,
    usage: Option<&'a Usage>,
    incomplete: Value,
    error: Value,
}

impl ResponseObject<'_> {
    fn into_json(self) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "completed_at": (self.status == "completed").then(crate::api::unix_now),
            "error": self.error,
            "incomplete_details": self.incomplete,
            "instructions": null,
            "max_output_tokens": null,
            "model": self.model,
            "output": self.output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": null,
            "store": false,
            "temperature": null,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": null,
            "truncation": "disabled",
            "usage": self.usage.map(usage_json),
            "metadata": {},
        })
    }
}

/// Encodes a complete answer as a `response` object.
pub fn encode_response(r: &Response) -> Bytes {
    let mut items: Vec<Item> = Vec::new();
    for p in &r.content {
        match p {
            Part::Text { text, .. } => match items.last_mut() {
                Some(Item::Message { text: t, .. }) => t.push_str(text),
                _ => items.push(Item::Message {
                    id: crate::api::new_id("msg_"),
                    text: text.clone(),
                }),
            },
            Part::Reasoning { text, .. } => match items.last_mut() {
                Some(Item::Reasoning { text: t, .. }) => t.push_str(text),
                _ => items.push(Item::Reasoning {
                    id: crate::api::new_id("rs_"),
                    text: text.clone(),
                }),
            },
            Part::ToolCall(c) => items.push(Item::FunctionCall {
                id: crate::api::new_id("fc_"),
                call_id: crate::api::id_or_new(&c.id, "call_"),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            }),
            Part::Opaque {
                dialect: DIALECT,
                value,
            } => items.push(Item::Raw(value.clone())),
            _ => {}
        }
    }
    let (status, incomplete) = status_of(&r.finish);
    let id = crate::api::id_with_prefix(&r.id, "resp_");
    let body = ResponseObject {
        id: &id,
        model: &r.model,
        created_at: crate::api::unix_now(),
        status,
        output: items.iter().map(|i| i.to_json("completed")).collect(),
        usage: Some(&r.usage),
        incomplete,
        error: Value::Null,
    }
    .into_json();
    Bytes::from(body.to_string())
}

/// `response.output_text.delta`, nearly every event of a stream.
#[derive(Serialize)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

/// `response.function_call_arguments.delta` and `response.reasoning_summary_text.delta`.
#[derive(Serialize)]
struct ItemDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
}

/// Re-encodes canonical stream events as Responses SSE events (`event:` name plus a `data:`
/// object with the same `type` and a `sequence_number`), ending with `response.completed`,
/// `response.incomplete` or `response.failed` carrying the whole response.
pub struct StreamEncoder {
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    /// Set once the final event is written; later events are dropped.
    done: bool,
    items: Vec<Item>,
    /// The open message or reasoning item (output index); text and reasoning append to it.
    open: Option<usize>,
    /// Open function calls: canonical tool index → output index.
    open_calls: Vec<(u32, usize)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

impl Default for StreamEncoder {
    fn default() -> Self {
        StreamEncoder {
            id: String::new(),
            model: String::new(),
            created_at: crate::api::unix_now(),
            seq: 0,
            started: false,
            done: false,
            items: Vec::new(),
            open: None,
            open_calls: Vec::new(),
            usage: None,
            finish: None,
        }
    }
}

impl StreamEncoder {
    /// An encoder for one stream to a Responses caller.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// Writes a rare event whose shape varies: `fields` gets `type` and `sequence_number`.
    fn event(&mut self, out: &mut Vec<u8>, name: &'static str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("type".into(), name.into());
        obj.insert("sequence_number".into(), self.next_seq().into());
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        crate::api::sse_event(out, name, &obj);
    }

    fn response(&self, status: &str, incomplete: Value, error: Value) -> Value {
        let item_status = if status == "in_progress" {
            "in_progress"
        } else {
            "completed"
        };
        ResponseObject {
            id: &self.id,
            model: &self.model,
            created_at: self.created_at,
            status,
            output: self.items.iter().map(|i| i.to_json(item_status)).collect(),
            usage: self.usage.as_ref().filter(|_| status != "in_progress"),
            incomplete,
            error,
        }
        .into_json()
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = crate::api::new_id("resp_");
        }
        let r = self.response("in_progress", Value::Null, Value::Null);
        self.event(out, "response.created", json!({"response": r}));
        self.event(out, "response.in_progress", json!({"response": r}));
    }

    fn add_item(&mut self, out: &mut Vec<u8>, item: Item) -> usize {
        let index = self.items.len();
        let json = item.to_json("in_progress");
        self.items.push(item);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": json}),
        );
        index
    }

    /// Closes the open message or reasoning item, if any.
    fn close_open(&mut self, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let (id, text, is_message) = match &self.items[index] {
            Item::Message { id, text } => (id.clone(), text.clone(), true),
            Item::Reasoning { id, text } => (id.clone(), text.clone(), false),
            _ => return,
        };
        if is_message {
            self.event(
                out,
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            );
            self.event(
                out,
                "response.content_part.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text(&text)}),
            );
        } else {
            self.event(
                out,
                "response.reasoning_summary_text.done",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
            );
            self.event(
                out,
                "response.reasoning_summary_part.done",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "part": summary_text(&text)}),
            );
        }
        let item = self.items[index].to_json("completed");
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    /// The open item of the wanted kind, opening one (and closing another) if needed.
    fn open_text_item(&mut self, out: &mut Vec<u8>, message: bool) -> usize {
        if let Some(i) = self.open {
            if matches!(self.items[i], Item::Message { .. }) == message {
                return i;
            }
            self.close_open(out);
        }
        let index = if message {
            let id = crate::api::new_id("msg_");
            let index = self.add_item(
                out,
                Item::Message {
                    id: id.clone(),
                    text: String::new(),
                },
            );
            self.event(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text("")}),
            );
            index
        } else {
            let id = crate::api::new_id("rs_");
            let index = self.add_item(
                out,
                Item::Reasoning {
                    id: id.clone(),
                    text: String::new(),
                },
            );
            self.event(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "part": summary_text("")}),
            );
            index
        };
        self.open = Some(index);
        index
    }

    fn close_call(&mut self, out: &mut Vec<u8>, tool_index: u32) {
        let Some(pos) = self.open_calls.iter().position(|c| c.0 == tool_index) else {
            return;
        };
        let (_, index) = self.open_calls.remove(pos);
        let (id, arguments) = match &self.items[index] {
            Item::FunctionCall { id, arguments, .. } => (id.clone(), arguments.clone()),
            _ => return,
        };
        self.event(
            out,
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "arguments": arguments}),
        );
        let item = self.items[index].to_json("completed");
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_open(out);
        while let Some(&(tool_index, _)) = self.open_calls.first() {
            self.close_call(out, tool_index);
        }
    }

    /// Appends the SSE events for `event` to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { id, model } => {
                if !self.started {
                    self.id = crate::api::id_with_prefix(id, "resp_");
                    self.model.clone_from(model);
                }
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                let index = self.open_text_item(out, true);
                if let Item::Message { text, .. } = &mut self.items[index] {
                    text.push_str(t);
                }
                let seq = self.next_seq();
                crate::api::sse_event(
                    out,
                    "response.output_text.delta",
                    &TextDeltaEvent {
                        kind: "response.output_text.delta",
                        sequence_number: seq,
                        item_id: self.items[index].id(),
                        output_index: index,
                        content_index: 0,
                        delta: t,
                        logprobs: [],
                    },
                );
            }
            StreamEvent::ReasoningDelta(t) => {
                self.ensure_started(out);
                let index = self.open_text_item(out, false);
                if let Item::Reasoning { text, .. } = &mut self.items[index] {
                    text.push_str(t);
                }
                self.item_delta(
                    out,
                    "response.reasoning_summary_text.delta",
                    index,
                    Some(0),
                    t,
                );
            }
            StreamEvent::ReasoningSignature(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.close_open(out);
                let output_index = self.add_item(
                    out,
                    Item::FunctionCall {
                        id: crate::api::new_id("fc_"),
                        call_id: crate::api::id_or_new(id, "call_"),
                        name: name.clone(),
                        arguments: String::new(),
                    },
                );
                self.open_calls.push((*index, output_index));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let Some(&(_, output_index)) = self.open_calls.iter().find(|c| c.0 == *index)
                else {
                    return;
                };
                if let Item::FunctionCall { arguments: a, .. } = &mut self.items[output_index] {
                    a.push_str(arguments);
                }
                self.item_delta(
                    out,
                    "response.function_call_arguments.delta",
                    output_index,
                    None,
                    arguments,
                );
            }
            StreamEvent::ToolCallEnd { index } => self.close_call(out, *index),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => {
                self.ensure_started(out);
                self.close_all(out);
                self.finish = Some(f.clone());
            }
            StreamEvent::Error(message) => self.fail("server_error", message, out),
        }
    }

    /// Ends the stream with `response.failed` carrying `code` (`server_error` for a provider's
    /// error; the gateway's own code, e.g. `guardrail_blocked`, for its own).
    pub fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close_all(out);
        self.done = true;
        let r = self.response(
            "failed",
            Value::Null,
            json!({"code": code, "message": message}),
        );
        self.event(out, "response.failed", json!({"response": r}));
    }

    fn item_delta(
        &mut self,
        out: &mut Vec<u8>,
        name: &'static str,
        index: usize,
        summary_index: Option<u32>,
        delta: &str,
    ) {
        let seq = self.next_seq();
        crate::api::sse_event(
            out,
            name,
            &ItemDeltaEvent {
                kind: name,
                sequence_number: seq,
                item_id: self.items[index].id(),
                output_index: index,
                summary_index,
                delta,
            },
        );
    }

    /// Closes a stream that ended normally with the whole response and its usage.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.close_all(out);
        self.done = true;
        let (status, incomplete) = status_of(self.finish.as_ref().unwrap_or(&FinishReason::Stop));
        let name = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let r = self.response(status, incomplete, Value::Null);
        self.event(out, name, json!({"response": r}));
    }
}

//! Prompts and answers for traces, when `observe.otlp.capture_content` asks for them: the
//! messages as the provider received them (after the upgoing firewall's redactions) and the
//! answer as the caller received it (after the downgoing one's), in the GenAI semantic
//! conventions' JSON shapes (`gen_ai.input.messages`, `gen_ai.output.messages`). Each
//! direction keeps at most [`MAX_CAPTURE`] bytes of text, so a long conversation costs a
//! bounded amount of memory and span size.

use serde_json::{Value, json};

use crate::canonical::{Part, Request, Response, Role, StreamEvent};

/// The most text kept per direction (prompt, answer); past it the text is cut and the
/// span says `bitrouter.content.truncated`.
pub const MAX_CAPTURE: usize = 64 * 1024;

/// What was sent and answered, being collected.
#[derive(Debug, Default)]
pub struct Capture {
    input: String,
    output: Vec<Value>,
    text: String,
    /// Tool calls of a stream, by index: id, name, arguments so far.
    calls: Vec<(String, String, String)>,
    /// Text bytes still allowed in the answer.
    left: usize,
    truncated: bool,
}

/// The captured content of a finished request.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    /// `gen_ai.input.messages`.
    pub input: String,
    /// `gen_ai.output.messages`.
    pub output: String,
    /// Some text was cut at [`MAX_CAPTURE`].
    pub truncated: bool,
}

impl Capture {
    /// The prompt of `request`, as it goes upstream.
    pub fn new(request: &Request) -> Capture {
        let mut left = MAX_CAPTURE;
        let mut truncated = false;
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                json!({
                    "role": role(m.role),
                    "parts": parts(&m.content, &mut left, &mut truncated),
                })
            })
            .collect();
        Capture {
            input: Value::Array(messages).to_string(),
            left: MAX_CAPTURE,
            truncated,
            ..Capture::default()
        }
    }

    /// A whole answer (not streamed).
    pub fn response(&mut self, response: &Response) {
        let mut left = self.left;
        self.output = parts(&response.content, &mut left, &mut self.truncated);
        self.left = left;
    }

    /// One event of a streamed answer, as it goes to the caller.
    pub fn event(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::TextDelta(t) => {
                let kept = keep(t, &mut self.left, &mut self.truncated);
                self.text.push_str(kept);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                let i = *index as usize;
                if i < 128 {
                    if self.calls.len() <= i {
                        self.calls.resize(i + 1, Default::default());
                    }
                    self.calls[i] = (id.clone(), name.clone(), String::new());
                }
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let kept = keep(arguments, &mut self.left, &mut self.truncated);
                if let Some(c) = self.calls.get_mut(*index as usize) {
                    c.2.push_str(kept);
                }
            }
            _ => {}
        }
    }

    /// The content, the answer ending with `finish_reason`.
    pub fn finish(&self, finish_reason: Option<&str>) -> Content {
        let mut parts = self.output.clone();
        if !self.text.is_empty() {
            parts.push(json!({"type": "text", "content": self.text}));
        }
        for (id, name, arguments) in &self.calls {
            parts.push(tool_call(id, name, arguments));
        }
        let mut message = json!({"role": "assistant", "parts": parts});
        if let Some(f) = finish_reason {
            message["finish_reason"] = json!(f);
        }
        Content {
            input: self.input.clone(),
            output: json!([message]).to_string(),
            truncated: self.truncated,
        }
    }
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// `text` up to what is `left` (cut on a character boundary).
fn keep<'a>(text: &'a str, left: &mut usize, truncated: &mut bool) -> &'a str {
    if text.len() <= *left {
        *left -= text.len();
        return text;
    }
    *truncated = true;
    let mut end = *left;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    *left = 0;
    &text[..end]
}

fn tool_call(id: &str, name: &str, arguments: &str) -> Value {
    let arguments = serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!(arguments));
    json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments})
}

fn parts(content: &[Part], left: &mut usize, truncated: &mut bool) -> Vec<Value> {
    content
        .iter()
        .map(|p| match p {
            Part::Text { text, .. } => {
                json!({"type": "text", "content": keep(text, left, truncated)})
            }
            Part::Reasoning { text, .. } => {
                json!({"type": "reasoning", "content": keep(text, left, truncated)})
            }
            Part::ToolCall(c) => tool_call(&c.id, &c.name, keep(&c.arguments, left, truncated)),
            Part::ToolResult {
                call_id, content, ..
            } => {
                let text: String = content
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                json!({
                    "type": "tool_call_response",
                    "id": call_id,
                    "response": keep(&text, left, truncated),
                })
            }
            // Images and dialect-only blocks: their kind, never their bytes.
            Part::Image { .. } => json!({"type": "image"}),
            _ => json!({"type": "opaque"}),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Message;

    #[test]
    fn prompt_and_streamed_answer_in_the_conventions_shapes_within_the_bound() {
        let request = Request {
            messages: vec![
                Message::text(Role::System, "be brief"),
                Message::text(Role::User, "x".repeat(MAX_CAPTURE + 10)),
            ],
            ..Request::default()
        };
        let mut c = Capture::new(&request);
        c.event(&StreamEvent::TextDelta("héllo".into()));
        c.event(&StreamEvent::ToolCallStart {
            index: 0,
            id: "call_1".into(),
            name: "weather".into(),
        });
        c.event(&StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"city\":".into(),
        });
        c.event(&StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "\"Oslo\"}".into(),
        });
        let done = c.finish(Some("tool_call"));
        let input: Value = serde_json::from_str(&done.input).unwrap();
        assert_eq!(input[0]["role"], "system");
        assert_eq!(input[0]["parts"][0]["content"], "be brief");
        let long = input[1]["parts"][0]["content"].as_str().unwrap();
        assert_eq!(long.len(), MAX_CAPTURE - "be brief".len());
        assert!(done.truncated);
        let output: Value = serde_json::from_str(&done.output).unwrap();
        assert_eq!(output[0]["role"], "assistant");
        assert_eq!(output[0]["finish_reason"], "tool_call");
        assert_eq!(output[0]["parts"][0]["content"], "héllo");
        assert_eq!(output[0]["parts"][1]["arguments"]["city"], "Oslo");

        // A cut inside a multi-byte character keeps the text valid.
        let (mut left, mut cut) = (2, false);
        assert_eq!(keep("héllo", &mut left, &mut cut), "h");
        assert!(cut && left == 0);
    }
}

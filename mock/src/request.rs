//! Reads what the mock needs from a chat request body (OpenAI, Anthropic, Gemini or
//! Cohere-style), validating it the way the real provider would, without copying the body.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::behavior::{BehaviorPatch, parse_directives};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
    /// Cohere-chat style: `message`, `chat_history`, `preamble`; no tools.
    Cohere,
    /// Gemini `generateContent`; the model and the stream flag are in the URL.
    Gemini,
}

/// The first tool the request declares.
#[derive(Debug)]
pub(crate) struct Tool<'a> {
    pub name: &'a str,
    schema: Option<&'a Value>,
}

impl Tool<'_> {
    /// Arguments that satisfy the schema's `required` list: strings are `"mock"`, numbers 1,
    /// booleans true, and an `enum` contributes its first value.
    pub(crate) fn arguments(&self) -> String {
        let mut args = Map::new();
        let schema = self.schema;
        let required = schema
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            let prop = schema
                .and_then(|s| s.get("properties"))
                .and_then(|p| p.get(name));
            args.insert(name.to_owned(), sample_value(prop));
        }
        Value::Object(args).to_string()
    }
}

fn sample_value(prop: Option<&Value>) -> Value {
    if let Some(first) = prop
        .and_then(|p| p.get("enum"))
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match prop.and_then(|p| p.get("type")) {
        Some(Value::String(t)) => t.as_str(),
        // `["string", "null"]`: the first non-null type.
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => "string",
    };
    match ty {
        "number" | "integer" => json!(1),
        "boolean" => json!(true),
        "array" => json!([]),
        "object" => json!({}),
        _ => json!("mock"),
    }
}

/// A valid chat request, as far as the mock cares.
#[derive(Debug)]
pub(crate) struct Inspected<'a> {
    pub model: &'a str,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub tool: Option<Tool<'a>>,
    pub last_is_tool_result: bool,
    pub estimated_input_tokens: u64,
    /// What a provider that bills every byte would charge as input: the text of the
    /// messages (and system prompt) plus every other field at its JSON size (tools, schemas).
    pub billed_input_tokens: u64,
    /// Choices asked for (OpenAI `n`), at least 1.
    pub choices: u64,
    /// `[[mock ...]]` directives of the last user message, or why one is malformed.
    pub directives: Result<Vec<BehaviorPatch>, String>,
    /// The text of the last assistant turn that has text (OpenAI and Anthropic role
    /// `assistant`, Gemini role `model`), its parts joined: the partial answer a gateway carries
    /// over after a mid-stream failover, whether it ends the conversation (a prefill) or a user
    /// message follows it. `None` for Cohere.
    pub assistant_text: Option<Cow<'a, str>>,
    /// The conversation ends with an assistant turn (a prefill).
    pub last_is_assistant: bool,
}

impl Dialect {
    /// Validates `body` like the provider would; `Err` is the message of a 400.
    pub(crate) fn inspect(self, body: &Value) -> Result<Inspected<'_>, String> {
        let Some(obj) = body.as_object() else {
            return Err("request body must be a JSON object".into());
        };
        match self {
            Dialect::Cohere => return inspect_cohere(obj),
            Dialect::Gemini => return inspect_gemini(obj),
            _ => {}
        }
        let Some(model) = obj.get("model").and_then(Value::as_str) else {
            return Err(self.missing("model"));
        };
        let messages = match obj.get("messages").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m,
            Some(_) => {
                return Err(match self {
                    Dialect::OpenAi => "'messages' must contain at least one message".into(),
                    Dialect::Anthropic | Dialect::Cohere | Dialect::Gemini => {
                        "messages: at least one message is required".into()
                    }
                });
            }
            None => return Err(self.missing("messages")),
        };
        let max_tokens = match self {
            Dialect::OpenAi => obj
                .get("max_completion_tokens")
                .or_else(|| obj.get("max_tokens"))
                .and_then(Value::as_u64),
            Dialect::Cohere => None,
            Dialect::Anthropic | Dialect::Gemini => match obj.get("max_tokens") {
                Some(v) => match v.as_u64() {
                    Some(n) => Some(n),
                    None => return Err("max_tokens: Input should be a valid integer".into()),
                },
                None => return Err(self.missing("max_tokens")),
            },
        };
        let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);

        let mut chars = text_len(obj.get("messages"));
        if self == Dialect::Anthropic {
            chars += text_len(obj.get("system"));
        }
        let last = messages.last();
        let last_is_tool_result = match self {
            Dialect::OpenAi => last.is_some_and(|m| matches!(role_of(m), "tool" | "function")),
            Dialect::Cohere => false,
            Dialect::Anthropic | Dialect::Gemini => last.is_some_and(|m| {
                role_of(m) == "user"
                    && m.get("content")
                        .and_then(Value::as_array)
                        .is_some_and(|blocks| {
                            blocks.iter().any(|b| {
                                b.get("type").and_then(Value::as_str) == Some("tool_result")
                            })
                        })
            }),
        };
        let last_user = messages.iter().rev().find(|m| role_of(m) == "user");
        let directives = last_user.map_or(Ok(Vec::new()), directives_of);
        let assistant_text = messages
            .iter()
            .rev()
            .filter(|m| role_of(m) == "assistant")
            .find_map(|m| content_text(m.get("content")));

        Ok(Inspected {
            model,
            stream,
            include_usage,
            max_tokens,
            tool: self.first_tool(obj.get("tools")),
            last_is_tool_result,
            estimated_input_tokens: (chars as u64 / 4).max(1),
            billed_input_tokens: chars as u64 + fields_len(obj),
            choices: obj.get("n").and_then(Value::as_u64).unwrap_or(1).max(1),
            directives,
            assistant_text,
            last_is_assistant: last.is_some_and(|m| role_of(m) == "assistant"),
        })
    }

    fn missing(self, field: &str) -> String {
        match self {
            Dialect::OpenAi if field == "model" => "you must provide a model parameter".into(),
            Dialect::OpenAi => format!("Missing required parameter: '{field}'."),
            Dialect::Anthropic | Dialect::Cohere | Dialect::Gemini => {
                format!("{field}: Field required")
            }
        }
    }

    fn first_tool(self, tools: Option<&Value>) -> Option<Tool<'_>> {
        let tools = tools?.as_array()?;
        tools.iter().find_map(|t| {
            let (def, schema_key) = match self {
                Dialect::OpenAi => (t.get("function")?, "parameters"),
                Dialect::Anthropic | Dialect::Gemini => (t, "input_schema"),
                Dialect::Cohere => return None,
            };
            Some(Tool {
                name: def.get("name")?.as_str()?,
                schema: def.get(schema_key),
            })
        })
    }
}

/// `message` (required, a string), `chat_history` entries with a `USER`/`CHATBOT`/`SYSTEM`
/// role and a string `message`, an optional string `preamble`.
fn inspect_cohere(obj: &Map<String, Value>) -> Result<Inspected<'_>, String> {
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("command");
    let message = match obj.get("message") {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(Value::String(_)) => return Err("message: must not be empty".into()),
        Some(_) => return Err("message: must be a string".into()),
        None => return Err("message: Field required".into()),
    };
    let mut chars = message.len();
    if let Some(history) = obj.get("chat_history") {
        let Some(items) = history.as_array() else {
            return Err("chat_history: must be an array".into());
        };
        for (i, item) in items.iter().enumerate() {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("");
            if !matches!(role, "USER" | "CHATBOT" | "SYSTEM") {
                return Err(format!(
                    "chat_history[{i}].role: expected USER, CHATBOT or SYSTEM"
                ));
            }
            let Some(m) = item.get("message").and_then(Value::as_str) else {
                return Err(format!("chat_history[{i}].message: must be a string"));
            };
            chars += m.len();
        }
    }
    match obj.get("preamble") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) => chars += p.len(),
        Some(_) => return Err("preamble: must be a string".into()),
    }
    let max_tokens = match obj.get("max_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or("max_tokens: must be a positive integer")?),
    };
    Ok(Inspected {
        model,
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: false,
        max_tokens,
        tool: None,
        last_is_tool_result: false,
        estimated_input_tokens: (chars as u64 / 4).max(1),
        billed_input_tokens: chars as u64,
        choices: 1,
        directives: parse_directives(message),
        // The last turn is always the `message` field, a user's.
        assistant_text: None,
        last_is_assistant: false,
    })
}

/// Gemini's shape: `contents[].parts[]`, `systemInstruction`, `tools[].functionDeclarations`,
/// `generationConfig.maxOutputTokens`. The model is filled in from the URL by the caller.
fn inspect_gemini(obj: &Map<String, Value>) -> Result<Inspected<'_>, String> {
    let contents = match obj.get("contents").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => c,
        _ => return Err("* GenerateContentRequest.contents: contents is not specified".into()),
    };
    let max_tokens = match obj
        .get("generationConfig")
        .and_then(|g| g.get("maxOutputTokens"))
    {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => {
                return Err(
                    "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32)".into(),
                );
            }
        },
    };
    let has_part = |c: &Value, key: &str| {
        c.get("parts")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|p| p.get(key).is_some()))
    };
    let last_is_tool_result = contents
        .last()
        .is_some_and(|c| has_part(c, "functionResponse"));
    let last_user = contents
        .iter()
        .rev()
        .find(|c| matches!(role_of(c), "user" | ""));
    // Parts hold text like Anthropic's content blocks, without the `type`.
    let directives = last_user
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("text")?.as_str())
        .try_fold(Vec::new(), |mut all, text| {
            all.extend(parse_directives(text)?);
            Ok(all)
        });
    // Thought parts are the model's reasoning, not its answer.
    let assistant_text = contents
        .iter()
        .rev()
        .filter(|c| role_of(c) == "model")
        .find_map(|c| {
            let parts = c.get("parts")?.as_array()?;
            join_texts(
                parts
                    .iter()
                    .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                    .filter_map(|p| p.get("text")?.as_str()),
            )
        });
    let tool = obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations")?.as_array())
        .flatten()
        .find_map(|d| {
            Some(Tool {
                name: d.get("name")?.as_str()?,
                schema: d
                    .get("parametersJsonSchema")
                    .or_else(|| d.get("parameters")),
            })
        });
    let chars = text_len(obj.get("contents")) + text_len(obj.get("systemInstruction"));
    Ok(Inspected {
        model: "",
        stream: false,
        include_usage: true,
        max_tokens,
        tool,
        last_is_tool_result,
        estimated_input_tokens: (chars as u64 / 4).max(1),
        billed_input_tokens: chars as u64,
        choices: 1,
        directives,
        assistant_text,
        last_is_assistant: contents.last().is_some_and(|c| role_of(c) == "model"),
    })
}

fn role_of(message: &Value) -> &str {
    message.get("role").and_then(Value::as_str).unwrap_or("")
}

/// Both dialects put text either in a string `content` or in `{"type": "text", "text": ...}`
/// parts of a `content` array.
fn directives_of(message: &Value) -> Result<Vec<BehaviorPatch>, String> {
    match message.get("content") {
        Some(Value::String(s)) => parse_directives(s),
        Some(Value::Array(parts)) => {
            let mut all = Vec::new();
            for part in parts {
                if part.get("type").and_then(Value::as_str) == Some("text")
                    && let Some(text) = part.get("text").and_then(Value::as_str)
                {
                    all.extend(parse_directives(text)?);
                }
            }
            Ok(all)
        }
        _ => Ok(Vec::new()),
    }
}

/// The text of a message's `content`: a string, or the `{"type": "text", "text": ...}` parts
/// of an array joined (OpenAI content parts, Anthropic text blocks); `None` when it has no text
/// (a tool call with `null` content, only `tool_use` blocks).
fn content_text(content: Option<&Value>) -> Option<Cow<'_, str>> {
    match content? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Array(parts) => join_texts(
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text")?.as_str()),
        ),
        _ => None,
    }
}

/// The texts concatenated, borrowed when there is only one; `None` when there is none.
fn join_texts<'a>(mut texts: impl Iterator<Item = &'a str>) -> Option<Cow<'a, str>> {
    let first = texts.next()?;
    let Some(second) = texts.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = String::from(first);
    joined.push_str(second);
    joined.extend(texts);
    Some(Cow::Owned(joined))
}

/// JSON size of the top-level fields a provider turns into prompt tokens besides the
/// messages: tool definitions, response schemas, and anything else it does not name here.
fn fields_len(obj: &serde_json::Map<String, Value>) -> u64 {
    const NOT_PROMPT: &[&str] = &[
        "model",
        "messages",
        "system",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "n",
        "temperature",
        "top_p",
        "metadata",
    ];
    obj.iter()
        .filter(|(k, _)| !NOT_PROMPT.contains(&k.as_str()))
        .map(|(k, v)| (k.len() + v.to_string().len()) as u64)
        .sum()
}

/// Bytes of all strings under `v`: a rough size of what a tokenizer would see.
fn text_len(v: Option<&Value>) -> usize {
    match v {
        Some(Value::String(s)) => s.len(),
        Some(Value::Array(items)) => items.iter().map(|i| text_len(Some(i))).sum(),
        Some(Value::Object(map)) => map.values().map(|i| text_len(Some(i))).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_arguments_follow_the_schema() {
        let body = json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"}, "days": {"type": "integer"},
                    "metric": {"type": "boolean"}, "unit": {"type": "string", "enum": ["c", "f"]},
                    "note": {"type": ["null", "string"]}, "optional": {"type": "string"}
                },
                "required": ["city", "days", "metric", "unit", "note"]
            }}}]
        });
        let req = Dialect::OpenAi.inspect(&body).unwrap();
        let tool = req.tool.unwrap();
        assert_eq!(tool.name, "get_weather");
        let args: Value = serde_json::from_str(&tool.arguments()).unwrap();
        assert_eq!(
            args,
            json!({"city": "mock", "days": 1, "metric": true, "unit": "c", "note": "mock"})
        );
    }

    #[test]
    fn validation_errors() {
        let a = Dialect::Anthropic;
        assert!(a.inspect(&json!([])).is_err());
        assert!(a.inspect(&json!({"messages": []})).is_err());
        let no_max = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(
            a.inspect(&no_max).unwrap_err(),
            "max_tokens: Field required"
        );
        assert!(Dialect::OpenAi.inspect(&no_max).is_ok());
        assert!(
            Dialect::OpenAi
                .inspect(&json!({"model": "m", "messages": "x"}))
                .is_err()
        );
    }

    #[test]
    fn gemini_requests() {
        let g = Dialect::Gemini;
        assert!(g.inspect(&json!({"contents": []})).is_err());
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "hi [[mock chunks=2]]"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "t", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "t", "response": {"output": "ok"}}}]}],
            "tools": [{"functionDeclarations": [{"name": "t", "parameters": {"type": "object"}}]}],
            "generationConfig": {"maxOutputTokens": 7}});
        let req = g.inspect(&body).unwrap();
        assert!(req.last_is_tool_result);
        assert_eq!(req.max_tokens, Some(7));
        assert_eq!(req.tool.unwrap().name, "t");
    }

    #[test]
    fn assistant_turns_for_failover() {
        // OpenAI: the last assistant turn with text, followed by a user message; a tool call
        // with `null` content has no text and is skipped.
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "from"}]},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "user", "content": "continue"}]});
        let req = Dialect::OpenAi.inspect(&body).unwrap();
        assert_eq!(req.assistant_text.as_deref(), Some("Hello from"));
        assert!(!req.last_is_assistant);

        // Anthropic prefill: the conversation ends with the assistant's text blocks.
        let body = json!({"model": "m", "max_tokens": 9, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}, {"type": "text", "text": "Hello"}]}]});
        let req = Dialect::Anthropic.inspect(&body).unwrap();
        assert_eq!(req.assistant_text.as_deref(), Some("Hello"));
        assert!(req.last_is_assistant);

        // Gemini prefill: a trailing `model` content; thoughts are not the answer.
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hmm", "thought": true}, {"text": "Hello from"}]}]});
        let req = Dialect::Gemini.inspect(&body).unwrap();
        assert_eq!(req.assistant_text.as_deref(), Some("Hello from"));
        assert!(req.last_is_assistant);

        let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
        let req = Dialect::Gemini.inspect(&body).unwrap();
        assert_eq!(req.assistant_text, None);
        assert!(!req.last_is_assistant);
    }

    #[test]
    fn anthropic_tool_result_detection() {
        let body = json!({"model": "m", "max_tokens": 10, "tools": [{"name": "t", "input_schema": {}}],
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "ok"}]}]});
        let req = Dialect::Anthropic.inspect(&body).unwrap();
        assert!(req.last_is_tool_result);
        assert_eq!(req.tool.unwrap().name, "t");
    }
}

//! Every text of a canonical request or response that the model or the agent sees, run
//! through the engine and redacted in place: message text (system, developer, user,
//! assistant, tool), OpenAI `name` fields, reasoning, tool-call arguments (JSON-aware, so a
//! redaction keeps them valid JSON) and tool results.

use serde_json::Value;

use crate::canonical::{Message, Part, Request, Response};
use crate::plugins::Direction;

use super::engine::GuardrailEngine;
use super::tally::Tally;

impl GuardrailEngine {
    /// Inspects (and redacts) every text of `request`. The caller checks `tally.is_blocked()`.
    pub async fn inspect_request(&self, request: &mut Request, tally: &mut Tally) {
        if !self.active(Direction::Request) {
            return;
        }
        for message in &mut request.messages {
            self.inspect_message(Direction::Request, message, tally)
                .await;
        }
    }

    /// Inspects (and redacts) every text of `response`; `true` when something was redacted.
    pub async fn inspect_response(&self, response: &mut Response, tally: &mut Tally) -> bool {
        if !self.active(Direction::Response) {
            return false;
        }
        let mut changed = false;
        for part in &mut response.content {
            changed |= self.inspect_part(Direction::Response, part, tally).await;
        }
        changed
    }

    async fn inspect_message(&self, d: Direction, message: &mut Message, tally: &mut Tally) {
        if let Some(Value::String(name)) = message.extra.fields.get_mut("name") {
            self.inspect_text(d, name, tally).await;
        }
        for part in &mut message.content {
            self.inspect_part(d, part, tally).await;
        }
    }

    async fn inspect_part(&self, d: Direction, part: &mut Part, tally: &mut Tally) -> bool {
        match part {
            Part::Text { text, .. } | Part::Reasoning { text, .. } => {
                self.inspect_text(d, text, tally).await
            }
            Part::ToolCall(call) => self.inspect_json_text(d, &mut call.arguments, tally).await,
            Part::ToolResult { content, .. } => {
                let mut changed = false;
                for inner in content {
                    // Tool results hold text (and images); neither dialect nests results.
                    changed |= match inner {
                        Part::Text { text, .. } => self.inspect_text(d, text, tally).await,
                        Part::ToolCall(call) => {
                            self.inspect_json_text(d, &mut call.arguments, tally).await
                        }
                        _ => false,
                    };
                }
                changed
            }
            Part::Image { .. } | Part::Opaque { .. } => false,
        }
    }

    /// Scans one text and redacts it in place; `true` when it changed.
    pub async fn inspect_text(&self, d: Direction, text: &mut String, tally: &mut Tally) -> bool {
        if !self.may_match(d, text) {
            return false;
        }
        let hits = self.scan(d, text).await;
        if hits.is_empty() {
            return false;
        }
        tally.add(self, d, &hits);
        match self.redact(text, &hits) {
            Some(redacted) => {
                *text = redacted;
                true
            }
            None => false,
        }
    }

    /// Tool-call arguments: the strings inside the JSON are scanned one by one, so a
    /// redaction cannot break the JSON and escapes cannot hide a match. Text that is not
    /// JSON is scanned as it is.
    async fn inspect_json_text(&self, d: Direction, text: &mut String, tally: &mut Tally) -> bool {
        // Without escapes, a clean raw text means clean strings inside it.
        if !text.contains('\\') && !self.may_match(d, text) {
            return false;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(text) else {
            return self.inspect_text(d, text, tally).await;
        };
        let mut strings = Vec::new();
        collect_strings(&mut value, &mut strings);
        let mut changed = false;
        for s in strings {
            changed |= self.inspect_text(d, s, tally).await;
        }
        if changed {
            *text = value.to_string();
        }
        changed
    }
}

fn collect_strings<'a>(value: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter_mut().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values_mut().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::canonical::{Message, Part, Role, ToolCall};
    use crate::config::Config;
    use crate::guardrails::{GuardrailEngine, Tally};
    use crate::plugins::Direction;

    fn engine(yaml: &str) -> GuardrailEngine {
        let config = Config::parse(yaml, std::path::Path::new("/nonexistent/t.yaml")).unwrap();
        GuardrailEngine::build(&config.guardrails, &[]).unwrap()
    }

    const CFG: &str = "guardrails:\n  builtin: false\n  custom_patterns:\n    - { name: tok, regex: \"tok_[0-9]{6}\", direction: both }\n    - { name: six, regex: \"[0-9]{6}\", direction: upgoing }\n  custom_upgoing: { tok: redact, six: warn }\n  custom_downgoing: { tok: block }\n";

    #[tokio::test]
    async fn every_request_location_is_redacted() {
        let e = engine(CFG);
        let mut request = crate::canonical::Request {
            messages: vec![
                Message::text(Role::System, "system tok_000001"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::text("said tok_000002"),
                        Part::ToolCall(ToolCall {
                            id: "c1".into(),
                            name: "f".into(),
                            arguments: r#"{"q":"tok_000003","n":[1,"tok_000004"]}"#.into(),
                        }),
                    ],
                    extra: Default::default(),
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: "c1".into(),
                        content: vec![Part::text("result tok_000005")],
                        is_error: false,
                        extra: Default::default(),
                    }],
                    extra: Default::default(),
                },
            ],
            ..Default::default()
        };
        request.messages[1]
            .extra
            .fields
            .insert("name".into(), "tok_000006".into());
        let mut tally = Tally::default();
        e.inspect_request(&mut request, &mut tally).await;
        let dump = format!("{:?}", request.messages);
        for n in 1..=6 {
            assert!(!dump.contains(&format!("tok_00000{n}")), "{n}: {dump}");
        }
        let Part::ToolCall(call) = &request.messages[1].content[1] else {
            panic!()
        };
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(args["n"][1], "[REDACTED:tok]");
        assert!(!tally.is_blocked());
        assert_eq!(tally.header("redact").as_deref(), Some("tok=6"));
        // `six` overlaps every token: found too, as a warning.
        assert_eq!(tally.header("warn").as_deref(), Some("six=6"));
        let findings = tally.findings();
        assert!(
            findings
                .iter()
                .all(|f| f.pattern == "tok" || f.pattern == "six")
        );
    }

    #[tokio::test]
    async fn a_response_block_is_a_block_error_naming_the_pattern_only() {
        let e = engine(CFG);
        let mut response = crate::canonical::Response {
            content: vec![Part::text("here: tok_123456")],
            ..Default::default()
        };
        let mut tally = Tally::default();
        e.inspect_response(&mut response, &mut tally).await;
        assert!(tally.is_blocked());
        let err = tally.block_error(&e);
        assert_eq!(err.kind(), crate::error::ErrorKind::GuardrailBlocked);
        assert!(err.message().contains("tok"), "{}", err.message());
        assert!(!err.message().contains("123456"), "{}", err.message());
        assert!(err.message().contains(crate::guardrails::HELP_LINK));
    }

    #[tokio::test]
    async fn disabled_and_unknown_patterns() {
        let e = engine(&format!("{CFG}  disabled_patterns: [six]\n"));
        let mut text = "tok_123456".to_owned();
        let mut tally = Tally::default();
        e.inspect_text(Direction::Request, &mut text, &mut tally)
            .await;
        assert_eq!(text, "[REDACTED:tok]");
        assert_eq!(tally.header("warn"), None);
        let config = Config::parse(
            "guardrails:\n  builtin: false\n  upgoing: { api_keys: block }\n",
            std::path::Path::new("/nonexistent/t.yaml"),
        )
        .unwrap();
        let err = GuardrailEngine::build(&config.guardrails, &[]).unwrap_err();
        assert!(
            err.to_string().contains("guardrails.upgoing.api_keys"),
            "{err}"
        );
    }
}

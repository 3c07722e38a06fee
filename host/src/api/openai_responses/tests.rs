//! The Responses codec both ways, and round trips through canonical.

use serde_json::{Value, json};

use super::*;
use crate::canonical::{
    Extra, FinishReason, ImageSource, Message, Part, Request, Response, Role, StreamEvent, Tool,
    ToolCall, ToolChoice, Usage,
};

fn events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str(), "{data}");
            (name, data)
        })
        .collect()
}

fn encode_all(evs: &[StreamEvent]) -> Vec<u8> {
    let mut e = StreamEncoder::new();
    let mut out = Vec::new();
    for ev in evs {
        e.encode(ev, &mut out);
    }
    e.finish(&mut out);
    out
}

#[test]
fn decodes_string_input_and_instructions() {
    let r = decode_request(
        br#"{"model":"m","input":"hi","instructions":"be brief","max_output_tokens":9,"temperature":0.2,"stream":true,"store":false,"metadata":{"k":"v"}}"#,
    )
    .unwrap();
    assert_eq!(r.messages.len(), 2);
    assert_eq!(r.messages[0].role, Role::System);
    assert!(matches!(&r.messages[1].content[0], Part::Text { text, .. } if text == "hi"));
    assert_eq!(r.max_tokens, Some(9));
    assert!(r.stream);
    let extra = r.extra.for_dialect(DIALECT).unwrap();
    assert_eq!(extra["metadata"]["k"], "v");
    assert_eq!(extra["store"], false);
    // Replayed to a Responses upstream: instructions stay instructions.
    let out = encode_request(&r, "up");
    assert_eq!(out["instructions"], "be brief");
    assert_eq!(out["input"][0]["content"][0]["type"], "input_text");
    assert_eq!(out["max_output_tokens"], 9);
    assert_eq!(out["metadata"]["k"], "v");
    assert_eq!(out["model"], "up");
}

#[test]
fn decodes_items_tools_images_and_outputs() {
    let body = br#"{"model":"m","input":[
        {"role":"developer","content":"rules"},
        {"type":"message","role":"user","content":[{"type":"input_text","text":"look"},{"type":"input_image","image_url":"data:image/png;base64,AAAA","detail":"low"},{"type":"input_file","file_id":"file-1"}]},
        {"type":"reasoning","id":"rs_1","summary":[]},
        {"type":"function_call","call_id":"c1","name":"look","arguments":"{\"x\":1}"},
        {"type":"function_call_output","call_id":"c1","output":"a cat"},
        {"role":"assistant","content":[{"type":"output_text","text":"A cat.","annotations":[]}]}],
        "tools":[{"type":"function","name":"look","description":"d","parameters":{"type":"object"},"strict":true},{"type":"web_search"}],
        "tool_choice":{"type":"function","name":"look"},"parallel_tool_calls":false}"#;
    let r = decode_request(body).unwrap();
    let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert!(
        matches!(&r.messages[1].content[1], Part::Image { source: ImageSource::Base64 { media_type, .. }, .. } if media_type == "image/png")
    );
    assert!(matches!(&r.messages[1].content[2], Part::Opaque { .. }));
    // The reasoning item and the call it led to are one assistant turn.
    assert!(matches!(&r.messages[2].content[0], Part::Opaque { .. }));
    assert!(
        matches!(&r.messages[2].content[1], Part::ToolCall(c) if c.id == "c1" && c.arguments == "{\"x\":1}")
    );
    assert!(
        matches!(&r.messages[3].content[0], Part::ToolResult { call_id, content, .. } if call_id == "c1" && content.len() == 1)
    );
    assert_eq!(r.tools.len(), 1);
    assert_eq!(
        r.tools[0].extra.for_dialect(DIALECT).unwrap()["strict"],
        true
    );
    assert_eq!(r.tool_choice, Some(ToolChoice::Tool("look".into())));
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert!(needs_responses_upstream(&r).unwrap().contains("web_search"));

    // Back out to a Responses upstream, item by item.
    let out = encode_request(&r, "up");
    let input = out["input"].as_array().unwrap();
    let types: Vec<&str> = input.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "message",
            "message",
            "reasoning",
            "function_call",
            "function_call_output",
            "message"
        ]
    );
    assert_eq!(input[0]["role"], "developer");
    assert_eq!(input[1]["content"][1]["detail"], "low");
    assert_eq!(input[1]["content"][2]["file_id"], "file-1");
    assert_eq!(input[4]["output"], "a cat");
    assert_eq!(input[5]["content"][0]["type"], "output_text");
    assert_eq!(out["tools"][0]["strict"], true);
    assert_eq!(out["tools"][1]["type"], "web_search");
    assert_eq!(out["tool_choice"]["name"], "look");
    assert!(out.get("store").is_none());
}

#[test]
fn stateful_requests_need_a_responses_upstream() {
    let plain = decode_request(br#"{"model":"m","input":"hi","store":true}"#).unwrap();
    assert_eq!(needs_responses_upstream(&plain), None);
    let prev =
        decode_request(br#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#).unwrap();
    assert!(
        needs_responses_upstream(&prev)
            .unwrap()
            .contains("stateless")
    );
    // No input at all is fine when a stored conversation stands in for it.
    let only_prev = decode_request(br#"{"model":"m","previous_response_id":"resp_1"}"#).unwrap();
    assert!(needs_responses_upstream(&only_prev).is_some());
    let reference =
        decode_request(br#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#)
            .unwrap();
    assert!(
        needs_responses_upstream(&reference)
            .unwrap()
            .contains("item_reference")
    );
}

#[test]
fn bad_requests_say_where() {
    let cases: [(&[u8], &str); 9] = [
        (br#"{"input":"hi"}"#, "model"),
        (
            br#"{"model":"m","input":5}"#,
            "input: expected a string or an array",
        ),
        (br#"{"model":"m"}"#, "input: is required"),
        (
            br#"{"model":"m","input":[{"content":"x"}]}"#,
            "input[0].type",
        ),
        (
            br#"{"model":"m","input":[{"role":"robot","content":"x"}]}"#,
            "input[0].role",
        ),
        (
            br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#,
            "input[0].content[0].text",
        ),
        (
            br#"{"model":"m","input":[{"type":"function_call","name":"f"}]}"#,
            "input[0].call_id",
        ),
        (
            br#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#,
            "tools[0].name",
        ),
        (
            br#"{"model":"m","input":"x","tool_choice":5}"#,
            "tool_choice",
        ),
    ];
    for (body, want) in cases {
        let e = decode_request(body).unwrap_err().to_string();
        assert!(e.contains(want), "{e} lacks {want}");
    }
}

#[test]
fn encodes_text_calls_reasoning_and_usage() {
    let r = Response {
        id: "chatcmpl-1".into(),
        model: "m".into(),
        content: vec![
            Part::Reasoning {
                text: "thinking".into(),
                signature: None,
            },
            Part::text("Hello "),
            Part::text("there."),
            Part::ToolCall(ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }),
        ],
        finish: FinishReason::ToolCalls,
        usage: Usage {
            input_tokens: 10,
            cache_read_tokens: 4,
            output_tokens: 5,
            reasoning_tokens: 2,
            ..Default::default()
        },
    };
    let v: Value = serde_json::from_slice(&encode_response(&r)).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["incomplete_details"], Value::Null);
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 3);
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["summary"][0]["text"], "thinking");
    assert_eq!(output[1]["content"][0]["text"], "Hello there.");
    assert_eq!(output[2]["type"], "function_call");
    assert_eq!(output[2]["call_id"], "c1");
    assert!(output[2]["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
    assert_eq!(v["usage"]["total_tokens"], 15);
    for key in ["created_at", "parallel_tool_calls", "tool_choice", "tools"] {
        assert!(v.get(key).is_some(), "{key}");
    }

    // A Responses upstream's answer decodes back to the same content.
    let back = decode_response(&encode_response(&r)).unwrap();
    assert_eq!(back.finish, FinishReason::ToolCalls);
    assert_eq!(back.usage, r.usage);
    assert!(matches!(&back.content[0], Part::Reasoning { text, .. } if text == "thinking"));
    assert!(matches!(&back.content[1], Part::Text { text, .. } if text == "Hello there."));
    assert!(matches!(&back.content[2], Part::ToolCall(c) if c.id == "c1" && c.name == "f"));

    let cut = Response {
        finish: FinishReason::Length,
        ..r
    };
    let v: Value = serde_json::from_slice(&encode_response(&cut)).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(
        decode_response(&encode_response(&cut)).unwrap().finish,
        FinishReason::Length
    );
}

#[test]
fn stream_encoder_text_events_in_order() {
    let out = encode_all(&[
        StreamEvent::Start {
            id: "x".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta("Hel".into()),
        StreamEvent::TextDelta("lo".into()),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Usage(Usage {
            input_tokens: 3,
            output_tokens: 2,
            ..Default::default()
        }),
    ]);
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, data)) in evs.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64);
    }
    let item_id = evs[2].1["item"]["id"].as_str().unwrap();
    assert_eq!(evs[4].1["item_id"], item_id);
    assert_eq!(evs[4].1["output_index"], 0);
    assert_eq!(evs[4].1["content_index"], 0);
    assert_eq!(evs[4].1["delta"], "Hel");
    assert_eq!(evs[6].1["text"], "Hello");
    let done = &evs[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["total_tokens"], 5);
    assert_eq!(done["id"], evs[0].1["response"]["id"]);
    assert!(!out.windows(6).any(|w| w == b"[DONE]"));
}

#[test]
fn stream_encoder_tool_call_events() {
    let out = encode_all(&[
        StreamEvent::Start {
            id: "x".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta("Let me check.".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c1".into(),
            name: "get_weather".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"city\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "\"Paris\"}".into(),
        },
        StreamEvent::ToolCallEnd { index: 0 },
        StreamEvent::Finish(FinishReason::ToolCalls),
    ]);
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        &names[7..],
        [
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, data)) in evs.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64);
    }
    let added = &evs[8].1;
    assert_eq!(added["output_index"], 1);
    assert_eq!(added["item"]["type"], "function_call");
    assert_eq!(added["item"]["call_id"], "c1");
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(evs[9].1["item_id"], added["item"]["id"]);
    assert_eq!(evs[11].1["arguments"], "{\"city\":\"Paris\"}");
    let done = &evs[13].1["response"];
    assert_eq!(done["output"][1]["name"], "get_weather");
    assert_eq!(done["output"][1]["arguments"], "{\"city\":\"Paris\"}");

    // A Responses upstream's stream decodes back into the same canonical events.
    let mut d = StreamDecoder::new();
    let mut back = Vec::new();
    for (_, data) in &evs {
        d.decode(&data.to_string(), &mut back).unwrap();
    }
    assert!(d.finished());
    assert!(matches!(&back[0], StreamEvent::Start { model, .. } if model == "m"));
    assert_eq!(back[1], StreamEvent::TextDelta("Let me check.".into()));
    assert_eq!(
        back[2],
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c1".into(),
            name: "get_weather".into()
        }
    );
    assert_eq!(
        back[4],
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "\"Paris\"}".into()
        }
    );
    assert_eq!(back[5], StreamEvent::ToolCallEnd { index: 0 });
    assert_eq!(back[6], StreamEvent::Finish(FinishReason::ToolCalls));
}

#[test]
fn stream_errors_fail_the_response_once() {
    let mut e = StreamEncoder::new();
    let mut out = Vec::new();
    e.encode(&StreamEvent::TextDelta("par".into()), &mut out);
    e.encode(&StreamEvent::Error("overloaded".into()), &mut out);
    e.encode(&StreamEvent::TextDelta("more".into()), &mut out);
    e.finish(&mut out);
    let evs = events(&out);
    let last = &evs.last().unwrap().1;
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["message"], "overloaded");
    assert_eq!(
        evs.iter()
            .filter(|e| e.0.starts_with("response.failed"))
            .count(),
        1
    );
    assert!(!evs.iter().any(|e| e.1["delta"] == "more"));

    let mut d = StreamDecoder::new();
    let mut back = Vec::new();
    d.decode(&last.to_string(), &mut back).unwrap();
    assert_eq!(back, [StreamEvent::Error("overloaded".into())]);
    assert!(!d.finished());
}

#[test]
fn foreign_callers_get_store_false_and_loose_tools() {
    let r = Request {
        model: "m".into(),
        messages: vec![
            Message::text(Role::System, "sys"),
            Message::text(Role::User, "hi"),
        ],
        tools: vec![Tool {
            name: "f".into(),
            description: None,
            parameters: json!({"type": "object"}),
            extra: Extra::default(),
        }],
        stream: true,
        ..Default::default()
    };
    let out = encode_request(&r, "gpt");
    assert_eq!(out["store"], false);
    assert_eq!(out["instructions"], "sys");
    assert_eq!(out["input"][0]["role"], "user");
    assert_eq!(out["tools"][0]["strict"], false);
    assert_eq!(out["stream"], true);
}

#[test]
fn unknown_input_item_types_are_refused_by_name() {
    let e = decode_request(
        br#"{"model":"m","input":[{"type":"message","role":"user","content":"hi"},{"type":"telepathy_call","id":"x"}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("input[1]") && e.contains("telepathy_call"),
        "{e}"
    );
    let ok = decode_request(
        br#"{"model":"m","input":[{"type":"web_search_call","id":"ws_1","status":"completed"}]}"#,
    );
    assert!(ok.is_ok());
}

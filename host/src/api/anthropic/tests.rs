use super::*;
use crate::canonical::{FinishReason, Role, StreamEvent, ToolChoice, Usage};

#[test]
fn decodes_system_tools_and_tool_results() {
    let body = br#"{"model":"m","max_tokens":100,"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],
        "messages":[{"role":"user","content":"hi"},
          {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}]},
          {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"},{"type":"text","text":"and?"}]}],
        "tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"top_k":5}"#;
    let r = decode_request(body).unwrap();
    assert_eq!(r.messages[0].role, Role::System);
    assert_eq!(r.tool_choice, Some(ToolChoice::Required));
    let back = encode_request(&r, "up");
    assert_eq!(back["top_k"], 5);
    assert_eq!(back["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(back["messages"][1]["content"][0]["input"]["a"], 1);
    // To OpenAI: the tool result becomes its own `tool` message before the user's text.
    let openai = crate::api::openai_chat::encode_request(&r, "gpt");
    let msgs = openai["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(
        msgs[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"a":1}"#
    );
    assert_eq!(msgs[3]["role"], "tool");
    assert_eq!(msgs[3]["tool_call_id"], "t1");
    assert_eq!(msgs[4]["role"], "user");
    assert!(openai.get("top_k").is_none());
}

#[test]
fn openai_tool_results_fold_into_one_user_turn() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"go"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"a","content":"1"},{"role":"tool","tool_call_id":"b","content":"2"}]}"#;
    let r = crate::api::openai_chat::decode_request(body).unwrap();
    let out = encode_request(&r, "claude");
    let msgs = out["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[2]["content"].as_array().unwrap().len(), 2);
    assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
}

#[test]
fn missing_max_tokens_is_an_error() {
    let e =
        decode_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
    assert!(e.to_string().contains("max_tokens"));
}

#[test]
fn stream_decoder_merges_usage() {
    let mut d = StreamDecoder::new();
    let mut ev = Vec::new();
    for data in [
        r#"{"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#,
        r#"{"type":"message_stop"}"#,
    ] {
        d.decode(data, &mut ev).unwrap();
    }
    assert!(matches!(
        ev[0],
        StreamEvent::Usage(Usage {
            input_tokens: 17,
            output_tokens: 1,
            ..
        })
    ));
    let ev = &ev[1..];
    assert_eq!(
        ev[1],
        StreamEvent::ToolCallStart {
            index: 0,
            id: "t".into(),
            name: "f".into()
        }
    );
    assert_eq!(ev[3], StreamEvent::ToolCallEnd { index: 0 });
    assert_eq!(ev[4], StreamEvent::Finish(FinishReason::ToolCalls));
    assert_eq!(
        ev[5],
        StreamEvent::Usage(Usage {
            input_tokens: 17,
            cache_read_tokens: 5,
            cache_write_tokens: 2,
            output_tokens: 7,
            reasoning_tokens: 0
        })
    );
    assert!(d.finished());
}

#[test]
fn stream_encoder_opens_and_closes_blocks() {
    let mut e = StreamEncoder::new();
    let mut out = Vec::new();
    for ev in [
        StreamEvent::Start {
            id: "x".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta("a".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{}".into(),
        },
        StreamEvent::ToolCallEnd { index: 0 },
        StreamEvent::Finish(FinishReason::ToolCalls),
    ] {
        e.encode(&ev, &mut out);
    }
    e.finish(&mut out);
    let s = String::from_utf8(out).unwrap();
    let names: Vec<&str> = s
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(s.contains(r#""stop_reason":"tool_use""#));
}

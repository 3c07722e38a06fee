use super::*;
use crate::canonical::{FinishReason, ImageSource, Part, StreamEvent, ToolChoice, Usage};

#[test]
fn decodes_tools_images_and_tool_results() {
    let body = br#"{"model":"m","messages":[
        {"role":"system","content":"be brief"},
        {"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"look","arguments":"{\"x\":1}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"a cat"}],
        "tools":[{"type":"function","function":{"name":"look","parameters":{"type":"object"}}}],
        "tool_choice":"required","stream":true,"stream_options":{"include_usage":true},"seed":7}"#;
    let r = decode_request(body).unwrap();
    assert_eq!(r.messages.len(), 4);
    assert!(r.stream && r.include_usage);
    assert_eq!(r.tool_choice, Some(ToolChoice::Required));
    assert!(
        matches!(&r.messages[1].content[1], Part::Image { source: ImageSource::Base64 { media_type, .. }, .. } if media_type == "image/png")
    );
    assert!(matches!(&r.messages[2].content[0], Part::ToolCall(c) if c.arguments == "{\"x\":1}"));
    assert!(
        matches!(&r.messages[3].content[0], Part::ToolResult { call_id, .. } if call_id == "c1")
    );
    // Same-dialect replay keeps unknown fields and the image detail.
    let out = encode_request(&r, "up");
    assert_eq!(out["seed"], 7);
    assert_eq!(out["model"], "up");
    assert_eq!(
        out["messages"][1]["content"][1]["image_url"]["detail"],
        "low"
    );
    assert_eq!(out["messages"][3]["role"], "tool");
    assert_eq!(out["stream_options"]["include_usage"], true);
}

#[test]
fn bad_requests_say_where() {
    let e = decode_request(br#"{"messages":[]}"#).unwrap_err();
    assert!(e.to_string().contains("model"), "{e}");
    let e =
        decode_request(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#).unwrap_err();
    assert!(e.to_string().contains("messages[0].content"), "{e}");
    let e = decode_request(br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#)
        .unwrap_err();
    assert!(e.to_string().contains("messages[0].role"), "{e}");
    let e = decode_request(br#"{"model":"m","messages":"hi"}"#).unwrap_err();
    assert!(e.to_string().contains("messages"), "{e}");
    let e = decode_request(b"{not json").unwrap_err();
    assert!(e.to_string().contains("JSON"), "{e}");
}

/// `id` and `model` are borrowed from the chunk where they can be; escaped ones are unescaped
/// (owned), in a stream and in a whole answer alike.
#[test]
fn escaped_ids_and_models_are_decoded() {
    let mut d = StreamDecoder::new();
    let mut ev = Vec::new();
    d.decode(
        r#"{"id":"chat\u0063mpl-1","model":"gpt\/4o","choices":[{"delta":{"content":"hi"}}]}"#,
        &mut ev,
    )
    .unwrap();
    assert_eq!(
        ev[0],
        StreamEvent::Start {
            id: "chatcmpl-1".into(),
            model: "gpt/4o".into()
        }
    );
    let r =
        decode_response(br#"{"id":"a\"b","model":"m","choices":[{"message":{"content":"x"}}]}"#)
            .unwrap();
    assert_eq!((r.id.as_str(), r.model.as_str()), ("a\"b", "m"));
}

#[test]
fn stream_decoder_tool_calls_and_usage() {
    let mut d = StreamDecoder::new();
    let mut ev = Vec::new();
    for data in [
        r#"{"id":"x","model":"m","choices":[{"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"id":"x","model":"m","choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
        r#"{"id":"x","model":"m","choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
        r#"{"id":"x","model":"m","choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":3}}}"#,
        "[DONE]",
    ] {
        d.decode(data, &mut ev).unwrap();
    }
    assert_eq!(
        ev[0],
        StreamEvent::Start {
            id: "x".into(),
            model: "m".into()
        }
    );
    assert_eq!(
        ev[1],
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c".into(),
            name: "f".into()
        }
    );
    assert_eq!(
        ev[2],
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{}".into()
        }
    );
    assert_eq!(ev[3], StreamEvent::ToolCallEnd { index: 0 });
    assert_eq!(ev[4], StreamEvent::Finish(FinishReason::ToolCalls));
    assert!(matches!(
        ev[5],
        StreamEvent::Usage(Usage {
            input_tokens: 5,
            cache_read_tokens: 3,
            ..
        })
    ));
    assert!(d.finished());
}

#[test]
fn stream_encoder_hides_usage_unless_asked() {
    let events = [
        StreamEvent::Start {
            id: "i".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta("hi".into()),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Usage(Usage {
            input_tokens: 1,
            output_tokens: 1,
            ..Default::default()
        }),
    ];
    for include in [false, true] {
        let mut e = StreamEncoder::new(include);
        let mut out = Vec::new();
        for ev in &events {
            e.encode(ev, &mut out);
        }
        e.finish(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.contains("\"usage\""), include, "{s}");
        assert!(s.ends_with("data: [DONE]\n\n"));
        assert!(s.contains(r#""finish_reason":"stop""#));
    }
}

use super::*;
use crate::canonical::{FinishReason, Part, Role, StreamEvent, ToolChoice, Usage};
use bytes::Bytes;
use serde_json::{Value, json};

#[test]
fn url_models_keep_colons_and_slashes_in_the_model() {
    let ok = |p: &str| url_model(p).unwrap().unwrap();
    let m = ok("/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!((m.model.as_str(), m.stream), ("gemini-2.5-flash", false));
    let m = ok("/v1beta/models/google:gemini-2.5-pro:streamGenerateContent");
    assert_eq!(
        (m.model.as_str(), m.stream),
        ("google:gemini-2.5-pro", true)
    );
    let m = ok("/v1beta/models/openrouter:openai/gpt-4o:generateContent");
    assert_eq!(m.model, "openrouter:openai/gpt-4o");
    assert_eq!(
        ok("/v1beta/models/up%3Agem:generateContent").model,
        "up:gem"
    );
    assert!(url_model("/v1beta/models/m:countTokens").unwrap().is_err());
    assert!(
        url_model("/v1beta/models/:generateContent")
            .unwrap()
            .is_err()
    );
    assert!(url_model("/v1/models").is_none());
    assert!(url_model("/v1beta/models/no-method").is_none());
}

fn parse(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn snake_case_fields_are_read_like_camel_case_but_user_keys_are_kept() {
    let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],
        "system_instruction":{"parts":[{"text":"be brief"}]},
        "generation_config":{"max_output_tokens":64,"top_p":0.5},
        "tools":[{"function_declarations":[{"name":"f","parameters_json_schema":
            {"type":"object","properties":{"city_name":{"type":"string"}},"required":["city_name"]}}]}]}"#;
    let r = decode_request(body, "m", false).unwrap();
    assert_eq!(r.max_tokens, Some(64));
    assert_eq!(r.top_p, Some(0.5));
    assert_eq!(r.messages[0].role, Role::System);
    assert_eq!(r.tools[0].name, "f");
    assert_eq!(
        r.tools[0].parameters["properties"]["city_name"]["type"],
        "string"
    );
    assert_eq!(camel("max_output_tokens"), "maxOutputTokens");
    assert_eq!(camel("_private"), "_private");
}

#[test]
fn decodes_contents_tools_and_config_and_round_trips() {
    let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"},{"inlineData":{"mimeType":"image/png","data":"AAA="}}]},
          {"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]},
          {"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"output":"sunny"}}}]}],
        "systemInstruction":{"parts":[{"text":"Be terse."}]},
        "tools":[{"functionDeclarations":[{"name":"get_weather","description":"W","parameters":{"type":"object"}}]},{"googleSearch":{}}],
        "toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}},
        "generationConfig":{"maxOutputTokens":50,"temperature":0.5,"topP":0.9,"stopSequences":["END"],"topK":3},
        "safetySettings":[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}]}"#;
    let r = decode_request(body, "gem", true).unwrap();
    assert_eq!(r.model, "gem");
    assert!(r.stream);
    assert_eq!(r.messages[0].role, Role::System);
    assert_eq!(r.max_tokens, Some(50));
    assert_eq!(r.stop, ["END"]);
    assert_eq!(r.tool_choice, Some(ToolChoice::Tool("get_weather".into())));
    // The generated call id links the response to its call.
    let Part::ToolCall(call) = &r.messages[2].content[0] else {
        panic!("{:?}", r.messages[2]);
    };
    let Part::ToolResult { call_id, .. } = &r.messages[3].content[0] else {
        panic!("{:?}", r.messages[3]);
    };
    assert_eq!(&call.id, call_id);

    let back = encode_request(&r, "ignored");
    assert_eq!(back["systemInstruction"]["parts"][0]["text"], "Be terse.");
    assert_eq!(back["generationConfig"]["topK"], 3);
    assert_eq!(back["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(back["safetySettings"][0]["threshold"], "BLOCK_NONE");
    assert_eq!(back["tools"][0]["googleSearch"], json!({}));
    assert_eq!(
        back["tools"][1]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(
        back["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"][0],
        "get_weather"
    );
    assert_eq!(
        back["contents"][0]["parts"][1]["inlineData"]["data"],
        "AAA="
    );
    assert_eq!(
        back["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );
    assert_eq!(
        back["contents"][2]["parts"][0]["functionResponse"]["response"]["output"],
        "sunny"
    );
    assert!(back.get("model").is_none());

    // To OpenAI: Gemini-only fields stay behind, the tool result names the call id.
    let openai = crate::api::openai_chat::encode_request(&r, "gpt");
    assert!(openai.get("safetySettings").is_none());
    let msgs = openai["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["tool_calls"][0]["id"], msgs[3]["tool_call_id"]);
    assert_eq!(msgs[3]["content"], "sunny");
}

#[test]
fn function_response_gets_its_name_from_the_earlier_call() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"go"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},{"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"b","content":"not json"},{"role":"tool","tool_call_id":"a","content":"{\"ok\":true}"}]}"#;
    let r = crate::api::openai_chat::decode_request(body).unwrap();
    let out = encode_request(&r, "gemini");
    let contents = out["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{out}");
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(contents[1]["parts"][0]["functionCall"]["args"]["x"], 1);
    let responses = contents[2]["parts"].as_array().unwrap();
    assert_eq!(responses[0]["functionResponse"]["name"], "g");
    assert_eq!(
        responses[0]["functionResponse"]["response"],
        json!({"output": "not json"})
    );
    assert_eq!(responses[1]["functionResponse"]["name"], "f");
    assert_eq!(
        responses[1]["functionResponse"]["response"],
        json!({"ok": true})
    );
}

#[test]
fn usage_breakdown_both_ways() {
    let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking...","thought":true},{"text":"Hi"}]},"finishReason":"STOP"}],
        "usageMetadata":{"promptTokenCount":100,"cachedContentTokenCount":60,"candidatesTokenCount":7,"thoughtsTokenCount":20,"totalTokenCount":127},
        "modelVersion":"gemini-x","responseId":"r1"}"#;
    let r = decode_response(body).unwrap();
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 100,
            cache_read_tokens: 60,
            cache_write_tokens: 0,
            output_tokens: 27,
            reasoning_tokens: 20,
        }
    );
    assert_eq!(r.usage.uncached_input_tokens(), 40);
    assert!(matches!(&r.content[0], Part::Reasoning { text, .. } if text == "thinking..."));
    let back = parse(&encode_response(&r));
    assert_eq!(back["usageMetadata"]["promptTokenCount"], 100);
    assert_eq!(back["usageMetadata"]["cachedContentTokenCount"], 60);
    assert_eq!(back["usageMetadata"]["candidatesTokenCount"], 7);
    assert_eq!(back["usageMetadata"]["thoughtsTokenCount"], 20);
    assert_eq!(
        back["candidates"][0]["content"]["parts"][0]["thought"],
        true
    );
    assert_eq!(back["responseId"], "r1");
    // Anthropic callers see input without the cache (their convention).
    let a = serde_json::from_slice::<Value>(&crate::api::anthropic::encode_response(&r)).unwrap();
    assert_eq!(a["usage"]["input_tokens"], 40);
    assert_eq!(a["usage"]["cache_read_input_tokens"], 60);
}

#[test]
fn function_calls_get_ids_and_tool_call_finish() {
    let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}}},{"functionCall":{"id":"given","name":"g","args":{}}}]},"finishReason":"STOP"}]}"#;
    let r = decode_response(body).unwrap();
    assert_eq!(r.finish, FinishReason::ToolCalls);
    let ids: Vec<&str> = r
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some(c.id.as_str()),
            _ => None,
        })
        .collect();
    assert!(ids[0].starts_with("call_") && ids[0].len() > 10, "{ids:?}");
    assert_eq!(ids[1], "given");
    let out = parse(&crate::api::openai_chat::encode_response(&r));
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn stream_decoding_across_chunks() {
    let mut d = StreamDecoder::new();
    let mut ev = Vec::new();
    for data in [
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me","thought":true}]}}],"modelVersion":"gm","responseId":"rid"}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]}}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"q":"x"}}}]}}]}"#,
    ] {
        d.decode(data, &mut ev).unwrap();
        assert!(!d.finished());
    }
    d.decode(r#"{"candidates":[{"content":{"role":"model","parts":[]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":10,"cachedContentTokenCount":4,"candidatesTokenCount":5,"thoughtsTokenCount":3}}"#, &mut ev).unwrap();
    assert!(d.finished());
    assert_eq!(
        ev[0],
        StreamEvent::Start {
            id: "rid".into(),
            model: "gm".into()
        }
    );
    assert_eq!(ev[1], StreamEvent::ReasoningDelta("Let me".into()));
    assert_eq!(ev[2], StreamEvent::TextDelta("Hel".into()));
    assert_eq!(ev[3], StreamEvent::TextDelta("lo".into()));
    let StreamEvent::ToolCallStart { index: 0, id, name } = &ev[4] else {
        panic!("{:?}", ev[4]);
    };
    assert!(id.starts_with("call_"));
    assert_eq!(name, "f");
    assert_eq!(
        ev[5],
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: r#"{"q":"x"}"#.into()
        }
    );
    assert_eq!(ev[6], StreamEvent::ToolCallEnd { index: 0 });
    assert_eq!(
        ev[7],
        StreamEvent::Usage(Usage {
            input_tokens: 10,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
            output_tokens: 8,
            reasoning_tokens: 3
        })
    );
    assert_eq!(ev[8], StreamEvent::Finish(FinishReason::ToolCalls));
    assert!(d.decode("not json", &mut ev).is_err());
    let mut err = Vec::new();
    StreamDecoder::new()
        .decode(
            r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
            &mut err,
        )
        .unwrap();
    assert_eq!(err, [StreamEvent::Error("overloaded".into())]);
}

#[test]
fn stream_encoder_emits_calls_whole_and_usage_last() {
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
            id: "c1".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"k\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "2}".into(),
        },
        StreamEvent::ToolCallEnd { index: 0 },
        StreamEvent::Usage(Usage {
            input_tokens: 9,
            output_tokens: 4,
            reasoning_tokens: 1,
            ..Default::default()
        }),
        StreamEvent::Finish(FinishReason::ToolCalls),
    ] {
        e.encode(&ev, &mut out);
    }
    e.finish(&mut out);
    let s = String::from_utf8(out).unwrap();
    let chunks: Vec<Value> = s
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), 3, "{s}");
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
        "a"
    );
    let call = &chunks[1]["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["args"]["k"], 2);
    assert_eq!(call["id"], "c1");
    assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(chunks[2]["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(chunks[2]["usageMetadata"]["thoughtsTokenCount"], 1);
    assert_eq!(chunks[2]["responseId"], "x");
}

#[test]
fn bad_requests_say_where() {
    let e = decode_request(br#"{"contents":[]}"#, "m", false).unwrap_err();
    assert!(e.to_string().contains("contents"), "{e}");
    let e = decode_request(br#"{"contents":[{"role":"bot","parts":[]}]}"#, "m", false).unwrap_err();
    assert!(e.to_string().contains("contents[0].role"), "{e}");
    let e = decode_request(
        br#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":"many"}}"#,
        "m",
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("maxOutputTokens"), "{e}");
    assert!(decode_request(br#"{"messages":[]}"#, "m", false).is_err());
}

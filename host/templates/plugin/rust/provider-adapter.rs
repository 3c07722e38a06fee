//! {{name}}: a provider adapter for a small JSON API: `POST /v1/generate` with
//! `{"model", "prompt", "max_tokens"}`, answered by `{"text", "input_tokens", "output_tokens"}`
//! and streamed as one JSON object per line, `{"text": ...}`, then `{"done": true, ...}`.
//! Pure translation: the host sends the request (adding the API key) and hands back the
//! answer; the stream's unfinished line is the state the host keeps between chunks.

wit_bindgen::generate!({ path: "wit", world: "provider-adapter" });

use bitrouter::plugin::types::{
    FinishReason, Part, Request, Response, Role, StreamEvent, TextPart, Usage,
};
use exports::bitrouter::plugin::adapter::{
    Guest, HttpRequest, HttpResponse, StreamStep, UpstreamError,
};
use serde_json::{Value, json};

struct Plugin;

impl Guest for Plugin {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn encode_request(request: Request, model_id: String) -> Result<HttpRequest, String> {
        let mut prompt = String::new();
        for m in &request.messages {
            for p in &m.content {
                match p {
                    Part::Text(t) if m.role != Role::Tool => prompt.push_str(&t.text),
                    Part::Text(_) | Part::Reasoning(_) => {}
                    _ => return Err("this adapter takes text only".into()),
                }
            }
            prompt.push('\n');
        }
        let body = json!({
            "model": model_id,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "stream": request.stream,
        });
        Ok(HttpRequest {
            method: "POST".into(),
            path: "/v1/generate".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }

    fn decode_response(response: HttpResponse) -> Result<Response, UpstreamError> {
        let v: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        if !(200..300).contains(&response.status) {
            return Err(UpstreamError {
                status: response.status,
                message: v["error"].as_str().unwrap_or("upstream error").into(),
                retryable: response.status == 429 || response.status >= 500,
            });
        }
        Ok(Response {
            id: String::new(),
            model: String::new(),
            content: vec![Part::Text(TextPart {
                text: v["text"].as_str().unwrap_or_default().into(),
                extra: None,
            })],
            finish: FinishReason::Stop,
            usage: usage(&v),
        })
    }

    fn decode_stream(state: Vec<u8>, chunk: Vec<u8>, end: bool) -> Result<StreamStep, UpstreamError> {
        let mut buf = state;
        buf.extend_from_slice(&chunk);
        let mut events = Vec::new();
        let mut lines: Vec<Vec<u8>> = buf.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        let rest = if end { Vec::new() } else { lines.pop().unwrap_or_default() };
        for line in lines.iter().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).map_err(|e| UpstreamError {
                status: 502,
                message: format!("bad stream line: {e}"),
                retryable: true,
            })?;
            if let Some(t) = v["text"].as_str() {
                events.push(StreamEvent::TextDelta(t.into()));
            }
            if v["done"] == true {
                events.push(StreamEvent::Usage(usage(&v)));
                events.push(StreamEvent::Finish(FinishReason::Stop));
            }
        }
        Ok(StreamStep { state: rest, events })
    }
}

fn usage(v: &Value) -> Usage {
    Usage {
        input_tokens: v["input_tokens"].as_u64().unwrap_or(0),
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        output_tokens: v["output_tokens"].as_u64().unwrap_or(0),
        reasoning_tokens: 0,
    }
}

export!(Plugin);

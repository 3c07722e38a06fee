//! Bad input from callers, in both dialects: malformed and mistyped bodies, missing fields,
//! bodies over the size limit (declared and chunked), unknown models, paths and methods, and
//! clients that send too slowly. Every rejection is a JSON error in the caller's dialect, no
//! rejected request reaches the upstream, and the gateway keeps serving afterwards.

use std::time::Duration;

use bitrouter_mock::MockServer;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{
    Reply, TestGateway, client, get, mock, post, post_raw, providers, request_for,
};

const DIALECTS: [&str; 2] = ["openai", "anthropic"];
/// Every caller dialect, for the tests whose bodies need no dialect-specific edits.
const CALLERS: [&str; 3] = ["openai", "anthropic", "responses"];

/// The path of a dialect's model-call endpoint.
fn path_of(dialect: &str) -> &'static str {
    request_for(dialect, "r", "").0
}

/// A gateway with one route `r` to an OpenAI-protocol mock, plus `server` settings.
async fn gateway(server: &str) -> (TestGateway, MockServer) {
    let m = mock().await;
    let yaml = format!(
        "{server}\n{}models:\n  r:\n    endpoints:\n      - provider: m\n        model_id: mock-gpt\n",
        providers(&[("m", "openai", &m)])
    );
    (TestGateway::start(&yaml).await, m)
}

/// Asserts `r` is a JSON error with `status`, spelled in `dialect`, and returns its message.
fn error_message(dialect: &str, r: &Reply, status: u16, what: &str) -> String {
    assert_eq!(
        r.status, status,
        "[{dialect}] {what}: status; body: {}",
        r.text
    );
    assert_eq!(
        r.header("content-type"),
        "application/json",
        "[{dialect}] {what}: content-type"
    );
    let v = r.json();
    error_body_message(dialect, &v, status, what)
}

/// Checks the dialect's error shape (and the error type for `status`); returns the message.
fn error_body_message(dialect: &str, v: &Value, status: u16, what: &str) -> String {
    match dialect {
        // The Responses API reports errors exactly like chat completions.
        "openai" | "responses" => {
            let e = &v["error"];
            assert!(e.is_object(), "[openai] {what}: no `error` object: {v}");
            assert!(
                v.get("type").is_none(),
                "[openai] {what}: Anthropic-shaped body: {v}"
            );
            let want = match status {
                404 => "not_found_error",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            };
            assert_eq!(e["type"], want, "[openai] {what}: error.type: {v}");
            assert!(
                e.get("param").is_some() && e.get("code").is_some(),
                "[openai] {what}: param/code missing: {v}"
            );
            e["message"]
                .as_str()
                .unwrap_or_else(|| panic!("[openai] {what}: error.message missing: {v}"))
                .to_owned()
        }
        _ => {
            assert_eq!(
                v["type"], "error",
                "[anthropic] {what}: top-level type: {v}"
            );
            let want = match status {
                404 => "not_found_error",
                413 => "request_too_large",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            };
            assert_eq!(
                v["error"]["type"], want,
                "[anthropic] {what}: error.type: {v}"
            );
            v["error"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("[anthropic] {what}: error.message missing: {v}"))
                .to_owned()
        }
    }
}

/// A valid body for `dialect` with `edit` applied.
fn body_with(dialect: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let (_, mut body) = request_for(dialect, "r", "hello");
    edit(&mut body);
    body
}

fn remove(key: &'static str) -> impl FnOnce(&mut Value) {
    move |v| {
        v.as_object_mut().unwrap().remove(key);
    }
}

/// The gateway still answers good calls in both dialects, each reaching the upstream once.
async fn assert_still_serves(gw: &TestGateway, m: &MockServer) {
    let before = m.request_count();
    for dialect in DIALECTS {
        let (path, body) = request_for(dialect, "r", "still alive?");
        let r = post(gw, path, &body).await;
        assert_eq!(
            r.status, 200,
            "[{dialect}] good request after bad input: {}",
            r.text
        );
        assert_eq!(r.header("content-type"), "application/json");
    }
    assert_eq!(
        m.request_count(),
        before + DIALECTS.len(),
        "each good request reaches the upstream once"
    );
}

#[tokio::test]
async fn invalid_json_is_400_in_the_callers_dialect() {
    let (gw, m) = gateway("").await;
    let bodies: [(&str, &[u8]); 5] = [
        ("truncated object", br#"{"model": "r", "messages": ["#),
        ("not JSON at all", b"model=r&messages=hi"),
        ("empty body", b""),
        ("single quotes", b"{'model': 'r'}"),
        ("invalid UTF-8 in a string", b"{\"model\": \"\xff\xfe\"}"),
    ];
    for dialect in CALLERS {
        for (what, body) in bodies {
            let r = post_raw(&gw, path_of(dialect), body.to_vec(), &[]).await;
            let msg = error_message(dialect, &r, 400, what);
            assert!(msg.contains("not valid JSON"), "[{dialect}] {what}: {msg}");
            assert!(
                !r.header("x-request-id").is_empty(),
                "[{dialect}] {what}: no x-request-id"
            );
        }
    }
    assert_eq!(
        m.request_count(),
        0,
        "rejected requests must not reach the upstream"
    );
    assert_still_serves(&gw, &m).await;
}

/// A valid object followed by more bytes is not valid JSON (serde_json's `from_slice` says
/// "trailing characters"), but the gateway's decoder never checks for the end of input.
#[tokio::test]
async fn json_with_trailing_garbage_is_400() {
    let (gw, m) = gateway("").await;
    for dialect in DIALECTS {
        let mut body = request_for(dialect, "r", "hi").1.to_string().into_bytes();
        body.extend_from_slice(b" trailing garbage");
        let r = post_raw(&gw, path_of(dialect), body, &[]).await;
        let msg = error_message(dialect, &r, 400, "trailing garbage");
        assert!(msg.contains("not valid JSON"), "[{dialect}] {msg}");
        let two_objects = br#"{"model":"r","max_tokens":5,"messages":[{"role":"user","content":"a"}]}{"model":"x"}"#.to_vec();
        let r = post_raw(&gw, path_of(dialect), two_objects, &[]).await;
        error_message(dialect, &r, 400, "two JSON objects");
    }
    assert_eq!(
        m.request_count(),
        0,
        "rejected requests must not reach the upstream"
    );
}

#[tokio::test]
async fn wrong_types_name_the_field_path() {
    let (gw, m) = gateway("").await;
    for dialect in DIALECTS {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "messages is a string",
                body_with(dialect, |v| v["messages"] = json!("hi")),
                "messages",
            ),
            (
                "content is a number",
                body_with(dialect, |v| v["messages"][0]["content"] = json!(5)),
                "messages[0].content",
            ),
            (
                "model is a number",
                body_with(dialect, |v| v["model"] = json!(3)),
                "model",
            ),
            (
                "role is a number",
                body_with(dialect, |v| v["messages"][0]["role"] = json!(1)),
                "messages[0].role",
            ),
            (
                "stream is a string",
                body_with(dialect, |v| v["stream"] = json!("yes")),
                "stream",
            ),
            ("body is an array", json!([1, 2]), "expected"),
        ];
        for (what, body, field) in cases {
            let r = post(&gw, path_of(dialect), &body).await;
            let msg = error_message(dialect, &r, 400, what);
            assert!(
                msg.contains(field),
                "[{dialect}] {what}: message should name `{field}`: {msg}"
            );
            assert!(
                msg.contains("invalid") || msg.contains("expected"),
                "[{dialect}] {what}: should say what was expected: {msg}"
            );
            assert!(
                !msg.contains("not valid JSON"),
                "[{dialect}] {what}: well-formed JSON called invalid: {msg}"
            );
        }
    }
    assert_eq!(
        m.request_count(),
        0,
        "rejected requests must not reach the upstream"
    );
    assert_still_serves(&gw, &m).await;
}

#[tokio::test]
async fn missing_and_invalid_fields_say_what_is_wrong() {
    let (gw, m) = gateway("").await;
    for dialect in DIALECTS {
        let mut cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "missing model",
                body_with(dialect, remove("model")),
                vec!["missing", "model"],
            ),
            (
                "missing messages",
                body_with(dialect, remove("messages")),
                vec!["missing", "messages"],
            ),
            (
                "empty messages",
                body_with(dialect, |v| v["messages"] = json!([])),
                vec!["messages", "at least one"],
            ),
            (
                "unknown role",
                body_with(dialect, |v| v["messages"][0]["role"] = json!("wizard")),
                vec!["messages[0].role", "unknown role", "wizard"],
            ),
            (
                "unknown role in a later message",
                body_with(dialect, |v| {
                    v["messages"] = json!([
                        {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b"},
                        {"role": "robot", "content": "c"}
                    ]);
                }),
                vec!["messages[2].role", "robot"],
            ),
        ];
        if dialect == "anthropic" {
            cases.push((
                "missing max_tokens",
                body_with(dialect, remove("max_tokens")),
                vec!["max_tokens", "required"],
            ));
        }
        for (what, body, needles) in cases {
            let r = post(&gw, path_of(dialect), &body).await;
            let msg = error_message(dialect, &r, 400, what);
            for n in needles {
                assert!(
                    msg.contains(n),
                    "[{dialect}] {what}: message should contain {n:?}: {msg}"
                );
            }
        }
    }
    // OpenAI callers may leave max_tokens out.
    let r = post(
        &gw,
        "/v1/chat/completions",
        &body_with("openai", remove("max_tokens")),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "OpenAI request without max_tokens: {}",
        r.text
    );
    assert_eq!(
        m.request_count(),
        1,
        "only the valid request reaches the upstream"
    );
    m.clear_requests();
    assert_still_serves(&gw, &m).await;
}

/// The Responses dialect's own shapes: `input` and its items, flat function tools.
#[tokio::test]
async fn responses_bad_input_names_the_field() {
    let (gw, m) = gateway("").await;
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "missing model",
            json!({"input": "hi"}),
            vec!["missing", "model"],
        ),
        (
            "missing input",
            json!({"model": "r"}),
            vec!["input", "required"],
        ),
        (
            "input is a number",
            json!({"model": "r", "input": 5}),
            vec!["input", "expected a string or an array"],
        ),
        (
            "input is an object",
            json!({"model": "r", "input": {"role": "user"}}),
            vec!["input", "an object"],
        ),
        (
            "item is a string",
            json!({"model": "r", "input": ["hi"]}),
            vec!["input[0]", "expected an input item"],
        ),
        (
            "item without type or role",
            json!({"model": "r", "input": [{"content": "hi"}]}),
            vec!["input[0].type", "required"],
        ),
        (
            "unknown role",
            json!({"model": "r", "input": [{"role": "wizard", "content": "hi"}]}),
            vec!["input[0].role", "wizard"],
        ),
        (
            "content is a number",
            json!({"model": "r", "input": [{"role": "user", "content": 5}]}),
            vec!["input[0].content"],
        ),
        (
            "part without text",
            json!({"model": "r", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
            vec!["input[0].content[0].text"],
        ),
        (
            "function_call without call_id",
            json!({"model": "r", "input": [{"role": "user", "content": "a"}, {"type": "function_call", "name": "f", "arguments": "{}"}]}),
            vec!["input[1].call_id", "required"],
        ),
        (
            "function tool without a name",
            json!({"model": "r", "input": "hi", "tools": [{"type": "function", "parameters": {}}]}),
            vec!["tools[0].name"],
        ),
        (
            "max_output_tokens is a string",
            json!({"model": "r", "input": "hi", "max_output_tokens": "9"}),
            vec!["max_output_tokens"],
        ),
        (
            "instructions is a number",
            json!({"model": "r", "input": "hi", "instructions": 1}),
            vec!["instructions"],
        ),
    ];
    for (what, body, needles) in cases {
        let r = post(&gw, "/v1/responses", &body).await;
        let msg = error_message("responses", &r, 400, what);
        for n in needles {
            assert!(
                msg.contains(n),
                "[responses] {what}: message should contain {n:?}: {msg}"
            );
        }
    }
    assert_eq!(
        m.request_count(),
        0,
        "rejected requests must not reach the upstream"
    );
    assert_still_serves(&gw, &m).await;
}

/// A valid body for `dialect` whose JSON text is exactly `len` bytes long.
fn body_of_len(dialect: &str, len: usize) -> Vec<u8> {
    let (_, base) = request_for(dialect, "r", "");
    let base_len = base.to_string().len();
    assert!(
        len >= base_len,
        "cannot make a {len}-byte body; the minimum is {base_len}"
    );
    let body = body_with(dialect, |v| {
        v["messages"][0]["content"] = json!("x".repeat(len - base_len));
    });
    let bytes = body.to_string().into_bytes();
    assert_eq!(bytes.len(), len);
    bytes
}

/// A streamed (chunked, no Content-Length) body of `chunks` pieces of `size` bytes each.
fn chunked_body(chunks: usize, size: usize) -> reqwest::Body {
    let pieces = (0..chunks).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; size])));
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

async fn post_body(gw: &TestGateway, path: &str, body: reqwest::Body) -> Reply {
    let resp = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request to the gateway failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Reply {
        status,
        headers,
        text,
    }
}

fn assert_too_large(dialect: &str, r: &Reply, what: &str) {
    let msg = error_message(dialect, r, 413, what);
    assert!(
        msg.contains("1024") && msg.contains("max_body_size"),
        "[{dialect}] {what}: {msg}"
    );
    if dialect == "openai" {
        assert_eq!(
            r.json()["error"]["code"],
            "request_too_large",
            "[openai] {what}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let (gw, m) = gateway("server: { max_body_size: 1KiB }").await;
    for dialect in DIALECTS {
        let path = path_of(dialect);

        // Declared with Content-Length.
        let r = post_raw(&gw, path, body_of_len(dialect, 1025), &[]).await;
        assert_too_large(dialect, &r, "Content-Length one byte over");
        let r = post_raw(&gw, path, vec![b' '; 64 * 1024], &[]).await;
        assert_too_large(dialect, &r, "Content-Length far over");

        // Chunked, no Content-Length: the limit is enforced while reading.
        let r = post_body(&gw, path, chunked_body(4, 512)).await;
        assert_too_large(dialect, &r, "chunked body over the limit");
        let r = post_body(&gw, path, chunked_body(1, 1025)).await;
        assert_too_large(dialect, &r, "one chunk one byte over");
    }
    assert_eq!(
        m.request_count(),
        0,
        "oversized requests must not reach the upstream"
    );

    // Exactly at the limit is fine, declared or chunked.
    for dialect in DIALECTS {
        let r = post_raw(&gw, path_of(dialect), body_of_len(dialect, 1024), &[]).await;
        assert_eq!(
            r.status, 200,
            "[{dialect}] body of exactly max_body_size: {}",
            r.text
        );
        let body = body_of_len(dialect, 1024);
        let pieces = body
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>();
        let r = post_body(
            &gw,
            path_of(dialect),
            reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)),
        )
        .await;
        assert_eq!(
            r.status, 200,
            "[{dialect}] chunked body of exactly max_body_size: {}",
            r.text
        );
    }
    assert_eq!(m.request_count(), 4);
    m.clear_requests();
    assert_still_serves(&gw, &m).await;
}

#[tokio::test]
async fn unknown_model_or_provider_is_404() {
    let (gw, m) = gateway("").await;
    for dialect in CALLERS {
        for model in ["no-such-route", "nosuchprovider:some-model", "R"] {
            let (path, body) = request_for(dialect, model, "hi");
            let r = post(&gw, path, &body).await;
            let msg = error_message(dialect, &r, 404, model);
            assert!(
                msg.contains("/v1/models"),
                "[{dialect}] {model}: should point at /v1/models: {msg}"
            );
            assert!(
                msg.contains(model),
                "[{dialect}] {model}: should name the model: {msg}"
            );
        }
        // A known provider with nothing after the colon.
        let (path, body) = request_for(dialect, "m:", "hi");
        let r = post(&gw, path, &body).await;
        error_message(dialect, &r, 404, "provider with empty model id");
    }
    assert_eq!(
        m.request_count(),
        0,
        "unroutable requests must not reach the upstream"
    );
    assert_still_serves(&gw, &m).await;
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let (gw, m) = gateway("").await;

    // Unknown paths: OpenAI shape by default, Anthropic when the caller looks like one.
    for (path, headers, dialect) in [
        ("/v1/nope", vec![], "openai"),
        ("/", vec![], "openai"),
        ("/v1/chat/completion", vec![], "openai"),
        (
            "/v1/nope",
            vec![("anthropic-version", "2023-06-01")],
            "anthropic",
        ),
        ("/v1/messages/count_tokens", vec![], "anthropic"),
    ] {
        let r = get(&gw, path, &headers).await;
        let msg = error_message(dialect, &r, 404, path);
        assert!(
            msg.contains(path) && msg.contains("/v1/chat/completions"),
            "[{dialect}] {path}: {msg}"
        );
        let r = post_raw(&gw, path, b"{}".to_vec(), &headers).await;
        error_message(dialect, &r, 404, path);
    }

    // Wrong methods.
    let http = client();
    for (method, path, allow, dialect) in [
        (
            reqwest::Method::GET,
            "/v1/chat/completions",
            "POST",
            "openai",
        ),
        (reqwest::Method::PUT, "/chat/completions", "POST", "openai"),
        (
            reqwest::Method::DELETE,
            "/v1/chat/completions",
            "POST",
            "openai",
        ),
        (reqwest::Method::GET, "/v1/responses", "POST", "openai"),
        (reqwest::Method::PUT, "/responses", "POST", "openai"),
        (reqwest::Method::GET, "/v1/messages", "POST", "anthropic"),
        (reqwest::Method::PATCH, "/messages", "POST", "anthropic"),
        (reqwest::Method::POST, "/v1/models", "GET", "openai"),
        (reqwest::Method::DELETE, "/v1/models/r", "GET", "openai"),
        (reqwest::Method::POST, "/health", "GET", "openai"),
    ] {
        let what = format!("{method} {path}");
        let resp = http
            .request(method.clone(), gw.url(path))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let r = Reply {
            status,
            headers,
            text: resp.text().await.unwrap(),
        };
        let msg = error_message(dialect, &r, 405, &what);
        assert_eq!(r.header("allow"), allow, "{what}: Allow header");
        assert!(msg.contains(allow), "{what}: {msg}");
    }
    assert_eq!(
        m.request_count(),
        0,
        "rejected requests must not reach the upstream"
    );
    assert_still_serves(&gw, &m).await;
}

/// OpenAI's `error.code` tells clients what failed; an unknown URL is not an unknown model.
#[tokio::test]
async fn unknown_path_is_not_reported_as_an_unknown_model() {
    let (gw, m) = gateway("").await;
    let r = get(&gw, "/v1/nope", &[]).await;
    error_message("openai", &r, 404, "unknown path");
    assert_ne!(r.json()["error"]["code"], "model_not_found", "{}", r.text);
    assert_eq!(m.request_count(), 0);
}

/// Reads from `s` until EOF, an error, or `limit`; returns the bytes and whether the peer
/// closed (EOF or error) within the limit.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0) | Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Splits a raw HTTP/1.1 response into its head and body.
fn split_response(raw: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(raw);
    match text.find("\r\n\r\n") {
        Some(i) => (text[..i].to_owned(), raw[i + 4..].to_vec()),
        None => (text.into_owned(), Vec::new()),
    }
}

#[tokio::test]
async fn slow_body_gets_408_and_never_hangs() {
    let (gw, m) = gateway("server: { body_timeout: 300ms, header_timeout: 300ms }").await;
    for dialect in DIALECTS {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
            path_of(dialect),
            gw.addr
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(br#"{"model":""#).await.unwrap();
        let started = std::time::Instant::now();
        let (raw, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        let (head, body) = split_response(&raw);
        let status_line = head.lines().next().unwrap_or("");
        assert!(
            status_line.contains("408"),
            "[{dialect}] expected 408, got {status_line:?} after {:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "[{dialect}] 408 took {:?}",
            started.elapsed()
        );
        let head_lower = head.to_ascii_lowercase();
        assert!(
            head_lower.contains("content-type: application/json"),
            "[{dialect}] 408 head: {head}"
        );
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "[{dialect}] 408 body not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        let msg = error_body_message(dialect, &v, 408, "slow body");
        assert!(msg.contains("body_timeout"), "[{dialect}] {msg}");
    }
    assert_eq!(
        m.request_count(),
        0,
        "a request whose body never arrived must not reach the upstream"
    );
    assert_still_serves(&gw, &m).await;
}

#[tokio::test]
async fn stalled_headers_are_cut_off() {
    let (gw, m) = gateway("server: { body_timeout: 300ms, header_timeout: 300ms }").await;
    let partials = [
        "POST /v1/chat/comp".to_owned(),
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: {}\r\nContent-Le",
            gw.addr
        ),
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n",
            gw.addr
        ),
    ];
    let mut conns = Vec::new();
    for p in &partials {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(p.as_bytes()).await.unwrap();
        conns.push((p, s));
    }
    // Stall them all at once: the timeout applies per connection, concurrently.
    let started = std::time::Instant::now();
    for (p, s) in &mut conns {
        let (raw, closed) = read_until_closed(s, Duration::from_secs(5)).await;
        assert!(
            closed,
            "{p:?}: connection still open after {:?}; got {:?}",
            started.elapsed(),
            String::from_utf8_lossy(&raw)
        );
        if !raw.is_empty() {
            let text = String::from_utf8_lossy(&raw);
            assert!(
                text.starts_with("HTTP/1.1 4"),
                "{p:?}: unexpected answer to stalled headers: {text}"
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(m.request_count(), 0);
    assert_still_serves(&gw, &m).await;
}

/// `server.header_timeout` is documented as "how long a client may take to send its request
/// headers", but hyper-util's `auto::Builder` (HTTP/1.1 + h2c on one port) first reads bytes
/// to tell HTTP/1 from the HTTP/2 preface, with no timer; hyper's header timeout only starts
/// after that. A client that connects and sends nothing, or only a prefix of the h2 preface
/// ("P", "PRI * HTTP/2.0"), holds the connection open forever (hyperium/hyper#3756, #3962).
#[tokio::test]
async fn idle_connection_without_a_request_is_closed() {
    let (gw, m) = gateway("server: { body_timeout: 300ms, header_timeout: 300ms }").await;
    let mut conns = Vec::new();
    for sent in ["", "P", "PRI * HTTP/2.0"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(sent.as_bytes()).await.unwrap();
        conns.push((sent, s));
    }
    let mut still_open = Vec::new();
    for (sent, s) in &mut conns {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5)).await;
        if !closed {
            still_open.push(*sent);
        }
    }
    assert!(
        still_open.is_empty(),
        "connections that sent only these bytes are still open after 5 s: {still_open:?}"
    );
    assert_eq!(m.request_count(), 0);
    assert_still_serves(&gw, &m).await;
}

#[tokio::test]
async fn gateway_survives_a_barrage_of_bad_input() {
    let (gw, m) =
        gateway("server: { max_body_size: 1KiB, body_timeout: 300ms, header_timeout: 300ms }")
            .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = gw.url(path_of(DIALECTS[i % 2]));
        tasks.push(tokio::spawn(async move {
            let body: Vec<u8> = match i % 4 {
                0 => b"{not json".to_vec(),
                1 => br#"{"model":3}"#.to_vec(),
                2 => vec![b'x'; 4096],
                _ => {
                    br#"{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#
                        .to_vec()
                }
            };
            let resp = client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let status = t.await.unwrap();
        let want = [400, 400, 413, 404][i % 4];
        assert_eq!(status, want, "bad request #{i}");
    }
    assert_eq!(m.request_count(), 0);
    assert_still_serves(&gw, &m).await;
}

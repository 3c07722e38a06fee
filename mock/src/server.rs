//! The HTTP side of the mock: listener and connections (HTTP/1.1 and h2c), routing, request
//! recording, and the [`MockServer`] handle that owns it all.

use std::convert::Infallible;
use std::future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::anthropic;
use super::behavior::{MAX_DELAY_MS, MockBehavior, parse_header};
use super::body::{Ending, EventSource, MockBody, StreamTiming};
use super::cohere;
use super::gemini;
use super::openai;
use super::reply::Reply;
use super::request::Dialect;

/// Bodies above this get a 413, like a provider's request-size limit.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Far above what providers allow, so h2c benchmarks measure the gateway, not this limit.
const MAX_H2_STREAMS: u32 = 16 * 1024;

/// What `refuse_prefill` answers, with a 400, to a conversation that ends with an assistant turn.
const PREFILL_REFUSED: &str = "mock upstream: this model does not support assistant message prefill; the conversation must end with a user message";

const MODELS: &str = r#"{"object":"list","data":[{"id":"mock-gpt","object":"model","created":1700000000,"owned_by":"bitrouter-mock"},{"id":"mock-claude","object":"model","created":1700000000,"owned_by":"bitrouter-mock"}]}"#;

/// One model request (chat completions or messages) as the mock received it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lowercase names, in the order received; repeated headers appear once per value.
    pub headers: Vec<(String, String)>,
    /// The parsed body, `Null` when it was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a reply needs to know about the request it answers.
pub(crate) struct ReplyCtx {
    /// Makes ids (`chatcmpl-mock7`, `msg_mock7`, `call_mock7`, `toolu_mock7`) unique per server.
    pub seq: u64,
    pub model: String,
    pub created: u64,
}

struct Shared {
    behavior: RwLock<Arc<MockBehavior>>,
    record: bool,
    requests: Mutex<Vec<RecordedRequest>>,
    model_requests: AtomicUsize,
    active_connections: AtomicUsize,
    seq: AtomicU64,
}

impl Shared {
    fn behavior(&self) -> Arc<MockBehavior> {
        self.behavior
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_behavior(&self, b: MockBehavior) {
        *self
            .behavior
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(b);
    }

    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, parts: &Parts, body: Value) {
        if !self.record {
            return;
        }
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        let request = RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers,
            body,
        };
        self.requests().push(request);
    }
}

/// Counts a connection for as long as its task lives, however the task ends.
struct ConnectionGuard(Arc<Shared>);

impl ConnectionGuard {
    fn new(shared: Arc<Shared>) -> ConnectionGuard {
        shared.active_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(shared)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Configures a [`MockServer`] before it starts.
#[derive(Clone, Debug)]
pub struct MockServerBuilder {
    addr: SocketAddr,
    behavior: MockBehavior,
    record: bool,
}

impl Default for MockServerBuilder {
    fn default() -> Self {
        MockServerBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            behavior: MockBehavior::default(),
            record: true,
        }
    }
}

impl MockServerBuilder {
    /// Where to listen (default `127.0.0.1:0`, an ephemeral port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The instance behavior (default: [`MockBehavior::default`]).
    pub fn behavior(mut self, behavior: MockBehavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Keep every model request for [`MockServer::requests`] (default `true`). Turn it off for
    /// benchmarks: the list grows without bound and its lock is shared by all connections.
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Binds and starts serving on the current Tokio runtime.
    pub async fn start(self) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(self.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behavior: RwLock::new(Arc::new(self.behavior)),
            record: self.record,
            requests: Mutex::new(Vec::new()),
            model_requests: AtomicUsize::new(0),
            active_connections: AtomicUsize::new(0),
            seq: AtomicU64::new(1),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, shared.clone(), stop_rx));
        Ok(MockServer {
            addr,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running mock upstream. Dropping it stops accepting and closes every open connection,
/// stalled ones included; [`MockServer::shutdown`] does the same and waits until it is done.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping the sender is the stop signal.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts on `127.0.0.1:0` with recording on.
    pub async fn start(behavior: MockBehavior) -> std::io::Result<MockServer> {
        MockServer::builder().behavior(behavior).start().await
    }

    /// Starts on `addr` with recording on.
    pub async fn start_on(addr: SocketAddr, behavior: MockBehavior) -> std::io::Result<MockServer> {
        MockServer::builder()
            .addr(addr)
            .behavior(behavior)
            .start()
            .await
    }

    pub fn builder() -> MockServerBuilder {
        MockServerBuilder::default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the instance behavior; requests that arrive afterwards use it.
    pub fn set_behavior(&self, behavior: MockBehavior) {
        self.shared.set_behavior(behavior);
    }

    /// The current instance behavior.
    pub fn behavior(&self) -> MockBehavior {
        (*self.shared.behavior()).clone()
    }

    /// Model requests received (chat completions and messages), failed ones included. Counted
    /// even when recording is off.
    pub fn request_count(&self) -> usize {
        self.shared.model_requests.load(Ordering::Relaxed)
    }

    /// Every model request received since the start or the last [`MockServer::clear_requests`]
    /// (empty when recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// The most recent model request, if any was recorded.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.requests().last().cloned()
    }

    /// Forgets the recorded requests and resets [`MockServer::request_count`].
    pub fn clear_requests(&self) {
        self.shared.requests().clear();
        self.shared.model_requests.store(0, Ordering::Relaxed);
    }

    /// TCP connections currently open to the mock.
    pub fn active_connections(&self) -> usize {
        self.shared.active_connections.load(Ordering::Relaxed)
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // Dropping `stop` ends the accept loop, which then aborts every connection task.
        self.stop.take();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    // Connection tasks live in this set so that stopping the server closes them all.
    let mut connections = JoinSet::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_H2_STREAMS);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if shared.behavior().reset => {
                    connections.spawn(reset(stream));
                }
                Ok((stream, _)) => {
                    // Without it, small SSE writes wait on the peer's delayed ACK (~40 ms).
                    let _ = stream.set_nodelay(true);
                    let guard = ConnectionGuard::new(shared.clone());
                    let builder = builder.clone();
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let _guard = guard;
                        let service = service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(handle(shared, req).await) }
                        });
                        // A connection error only concerns that client.
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// `reset`: waits for the request's first bytes, then closes with `SO_LINGER` 0, which the
/// kernel turns into a TCP RST instead of an orderly FIN.
async fn reset(mut stream: tokio::net::TcpStream) {
    let mut first = [0u8; 1024];
    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut first).await;
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

enum Route {
    Model(Dialect),
    Models,
    Admin,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::POST, "/v1/chat/completions" | "/chat/completions") => {
            Route::Model(Dialect::OpenAi)
        }
        (&Method::POST, "/v1/messages" | "/messages") => Route::Model(Dialect::Anthropic),
        (&Method::POST, "/v1/chat" | "/chat") => Route::Model(Dialect::Cohere),
        (&Method::POST, p) if gemini_method(p).is_some() => Route::Model(Dialect::Gemini),
        (&Method::GET, "/v1/models" | "/models") => Route::Models,
        (_, p) if p.starts_with("/_mock/") => Route::Admin,
        _ => Route::NotFound,
    }
}

/// `/v1beta/models/{model}:generateContent` → `(model, false)`; `:streamGenerateContent` →
/// `(model, true)`.
fn gemini_method(path: &str) -> Option<(&str, bool)> {
    let (model, method) = path.strip_prefix("/v1beta/models/")?.rsplit_once(':')?;
    match method {
        "generateContent" => Some((model, false)),
        "streamGenerateContent" => Some((model, true)),
        _ => None,
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<MockBody> {
    match route(req.method(), req.uri().path()) {
        Route::Model(dialect) => model_request(&shared, dialect, req).await,
        Route::Models => json_response(StatusCode::OK, Bytes::from_static(MODELS.as_bytes())),
        Route::Admin => admin(&shared, req).await,
        Route::NotFound => not_found(&req),
    }
}

fn not_found<B>(req: &Request<B>) -> Response<MockBody> {
    let message = format!("Unknown request URL: {} {}", req.method(), req.uri().path());
    json_response(
        StatusCode::NOT_FOUND,
        openai::error_body(StatusCode::NOT_FOUND, &message),
    )
}

/// What to answer, decided before the body is handed to the recorder.
enum Action {
    Fail(StatusCode, String),
    /// An empty redirect, back to the path that was asked for.
    Redirect(StatusCode),
    Json(Bytes),
    Stream(Box<dyn EventSource>, StreamTiming),
    Stall,
}

async fn model_request(
    shared: &Shared,
    dialect: Dialect,
    req: Request<Incoming>,
) -> Response<MockBody> {
    shared.model_requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            shared.record(&parts, Value::Null);
            let (status, message) = if e.is::<LengthLimitError>() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large".to_owned(),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                )
            };
            return error_response(dialect, status, &message);
        }
    };
    let (body, parse_error) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => (v, None),
        Err(e) => (
            Value::Null,
            Some(format!("request body is not valid JSON: {e}")),
        ),
    };
    let (latency, action) = decide(shared, dialect, &parts, &body, parse_error);
    shared.record(&parts, body);

    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match action {
        Action::Redirect(status) => {
            let mut r = Response::new(MockBody::full(String::new()));
            *r.status_mut() = status;
            if let Ok(to) = HeaderValue::from_str(parts.uri.path()) {
                r.headers_mut().insert(http::header::LOCATION, to);
            }
            r
        }
        Action::Fail(status, message) if shared.behavior().html_error => {
            let page = format!(
                "<html><head><title>{status}</title></head><body><h1>{status}</h1><p>{message}</p></body></html>"
            );
            let mut r = Response::new(MockBody::full(page));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
        Action::Fail(status, message) => {
            let mut r = error_response(dialect, status, &message);
            if let Some(s) = shared.behavior().retry_after_s {
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(s));
            }
            r
        }
        Action::Json(bytes) if shared.behavior().cut_body => {
            let whole = bytes.len();
            let mut r = Response::new(MockBody::Cut(Some(bytes.slice(..whole / 2))));
            let headers = r.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(whole));
            r
        }
        Action::Json(_) if shared.behavior().stall_body => {
            let mut r = Response::new(MockBody::Stalled);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Action::Json(bytes) => match shared.behavior().pad_bytes {
            Some(left) => {
                let mut r = Response::new(MockBody::Padded {
                    head: Some(bytes),
                    left,
                });
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            None => json_response(StatusCode::OK, bytes),
        },
        Action::Stream(source, timing) => {
            let mut response = Response::new(MockBody::sse(source, timing));
            let headers = response.headers_mut();
            let content_type = match dialect {
                Dialect::Cohere => "application/stream+json",
                _ => "text/event-stream; charset=utf-8",
            };
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        // Dropped with the connection, when the client or the server goes away.
        Action::Stall => future::pending().await,
    }
}

/// Merges the overrides, then picks the answer. Override mistakes are answered at once (no
/// latency): they are bugs in the test, not upstream behavior.
fn decide(
    shared: &Shared,
    dialect: Dialect,
    parts: &Parts,
    body: &Value,
    parse_error: Option<String>,
) -> (Duration, Action) {
    let mut behavior = shared.behavior();
    if let Some(value) = parts.headers.get("x-mock") {
        match parse_header(value.as_bytes()) {
            Ok(patch) => patch.apply(Arc::make_mut(&mut behavior)),
            Err(message) => {
                return (
                    Duration::ZERO,
                    Action::Fail(StatusCode::BAD_REQUEST, message),
                );
            }
        }
    }
    let mut inspected = match parse_error {
        Some(message) => Err(message),
        None => dialect.inspect(body),
    };
    if let Ok(req) = &mut inspected {
        match std::mem::replace(&mut req.directives, Ok(Vec::new())) {
            Ok(patches) => {
                for patch in patches {
                    patch.apply(Arc::make_mut(&mut behavior));
                }
            }
            Err(message) => {
                return (
                    Duration::ZERO,
                    Action::Fail(StatusCode::BAD_REQUEST, message),
                );
            }
        }
    }

    let b = &*behavior;
    let latency = millis(b.latency_ms);
    if b.stall_before_headers {
        return (latency, Action::Stall);
    }
    if let Some(code) = b.status.filter(|c| (300..400).contains(c))
        && let Ok(status) = StatusCode::from_u16(code)
    {
        return (latency, Action::Redirect(status));
    }
    if let Some(code) = b.status.filter(|c| *c >= 400) {
        let action = match StatusCode::from_u16(code) {
            Ok(status) => Action::Fail(status, forced_status_message(status)),
            Err(_) => Action::Fail(
                StatusCode::BAD_REQUEST,
                format!("invalid mock status override: {code}"),
            ),
        };
        return (latency, action);
    }
    let req = match inspected {
        Ok(req) => req,
        Err(message) => return (latency, Action::Fail(StatusCode::BAD_REQUEST, message)),
    };

    // A provider checks the conversation's shape before it starts answering.
    if b.refuse_prefill && req.last_is_assistant {
        let message = PREFILL_REFUSED.to_owned();
        return (latency, Action::Fail(StatusCode::BAD_REQUEST, message));
    }

    let mut req = req;
    let mut model = req.model;
    if dialect == Dialect::Gemini
        && let Some((m, stream)) = gemini_method(parts.uri.path())
    {
        model = m;
        req.stream = stream;
    }
    let reply = Reply::plan(b, &req);
    let ctx = ReplyCtx {
        seq: shared.seq.fetch_add(1, Ordering::Relaxed),
        model: model.to_owned(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    if !req.stream {
        let bytes = match dialect {
            Dialect::OpenAi => openai::json_reply(&ctx, &reply),
            Dialect::Anthropic => anthropic::json_reply(&ctx, &reply),
            Dialect::Cohere => cohere::json_reply(&ctx, &reply),
            Dialect::Gemini => gemini::json_reply(&ctx, &reply),
        };
        return (latency, Action::Json(bytes));
    }
    let source: Box<dyn EventSource> = match dialect {
        Dialect::OpenAi => Box::new(openai::Stream::new(ctx, reply, req.include_usage)),
        Dialect::Anthropic => Box::new(anthropic::Stream::new(ctx, reply)),
        Dialect::Cohere => Box::new(cohere::Stream::new(ctx, reply)),
        Dialect::Gemini => Box::new(gemini::Stream::new(ctx, reply)),
    };
    // The first one set wins, in the order the README documents.
    let ending = b
        .cut_after
        .map(|after| Ending::Cut { after })
        .or(b.stall_after_chunks.map(|after| Ending::Stall { after }))
        .or(b.malformed_after.map(|after| Ending::Malformed { after }))
        .or(b.error_after.map(|after| Ending::Error { after }));
    let timing = StreamTiming {
        ttft: millis(b.ttft_ms),
        chunk_delay: millis(b.chunk_delay_ms),
        ending,
    };
    (latency, Action::Stream(source, timing))
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms.min(MAX_DELAY_MS))
}

fn forced_status_message(status: StatusCode) -> String {
    match status.as_u16() {
        429 => "Rate limit reached (mock upstream, forced by `status`).".to_owned(),
        500..=599 => format!("The mock upstream failed on purpose with status {status}."),
        _ => format!("The mock upstream rejected the request on purpose with status {status}."),
    }
}

fn error_response(dialect: Dialect, status: StatusCode, message: &str) -> Response<MockBody> {
    let body = match dialect {
        Dialect::OpenAi => openai::error_body(status, message),
        Dialect::Anthropic => anthropic::error_body(status, message),
        Dialect::Cohere => cohere::error_body(status, message),
        Dialect::Gemini => gemini::error_body(status, message),
    };
    json_response(status, body)
}

fn json_response(status: StatusCode, body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `/_mock/...`: lets a benchmark driving the binary read counters and recorded requests and
/// change the behavior without a restart.
async fn admin(shared: &Shared, req: Request<Incoming>) -> Response<MockBody> {
    let ok = |v: Value| json_response(StatusCode::OK, Bytes::from(v.to_string()));
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/_mock/stats") => ok(json!({
            "model_requests": shared.model_requests.load(Ordering::Relaxed),
            "active_connections": shared.active_connections.load(Ordering::Relaxed),
            "recorded_requests": shared.requests().len(),
            "record": shared.record,
        })),
        (&Method::GET, "/_mock/requests") => {
            let body = serde_json::to_vec(&*shared.requests()).unwrap_or_default();
            json_response(StatusCode::OK, Bytes::from(body))
        }
        (&Method::DELETE, "/_mock/requests") => {
            shared.requests().clear();
            shared.model_requests.store(0, Ordering::Relaxed);
            ok(json!({ "cleared": true }))
        }
        (&Method::GET, "/_mock/behavior") => ok(json!(*shared.behavior())),
        (&Method::PUT, "/_mock/behavior") => {
            let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let message = format!("could not read the request body: {e}");
                    return error_response(Dialect::OpenAi, StatusCode::BAD_REQUEST, &message);
                }
            };
            // Parsed as a patch over the defaults so unknown fields are rejected.
            match parse_header(&bytes) {
                Ok(patch) => {
                    let mut b = MockBehavior::default();
                    patch.apply(&mut b);
                    let reply = json!(b);
                    shared.set_behavior(b);
                    ok(reply)
                }
                Err(message) => error_response(Dialect::OpenAi, StatusCode::BAD_REQUEST, &message),
            }
        }
        _ => not_found(&req),
    }
}

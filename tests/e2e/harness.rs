//! Starts the real gateway in-process on an ephemeral loopback port, next to mock upstreams,
//! and gives tests a small HTTP client that speaks to it.

use std::net::SocketAddr;
use std::path::Path;

use bitrouter::{Config, Gateway};
use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running gateway; dropping it shuts it down.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: std::sync::Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway from YAML config text.
    pub async fn start(yaml: &str) -> TestGateway {
        Self::start_with(yaml, Vec::new()).await
    }

    /// Starts a gateway with extra observer sinks.
    pub async fn start_with(
        yaml: &str,
        sinks: Vec<std::sync::Arc<dyn bitrouter::observe::ObserveCallback>>,
    ) -> TestGateway {
        // Tests that do not care about the ledger keep it in memory, off the disk.
        let yaml = if yaml.contains("database:") {
            yaml.to_owned()
        } else {
            format!("{yaml}\ndatabase:\n  url: memory://\n")
        };
        let yaml = yaml.as_str();
        let config = Config::parse(yaml, Path::new("test.yaml"))
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{yaml}"));
        Self::start_config(config, sinks).await
    }

    /// Starts a gateway from a config file written into `dir`, as `bitrouter serve --config`
    /// does: a plugin reload re-reads that file.
    pub async fn start_file(dir: &Path, yaml: &str) -> TestGateway {
        let path = dir.join("bitrouter.yaml");
        write_config(&path, yaml);
        let config = Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        Self::start_config(config, Vec::new()).await
    }

    /// Starts a gateway from a parsed config.
    pub async fn start_config(
        config: Config,
        sinks: Vec<std::sync::Arc<dyn bitrouter::observe::ObserveCallback>>,
    ) -> TestGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = Gateway::with_observers(config, sinks).await.unwrap();
        let handle = gateway.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bitrouter::serve(gateway, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestGateway {
            addr,
            gateway: handle,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Writes a test config file, with the ledger in memory unless it says otherwise.
pub fn write_config(path: &Path, yaml: &str) {
    let yaml = if yaml.contains("database:") {
        yaml.to_owned()
    } else {
        format!("{yaml}\ndatabase:\n  url: memory://\n")
    };
    std::fs::write(path, yaml).unwrap();
}

pub async fn mock() -> MockServer {
    MockServer::start(MockBehavior::default()).await.unwrap()
}

pub async fn mock_with(b: MockBehavior) -> MockServer {
    MockServer::start(b).await.unwrap()
}

/// Provider entries for mocks: `(name, protocol, mock)`.
pub fn providers(list: &[(&str, &str, &MockServer)]) -> String {
    let mut out = String::from("providers:\n");
    for (name, protocol, m) in list {
        let base = match *protocol {
            "openai" => format!("{}/v1", m.base_url()),
            "google" => format!("{}/v1beta", m.base_url()),
            _ => m.base_url(),
        };
        out.push_str(&format!("  {name}:\n    api_protocol: {protocol}\n    api_base: {base}\n    api_key: test-key-{name}\n"));
    }
    out
}

/// An address where nothing listens: connections to it are refused.
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A finished HTTP exchange.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    /// Reads a whole response.
    pub async fn from(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Reply {
            status,
            headers,
            text: resp.text().await.expect("reading the answer failed"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// SSE `data:` payloads, in order.
    pub fn sse_data(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }

    /// SSE `event:` names, in order.
    pub fn sse_events(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(str::to_owned)
            .collect()
    }
}

pub async fn post(gw: &TestGateway, path: &str, body: &Value) -> Reply {
    post_raw(gw, path, body.to_string().into_bytes(), &[]).await
}

pub async fn post_raw(
    gw: &TestGateway,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::from(req.send().await.expect("request to the gateway failed")).await
}

pub async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::from(req.send().await.unwrap()).await
}

/// The worst-case tokens a 429 from a tokens limit smaller than one request names ("this
/// request needs N tokens alone"): how tests learn what a request reserves.
pub fn tokens_needed(r: &Reply) -> u64 {
    assert_eq!(r.status, 429, "{}", r.text);
    r.text
        .split("needs ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"needs N tokens\" in {}", r.text))
}

pub fn openai_chat(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn anthropic_msg(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]})
}

/// The path and body shape for a dialect name (`openai`, `responses`, `anthropic`).
pub fn request_for(dialect: &str, model: &str, text: &str) -> (&'static str, Value) {
    match dialect {
        "openai" => ("/v1/chat/completions", openai_chat(model, text)),
        "responses" => (
            "/v1/responses",
            serde_json::json!({"model": model, "input": text}),
        ),
        _ => ("/v1/messages", anthropic_msg(model, text)),
    }
}

/// The assistant text of a JSON answer in either dialect.
pub fn answer_text(dialect: &str, v: &Value) -> String {
    match dialect {
        "openai" => v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        _ => v["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["text"].as_str())
            .collect(),
    }
}

/// The text streamed in either dialect's SSE.
pub fn streamed_text(dialect: &str, r: &Reply) -> String {
    r.sse_data()
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| match dialect {
            "openai" => v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned),
            _ => v["delta"]["text"].as_str().map(str::to_owned),
        })
        .collect()
}

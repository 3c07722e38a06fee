//! The HTTP client under `Upstream`: hyper-util's pooled client over rustls, called directly,
//! or reqwest where the environment names an HTTP proxy. Both answer with the same
//! `UpstreamResponse`, so nothing past `Upstream::send` knows which one carried a request.
//!
//! Why not reqwest everywhere: its layers (redirect and retry policies, a `Url` re-parsed on
//! every request, its header handling) cost ≈ 4.5 % of the gateway's samples on scenario 3,
//! and the floor proxy forwarding through a reqwest client configured like ours spent
//! 0.128–0.137 ms of CPU per request at 1,000 req/s against 0.086–0.104 ms on hyper-util's
//! (bench/REPORT.md, "Where the time goes now"). Why reqwest still, behind a proxy: it reads
//! `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` and tunnels through them, which a bare
//! hyper-util client would need its own connector for; a proxied deployment pays a proxy hop
//! anyway.

use crate::router::UpstreamUrl;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Why reading an upstream body failed (the transport's own error, boxed).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream answer's body, whichever client read it.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BodyError>;

/// An upstream answer: status, headers and a body read as it arrives.
pub type UpstreamResponse = http::Response<UpstreamBody>;

/// Sent on every upstream request (reqwest sent it too).
const USER_AGENT: &str = concat!("bitrouter/", env!("CARGO_PKG_VERSION"));

/// The environment variables that send the upstream traffic through a proxy.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// One keep-alive pool for every provider; the two kinds behave alike (Nagle off, the same
/// connect timeout, TCP keep-alive and idle limits, HTTP/2 where TLS offers it).
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one client per gateway (and per mid-stream resume): its size does not matter, a box would be one more indirection per request"
)]
pub enum HttpClient {
    /// hyper-util's pooled client, straight to the provider.
    Direct(PooledClient<HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// reqwest, through the proxy the environment names.
    Proxied(reqwest::Client),
}

impl HttpClient {
    /// The client the environment asks for: reqwest when a proxy variable is set, else the
    /// direct hyper-util client.
    pub fn from_env(connect_timeout: Duration) -> Result<Self, String> {
        let proxies = proxy_variables(|v| std::env::var(v).ok())?;
        if proxies.is_empty() {
            return Self::direct(connect_timeout);
        }
        tracing::info!(
            variables = proxies.join(", "),
            "upstream requests go through the proxy the environment names"
        );
        Self::proxied(connect_timeout)
    }

    /// A client of the same kind with a pool of its own.
    pub fn another(&self, connect_timeout: Duration) -> Result<Self, String> {
        match self {
            HttpClient::Direct(_) => Self::direct(connect_timeout),
            HttpClient::Proxied(_) => Self::proxied(connect_timeout),
        }
    }

    /// hyper-util's pooled client over rustls (the webpki roots, ring), HTTP/1.1 or HTTP/2
    /// by ALPN.
    pub fn direct(connect_timeout: Duration) -> Result<Self, String> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_keepalive(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let client = PooledClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_adaptive_window(true)
            .build(https);
        Ok(HttpClient::Direct(client))
    }

    /// reqwest, which honours the proxy variables (and `NO_PROXY`).
    pub fn proxied(connect_timeout: Duration) -> Result<Self, String> {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_keepalive(Duration::from_secs(30))
            .http2_adaptive_window(true)
            // The direct client does not follow redirects either: a provider's base URL is
            // where its API is.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map(HttpClient::Proxied)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// Sends one request and waits for the response head; the body is read by the caller.
    pub async fn request(
        &self,
        method: Method,
        url: &UpstreamUrl,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, BodyError> {
        match self {
            HttpClient::Direct(client) => {
                // What reqwest adds to every request, so providers see the same request
                // from either client.
                headers
                    .entry(http::header::USER_AGENT)
                    .or_insert(HeaderValue::from_static(USER_AGENT));
                headers
                    .entry(http::header::ACCEPT)
                    .or_insert(HeaderValue::from_static("*/*"));
                let mut request = http::Request::new(Full::new(body));
                *request.method_mut() = method;
                *request.uri_mut() = url.uri().clone();
                *request.headers_mut() = headers;
                let response = client.request(request).await?;
                Ok(response.map(|b| b.map_err(BodyError::from).boxed_unsync()))
            }
            HttpClient::Proxied(client) => {
                let response = client
                    .request(method, url.url().clone())
                    .headers(headers)
                    .body(body)
                    .send()
                    .await?;
                Ok(http::Response::from(response)
                    .map(|b| b.map_err(BodyError::from).boxed_unsync()))
            }
        }
    }
}

/// The proxy variables that are set (`get` reads one), each checked to be a proxy URL: reqwest
/// skips one it cannot parse, which would send the traffic direct while the operator believes
/// it goes through the proxy. The error names the variable, never its value (it may carry
/// the proxy's password).
fn proxy_variables(get: impl Fn(&str) -> Option<String>) -> Result<Vec<&'static str>, String> {
    let mut set = Vec::new();
    for var in PROXY_VARIABLES {
        let Some(value) = get(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        reqwest::Proxy::all(value.as_str()).map_err(|e| {
            // reqwest's outer layers all say "builder error"; the cause says what is wrong.
            let why = error_chain(&e);
            format!("the environment variable {var} is not a proxy URL ({why})")
        })?;
        set.push(var);
    }
    Ok(set)
}

/// `e` and each error it was caused by, joined by `: ` (the clients' `Display` stops at the
/// outermost layer, and the cause says what happened); a cause whose text the message
/// already ends with is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

/// True when `e` (or anything it was caused by) is a timer running out: reqwest's own
/// timeouts, or the connect timeout (an `io::Error` of kind `TimedOut`).
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && r.is_timeout()
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitrouter_mock::{MockBehavior, MockServer};
    use tokio::io::AsyncReadExt;

    fn chat() -> Bytes {
        Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
    }

    async fn answer(client: &HttpClient, mock: &MockServer) -> (http::StatusCode, Bytes) {
        let url = UpstreamUrl::parse(&format!("{}/v1/chat/completions", mock.base_url())).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = client
            .request(Method::POST, &url, headers, chat())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    /// Both clients send the same request (method, path, host, user agent, body) and read
    /// the same answer.
    #[tokio::test]
    async fn direct_and_proxied_clients_send_alike() {
        let mock = MockServer::start(MockBehavior::default()).await.unwrap();
        let direct = HttpClient::direct(Duration::from_secs(1)).unwrap();
        let proxied = HttpClient::proxied(Duration::from_secs(1)).unwrap();
        let (s1, b1) = answer(&direct, &mock).await;
        let (s2, b2) = answer(&proxied, &mock).await;
        assert_eq!((s1, s2), (http::StatusCode::OK, http::StatusCode::OK));
        let v1: serde_json::Value = serde_json::from_slice(&b1).unwrap();
        let v2: serde_json::Value = serde_json::from_slice(&b2).unwrap();
        assert_eq!(v1["object"], "chat.completion", "{v1}");
        assert_eq!(v1["choices"], v2["choices"]);
        let seen = mock.requests();
        assert_eq!(seen.len(), 2);
        for r in &seen {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/v1/chat/completions");
            assert_eq!(r.header("host"), Some(mock.addr().to_string().as_str()));
            assert_eq!(r.header("user-agent"), Some(USER_AGENT));
            assert_eq!(r.header("accept"), Some("*/*"));
            assert_eq!(r.body["messages"][0]["content"], "hi");
        }
    }

    /// An `https` URL is spoken to over TLS, offering HTTP/2 and HTTP/1.1 by ALPN: the
    /// first bytes on the wire are a TLS ClientHello naming both.
    #[tokio::test]
    async fn https_urls_get_tls_offering_h2_and_http1() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hello = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // A ClientHello is a few hundred bytes; read until the record is whole.
            while n < 5 || n < 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize {
                let read = socket.read(&mut buf[n..]).await.unwrap();
                if read == 0 {
                    break;
                }
                n += read;
            }
            buf.truncate(n);
            buf // dropping the socket fails the handshake
        });
        let client = HttpClient::direct(Duration::from_secs(1)).unwrap();
        let url = UpstreamUrl::parse(&format!("https://localhost:{port}/v1/x")).unwrap();
        let err = client
            .request(Method::POST, &url, HeaderMap::new(), chat())
            .await
            .expect_err("no TLS server answered");
        let hello = hello.await.unwrap();
        assert_eq!(&hello[..2], &[0x16, 0x03], "a TLS handshake record");
        assert_eq!(hello[5], 0x01, "a ClientHello");
        let has = |needle: &[u8]| hello.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"\x02h2"), "ALPN offers h2");
        assert!(has(b"\x08http/1.1"), "ALPN offers http/1.1");
        assert!(has(b"localhost"), "SNI names the host");
        assert!(!is_timeout(err.as_ref()), "{err}");
    }

    #[test]
    fn proxy_variables_are_read_and_checked() {
        fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
            move |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        }
        assert!(
            proxy_variables(env(&[("NO_PROXY", "x")]))
                .unwrap()
                .is_empty()
        );
        assert!(
            proxy_variables(env(&[("HTTP_PROXY", "")]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            proxy_variables(env(&[("HTTPS_PROXY", "http://proxy.corp:3128")])).unwrap(),
            ["HTTPS_PROXY"]
        );
        // No scheme: reqwest reads it as http://.
        assert_eq!(
            proxy_variables(env(&[
                ("http_proxy", "proxy.corp:3128"),
                ("all_proxy", "http://10.0.0.1:8080")
            ]))
            .unwrap(),
            ["http_proxy", "all_proxy"]
        );
        let err =
            proxy_variables(env(&[("ALL_PROXY", "http://user:s3cret@bad host:1")])).unwrap_err();
        assert!(err.contains("ALL_PROXY is not a proxy URL"), "{err}");
        assert!(
            !err.contains("s3cret"),
            "the value stays out of the message: {err}"
        );
    }

    #[test]
    fn timeouts_are_found_anywhere_in_the_cause_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Outer(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ));
        assert!(is_timeout(&timed_out));
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!is_timeout(&refused));
        assert_eq!(
            error_chain(&timed_out),
            "client error (Connect): connect timed out"
        );
    }
}

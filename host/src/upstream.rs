//! Sending a request to an upstream over the one shared connection pool, and turning every
//! way that can fail into an `Error` whose kind says whether failover may try the next target.

mod client;

pub use crate::router::UpstreamUrl;
pub use client::{BodyError, UpstreamBody, UpstreamResponse};

use client::HttpClient;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;

use crate::api;
use crate::canonical::Dialect;
use crate::error::{Error, ErrorKind, UpstreamError};
use crate::plugins::HttpRequest;
use crate::router::Target;

/// The HTTP client every provider shares: a keep-alive pool per runtime, HTTP/2 where the
/// upstream offers it over TLS, Nagle off so small SSE frames are not held back.
///
/// One pool per runtime because a pooled connection's task runs on the runtime that opened
/// it: with `server.runtime: per_core`, a request that borrowed a connection opened by
/// another thread would wake that thread for every read and write. Each serving thread says
/// which pool is its own with [`Upstream::use_pool`]; every other thread uses the first.
#[derive(Clone)]
pub struct Upstream {
    clients: std::sync::Arc<[HttpClient]>,
}

thread_local! {
    /// This thread's pool (see [`Upstream`]).
    static POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Upstream {
    /// `pools` clients (one per runtime, at least one), with `routing.connect_timeout` as
    /// their connect timeout: direct, or through the proxy the environment names
    /// (`client.rs`).
    pub fn new(connect_timeout: Duration, pools: usize) -> Result<Self, Error> {
        let not_configured = |e| Error::new(ErrorKind::NotConfigured, e);
        let first = HttpClient::from_env(connect_timeout).map_err(not_configured)?;
        let mut clients = Vec::with_capacity(pools.max(1));
        for _ in 1..pools {
            clients.push(first.another(connect_timeout).map_err(not_configured)?);
        }
        clients.insert(0, first);
        Ok(Upstream {
            clients: clients.into(),
        })
    }

    /// Makes pool `index` the calling thread's own (a serving runtime's thread calls it once,
    /// before it serves).
    pub fn use_pool(index: usize) {
        POOL.with(|p| p.set(index));
    }

    fn client(&self) -> &HttpClient {
        match &*self.clients {
            // The default runtime: no thread-local to read.
            [only] => only,
            clients => &clients[POOL.with(std::cell::Cell::get) % clients.len()],
        }
    }

    /// Posts `body` to `target` (its stream URL for a stream, where it has one) and waits
    /// (at most `timeout`) for a success status. An error status is read and returned as
    /// the upstream's own error.
    pub async fn send(
        &self,
        target: &Target,
        dialect: Dialect,
        stream: bool,
        body: Bytes,
        extra_headers: HeaderMap,
        timeout: Duration,
    ) -> Result<UpstreamResponse, Error> {
        let mut headers = target.headers.clone();
        headers.extend(extra_headers);
        let url = match (&target.stream_url, stream) {
            (Some(url), true) => url,
            _ => &target.parsed_url,
        };
        let request = self.client().request(Method::POST, url, headers, body);
        let response = match tokio::time::timeout(timeout, request).await {
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no response within {}", humantime::format_duration(timeout)),
                ));
            }
            Ok(Err(e)) => return Err(transport_error(e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            // Neither client follows redirects: a POST re-sent elsewhere (or turned into a
            // GET by a 301/302) is not what the route's configuration says to call.
            let to = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no Location")
                .to_owned();
            return Err(Error::new(
                ErrorKind::BadUpstreamResponse,
                format!(
                    "{} answered {status} ({to}); redirects are not followed: set the provider's api_base to where its API answers",
                    target.label()
                ),
            ));
        }
        let wait = retry_after(response.headers());
        // An error body that does not arrive whole in time (or is too large) still fails
        // the attempt with the status; only its text is lost.
        let body = read_body(response, timeout, target.max_response_size)
            .await
            .unwrap_or_default();
        let message = api::upstream_error_message(&body);
        Err(Error::from_upstream(UpstreamError {
            status,
            dialect,
            body,
            message,
        })
        .with_retry_after(wait))
    }
}

impl Upstream {
    /// Sends what a provider-adapter plugin built to `target` (its base URL + the adapter's
    /// path, the target's credentials over the adapter's headers) and waits at most `timeout`
    /// for the response headers. Any status comes back: the adapter decodes error answers.
    pub async fn send_adapted(
        &self,
        target: &Target,
        request: HttpRequest,
        trace_headers: HeaderMap,
        timeout: Duration,
    ) -> Result<UpstreamResponse, Error> {
        let url = format!("{}{}", target.url, request.path);
        let url = UpstreamUrl::parse(&url).map_err(|e| {
            Error::new(
                ErrorKind::Plugin,
                format!("the adapter's path makes an invalid URL {url}: {e}"),
            )
            .retryable(true)
        })?;
        let mut headers = HeaderMap::with_capacity(request.headers.len() + target.headers.len());
        for (k, v) in request.headers {
            headers.append(k, v);
        }
        // The attempt's `traceparent` replaces one the adapter may have written.
        for (k, v) in trace_headers {
            if let Some(k) = k {
                headers.insert(k, v);
            }
        }
        for (k, v) in &target.headers {
            headers.insert(k, v.clone());
        }
        let sent = self
            .client()
            .request(request.method, &url, headers, Bytes::from(request.body));
        match tokio::time::timeout(timeout, sent).await {
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no response within {}", humantime::format_duration(timeout)),
            )),
            Ok(Err(e)) => Err(transport_error(e)),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

/// Reads a whole answer body, giving up after `limit` of waiting or past `max_bytes` (a
/// `BadUpstreamResponse`, so failover tries the next endpoint): an upstream cannot make
/// the gateway buffer more than `max_bytes` for one answer.
pub async fn read_body(
    response: UpstreamResponse,
    limit: Duration,
    max_bytes: u64,
) -> Result<Bytes, Error> {
    let too_large = |n: u64| {
        Error::new(
            ErrorKind::BadUpstreamResponse,
            format!(
                "the upstream's answer is larger than max_response_size ({n} > {max_bytes} bytes)"
            ),
        )
    };
    let length = content_length(response.headers());
    if let Some(n) = length
        && n > max_bytes
    {
        return Err(too_large(n));
    }
    let mut response = response.into_body();
    let read = async {
        // Grown as chunks arrive; a Content-Length within the limit sizes it at once.
        let mut body = Vec::with_capacity(length.unwrap_or(0) as usize);
        while let Some(frame) = response.frame().await {
            let Ok(chunk) = frame.map_err(transport_error)?.into_data() else {
                continue; // trailers
            };
            let n = (body.len() + chunk.len()) as u64;
            if n > max_bytes {
                return Err(too_large(n));
            }
            if body.is_empty() && length == Some(chunk.len() as u64) {
                // The whole body in one chunk: no copy.
                return Ok(chunk);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    };
    match tokio::time::timeout(limit, read).await {
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            "the upstream stopped sending its answer",
        )),
        Ok(r) => r,
    }
}

/// The `Content-Length` an answer declares, if it declares a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The longest `Retry-After` honoured: a provider cannot take an endpoint out for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` in seconds (OpenAI also sends `retry-after-ms`), at most an hour. The
/// HTTP-date form is not read: providers send seconds.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let wait = match read("retry-after-ms") {
        Some(ms) => ms / 1000.0,
        None => read("retry-after")?,
    };
    (wait.is_finite() && wait > 0.0)
        .then(|| Duration::from_secs_f64(wait.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// Classifies a failed send or body read: a refused or reset connection is `Transport`, a
/// timer `Timeout`.
pub fn transport_error(e: impl Into<BodyError>) -> Error {
    let e: BodyError = e.into();
    let kind = if client::is_timeout(e.as_ref()) {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transport
    };
    Error::new(kind, client::error_chain(e.as_ref()))
}

/// A failed adapter call (trap, deadline, memory, invalid result, refusal): that attempt
/// fails, and the next endpoint may be tried.
pub fn adapter_call_error(e: crate::plugins::CallError) -> Error {
    Error::new(ErrorKind::Plugin, e.to_string()).retryable(true)
}

/// An upstream error as the adapter classified it; the adapter decides about failover.
pub fn adapter_upstream_error(e: crate::plugins::UpstreamError) -> Error {
    let status = http::StatusCode::from_u16(e.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(http::StatusCode::BAD_GATEWAY);
    Error::from_upstream(UpstreamError {
        status,
        // The body stays empty: the upstream's own bytes are in no dialect a caller speaks.
        dialect: Dialect::OpenAiChat,
        body: Bytes::new(),
        message: e.message,
    })
    .retryable(e.retryable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each serving thread uses the pool it named; threads that named none use the first.
    #[test]
    fn each_thread_uses_its_own_pool() {
        let upstream = Upstream::new(Duration::from_secs(1), 3).unwrap();
        assert_eq!(upstream.clients.len(), 3);
        let picked = |index: Option<usize>| {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                if let Some(i) = index {
                    Upstream::use_pool(i);
                }
                std::ptr::from_ref(upstream.client()) as usize
            })
            .join()
            .unwrap()
        };
        let address = |i: usize| std::ptr::from_ref(&upstream.clients[i]) as usize;
        assert_eq!(picked(None), address(0));
        assert_eq!(picked(Some(1)), address(1));
        assert_eq!(picked(Some(2)), address(2));
        // One pool (the default runtime): every thread shares it, whatever it named.
        let one = Upstream::new(Duration::from_secs(1), 1).unwrap();
        let first = std::ptr::from_ref(&one.clients[0]) as usize;
        let named = std::thread::spawn(move || {
            Upstream::use_pool(2);
            std::ptr::from_ref(one.client()) as usize
        })
        .join()
        .unwrap();
        assert_eq!(named, first);
    }
}

//! One-off HTTP requests for the harness's own control traffic (health checks, the mock's
//! behavior, cold-start probes), each on a fresh connection so it never disturbs the pools
//! being measured.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Sends `method path` with `body` to `addr` and reads the whole answer.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
    token: Option<&str>,
) -> io::Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let conn = tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = request
        .body(Full::new(body.into()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(io::Error::other)?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    drop(sender);
    conn.abort();
    Ok((status, bytes))
}

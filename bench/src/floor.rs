//! The floor proxy: the least one more Rust HTTP hop costs on this machine, measured beside
//! the gateway in the same run so the report can say how far the gateway is from it. It
//! does what every reverse proxy must and nothing else: read the request body, forward the
//! request on a pooled keep-alive hyper client (`TCP_NODELAY`), and return the answer,
//! streaming its body through. No routing, no parsing, no auth, no guardrails, no ledger.
//! The harness runs it as `bench --internal-floor UPSTREAM`, pinned to the gateway's CPU.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The flag that turns the harness binary into the floor proxy.
pub const INTERNAL_FLOOR_FLAG: &str = "--internal-floor";

/// The line the floor proxy prints once it listens; the address follows it.
pub const BANNER: &str = "floor proxy listening on ";

type Upstream = Client<HttpConnector, Full<Bytes>>;
type Answer = Response<BoxBody<Bytes, hyper::Error>>;

/// Binds a loopback port and returns it with the serving loop, which forwards every request
/// to `upstream` until the process ends.
pub async fn bind(
    upstream: SocketAddr,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    let serve = async move {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let client = client.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| forward(client.clone(), upstream, req));
                // A connection error ends that connection only.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    Ok((addr, serve))
}

async fn forward(
    client: Upstream,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Answer, std::convert::Infallible> {
    let (mut parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match Uri::try_from(format!("http://{upstream}{path}")) {
        Ok(uri) => uri,
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    parts.headers.remove(header::HOST);
    match client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(answer) => Ok(answer.map(BodyExt::boxed)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: StatusCode) -> Answer {
    let mut answer = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    *answer.status_mut() = code;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The floor forwards method, path, headers and body, and returns the upstream's status,
    /// headers and body; a dead upstream is a 502.
    #[tokio::test]
    async fn forwards_requests_and_answers() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = upstream.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let path = req.uri().path().to_owned();
                        let marker = req.headers().get("x-marker").cloned();
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut answer = Response::new(Full::new(Bytes::from(format!(
                            "{path} {} {}",
                            marker.map_or_else(String::new, |m| m.to_str().unwrap().to_owned()),
                            String::from_utf8_lossy(&body)
                        ))));
                        *answer.status_mut() = StatusCode::CREATED;
                        Ok::<_, hyper::Error>(answer)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let (addr, serve) = bind(up_addr).await.unwrap();
        tokio::spawn(serve);

        let client: Upstream = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        for i in 0..3 {
            let req = Request::post(format!("http://{addr}/v1/chat?x=1"))
                .header("x-marker", format!("m{i}"))
                .body(Full::new(Bytes::from(format!("body {i}"))))
                .unwrap();
            let answer = client.request(req).await.unwrap();
            assert_eq!(answer.status(), StatusCode::CREATED);
            let text = answer.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(text, format!("/v1/chat m{i} body {i}"));
        }

        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let (addr, serve) = bind(dead_addr).await.unwrap();
        tokio::spawn(serve);
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = client.request(req).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    }
}

//! A stand-in OpenTelemetry collector for `--otlp` runs: accepts every OTLP/HTTP export
//! (`POST /v1/traces`, `/v1/metrics`) with a 200 and counts them, so the gateway's exporter
//! runs as it would against a healthy collector and its cost shows in the gateway's figures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// What the collector received.
#[derive(Default)]
pub struct Received {
    /// Export requests.
    pub requests: AtomicU64,
    /// Their body bytes.
    pub bytes: AtomicU64,
}

/// Serves on a free loopback port until the process ends.
pub async fn start() -> anyhow::Result<(SocketAddr, Arc<Received>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the OTLP collector")?;
    let addr = listener.local_addr()?;
    let got = Arc::new(Received::default());
    let counts = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let counts = counts.clone();
                        async move {
                            let n = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().len())
                                .unwrap_or(0);
                            counts.requests.fetch_add(1, Ordering::Relaxed);
                            counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, got))
}

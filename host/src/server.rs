//! The HTTP front door: hyper accept loop (HTTP/1.1 and h2c on one port), header timeout
//! before protocol detection, graceful shutdown, and SIGHUP reloads. Each request goes to
//! `Gateway::handle` (`dispatch.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::gateway::Gateway;

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until the first bytes tell HTTP/1 from the HTTP/2 preface. hyper's header timeout
/// only starts after that detection, so without this a client that connects and sends
/// nothing (or half a preface) would hold its connection forever.
async fn protocol_known(stream: &tokio::net::TcpStream, within: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) | Ok(Err(_) | Ok(0)) => return false,
            Ok(Ok(n)) if n == buf.len() || buf[..n] != H2_PREFACE[..n] => return true,
            // A partial preface: peek returns the same bytes at once (and `timeout_at` polls
            // it before its timer), so check the deadline here and wait a little.
            Ok(Ok(_)) if tokio::time::Instant::now() >= deadline => return false,
            Ok(Ok(_)) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for `server.shutdown_grace`.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gateway.config.server.header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    // Registered here, before the first accept, so a SIGHUP sent once the gateway answers
    // reloads instead of meeting the default action (which ends the process).
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangups = None::<()>;
    let reloader = tokio::spawn(reload_on_sighup(gateway.clone(), hangups));
    let updater = gateway
        .config
        .plugins
        .update_interval
        .map(|every| tokio::spawn(follow_tags(gateway.clone(), every)));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let service = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(gw.handle(req).await) }
        });
        let header_timeout = gateway.config.server.header_timeout;
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            if !protocol_known(&stream, header_timeout).await {
                return;
            }
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    reloader.abort();
    if let Some(u) = updater {
        u.abort();
    }
    let grace = gateway.config.server.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace of {} expired; closing remaining connections", humantime::format_duration(grace)),
    }
    // Everything accepted is accounted: write what the ledger still holds.
    gateway.close(grace).await;
    Ok(())
}

/// Every `plugins.update_interval`, checks the followed OCI tags for a new digest
/// (`Gateway::check_for_updates`).
async fn follow_tags(gateway: Arc<Gateway>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        gateway.check_for_updates().await;
    }
}

/// `SIGHUP` reloads the plugins, like `POST /admin/plugins/reload`.
#[cfg(unix)]
async fn reload_on_sighup(gateway: Arc<Gateway>, hangups: Option<tokio::signal::unix::Signal>) {
    let Some(mut hup) = hangups else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading plugins");
        // Failures are logged by `reload_plugins`; the old plugins stay.
        let _ = gateway.reload_plugins().await;
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_gateway: Arc<Gateway>, _hangups: Option<()>) {}

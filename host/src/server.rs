//! The HTTP front door: hyper accept loop (HTTP/1.1 and h2c on one port), header timeout
//! before protocol detection, graceful shutdown, and SIGHUP reloads; on one runtime, or on
//! one single-threaded runtime per thread, each with its own listener (`server.runtime:
//! per_core`). Each request goes to `Gateway::handle` (`dispatch.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::upstream::Upstream;

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
    let background = Background::start(&gateway);
    let graceful = accept_until(&gateway, 0, listener, shutdown).await;
    background.stop();
    drain(&gateway, graceful).await;
    // Everything accepted is accounted: write what the ledger still holds.
    gateway.close(gateway.config.server.shutdown_grace).await;
    Ok(())
}

/// Binds `count` listeners on `addr` that share its port (`SO_REUSEPORT`: the kernel hands
/// each new connection to one of them), for [`serve_per_core`]. Port 0 picks one free port
/// for all of them. Call it inside a runtime; the listeners are handed over unregistered.
pub fn bind_per_core(
    addr: std::net::SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if cfg!(not(unix)) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "server.runtime: per_core needs SO_REUSEPORT (Linux, macOS or a BSD)",
        ));
    }
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// Serves `gateway` with one single-threaded runtime per listener (from [`bind_per_core`]):
/// this one on the first, and a thread of its own for each of the others, each accepting on
/// its listener and calling upstreams through its own connection pool, so a request never
/// leaves the thread that accepted its connection. Reloads and tag updates run here. On
/// `shutdown` every runtime stops accepting and drains for `server.shutdown_grace`; the
/// ledger is closed once all have, while every runtime still runs (a store's connections
/// may live on any of them), and then the threads end.
pub async fn serve_per_core(
    gateway: Arc<Gateway>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut listeners = listeners.into_iter();
    let own = listeners
        .next()
        .ok_or_else(|| std::io::Error::other("serve_per_core needs a listener"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (exit, exiting) = tokio::sync::watch::channel(false);
    let mut threads = Vec::new();
    let mut drained = Vec::new();
    let mut readies = Vec::new();
    for (i, listener) in listeners.enumerate() {
        let index = i + 1;
        // Built here so a runtime that cannot start fails the start, not a thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        drained.push(done_rx);
        let (ready, ready_rx) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
        readies.push(ready_rx);
        let (gateway, mut stopped, mut exiting) =
            (gateway.clone(), stopped.clone(), exiting.clone());
        let thread = std::thread::Builder::new()
            .name(format!("bitrouter-rt-{index}"))
            .spawn(move || {
                Upstream::use_pool(index);
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = ready.send(Ok(()));
                            let stop = async move {
                                let _ = stopped.wait_for(|s| *s).await;
                            };
                            let graceful = accept_until(&gateway, index, listener, stop).await;
                            drain(&gateway, graceful).await;
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                    let _ = done.send(());
                    let _ = exiting.wait_for(|e| *e).await;
                });
            })?;
        threads.push(thread);
    }
    // Every runtime accepts before this one does: once the gateway answers, all of them
    // serve (a connection the kernel queued on a runtime still starting would wait for it),
    // and one whose listener cannot be registered fails the start.
    let mut ready = Ok(());
    for runtime in readies {
        let started = runtime
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("a per-core runtime ended")));
        ready = ready.and(started);
    }
    let own = match ready.and_then(|()| TcpListener::from_std(own)) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = stop.send(true);
            let _ = exit.send(true);
            join(threads).await;
            return Err(e);
        }
    };
    let background = Background::start(&gateway);
    let graceful = accept_until(&gateway, 0, own, shutdown).await;
    let _ = stop.send(true);
    background.stop();
    drain(&gateway, graceful).await;
    for done in drained {
        let _ = done.await;
    }
    gateway.close(gateway.config.server.shutdown_grace).await;
    let _ = exit.send(true);
    join(threads).await;
    Ok(())
}

/// Waits, off the runtime, for the per-core threads to end.
async fn join(threads: Vec<std::thread::JoinHandle<()>>) {
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

/// The tasks beside the accept loop: SIGHUP reloads and OCI tag updates.
struct Background {
    reloader: tokio::task::JoinHandle<()>,
    updater: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn start(gateway: &Arc<Gateway>) -> Background {
        // Registered here, before the first accept, so a SIGHUP sent once the gateway
        // answers reloads instead of meeting the default action (which ends the process).
        #[cfg(unix)]
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        #[cfg(not(unix))]
        let hangups = None::<()>;
        Background {
            reloader: tokio::spawn(reload_on_sighup(gateway.clone(), hangups)),
            updater: gateway
                .config
                .plugins
                .update_interval
                .map(|every| tokio::spawn(follow_tags(gateway.clone(), every))),
        }
    }

    fn stop(self) {
        self.reloader.abort();
        if let Some(u) = self.updater {
            u.abort();
        }
    }
}

/// Accepts connections on `listener` and serves each on a task of its own until `shutdown`
/// resolves, counting them as serving runtime `runtime`'s; returns the watcher of the
/// connections still open.
async fn accept_until(
    gateway: &Arc<Gateway>,
    runtime: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> GracefulShutdown {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gateway.config.server.header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
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
            () = &mut shutdown => break,
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
        let open = gateway.metrics().connection_opened(runtime);
        tokio::spawn(async move {
            let _open = open;
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
    graceful
}

/// Lets the connections `graceful` watches finish, for at most `server.shutdown_grace`.
async fn drain(gateway: &Gateway, graceful: GracefulShutdown) {
    let grace = gateway.config.server.shutdown_grace;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace of {} expired; closing remaining connections", humantime::format_duration(grace)),
    }
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

//! `bitrouter serve`: loads the config, refuses an open listener nobody asked for, sets up
//! logging and the runtime, and runs the gateway until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;

/// The target of serve's own log lines: the program (`bitrouter`), not this module's path, so
/// `RUST_LOG` filters and the JSON `target` field do not depend on where the verb's code lives.
const LOG_TARGET: &str = "bitrouter";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Config file (default: ./bitrouter.yaml if present, else built-in defaults).
    #[arg(long, short, env = "BITROUTER_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding `server.listen`.
    #[arg(long, short)]
    listen: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Spend ledger URL, overriding BITROUTER_DATABASE_URL and `database.url`.
    #[arg(long)]
    db: Option<String>,
    /// Allow a non-loopback listener with `auth.mode: off` (anyone who can reach it
    /// can spend your provider keys).
    #[arg(long)]
    allow_open: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let mut config = super::load(self.config)?;
        if let Some(db) = self.db {
            config.database.url = db;
        }
        if let Some(l) = self.listen {
            config.server.listen = l.parse().with_context(|| {
                format!("--listen: expected an address such as 127.0.0.1:8787, found {l:?}")
            })?;
        }
        let loopback = config.server.listen.ip().is_loopback();
        if !loopback && !config.auth_enabled() && !self.allow_open {
            anyhow::bail!(
                "refusing to listen on {} with auth.mode: off: anyone who reaches it can spend your provider keys; turn auth on, listen on 127.0.0.1, or pass --allow-open",
                config.server.listen
            );
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.server.log_level));
        // Log lines are written in batches by a background thread: a slow terminal or pipe must
        // not stall requests, and a request's line must not cost a thread wake-up of its own.
        let (writer, _log_guard) = bitrouter::log_writer::batched(std::io::stderr())
            .context("cannot start the log writer")?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(writer);
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
        // `server.threads: 1` is a single-threaded runtime: every task, timer and socket on
        // one thread, so a request never wakes another one. On one pinned core it served 22 %
        // more requests per second than a one-worker multi-thread runtime at 18 % less CPU
        // per request (`bench/REPORT.md`, "One thread"). `runtime: per_core` runs one such
        // runtime per thread, this one the first.
        let runtimes = config.server.runtimes();
        let per_core = config.server.runtime == bitrouter::config::RuntimeKind::PerCore;
        let mut builder = match config.server.threads.map(|n| n.get()) {
            _ if per_core => tokio::runtime::Builder::new_current_thread(),
            Some(1) => tokio::runtime::Builder::new_current_thread(),
            Some(n) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(n);
                b
            }
            None => tokio::runtime::Builder::new_multi_thread(),
        };
        let runtime = builder
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // `per_core` with one runtime is the single-threaded runtime on one listener.
        let per_core = per_core && runtimes > 1;
        let threads = match runtime.metrics().num_workers() {
            _ if per_core => format!("{runtimes} per-core runtimes"),
            1 => "1 thread".to_owned(),
            n => format!("{n} threads"),
        };
        runtime.block_on(async move {
            // Before the first connection is accepted: a SIGTERM that arrives once /health
            // answers must find its handler (registered lazily, it raced the first request and
            // the default action killed the process).
            let shutdown = shutdown_signal();
            let listen = config.server.listen;
            let cannot_listen = || format!("cannot listen on {listen}");
            let listening = if per_core {
                Listening::PerCore(
                    bitrouter::bind_per_core(listen, runtimes).with_context(cannot_listen)?,
                )
            } else {
                Listening::One(
                    tokio::net::TcpListener::bind(listen)
                        .await
                        .with_context(cannot_listen)?,
                )
            };
            let local = match &listening {
                Listening::One(l) => l.local_addr()?,
                Listening::PerCore(all) => all.first().map_or(Ok(listen), |l| l.local_addr())?,
            };
            let gateway = bitrouter::Gateway::new(config).await?;
            return_freed_memory();
            tracing::info!(
                target: LOG_TARGET,
                "bitrouter {} listening on http://{} ({} routes, {threads}, auth {})",
                env!("CARGO_PKG_VERSION"),
                local,
                gateway.config().routes.len(),
                if gateway.config().auth_enabled() {
                    "on"
                } else {
                    "off"
                }
            );
            match listening {
                Listening::One(listener) => bitrouter::serve(gateway, listener, shutdown).await,
                Listening::PerCore(all) => bitrouter::serve_per_core(gateway, all, shutdown).await,
            }?;
            Ok(())
        })
    }
}

/// Where `serve` accepts: one listener, or one per runtime (`server.runtime: per_core`).
enum Listening {
    One(tokio::net::TcpListener),
    PerCore(Vec<std::net::TcpListener>),
}

/// Gives the heap memory that start-up freed (config parsing, plugin loading, regex
/// compilation) back to the system: glibc keeps freed memory in its arenas for reuse, and
/// start-up's peak is never reached again by an idle gateway. Measured on the release build
/// (same binary, the call made a no-op with `LD_PRELOAD` for the A side): anonymous memory
/// after start-up and one request 6.9 → 6.55 MB (`bench/REPORT.md`, "Freed start-up memory").
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes a plain integer and only walks glibc's own arenas, under
    // their locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Registers the SIGINT and SIGTERM handlers now and returns a future that ends at the first
/// of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            // Without handlers the default action ends the process; nothing to wait for.
            _ => std::future::pending().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!(target: LOG_TARGET, "shutting down");
    }
}

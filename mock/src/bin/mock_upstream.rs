//! `mock-upstream`: the mock LLM upstream as a standalone server, for benchmarks and manual
//! testing. Serves until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use bitrouter_mock::{BANNER, MockBehavior, MockServer};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "mock-upstream",
    about = "Mock OpenAI / Anthropic / Gemini / Cohere-style upstream for BitRouter tests and benchmarks"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: SocketAddr,
    /// Delay before response headers.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Streams: delay after the headers before the first event.
    #[arg(long)]
    ttft_ms: Option<u64>,
    /// Streams: text deltas per reply (default 4).
    #[arg(long)]
    chunks: Option<usize>,
    /// Streams: delay between deltas.
    #[arg(long)]
    chunk_delay_ms: Option<u64>,
    /// Full behavior as JSON (any MockBehavior field); the flags above override it.
    #[arg(long, value_name = "JSON")]
    behavior: Option<String>,
    /// Do not keep received requests in memory (use for benchmarks).
    #[arg(long)]
    no_record: bool,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut behavior: MockBehavior = match &args.behavior {
        Some(json) => serde_json::from_str(json).context("--behavior is not a valid behavior")?,
        None => MockBehavior::default(),
    };
    if let Some(v) = args.latency_ms {
        behavior.latency_ms = v;
    }
    if let Some(v) = args.ttft_ms {
        behavior.ttft_ms = v;
    }
    if let Some(v) = args.chunks {
        behavior.chunks = Some(v);
    }
    if let Some(v) = args.chunk_delay_ms {
        behavior.chunk_delay_ms = v;
    }

    let server = MockServer::builder()
        .addr(args.listen)
        .behavior(behavior)
        .record(!args.no_record)
        .start()
        .await
        .with_context(|| format!("listening on {}", args.listen))?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{BANNER}{}", server.addr())?;
    stdout.flush()?;
    drop(stdout);

    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

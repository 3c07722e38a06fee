//! The `bitrouter` command line: `serve`, `check-config`, `route list`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bitrouter::Config;
use bitrouter::router::Router;
use clap::{Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  bitrouter serve --config examples/quickstart.yaml
  bitrouter serve --config bitrouter.yaml --listen 0.0.0.0:8787
  bitrouter check-config bitrouter.yaml
  bitrouter route list --config bitrouter.yaml";

#[derive(Parser)]
#[command(name = "bitrouter", version, about = "One binary between AI agents and LLM providers: routing, failover, streaming.", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    #[command(
        after_help = "Example:\n  bitrouter serve --config examples/quickstart.yaml --listen 127.0.0.1:8787"
    )]
    Serve {
        /// Config file (default: ./bitrouter.yaml if present, else built-in defaults).
        #[arg(long, short, env = "BITROUTER_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, overriding `server.listen`.
        #[arg(long, short)]
        listen: Option<String>,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a config file and print the routes it resolves to.
    #[command(
        name = "check-config",
        after_help = "Example:\n  bitrouter check-config bitrouter.yaml"
    )]
    CheckConfig {
        /// The config file to check.
        path: PathBuf,
    },
    /// Inspect routes.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
}

#[derive(Subcommand)]
enum RouteCommand {
    /// List the routes of a config file with their endpoints in order.
    #[command(after_help = "Example:\n  bitrouter route list --config bitrouter.yaml")]
    List {
        #[arg(long, short, env = "BITROUTER_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            log_format,
        } => serve(config, listen, log_format),
        Command::CheckConfig { path } => check_config(&path),
        Command::Route {
            command: RouteCommand::List { config },
        } => load(config).map(|c| print_routes(&c)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let path = path.or_else(|| {
        Path::new("bitrouter.yaml")
            .exists()
            .then(|| PathBuf::from("bitrouter.yaml"))
    });
    let config = match path {
        Some(p) => Config::load(&p)?,
        None => Config::builtin(),
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    Ok(config)
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    // Building the router checks what only a built target can (header values, protocols).
    Router::new(&config)?;
    println!("{}: OK", path.display());
    println!("listen: {}", config.server.listen);
    print_routes(&config);
    Ok(())
}

fn print_routes(config: &Config) {
    if config.routes.is_empty() {
        println!("no routes (requests can still name provider:model_id)");
        return;
    }
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            println!("routes cannot be built: {e}");
            return;
        }
    };
    for (name, route) in &config.routes {
        println!(
            "{name} ({})",
            match route.strategy {
                bitrouter::config::Strategy::Priority => "priority",
                bitrouter::config::Strategy::LoadBalance => "load_balance",
            }
        );
        let plan = router.plan(name).ok();
        for (i, e) in route.endpoints.iter().enumerate() {
            let url = plan
                .as_ref()
                .and_then(|p| p.targets.get(i))
                .map(|t| t.url.clone())
                .unwrap_or_default();
            println!(
                "  {}. {}:{} → {url}  weight {}  first_byte {}",
                i + 1,
                e.provider,
                e.model_id,
                e.weight,
                humantime::format_duration(e.timeouts.first_byte)
            );
        }
    }
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<String>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    let mut config = load(config)?;
    if let Some(l) = listen {
        config.server.listen = l.parse().with_context(|| {
            format!("--listen: expected an address such as 127.0.0.1:8787, found {l:?}")
        })?;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.server.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let gateway = bitrouter::Gateway::new(config)?;
        tracing::info!(
            "bitrouter {} listening on http://{} ({} routes)",
            env!("CARGO_PKG_VERSION"),
            listener.local_addr()?,
            gateway.config().routes.len()
        );
        bitrouter::serve(gateway, listener, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

//! The `bitrouter` command line: `serve`, `check-config`, `route list`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bitrouter::Config;
use bitrouter::router::Router;
use clap::{Parser, Subcommand, ValueEnum};

mod agent_cli;
mod auth_cli;
mod plugin_cli;
mod plugin_new;
use plugin_cli::ScanDirection;

const EXAMPLES: &str = "\
Examples:
  bitrouter serve --config examples/quickstart.yaml
  bitrouter serve --config bitrouter.yaml --listen 0.0.0.0:8787
  bitrouter check-config bitrouter.yaml
  bitrouter route list --config bitrouter.yaml
  bitrouter keygen
  bitrouter token mint --chain solana --scope api --exp 30d --models 'openai:*'
  echo 'key: sk-proj-...' | bitrouter guard scan --config bitrouter.yaml";

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
        /// Spend ledger URL, overriding BITROUTER_DATABASE_URL and `database.url`.
        #[arg(long)]
        db: Option<String>,
        /// Allow a non-loopback listener with `auth.mode: off` (anyone who can reach it
        /// can spend your provider keys).
        #[arg(long)]
        allow_open: bool,
    },
    /// Create the wallet key store: one secret, a Solana (Ed25519) and an EVM (secp256k1)
    /// account, in <home>/keys/wallet.key (mode 0600).
    #[command(
        after_help = "Examples:\n  bitrouter keygen\n  bitrouter keygen --home /srv/bitrouter"
    )]
    Keygen {
        /// Home folder (default: BITROUTER_HOME, else ~/.bitrouter).
        #[arg(long)]
        home: Option<PathBuf>,
    },
    /// Mint and inspect wallet-signed tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
    /// Try the guardrail firewall (same engine, plugins and config as the server).
    Guard {
        #[command(subcommand)]
        command: GuardCommand,
    },
    /// Inspect, try, sign and verify WASM plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Register, find and check A2A agent cards bound to the key store's wallet accounts.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Spend by account, session, model, provider, route or agent.
    #[command(
        after_help = "Examples:\n  bitrouter spend --group-by model --since 24h\n  bitrouter spend --group-by account --since 2026-11-01 --until 2026-12-01\n  bitrouter spend --db sqlite://spend.db --group-by provider"
    )]
    Spend {
        /// account | session | model | provider | route | agent
        #[arg(long, default_value = "model")]
        group_by: String,
        /// Start: RFC 3339 time, date, Unix seconds, or a duration ago (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// End (exclusive), same forms as --since.
        #[arg(long)]
        until: Option<String>,
        /// Ask this running gateway (default: server.listen of the config).
        #[arg(long)]
        url: Option<String>,
        /// Read this database directly instead of asking a running gateway.
        #[arg(long, env = "BITROUTER_DATABASE_URL")]
        db: Option<String>,
        #[arg(long, short, env = "BITROUTER_CONFIG")]
        config: Option<PathBuf>,
        /// Admin token for a gateway with auth on (default: one minted from the key store).
        #[arg(long, env = "BITROUTER_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// Where `agent` commands find the gateway.
#[derive(clap::Args)]
struct RemoteArgs {
    /// The gateway's base URL (default: http://{server.listen} of the config).
    #[arg(long)]
    url: Option<String>,
    #[arg(long, short, env = "BITROUTER_CONFIG")]
    config: Option<PathBuf>,
    /// Token to send (default for writes: a 5-minute api token minted from the key store).
    #[arg(long, env = "BITROUTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Sign a card with the key store's key (detached JWS over its RFC 8785 form) and
    /// register it under that account; registering again updates it.
    #[command(
        after_help = "Examples:\n  bitrouter agent register card.json\n  bitrouter agent register card.json --chain evm --url http://127.0.0.1:8787\n  bitrouter agent register card.json --dry-run > signed.json"
    )]
    Register {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = auth_cli::Chain::Solana)]
        chain: auth_cli::Chain,
        /// Home folder of the key store (default: BITROUTER_HOME, else ~/.bitrouter).
        #[arg(long)]
        home: Option<PathBuf>,
        /// Print the signed card instead of registering it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List registered agents, optionally filtered.
    #[command(
        after_help = "Examples:\n  bitrouter agent list\n  bitrouter agent list --skill research --chain solana"
    )]
    List {
        /// A skill tag or skill id.
        #[arg(long)]
        skill: Option<String>,
        /// `solana`, `eip155` or a CAIP-2 chain id such as `eip155:1`.
        #[arg(long)]
        chain: Option<String>,
        /// A case-insensitive part of the name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one agent's registration and card.
    #[command(
        after_help = "Example:\n  bitrouter agent show eip155:1:0xab16a96d359ec26a11e2c2b3d8f8b8942d5bfcdb"
    )]
    Show {
        /// CAIP-10 account.
        account: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Remove an agent's card (its owner's token, or an admin token).
    Delete {
        account: String,
        #[arg(long, value_enum, default_value_t = auth_cli::Chain::Solana)]
        chain: auth_cli::Chain,
        #[arg(long)]
        home: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Check a signed card file offline: A2A shape, size and signature (exit 1 if invalid).
    #[command(after_help = "Example:\n  bitrouter agent verify signed.json")]
    Verify { file: PathBuf },
}

impl RemoteArgs {
    fn resolve(self) -> anyhow::Result<agent_cli::Remote> {
        let base = match self.url {
            Some(u) => u,
            None => format!("http://{}", load(self.config)?.server.listen),
        };
        Ok(agent_cli::Remote {
            base,
            token: self.token,
        })
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a token with the key store's Solana or EVM key and print it.
    #[command(
        after_help = "Examples:\n  bitrouter token mint --chain solana --scope api --exp 30d --models 'openai:*'\n  bitrouter token mint --chain evm --scope api --exp never --budget 2.5usd --budget-scope session --budget-range rounds:10\n  bitrouter token mint --chain solana --scope admin --exp 1h"
    )]
    Mint {
        #[arg(long, value_enum, default_value_t = auth_cli::Chain::Solana)]
        chain: auth_cli::Chain,
        #[arg(long, value_enum, default_value_t = auth_cli::ScopeArg::Api)]
        scope: auth_cli::ScopeArg,
        /// Lifetime (30d, 1h) or `never`; default 30d for api tokens, 1h for admin tokens
        /// (which must expire, within the gateway's auth.max_admin_token_lifetime, 24h by default).
        #[arg(long)]
        exp: Option<String>,
        /// Model globs the token may use (route names, provider:model_id); repeatable.
        #[arg(long = "models", value_delimiter = ',')]
        models: Vec<String>,
        /// Spending limit: 2.5usd, or whole micro-USD.
        #[arg(long)]
        budget: Option<String>,
        #[arg(long, value_enum, default_value_t = auth_cli::BudgetScopeArg::Session)]
        budget_scope: auth_cli::BudgetScopeArg,
        /// Budget window: rounds:N or duration:1h (default: lifetime).
        #[arg(long)]
        budget_range: Option<String>,
        /// Session id (default: a hash of the token).
        #[arg(long)]
        jti: Option<String>,
        #[arg(long)]
        home: Option<PathBuf>,
    },
    /// Decode a token and verify it against the config's auth settings (exit 1 if invalid).
    #[command(
        after_help = "Example:\n  bitrouter token inspect \"$TOKEN\" --config bitrouter.yaml"
    )]
    Inspect {
        token: String,
        #[arg(long, short, env = "BITROUTER_CONFIG")]
        config: Option<PathBuf>,
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

#[derive(Subcommand)]
enum GuardCommand {
    /// Scan text (a file, or stdin) and print one JSON line per finding.
    #[command(
        after_help = "Examples:\n  bitrouter guard scan notes.txt\n  cat answer.txt | bitrouter guard scan --direction downgoing --config bitrouter.yaml\n\nEach line: {\"pattern\",\"direction\",\"action\",\"start\",\"end\"} (byte offsets). The matched text\nis printed only with --show-match. Exit status: 0 when nothing would be blocked, 2 when\nsomething would, 1 on errors."
    )]
    Scan {
        #[arg(long, short, env = "BITROUTER_CONFIG")]
        config: Option<PathBuf>,
        /// Which patterns to run: those that look at requests, at responses, or both.
        #[arg(long, value_enum, default_value_t = ScanDirection::Both)]
        direction: ScanDirection,
        /// Also print the matched text (it may be a secret).
        #[arg(long)]
        show_match: bool,
        /// The text to scan (default: stdin).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin project (a minimal working plugin, its build script, the WIT files).
    #[command(
        after_help = "Examples:\n  bitrouter plugin new --lang rust my-guard\n  bitrouter plugin new --lang rust --world provider-adapter my-api\n  bitrouter plugin new --lang python --dir plugins my-guard"
    )]
    New {
        name: String,
        #[arg(long, value_enum)]
        lang: plugin_new::Lang,
        #[arg(long, value_enum, default_value_t = plugin_new::NewWorld::Guardrail)]
        world: plugin_new::NewWorld,
        /// Where to create the project folder (default: the current folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// World, manifest, hash, size, imports, exports and (guardrails) declared patterns.
    #[command(after_help = "Example:\n  bitrouter plugin inspect plugins/dist/api_keys.wasm")]
    Inspect { file: PathBuf },
    /// Run one guardrail plugin alone over a text and print its findings (JSON lines).
    #[command(
        after_help = "Examples:\n  bitrouter plugin test plugins/dist/pii_emails.wasm --text 'mail jane@corp.example'\n  bitrouter plugin test my.wasm --config '{\"strict\":true}' --file sample.txt --show-match"
    )]
    Test {
        file: PathBuf,
        /// The text to scan (else --file, else stdin).
        #[arg(long)]
        text: Option<String>,
        /// Read the text from this file.
        #[arg(long = "file", value_name = "PATH")]
        input: Option<PathBuf>,
        /// The plugin's config, as JSON (what `guardrails.plugins[].config` would hold).
        #[arg(long)]
        config: Option<String>,
        #[arg(long, value_enum, default_value_t = ScanDirection::Both)]
        direction: ScanDirection,
        /// Also print the matched text.
        #[arg(long)]
        show_match: bool,
        /// The plugin's per-call deadline (default: the gateway's, 10ms). Interpreted
        /// runtimes (componentize-js, componentize-py) need more in a debug build.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        call_deadline: Option<std::time::Duration>,
    },
    /// Create an ed25519 key for signing plugins (hex, file mode 0600); prints the public key.
    #[command(after_help = "Example:\n  bitrouter plugin keygen ~/.bitrouter/plugin-signing.key")]
    Keygen { key: PathBuf },
    /// Sign a plugin: writes `signature` into its manifest (the hash must match).
    #[command(
        after_help = "Example:\n  bitrouter plugin sign my.wasm --key ~/.bitrouter/plugin-signing.key"
    )]
    Sign {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a plugin's hash and signature against public keys.
    #[command(after_help = "Example:\n  bitrouter plugin verify my.wasm --key 3b6a27bc…")]
    Verify {
        file: PathBuf,
        /// A trusted public key (hex); repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A CLI verb whose reader went away (`bitrouter check-config | head`) ends quietly, as
/// Unix tools do, instead of panicking in `println!` on EPIPE: the default SIGPIPE action,
/// which Rust's runtime replaces with "ignore". The server keeps ignoring it, so a client
/// that hangs up is an error on that connection only.
fn quiet_on_closed_pipe() {
    // SAFETY: called once at start, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            log_format,
            db,
            allow_open,
        } => serve(config, listen, log_format, db, allow_open),
        Command::Keygen { home } => auth_cli::keygen(&auth_cli::home(home)),
        Command::Token { command } => match command {
            TokenCommand::Mint {
                chain,
                scope,
                exp,
                models,
                budget,
                budget_scope,
                budget_range,
                jti,
                home,
            } => auth_cli::mint(
                &auth_cli::home(home),
                auth_cli::MintArgs {
                    chain,
                    scope,
                    exp,
                    models,
                    budget,
                    budget_scope,
                    budget_range,
                    jti,
                },
            )
            .map(|t| println!("{t}")),
            TokenCommand::Inspect { token, config } => {
                match load(config).and_then(|c| auth_cli::inspect(&c, &token)) {
                    Ok(false) => return ExitCode::FAILURE,
                    other => other.map(|_| ()),
                }
            }
        },
        Command::Agent { command } => match command {
            AgentCommand::Register {
                file,
                chain,
                home,
                dry_run,
                remote,
            } => remote
                .resolve()
                .and_then(|r| agent_cli::register(&auth_cli::home(home), &file, chain, r, dry_run)),
            AgentCommand::List {
                skill,
                chain,
                name,
                remote,
            } => remote
                .resolve()
                .and_then(|r| agent_cli::list(r, skill, chain, name)),
            AgentCommand::Show { account, remote } => {
                remote.resolve().and_then(|r| agent_cli::show(r, &account))
            }
            AgentCommand::Delete {
                account,
                chain,
                home,
                remote,
            } => remote
                .resolve()
                .and_then(|r| agent_cli::delete(&auth_cli::home(home), r, &account, chain)),
            AgentCommand::Verify { file } => match agent_cli::verify(&file) {
                Ok(false) => return ExitCode::FAILURE,
                other => other.map(|_| ()),
            },
        },
        Command::Spend {
            group_by,
            since,
            until,
            url,
            db,
            config,
            token,
        } => spend(SpendArgs {
            group_by,
            since,
            until,
            url,
            db,
            config,
            token,
        }),
        Command::CheckConfig { path } => check_config(&path),
        Command::Route {
            command: RouteCommand::List { config },
        } => load(config).map(|c| print_routes(&c)),
        Command::Guard {
            command:
                GuardCommand::Scan {
                    config,
                    direction,
                    show_match,
                    file,
                },
        } => match load(config)
            .and_then(|c| plugin_cli::guard_scan(&c, direction, show_match, file.as_deref()))
        {
            Ok(true) => return ExitCode::from(2),
            other => other.map(|_| ()),
        },
        Command::Plugin { command } => match command {
            PluginCommand::New {
                name,
                lang,
                world,
                dir,
            } => plugin_new::new_plugin(lang, world, &name, dir.as_deref()).map(|_| ()),
            PluginCommand::Inspect { file } => plugin_cli::inspect(&file),
            PluginCommand::Test {
                file,
                text,
                input,
                config,
                direction,
                show_match,
                call_deadline,
            } => match plugin_cli::test(
                &file,
                config.as_deref(),
                text,
                input.as_deref(),
                direction,
                show_match,
                call_deadline,
            ) {
                Ok(true) => return ExitCode::from(2),
                other => other.map(|_| ()),
            },
            PluginCommand::Keygen { key } => plugin_cli::keygen(&key),
            PluginCommand::Sign { file, key } => plugin_cli::sign_plugin(&file, &key),
            PluginCommand::Verify { file, keys } => plugin_cli::verify(&file, &keys),
        },
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
    // Loading the plugins checks their files, hashes and signatures, and the pattern ids
    // the guardrail section names.
    let firewall =
        bitrouter::guardrails::load(&config).with_context(|| format!("{}", path.display()))?;
    println!("{}: OK", path.display());
    print_guardrails(&firewall);
    println!("listen: {}", config.server.listen);
    print_routes(&config);
    Ok(())
}

fn print_guardrails(firewall: &bitrouter::guardrails::Firewall) {
    use bitrouter::guardrails::action_str;
    use bitrouter::plugins::Direction;
    let patterns = firewall.engine.patterns();
    if patterns.is_empty() {
        println!("guardrails: off");
        return;
    }
    println!("guardrails: {} patterns", patterns.len());
    for p in patterns {
        let show = |d| p.action(d).map(action_str).unwrap_or("-");
        println!(
            "  {:<24} upgoing {:<6}  downgoing {:<6}  {}",
            &*p.id,
            show(Direction::Request),
            show(Direction::Response),
            p.plugin
                .as_ref()
                .map(|pp| format!("plugin {}", pp.plugin.id()))
                .unwrap_or_else(|| "custom".into())
        );
    }
    if !firewall.plugins.missing_builtins.is_empty() {
        println!(
            "  missing built-in plugins (run scripts/build-plugins.sh, then rebuild): {}",
            firewall.plugins.missing_builtins.join(", ")
        );
    }
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
    db: Option<String>,
    allow_open: bool,
) -> anyhow::Result<()> {
    let mut config = load(config)?;
    if let Some(db) = db {
        config.database.url = db;
    }
    if let Some(l) = listen {
        config.server.listen = l.parse().with_context(|| {
            format!("--listen: expected an address such as 127.0.0.1:8787, found {l:?}")
        })?;
    }
    let loopback = config.server.listen.ip().is_loopback();
    if !loopback && !config.auth_enabled() && !allow_open {
        anyhow::bail!(
            "refusing to listen on {} with auth.mode: off: anyone who reaches it can spend your provider keys; turn auth on, listen on 127.0.0.1, or pass --allow-open",
            config.server.listen
        );
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.server.log_level));
    // Log lines are written in batches by a background thread: a slow terminal or pipe must
    // not stall requests, and a request's line must not cost a thread wake-up of its own.
    let (writer, _log_guard) =
        bitrouter::log_writer::batched(std::io::stderr()).context("cannot start the log writer")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
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
        let gateway = bitrouter::Gateway::new(config).await?;
        tracing::info!(
            "bitrouter {} listening on http://{} ({} routes, auth {})",
            env!("CARGO_PKG_VERSION"),
            listener.local_addr()?,
            gateway.config().routes.len(),
            if gateway.config().auth_enabled() {
                "on"
            } else {
                "off"
            }
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

struct SpendArgs {
    group_by: String,
    since: Option<String>,
    until: Option<String>,
    url: Option<String>,
    db: Option<String>,
    config: Option<PathBuf>,
    token: Option<String>,
}

/// Prints grouped spend, from a running gateway's `/admin/spend` or straight from a database.
fn spend(args: SpendArgs) -> anyhow::Result<()> {
    let mut query = vec![("group_by", args.group_by.clone())];
    query.extend(args.since.clone().map(|s| ("since", s)));
    query.extend(args.until.clone().map(|u| ("until", u)));
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    let parsed = bitrouter::admin::parse_spend_query(Some(&encoded))
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let body = match &args.db {
        Some(db) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let config = load(args.config.clone())?;
                let store =
                    bitrouter::spend::Ledger::open_for_query(db, &config.database.base_dir)
                        .await?;
                let groups = store.query(&parsed).await?;
                let groups: Vec<serde_json::Value> = groups
                    .iter()
                    .map(|g| serde_json::json!({"key": g.key, "requests": g.requests, "errors": g.errors, "tokens": g.tokens, "cost_nano_usd": g.cost_nano_usd}))
                    .collect();
                anyhow::Ok(serde_json::json!({ "groups": groups }))
            })?
        }
        None => {
            let base = match &args.url {
                Some(u) => u.clone(),
                None => format!("http://{}", load(args.config.clone())?.server.listen),
            };
            let token = auth_cli::admin_token(args.token.clone());
            agent_cli::send(
                &base,
                reqwest::Method::GET,
                &format!("/admin/spend?{encoded}"),
                None,
                token.as_deref(),
            )
            .context("or pass --db to read the database directly")?
        }
    };
    print_spend_table(&args.group_by, &body);
    Ok(())
}

fn print_spend_table(group_by: &str, body: &serde_json::Value) {
    let header = [
        group_by,
        "requests",
        "errors",
        "input",
        "cache_read",
        "cache_write",
        "output",
        "reasoning",
        "cost_usd",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_uppercase()).collect()];
    let empty = Vec::new();
    for g in body["groups"].as_array().unwrap_or(&empty) {
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0).to_string();
        let t = &g["tokens"];
        rows.push(vec![
            g["key"].as_str().unwrap_or("(none)").to_owned(),
            n(&g["requests"]),
            n(&g["errors"]),
            n(&t["input_no_cache"]),
            n(&t["input_cache_read"]),
            n(&t["input_cache_write"]),
            n(&t["output_text"]),
            n(&t["output_reasoning"]),
            bitrouter::admin::usd(g["cost_nano_usd"].as_u64().unwrap_or(0)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == 0 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("  "));
    }
    if rows.len() == 1 {
        println!("(no requests in this window)");
    }
}

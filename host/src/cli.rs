//! The verbs of the `bitrouter` binary, one file per group, and what they share: the
//! `--config` flag, how a config file is found, and the exit statuses. Each group's `run`
//! returns the status: 0 on success, 1 on an error (which `main` prints) or when a token or
//! card does not verify, 2 when a scan finds text the gateway would block.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bitrouter::Config;
use clap::Subcommand;

mod agent;
mod auth;
mod config;
mod guard;
mod plugin;
mod policy;
mod serve;
mod spend;

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    #[command(
        after_help = "Signals: SIGHUP re-reads the config file's guardrails and plugins sections and reloads every plugin and policy (as POST /admin/plugins/reload: all or nothing); SIGTERM or SIGINT stop accepting, finish what is in flight and flush the ledger.\n\nExample:\n  bitrouter serve --config examples/quickstart.yaml --listen 127.0.0.1:8787"
    )]
    Serve(serve::ServeArgs),
    /// Create the wallet key store: one secret, a Solana (Ed25519) and an EVM (secp256k1)
    /// account, in <home>/keys/wallet.key (mode 0600).
    #[command(
        after_help = "Examples:\n  bitrouter keygen\n  bitrouter keygen --home /srv/bitrouter"
    )]
    Keygen(auth::KeygenArgs),
    /// Mint and inspect wallet-signed tokens.
    Token {
        #[command(subcommand)]
        command: auth::TokenCommand,
    },
    /// Validate a config file and print the routes it resolves to.
    #[command(
        name = "check-config",
        after_help = "Example:\n  bitrouter check-config bitrouter.yaml"
    )]
    CheckConfig(config::CheckConfigArgs),
    /// Inspect routes.
    Route {
        #[command(subcommand)]
        command: config::RouteCommand,
    },
    /// Try the guardrail firewall (same engine, plugins and config as the server).
    Guard {
        #[command(subcommand)]
        command: guard::GuardCommand,
    },
    /// Inspect, try, sign and verify WASM plugins.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Build, push, pull and inspect signed policies (several plugins plus a guardrails
    /// config fragment, one unit).
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Register, find and check A2A agent cards bound to the key store's wallet accounts.
    Agent {
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// Spend by account, session, model, provider, route or agent.
    #[command(
        after_help = "Examples:\n  bitrouter spend --group-by model --since 24h\n  bitrouter spend --group-by account --since 2026-11-01 --until 2026-12-01\n  bitrouter spend --db sqlite://spend.db --group-by provider"
    )]
    Spend(spend::SpendArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Serve(a) => a.run().map(done),
            Command::Keygen(a) => a.run().map(done),
            Command::Token { command } => command.run(),
            Command::CheckConfig(a) => a.run().map(done),
            Command::Route { command } => command.run().map(done),
            Command::Guard { command } => command.run(),
            Command::Plugin { command } => command.run(),
            Command::Policy { command } => command.run(),
            Command::Agent { command } => command.run(),
            Command::Spend(a) => a.run().map(done),
        }
    }
}

/// `--config`, for the verbs that read the config but do not document the flag themselves.
#[derive(clap::Args)]
pub struct ConfigArg {
    #[arg(long, short, env = "BITROUTER_CONFIG")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn load(&self) -> anyhow::Result<Config> {
        load(self.config.clone())
    }
}

/// The config at `path`, else ./bitrouter.yaml if present, else the built-in defaults; its
/// warnings go to stderr.
pub fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
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

/// The status of a verb that finished.
fn done(_: ()) -> ExitCode {
    ExitCode::SUCCESS
}

/// The status of a check: 0 when the input verified, 1 when not (the verb printed why).
fn verified(valid: bool) -> ExitCode {
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The status of a scan: 0 when nothing would be blocked, 2 when something would.
fn scanned(blocked: bool) -> ExitCode {
    if blocked {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

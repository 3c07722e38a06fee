//! `bitrouter agent register|list|show|delete|verify`: agent cards from the command line,
//! and `send`, the one JSON call to a running gateway that every such verb makes.
//! `register` signs the card with the local key store (detached JWS, the account's own key)
//! and posts it with a token from the same store; `verify` checks a card file offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bitrouter::agents::{self, signature};
use bitrouter::auth::caip10::Account;
use bitrouter::auth::keystore::KeyStore;
use clap::Subcommand;
use serde_json::{Value, json};

use super::ConfigArg;
use super::auth::{Chain, home};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Sign a card with the key store's key (detached JWS over its RFC 8785 form) and
    /// register it under that account; registering again updates it.
    #[command(
        after_help = "Examples:\n  bitrouter agent register card.json\n  bitrouter agent register card.json --chain evm --url http://127.0.0.1:8787\n  bitrouter agent register card.json --dry-run > signed.json"
    )]
    Register(RegisterArgs),
    /// List registered agents, optionally filtered.
    #[command(
        after_help = "Examples:\n  bitrouter agent list\n  bitrouter agent list --skill research --chain solana"
    )]
    List(ListArgs),
    /// Show one agent's registration and card.
    #[command(
        after_help = "Example:\n  bitrouter agent show eip155:1:0xab16a96d359ec26a11e2c2b3d8f8b8942d5bfcdb"
    )]
    Show(ShowArgs),
    /// Remove an agent's card (its owner's token, or an admin token).
    Delete(DeleteArgs),
    /// Check a signed card file offline: A2A shape, size and signature (exit 1 if invalid).
    #[command(after_help = "Example:\n  bitrouter agent verify signed.json")]
    Verify(VerifyArgs),
}

impl AgentCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            AgentCommand::Register(a) => register(a).map(super::done),
            AgentCommand::List(a) => list(a).map(super::done),
            AgentCommand::Show(a) => show(a).map(super::done),
            AgentCommand::Delete(a) => delete(a).map(super::done),
            AgentCommand::Verify(a) => verify(&a.file).map(super::verified),
        }
    }
}

/// Where `agent` commands find the gateway.
#[derive(clap::Args)]
pub struct RemoteArgs {
    /// The gateway's base URL (default: http://{server.listen} of the config).
    #[arg(long)]
    url: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
    /// Token to send (default for writes: a 5-minute api token minted from the key store).
    #[arg(long, env = "BITROUTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl RemoteArgs {
    fn resolve(self) -> anyhow::Result<Remote> {
        let base = match self.url {
            Some(u) => u,
            None => format!("http://{}", self.config.load()?.server.listen),
        };
        Ok(Remote {
            base,
            token: self.token,
        })
    }
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    file: PathBuf,
    #[arg(long, value_enum, default_value_t = Chain::Solana)]
    chain: Chain,
    /// Home folder of the key store (default: BITROUTER_HOME, else ~/.bitrouter).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Print the signed card instead of registering it.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub struct ListArgs {
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
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// CAIP-10 account.
    account: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    account: String,
    #[arg(long, value_enum, default_value_t = Chain::Solana)]
    chain: Chain,
    #[arg(long)]
    home: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    file: PathBuf,
}

/// Where the gateway is and how to talk to it.
struct Remote {
    /// `--url`, else `http://{server.listen}` of the config.
    base: String,
    /// `--token`/BITROUTER_TOKEN, else one minted from the key store when a write needs it.
    token: Option<String>,
}

/// Signs the card in `file` with the key store's `chain` key and returns the signed card.
fn sign_file(home: &Path, file: &Path, chain: Chain) -> anyhow::Result<Value> {
    let ks = KeyStore::load(home)?;
    let ns = chain.namespace();
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let card: Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", file.display()))?;
    let account = Account::parse(&ks.account(ns))?;
    let signed = signature::sign(&card, &account, |b| ks.sign(ns, b))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // Catch a bad card here, with its field path, rather than as a 400 from the server.
    agents::check(signed.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(signed)
}

/// The token a write sends: `--token`, else a 5-minute api token for the key store's `chain`
/// account (writes need the card owner's own token).
fn write_token(home: &Path, chain: Chain, remote: &Remote) -> anyhow::Result<String> {
    match &remote.token {
        Some(t) => Ok(t.clone()),
        None => super::auth::short_lived_token(home, chain.namespace(), "api"),
    }
}

fn register(a: RegisterArgs) -> anyhow::Result<()> {
    let remote = a.remote.resolve()?;
    let home = home(a.home);
    let signed = sign_file(&home, &a.file, a.chain)?;
    if a.dry_run {
        println!("{}", serde_json::to_string_pretty(&signed)?);
        return Ok(());
    }
    let token = write_token(&home, a.chain, &remote)?;
    let body = send(
        &remote.base,
        reqwest::Method::POST,
        "/v1/agents",
        Some(signed),
        Some(&token),
    )?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let remote = args.remote.resolve()?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(args.skill.map(|v| ("skill", v)))
        .extend_pairs(args.chain.map(|v| ("chain", v)))
        .extend_pairs(args.name.map(|v| ("name", v)))
        .finish();
    let path = if query.is_empty() {
        "/v1/agents".to_owned()
    } else {
        format!("/v1/agents?{query}")
    };
    let body = send(
        &remote.base,
        reqwest::Method::GET,
        &path,
        None,
        remote.token.as_deref(),
    )?;
    let empty = Vec::new();
    let rows = body["data"].as_array().unwrap_or(&empty);
    if rows.is_empty() {
        println!("no agents registered");
    }
    for a in rows {
        let skills: Vec<&str> = a["card"]["skills"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str())
            .collect();
        println!(
            "{}  {}  verified={}  skills={}",
            a["account"].as_str().unwrap_or(""),
            a["name"].as_str().unwrap_or(""),
            a["verified"],
            skills.join(",")
        );
    }
    Ok(())
}

fn show(a: ShowArgs) -> anyhow::Result<()> {
    let remote = a.remote.resolve()?;
    let body = send(
        &remote.base,
        reqwest::Method::GET,
        &format!("/v1/agents/{}", a.account),
        None,
        remote.token.as_deref(),
    )?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let remote = a.remote.resolve()?;
    let token = write_token(&home(a.home), a.chain, &remote)?;
    let body = send(
        &remote.base,
        reqwest::Method::DELETE,
        &format!("/v1/agents/{}", a.account),
        None,
        Some(&token),
    )?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

/// Checks a card file offline: shape, size and signature. Returns whether it passed.
fn verify(file: &Path) -> anyhow::Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let out = match agents::check(&bytes) {
        Ok(c) => json!({"valid": true, "name": c.name, "account": c.account.to_string()}),
        Err(e) => {
            let (_, _, param, code) = agents::http::classify(&e);
            json!({"valid": false, "code": code, "field": param, "error": e.to_string()})
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out["valid"] == true)
}

pub fn send(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut req = reqwest::Client::new().request(method, &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {base} (is it running?)"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{url}: reading the answer"))?;
        let body: Value =
            serde_json::from_slice(&bytes).with_context(|| format!("{url}: not JSON"))?;
        if !status.is_success() {
            let e = &body["error"];
            let field = e["param"]
                .as_str()
                .map(|p| format!(" (field {p})"))
                .unwrap_or_default();
            bail!(
                "{url}: {status}: {}{field}",
                e["message"].as_str().unwrap_or("error")
            );
        }
        Ok(body)
    })
}

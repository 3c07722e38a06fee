//! `bitrouter keygen` and `bitrouter token mint|inspect`: the local wallet key store and
//! the tokens it signs, plus the admin token management commands send over HTTP.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bitrouter::auth::caip10::Namespace;
use bitrouter::auth::keystore::KeyStore;
use bitrouter::auth::{self, Authenticator};
use bitrouter::caller::{BudgetClaim, BudgetScope};
use clap::{Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use super::ConfigArg;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Home folder (default: BITROUTER_HOME, else ~/.bitrouter).
    #[arg(long)]
    home: Option<PathBuf>,
}

impl KeygenArgs {
    pub fn run(self) -> anyhow::Result<()> {
        keygen(&home(self.home))
    }
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Sign a token with the key store's Solana or EVM key and print it.
    #[command(
        after_help = "Examples:\n  bitrouter token mint --chain solana --scope api --exp 30d --models 'openai:*'\n  bitrouter token mint --chain evm --scope api --exp never --budget 2.5usd --budget-scope session --budget-range rounds:10\n  bitrouter token mint --chain solana --scope api --exp 7d --rpm 60 --tpm 100000\n  bitrouter token mint --chain solana --scope admin --exp 1h"
    )]
    Mint(MintArgs),
    /// Decode a token and verify it against the config's auth settings (exit 1 if invalid).
    #[command(
        after_help = "Example:\n  bitrouter token inspect \"$TOKEN\" --config bitrouter.yaml"
    )]
    Inspect(InspectArgs),
}

impl TokenCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            TokenCommand::Mint(a) => {
                println!("{}", mint(a)?);
                Ok(ExitCode::SUCCESS)
            }
            TokenCommand::Inspect(a) => {
                let config = a.config.load()?;
                inspect(&config, &a.token).map(super::verified)
            }
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Chain {
    Solana,
    Evm,
}

impl Chain {
    pub fn namespace(self) -> Namespace {
        match self {
            Chain::Solana => Namespace::Solana,
            Chain::Evm => Namespace::Eip155,
        }
    }
}

/// A 5-minute token of `scope` signed by the key store in `home`: what CLI verbs that talk
/// to a running gateway send when not given `--token`.
pub fn short_lived_token(home: &Path, ns: Namespace, scope: &str) -> anyhow::Result<String> {
    let ks = KeyStore::load(home)?;
    let now = auth::now_secs();
    let claims = json!({"scope": scope, "iat": now, "exp": now + 300});
    Ok(ks.mint(ns, claims.as_object().cloned().unwrap_or_default())?)
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ScopeArg {
    Api,
    Admin,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BudgetScopeArg {
    Session,
    Account,
}

#[derive(clap::Args)]
pub struct MintArgs {
    #[arg(long, value_enum, default_value_t = Chain::Solana)]
    chain: Chain,
    #[arg(long, value_enum, default_value_t = ScopeArg::Api)]
    scope: ScopeArg,
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
    #[arg(long, value_enum, default_value_t = BudgetScopeArg::Session)]
    budget_scope: BudgetScopeArg,
    /// Budget window: rounds:N or duration:1h (default: lifetime).
    #[arg(long)]
    budget_range: Option<String>,
    /// Requests per minute (claim `rpm`): narrows the gateway's rate_limits.defaults.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rpm: Option<u64>,
    /// Tokens per minute (claim `tpm`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tpm: Option<u64>,
    /// Whose rate --rpm/--tpm limit: this token alone (session) or the whole account.
    #[arg(long, value_enum, default_value_t = BudgetScopeArg::Session)]
    rate_scope: BudgetScopeArg,
    /// Session id (default: a hash of the token).
    #[arg(long)]
    jti: Option<String>,
    /// The key store's folder (default: $BITROUTER_HOME, else ~/.bitrouter).
    #[arg(long)]
    home: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    token: String,
    #[command(flatten)]
    config: ConfigArg,
}

/// `--home`, else BITROUTER_HOME, else ~/.bitrouter.
pub fn home(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(bitrouter::config::home_dir)
}

fn keygen(home: &Path) -> anyhow::Result<()> {
    let ks = KeyStore::generate(home)?;
    println!("key store: {} (mode 0600)", ks.path.display());
    println!("solana account: {}", ks.solana_account());
    println!("evm account:    {}", ks.evm_account());
    Ok(())
}

/// Signs the token `a` describes with the key store in `--home`.
fn mint(a: MintArgs) -> anyhow::Result<String> {
    let ks = KeyStore::load(&home(a.home))?;
    let default_exp = match a.scope {
        ScopeArg::Api => "30d",
        ScopeArg::Admin => "1h",
    };
    let exp = auth::parse_exp(a.exp.as_deref().unwrap_or(default_exp))
        .map_err(|m| anyhow::anyhow!("--exp: {m}"))?;
    if a.scope == ScopeArg::Admin && exp.is_none() {
        bail!("--exp: admin tokens must expire; pass --exp 1h (or another duration)");
    }
    if a.scope == ScopeArg::Admin
        && let Some(d) = exp
        && d > std::time::Duration::from_secs(24 * 3600)
    {
        eprintln!(
            "warning: --exp {}: gateways refuse admin tokens that live longer than their auth.max_admin_token_lifetime (24h unless configured)",
            humantime::format_duration(d)
        );
    }
    let mut claims = Map::new();
    let now = auth::now_secs();
    claims.insert("iat".into(), now.into());
    if let Some(d) = exp {
        claims.insert("exp".into(), (now + d.as_secs()).into());
    }
    claims.insert(
        "scope".into(),
        match a.scope {
            ScopeArg::Api => "api",
            ScopeArg::Admin => "admin",
        }
        .into(),
    );
    if !a.models.is_empty() {
        bitrouter::auth::ModelAllowlist::new(&a.models)
            .map_err(|e| anyhow::anyhow!("--models: {e}"))?;
        claims.insert("models".into(), json!(a.models));
    }
    if let Some(b) = &a.budget {
        let claim = BudgetClaim {
            limit_micro_usd: auth::parse_budget(b).map_err(|m| anyhow::anyhow!("--budget: {m}"))?,
            scope: match a.budget_scope {
                BudgetScopeArg::Session => BudgetScope::Session,
                BudgetScopeArg::Account => BudgetScope::Account,
            },
            window: match &a.budget_range {
                Some(r) => {
                    auth::parse_range(r).map_err(|m| anyhow::anyhow!("--budget-range: {m}"))?
                }
                None => bitrouter::caller::BudgetWindow::Lifetime,
            },
        };
        for (k, v) in auth::claims::budget_json(&claim) {
            claims.insert(k.into(), v);
        }
    } else if a.budget_range.is_some() {
        bail!("--budget-range needs --budget");
    }
    if let Some(n) = a.rpm {
        claims.insert("rpm".into(), json!(n));
    }
    if let Some(n) = a.tpm {
        claims.insert("tpm".into(), json!(n));
    }
    if (a.rpm.is_some() || a.tpm.is_some()) && matches!(a.rate_scope, BudgetScopeArg::Account) {
        claims.insert("rate_scope".into(), json!("account"));
    }
    if let Some(j) = a.jti {
        claims.insert("jti".into(), j.into());
    }
    Ok(ks.mint(a.chain.namespace(), claims)?)
}

/// Prints the header and claims, then whether the token verifies under `config`'s auth
/// settings (signature, expiry, allowlists). Returns false when it does not.
fn inspect(config: &bitrouter::Config, token: &str) -> anyhow::Result<bool> {
    let compact = auth::jwt::decode(token.trim()).context("cannot decode the token")?;
    let local: Vec<String> = KeyStore::load(&bitrouter::config::home_dir())
        .map(|k| vec![k.solana_account(), k.evm_account()])
        .unwrap_or_default();
    let authn = Authenticator::new(&config.auth, &local).map_err(|m| anyhow::anyhow!(m))?;
    let hash = auth::token_hash(token.trim());
    let result = authn.verify(token.trim(), &hash, auth::now_secs());
    let mut out = json!({"header": compact.header, "claims": compact.payload});
    match &result {
        Ok(v) => {
            out["valid"] = Value::Bool(true);
            out["account"] = v.caller.account.clone().into();
            out["session"] = v.caller.session.clone().into();
        }
        Err(e) => {
            out["valid"] = Value::Bool(false);
            out["error"] = e.to_string().into();
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(result.is_ok())
}

/// The token management commands send: `--token`/BITROUTER_TOKEN, else a 5-minute admin
/// token minted from the local key store, else none (a gateway with auth off needs none).
pub fn admin_token(explicit: Option<String>) -> Option<String> {
    explicit.or_else(|| {
        short_lived_token(&bitrouter::config::home_dir(), Namespace::Solana, "admin").ok()
    })
}

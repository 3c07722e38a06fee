//! `bitrouter agent register|list|show|delete|verify`: agent cards from the command line,
//! and `send`, the one JSON call to a running gateway that every such verb makes.
//! `register` signs the card with the local key store (detached JWS, the account's own key)
//! and posts it with a token from the same store; `verify` checks a card file offline.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bitrouter::agents::{self, signature};
use bitrouter::auth::caip10::Account;
use bitrouter::auth::keystore::KeyStore;
use serde_json::{Value, json};

use crate::auth_cli::Chain;

/// Where the gateway is and how to talk to it.
pub struct Remote {
    /// `--url`, else `http://{server.listen}` of the config.
    pub base: String,
    /// `--token`/BITROUTER_TOKEN, else one minted from the key store when a write needs it.
    pub token: Option<String>,
}

/// Signs the card in `file` with the key store's `chain` key and returns the signed card.
pub fn sign_file(home: &Path, file: &Path, chain: Chain) -> anyhow::Result<Value> {
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
        None => crate::auth_cli::short_lived_token(home, chain.namespace(), "api"),
    }
}

pub fn register(
    home: &Path,
    file: &Path,
    chain: Chain,
    remote: Remote,
    dry_run: bool,
) -> anyhow::Result<()> {
    let signed = sign_file(home, file, chain)?;
    if dry_run {
        println!("{}", serde_json::to_string_pretty(&signed)?);
        return Ok(());
    }
    let token = write_token(home, chain, &remote)?;
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

pub fn list(
    remote: Remote,
    skill: Option<String>,
    chain: Option<String>,
    name: Option<String>,
) -> anyhow::Result<()> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(skill.map(|v| ("skill", v)))
        .extend_pairs(chain.map(|v| ("chain", v)))
        .extend_pairs(name.map(|v| ("name", v)))
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

pub fn show(remote: Remote, account: &str) -> anyhow::Result<()> {
    let body = send(
        &remote.base,
        reqwest::Method::GET,
        &format!("/v1/agents/{account}"),
        None,
        remote.token.as_deref(),
    )?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

pub fn delete(home: &Path, remote: Remote, account: &str, chain: Chain) -> anyhow::Result<()> {
    let token = write_token(home, chain, &remote)?;
    let body = send(
        &remote.base,
        reqwest::Method::DELETE,
        &format!("/v1/agents/{account}"),
        None,
        Some(&token),
    )?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

/// Checks a card file offline: shape, size and signature. Returns whether it passed.
pub fn verify(file: &PathBuf) -> anyhow::Result<bool> {
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

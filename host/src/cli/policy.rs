//! `bitrouter policy build|push|pull|inspect`: a platform team's side of policy
//! distribution. A policy is several guardrail plugins plus a guardrails config fragment,
//! signed as one unit (`bitrouter::plugins::policy`); consuming gateways name it under
//! `guardrails.policies`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bitrouter::plugins::policy::{self, Built};
use bitrouter::plugins::{Manifest, public_key_hex};
use clap::Subcommand;

use super::plugin::read_secret;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Build a policy folder (its `policy.yaml`, the plugins it lists, its guardrails
    /// fragment) into one `.policy` file, signed with `--key`.
    #[command(
        after_help = "Example:\n  bitrouter policy build ./baseline/ -o baseline.policy --key team.key"
    )]
    Build(BuildArgs),
    /// Push a policy (a folder, built and signed on the way, or a `.policy` file) to an OCI
    /// registry; prints the pushed digest.
    #[command(
        after_help = "Example:\n  bitrouter policy push ./baseline/ oci://registry.acme.internal/policies/baseline:2026.12 --key team.key"
    )]
    Push(PushArgs),
    /// Pull a policy into the artifact store (`plugins.artifact_dir`); prints the digest and
    /// where it is.
    #[command(
        after_help = "Example:\n  bitrouter policy pull oci://registry.acme.internal/policies/baseline:2026.12"
    )]
    Pull(PullArgs),
    /// Print a policy's id, version, signature, plugins and guardrails fragment; with `--key`,
    /// check the signature against those public keys (exit 1 when it does not verify).
    #[command(
        after_help = "Examples:\n  bitrouter policy inspect baseline.policy --key 3b6a27bc…\n  bitrouter policy inspect oci://registry.acme.internal/policies/baseline@sha256:…"
    )]
    Inspect(InspectArgs),
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The policy folder (holding `policy.yaml`).
    dir: PathBuf,
    /// The `.policy` file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// The ed25519 secret key to sign with (`bitrouter plugin keygen`).
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// A policy folder or a `.policy` file.
    source: PathBuf,
    /// `oci://registry/repository:tag`.
    reference: String,
    /// Sign with this ed25519 secret key (a `.policy` file is signed again).
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    config: super::ConfigArg,
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// `oci://registry/repository:tag` or `…@sha256:…`.
    reference: String,
    #[command(flatten)]
    config: super::ConfigArg,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A policy folder, a `.policy` file, or an OCI reference.
    source: PathBuf,
    /// A trusted public key to check the signature against: hex, or a key file (as for
    /// `plugin verify`); repeat for several.
    #[arg(long = "key")]
    keys: Vec<String>,
    #[command(flatten)]
    config: super::ConfigArg,
}

impl PolicyCommand {
    pub fn run(self) -> anyhow::Result<std::process::ExitCode> {
        match self {
            PolicyCommand::Build(a) => build(&a).map(super::done),
            PolicyCommand::Push(a) => push(&a).map(super::done),
            PolicyCommand::Pull(a) => pull(&a).map(super::done),
            PolicyCommand::Inspect(a) => inspect(&a).map(super::verified),
        }
    }
}

/// The policy at `source`: a folder is built, a `.policy` file is unpacked into the artifact
/// store, an `oci://` reference is pulled there.
fn read(source: &Path, config: &super::ConfigArg) -> anyhow::Result<Built> {
    if source.is_dir() {
        return Ok(policy::build(source)?);
    }
    let config = config.load()?;
    let p = &config.plugins;
    let dir = match source.to_str().filter(|s| s.starts_with("oci://")) {
        Some(reference) => {
            let pulled = bitrouter::plugins::oci::pull_policy_blocking(
                reference,
                &p.artifact_dir,
                p.max_artifact_size,
                &p.registries,
            )?;
            println!("reference:  {reference}@{}", pulled.digest);
            pulled.dir
        }
        None => policy::unpack(source, &p.artifact_dir, p.max_artifact_size)?,
    };
    Ok(Built::read_dir(&dir)?)
}

fn sign(built: &mut Built, key: Option<&Path>) -> anyhow::Result<()> {
    if let Some(key) = key {
        let secret = read_secret(key)?;
        built.policy.sign(&secret);
        println!("signed with key {}", public_key_hex(&secret));
    }
    Ok(())
}

/// `bitrouter policy build`.
fn build(a: &BuildArgs) -> anyhow::Result<()> {
    let mut built = policy::build(&a.dir)?;
    sign(&mut built, a.key.as_deref())?;
    built.write_archive(&a.output)?;
    let d = &built.policy.document;
    println!(
        "built {} {} ({} plugins) into {}",
        d.id,
        d.version,
        d.plugins.len(),
        a.output.display()
    );
    if a.key.is_none() {
        eprintln!(
            "warning: unsigned; gateways with plugins.trusted_keys or plugins.trust refuse it (sign with --key)"
        );
    }
    Ok(())
}

/// `bitrouter policy push`.
fn push(a: &PushArgs) -> anyhow::Result<()> {
    let mut built = read(&a.source, &a.config)?;
    sign(&mut built, a.key.as_deref())?;
    let config = a.config.load()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let digest = runtime.block_on(bitrouter::plugins::oci::push_policy(
        &built,
        &a.reference,
        &config.plugins.registries,
    ))?;
    println!("pushed {} as {digest}", a.reference);
    Ok(())
}

/// `bitrouter policy pull`.
fn pull(a: &PullArgs) -> anyhow::Result<()> {
    let config = a.config.load()?;
    let p = &config.plugins;
    let pulled = bitrouter::plugins::oci::pull_policy_blocking(
        &a.reference,
        &p.artifact_dir,
        p.max_artifact_size,
        &p.registries,
    )?;
    println!("{} {}", pulled.digest, pulled.dir.display());
    if pulled.from_store {
        eprintln!("warning: the registry cannot be reached; this is the last verified copy");
    }
    Ok(())
}

/// `bitrouter policy inspect`; `Ok(false)` when `--key` is given and no key verifies it.
fn inspect(a: &InspectArgs) -> anyhow::Result<bool> {
    let built = read(&a.source, &a.config)?;
    let p = &built.policy;
    let d = &p.document;
    println!("id:         {} {}", d.id, d.version);
    if let Some(desc) = &d.description {
        println!("about:      {desc}");
    }
    let mut verified = true;
    if a.keys.is_empty() {
        println!(
            "signature:  {}",
            if p.signature.is_some() {
                "present (check it with --key)"
            } else {
                "none"
            }
        );
    } else {
        let keys = bitrouter::plugins::parse_trusted_keys(&super::plugin::public_keys(&a.keys)?)
            .map_err(anyhow::Error::msg)?;
        match p.verify(&keys) {
            Ok(signer) => println!(
                "signature:  verified, key {} (covers the whole document: plugins, hashes, manifests, fragment)",
                signer.unwrap_or_default()
            ),
            Err(e) => {
                println!("signature:  DOES NOT VERIFY: {e}");
                verified = false;
            }
        }
    }
    println!("plugins:");
    for plugin in &d.plugins {
        let m = Manifest::parse(&plugin.manifest).map_err(anyhow::Error::msg)?;
        println!(
            "  {:<24} {:<10} sha256 {}  asks for {:?}  ({})",
            m.id, m.version, plugin.sha256, m.capabilities, plugin.file
        );
        if let Some(c) = &plugin.config {
            println!("    config: {c}");
        }
    }
    match &d.guardrails {
        Some(g) => {
            let yaml = serde_yaml::to_string(g).context("the fragment")?;
            println!("guardrails:");
            for line in yaml.lines() {
                println!("  {line}");
            }
        }
        None => println!("guardrails: (none)"),
    }
    if !verified {
        bail!("the policy's signature does not verify against the given keys");
    }
    Ok(verified)
}

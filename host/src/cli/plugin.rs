//! `bitrouter plugin new|inspect|test|keygen|sign|verify`: the command-line side of the
//! plugin platform. Everything runs through the same library code as the server
//! (`PluginHost`, `guardrails::load`), so what these print is what the gateway would do.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bitrouter::Config;
use bitrouter::config::PluginRef;
use bitrouter::guardrails::action_str;
use bitrouter::plugins::{
    HostConfig, Manifest, Plugin, PluginHost, PluginSpec, World, public_key_hex, sha256_hex, sign,
};
use clap::Subcommand;

use super::guard::{ScanDirection, read_text, scan};

mod exercise;
mod new;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin project (a minimal working plugin, its build script, the WIT files).
    #[command(
        after_help = "Examples:\n  bitrouter plugin new --lang rust my-guard\n  bitrouter plugin new --lang rust --world provider-adapter my-api\n  bitrouter plugin new --lang python --dir plugins my-guard"
    )]
    New(new::NewArgs),
    /// World, manifest, hash, size, imports, exports and (guardrails) declared patterns.
    #[command(
        after_help = "Examples:\n  bitrouter plugin inspect plugins/dist/api_keys.wasm\n  bitrouter plugin inspect oci://registry.acme.internal/guardrails/acme-policy:1.2.0"
    )]
    Inspect(InspectArgs),
    /// Run one plugin alone and print what it does (JSON lines): a guardrail's findings in a
    /// text; an observer's log lines for a sample batch of finished requests, delivered twice;
    /// a provider adapter's upstream request for a one-message chat, and what it decodes from
    /// the upstream bodies given.
    #[command(
        after_help = "Examples:\n  bitrouter plugin test plugins/dist/pii_emails.wasm --text 'mail jane@corp.example'\n  bitrouter plugin test my.wasm --config '{\"strict\":true}' --file sample.txt --show-match\n  bitrouter plugin test my-observer.wasm\n  bitrouter plugin test my-adapter.wasm --text 'Hello' --model my-model \\\n    --response '{\"text\":\"Hi\"}' --stream-response @stream-body.txt\n\nThe world comes from the plugin's manifest. Exit status: 0, or 2 when a guardrail would block\nthe text, 1 on errors (a failed call included)."
    )]
    Test(TestArgs),
    /// Create an ed25519 key for signing plugins (hex, file mode 0600); prints the public key
    /// (`--show`: print the public key of an existing key file).
    #[command(
        after_help = "Examples:\n  bitrouter plugin keygen ~/.bitrouter/plugin-signing.key\n  bitrouter plugin keygen --show ~/.bitrouter/plugin-signing.key"
    )]
    Keygen(KeygenArgs),
    /// Sign a plugin: writes `signature` into its manifest (the hash must match).
    #[command(
        after_help = "Example:\n  bitrouter plugin sign my.wasm --key ~/.bitrouter/plugin-signing.key"
    )]
    Sign(SignArgs),
    /// Check a plugin's hash and signature against public keys.
    #[command(
        after_help = "Examples:\n  bitrouter plugin verify my.wasm --key 3b6a27bc…\n  bitrouter plugin verify my.wasm --key team.key"
    )]
    Verify(VerifyArgs),
    /// Push a plugin (component + its signed manifest) to an OCI registry, in the Wasm OCI
    /// artifact layout; prints the pushed digest.
    #[command(
        after_help = "Example:\n  bitrouter plugin push ./acme-policy.wasm oci://registry.acme.internal/guardrails/acme-policy:1.2.0"
    )]
    Push(PushArgs),
    /// Pull a plugin from an OCI registry into the artifact store (`plugins.artifact_dir`);
    /// prints the digest and where it is.
    #[command(
        after_help = "Example:\n  bitrouter plugin pull oci://registry.acme.internal/guardrails/acme-policy:1.2.0"
    )]
    Pull(PullArgs),
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// The component (`.wasm`); its manifest is beside it (sign it first to have it trusted).
    file: PathBuf,
    /// `oci://registry/repository:tag`.
    reference: String,
    /// The config whose `plugins.registries` holds the registry's credentials.
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

/// `bitrouter plugin push`.
fn push(a: &PushArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = a.config.load()?;
    let digest = runtime.block_on(bitrouter::plugins::oci::push(
        &a.file,
        &a.reference,
        &config.plugins.registries,
    ))?;
    println!("pushed {} as {digest}", a.reference);
    Ok(())
}

/// `bitrouter plugin pull`.
fn pull(a: PullArgs) -> anyhow::Result<()> {
    let config = a.config.load()?;
    let p = &config.plugins;
    let pulled = bitrouter::plugins::oci::pull_blocking(
        &a.reference,
        &p.artifact_dir,
        p.max_artifact_size,
        &p.registries,
    )?;
    println!("{} {}", pulled.digest, pulled.wasm().display());
    if pulled.from_store {
        eprintln!("warning: the registry cannot be reached; this is the last verified copy");
    }
    Ok(())
}

impl PluginCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            PluginCommand::New(a) => a.run().map(super::done),
            PluginCommand::Inspect(a) => {
                let cache_dir = a.config.load()?.plugins.cache_dir;
                a.component()
                    .and_then(|f| inspect(&f, cache_dir))
                    .map(super::done)
            }
            PluginCommand::Test(a) => test(a).map(super::scanned),
            PluginCommand::Keygen(a) if a.show => show_key(&a.key).map(super::done),
            PluginCommand::Keygen(a) => keygen(&a.key).map(super::done),
            PluginCommand::Sign(a) => sign_plugin(&a.file, &a.key).map(super::done),
            PluginCommand::Verify(a) => {
                let keys = public_keys(&a.keys)?;
                verify(&a.file, &keys).map(super::done)
            }
            PluginCommand::Push(a) => push(&a).map(super::done),
            PluginCommand::Pull(a) => pull(a).map(super::done),
        }
    }
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A component (`.wasm`), or `oci://registry/repository:tag` / `…@sha256:…` (pulled into
    /// the artifact store first).
    file: PathBuf,
    #[command(flatten)]
    config: super::ConfigArg,
}

impl InspectArgs {
    /// The component to inspect: the file, or an OCI reference's copy in the store.
    fn component(&self) -> anyhow::Result<PathBuf> {
        let Some(reference) = self.file.to_str().filter(|f| f.starts_with("oci://")) else {
            return Ok(self.file.clone());
        };
        let config = self.config.load()?;
        let p = &config.plugins;
        let pulled = bitrouter::plugins::oci::pull_blocking(
            reference,
            &p.artifact_dir,
            p.max_artifact_size,
            &p.registries,
        )?;
        println!("reference:  {reference}@{}", pulled.digest);
        Ok(pulled.wasm())
    }
}

#[derive(clap::Args)]
pub struct TestArgs {
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
    /// Adapters: the endpoint's model id handed to encode-request (default: test-model).
    #[arg(long, value_name = "ID")]
    model: Option<String>,
    /// Adapters: the test request asks for a streamed answer.
    #[arg(long)]
    stream: bool,
    /// Adapters: an upstream answer body for decode-response (`@PATH`: a file's contents).
    #[arg(long, value_name = "BODY")]
    response: Option<String>,
    /// Adapters: the HTTP status of --response (default 200).
    #[arg(long, requires = "response")]
    status: Option<u16>,
    /// Adapters: a streamed upstream body for decode-stream (`@PATH`: a file's contents),
    /// fed in two chunks cut in the middle, then the end.
    #[arg(long, value_name = "BODY")]
    stream_response: Option<String>,
    /// The plugin's per-call deadline (default: the gateway's, 10ms). Interpreted
    /// runtimes (componentize-js, componentize-py) need more in a debug build.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    call_deadline: Option<std::time::Duration>,
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    key: PathBuf,
    /// Print the public key of an existing key file instead of creating one.
    #[arg(long)]
    show: bool,
}

#[derive(clap::Args)]
pub struct SignArgs {
    file: PathBuf,
    /// The secret key: the file `plugin keygen` wrote (or its 64 hex digits).
    #[arg(long)]
    key: PathBuf,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    file: PathBuf,
    /// A trusted public key: hex, or a key file (`plugin keygen`'s secret key file, whose
    /// public key is used, or a file holding the public key's hex); repeat for several.
    #[arg(long = "key", required = true)]
    keys: Vec<String>,
}

/// `bitrouter plugin test`: one plugin alone (no built-ins). A guardrail scans a text
/// (`Ok(true)` when something would be blocked); observers and adapters get sample input
/// (`exercise.rs`).
fn test(a: TestArgs) -> anyhow::Result<bool> {
    let declared = exercise::manifest_world(&a.file);
    let adapter_options = a.model.is_some()
        || a.stream
        || a.response.is_some()
        || a.status.is_some()
        || a.stream_response.is_some();
    let guard_options = a.show_match || a.direction != ScanDirection::Both;
    if let Some(world) = declared {
        exercise::check_options(world, adapter_options, guard_options)?;
    }
    // Without a readable manifest, the guardrail path's load says what is wrong.
    let world = declared.unwrap_or(World::Guardrail);
    if world != World::Guardrail {
        let spec = PluginSpec {
            config: a
                .config
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("--config: expected JSON")?,
            call_deadline: a.call_deadline,
            ..PluginSpec::new(&a.file)
        };
        if world == World::Observer {
            exercise::observer(spec)?;
        } else {
            let input = exercise::AdapterInput {
                text: read_text(a.text, a.input.as_deref())?,
                model: a.model.unwrap_or_else(|| "test-model".into()),
                stream: a.stream,
                response: a
                    .response
                    .as_deref()
                    .map(exercise::body_arg)
                    .transpose()?
                    .map(|b| (a.status.unwrap_or(200), b)),
                stream_response: a
                    .stream_response
                    .as_deref()
                    .map(exercise::body_arg)
                    .transpose()?,
            };
            exercise::adapter(spec, input)?;
        }
        return Ok(false);
    }
    // The compile cache `serve` uses: a JavaScript or Python component compiles once (10-30 s),
    // not on every run.
    let mut config = Config::builtin();
    config.guardrails.builtin = false;
    config.guardrails.plugins = vec![PluginRef {
        oci: None,
        key: "plugin test".into(),
        path: a.file,
        sha256: None,
        config: a
            .config
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("--config: expected JSON")?,
        grants: Vec::new(),
        memory_limit: None,
        call_deadline: a.call_deadline,
        reuse_instances: None,
        plugin_failure: None,
    }];
    let text = read_text(a.text, a.input.as_deref())?;
    scan(&config, a.direction, a.show_match, &text)
}

/// `bitrouter plugin inspect`: manifest, hash, size, imports, exports and, for a guardrail,
/// its declared patterns.
fn inspect(path: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest_path = Manifest::locate(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let manifest = Manifest::read(&manifest_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sha = sha256_hex(&bytes);
    println!("file:       {} ({} bytes)", path.display(), bytes.len());
    println!("manifest:   {}", manifest_path.display());
    println!("id:         {} {}", manifest.id, manifest.version);
    println!("world:      {}", manifest.world);
    println!(
        "sha256:     {sha} ({})",
        if manifest.sha256.eq_ignore_ascii_case(&sha) {
            "matches the manifest"
        } else {
            "DOES NOT match the manifest"
        }
    );
    println!(
        "signature:  {}",
        if manifest.signature.is_some() {
            "present (check it with `bitrouter plugin verify --key`)"
        } else {
            "none"
        }
    );
    println!("asks for:   {:?}", manifest.capabilities);
    let host = PluginHost::new(HostConfig {
        cache_dir,
        max_instances: 2,
        ..HostConfig::default()
    })?;
    let (imports, exports) = host.component_interface(&bytes)?;
    println!("imports:    {}", imports.join(", "));
    println!("exports:    {}", exports.join(", "));
    let mut host = host;
    let grants = manifest.capabilities.clone();
    match host.add(&PluginSpec {
        grants,
        ..PluginSpec::new(path)
    })? {
        Plugin::Guardrail(g) => {
            println!("patterns:");
            for p in g.patterns() {
                let dirs = match (p.request, p.response) {
                    (true, true) => "both",
                    (true, false) => "upgoing",
                    (false, true) => "downgoing",
                    (false, false) => "none",
                };
                println!(
                    "  {:<28} {:<9} default {:<6} max {:>5} B  {}",
                    p.id,
                    dirs,
                    action_str(p.default_action),
                    p.max_match_len,
                    p.description
                );
                match &p.regex {
                    Some(r) => println!("    regex: {r}"),
                    None => println!("    no regex: found by the plugin's scan()"),
                }
            }
        }
        other => println!("loaded:     ok ({})", other.info().world),
    }
    Ok(())
}

/// Public keys given as `--key`: hex as is; a file either holds a public key's hex (a name
/// ending in `.pub`) or is a secret key file from `plugin keygen`, whose public key is used.
pub(super) fn public_keys(args: &[String]) -> anyhow::Result<Vec<String>> {
    args.iter()
        .map(|k| {
            let path = Path::new(k);
            if !path.is_file() {
                return Ok(k.clone());
            }
            if path.extension().is_some_and(|e| e == "pub") {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                return Ok(text.trim().to_owned());
            }
            Ok(public_key_hex(&read_secret(path)?))
        })
        .collect()
}

/// `bitrouter plugin keygen --show`: the public key of an existing key file.
fn show_key(path: &Path) -> anyhow::Result<()> {
    println!("public key: {}", public_key_hex(&read_secret(path)?));
    Ok(())
}

/// An ed25519 secret key from `--key`: a key file from `plugin keygen`, or its 64 hex digits
/// given inline (kept out of shell history by preferring the file).
pub(super) fn read_secret(key: &Path) -> anyhow::Result<[u8; 32]> {
    let inline = key
        .to_str()
        .filter(|k| !key.exists() && k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()));
    let text = match inline {
        Some(hex) => hex.to_owned(),
        None => std::fs::read_to_string(key)
            .with_context(|| format!("cannot read {}", key.display()))?,
    };
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| {
            format!(
                "{}: expected an ed25519 secret key as 64 hex digits",
                key.display()
            )
        })
}

/// `bitrouter plugin keygen`: a new ed25519 signing key (hex, mode 0600).
fn keygen(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists; refusing to overwrite a key", path.display());
    }
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .context("cannot read /dev/urandom")?;
    write_private(path, &hex::encode(secret))?;
    println!("secret key: {}", path.display());
    println!("public key: {}", public_key_hex(&secret));
    println!(
        "trust it with `plugins: {{ trusted_keys: [{}] }}`",
        public_key_hex(&secret)
    );
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{text}").with_context(|| format!("cannot write {}", path.display()))
}

/// `bitrouter plugin sign`: checks the component against its manifest's hash, then writes
/// the signature into the manifest.
fn sign_plugin(path: &Path, key: &Path) -> anyhow::Result<()> {
    let secret = read_secret(key)?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest_path = Manifest::locate(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let manifest = Manifest::read(&manifest_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sha = sha256_hex(&bytes);
    if !manifest.sha256.eq_ignore_ascii_case(&sha) {
        bail!(
            "{}: the manifest says sha256 {}, the component is {sha}; rebuild or fix the manifest before signing",
            manifest_path.display(),
            manifest.sha256
        );
    }
    let text = std::fs::read_to_string(&manifest_path)?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", manifest_path.display()))?;
    table.insert(
        "signature".into(),
        toml::Value::String(sign(&secret, &manifest)),
    );
    std::fs::write(&manifest_path, toml::to_string(&table)?)
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    println!(
        "signed {} ({}) with key {}",
        manifest.id,
        manifest_path.display(),
        public_key_hex(&secret)
    );
    Ok(())
}

/// `bitrouter plugin verify`: hash, and signature against the given public keys.
fn verify(path: &Path, keys: &[String]) -> anyhow::Result<()> {
    if keys.is_empty() {
        bail!("give the public key(s) to verify against with --key HEX");
    }
    let mut host = PluginHost::new(HostConfig {
        cache_dir: Config::builtin().plugins.cache_dir,
        max_instances: 2,
        trusted_keys: keys.to_vec(),
        ..HostConfig::default()
    })?;
    let manifest = Manifest::read(&Manifest::locate(path).map_err(|e| anyhow::anyhow!("{e}"))?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plugin = host.add(&PluginSpec {
        grants: manifest.capabilities.clone(),
        ..PluginSpec::new(path)
    })?;
    println!(
        "{}: hash matches and the signature of key {} verifies (it covers id, version, world, sha256 and capabilities)",
        path.display(),
        plugin.info().signer.as_deref().unwrap_or("?")
    );
    Ok(())
}

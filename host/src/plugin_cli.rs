//! `bitrouter plugin …` and `bitrouter guard scan`: the command-line side of the plugin
//! platform and the firewall. Everything runs through the same library code as the server
//! (`PluginHost`, `guardrails::load`), so what these print is what the gateway would do.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use bitrouter::Config;
use bitrouter::config::PluginRef;
use bitrouter::guardrails::{self, action_str};
use bitrouter::plugins::{
    Action, Direction, HostConfig, Manifest, Plugin, PluginHost, PluginSpec, public_key_hex,
    sha256_hex, sign,
};

/// Which patterns a scan runs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanDirection {
    Upgoing,
    Downgoing,
    Both,
}

fn read_text(text: Option<String>, file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(t) = text {
        return Ok(t);
    }
    match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read stdin (expected UTF-8 text)")?;
            Ok(s)
        }
    }
}

/// Scans `text` with the firewall `config` describes and prints one JSON line per finding.
/// `Ok(true)` when something would be blocked.
pub fn scan(
    config: &Config,
    direction: ScanDirection,
    show_match: bool,
    text: &str,
) -> anyhow::Result<bool> {
    let firewall = guardrails::load(config)?;
    let engine = firewall.engine.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut blocked = false;
    let mut count = 0;
    for (d, name) in [
        (Direction::Request, "upgoing"),
        (Direction::Response, "downgoing"),
    ] {
        let wanted = match direction {
            ScanDirection::Upgoing => d == Direction::Request,
            ScanDirection::Downgoing => d == Direction::Response,
            ScanDirection::Both => true,
        };
        if !wanted {
            continue;
        }
        for hit in runtime.block_on(engine.scan(d, text)) {
            blocked |= hit.action == Action::Block;
            count += 1;
            let mut line = serde_json::json!({
                "pattern": &*engine.patterns()[hit.pattern].id,
                "direction": name,
                "action": action_str(hit.action),
                "start": hit.span.start,
                "end": hit.span.end,
            });
            if hit.failed {
                line["plugin_failed"] = true.into();
            }
            if show_match {
                line["match"] = text[hit.span.clone()].into();
            }
            println!("{line}");
        }
    }
    eprintln!(
        "{count} finding{}{}",
        if count == 1 { "" } else { "s" },
        if blocked {
            "; a request or response with this text would be blocked"
        } else {
            ""
        }
    );
    // A plugin that failed (fail-open) found nothing; saying "0 findings" and exiting 0
    // would hide the one thing the user needs to know.
    let failed = plugin_failures(firewall.plugins.host.as_ref());
    if !failed.is_empty() {
        for line in &failed {
            eprintln!("{line}");
        }
        bail!(
            "{} plugin{} failed during the scan; the findings above are incomplete",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" }
        );
    }
    Ok(blocked)
}

/// One line per plugin whose calls failed, saying how.
fn plugin_failures(host: Option<&PluginHost>) -> Vec<String> {
    let Some(host) = host else {
        return Vec::new();
    };
    host.plugins()
        .iter()
        .filter_map(|p| {
            let s = p.stats();
            if s.failures() == 0 {
                return None;
            }
            let mut how = Vec::new();
            for (n, what) in [
                (
                    s.deadlines,
                    "over the call deadline (raise `call_deadline`, or --call-deadline)",
                ),
                (s.traps, "trapped"),
                (s.memory, "over the memory limit"),
                (s.invalid_results, "returned an invalid result"),
                (
                    s.other_failures,
                    "failed to instantiate or reported an error",
                ),
            ] {
                if n > 0 {
                    how.push(format!("{n} {what}"));
                }
            }
            Some(format!(
                "plugin {}: {} of {} calls failed: {}",
                p.info().id,
                s.failures(),
                s.calls,
                how.join(", ")
            ))
        })
        .collect()
}

/// `bitrouter guard scan`.
pub fn guard_scan(
    config: &Config,
    direction: ScanDirection,
    show_match: bool,
    file: Option<&Path>,
) -> anyhow::Result<bool> {
    let text = read_text(None, file)?;
    scan(config, direction, show_match, &text)
}

/// `bitrouter plugin test`: one guardrail plugin alone (no built-ins), over a text.
pub fn test(
    path: &Path,
    plugin_config: Option<&str>,
    text: Option<String>,
    file: Option<&Path>,
    direction: ScanDirection,
    show_match: bool,
    call_deadline: Option<std::time::Duration>,
) -> anyhow::Result<bool> {
    let mut config = Config::builtin();
    config.plugins.cache_dir = None;
    config.guardrails.builtin = false;
    config.guardrails.plugins = vec![PluginRef {
        key: "plugin test".into(),
        path: path.to_owned(),
        sha256: None,
        config: plugin_config
            .map(serde_json::from_str)
            .transpose()
            .context("--config: expected JSON")?,
        grants: Vec::new(),
        memory_limit: None,
        call_deadline,
    }];
    let text = read_text(text, file)?;
    scan(&config, direction, show_match, &text)
}

/// `bitrouter plugin inspect`: manifest, hash, size, imports, exports and, for a guardrail,
/// its declared patterns.
pub fn inspect(path: &Path) -> anyhow::Result<()> {
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
        cache_dir: None,
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

fn read_secret(key: &Path) -> anyhow::Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?;
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
pub fn keygen(path: &Path) -> anyhow::Result<()> {
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
pub fn sign_plugin(path: &Path, key: &Path) -> anyhow::Result<()> {
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
        toml::Value::String(sign(&secret, &manifest.id, &sha)),
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
pub fn verify(path: &Path, keys: &[String]) -> anyhow::Result<()> {
    if keys.is_empty() {
        bail!("give the public key(s) to verify against with --key HEX");
    }
    let mut host = PluginHost::new(HostConfig {
        cache_dir: None,
        max_instances: 2,
        trusted_keys: keys.to_vec(),
        ..HostConfig::default()
    })?;
    let manifest = Manifest::read(&Manifest::locate(path).map_err(|e| anyhow::anyhow!("{e}"))?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    host.add(&PluginSpec {
        grants: manifest.capabilities.clone(),
        ..PluginSpec::new(path)
    })?;
    println!(
        "{}: hash matches and the signature verifies",
        path.display()
    );
    Ok(())
}

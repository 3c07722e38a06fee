//! The plugin manifest (`plugin.toml`): who the plugin is, which world it implements, the
//! sha256 of its component, the capabilities it asks for, and an optional ed25519 signature.
//!
//! ```toml
//! id = "confidential-ids"
//! version = "0.1.0"
//! world = "guardrail"            # guardrail | provider-adapter | observer
//! sha256 = "9f2c…"               # of the .wasm file, lowercase hex
//! capabilities = []              # e.g. ["wall-clock", "env:TZ"]
//! stateless = true               # optional: calls may share a warm instance (default false)
//! signature = "5e1a…"            # optional: ed25519, hex, over signed_message(manifest)
//! ```
//!
//! The manifest of `dir/foo.wasm` is `dir/foo.plugin.toml`, or else `dir/plugin.toml`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{PluginErrorKind, World};

/// A parsed `plugin.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's id: `[a-z0-9._-]`, unique among loaded plugins.
    pub id: String,
    /// The plugin's version, free-form (e.g. `0.1.0`).
    pub version: String,
    /// The world the component implements.
    pub world: World,
    /// sha256 of the component file, lowercase hex.
    pub sha256: String,
    /// Capabilities the plugin asks for (`wall-clock`, `env:NAME`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The plugin's calls do not depend on what earlier calls left in its memory, so the host
    /// may run many calls, one after another, in one warm instance instead of a fresh one
    /// each (what makes interpreted runtimes — JavaScript, Python — affordable per request).
    #[serde(default)]
    pub stateless: bool,
    /// ed25519 signature (hex) over [`signed_message`] of this manifest.
    #[serde(default)]
    pub signature: Option<String>,
    /// What the plugin does, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form facts recorded by the build (toolchain versions, source path).
    #[serde(default)]
    pub build: Option<toml::Table>,
}

/// A capability a plugin may ask for and the config may grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// The real wall clock (otherwise `wasi:clocks/wall-clock` reads the Unix epoch).
    WallClock,
    /// One environment variable of the gateway process, read at instantiation.
    Env(String),
}

impl Capability {
    /// Parses `wall-clock` or `env:NAME`.
    pub fn parse(s: &str) -> Result<Capability, PluginErrorKind> {
        match s {
            "wall-clock" => Ok(Capability::WallClock),
            _ => match s.strip_prefix("env:") {
                Some(name) if !name.is_empty() && !name.contains('=') => {
                    Ok(Capability::Env(name.to_owned()))
                }
                _ => Err(PluginErrorKind::UnknownCapability(s.to_owned())),
            },
        }
    }
}

impl Manifest {
    /// Where the manifest of the component at `wasm` lives, if it exists.
    pub fn locate(wasm: &Path) -> Result<PathBuf, PluginErrorKind> {
        let dir = wasm.parent().unwrap_or(Path::new("."));
        let stem = wasm
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let specific = dir.join(format!("{stem}.plugin.toml"));
        if specific.is_file() {
            return Ok(specific);
        }
        let shared = dir.join("plugin.toml");
        if shared.is_file() {
            return Ok(shared);
        }
        Err(PluginErrorKind::MissingManifest(specific))
    }

    /// Reads and validates the manifest at `path`.
    pub fn read(path: &Path) -> Result<Manifest, PluginErrorKind> {
        let text = std::fs::read_to_string(path).map_err(|source| PluginErrorKind::Read {
            path: path.to_owned(),
            source,
        })?;
        Manifest::parse(&text).map_err(|message| PluginErrorKind::Manifest {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and validates manifest text (`id` characters, `sha256` shape).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        if m.id.is_empty()
            || !m
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(format!("id `{}`: use [a-z0-9._-]", m.id));
        }
        if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("sha256: expected 64 hex digits".into());
        }
        Ok(m)
    }

    /// The capabilities asked for, parsed.
    pub fn capabilities(&self) -> Result<Vec<Capability>, PluginErrorKind> {
        self.capabilities
            .iter()
            .map(|c| Capability::parse(c))
            .collect()
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a signature covers (format v2): everything in the manifest that decides what the
/// plugin is and may do — id, version, world, the component's sha256 and the capabilities
/// it asks for (sorted, so their order does not matter), and `stateless` when set — as RFC
/// 8785 canonical JSON after a fixed header, so no field's text can pass for another field.
/// Editing any of them, or putting an older signed version's manifest back with a newer one's
/// version, breaks it. (`stateless` enters only when true, so manifests without it keep the
/// signatures they had.) `description` and `build` are notes for people and are not covered.
pub fn signed_message(manifest: &Manifest) -> Vec<u8> {
    let mut capabilities: Vec<&str> = manifest.capabilities.iter().map(String::as_str).collect();
    capabilities.sort_unstable();
    capabilities.dedup();
    let mut covered = serde_json::json!({
        "id": manifest.id,
        "version": manifest.version,
        "world": manifest.world.to_string(),
        "sha256": manifest.sha256.to_ascii_lowercase(),
        "capabilities": capabilities,
    });
    if manifest.stateless {
        covered["stateless"] = true.into();
    }
    let mut out = b"bitrouter:plugin signature v2\n".to_vec();
    // Serializing a JSON value of strings cannot fail.
    out.extend(serde_jcs::to_vec(&covered).unwrap_or_default());
    out
}

/// The v1 message (id and sha256 only), kept to recognise old signatures and say why they
/// no longer count.
fn signed_message_v1(id: &str, sha256: &str) -> Vec<u8> {
    format!(
        "bitrouter:plugin signature v1\nid={id}\nsha256={}\n",
        sha256.to_ascii_lowercase()
    )
    .into_bytes()
}

/// Signs `manifest` ([`signed_message`]) with an ed25519 secret key (32 bytes); returns hex.
pub fn sign(secret_key: &[u8; 32], manifest: &Manifest) -> String {
    let key = SigningKey::from_bytes(secret_key);
    hex::encode(key.sign(&signed_message(manifest)).to_bytes())
}

/// The public key (hex) for an ed25519 secret key.
pub fn public_key_hex(secret_key: &[u8; 32]) -> String {
    hex::encode(
        SigningKey::from_bytes(secret_key)
            .verifying_key()
            .to_bytes(),
    )
}

/// Parses `trusted_keys` entries (64 hex digits each).
pub fn parse_trusted_keys(keys: &[String]) -> Result<Vec<VerifyingKey>, String> {
    keys.iter()
        .map(|k| {
            let bytes: [u8; 32] = hex::decode(k.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("trusted key `{k}`: expected 64 hex digits"))?;
            VerifyingKey::from_bytes(&bytes).map_err(|_| {
                format!("trusted key `{k}`: 64 hex digits, but not an ed25519 public key")
            })
        })
        .collect()
}

/// Checks the manifest's signature against the trusted keys and returns the key (hex) that
/// signed it. With no trusted keys a signature is not required (and not checked: `None`);
/// with any, it is mandatory.
pub fn verify(
    manifest: &Manifest,
    trusted: &[VerifyingKey],
) -> Result<Option<String>, PluginErrorKind> {
    if trusted.is_empty() {
        return Ok(None);
    }
    let Some(sig_hex) = &manifest.signature else {
        return Err(PluginErrorKind::Unsigned);
    };
    let sig_bytes: [u8; 64] = hex::decode(sig_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PluginErrorKind::BadSignature("expected 128 hex digits".into()))?;
    let sig = Signature::from_bytes(&sig_bytes);
    let msg = signed_message(manifest);
    if let Some(k) = trusted.iter().find(|k| k.verify(&msg, &sig).is_ok()) {
        return Ok(Some(hex::encode(k.to_bytes())));
    }
    let v1 = signed_message_v1(&manifest.id, &manifest.sha256);
    if trusted.iter().any(|k| k.verify(&v1, &sig).is_ok()) {
        return Err(PluginErrorKind::BadSignature(
            "it is a v1 signature, which covers only the id and sha256; sign it again with this version's `bitrouter plugin sign`, which covers version, world and capabilities too".into(),
        ));
    }
    Err(PluginErrorKind::BadSignature(
        "no trusted key verifies it (wrong key, or the manifest's id, version, world, sha256 or capabilities changed after signing)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn manifest(sig: Option<String>) -> Manifest {
        Manifest {
            id: "demo".into(),
            version: "0.1.0".into(),
            world: World::Guardrail,
            sha256: sha256_hex(b"component"),
            capabilities: vec![],
            stateless: false,
            signature: sig,
            description: None,
            build: None,
        }
    }

    #[test]
    fn parses_a_manifest() {
        let m = Manifest::parse(&format!(
            "id = \"a.b-c\"\nversion = \"1.0.0\"\nworld = \"provider-adapter\"\nsha256 = \"{}\"\ncapabilities = [\"wall-clock\", \"env:TZ\"]\n",
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(m.world, World::ProviderAdapter);
        assert_eq!(
            m.capabilities().unwrap(),
            vec![Capability::WallClock, Capability::Env("TZ".into())]
        );
    }

    #[test]
    fn rejects_bad_manifests() {
        let sha = "ab".repeat(32);
        for (text, needle) in [
            (
                format!("id = \"A\"\nversion = \"1\"\nworld = \"guardrail\"\nsha256 = \"{sha}\""),
                "id",
            ),
            (
                "id = \"a\"\nversion = \"1\"\nworld = \"guardrail\"\nsha256 = \"xyz\"".to_owned(),
                "sha256",
            ),
            (
                format!("id = \"a\"\nversion = \"1\"\nworld = \"filter\"\nsha256 = \"{sha}\""),
                "world",
            ),
            (
                format!(
                    "id = \"a\"\nversion = \"1\"\nworld = \"guardrail\"\nsha256 = \"{sha}\"\nsha = 1"
                ),
                "sha",
            ),
        ] {
            let err = Manifest::parse(&text).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        assert!(matches!(
            Capability::parse("network"),
            Err(PluginErrorKind::UnknownCapability(_))
        ));
    }

    #[test]
    fn signatures() {
        let trusted = parse_trusted_keys(&[public_key_hex(&SECRET)]).unwrap();
        let signed = |m: &Manifest| {
            let mut m = m.clone();
            m.signature = Some(sign(&SECRET, &m));
            m
        };
        let m = signed(&manifest(None));
        assert_eq!(verify(&m, &trusted).unwrap(), Some(public_key_hex(&SECRET)));
        // No trusted keys: not required.
        assert_eq!(verify(&manifest(None), &[]).unwrap(), None);
        // Trusted keys: mandatory.
        assert!(matches!(
            verify(&manifest(None), &trusted),
            Err(PluginErrorKind::Unsigned)
        ));
        // Another key.
        let other = parse_trusted_keys(&[public_key_hex(&[8; 32])]).unwrap();
        assert!(matches!(
            verify(&m, &other),
            Err(PluginErrorKind::BadSignature(_))
        ));
        // Everything that decides behaviour is covered: each edit breaks the signature.
        let edits: [fn(&mut Manifest); 6] = [
            |m| m.id = "other".into(),
            |m| m.version = "0.0.9".into(),
            |m| m.world = World::Observer,
            |m| m.sha256 = sha256_hex(b"another component"),
            |m| m.capabilities = vec!["wall-clock".into()],
            |m| m.stateless = true,
        ];
        for edit in edits {
            let mut edited = m.clone();
            edit(&mut edited);
            assert!(matches!(
                verify(&edited, &trusted),
                Err(PluginErrorKind::BadSignature(_))
            ));
        }
        // Notes for people are not, and the capabilities' order does not matter.
        let mut noted = manifest(None);
        noted.capabilities = vec!["wall-clock".into(), "env:TZ".into()];
        let mut noted = signed(&noted);
        noted.description = Some("edited".into());
        noted.capabilities.reverse();
        verify(&noted, &trusted).unwrap();
        // A text that would read as another field in a line format cannot forge one.
        let mut sneaky = manifest(None);
        sneaky.version = "1\nsha256=00".into();
        assert_ne!(signed_message(&sneaky), signed_message(&manifest(None)));
        // An old v1 signature is refused, and says why.
        let mut v1 = manifest(None);
        let key = SigningKey::from_bytes(&SECRET);
        v1.signature = Some(hex::encode(
            key.sign(&signed_message_v1(&v1.id, &v1.sha256)).to_bytes(),
        ));
        match verify(&v1, &trusted) {
            Err(PluginErrorKind::BadSignature(why)) => assert!(why.contains("v1"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(parse_trusted_keys(&["zz".into()]).is_err());
    }
}

//! Policies: several guardrail plugins and a guardrails config fragment, handed to other
//! teams as one signed unit (`bitrouter policy build|push`, `guardrails.policies`).
//!
//! A policy's source is a folder with a `policy.yaml`:
//!
//! ```yaml
//! id: baseline                      # [a-z0-9._-]
//! version: 2026.12.0
//! description: Acme's baseline      # optional
//! plugins:                          # guardrail components; each manifest beside it
//!   - path: acme-policy.wasm
//!     config: { strict: true }      # optional, handed to the plugin's configure
//! guardrails:                       # optional fragment: actions, custom patterns, ...
//!   upgoing: { internal_token: block }
//! ```
//!
//! Building it yields the **policy document** (`policy.json`): id, version, and for each
//! plugin its file name, sha256, the full text of its `plugin.toml` and its config, plus the
//! fragment — everything that decides behaviour. The signature (ed25519, hex) covers the
//! document as RFC 8785 canonical JSON after a fixed header, so no field can be changed,
//! added or dropped without breaking it; the plugins inside are bound to it by their
//! hashes and need no signature of their own.
//!
//! A `.policy` file is a tar archive: `policy.json` first, then each component as
//! `<sha256>.wasm`. In a registry, a policy is an OCI artifact whose config blob is the
//! `policy.json` (media type [`POLICY_MEDIA_TYPE`]) and whose layers are the components
//! (`application/wasm`, the layer digest being the component's sha256). Either way it is
//! unpacked into the artifact store as a folder of `policy.json` and `<sha256>.wasm` files,
//! and the loader checks everything again from there.

use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{PluginErrorKind, World};
use super::manifest::{Manifest, sha256_hex};

/// The document's `format`.
pub const FORMAT: &str = "bitrouter-policy/1";
/// The document's file name (in an archive, in the store, and as an OCI config blob).
pub const DOCUMENT_FILE: &str = "policy.json";
/// The source folder's description.
pub const SOURCE_FILE: &str = "policy.yaml";
/// The OCI config media type of a policy artifact.
pub const POLICY_MEDIA_TYPE: &str = "application/vnd.bitrouter.policy.v1+json";
/// Plugins one policy may hold.
pub const MAX_PLUGINS: usize = 16;
/// The largest `policy.json`, bytes.
pub const MAX_DOCUMENT: u64 = 1 << 20;

/// Why a policy could not be built, read or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A problem in a policy's source folder (`bitrouter policy build`).
    #[error("{path}: {message}")]
    Source {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A policy document or archive that is malformed or over a limit.
    #[error("{origin}: not a valid policy: {message}")]
    Invalid {
        /// Where it came from (file, reference).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PolicyError + '_ {
    move |source| PolicyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The signed content of a policy.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Always [`FORMAT`].
    pub format: String,
    /// `[a-z0-9._-]`, unique among the loaded policies.
    pub id: String,
    /// Compared as semver for rollback protection.
    pub version: String,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The guardrail plugins, in load order.
    #[serde(default)]
    pub plugins: Vec<PolicyPlugin>,
    /// The guardrails config fragment (the keys of `guardrails:` a policy may set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<serde_json::Value>,
}

/// One plugin of a policy.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PolicyPlugin {
    /// The component's file name in the source folder, for people.
    pub file: String,
    /// The component's sha256, lowercase hex.
    pub sha256: String,
    /// The text of its `plugin.toml`.
    pub manifest: String,
    /// Handed to its `configure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

/// What `policy.json` holds: the document and its signature.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    document: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// A policy document, as signed.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The parsed document.
    pub document: PolicyDocument,
    /// The document as read: what the signature covers.
    raw: serde_json::Value,
    /// ed25519 signature (hex) over [`Policy::signed_message`].
    pub signature: Option<String>,
}

/// A policy with its components in memory (built from a folder, or read from a store
/// folder), ready to be written as a `.policy` file or pushed.
#[derive(Debug)]
pub struct Built {
    /// The document and signature.
    pub policy: Policy,
    /// Each plugin's component, in the document's order.
    pub components: Vec<Vec<u8>>,
}

/// `[a-z0-9._-]`, 1-64 characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Policy {
    /// A policy over `document`, unsigned.
    pub fn new(document: PolicyDocument) -> Policy {
        let raw = serde_json::to_value(&document).unwrap_or_default();
        Policy {
            document,
            raw,
            signature: None,
        }
    }

    /// What the signature covers: a fixed header, then the whole document as RFC 8785
    /// canonical JSON.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = b"bitrouter:policy signature v1\n".to_vec();
        out.extend(serde_jcs::to_vec(&self.raw).unwrap_or_default());
        out
    }

    /// Signs the document with an ed25519 secret key.
    pub fn sign(&mut self, secret_key: &[u8; 32]) {
        let key = SigningKey::from_bytes(secret_key);
        self.signature = Some(hex::encode(key.sign(&self.signed_message()).to_bytes()));
    }

    /// The key (hex) among `keys` whose signature verifies. No keys: not checked (`None`);
    /// with any, a signature is mandatory.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<Option<String>, PluginErrorKind> {
        if keys.is_empty() {
            return Ok(None);
        }
        let Some(sig) = &self.signature else {
            return Err(PluginErrorKind::Unsigned);
        };
        let sig: [u8; 64] = hex::decode(sig.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| PluginErrorKind::BadSignature("expected 128 hex digits".into()))?;
        let sig = Signature::from_bytes(&sig);
        let msg = self.signed_message();
        keys.iter()
            .find(|k| k.verify(&msg, &sig).is_ok())
            .map(|k| Some(hex::encode(k.to_bytes())))
            .ok_or_else(|| {
                PluginErrorKind::BadSignature(
                    "no trusted key verifies the policy (wrong key, or the document changed after signing)".into(),
                )
            })
    }

    /// `policy.json`'s bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let envelope = Envelope {
            document: self.raw.clone(),
            signature: self.signature.clone(),
        };
        serde_json::to_vec_pretty(&envelope).unwrap_or_default()
    }

    /// Parses `policy.json` (from `origin`, for errors) and checks its shape: format, ids,
    /// hashes, manifests (each a guardrail whose hash is the one listed), limits.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(invalid(format!(
                "{DOCUMENT_FILE} is {} bytes, over {MAX_DOCUMENT}",
                bytes.len()
            )));
        }
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("{DOCUMENT_FILE}: {e}")))?;
        let document: PolicyDocument = serde_json::from_value(envelope.document.clone())
            .map_err(|e| invalid(format!("{DOCUMENT_FILE}: document: {e}")))?;
        if document.format != FORMAT {
            return Err(invalid(format!(
                "format {:?}; this gateway reads {FORMAT:?}",
                document.format
            )));
        }
        if !valid_id(&document.id) {
            return Err(invalid(format!("id {:?}: use [a-z0-9._-]", document.id)));
        }
        if document.plugins.len() > MAX_PLUGINS {
            return Err(invalid(format!(
                "{} plugins, over the limit of {MAX_PLUGINS}",
                document.plugins.len()
            )));
        }
        let mut ids = Vec::new();
        for p in &document.plugins {
            let m = Manifest::parse(&p.manifest)
                .map_err(|e| invalid(format!("plugin {}: manifest: {e}", p.file)))?;
            if !m.sha256.eq_ignore_ascii_case(&p.sha256) || p.sha256.len() != 64 {
                return Err(invalid(format!(
                    "plugin {}: listed as sha256 {}, its manifest says {}",
                    p.file, p.sha256, m.sha256
                )));
            }
            if m.world != World::Guardrail {
                return Err(invalid(format!(
                    "plugin {}: a {} plugin; a policy holds guardrail plugins",
                    m.id, m.world
                )));
            }
            if ids.contains(&m.id) {
                return Err(invalid(format!("plugin id `{}` appears twice", m.id)));
            }
            ids.push(m.id);
        }
        Ok(Policy {
            document,
            raw: envelope.document,
            signature: envelope.signature,
        })
    }

    /// Reads `dir/policy.json`.
    pub fn read(dir: &Path) -> Result<Policy, PolicyError> {
        let path = dir.join(DOCUMENT_FILE);
        let bytes = read_bounded(&path, MAX_DOCUMENT)?;
        Policy::from_json(&bytes, &dir.display().to_string())
    }

    /// The ids of its plugins, in order.
    pub fn plugin_ids(&self) -> Vec<String> {
        self.document
            .plugins
            .iter()
            .filter_map(|p| Manifest::parse(&p.manifest).ok().map(|m| m.id))
            .collect()
    }
}

/// Where a component of an unpacked policy lives.
pub fn component_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{}.wasm", sha256.to_ascii_lowercase()))
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, PolicyError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > max {
        return Err(PolicyError::Invalid {
            origin: path.display().to_string(),
            message: format!("over {max} bytes"),
        });
    }
    Ok(bytes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    id: String,
    version: String,
    description: Option<String>,
    #[serde(default)]
    plugins: Vec<SourcePlugin>,
    guardrails: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcePlugin {
    path: String,
    config: Option<serde_yaml::Value>,
}

/// Builds the policy of the source folder `dir` (its `policy.yaml`): reads each component
/// and manifest, checks they match, and validates the fragment. Unsigned.
pub fn build(dir: &Path) -> Result<Built, PolicyError> {
    let source_path = dir.join(SOURCE_FILE);
    let at = |message: String| PolicyError::Source {
        path: source_path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&source_path).map_err(io(&source_path))?;
    let source: Source = serde_yaml::from_str(&text).map_err(|e| at(e.to_string()))?;
    if !valid_id(&source.id) {
        return Err(at(format!("id {:?}: use [a-z0-9._-]", source.id)));
    }
    if source.version.trim().is_empty() {
        return Err(at("version: expected a version (semver, e.g. 1.2.0)".into()));
    }
    if source.plugins.len() > MAX_PLUGINS {
        return Err(at(format!(
            "plugins: {} entries, over the limit of {MAX_PLUGINS}",
            source.plugins.len()
        )));
    }
    let mut plugins = Vec::new();
    let mut components = Vec::new();
    for (i, p) in source.plugins.iter().enumerate() {
        let wasm = dir.join(&p.path);
        let bytes = std::fs::read(&wasm).map_err(io(&wasm))?;
        let manifest_path =
            Manifest::locate(&wasm).map_err(|k| at(format!("plugins[{i}]: {k}")))?;
        let manifest_text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
        let manifest = Manifest::parse(&manifest_text).map_err(|m| PolicyError::Source {
            path: manifest_path.clone(),
            message: m,
        })?;
        let sha = sha256_hex(&bytes);
        if !manifest.sha256.eq_ignore_ascii_case(&sha) {
            return Err(PolicyError::Source {
                path: manifest_path,
                message: format!(
                    "says sha256 {}, the component is {sha}; rebuild or fix the manifest",
                    manifest.sha256
                ),
            });
        }
        let config = match &p.config {
            None => None,
            Some(v) => Some(serde_json::to_value(v).map_err(|e| {
                at(format!(
                    "plugins[{i}].config: expected JSON-compatible YAML: {e}"
                ))
            })?),
        };
        plugins.push(PolicyPlugin {
            file: wasm
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: sha,
            manifest: manifest_text,
            config,
        });
        components.push(bytes);
    }
    let guardrails = match &source.guardrails {
        None => None,
        Some(v) => {
            let v = serde_json::to_value(v)
                .map_err(|e| at(format!("guardrails: expected JSON-compatible YAML: {e}")))?;
            crate::config::resolve_policy_fragment(&v, "guardrails")
                .map_err(|(key, message)| at(format!("{key}: {message}")))?;
            Some(v)
        }
    };
    let policy = Policy::new(PolicyDocument {
        format: FORMAT.to_owned(),
        id: source.id,
        version: source.version,
        description: source.description,
        plugins,
        guardrails,
    });
    // The checks a consumer runs (one guardrail world each, unique ids, limits).
    let policy = Policy::from_json(&policy.to_json(), &dir.display().to_string())?;
    Ok(Built { policy, components })
}

impl Built {
    /// Reads an unpacked policy folder (`policy.json` and `<sha256>.wasm` files), checking
    /// each component against its listed hash.
    pub fn read_dir(dir: &Path) -> Result<Built, PolicyError> {
        let policy = Policy::read(dir)?;
        let mut components = Vec::new();
        for p in &policy.document.plugins {
            let path = component_path(dir, &p.sha256);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            if !sha256_hex(&bytes).eq_ignore_ascii_case(&p.sha256) {
                return Err(PolicyError::Invalid {
                    origin: path.display().to_string(),
                    message: format!("the component is not the listed sha256 {}", p.sha256),
                });
            }
            components.push(bytes);
        }
        Ok(Built { policy, components })
    }

    /// Writes the `.policy` archive: `policy.json`, then each component as `<sha256>.wasm`.
    pub fn write_archive(&self, out: &Path) -> Result<(), PolicyError> {
        let tmp = out.with_extension(format!("tmp-{:08x}", fastrand::u32(..)));
        let write = || -> std::io::Result<()> {
            let file = std::fs::File::create(&tmp)?;
            let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
            let mut append = |name: &str, bytes: &[u8]| {
                let mut header = tar::Header::new_ustar();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, name, bytes)
            };
            append(DOCUMENT_FILE, &self.policy.to_json())?;
            let mut seen = Vec::new();
            for (p, bytes) in self.policy.document.plugins.iter().zip(&self.components) {
                if !seen.contains(&&p.sha256) {
                    append(&format!("{}.wasm", p.sha256), bytes)?;
                    seen.push(&p.sha256);
                }
            }
            tar.into_inner()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
        };
        write().map_err(io(&tmp))?;
        std::fs::rename(&tmp, out).map_err(io(out))
    }
}

/// Unpacks the `.policy` archive at `archive` into the store folder `store`
/// (`policies/<sha256 of policy.json>/`), checking as it reads: `policy.json` first and at
/// most [`MAX_DOCUMENT`] bytes, then only the listed components, each at most `max_size`
/// bytes and with the hash its name says. Returns the folder. The signature is the
/// loader's to check.
pub fn unpack(archive: &Path, store: &Path, max_size: u64) -> Result<PathBuf, PolicyError> {
    let origin = archive.display().to_string();
    let invalid = |message: String| PolicyError::Invalid {
        origin: origin.clone(),
        message,
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let not_tar = |e: std::io::Error| invalid(format!("not a .policy archive (tar): {e}"));
    let mut entries = tar.entries().map_err(not_tar)?;
    let mut first = entries
        .next()
        .ok_or_else(|| invalid("the archive is empty".into()))?
        .map_err(not_tar)?;
    if first.path().ok().as_deref() != Some(Path::new(DOCUMENT_FILE)) {
        return Err(invalid(format!("the first entry is not {DOCUMENT_FILE}")));
    }
    let mut document = Vec::new();
    (&mut first)
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut document)
        .map_err(io(archive))?;
    let policy = Policy::from_json(&document, &origin)?;
    let wanted: Vec<String> = policy
        .document
        .plugins
        .iter()
        .map(|p| p.sha256.to_ascii_lowercase())
        .collect();
    std::fs::create_dir_all(store).map_err(io(store))?;
    let tmp = store.join(format!("tmp-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let unpacked = (|| {
        std::fs::write(tmp.join(DOCUMENT_FILE), &document).map_err(io(&tmp))?;
        let mut found: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(not_tar)?;
            let name = entry
                .path()
                .ok()
                .and_then(|p| p.to_str().map(str::to_owned))
                .unwrap_or_default();
            let sha = name.strip_suffix(".wasm").unwrap_or_default();
            if !wanted.iter().any(|w| w == sha) || found.iter().any(|f| f == sha) {
                return Err(invalid(format!(
                    "unexpected entry {name:?}: only the components {DOCUMENT_FILE} lists, once each"
                )));
            }
            if entry.size() > max_size {
                return Err(invalid(format!(
                    "{name} is {} bytes, over plugins.max_artifact_size ({max_size})",
                    entry.size()
                )));
            }
            let mut bytes = Vec::new();
            entry
                .take(max_size + 1)
                .read_to_end(&mut bytes)
                .map_err(io(archive))?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != sha || bytes.len() as u64 > max_size {
                return Err(invalid(format!("{name}: its content is sha256 {actual}")));
            }
            let path = component_path(&tmp, sha);
            std::fs::write(&path, &bytes).map_err(io(&path))?;
            found.push(sha.to_owned());
        }
        if let Some(missing) = wanted.iter().find(|w| !found.contains(w)) {
            return Err(invalid(format!("the component {missing}.wasm is missing")));
        }
        Ok(())
    })();
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dir = store
        .join("policies")
        .join(hex::encode(Sha256::digest(&document)));
    place(&tmp, &dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Moves a freshly written folder to its content-addressed place in the artifact store
/// (plugins and policies alike); a concurrent writer of the same content may have won, and
/// then its copy is used.
pub(crate) fn place(tmp: &Path, dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if let Err(e) = std::fs::rename(tmp, dir) {
        let _ = std::fs::remove_dir_all(tmp);
        if !dir.is_dir() {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> PolicyDocument {
        PolicyDocument {
            format: FORMAT.into(),
            id: "baseline".into(),
            version: "1.0.0".into(),
            description: None,
            plugins: Vec::new(),
            guardrails: Some(serde_json::json!({"upgoing": {"api_keys": "block"}})),
        }
    }

    #[test]
    fn the_signature_covers_the_whole_document() {
        let key = [9u8; 32];
        let public =
            VerifyingKey::from_bytes(&SigningKey::from_bytes(&key).verifying_key().to_bytes())
                .unwrap();
        let mut p = Policy::new(document());
        assert!(matches!(
            p.verify(&[public]),
            Err(PluginErrorKind::Unsigned)
        ));
        p.sign(&key);
        let read = Policy::from_json(&p.to_json(), "t").unwrap();
        assert!(read.verify(&[public]).unwrap().is_some());
        assert_eq!(read.verify(&[]).unwrap(), None);

        // Any change to the fragment (or version, or a plugin) breaks it.
        let mut json: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        json["document"]["guardrails"]["upgoing"]["api_keys"] = "warn".into();
        let tampered = Policy::from_json(&serde_json::to_vec(&json).unwrap(), "t").unwrap();
        assert!(matches!(
            tampered.verify(&[public]),
            Err(PluginErrorKind::BadSignature(_))
        ));
        // An unknown field is refused rather than ignored (and left unsigned).
        json["document"]["extra"] = 1.into();
        assert!(Policy::from_json(&serde_json::to_vec(&json).unwrap(), "t").is_err());
    }

    #[test]
    fn documents_are_checked() {
        let mut d = document();
        d.format = "other/2".into();
        let e = Policy::from_json(&Policy::new(d).to_json(), "t").unwrap_err();
        assert!(e.to_string().contains("format"), "{e}");
        let mut d = document();
        d.id = "Bad Id".into();
        assert!(Policy::from_json(&Policy::new(d).to_json(), "t").is_err());
        let big = vec![b' '; MAX_DOCUMENT as usize + 1];
        assert!(Policy::from_json(&big, "t").is_err());
    }
}

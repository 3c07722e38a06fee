//! Plugins as OCI artifacts: `bitrouter plugin push` / `pull` and `oci:` references in the
//! config. The layout is the CNCF Wasm OCI artifact's, so generic tools (`oras`, `wkg`, the
//! registry's HTTP API) read it too: config media type `application/vnd.wasm.config.v0+json`,
//! exactly one `application/wasm` layer holding the component. The plugin's own manifest
//! (`plugin.toml`, with its signature) rides base64-encoded as the annotation
//! `dev.bitrouter.plugin.manifest` on the OCI manifest; the loader then checks it exactly as for a file (hash, signature,
//! capabilities), so the registry is never trusted.
//!
//! A policy (`policy.rs`) is an artifact of the same shape: its `policy.json` as the config
//! blob (media type `application/vnd.bitrouter.policy.v1+json`), one `application/wasm`
//! layer per component.
//!
//! Pulled artifacts live in a content-addressed store (`plugins.artifact_dir`):
//! `sha256/<manifest digest>/component.wasm` + `component.plugin.toml`, and
//! `refs/<reference>` holding the last verified digest of a tag (written only after the
//! loader accepted the plugin, so an unsigned push to a followed tag never becomes the
//! fallback). A registry that cannot be
//! reached falls back to the store (a digest reference always; a tag at its last verified
//! digest) and says so; one that answers with an error does not.
//!
//! Plain HTTP is used only for loopback registries (`127.0.0.1`, `localhost`, `[::1]`) and
//! those `plugins.registries` marks `plain_http`. Credentials come from
//! `plugins.registries.<host>` (`username` + `password_env`), else from the docker
//! `config.json`'s credential helpers or `auths` (`credentials.rs`), else the request is
//! anonymous.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use super::policy;

mod credentials;

pub use crate::config::{Registries, RegistryLogin};
mod store;

pub use store::remember_verified;
use store::{offline, store_files, stored};

/// The config blob's media type in the Wasm OCI artifact layout.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The OCI manifest annotation holding the plugin's `plugin.toml`.
pub const MANIFEST_ANNOTATION: &str = "dev.bitrouter.plugin.manifest";
pub use crate::config::DEFAULT_MAX_ARTIFACT_SIZE;

/// Why an artifact could not be pushed or pulled.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Not an OCI reference (`registry/repository[:tag|@sha256:…]`).
    #[error("`{reference}` is not an OCI reference: {message}")]
    Reference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        message: String,
    },
    /// The registry answered with an error (401, 404, a bad manifest, ...).
    #[error("{reference}: {source}")]
    Registry {
        /// The reference asked for.
        reference: String,
        /// The registry client's error.
        source: OciDistributionError,
    },
    /// The artifact is not a plugin in the Wasm OCI layout.
    #[error("{reference}: not a BitRouter plugin artifact: {message}")]
    Layout {
        /// The reference asked for.
        reference: String,
        /// What does not fit.
        message: String,
    },
    /// The component is larger than `plugins.max_artifact_size`.
    #[error("{reference}: the component is {size} bytes, over plugins.max_artifact_size ({max})")]
    TooLarge {
        /// The reference asked for.
        reference: String,
        /// Its size, bytes.
        size: u64,
        /// The limit, bytes.
        max: u64,
    },
    /// The registry could not be reached and nothing verified is stored for the reference.
    #[error(
        "{reference}: the registry cannot be reached ({cause}) and no verified copy is stored in {store}"
    )]
    Offline {
        /// The reference asked for.
        reference: String,
        /// Why the registry could not be reached.
        cause: String,
        /// The artifact store looked in.
        store: String,
    },
    /// No login could be had for the registry (a docker credential helper failed, or the
    /// docker config is not readable as one).
    #[error("{reference}: {message}")]
    Credentials {
        /// The reference asked for.
        reference: String,
        /// What failed.
        message: String,
    },
    /// Reading or writing the local files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A pulled (or stored) plugin or policy, ready for the loader.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// Its folder in the artifact store: `component.wasm` + `component.plugin.toml` for a
    /// plugin, `policy.json` + `<sha256>.wasm` files for a policy.
    pub dir: PathBuf,
    /// The OCI manifest's digest (`sha256:…`).
    pub digest: String,
    /// The registry could not be reached; this is the stored copy.
    pub from_store: bool,
}

impl Pulled {
    /// A pulled plugin's component (its manifest is beside it).
    pub fn wasm(&self) -> PathBuf {
        self.dir.join("component.wasm")
    }
}

/// The files a stored plugin's folder holds.
const PLUGIN_FILES: &[&str] = &["component.wasm", "component.plugin.toml"];
/// The file a stored policy's folder holds (with the components it lists).
const POLICY_FILES: &[&str] = &[policy::DOCUMENT_FILE];

/// Parses `oci://registry/repository:tag` (the scheme is optional) or a `@sha256:` form.
pub fn reference(text: &str) -> Result<Reference, OciError> {
    let bare = text.strip_prefix("oci://").unwrap_or(text);
    bare.parse::<Reference>().map_err(|e| OciError::Reference {
        reference: text.to_owned(),
        message: e.to_string(),
    })
}

/// `registry/repository[:tag]` of a reference or an origin (`oci://…@sha256:…`): the
/// `oci://` scheme and any digest removed.
pub fn without_digest(reference: &str) -> &str {
    let bare = reference.strip_prefix("oci://").unwrap_or(reference);
    bare.split_once('@').map_or(bare, |(name, _)| name)
}

fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

/// A client for `reference`'s registry and the login for it. A credential helper may take
/// up to `credentials::HELPER_TIMEOUT`, so the login is looked up off the async threads.
async fn client(
    reference: &Reference,
    registries: &Registries,
) -> Result<(Client, RegistryAuth), OciError> {
    let registry = reference.resolve_registry().to_owned();
    let auth = {
        let (registry, registries) = (registry.clone(), registries.clone());
        tokio::task::spawn_blocking(move || credentials::auth_for(&registry, &registries))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    }
    .map_err(|message| OciError::Credentials {
        reference: reference.whole(),
        message,
    })?;
    let plain = registries.get(&registry).is_some_and(|r| r.plain_http);
    let protocol = if plain || is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        // One wasm layer: nothing to parallelize, and no platform index to resolve.
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    });
    Ok((client, auth))
}

fn registry_error(reference: &str, source: OciDistributionError) -> OciError {
    OciError::Registry {
        reference: reference.to_owned(),
        source,
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Pushes the component at `wasm` with its manifest (`plugin.toml` beside it, as signed) to
/// `reference`; returns the pushed manifest's digest.
pub async fn push(
    wasm: &Path,
    reference_text: &str,
    registries: &Registries,
) -> Result<String, OciError> {
    let reference = reference(reference_text)?;
    let bytes = std::fs::read(wasm).map_err(io(wasm))?;
    let manifest_path = Manifest::locate(wasm).map_err(|k| OciError::Layout {
        reference: reference_text.to_owned(),
        message: k.to_string(),
    })?;
    let manifest_text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
    let manifest = Manifest::parse(&manifest_text).map_err(|message| OciError::Layout {
        reference: reference_text.to_owned(),
        message: format!("{}: {message}", manifest_path.display()),
    })?;
    let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if !layer_digest.ends_with(&manifest.sha256.to_ascii_lowercase()) {
        return Err(OciError::Layout {
            reference: reference_text.to_owned(),
            message: format!(
                "{} says sha256 {}, the component is {layer_digest}; rebuild or fix the manifest before pushing",
                manifest_path.display(),
                manifest.sha256
            ),
        });
    }
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let config = serde_json::json!({
        "created": created,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap_or_default(),
        WASM_CONFIG_MEDIA_TYPE.to_owned(),
        None,
    );
    let layers = [ImageLayer::new(
        bytes,
        WASM_LAYER_MEDIA_TYPE.to_owned(),
        None,
    )];
    let annotations = BTreeMap::from([
        // Base64: the registry client writes annotations as canonical JSON, which leaves a
        // newline in a string raw, and registries (distribution 2.8) refuse that manifest.
        (MANIFEST_ANNOTATION.to_owned(), B64.encode(manifest_text)),
        (
            "org.opencontainers.image.title".to_owned(),
            manifest.id.clone(),
        ),
        (
            "org.opencontainers.image.version".to_owned(),
            manifest.version.clone(),
        ),
        ("org.opencontainers.image.created".to_owned(), created),
    ]);
    let mut oci_manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    // Without it, distribution 2.x cannot tell an OCI manifest from a Docker schema 1 one.
    oci_manifest.media_type = Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned());
    let (client, auth) = client(&reference, registries).await?;
    client
        .push(&reference, &layers, config, &auth, Some(oci_manifest))
        .await
        .map_err(|e| registry_error(reference_text, e))?;
    let digest = client
        .fetch_manifest_digest(&reference, &auth)
        .await
        .map_err(|e| registry_error(reference_text, e))?;
    Ok(digest)
}

/// The digest a reference resolves to in its registry now (a `HEAD` of the manifest): what
/// the update poller compares with the running one.
pub async fn current_digest(
    reference_text: &str,
    registries: &Registries,
) -> Result<String, OciError> {
    let reference = reference(reference_text)?;
    let (client, auth) = client(&reference, registries).await?;
    client
        .fetch_manifest_digest(&reference, &auth)
        .await
        .map_err(|e| registry_error(reference_text, e))
}

/// Which artifact a pull expects: what its config media type is and what its folder in the
/// store holds.
#[derive(Clone, Copy)]
enum Kind {
    Plugin,
    Policy,
}

impl Kind {
    fn files(self) -> &'static [&'static str] {
        match self {
            Kind::Plugin => PLUGIN_FILES,
            Kind::Policy => POLICY_FILES,
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Kind::Plugin => WASM_CONFIG_MEDIA_TYPE,
            Kind::Policy => policy::POLICY_MEDIA_TYPE,
        }
    }

    /// The config key a reference of this kind belongs under.
    fn key(self) -> &'static str {
        match self {
            Kind::Plugin => "guardrails.plugins",
            Kind::Policy => "guardrails.policies",
        }
    }
}

/// A reference resolved against its registry: already in the store (or the store's copy
/// when the registry cannot be reached), or a manifest of the expected kind to fetch.
enum Resolved {
    Stored(Pulled),
    Fetch(Box<Fetch>),
}

/// A manifest to fetch the blobs of, with the client that authenticated for it.
struct Fetch {
    client: Client,
    reference: Reference,
    manifest: OciImageManifest,
    digest: String,
}

/// Fetches the manifest of `reference_text`, falls back to the store when the registry
/// cannot be reached, and checks the config media type is `kind`'s (naming the other kind
/// when it is that one).
async fn resolve(
    reference_text: &str,
    store: &Path,
    registries: &Registries,
    kind: Kind,
) -> Result<Resolved, OciError> {
    let reference = reference(reference_text)?;
    let (client, auth) = client(&reference, registries).await?;
    let (manifest, digest) = match client.pull_image_manifest(&reference, &auth).await {
        Ok(m) => m,
        Err(OciDistributionError::RequestError(e)) => {
            let cause = e.to_string();
            return offline(reference_text, &reference, store, cause, kind.files())
                .map(Resolved::Stored);
        }
        Err(e) => return Err(registry_error(reference_text, e)),
    };
    if let Some(dir) = stored(store, &digest, kind.files()) {
        return Ok(Resolved::Stored(Pulled {
            dir,
            digest,
            from_store: false,
        }));
    }
    let found = manifest.config.media_type.as_str();
    if found != kind.media_type() {
        let other = [Kind::Plugin, Kind::Policy]
            .into_iter()
            .find(|k| k.media_type() == found)
            .map(|k| format!(" (name it under {})", k.key()))
            .unwrap_or_default();
        return Err(OciError::Layout {
            reference: reference_text.to_owned(),
            message: format!(
                "its config media type is {found:?}, expected {}{other}",
                kind.media_type()
            ),
        });
    }
    Ok(Resolved::Fetch(Box::new(Fetch {
        client,
        reference,
        manifest,
        digest,
    })))
}

/// Checks a layer is a component within the size limit (before any byte is fetched).
fn wasm_layer(
    layer: &oci_client::manifest::OciDescriptor,
    reference_text: &str,
    max_size: u64,
) -> Result<(), OciError> {
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(OciError::Layout {
            reference: reference_text.to_owned(),
            message: format!(
                "a layer's media type is {:?}, expected {WASM_LAYER_MEDIA_TYPE}",
                layer.media_type
            ),
        });
    }
    let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
    if size > max_size {
        return Err(OciError::TooLarge {
            reference: reference_text.to_owned(),
            size,
            max: max_size,
        });
    }
    Ok(())
}

/// Pulls `reference` into the artifact store `store` (or finds it there), checking the
/// layout, the size limit and the layer's digest. The plugin's hash, signature and
/// capabilities are the loader's to check, as for any file.
pub async fn pull(
    reference_text: &str,
    store: &Path,
    max_size: u64,
    registries: &Registries,
) -> Result<Pulled, OciError> {
    let Fetch {
        client,
        reference,
        manifest: oci_manifest,
        digest,
    } = match resolve(reference_text, store, registries, Kind::Plugin).await? {
        Resolved::Stored(p) => return Ok(p),
        Resolved::Fetch(f) => *f,
    };
    let layout = |message: String| OciError::Layout {
        reference: reference_text.to_owned(),
        message,
    };
    let [layer] = oci_manifest.layers.as_slice() else {
        return Err(layout(format!(
            "it has {} layers, expected one {WASM_LAYER_MEDIA_TYPE} layer",
            oci_manifest.layers.len()
        )));
    };
    wasm_layer(layer, reference_text, max_size)?;
    let plugin_toml = oci_manifest
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANIFEST_ANNOTATION))
        .ok_or_else(|| {
            layout(format!(
                "its manifest has no {MANIFEST_ANNOTATION} annotation"
            ))
        })?;
    let plugin_toml = B64
        .decode(plugin_toml)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            layout(format!(
                "its {MANIFEST_ANNOTATION} annotation is not base64 text"
            ))
        })?;
    let bytes = blob(&client, &reference, reference_text, layer, max_size).await?;
    let dir = store_files(
        store,
        &digest,
        &[
            ("component.wasm".to_owned(), &bytes),
            ("component.plugin.toml".to_owned(), plugin_toml.as_bytes()),
        ],
    )?;
    Ok(Pulled {
        dir,
        digest,
        from_store: false,
    })
}

/// One blob of `reference`, at most `max` bytes whatever the registry sends, and checked
/// against the digest its descriptor names: the registry's word is not taken.
async fn blob(
    client: &Client,
    reference: &Reference,
    reference_text: &str,
    descriptor: &oci_client::manifest::OciDescriptor,
    max: u64,
) -> Result<Vec<u8>, OciError> {
    // The client authenticated when it fetched the manifest; blob requests reuse its token.
    let size = u64::try_from(descriptor.size).unwrap_or(u64::MAX);
    let mut sink = Bounded {
        bytes: Vec::with_capacity(usize::try_from(size.min(max)).unwrap_or(0)),
        max,
    };
    client
        .pull_blob(reference, descriptor, &mut sink)
        .await
        .map_err(|e| registry_error(reference_text, e))?;
    let bytes = sink.bytes;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if actual != descriptor.digest || bytes.len() as u64 > max {
        return Err(OciError::Layout {
            reference: reference_text.to_owned(),
            message: format!(
                "a blob's content is {actual} ({} bytes), the manifest names {}",
                bytes.len(),
                descriptor.digest
            ),
        });
    }
    Ok(bytes)
}

/// Pushes a policy: its `policy.json` as the config blob ([`policy::POLICY_MEDIA_TYPE`]),
/// each component as an `application/wasm` layer (titled with its file name). Returns the
/// pushed manifest's digest.
pub async fn push_policy(
    built: &policy::Built,
    reference_text: &str,
    registries: &Registries,
) -> Result<String, OciError> {
    let reference = reference(reference_text)?;
    let document = &built.policy.document;
    let config = Config::new(
        built.policy.to_json(),
        policy::POLICY_MEDIA_TYPE.to_owned(),
        None,
    );
    let mut layers: Vec<ImageLayer> = Vec::new();
    let mut pushed: Vec<&str> = Vec::new();
    for (p, bytes) in document.plugins.iter().zip(&built.components) {
        if pushed.contains(&p.sha256.as_str()) {
            continue;
        }
        pushed.push(&p.sha256);
        layers.push(ImageLayer::new(
            bytes.clone(),
            WASM_LAYER_MEDIA_TYPE.to_owned(),
            Some(BTreeMap::from([(
                "org.opencontainers.image.title".to_owned(),
                p.file.clone(),
            )])),
        ));
    }
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let annotations = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_owned(),
            document.id.clone(),
        ),
        (
            "org.opencontainers.image.version".to_owned(),
            document.version.clone(),
        ),
        ("org.opencontainers.image.created".to_owned(), created),
    ]);
    let mut oci_manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    oci_manifest.media_type = Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned());
    let (client, auth) = client(&reference, registries).await?;
    client
        .push(&reference, &layers, config, &auth, Some(oci_manifest))
        .await
        .map_err(|e| registry_error(reference_text, e))?;
    client
        .fetch_manifest_digest(&reference, &auth)
        .await
        .map_err(|e| registry_error(reference_text, e))
}

/// Pulls the policy `reference` into the store (or finds it there): the document (at most
/// [`policy::MAX_DOCUMENT`] bytes, well-formed) and exactly the components it lists, each
/// at most `max_size` bytes and with the listed hash. The signature is the loader's to
/// check.
pub async fn pull_policy(
    reference_text: &str,
    store: &Path,
    max_size: u64,
    registries: &Registries,
) -> Result<Pulled, OciError> {
    let Fetch {
        client,
        reference,
        manifest: oci_manifest,
        digest,
    } = match resolve(reference_text, store, registries, Kind::Policy).await? {
        Resolved::Stored(p) => return Ok(p),
        Resolved::Fetch(f) => *f,
    };
    let layout = |message: String| OciError::Layout {
        reference: reference_text.to_owned(),
        message,
    };
    let document = blob(
        &client,
        &reference,
        reference_text,
        &oci_manifest.config,
        policy::MAX_DOCUMENT,
    )
    .await?;
    let parsed =
        policy::Policy::from_json(&document, reference_text).map_err(|e| layout(e.to_string()))?;
    let mut wanted: Vec<String> = parsed
        .document
        .plugins
        .iter()
        .map(|p| format!("sha256:{}", p.sha256.to_ascii_lowercase()))
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut have: Vec<&str> = oci_manifest
        .layers
        .iter()
        .map(|l| l.digest.as_str())
        .collect();
    have.sort_unstable();
    if have != wanted {
        return Err(layout(format!(
            "its layers are {have:?}, the policy lists the components {wanted:?}"
        )));
    }
    for layer in &oci_manifest.layers {
        wasm_layer(layer, reference_text, max_size)?;
    }
    let mut files = vec![(policy::DOCUMENT_FILE.to_owned(), document)];
    for layer in &oci_manifest.layers {
        let bytes = blob(&client, &reference, reference_text, layer, max_size).await?;
        let sha = layer.digest.trim_start_matches("sha256:");
        files.push((format!("{sha}.wasm"), bytes));
    }
    let files: Vec<(String, &[u8])> = files.iter().map(|(n, b)| (n.clone(), &b[..])).collect();
    let dir = store_files(store, &digest, &files)?;
    Ok(Pulled {
        dir,
        digest,
        from_store: false,
    })
}

/// A download buffer that refuses to grow past `max` bytes, whatever the registry sends.
struct Bounded {
    bytes: Vec<u8>,
    max: u64,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if (self.bytes.len() + data.len()) as u64 > self.max {
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the layer is larger than plugins.max_artifact_size ({} bytes)",
                self.max
            ))));
        }
        self.bytes.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// [`pull`] from synchronous code (the loader, CLI verbs, a tokio worker at start-up).
pub fn pull_blocking(
    reference_text: &str,
    store: &Path,
    max_size: u64,
    registries: &Registries,
) -> Result<Pulled, OciError> {
    blocking(store, pull(reference_text, store, max_size, registries))
}

/// [`pull_policy`] from synchronous code.
pub fn pull_policy_blocking(
    reference_text: &str,
    store: &Path,
    max_size: u64,
    registries: &Registries,
) -> Result<Pulled, OciError> {
    blocking(
        store,
        pull_policy(reference_text, store, max_size, registries),
    )
}

/// Runs a pull on a runtime of its own, on a thread of its own (the caller may be a tokio
/// worker, which must not block on a runtime).
fn blocking(
    store: &Path,
    pull: impl std::future::Future<Output = Result<Pulled, OciError>> + Send,
) -> Result<Pulled, OciError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io(store))?;
            runtime.block_on(pull)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(OciError::Io {
                path: store.display().to_string(),
                source: std::io::Error::other("the pull thread panicked"),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_loopback() {
        let r = reference("oci://127.0.0.1:5000/guardrails/acme:1.2.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "guardrails/acme");
        assert_eq!(r.tag(), Some("1.2.0"));
        assert!(is_loopback(r.registry()));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.acme.internal:5000"));
        assert!(reference("oci://UPPER/Case:x").is_err());
        let pinned = reference(
            "registry.acme.internal/p@sha256:0123456789012345678901234567890123456789012345678901234567890123",
        )
        .unwrap();
        assert!(pinned.digest().is_some());
    }
}

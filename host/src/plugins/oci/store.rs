//! The content-addressed artifact store (`plugins.artifact_dir`): `sha256/<digest>/` per
//! pulled artifact, `refs/<reference>` per followed tag holding its last verified digest,
//! and the fallback to them when a registry cannot be reached.

use std::path::{Path, PathBuf};

use oci_client::Reference;

use super::{OciError, Pulled, io, policy, reference};

/// Where a manifest digest's files live in the store.
pub(super) fn digest_dir(store: &Path, digest: &str) -> PathBuf {
    store
        .join("sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The store's record of a tag reference: the file holding its last verified digest.
pub(super) fn ref_file(store: &Path, reference: &Reference) -> PathBuf {
    let name: String = reference
        .whole()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    store.join("refs").join(name)
}

/// The folder of `digest` in the store, if it holds `files`.
pub(super) fn stored(store: &Path, digest: &str, files: &[&str]) -> Option<PathBuf> {
    let dir = digest_dir(store, digest);
    files.iter().all(|f| dir.join(f).is_file()).then_some(dir)
}

/// Writes `files` into a fresh folder and moves it to `digest`'s place in the store.
pub(super) fn store_files(
    store: &Path,
    digest: &str,
    files: &[(String, &[u8])],
) -> Result<PathBuf, OciError> {
    let tmp = store.join(format!("tmp-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for (name, bytes) in files {
        let path = tmp.join(name);
        if let Err(e) = std::fs::write(&path, bytes) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io(&path)(e));
        }
    }
    let dir = digest_dir(store, digest);
    policy::place(&tmp, &dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Records `digest` as the last verified one of a tag reference: what a start with the
/// registry unreachable loads. Called once the loader has checked the plugin (hash,
/// signature, capabilities), never for a mere pull.
pub fn remember_verified(store: &Path, reference_text: &str, digest: &str) -> Result<(), OciError> {
    let reference = reference(reference_text)?;
    if reference.digest().is_some() {
        return Ok(());
    }
    let file = ref_file(store, &reference);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(&file, digest).map_err(io(&file))
}

/// The stored copy of `reference` when the registry cannot be reached.
pub(super) fn offline(
    reference_text: &str,
    reference: &Reference,
    store: &Path,
    cause: String,
    files: &[&str],
) -> Result<Pulled, OciError> {
    let digest = match reference.digest() {
        Some(d) => Some(d.to_owned()),
        None => std::fs::read_to_string(ref_file(store, reference))
            .ok()
            .map(|d| d.trim().to_owned()),
    };
    match digest
        .as_deref()
        .and_then(|d| Some((d, stored(store, d, files)?)))
    {
        Some((digest, dir)) => {
            tracing::warn!(
                reference = reference_text,
                digest,
                error = %cause,
                "registry unreachable; loading the last verified copy from the artifact store"
            );
            Ok(Pulled {
                dir,
                digest: digest.to_owned(),
                from_store: true,
            })
        }
        None => Err(OciError::Offline {
            reference: reference_text.to_owned(),
            cause,
            store: store.display().to_string(),
        }),
    }
}

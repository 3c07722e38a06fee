//! Rollback protection across restarts: the highest version of each signed plugin pulled
//! from a registry and of each signed policy that this machine has accepted, kept in the
//! artifact store (`<plugins.artifact_dir>/accepted-versions.json`).
//!
//! Within one process the running set is the reference (`gateway.rs`, `refuse_rollback`);
//! this file carries it over a restart, so a followed tag moved back to an older signed
//! artifact is refused at the next start too, not only by a running gateway. Only what a
//! signature vouches for and what came through distribution is recorded: a plugin file
//! named by path is the operator's own, and unsigned code has no version anyone vouched
//! for. Marks only rise; a build the config pins (a plugin by sha256, a policy by digest)
//! loads below its mark and leaves the mark where it was. A version that is not semver is
//! neither compared nor recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::LoadedPlugins;

/// The file in the artifact store.
pub const FILE: &str = "accepted-versions.json";

/// The most this file may hold: one line per plugin and policy id, so even thousands fit;
/// a larger file is not ours and is refused rather than read into memory.
const MAX_FILE: u64 = 1024 * 1024;

/// Why the accepted versions could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    /// The file exists but cannot be read, or the new one cannot be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not what this module writes. Trust fails closed: the gateway does not
    /// start with its rollback protection silently reset.
    #[error(
        "{}: {reason}; it records the highest version of each signed plugin and policy this machine accepted (rollback protection): repair it, or delete it to start the record over",
        path.display()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// What kind of thing a version belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plugin pulled from an OCI registry (not part of a policy: the policy's version
    /// covers its plugins).
    Plugin,
    /// A policy (`guardrails.policies`), from a file or a registry.
    Policy,
}

/// One signed plugin or policy of a loaded set, as rollback protection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Plugin or policy.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// Its version (semver).
    pub version: semver::Version,
    /// The config wants this exact build.
    pub pinned: bool,
    /// How the config pins it, for the error message.
    pub pin_hint: String,
}

/// The record: the highest accepted version per plugin id and per policy id.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedVersions {
    #[serde(default)]
    plugins: BTreeMap<String, semver::Version>,
    #[serde(default)]
    policies: BTreeMap<String, semver::Version>,
}

/// The signed entries of a loaded set that rollback protection covers.
pub fn entries(loaded: &LoadedPlugins) -> Vec<Entry> {
    let mut out = Vec::new();
    for p in &loaded.policies {
        if p.info.signer.is_none() {
            continue;
        }
        if let Ok(version) = semver::Version::parse(&p.info.version) {
            out.push(Entry {
                kind: Kind::Policy,
                id: p.info.id.clone(),
                version,
                pinned: p.info.pinned,
                pin_hint: "name it by digest (`oci: …@sha256:…`)".into(),
            });
        }
    }
    for p in loaded.iter() {
        let info = p.info();
        if info.signer.is_none() || info.origin.is_none() || info.policy.is_some() {
            continue;
        }
        if let Ok(version) = semver::Version::parse(&info.version) {
            out.push(Entry {
                kind: Kind::Plugin,
                id: info.id.to_string(),
                version,
                pinned: info.pinned,
                pin_hint: format!("pin it by sha256 (`sha256: {}`)", info.sha256),
            });
        }
    }
    out
}

impl AcceptedVersions {
    /// The record in `store`; empty when there is none yet.
    pub fn read(store: &Path) -> Result<AcceptedVersions, VersionsError> {
        let path = store.join(FILE);
        let io = |source| VersionsError::Io {
            path: path.clone(),
            source,
        };
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AcceptedVersions::default());
            }
            Err(e) => return Err(io(e)),
        };
        if len > MAX_FILE {
            return Err(VersionsError::Invalid {
                path,
                reason: format!("{len} bytes, more than the {MAX_FILE} it may hold"),
            });
        }
        let text = std::fs::read(&path).map_err(io)?;
        serde_json::from_slice(&text).map_err(|e| VersionsError::Invalid {
            path,
            reason: e.to_string(),
        })
    }

    /// The highest version accepted for `kind` `id`.
    pub fn get(&self, kind: Kind, id: &str) -> Option<&semver::Version> {
        self.map(kind).get(id)
    }

    fn map(&self, kind: Kind) -> &BTreeMap<String, semver::Version> {
        match kind {
            Kind::Plugin => &self.plugins,
            Kind::Policy => &self.policies,
        }
    }

    fn map_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, semver::Version> {
        match kind {
            Kind::Plugin => &mut self.plugins,
            Kind::Policy => &mut self.policies,
        }
    }

    /// Refuses an entry older than its mark, unless the config pins it. `store` only names
    /// the file in the message.
    pub fn check(&self, entries: &[Entry], store: &Path) -> Result<(), String> {
        for e in entries {
            let Some(mark) = self.get(e.kind, &e.id) else {
                continue;
            };
            if e.version < *mark && !e.pinned {
                let kind = match e.kind {
                    Kind::Plugin => "plugin",
                    Kind::Policy => "policy",
                };
                return Err(format!(
                    "{kind} `{}`: version {} is older than {mark}, which this machine accepted before ({}); a rollback needs the config to {}, or that mark removed from the file",
                    e.id,
                    e.version,
                    store.join(FILE).display(),
                    e.pin_hint
                ));
            }
        }
        Ok(())
    }

    /// Raises the marks to `entries`' versions; whether any moved.
    pub fn raise(&mut self, entries: &[Entry]) -> bool {
        let mut moved = false;
        for e in entries {
            let map = self.map_mut(e.kind);
            if map.get(&e.id).is_none_or(|mark| *mark < e.version) {
                map.insert(e.id.clone(), e.version.clone());
                moved = true;
            }
        }
        moved
    }

    /// Writes the record into `store` (a new file renamed over the old, so a crash leaves
    /// one or the other whole).
    pub fn write(&self, store: &Path) -> Result<(), VersionsError> {
        let path = store.join(FILE);
        let io = |source| VersionsError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(store).map_err(io)?;
        let tmp = store.join(format!("{FILE}.{}.tmp", std::process::id()));
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        std::fs::write(&tmp, &text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// Refuses `loaded` when it rolls a signed plugin or policy back below what this machine
/// accepted before (the record in `store`).
pub fn check(store: &Path, loaded: &LoadedPlugins) -> Result<(), String> {
    let entries = entries(loaded);
    if entries.is_empty() {
        return Ok(());
    }
    AcceptedVersions::read(store)
        .map_err(|e| e.to_string())?
        .check(&entries, store)
}

/// Records `loaded`'s versions as accepted, once the whole set is (loaded, verified, not a
/// rollback). Read again just before, so two gateways sharing the store keep each other's
/// marks but in a race between the two.
pub fn record(store: &Path, loaded: &LoadedPlugins) -> Result<(), VersionsError> {
    let entries = entries(loaded);
    if entries.is_empty() {
        return Ok(());
    }
    let mut accepted = AcceptedVersions::read(store)?;
    if accepted.raise(&entries) {
        accepted.write(store)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, id: &str, v: &str, pinned: bool) -> Entry {
        Entry {
            kind,
            id: id.into(),
            version: semver::Version::parse(v).unwrap(),
            pinned,
            pin_hint: "pin it".into(),
        }
    }

    #[test]
    fn no_file_is_an_empty_record() {
        let dir = tempfile::tempdir().unwrap();
        let r = AcceptedVersions::read(&dir.path().join("not-yet")).unwrap();
        assert_eq!(r, AcceptedVersions::default());
        r.check(&[entry(Kind::Plugin, "a", "0.1.0", false)], dir.path())
            .unwrap();
    }

    #[test]
    fn marks_rise_survive_a_write_and_refuse_what_is_older_unless_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("artifacts");
        let mut r = AcceptedVersions::default();
        assert!(r.raise(&[
            entry(Kind::Plugin, "acme", "1.2.0", false),
            entry(Kind::Policy, "baseline", "2026.12.0", false),
        ]));
        // Lower versions never lower a mark; the same versions change nothing.
        assert!(!r.raise(&[entry(Kind::Plugin, "acme", "1.1.0", true)]));
        assert!(!r.raise(&[entry(Kind::Plugin, "acme", "1.2.0", false)]));
        r.write(&store).unwrap();
        let back = AcceptedVersions::read(&store).unwrap();
        assert_eq!(back, r);

        let e = back
            .check(&[entry(Kind::Plugin, "acme", "1.1.9", false)], &store)
            .unwrap_err();
        assert!(
            e.contains("plugin `acme`: version 1.1.9 is older than 1.2.0"),
            "{e}"
        );
        assert!(e.contains(FILE) && e.contains("pin it"), "{e}");
        let e = back
            .check(
                &[entry(Kind::Policy, "baseline", "2026.11.0", false)],
                &store,
            )
            .unwrap_err();
        assert!(e.starts_with("policy `baseline`"), "{e}");
        // Pinned, equal, newer, another kind with the same id, or an unknown id: accepted.
        back.check(
            &[
                entry(Kind::Plugin, "acme", "1.0.0", true),
                entry(Kind::Plugin, "acme", "1.2.0", false),
                entry(Kind::Plugin, "acme", "2.0.0", false),
                entry(Kind::Policy, "acme", "0.0.1", false),
                entry(Kind::Plugin, "other", "0.0.1", false),
            ],
            &store,
        )
        .unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_record_fails_closed_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "not json",
            r#"{"plugins": {"acme": "one"}}"#,
            r#"{"plugins": {}, "extra": 1}"#,
        ] {
            std::fs::write(dir.path().join(FILE), text).unwrap();
            let e = AcceptedVersions::read(dir.path()).unwrap_err().to_string();
            assert!(e.contains(FILE) && e.contains("delete it"), "{text}: {e}");
        }
        let big = vec![b' '; MAX_FILE as usize + 1];
        std::fs::write(dir.path().join(FILE), big).unwrap();
        let e = AcceptedVersions::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("more than"), "{e}");
    }
}

//! On-disk cache of compiled components, so a restart does not recompile (a 12 MB
//! JavaScript component takes seconds to compile; loading its artifact takes milliseconds).
//!
//! The key is the component's sha256 plus the engine's compatibility hash, which covers the
//! wasmtime version, the target and every compiler setting (fuel, epochs, ...): a different
//! host build simply misses and writes its own entry. Files are written to a temporary name
//! and renamed, so a crash never leaves a torn artifact behind.
//!
//! Trust: loading an artifact runs native code compiled from it, so the cache directory must
//! be writable only by the gateway's user (it is `~/.cache/bitrouter/plugins` by default).
//! An artifact that fails to load (truncated, from another version) is recompiled and
//! replaced.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The wasmtime major version this host is built against (pinned in `host/Cargo.toml`);
/// part of every file name so people can tell entries apart.
const WASMTIME_MAJOR: &str = "48";

/// Where a component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompileSource {
    /// Loaded from the disk cache.
    Cache,
    /// Compiled now (and written to the cache, when there is one).
    Compiled,
}

/// Counters of cache use since the host started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from the cache.
    pub hits: u64,
    /// Components compiled because the cache had none.
    pub misses: u64,
    /// Entries that existed but could not be used (and were replaced).
    pub stale: u64,
}

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_hash: String,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

/// Feeds `Hash` into sha256, which, unlike `DefaultHasher`, is stable across Rust releases.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ])
    }
}

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        CompileCache {
            dir,
            engine_hash: format!("{:016x}", h.finish()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path_for(&self, dir: &Path, sha256: &str) -> PathBuf {
        dir.join(format!(
            "{sha256}-wasmtime{WASMTIME_MAJOR}-{}.cwasm",
            self.engine_hash
        ))
    }

    /// The compiled component for `bytes` (whose sha256 is `sha256`), from the cache when
    /// possible. A cache that cannot be written is logged and otherwise ignored.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        plugin: &str,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, CompileSource)> {
        let Some(dir) = &self.dir else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok((Component::new(engine, bytes)?, CompileSource::Compiled));
        };
        let path = self.path_for(dir, sha256);
        if path.is_file() {
            // SAFETY: the artifact was written by `Component::serialize` of an engine with
            // the same compatibility hash (it is in the file name), in a directory only the
            // gateway's user can write (see the module docs). wasmtime still checks the
            // header and refuses artifacts from another version or configuration.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(engine, &path) };
            match loaded {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(plugin, path = %path.display(), "compiled component loaded from cache");
                    return Ok((component, CompileSource::Cache));
                }
                Err(e) => {
                    self.stale.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(plugin, path = %path.display(), error = %e, "unusable cache entry; recompiling");
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let progress = COMPILE_PROGRESS.load(Ordering::Relaxed) && bytes.len() > 1 << 20;
        let started = std::time::Instant::now();
        if progress {
            eprint!(
                "compiling plugin {plugin} ({:.1} MB of WebAssembly; once, then cached in {}) … ",
                bytes.len() as f64 / (1 << 20) as f64,
                dir.display()
            );
        }
        let component = Component::new(engine, bytes)?;
        if progress {
            eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
        }
        if let Err(e) = Self::write(dir, &path, &component) {
            tracing::warn!(plugin, dir = %dir.display(), error = %e, "cannot write the plugin compile cache");
        } else {
            tracing::debug!(plugin, path = %path.display(), "compiled component written to cache");
        }
        Ok((component, CompileSource::Compiled))
    }

    fn write(dir: &Path, path: &Path, component: &Component) -> wasmtime::Result<()> {
        std::fs::create_dir_all(dir)?;
        let bytes = component.serialize()?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Whether a compile that misses the cache says so on stderr (set by the CLI's verbs when
/// stderr is a terminal: a JavaScript or Python component compiles for 10-30 s, which
/// otherwise looks like a hang).
static COMPILE_PROGRESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the compile progress line on stderr on or off (off by default; the server keeps it
/// off and logs instead).
pub fn show_compile_progress(on: bool) {
    COMPILE_PROGRESS.store(on, Ordering::Relaxed);
}

/// The default cache directory: `$XDG_CACHE_HOME/bitrouter/plugins`, else
/// `$HOME/.cache/bitrouter/plugins`; `None` when neither variable is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("bitrouter").join("plugins"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A component with no imports and no exports: the smallest thing to compile.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn second_load_hits_and_broken_entries_are_replaced() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(&engine, Some(dir.path().to_owned()));
        let sha = super::super::manifest::sha256_hex(EMPTY_COMPONENT);

        let (_, src) = cache
            .load_or_compile(&engine, "t", EMPTY_COMPONENT, &sha)
            .unwrap();
        assert_eq!(src, CompileSource::Compiled);
        let (_, src) = cache
            .load_or_compile(&engine, "t", EMPTY_COMPONENT, &sha)
            .unwrap();
        assert_eq!(src, CompileSource::Cache);

        let entry = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(entry.to_str().unwrap().contains("-wasmtime48-"));
        std::fs::write(&entry, b"garbage").unwrap();
        let (_, src) = cache
            .load_or_compile(&engine, "t", EMPTY_COMPONENT, &sha)
            .unwrap();
        assert_eq!(src, CompileSource::Compiled);
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 2,
                stale: 1
            }
        );
    }

    #[test]
    fn no_dir_always_compiles() {
        let engine = Engine::default();
        let cache = CompileCache::new(&engine, None);
        let (_, src) = cache
            .load_or_compile(&engine, "t", EMPTY_COMPONENT, "x")
            .unwrap();
        assert_eq!(src, CompileSource::Compiled);
    }
}

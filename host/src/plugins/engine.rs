//! The wasmtime engine shared by all plugins: configuration (pooling allocator, copy-on-write
//! memory images, epoch interruption, optional fuel), the epoch ticker thread, the two
//! linkers (host import only; host import plus WASI p2), the instance semaphore, and
//! compilation through the disk cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::HostConfig;
use super::cache::{CompileCache, CompileSource};
use super::error::{PluginErrorKind, World};
use super::sandbox::StoreState;
use super::wit;

/// How often the epoch advances; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The imports every world may have: `host` (the `log` function) and `types` (types only;
/// wit-bindgen imports the interface that defines the types a world uses).
const HOST_IMPORTS: [&str; 2] = [
    "bitrouter:plugin/host@0.1.0",
    "bitrouter:plugin/types@0.1.0",
];

/// Epoch ticks for a deadline (at least one).
pub(crate) fn deadline_ticks(d: Duration) -> u64 {
    (d.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1)
}

pub(crate) struct PluginEngine {
    pub(crate) engine: Engine,
    linker: Linker<StoreState>,
    wasi_linker: Linker<StoreState>,
    pub(crate) cache: CompileCache,
    permits: Arc<Semaphore>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// What a component needs from the host.
pub(crate) struct Prepared {
    pub(crate) pre: InstancePre<StoreState>,
    pub(crate) uses_wasi: bool,
}

impl PluginEngine {
    pub(crate) fn new(cfg: &HostConfig) -> Result<Self, PluginErrorKind> {
        let engine_err = |e: wasmtime::Error| PluginErrorKind::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(cfg.fuel.is_some())
            .memory_init_cow(true)
            .max_wasm_stack(512 * 1024);
        if cfg.pooling {
            let n = cfg.max_instances.max(1);
            // Without PAGEMAP_SCAN, keeping memory resident means zeroing all of it on every
            // reset, which costs more than the page faults it saves.
            let keep_resident = if PoolingAllocationConfig::is_pagemap_scan_available() {
                cfg.keep_resident
            } else {
                0
            };
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(n)
                // Components made by wit-component hold a few core instances (the module,
                // shims, a WASI adapter); JS and Python runtimes a few more.
                .total_core_instances(n.saturating_mul(8))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(4))
                .total_stacks(0)
                .max_memory_size(cfg.memory_limit as usize)
                .linear_memory_keep_resident(keep_resident)
                .table_keep_resident(keep_resident)
                // With PAGEMAP_SCAN (Linux 6.7+), only the dirty pages of the kept-resident
                // prefix are reset, instead of all of it.
                .pagemap_scan(wasmtime::Enabled::Auto);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        wit::host::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(engine_err)?;
        let mut wasi_linker = Linker::new(&engine);
        wit::host::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut wasi_linker, |s| s)
            .map_err(engine_err)?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut wasi_linker).map_err(engine_err)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginErrorKind::Engine(format!("cannot start the epoch ticker: {e}")))?;

        let cache = CompileCache::new(&engine, cfg.cache_dir.clone());
        Ok(PluginEngine {
            engine,
            linker,
            wasi_linker,
            cache,
            permits: Arc::new(Semaphore::new(cfg.max_instances.max(1) as usize)),
            ticker_stop,
        })
    }

    /// Waits for a free instance slot. Calls hold a permit while their instance lives, so
    /// the pool is never asked for more instances than it has.
    pub(crate) async fn permit(&self) -> OwnedSemaphorePermit {
        match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => unreachable!("plugin semaphore closed"),
        }
    }

    pub(crate) fn compile(
        &self,
        plugin: &str,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, CompileSource), PluginErrorKind> {
        self.cache
            .load_or_compile(&self.engine, plugin, bytes, sha256)
            .map_err(|e| PluginErrorKind::Compile(format!("{e:#}")))
    }

    /// The worlds whose interface the component exports.
    pub(crate) fn exported_worlds(&self, component: &Component) -> Vec<World> {
        component
            .component_type()
            .exports(&self.engine)
            .filter_map(|(name, _)| World::from_export(name))
            .collect()
    }

    /// Checks the component's imports and pre-links it: only `host` and WASI p2 are
    /// provided, and WASI only to components that import it.
    pub(crate) fn prepare(&self, component: &Component) -> Result<Prepared, PluginErrorKind> {
        let mut uses_wasi = false;
        for (name, item) in component.component_type().imports(&self.engine) {
            if name.starts_with("wasi:") {
                uses_wasi = true;
            } else if !HOST_IMPORTS.contains(&name)
                || !matches!(item.ty, ComponentItem::ComponentInstance(_))
            {
                return Err(PluginErrorKind::UnsupportedImport(name.to_owned()));
            }
        }
        let linker = if uses_wasi {
            &self.wasi_linker
        } else {
            &self.linker
        };
        let pre = linker.instantiate_pre(component).map_err(|e| {
            // A WASI import the host does not provide (wasi:http, a newer version, ...).
            PluginErrorKind::UnsupportedImport(format!("{e:#}"))
        })?;
        Ok(Prepared { pre, uses_wasi })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up() {
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 10);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 2);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 1000);
    }
}

//! The wasmtime engine shared by all plugins: configuration (pooling allocator, copy-on-write
//! memory images, epoch interruption, optional fuel), the epoch ticker thread (which ticks
//! only while a call holds an [`EpochLease`], so an idle gateway is not woken 1,000 times a
//! second), the linkers (host import only; host import plus WASI p2, with WASI's sync shims
//! and with its async host functions), the instance semaphore, and compilation through the
//! disk cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// WASI with async host functions, for guardrail calls made inline on the caller's task
    /// (`Prepared::pre_async`).
    wasi_async_linker: Linker<StoreState>,
    pub(crate) cache: CompileCache,
    permits: Arc<Semaphore>,
    /// Idle warm instances of stateless plugins, across plugins (`sandbox::WarmPool`); each
    /// holds an instance permit, so at most `warm_max` are kept, half the permits, and calls
    /// of other plugins always find slots.
    pub(crate) warm: AtomicUsize,
    pub(crate) warm_max: usize,
    ticker: Arc<Ticker>,
    /// The ticker's thread, to unpark it.
    ticker_thread: std::thread::Thread,
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Release);
        self.ticker_thread.unpark();
    }
}

/// The epoch ticker's shared state. Deadlines only matter while guest code runs, so the
/// thread parks whenever no call holds a lease; the first lease of a quiet period unparks it.
struct Ticker {
    active: AtomicUsize,
    stop: AtomicBool,
    /// Ticks so far, and whether the thread is parked: what the tests look at.
    ticks: std::sync::atomic::AtomicU64,
    parked: AtomicBool,
}

/// Keeps the epoch advancing while a call runs; dropped when the call is over.
#[must_use = "the epoch only advances while the lease is held"]
pub(crate) struct EpochLease(Arc<Ticker>);

impl Drop for EpochLease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ticker {
    fn run(&self, engine: wasmtime::EngineWeak) {
        while !self.stop.load(Ordering::Acquire) {
            if self.active.load(Ordering::Acquire) == 0 {
                self.parked.store(true, Ordering::Release);
                // An unpark that came before this park makes it return at once, so a lease
                // taken between the check and here is not missed.
                std::thread::park();
                self.parked.store(false, Ordering::Release);
                continue;
            }
            std::thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
            self.ticks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a component needs from the host.
pub(crate) struct Prepared {
    /// Linked for sync calls (WASI, if imported, through its sync shims, which block on a
    /// tokio runtime: such calls must not run on an async worker).
    pub(crate) pre: InstancePre<StoreState>,
    /// For a component that imports WASI: linked with WASI's async host functions, for
    /// `call_async` inline on an async worker.
    pub(crate) pre_async: Option<InstancePre<StoreState>>,
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
                // Fiber stacks for async calls (WASI guardrails run inline, see
                // `guardrail.rs`); a stack is only touched by those calls.
                .total_stacks(n)
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
        let mut wasi_async_linker = Linker::new(&engine);
        wit::host::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut wasi_async_linker, |s| s)
            .map_err(engine_err)?;
        wasmtime_wasi::p2::add_to_linker_async(&mut wasi_async_linker).map_err(engine_err)?;

        let weak = engine.weak();
        let ticker = Arc::new(Ticker {
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            ticks: Default::default(),
            parked: AtomicBool::new(false),
        });
        let shared = ticker.clone();
        let ticker_thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || shared.run(weak))
            .map_err(|e| PluginErrorKind::Engine(format!("cannot start the epoch ticker: {e}")))?
            .thread()
            .clone();

        let cache = CompileCache::new(&engine, cfg.cache_dir.clone());
        Ok(PluginEngine {
            engine,
            linker,
            wasi_linker,
            wasi_async_linker,
            cache,
            permits: Arc::new(Semaphore::new(cfg.max_instances.max(1) as usize)),
            warm: AtomicUsize::new(0),
            warm_max: cfg.max_instances as usize / 2,
            ticker,
            ticker_thread,
        })
    }

    /// Makes the epoch advance until the lease is dropped (wakes the ticker if it sleeps).
    pub(crate) fn epoch_lease(&self) -> EpochLease {
        if self.ticker.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.ticker_thread.unpark();
        }
        EpochLease(self.ticker.clone())
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

    /// A free instance slot, if there is one now.
    pub(crate) fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
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
        // A WASI import the host does not provide (wasi:http, a newer version, ...).
        let unsupported = |e: wasmtime::Error| PluginErrorKind::UnsupportedImport(format!("{e:#}"));
        if !uses_wasi {
            let pre = self
                .linker
                .instantiate_pre(component)
                .map_err(unsupported)?;
            return Ok(Prepared {
                pre,
                pre_async: None,
                uses_wasi,
            });
        }
        let pre = self
            .wasi_linker
            .instantiate_pre(component)
            .map_err(unsupported)?;
        let pre_async = self
            .wasi_async_linker
            .instantiate_pre(component)
            .map_err(unsupported)?;
        Ok(Prepared {
            pre,
            pre_async: Some(pre_async),
            uses_wasi,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) for `cond`; the ticker is a thread of its own, so the test polls.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn the_epoch_ticks_only_while_a_lease_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let engine = PluginEngine::new(&HostConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..HostConfig::default()
        })
        .unwrap();
        let t = &engine.ticker;
        assert!(
            eventually(|| t.parked.load(Ordering::Acquire)),
            "never parked"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(t.ticks.load(Ordering::Relaxed), 0, "ticked without a call");

        let lease = engine.epoch_lease();
        let second = engine.epoch_lease();
        assert!(
            eventually(|| t.ticks.load(Ordering::Relaxed) >= 3),
            "no ticks"
        );
        drop(lease);
        let before = t.ticks.load(Ordering::Relaxed);
        assert!(eventually(|| t.ticks.load(Ordering::Relaxed) > before + 2));
        assert!(!t.parked.load(Ordering::Acquire), "parked under a lease");

        drop(second);
        assert!(
            eventually(|| t.parked.load(Ordering::Acquire)),
            "kept ticking"
        );
        let idle = t.ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(t.ticks.load(Ordering::Relaxed), idle, "ticked while parked");
    }

    #[test]
    fn deadline_ticks_round_up() {
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 10);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 2);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 1000);
    }
}

//! Warm instances of stateless plugins: the pool each such plugin keeps (bounded by its
//! turns), the renewal of an instance after [`WARM_USES`] calls off the request path, and
//! the housekeeping thread that renewals and retired instances run on.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::super::engine::{EpochLease, PluginEngine};
use super::StoreState;
use crate::background::{BackgroundThread, Job, Priority};

/// Calls one warm instance serves before it is replaced: bounds what a slow leak in the
/// guest (a cache that only grows) can accumulate, and how far a garbage-collected guest's
/// heap grows. Its successor is set up off the request path ([`WarmPool::returned`]);
/// until that one is ready the old instance keeps serving, up to [`RETIRE_USES`].
///
/// Measured with `examples/warm_renewal.rs` (the JS example, check + scan of a 2 KB text,
/// 16,000 rounds, twice): 10,000 calls put StarlingMonkey's major collections (~3 ms each,
/// from ~5,500 calls into an instance's life) on the path, p99.9 1.42-1.47 ms; 5,000 calls
/// keep each instance before them, p99.9 0.83-0.96 ms, max 1.6-2.7 ms (4.0-5.2 ms). A
/// renewal costs a blocking thread one instantiation, configuration and warm-up.
pub(crate) const WARM_USES: u32 = 5_000;

/// Calls after which a warm instance is dropped whether or not a successor is ready (its
/// setup failed, or no instance slot was free): the hard bound [`WARM_USES`] aims at.
pub(crate) const RETIRE_USES: u32 = 2 * WARM_USES;

/// Where a pool's renewal stands ([`WarmPool::renewal`]).
const RENEW_IDLE: u8 = 0;
/// An instance is due and no successor is being set up: the plugin's next call starts one.
const RENEW_WANTED: u8 = 1;
/// A successor is being set up.
const RENEW_BUILDING: u8 = 2;
/// Setting up a successor failed: no new attempt until the due instance is retired.
const RENEW_FAILED: u8 = 3;

/// An instance kept between calls of a stateless plugin, configured, with the instance permit
/// it holds (a warm instance counts against `max_instances` like a running one).
pub(crate) struct Warm<B> {
    pub(super) store: Store<StoreState>,
    pub(super) bindings: B,
    pub(super) uses: u32,
    pub(super) _permit: OwnedSemaphorePermit,
}

/// How to instantiate and configure the async bindings of a world (see
/// [`Sandbox::instance_async`]).
pub(crate) trait AsyncWorld: Sized + Send {
    /// The pre-linked component.
    type Pre: Sync;
    /// A new instance in `store`.
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<StoreState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send;
    /// Applies the plugin's config JSON.
    fn configure(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send;
}

/// An instance armed for one call: its store and bindings, what it holds (instance permit,
/// turn), and the epoch lease that keeps its deadline running.
pub(crate) struct Armed<B> {
    pub(crate) store: Store<StoreState>,
    pub(crate) bindings: B,
    pub(super) uses: u32,
    /// Whether it may go back to the warm pool after the call.
    pub(super) keep: bool,
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) _turn: Option<OwnedSemaphorePermit>,
    pub(super) _ticking: EpochLease,
}

/// What a call runs in: an idle warm instance, or a new one under an instance permit; for a
/// stateless plugin, also its turn.
pub(crate) struct Lease<B> {
    pub(super) warm: Option<Warm<B>>,
    pub(super) permit: Option<OwnedSemaphorePermit>,
    /// One of the stateless plugin's turns (as many as it may keep warm instances), held
    /// until the instance is back in the pool.
    pub(super) _turn: Option<OwnedSemaphorePermit>,
}

impl<B> Lease<B> {
    /// A new instance under `permit` (a plugin that gets a fresh instance per call).
    pub(crate) fn fresh(permit: OwnedSemaphorePermit) -> Self {
        Lease {
            warm: None,
            permit: Some(permit),
            _turn: None,
        }
    }
}

/// The warm instances of one stateless plugin. At most `cap` calls run at once (each waits
/// for a turn, which is not charged to its deadline), so at most `cap` instances exist: under
/// more load than the cores can take, calls queue for a warm instance instead of each paying
/// for a new one — which made things worse exactly when the plugin was already behind (a
/// death spiral measured in bench scenarios 8 and 9: 1.4 and 3.2 ms of CPU per request, RSS
/// 0.6-0.7 GB, with new instances for the overflow).
pub(crate) struct WarmPool<B> {
    pub(super) idle: Mutex<Vec<Warm<B>>>,
    pub(super) turns: Arc<tokio::sync::Semaphore>,
    pub(super) cap: usize,
    /// Successors set up off the request path for instances that served [`WARM_USES`]
    /// calls; each takes the place of the next due instance that comes back.
    pub(super) spares: Mutex<Vec<Warm<B>>>,
    /// `RENEW_*`: whether a successor is wanted or being set up.
    pub(super) renewal: AtomicU8,
}

impl<B> WarmPool<B> {
    /// A pool of at most `cap` instances.
    pub(crate) fn new(cap: usize) -> Self {
        WarmPool {
            idle: Mutex::new(Vec::with_capacity(cap)),
            turns: Arc::new(tokio::sync::Semaphore::new(cap)),
            cap,
            spares: Mutex::new(Vec::new()),
            renewal: AtomicU8::new(RENEW_IDLE),
        }
    }

    /// Waits for a turn, then leases an idle instance, or an instance permit for a new one.
    pub(crate) async fn lease(&self, engine: &PluginEngine) -> Lease<B> {
        let turn = match self.turns.clone().acquire_owned().await {
            Ok(t) => t,
            // The semaphore is never closed.
            Err(_) => unreachable!("warm pool semaphore closed"),
        };
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let spare = || self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (warm, permit) = match idle {
            Some(w) => {
                engine.warm.fetch_sub(1, Ordering::AcqRel);
                (Some(w), None)
            }
            // No idle instance, but a successor is ready: the instance it was set up for was
            // dropped (its call failed) instead of coming back due, so it serves here rather
            // than this call setting up a new one on its path. (Spares are not counted in
            // `engine.warm`; it is counted when it comes back.)
            None => match spare() {
                Some(spare) => (Some(spare), None),
                None => (None, Some(engine.permit().await)),
            },
        };
        Lease {
            warm,
            permit,
            _turn: Some(turn),
        }
    }

    /// Keeps `w` for the next call, or drops it (and its permit) when the pool is full.
    fn put(&self, engine: &PluginEngine, w: Warm<B>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.cap
            && engine
                .warm
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < engine.warm_max).then_some(n + 1)
                })
                .is_ok()
        {
            idle.push(w);
        }
    }

    /// Takes back an instance whose call succeeded. One that has served [`WARM_USES`] calls
    /// gives its place to a spare when one is ready, and is dropped on a blocking thread
    /// (freeing a JS or Python instance's memory took milliseconds on the request path);
    /// without a spare it keeps serving and asks for one ([`WarmPool::renewal_wanted`]),
    /// until [`RETIRE_USES`].
    pub(super) fn returned(&self, engine: &PluginEngine, w: Warm<B>)
    where
        B: Send + 'static,
    {
        if w.uses < WARM_USES {
            return self.put(engine, w);
        }
        let spare = self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match spare {
            Some(spare) => {
                self.put(engine, spare);
                retire(w);
            }
            None if w.uses >= RETIRE_USES => {
                // A renewal that failed may be tried again for the next due instance.
                let _ = self.renewal.compare_exchange(
                    RENEW_FAILED,
                    RENEW_IDLE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                retire(w);
            }
            None => {
                let _ = self.renewal.compare_exchange(
                    RENEW_IDLE,
                    RENEW_WANTED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                self.put(engine, w);
            }
        }
    }

    /// Whether the caller should set up a successor now (off the request path: see
    /// [`Sandbox::renew`]); true for one caller per due instance.
    pub(crate) fn renewal_wanted(&self) -> bool {
        self.renewal.load(Ordering::Relaxed) == RENEW_WANTED
            && self
                .renewal
                .compare_exchange(
                    RENEW_WANTED,
                    RENEW_BUILDING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Ends a renewal: the successor joins the spares, or the attempt failed.
    pub(crate) fn renewed(&self, spare: Option<Warm<B>>) {
        let state = match spare {
            Some(w) => {
                self.spares
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(w);
                RENEW_IDLE
            }
            None => RENEW_FAILED,
        };
        self.renewal.store(state, Ordering::Release);
    }

    /// Idle instances kept now.
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Drops a retired warm instance off the request path (freeing a JS or Python runtime's
/// memory is not free either).
fn retire<B: Send + 'static>(w: Warm<B>) {
    off_path(Box::new(move || drop(w)));
}

/// Runs `job` on the plugins' housekeeping thread (renewals, retired instances), which runs
/// at a lower CPU priority than the request workers ([`crate::background`]); on tokio's
/// blocking pool if that thread cannot be started, inline outside a runtime.
///
/// A renewal of the JavaScript example (instantiate, configure, warm up: a few ms of CPU)
/// on the blocking pool shared the gateway's one core with the requests as an equal; the
/// kernel now lets a request's worker preempt it ("Plugin renewals at a lower priority" in
/// `bench/REPORT.md`).
pub(crate) fn off_path(job: Job) {
    static THREAD: std::sync::OnceLock<Option<BackgroundThread>> = std::sync::OnceLock::new();
    let job = match THREAD
        .get_or_init(|| BackgroundThread::start("plugin-renewal", Priority::Low).ok())
    {
        Some(thread) => match thread.run(job) {
            Ok(()) => return,
            Err(job) => job,
        },
        None => job,
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(job);
        }
        Err(_) => job(),
    }
}

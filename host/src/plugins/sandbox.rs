//! What a plugin instance may touch, and how one call runs.
//!
//! Deny by default: a component that imports nothing gets nothing but `host.log`. A component
//! that imports WASI p2 (JavaScript, Python and C toolchains produce these) gets a
//! [`WasiCtx`] with no preopened directories, no environment, no arguments, no sockets, no
//! stdin, stdout/stderr discarded, and a wall clock frozen at the Unix epoch; only the
//! monotonic clock and random numbers are real. Each grant the manifest asks for and the
//! config allows ([`Capability`]) adds one thing.
//!
//! Every call gets a new [`Store`] with a memory cap ([`Limiter`]), a deadline ([`Budget`]:
//! epoch-driven, but charging the CPU the call used rather than the wall time it waited)
//! and, in tests, a fuel budget. [`Sandbox::call_fresh`] runs one call in a fresh instance;
//! [`Sandbox::fail`] turns whatever went wrong into a [`CallError`], counts it and logs it
//! with the plugin id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::engine::{EPOCH_TICK, EpochLease, PluginEngine, deadline_ticks};
use super::error::{CallError, CallErrorKind};
use super::manifest::Capability;
use super::wit::host::{self, Level};

mod warm;

pub(crate) use warm::{Armed, AsyncWorld, Lease, Warm, WarmPool, off_path};

/// Longest log line a plugin may write; the rest is cut.
pub const MAX_LOG_LINE: usize = 1024;
/// Most log lines one call may write; the rest are dropped and counted.
pub const MAX_LOG_LINES_PER_CALL: u32 = 16;

/// One line a plugin logged.
#[derive(Clone, Debug)]
pub struct PluginLog {
    /// The id of the plugin that wrote it.
    pub plugin: Arc<str>,
    /// The level the plugin gave it.
    pub level: tracing::Level,
    /// The text, cut to [`MAX_LOG_LINE`] bytes.
    pub message: String,
}

/// Where plugin log lines go. The default writes them to `tracing` with the plugin's id.
pub type LogSink = Arc<dyn Fn(&PluginLog) + Send + Sync>;

pub(crate) fn tracing_sink() -> LogSink {
    Arc::new(|line: &PluginLog| {
        let plugin = &*line.plugin;
        let message = &line.message;
        match line.level {
            tracing::Level::ERROR => tracing::error!(plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, "{message}"),
            _ => tracing::trace!(plugin, "{message}"),
        }
    })
}

/// Failure and call counters of one plugin.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    traps: AtomicU64,
    deadlines: AtomicU64,
    memory: AtomicU64,
    invalid: AtomicU64,
    other: AtomicU64,
    logs_dropped: AtomicU64,
    setups: AtomicU64,
    renewals: AtomicU64,
}

/// A snapshot of one plugin's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Calls made, failed or not.
    pub calls: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Epoch deadlines and fuel exhaustion.
    pub deadlines: u64,
    /// Calls stopped at the memory cap.
    pub memory: u64,
    /// Calls whose answer broke the contract.
    pub invalid_results: u64,
    /// Instantiation failures and errors the plugin reported itself.
    pub other_failures: u64,
    /// Log lines dropped past [`MAX_LOG_LINES_PER_CALL`].
    pub logs_dropped: u64,
    /// Instances set up on a call's path: one per call for a plugin that is not
    /// `stateless`; for a stateless one, only when its call found no warm instance idle.
    pub setups: u64,
    /// Warm instances of a stateless plugin set up off the request path, each to succeed
    /// one that served [`WARM_USES`] calls.
    pub renewals: u64,
}

impl PluginStats {
    /// Failed calls of every kind.
    pub fn failures(&self) -> u64 {
        self.traps + self.deadlines + self.memory + self.invalid_results + self.other_failures
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> PluginStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PluginStats {
            calls: l(&self.calls),
            traps: l(&self.traps),
            deadlines: l(&self.deadlines),
            memory: l(&self.memory),
            invalid_results: l(&self.invalid),
            other_failures: l(&self.other),
            logs_dropped: l(&self.logs_dropped),
            setups: l(&self.setups),
            renewals: l(&self.renewals),
        }
    }

    fn record(&self, kind: &CallErrorKind) {
        let c = match kind {
            CallErrorKind::Trap(_) => &self.traps,
            CallErrorKind::Deadline | CallErrorKind::OutOfFuel => &self.deadlines,
            CallErrorKind::MemoryLimit(_) => &self.memory,
            CallErrorKind::InvalidResult(_) => &self.invalid,
            CallErrorKind::Instantiate(_) | CallErrorKind::Failed(_) => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A wall clock stuck at the Unix epoch, for plugins not granted `wall-clock`.
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The WASI state of a store; built only for components that import WASI.
pub(crate) struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
}

/// Caps memory (and counts when the cap is hit, so a trap after a refused `memory.grow`
/// is reported as a memory blow-up rather than a plain trap).
pub(crate) struct Limiter {
    memory_limit: u64,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired as u64 <= self.memory_limit;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The CPU clock of the calling thread (one syscall, ~1 µs here: read only when a deadline
/// passes, never on the fast path).
#[cfg(unix)]
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on every
    // unix we build for. On failure `ts` stays zero, which reads as "no CPU used" and
    // leaves the wall deadline in charge.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts)
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(unix))]
pub(crate) fn thread_cpu_time() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// A call is stopped, whatever else, after this many times its deadline of wall time.
pub const WALL_DEADLINE_FACTOR: u32 = 10;

/// The running call's deadline. The epoch ticks in wall time, so a call on a machine too
/// busy to give it a core would hit a plain epoch deadline without having done anything
/// wrong. Instead, when the deadline passes the host watches the calling thread's CPU clock
/// for a short window (a quarter of the deadline): if the call kept the core at least half
/// of that window, it is burning CPU and is interrupted; if not, it was waiting for a core
/// and is given another window. So a runaway plugin stops after 1.25× to 1.5× its deadline
/// on an idle machine, and after at most `WALL_DEADLINE_FACTOR`× on any machine.
struct Budget {
    deadline: Duration,
    wall_start: Instant,
    /// The thread's CPU clock at the start of the current watch window, and the thread: an
    /// async call (see `guardrail.rs`) that waited in a host function may resume on another
    /// worker, whose clock says nothing about this call.
    cpu_mark: Option<(Duration, std::thread::ThreadId)>,
}

impl Budget {
    fn window(&self) -> Duration {
        (self.deadline / 4).max(EPOCH_TICK)
    }

    fn on_deadline(&mut self) -> UpdateDeadline {
        if self.wall_start.elapsed() >= self.deadline * WALL_DEADLINE_FACTOR {
            return UpdateDeadline::Interrupt;
        }
        let now = thread_cpu_time();
        let thread = std::thread::current().id();
        let busy = self.cpu_mark.is_some_and(|(mark, on)| {
            on == thread && now.saturating_sub(mark) >= self.window() / 2
        });
        if busy {
            return UpdateDeadline::Interrupt;
        }
        self.cpu_mark = Some((now, thread));
        UpdateDeadline::Continue(deadline_ticks(self.window()))
    }
}

/// The data of one store: one plugin instance's view of the host.
pub(crate) struct StoreState {
    sandbox: Arc<Sandbox>,
    limiter: Limiter,
    wasi: Option<WasiState>,
    logs: u32,
    budget: Budget,
}

impl StoreState {
    fn wasi_state(&mut self) -> &mut WasiState {
        let sandbox = &self.sandbox;
        self.wasi.get_or_insert_with(|| sandbox.build_wasi())
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let w = self.wasi_state();
        WasiCtxView {
            ctx: &mut w.ctx,
            table: &mut w.table,
        }
    }
}

impl host::Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        self.logs += 1;
        if self.logs > MAX_LOG_LINES_PER_CALL {
            self.sandbox
                .counters
                .logs_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let level = match level {
            Level::Error => tracing::Level::ERROR,
            Level::Warn => tracing::Level::WARN,
            Level::Info => tracing::Level::INFO,
            Level::Debug => tracing::Level::DEBUG,
            Level::Trace => tracing::Level::TRACE,
        };
        (self.sandbox.log_sink)(&PluginLog {
            plugin: self.sandbox.id.clone(),
            level,
            message,
        });
    }
}

/// Where a wasmtime error came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    Instantiate,
    Call,
}

/// Per-plugin limits and grants, shared by all of the plugin's calls.
pub(crate) struct Sandbox {
    pub(crate) id: Arc<str>,
    pub(crate) engine: Arc<PluginEngine>,
    pub(crate) memory_limit: u64,
    pub(crate) call_deadline: Duration,
    pub(crate) configure_deadline: Duration,
    pub(crate) fuel: Option<u64>,
    pub(crate) grants: Vec<Capability>,
    pub(crate) log_sink: LogSink,
    pub(crate) counters: Counters,
}

impl Sandbox {
    fn build_wasi(&self) -> WasiState {
        let mut b = WasiCtxBuilder::new();
        // Defaults of WasiCtxBuilder::new: no args, no env, no preopens, stdin empty,
        // stdout/stderr discarded, sockets denied. We also freeze the wall clock.
        b.wall_clock(FrozenWallClock);
        for grant in &self.grants {
            match grant {
                Capability::WallClock => {
                    b.wall_clock(wasmtime_wasi::clocks::WallClock);
                }
                Capability::Env(name) => {
                    if let Ok(value) = std::env::var(name) {
                        b.env(name, value);
                    }
                }
            }
        }
        WasiState {
            ctx: b.build(),
            table: ResourceTable::new(),
        }
    }

    /// A new store for one call (or one long-lived observer instance).
    pub(crate) fn store(self: &Arc<Self>) -> Store<StoreState> {
        let mut store = Store::new(
            &self.engine.engine,
            StoreState {
                sandbox: self.clone(),
                limiter: Limiter {
                    memory_limit: self.memory_limit,
                    hit: false,
                },
                wasi: None,
                logs: 0,
                budget: Budget {
                    deadline: Duration::ZERO,
                    wall_start: Instant::now(),
                    cpu_mark: None,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().budget.on_deadline()));
        store
    }

    /// Arms the store's limits for the next call: the deadline (see [`Budget`]), the fuel
    /// budget in tests, the per-call log allowance. The deadline holds while the returned
    /// lease does: keep it until the call has returned.
    pub(crate) fn arm(&self, store: &mut Store<StoreState>, deadline: Duration) -> EpochLease {
        let lease = self.engine.epoch_lease();
        store.set_epoch_deadline(deadline_ticks(deadline));
        let data = store.data_mut();
        data.budget = Budget {
            deadline,
            wall_start: Instant::now(),
            cpu_mark: None,
        };
        if let Some(fuel) = self.fuel {
            // Only fails when fuel is not enabled, which the engine does whenever `fuel` is
            // set.
            let _ = store.set_fuel(fuel);
        }
        let data = store.data_mut();
        data.logs = 0;
        data.limiter.hit = false;
        lease
    }

    /// Instantiates an instance in `store` (armed by the caller) and re-applies the config
    /// when there is one.
    fn setup<B>(
        &self,
        func: &'static str,
        store: &mut Store<StoreState>,
        config: Option<&str>,
        instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<B>,
        configure: impl FnOnce(&mut Store<StoreState>, &B, &str) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<B, CallError> {
        let bindings =
            instantiate(store).map_err(|e| self.fail(func, store, e, Phase::Instantiate))?;
        if let Some(config) = config {
            let configured = configure(store, &bindings, config);
            self.configured(func, store, configured)?;
        }
        Ok(bindings)
    }

    /// [`Sandbox::setup`] for a component called through async bindings.
    async fn setup_async<W: AsyncWorld>(
        &self,
        func: &'static str,
        store: &mut Store<StoreState>,
        config: Option<&str>,
        pre: &W::Pre,
    ) -> Result<W, CallError> {
        let bindings = W::instantiate(pre, store)
            .await
            .map_err(|e| self.fail(func, store, e, Phase::Instantiate))?;
        if let Some(config) = config {
            let configured = bindings.configure(store, config).await;
            self.configured(func, store, configured)?;
        }
        Ok(bindings)
    }

    /// One call in a fresh instance: a new store, instantiate (from the pool), re-apply the
    /// config when there is one, call, drop the instance. Whatever fails is classified,
    /// counted and logged.
    pub(crate) fn call_fresh<B, R>(
        self: &Arc<Self>,
        func: &'static str,
        config: Option<&str>,
        instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<B>,
        configure: impl FnOnce(&mut Store<StoreState>, &B, &str) -> wasmtime::Result<Result<(), String>>,
        call: impl FnOnce(&mut Store<StoreState>, &B) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.count_call();
        self.counters.setups.fetch_add(1, Ordering::Relaxed);
        let mut store = self.store();
        let _ticking = self.arm(&mut store, self.call_deadline);
        let bindings = self.setup(func, &mut store, config, instantiate, configure)?;
        call(&mut store, &bindings).map_err(|e| self.fail(func, &store, e, Phase::Call))
    }

    /// One call of a stateless plugin: in the leased warm instance, or in a new one
    /// (instantiated and configured under the configure deadline, so setting up an instance
    /// is never charged to a request's call), which is then kept. The call itself runs under
    /// the call deadline. An instance whose call failed in any way is dropped, never reused.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call_warm<B: Send + 'static, R>(
        self: &Arc<Self>,
        pool: &WarmPool<B>,
        lease: Lease<B>,
        func: &'static str,
        config: Option<&str>,
        instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<B>,
        configure: impl FnOnce(&mut Store<StoreState>, &B, &str) -> wasmtime::Result<Result<(), String>>,
        call: impl FnOnce(&mut Store<StoreState>, &B) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.count_call();
        let Lease {
            warm,
            permit,
            _turn,
            ..
        } = lease;
        let mut warm = match (warm, permit) {
            (Some(w), _) => w,
            (None, None) => {
                return Err(self.error(
                    func,
                    CallErrorKind::Instantiate("no instance permit".into()),
                ));
            }
            (None, Some(permit)) => {
                self.counters.setups.fetch_add(1, Ordering::Relaxed);
                let mut store = self.store();
                let ticking = self.arm(&mut store, self.configure_deadline);
                let bindings = self.setup(func, &mut store, config, instantiate, configure)?;
                drop(ticking);
                Warm {
                    store,
                    bindings,
                    uses: 0,
                    _permit: permit,
                }
            }
        };
        let ticking = self.arm(&mut warm.store, self.call_deadline);
        let result = call(&mut warm.store, &warm.bindings);
        drop(ticking);
        match result {
            Ok(r) => {
                warm.uses += 1;
                pool.returned(&self.engine, warm);
                Ok(r)
            }
            Err(e) => Err(self.fail(func, &warm.store, e, Phase::Call)),
        }
    }

    /// Sets up a successor for `pool`'s due instance (see [`WarmPool::renewal_wanted`]):
    /// instantiated and configured under the configure deadline, then kept as a spare.
    /// Blocks: the caller runs it off the request path. Without a free instance slot nothing
    /// is set up, and the due instance serves on until [`RETIRE_USES`].
    pub(crate) fn renew<B>(
        self: &Arc<Self>,
        pool: &WarmPool<B>,
        config: Option<&str>,
        instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<B>,
        configure: impl FnOnce(&mut Store<StoreState>, &B, &str) -> wasmtime::Result<Result<(), String>>,
    ) {
        let spare = self.engine.try_permit().and_then(|permit| {
            let mut store = self.store();
            let ticking = self.arm(&mut store, self.configure_deadline);
            let bindings = self
                .setup("renew", &mut store, config, instantiate, configure)
                .ok()?;
            drop(ticking);
            self.counters.renewals.fetch_add(1, Ordering::Relaxed);
            Some(Warm {
                store,
                bindings,
                uses: 0,
                _permit: permit,
            })
        });
        pool.renewed(spare);
    }

    /// [`Sandbox::renew`] for a component called through async bindings, which then runs
    /// `warm_up` in the successor (still under the configure deadline, its results ignored):
    /// a fresh JS or Python instance copies the pages of its runtime's memory image as its
    /// first calls write them, which made the first calls after a renewal take 2-3 ms
    /// instead of ~0.1 (`examples/warm_renewal.rs`).
    pub(crate) async fn renew_async<W: AsyncWorld>(
        self: &Arc<Self>,
        pool: &WarmPool<W>,
        config: Option<&str>,
        pre: &W::Pre,
        warm_up: impl AsyncFnOnce(&mut Store<StoreState>, &W) -> wasmtime::Result<()>,
    ) {
        let mut spare = None;
        if let Some(permit) = self.engine.try_permit() {
            let mut store = self.store();
            let ticking = self.arm(&mut store, self.configure_deadline);
            if let Ok(bindings) = self
                .setup_async::<W>("renew", &mut store, config, pre)
                .await
            {
                match warm_up(&mut store, &bindings).await {
                    Ok(()) => {
                        drop(ticking);
                        self.counters.renewals.fetch_add(1, Ordering::Relaxed);
                        spare = Some(Warm {
                            store,
                            bindings,
                            uses: 0,
                            _permit: permit,
                        });
                    }
                    Err(e) => {
                        self.fail("renew", &store, e, Phase::Call);
                    }
                }
            }
        }
        pool.renewed(spare);
    }

    /// An instance for one async call of `func` (a component linked with WASI's async host
    /// functions, called inline on the caller's task): the leased warm one, or a new one
    /// instantiated and configured (under the configure deadline when it will be kept, else
    /// under the call's). Returned armed with the call deadline; [`Sandbox::finish`] ends
    /// the call.
    pub(crate) async fn instance_async<W: AsyncWorld>(
        self: &Arc<Self>,
        func: &'static str,
        lease: Lease<W>,
        config: Option<&str>,
        pre: &W::Pre,
    ) -> Result<Armed<W>, CallError> {
        self.count_call();
        let Lease {
            warm,
            permit,
            _turn: turn,
        } = lease;
        // A lease without a turn is a plugin that gets a fresh instance per call.
        let keep = turn.is_some();
        if let Some(Warm {
            mut store,
            bindings,
            uses,
            _permit: permit,
        }) = warm
        {
            let ticking = self.arm(&mut store, self.call_deadline);
            return Ok(Armed {
                store,
                bindings,
                uses,
                keep,
                _permit: permit,
                _turn: turn,
                _ticking: ticking,
            });
        }
        let Some(permit) = permit else {
            return Err(self.error(
                func,
                CallErrorKind::Instantiate("no instance permit".into()),
            ));
        };
        self.counters.setups.fetch_add(1, Ordering::Relaxed);
        let mut store = self.store();
        let setup = if keep {
            self.configure_deadline
        } else {
            self.call_deadline
        };
        let ticking = self.arm(&mut store, setup);
        let bindings = self.setup_async::<W>(func, &mut store, config, pre).await?;
        let ticking = if keep {
            drop(ticking);
            self.arm(&mut store, self.call_deadline)
        } else {
            ticking
        };
        Ok(Armed {
            store,
            bindings,
            uses: 0,
            keep,
            _permit: permit,
            _turn: turn,
            _ticking: ticking,
        })
    }

    /// Ends a call made in `armed`: on success the instance goes back to `pool` (a stateless
    /// plugin's; see [`WarmPool::returned`]); an instance whose call failed in any way is
    /// dropped, never reused.
    pub(crate) fn finish<B: Send + 'static, R>(
        &self,
        func: &'static str,
        armed: Armed<B>,
        pool: Option<&WarmPool<B>>,
        result: wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let Armed {
            store,
            bindings,
            uses,
            keep,
            _permit: permit,
            _turn: turn,
            _ticking: ticking,
        } = armed;
        // The deadline stops with the call; the turn is given back with the instance.
        drop(ticking);
        match result {
            Ok(r) => {
                if let Some(pool) = pool.filter(|_| keep) {
                    pool.returned(
                        &self.engine,
                        Warm {
                            store,
                            bindings,
                            uses: uses + 1,
                            _permit: permit,
                        },
                    );
                }
                drop(turn);
                Ok(r)
            }
            Err(e) => Err(self.fail(func, &store, e, Phase::Call)),
        }
    }

    /// The outcome of re-applying the config to a new instance before a call of `func`: the
    /// plugin's own refusal is a failed call, a trap is classified like any other.
    fn configured(
        &self,
        func: &'static str,
        store: &Store<StoreState>,
        result: wasmtime::Result<Result<(), String>>,
    ) -> Result<(), CallError> {
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => {
                Err(self.error(func, CallErrorKind::Failed(format!("configure: {msg}"))))
            }
            Err(e) => Err(self.fail(func, store, e, Phase::Call)),
        }
    }

    /// Classifies a wasmtime error; counts and logs it.
    pub(crate) fn fail(
        &self,
        func: &'static str,
        store: &Store<StoreState>,
        err: wasmtime::Error,
        phase: Phase,
    ) -> CallError {
        let kind = if store.data().limiter.hit {
            CallErrorKind::MemoryLimit(self.memory_limit)
        } else {
            match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => CallErrorKind::Deadline,
                Some(Trap::OutOfFuel) => CallErrorKind::OutOfFuel,
                Some(trap) => CallErrorKind::Trap(trap.to_string()),
                // Not a trap: during instantiation, the pool or a limit refused; during a
                // call, the host could not lift what the guest returned (a bad string, an
                // out-of-bounds list, an invalid discriminant).
                None => match phase {
                    Phase::Instantiate => CallErrorKind::Instantiate(format!("{err:#}")),
                    Phase::Call => CallErrorKind::InvalidResult(format!("{err:#}")),
                },
            }
        };
        self.error(func, kind)
    }

    /// Counts and logs a failure of `func`.
    pub(crate) fn error(&self, func: &'static str, kind: CallErrorKind) -> CallError {
        self.counters.record(&kind);
        tracing::warn!(
            plugin = &*self.id,
            func,
            failure = kind.label(),
            "plugin call failed: {kind}"
        );
        CallError {
            plugin: self.id.clone(),
            func,
            kind,
        }
    }

    pub(crate) fn count_call(&self) {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> PluginStats {
        self.counters.snapshot()
    }
}

//! Open loop: requests go out at a constant arrival rate whatever the responses do, and each
//! one's latency is counted from the time it was *scheduled*, not sent. A slow server therefore
//! shows its queueing in the figures instead of quietly slowing the generator down (the
//! "coordinated omission" that closed-loop tools suffer from).

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::clock::{PreciseTimer, now_ns};
use super::conn::{Pool, RequestSpec};
use super::request::{Expect, Failure, send};
use super::stats::{PhaseStats, Recorder};

/// Counters another task can watch while a phase runs (e.g. to sample memory once every
/// stream is open).
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: Cell<u64>,
    /// Requests whose first body byte arrived.
    pub first_byte: Cell<u64>,
    /// Of those, requests that ended.
    pub done: Cell<u64>,
    pub finished: Cell<bool>,
}

impl Progress {
    /// Requests that have started answering and not yet ended.
    pub fn open_streams(&self) -> u64 {
        // `done` counts only requests that were counted in `first_byte`.
        self.first_byte.get().saturating_sub(self.done.get())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct OpenLoop {
    /// Requests per second.
    pub rate: f64,
    /// Requests to send (the phase lasts `count / rate` seconds plus the drain).
    pub count: u64,
    /// How long to wait for stragglers after the last send; the rest count as failures.
    pub drain: Duration,
}

impl OpenLoop {
    pub fn for_duration(rate: f64, duration: Duration, drain: Duration) -> OpenLoop {
        OpenLoop {
            rate,
            count: (rate * duration.as_secs_f64()).round().max(1.0) as u64,
            drain,
        }
    }
}

/// Runs one open-loop phase. Must run inside a `LocalSet`.
pub async fn run(
    pool: Rc<Pool>,
    spec: Rc<RequestSpec>,
    expect: Expect,
    plan: OpenLoop,
    progress: Rc<Progress>,
) -> io::Result<PhaseStats> {
    let timer = PreciseTimer::new()?;
    let recorder = Rc::new(RefCell::new(Recorder::default()));
    let interval_ns = (1e9 / plan.rate.max(1e-3)) as u64;
    // A short lead so the first send is not already late when the loop starts.
    let start = now_ns() + 1_000_000;
    let mut tasks = JoinSet::new();
    for i in 0..plan.count {
        let due = start + i * interval_ns;
        timer.sleep_until(due).await?;
        recorder
            .borrow_mut()
            .record_send_lag(now_ns().saturating_sub(due));
        let (pool, spec, recorder, progress) = (
            pool.clone(),
            spec.clone(),
            recorder.clone(),
            progress.clone(),
        );
        progress.sent.set(progress.sent.get() + 1);
        tasks.spawn_local(async move {
            let opened = Cell::new(false);
            let result = send(&pool, &spec, expect, || {
                opened.set(true);
                progress.first_byte.set(progress.first_byte.get() + 1);
            })
            .await;
            // Only requests that had started answering were counted as open.
            if opened.get() {
                progress.done.set(progress.done.get() + 1);
            }
            recorder.borrow_mut().record(due, result);
        });
        // Reap finished tasks as we go so the set stays as small as what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(plan.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let unfinished = tasks.len();
        tasks.abort_all();
        let mut r = recorder.borrow_mut();
        for _ in 0..unfinished {
            r.fail(Failure(format!(
                "unfinished {} s after the last send",
                plan.drain.as_secs_f64()
            )));
        }
    }
    progress.finished.set(true);
    let summary = recorder.borrow().summary();
    Ok(summary)
}

//! Closed loop: a fixed number of connections each send their next request as soon as the
//! previous one ends. This finds the maximum throughput; its latencies are those of a
//! saturated server and are not comparable with open-loop figures.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::clock::now_ns;
use super::conn::{Pool, RequestSpec};
use super::request::{Expect, send};
use super::stats::{PhaseStats, Recorder};

#[derive(Clone, Copy, Debug)]
pub struct ClosedLoop {
    pub concurrency: usize,
    pub duration: Duration,
}

/// Runs one closed-loop phase. Must run inside a `LocalSet`.
pub async fn run(
    pool: Rc<Pool>,
    spec: Rc<RequestSpec>,
    expect: Expect,
    plan: ClosedLoop,
) -> PhaseStats {
    let recorder = Rc::new(RefCell::new(Recorder::default()));
    let deadline = now_ns() + plan.duration.as_nanos() as u64;
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let (pool, spec, recorder) = (pool.clone(), spec.clone(), recorder.clone());
        workers.spawn_local(async move {
            while now_ns() < deadline {
                let start = now_ns();
                let result = send(&pool, &spec, expect, || {}).await;
                let failed = result.is_err();
                recorder.borrow_mut().record(start, result);
                if failed {
                    // A refused connection fails in microseconds; don't spin on it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    recorder.borrow().summary()
}

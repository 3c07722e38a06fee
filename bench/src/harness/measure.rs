//! One measured phase with its process accounting: the gateway's and the mock's CPU time
//! across the phase, and the gateway's resident memory sampled while it runs (its peak, and
//! its size when the most streams were open at once).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use crate::load::clock::now_ns;
use crate::load::{self, ClosedLoop, Expect, OpenLoop, PhaseStats, Pool, Progress, RequestSpec};
use crate::procfs;

/// Processes whose cost a phase accounts.
#[derive(Clone, Copy, Debug)]
pub struct Watched {
    /// The gateway, when the phase goes through it.
    pub gateway: Option<u32>,
    pub mock: u32,
}

#[derive(Clone, Debug)]
pub struct Measured {
    pub stats: PhaseStats,
    pub gateway_cpu_s: Option<f64>,
    /// The gateway's CPU seconds per thread name (see [`procfs::cpu_ns_by_thread`]).
    pub gateway_cpu_by_thread_s: BTreeMap<String, f64>,
    pub mock_cpu_s: f64,
    pub gateway_rss_peak_kib: Option<u64>,
    pub max_open: u64,
    pub gateway_rss_at_max_open_kib: Option<u64>,
    /// CPUs' worth of work by processes other than the gateway, the mock and this harness
    /// while the phase ran (other jobs on the machine disturb the figures).
    pub background_cores: Option<f64>,
}

/// Memory seen while a phase ran.
#[derive(Default)]
struct Samples {
    peak_kib: u64,
    max_open: u64,
    at_max_open_kib: u64,
}

/// Every 50 ms until the phase is finished: often enough to catch a 10 s plateau, rarely
/// enough not to disturb the generator it shares a thread with.
async fn sample(pid: Option<u32>, progress: Rc<Progress>) -> Samples {
    let mut s = Samples::default();
    while !progress.finished.get() {
        let rss = pid
            .and_then(|p| procfs::memory(p).ok())
            .map_or(0, |m| m.rss_kib);
        s.peak_kib = s.peak_kib.max(rss);
        let open = progress.open_streams();
        if open > s.max_open {
            s.max_open = open;
            s.at_max_open_kib = rss;
        } else if open == s.max_open && open > 0 {
            s.at_max_open_kib = s.at_max_open_kib.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

fn cpu(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| procfs::cpu_ns(p).ok())
}

fn threads(pid: Option<u32>) -> BTreeMap<String, u64> {
    pid.and_then(|p| procfs::cpu_ns_by_thread(p).ok())
        .unwrap_or_default()
}

/// Per thread name, the seconds between two snapshots (names that appeared count from 0).
fn thread_seconds(
    before: &BTreeMap<String, u64>,
    after: BTreeMap<String, u64>,
) -> BTreeMap<String, f64> {
    after
        .into_iter()
        .map(|(name, ns)| {
            let start = before.get(&name).copied().unwrap_or(0);
            (name, ns.saturating_sub(start) as f64 / 1e9)
        })
        .collect()
}

async fn accounted<F>(
    watched: Watched,
    progress: Rc<Progress>,
    phase: F,
) -> anyhow::Result<Measured>
where
    F: std::future::Future<Output = anyhow::Result<PhaseStats>>,
{
    let me = Some(std::process::id());
    let threads0 = threads(watched.gateway);
    let (gw0, mock0, me0) = (cpu(watched.gateway), cpu(Some(watched.mock)), cpu(me));
    let (wall0, busy0) = (now_ns(), procfs::system_busy_ns().ok());
    let (stats, samples) = tokio::join!(
        async {
            let stats = phase.await;
            progress.finished.set(true);
            stats
        },
        sample(watched.gateway, progress.clone())
    );
    let stats = stats?;
    let (gw1, mock1, me1) = (cpu(watched.gateway), cpu(Some(watched.mock)), cpu(me));
    let gateway_cpu_by_thread_s = thread_seconds(&threads0, threads(watched.gateway));
    let (wall1, busy1) = (now_ns(), procfs::system_busy_ns().ok());
    let seconds = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
        _ => None,
    };
    let gateway = watched.gateway.is_some();
    let ours = [seconds(gw0, gw1), seconds(mock0, mock1), seconds(me0, me1)]
        .iter()
        .flatten()
        .sum::<f64>();
    let background_cores = seconds(busy0, busy1).map(|busy| {
        let wall = (wall1 - wall0) as f64 / 1e9;
        ((busy - ours) / wall.max(1e-9)).max(0.0)
    });
    Ok(Measured {
        stats,
        gateway_cpu_s: seconds(gw0, gw1),
        gateway_cpu_by_thread_s,
        mock_cpu_s: seconds(mock0, mock1).unwrap_or(0.0),
        gateway_rss_peak_kib: gateway.then_some(samples.peak_kib),
        max_open: samples.max_open,
        gateway_rss_at_max_open_kib: gateway.then_some(samples.at_max_open_kib),
        background_cores,
    })
}

pub async fn open(
    pool: Rc<Pool>,
    spec: Rc<RequestSpec>,
    expect: Expect,
    plan: OpenLoop,
    watched: Watched,
) -> anyhow::Result<Measured> {
    let progress = Rc::new(Progress::default());
    let p = progress.clone();
    accounted(watched, progress, async move {
        Ok(load::open_loop::run(pool, spec, expect, plan, p).await?)
    })
    .await
}

pub async fn closed(
    pool: Rc<Pool>,
    spec: Rc<RequestSpec>,
    expect: Expect,
    plan: ClosedLoop,
    watched: Watched,
) -> anyhow::Result<Measured> {
    let progress = Rc::new(Progress::default());
    accounted(watched, progress, async move {
        Ok(load::closed_loop::run(pool, spec, expect, plan).await)
    })
    .await
}

//! What the harness reads about processes and the machine from `/proc`: CPU time (for CPU
//! seconds per 1,000 requests), resident memory, and the machine description in the report.

// This module is the harness's Linux system calls (sysconf through libc).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io;

/// CPU time of a whole process, all threads, user + system, in nanoseconds.
///
/// Prefers the scheduler's nanosecond counters (`/proc/PID/task/*/schedstat`) over the
/// `utime + stime` of `/proc/PID/stat`, which count in 10 ms ticks — too coarse for a
/// few-second phase. Threads that already exited are missing from the former; the gateway's
/// only short-lived threads are Tokio's blocking pool, which its hot path does not use.
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    match schedstat_ns(pid) {
        Ok(ns) => Ok(ns),
        Err(_) => stat_ticks_ns(pid),
    }
}

fn schedstat_ns(pid: u32) -> io::Result<u64> {
    Ok(cpu_ns_by_thread(pid)?.values().sum())
}

/// CPU time of a process's threads from the scheduler's nanosecond counters, summed per
/// thread name (`comm`: Tokio's workers, `ledger-writer`, `log-writer`, …), so a report can
/// say which of them a request's CPU went to. Threads that already exited are missing.
pub fn cpu_ns_by_thread(pid: u32) -> io::Result<BTreeMap<String, u64>> {
    let mut by_name = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = entry?.path();
        // A thread can exit between the listing and the reads.
        let (Ok(text), Ok(name)) = (
            fs::read_to_string(task.join("schedstat")),
            fs::read_to_string(task.join("comm")),
        ) else {
            continue;
        };
        let ns = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("unexpected schedstat format"))?;
        *by_name.entry(name.trim_end().to_owned()).or_insert(0) += ns;
    }
    Ok(by_name)
}

fn stat_ticks_ns(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields are counted after its ')'.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, i.e. 12 and 13 after the name.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
    };
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok((ticks(11)? + ticks(12)?) * 1_000_000_000 / hz)
}

/// CPU time all CPUs spent busy (anything but idle and iowait) since boot, in nanoseconds,
/// from the first line of `/proc/stat`. Minus what the benchmark's own processes used, it
/// shows how much other work shared the machine during a phase.
pub fn system_busy_ns() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: skip idle (3) and iowait (4); guest
    // time is already counted in user.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(busy * 1_000_000_000 / hz)
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most it has ever been resident.
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> io::Result<Memory> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

/// CPU model, kernel and memory of this machine.
#[derive(Clone, Debug, Default)]
pub struct MachineInfo {
    pub cpu_model: String,
    /// Logical CPUs listed in /proc/cpuinfo.
    pub cpus: usize,
    pub kernel: String,
    pub memory_mib: u64,
}

pub fn machine() -> MachineInfo {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let memory_mib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    MachineInfo {
        cpu_model,
        cpus,
        kernel,
        memory_mib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() -> io::Result<()> {
        let me = std::process::id();
        // Burn a little CPU so the counter is certainly non-zero.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(me)? > 0);
        assert!(stat_ticks_ns(me).is_ok());
        let m = memory(me)?;
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        assert!(machine().cpus >= 1);
        assert!(system_busy_ns()? > 0);
        assert_eq!(load_average().split(' ').count(), 3);
        Ok(())
    }

    #[test]
    fn splits_cpu_by_thread_name() -> io::Result<()> {
        let me = std::process::id();
        // A named thread that burns ~30 ms of CPU and stays alive until it is read.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let (ready, burnt) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("cpu-split-test".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(30) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
                ready.send(()).unwrap();
                wait.recv().unwrap();
            })?;
        burnt.recv().unwrap();
        let by_thread = cpu_ns_by_thread(me)?;
        done.send(()).unwrap();
        t.join().unwrap();
        let burnt_ns = by_thread.get("cpu-split-test").copied().unwrap_or(0);
        assert!(burnt_ns >= 10_000_000, "{by_thread:?}");
        assert!(by_thread.values().sum::<u64>() >= burnt_ns);
        Ok(())
    }
}

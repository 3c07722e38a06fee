//! Child processes of the harness (the gateway, the mock) and CPU pinning.
//!
//! Every child is killed when its guard drops — normal exit, `?`, panic unwinding, or the
//! Ctrl-C handler dropping the run — and, for the cases no destructor sees (the harness being
//! SIGKILLed), the kernel kills it too: the child asks for `PR_SET_PDEATHSIG` before `exec`.
//! That signal fires when the *thread* that spawned the child exits, so children are spawned
//! from the harness's main thread, which lives as long as the harness.

// This module is the harness's Linux system calls (prctl(PR_SET_PDEATHSIG) before exec and sched_setaffinity through libc).
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};

/// CPUs this process may run on (its affinity mask, e.g. a container's cpuset).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread (and the threads it creates afterwards) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    set_affinity(cpu)
}

fn set_affinity(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within CPU_SETSIZE
    // because callers pass CPUs from `allowed_cpus`. Only raw syscalls: this also runs
    // between fork and exec.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Which CPU each party of a benchmark runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinning {
    pub load_generator: Option<usize>,
    pub mock: Option<usize>,
    pub gateway: Option<usize>,
}

impl Pinning {
    /// The gateway — the thing measured — gets a CPU of its own whenever there are two;
    /// the load generator and the mock share the other on a 2-CPU machine. With three or more
    /// each gets its own. With one, nothing is pinned.
    pub fn plan(cpus: &[usize]) -> Pinning {
        match cpus {
            [a, b, c, ..] => Pinning {
                load_generator: Some(*a),
                mock: Some(*b),
                gateway: Some(*c),
            },
            [a, b] => Pinning {
                load_generator: Some(*a),
                mock: Some(*a),
                gateway: Some(*b),
            },
            _ => Pinning {
                load_generator: None,
                mock: None,
                gateway: None,
            },
        }
    }

    pub fn none() -> Pinning {
        Pinning::plan(&[])
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        let cpu = |c: Option<usize>| c.map_or("unpinned".to_owned(), |c| format!("CPU {c}"));
        format!(
            "load generator {}, mock {}, gateway {} (sched_setaffinity, as `taskset -c` does)",
            cpu(self.load_generator),
            cpu(self.mock),
            cpu(self.gateway)
        )
    }
}

/// A running child process, killed and reaped when dropped.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd`, pinned to `cpu` if given, dying with the harness.
    pub fn spawn(name: &str, mut cmd: Command, cpu: Option<usize>) -> io::Result<ChildGuard> {
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // syscalls (prctl, getppid, sched_setaffinity, _exit).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The harness died before prctl took effect: don't outlive it.
                if libc::getppid() == 1 {
                    libc::_exit(1);
                }
                if let Some(cpu) = cpu {
                    set_affinity(cpu)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(ChildGuard {
            child,
            name: name.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some` once the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already-exited children make kill fail harmlessly; wait reaps either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_one_cpu_for_the_gateway() {
        let two = Pinning::plan(&[0, 1]);
        assert_eq!(two.gateway, Some(1));
        assert_eq!(two.load_generator, two.mock);
        let four = Pinning::plan(&[0, 1, 2, 3]);
        assert_eq!(
            (four.load_generator, four.mock, four.gateway),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(Pinning::plan(&[0]), Pinning::none());
    }

    #[test]
    fn dropping_the_guard_kills_the_child() -> io::Result<()> {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let cpu = allowed_cpus().first().copied();
        let guard = ChildGuard::spawn("sleep", cmd, cpu)?;
        let pid = guard.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(guard);
        // Reaped by the guard, so the pid is gone (not a zombie).
        assert!(!std::path::Path::new(&format!("/proc/{pid}/status")).exists());
        Ok(())
    }
}

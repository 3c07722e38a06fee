//! Threads of their own for housekeeping off the request path: the ledger's commits
//! (`ledger-writer`) and the renewal of warm plugin instances (`plugin-renewal`).
//!
//! Why a thread of its own and not tokio's blocking pool: that work lands at a random moment
//! between requests, and the pool starts and parks threads for it. Plugin renewals run at a
//! lower CPU priority (nice 10): the kernel lets a request's worker preempt them ("Plugin
//! renewals at a lower priority" in `bench/REPORT.md`), and a late renewal only means a
//! request builds its instance itself.
//!
//! The ledger's commits run at normal priority. At nice 10 (weight 110 against a worker's
//! 1024) a machine busy with other processes starved the writer: under kill -9 with
//! `durability: async` the rows lost went back 64–420 ms with four spinning processes beside
//! the gateway (0–8 ms at normal priority), and past 1 s in CI, while the promise is
//! max(`flush_interval`, one commit) + one commit. Durability outranks the p99 it bought
//! ("Fewer wake-ups": +370–394 µs at nice 10 against +463–687 µs on the blocking pool).

use std::sync::mpsc;

/// A unit of work for a [`BackgroundThread`].
pub type Job = Box<dyn FnOnce() + Send>;

/// The nice value of [`Priority::Low`] threads: weight 110 against a worker's 1024, so a
/// worker that wakes preempts them, yet under saturation they still get ~10 % of a shared
/// core (a renewal then takes ~10× its CPU time in wall time, well inside its 1 s deadline).
pub const NICE: i32 = 10;

/// The CPU priority of a [`BackgroundThread`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The workers' own: for work with a deadline it must keep on a busy machine.
    Normal,
    /// [`NICE`]: for work that may wait while requests run.
    Low,
}

/// One named thread that runs queued jobs in order.
pub struct BackgroundThread {
    sender: mpsc::Sender<Job>,
}

impl BackgroundThread {
    /// Starts the thread (it ends when this is dropped and the queue is empty).
    pub fn start(name: &str, priority: Priority) -> std::io::Result<BackgroundThread> {
        let (sender, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if priority == Priority::Low {
                    lower_priority();
                }
                for job in jobs {
                    // A panicking job must not take the thread (and every later job) with
                    // it; whoever waits for the job's result sees it dropped.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(BackgroundThread { sender })
    }

    /// Queues `job`; gives it back when the thread is gone.
    pub fn run(&self, job: Job) -> Result<(), Job> {
        self.sender.send(job).map_err(|e| e.0)
    }
}

/// The calling thread's nice value (Linux: nice is per thread; 0 elsewhere).
#[cfg(test)]
pub(crate) fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: getpriority reads its integer arguments only; `who` 0 is the calling thread.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    #[cfg(not(target_os = "linux"))]
    let nice = 0;
    nice
}

/// Lowers the calling thread's CPU priority to [`NICE`] (Linux: nice is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: setpriority only reads its integer arguments; `who` 0 is the calling thread on
    // Linux. Failure leaves the thread at its inherited priority, which is only slower.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_at_a_lower_priority_and_survive_a_panic() {
        let thread = BackgroundThread::start("test-low", Priority::Low).unwrap();
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        thread
            .run(Box::new(move || {
                t.send(("first", current_nice())).unwrap();
            }))
            .unwrap_or_else(|_| panic!("queued"));
        thread
            .run(Box::new(|| panic!("a job that panics")))
            .unwrap_or_else(|_| panic!("queued"));
        thread
            .run(Box::new(move || tx.send(("after the panic", 0)).unwrap()))
            .unwrap_or_else(|_| panic!("queued"));
        let first = rx.recv().unwrap();
        assert_eq!(first.0, "first");
        // Nice only goes up for an unprivileged process: a test run already at 10 or more
        // stays where it is.
        #[cfg(target_os = "linux")]
        assert!(first.1 >= NICE, "the job ran at nice {}", first.1);
        assert_eq!(rx.recv().unwrap().0, "after the panic");
    }
}

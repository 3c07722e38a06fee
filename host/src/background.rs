//! Threads for housekeeping that must give the CPU up to requests: the ledger's commits and
//! the renewal of warm plugin instances run on threads of their own at a lower CPU priority
//! (nice 10) than the async workers.
//!
//! Why a thread of its own and not tokio's blocking pool: that work lands at a random moment
//! between requests, and on a gateway with one core a request that became ready waited for
//! it. At nice 10 the kernel lets the request's worker preempt it. Measured for the ledger
//! (`bench/REPORT.md`, "Fewer wake-ups": commits on the blocking pool put p99 at
//! +463-687 µs, at nice 10 +370-394 µs) and for the renewal of a JavaScript guardrail's
//! instances ("Plugin renewals at a lower priority").

use std::sync::mpsc;

/// A unit of work for a [`LowPriorityThread`].
pub type Job = Box<dyn FnOnce() + Send>;

/// The nice value of housekeeping threads: weight 110 against a worker's 1024, so a worker
/// that wakes preempts them, yet under saturation they still get ~10 % of a shared core
/// (a renewal then takes ~10× its CPU time in wall time, well inside its 1 s deadline).
pub const NICE: i32 = 10;

/// One named thread at [`NICE`] that runs queued jobs in order.
pub struct LowPriorityThread {
    sender: mpsc::Sender<Job>,
}

impl LowPriorityThread {
    /// Starts the thread (it ends when this is dropped and the queue is empty).
    pub fn start(name: &str) -> std::io::Result<LowPriorityThread> {
        let (sender, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                lower_priority();
                for job in jobs {
                    // A panicking job must not take the thread (and every later job) with
                    // it; whoever waits for the job's result sees it dropped.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(LowPriorityThread { sender })
    }

    /// Queues `job`; gives it back when the thread is gone.
    pub fn run(&self, job: Job) -> Result<(), Job> {
        self.sender.send(job).map_err(|e| e.0)
    }
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
        let thread = LowPriorityThread::start("test-low").unwrap();
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        thread
            .run(Box::new(move || {
                #[cfg(target_os = "linux")]
                #[allow(unsafe_code)]
                // SAFETY: getpriority reads its integer arguments only.
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
                #[cfg(not(target_os = "linux"))]
                let nice = NICE;
                t.send(("first", nice)).unwrap();
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
        assert!(first.1 >= NICE, "the job ran at nice {}", first.1);
        assert_eq!(rx.recv().unwrap().0, "after the panic");
    }
}

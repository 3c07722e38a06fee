//! Time for the load generator: one monotonic nanosecond clock, and a timer precise to tens of
//! microseconds. Tokio's timer wheel ticks in whole milliseconds, which at 1,000 req/s would
//! add up to a millisecond of send jitter — ten times the latency budget being measured — so
//! open-loop sends wait on a Linux `timerfd` armed at an absolute time instead.

// This module is the harness's Linux system calls (timerfd, clock_gettime and prctl through libc).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock the timer below is armed on.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call cannot fail and leaves `ts` set.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Lowers this thread's timer slack to 1 ns (the default 50 µs would be added to every wake-up).
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// A one-shot timer on a `timerfd`, awaited through the Tokio reactor.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    /// Must be called inside a Tokio runtime (the fd registers with its reactor).
    pub fn new() -> io::Result<PreciseTimer> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `owned` is open and stays the same descriptor for as long as the AsyncFd
        // owns it (it is never replaced or closed elsewhere).
        let fd = unsafe { AsyncFd::register(owned) }.map_err(|e| e.into_parts().1)?;
        Ok(PreciseTimer { fd })
    }

    /// Resolves at `deadline` (a [`now_ns`] value); at once when it has passed.
    pub async fn sleep_until(&self, deadline: u64) -> io::Result<()> {
        if now_ns() >= deadline {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
            },
        };
        let fd = self.fd.get_ref().as_raw_fd();
        // SAFETY: `fd` is our timerfd and `spec` a valid itimerspec; old value not requested.
        let rc = unsafe {
            libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = 0u64;
            // SAFETY: reads exactly 8 bytes into a u64, as timerfd requires.
            let n = unsafe {
                libc::read(
                    fd,
                    (&mut expirations as *mut u64).cast::<libc::c_void>(),
                    std::mem::size_of::<u64>(),
                )
            };
            if n == std::mem::size_of::<u64>() as isize {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                // Readiness was stale (an earlier expiry already consumed): wait again.
                guard.clear_ready();
                continue;
            }
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timer_fires_close_to_the_deadline() -> io::Result<()> {
        let timer = PreciseTimer::new()?;
        for _ in 0..5 {
            let deadline = now_ns() + 300_000;
            timer.sleep_until(deadline).await?;
            // Never early; how late depends on the machine, so only the lower bound is checked.
            assert!(now_ns() >= deadline);
        }
        timer.sleep_until(now_ns() - 1).await
    }
}

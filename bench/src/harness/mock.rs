//! The mock upstream as a child process: the harness binary started again with
//! `--internal-mock`, pinned to its own CPU, so the mock is scheduled, accounted and measured
//! like a separate server — and never goes stale against the harness, as a separately built
//! `mock-upstream` binary could.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use bitrouter_mock::MockBehavior;
use http::Method;

use super::http::call;
use crate::process::ChildGuard;

/// The flag that turns the harness binary into the mock.
pub const INTERNAL_MOCK_FLAG: &str = "--internal-mock";

/// The line the mock prints once it listens; the address follows it.
pub use bitrouter_mock::BANNER;

pub struct MockProcess {
    guard: ChildGuard,
    addr: SocketAddr,
}

impl MockProcess {
    /// Starts `exe --internal-mock` on CPU `cpu` and waits for its banner.
    pub fn start(exe: &Path, cpu: Option<usize>) -> anyhow::Result<MockProcess> {
        let mut cmd = Command::new(exe);
        cmd.arg(INTERNAL_MOCK_FLAG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut guard = ChildGuard::spawn("mock", cmd, cpu)
            .with_context(|| format!("starting the mock ({})", exe.display()))?;
        let stdout = guard
            .child_mut()
            .stdout
            .take()
            .context("the mock's stdout is not piped")?;
        // Blocking is fine here: nothing else runs yet, and the mock prints at once (or exits,
        // which ends the read with EOF).
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the mock's banner")?;
        let Some(addr) = line.trim().strip_prefix(BANNER) else {
            bail!("the mock did not start; it printed {line:?}");
        };
        let addr = addr
            .parse()
            .with_context(|| format!("the mock's banner has no address: {line:?}"))?;
        Ok(MockProcess { guard, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Replaces the mock's behavior for the requests that follow.
    pub async fn set_behavior(&self, behavior: &MockBehavior) -> anyhow::Result<()> {
        let body = serde_json::to_vec(behavior).context("encoding the mock behavior")?;
        let (status, answer) = call(self.addr, Method::PUT, "/_mock/behavior", body, None)
            .await
            .context("setting the mock's behavior")?;
        if !status.is_success() {
            bail!(
                "the mock refused the behavior: {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(())
    }
}

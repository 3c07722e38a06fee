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

/// Starts `cmd` as the child `name` on CPU `cpu` and reads the first line it prints, which
/// must be `banner` followed by the address it listens on (how the harness's own children, the
/// mock and the floor proxy, announce themselves).
pub fn spawn_announced(
    name: &str,
    mut cmd: Command,
    cpu: Option<usize>,
    banner: &str,
) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut guard = ChildGuard::spawn(name, cmd, cpu)
        .with_context(|| format!("starting the {name} ({program})"))?;
    let stdout = guard
        .child_mut()
        .stdout
        .take()
        .with_context(|| format!("the {name}'s stdout is not piped"))?;
    // Blocking is fine here: nothing else runs yet, and the child prints at once (or exits,
    // which ends the read with EOF).
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .with_context(|| format!("reading the {name}'s banner"))?;
    let Some(addr) = line.trim().strip_prefix(banner) else {
        bail!("the {name} did not start; it printed {line:?}");
    };
    let addr = addr
        .parse()
        .with_context(|| format!("the {name}'s banner has no address: {line:?}"))?;
    Ok((guard, addr))
}

pub struct MockProcess {
    guard: ChildGuard,
    addr: SocketAddr,
}

impl MockProcess {
    /// Starts `exe --internal-mock` on CPU `cpu` and waits for its banner.
    pub fn start(exe: &Path, cpu: Option<usize>) -> anyhow::Result<MockProcess> {
        let mut cmd = Command::new(exe);
        cmd.arg(INTERNAL_MOCK_FLAG);
        let (guard, addr) = spawn_announced("mock", cmd, cpu, BANNER)?;
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

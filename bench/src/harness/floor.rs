//! The floor proxy as a child process: the harness binary started again with
//! `--internal-floor UPSTREAM` (see [`crate::floor`]), pinned to the gateway's CPU, so it is
//! scheduled and measured like the gateway.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::peer::Served;
use crate::floor::{BANNER, INTERNAL_FLOOR_FLAG};
use crate::process::ChildGuard;

/// The scenarios the floor runs: those where a plain forward is the same work from the
/// caller's side (no translation, no failover, no plugin of its own).
pub const FLOOR_SCENARIOS: [u8; 4] = [1, 3, 4, 5];

pub struct FloorProcess {
    guard: ChildGuard,
    addr: SocketAddr,
}

impl FloorProcess {
    /// Starts `exe --internal-floor UPSTREAM` on CPU `cpu` and waits for its banner.
    pub fn start(exe: &Path, upstream: SocketAddr, cpu: Option<usize>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg(INTERNAL_FLOOR_FLAG)
            .arg(upstream.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut guard = ChildGuard::spawn("floor proxy", cmd, cpu)
            .with_context(|| format!("starting the floor proxy ({})", exe.display()))?;
        let stdout = guard
            .child_mut()
            .stdout
            .take()
            .context("the floor proxy's stdout is not piped")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the floor proxy's banner")?;
        let Some(addr) = line.trim().strip_prefix(BANNER) else {
            bail!("the floor proxy did not start; it printed {line:?}");
        };
        let addr = addr
            .parse()
            .with_context(|| format!("the floor proxy's banner has no address: {line:?}"))?;
        Ok(FloorProcess { guard, addr })
    }
}

impl Served for FloorProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn pid(&self) -> u32 {
        self.guard.pid()
    }
    fn token(&self) -> Option<&str> {
        None
    }
}

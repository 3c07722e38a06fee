//! The floor proxy as a child process: the harness binary started again with
//! `--internal-floor UPSTREAM` (see [`crate::floor`]), pinned to the gateway's CPU, so it is
//! scheduled and measured like the gateway.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use super::mock::spawn_announced;
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
        cmd.arg(INTERNAL_FLOOR_FLAG).arg(upstream.to_string());
        let (guard, addr) = spawn_announced("floor proxy", cmd, cpu, BANNER)?;
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

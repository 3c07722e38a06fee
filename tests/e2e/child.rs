//! The real `bitrouter` binary as a child process serving a config file on a free port,
//! for tests that need the process itself (signals, kill -9, the CLI, other-language
//! clients). Killed and reaped on drop, so a failing test leaves nothing behind.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bitrouter");

pub struct ChildGateway {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// One blocking `GET /health`; true on a 200.
fn health_ok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

impl ChildGateway {
    /// Starts `bitrouter serve --config CONFIG` in `workdir` (its log goes to
    /// `workdir/gateway.log`) and waits up to 60 s for `/health` (a gateway that fails to
    /// start exits and is reported at once; a slow one compiles a large plugin, such as the
    /// 12 MB JavaScript guardrail, on a machine busy with the other tests: 20 s was not
    /// always enough in CI).
    pub fn spawn(config: &Path, workdir: &Path) -> ChildGateway {
        Self::spawn_with_env(config, workdir, &[])
    }

    /// Like `spawn`, with extra environment variables (e.g. `BITROUTER_HOME`).
    pub fn spawn_with_env(config: &Path, workdir: &Path, env: &[(&str, &str)]) -> ChildGateway {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = workdir.join("gateway.log");
        let out = File::create(&log).expect("gateway log");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(addr.to_string())
            .current_dir(workdir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let mut gw = ChildGateway { child, addr, log };
        let started = Instant::now();
        while !health_ok(addr) {
            if let Some(status) = gw.try_wait() {
                panic!(
                    "the gateway exited ({status}) before answering /health; its output:\n{}",
                    gw.log()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                panic!(
                    "GET http://{addr}/health did not answer within 60 s; gateway output:\n{}",
                    gw.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// What the gateway has logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

//! The optional peer: a LiteLLM proxy on the same mock, measured with the same scenarios as
//! the gateway (1 and 4), so the report can say how BitRouter compares with the Python
//! gateway people run today. Used only when `litellm` is importable; never in CI.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;

use super::http::call;
use crate::process::ChildGuard;

/// The scenarios the peer runs (the bare proxy and streaming).
pub const PEER_SCENARIOS: [u8; 2] = [1, 4];

/// Something the load is sent through: the gateway or the peer.
pub trait Served {
    fn addr(&self) -> SocketAddr;
    fn pid(&self) -> u32;
    fn token(&self) -> Option<&str>;
}

/// The Python that has `litellm`: `$BITROUTER_BENCH_LITELLM_PYTHON`, else `.venv/bin/python`
/// of the workspace, else `python3`; `None` when none of them can import it.
pub fn find_python(workspace: &Path) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BITROUTER_BENCH_LITELLM_PYTHON").map(PathBuf::from),
        Some(workspace.join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import litellm.proxy.proxy_server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The LiteLLM proxy's config: the scenarios' model name, served by the mock as an
/// OpenAI-compatible provider.
pub fn config_yaml(mock: SocketAddr, model: &str) -> String {
    format!(
        "# Written by the bitrouter-bench harness.\nmodel_list:\n  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      api_base: http://{mock}/v1\n      api_key: unused\nlitellm_settings:\n  drop_params: true\n  telemetry: false\n"
    )
}

pub struct PeerProcess {
    guard: ChildGuard,
    addr: SocketAddr,
    master_key: String,
    /// The LiteLLM version, for the report.
    pub version: String,
}

impl PeerProcess {
    /// Starts the `litellm` proxy (one worker) on `cpu` with `config`, logging to
    /// `dir/litellm.log`, and waits until it answers.
    pub async fn start(
        python: &Path,
        dir: &Path,
        config: &str,
        cpu: Option<usize>,
    ) -> anyhow::Result<PeerProcess> {
        let config_path = dir.join("litellm.yaml");
        std::fs::write(&config_path, config).context("writing the LiteLLM config")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.join("litellm.log"))?;
        // LiteLLM refuses to start without a master key; requests carry it as their token.
        let master_key = format!(
            "sk-bench-{:016x}",
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), port)
        );
        let mut cmd = Command::new(python);
        // The `litellm` console script, through this Python (its bin/ may not be on PATH).
        cmd.args([
            "-c",
            "from litellm import run_server; run_server()",
            "--config",
        ])
        .arg(&config_path)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--num_workers", "1"])
        // No fetch of the model price map from the network at import.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_MASTER_KEY", &master_key)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        let mut guard = ChildGuard::spawn("litellm", cmd, cpu).context("starting LiteLLM")?;
        let started = Instant::now();
        loop {
            if let Some(status) = guard.exited() {
                bail!(
                    "LiteLLM exited at start ({status}); see {}",
                    dir.join("litellm.log").display()
                );
            }
            if let Ok((s, _)) = call(addr, Method::GET, "/health/liveliness", "", None).await
                && s.is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(90) {
                bail!("LiteLLM did not answer within 90 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let version = Command::new(python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(PeerProcess {
            guard,
            addr,
            master_key,
            version,
        })
    }
}

impl Served for PeerProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn pid(&self) -> u32 {
        self.guard.pid()
    }
    fn token(&self) -> Option<&str> {
        Some(&self.master_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_the_model_at_the_mock() {
        let yaml = config_yaml(([127, 0, 0, 1], 9).into(), "mock-gpt");
        assert!(yaml.contains("model_name: mock-gpt"));
        assert!(yaml.contains("model: openai/mock-gpt"));
        assert!(yaml.contains("api_base: http://127.0.0.1:9/v1"));
    }
}

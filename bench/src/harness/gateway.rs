//! The gateway under test: its config file, its process, and the cold-start measurement.
//!
//! The config routes model names so that direct and via requests carry the same body: route
//! `mock-gpt` → the mock's OpenAI endpoint, route `mock-claude` → its Anthropic endpoint (an
//! OpenAI caller is translated), and route `failover` → first a port nobody listens on, then
//! the mock. The failover route never cools its dead endpoint down, so *every* request takes
//! the failover path instead of only the first few; route `midstream` likewise breaks every
//! stream half-way and has the next endpoint continue it (scenario 10).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use http::Method;

use super::http::call;
use super::scenario::{Deployment, cold_start_body};
use crate::load::clock::{PreciseTimer, now_ns};
use crate::process::ChildGuard;
use crate::procfs;

/// The gateway's config for a mock at `mock`, with a dead endpoint at `dead`. The
/// `Firewall` deployment is the default one: auth on (wallet tokens of the key store the
/// launcher points `BITROUTER_HOME` at) and the default guardrails (compiled once into
/// `plugin_cache`); `Bare` is the bare proxy; `Plugin` runs one guardrail plugin from
/// `plugins_dir` alone, auth off. Each gateway keeps its own spend ledger file.
#[allow(clippy::too_many_arguments)]
pub fn config_yaml(
    mock: SocketAddr,
    dead: SocketAddr,
    log_level: &str,
    deployment: Deployment,
    plugins_dir: &Path,
    plugin_cache: &Path,
    ledger: &Path,
    flush_interval: Option<&str>,
    otlp: Option<SocketAddr>,
    server_options: &[(String, String)],
) -> String {
    let cache = plugin_cache.display();
    let guardrails = match deployment {
        Deployment::Firewall => format!("plugins:\n  cache_dir: {cache}\nauth:\n  mode: on\n"),
        Deployment::Bare => "guardrails:\n  enabled: false\n".to_owned(),
        Deployment::Plugin(id) => format!(
            "guardrails:\n  builtin: false\n  plugins:\n    - path: {}\nplugins:\n  cache_dir: {cache}\n",
            plugins_dir.join(format!("{id}.wasm")).display()
        ),
    };
    let ledger = ledger.display();
    let flush = flush_interval
        .map(|f| format!("  flush_interval: {f}\n"))
        .unwrap_or_default();
    let flush = match otlp {
        // Traces of every request and the GenAI metrics, to the harness's collector.
        Some(addr) => format!(
            "{flush}observe:\n  otlp:\n    endpoint: http://{addr}\n    metrics_interval: 1s\n"
        ),
        None => flush,
    };
    let server_options: String = server_options
        .iter()
        .map(|(key, value)| format!("  {key}: {value}\n"))
        .collect();
    format!(
        r#"# Written by the bitrouter-bench harness.
server:
  log_level: {log_level}
{server_options}database:
  url: redb://{ledger}
{flush}{guardrails}providers:
  mock-openai:
    api_protocol: openai
    api_base: http://{mock}/v1
    api_key_required: false
  mock-anthropic:
    api_protocol: anthropic
    api_base: http://{mock}
    api_key_required: false
  dead-openai:
    api_protocol: openai
    api_base: http://{dead}/v1
    api_key_required: false
  # The same mock, told per request (the x-mock header) to cut every stream half-way, or
  # to continue the partial answer it is given.
  cut-openai:
    api_protocol: openai
    api_base: http://{mock}/v1
    api_key_required: false
    default_headers: {{ x-mock: '{{"cut_after": 50}}' }}
  continue-openai:
    api_protocol: openai
    api_base: http://{mock}/v1
    api_key_required: false
    default_headers: {{ x-mock: '{{"continue_partial": true, "repeat_words": 1}}' }}
models:
  mock-gpt:
    endpoints:
      - {{ provider: mock-openai, model_id: mock-gpt }}
  mock-claude:
    endpoints:
      - {{ provider: mock-anthropic, model_id: mock-claude }}
  failover:
    strategy: priority
    # Never cool the dead endpoint down: measure the failover path on every request.
    cooldown: {{ failures: 4294967295 }}
    endpoints:
      - {{ provider: dead-openai, model_id: mock-gpt }}
      - {{ provider: mock-openai, model_id: mock-gpt }}
  midstream:
    mid_stream_failover: continue
    cooldown: {{ failures: 4294967295 }}
    endpoints:
      - {{ provider: cut-openai, model_id: mock-gpt }}
      - {{ provider: continue-openai, model_id: mock-gpt }}
"#
    )
}

/// A loopback address that refuses connections: a port bound and released at once.
pub fn dead_addr() -> anyhow::Result<SocketAddr> {
    free_addr()
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// How to start a gateway.
pub struct GatewayLauncher {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub cpu: Option<usize>,
    /// With auth on: the key store home and a token minted from it.
    pub auth: Option<Credentials>,
}

/// A wallet key store for the gateway's default allowlist and an api token it signed.
#[derive(Clone)]
pub struct Credentials {
    pub home: PathBuf,
    pub token: String,
}

impl Credentials {
    /// `bitrouter keygen --home DIR`, then a day-long api token (`bitrouter token mint`),
    /// both by the gateway binary under test.
    pub fn create(binary: &Path, home: &Path) -> anyhow::Result<Credentials> {
        let run = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(binary)
                .args(args)
                .arg("--home")
                .arg(home)
                .env_remove("BITROUTER_HOME")
                .output()
                .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
            if !out.status.success() {
                bail!(
                    "{} {} failed: {}",
                    binary.display(),
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        run(&["keygen"])?;
        let token = run(&[
            "token", "mint", "--chain", "solana", "--scope", "api", "--exp", "1d",
        ])?;
        Ok(Credentials {
            home: home.to_owned(),
            token,
        })
    }
}

/// A running gateway.
pub struct GatewayProcess {
    guard: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
    token: Option<String>,
}

impl GatewayLauncher {
    /// Writes the config into `dir` as `<name>.yaml`; the log goes to `<name>.log`.
    pub fn new(
        binary: PathBuf,
        dir: &Path,
        name: &str,
        yaml: &str,
        cpu: Option<usize>,
    ) -> anyhow::Result<GatewayLauncher> {
        let config = dir.join(format!("{name}.yaml"));
        fs::write(&config, yaml).with_context(|| format!("writing {}", config.display()))?;
        Ok(GatewayLauncher {
            binary,
            config,
            log: dir.join(format!("{name}.log")),
            cpu,
            auth: None,
        })
    }

    /// Spawns a gateway and waits for its first successful model request. Returns it with
    /// the cold-start time in milliseconds (spawn → that request's last byte).
    pub async fn start(&self) -> anyhow::Result<(GatewayProcess, f64)> {
        let addr = free_addr()?;
        let log = fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(addr.to_string())
            .env_remove("RUST_LOG")
            .env_remove("BITROUTER_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(a) = &self.auth {
            cmd.env("BITROUTER_HOME", &a.home);
        }
        let started = now_ns();
        let guard = ChildGuard::spawn("gateway", cmd, self.cpu)
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let mut gateway = GatewayProcess {
            guard,
            addr,
            log: self.log.clone(),
            token: self.auth.as_ref().map(|a| a.token.clone()),
        };
        gateway.first_success().await?;
        let cold_ms = (now_ns() - started) as f64 / 1e6;
        Ok((gateway, cold_ms))
    }
}

impl super::peer::Served for GatewayProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The token requests to this gateway carry (auth on), if any.
    fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

impl GatewayProcess {
    pub fn memory(&self) -> anyhow::Result<procfs::Memory> {
        procfs::memory(self.guard.pid()).context("reading the gateway's memory")
    }

    /// Fails with the end of the gateway's log if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.guard.exited() {
            bail!(
                "the gateway exited ({status}); the end of its log:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Lines of the gateway's log so far that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> u64 {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains(needle)).count() as u64
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Polls with a model request every 200 µs until one succeeds (10 s at most).
    async fn first_success(&mut self) -> anyhow::Result<()> {
        let timer = PreciseTimer::new()?;
        let deadline = now_ns() + 10_000_000_000;
        let body = cold_start_body();
        loop {
            match call(
                self.addr,
                Method::POST,
                "/v1/chat/completions",
                body.clone(),
                self.token.as_deref(),
            )
            .await
            {
                Ok((status, _)) if status.is_success() => return Ok(()),
                Ok((status, answer)) => bail!(
                    "the gateway answered its first request with {status}: {}",
                    String::from_utf8_lossy(&answer)
                ),
                // Not listening yet.
                Err(_) => {}
            }
            self.check_alive()?;
            if now_ns() > deadline {
                bail!(
                    "the gateway did not answer within 10 s; its log:\n{}",
                    self.log_tail()
                );
            }
            timer.sleep_until(now_ns() + 200_000).await?;
        }
    }
}

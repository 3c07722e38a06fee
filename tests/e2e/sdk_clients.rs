//! The official OpenAI, Anthropic and Google Gen AI Python SDKs against the real gateway binary.
//!
//! Starts the mock upstream in-process, writes a config with one route per upstream protocol
//! (`via-openai`, `via-anthropic`, `via-gemini`), spawns `bitrouter serve` on a free port and
//! runs `tests/sdk/sdk_e2e.py` (the OpenAI and Anthropic SDKs), `tests/sdk/gemini_e2e.py`
//! (google-genai) or `tests/sdk/responses_e2e.py` (the OpenAI SDK's `responses`), which drive
//! their SDKs through every route (chat, streaming, tool calls, model list, an error). The
//! Python side needs a virtualenv with the pinned SDKs:
//!
//! ```sh
//! python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt
//! ```
//!
//! or `BITROUTER_TEST_PYTHON=/path/to/python` naming an interpreter that has them. Without one
//! the test fails (it does not skip) and says how to set it up.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bitrouter_mock::{MockBehavior, MockServer};

use crate::child::ChildGateway;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const SDK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sdk/sdk_e2e.py");
const GEMINI_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sdk/gemini_e2e.py");
const RESPONSES_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sdk/responses_e2e.py");
const MID_STREAM_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/sdk/mid_stream_e2e.py"
);
/// Generous: the script makes ~40 requests against a local mock and takes a few seconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
const SETUP_HINT: &str = "set up the SDK virtualenv at the workspace root with\n    \
    python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt\n\
    or point BITROUTER_TEST_PYTHON at an interpreter that has the packages in \
    tests/sdk/requirements.txt";

/// Kills and reaps the child when dropped, so neither a failed assertion nor a panic leaves a
/// process behind.
struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl ChildGuard {
    fn spawn(name: &'static str, cmd: &mut Command) -> ChildGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard { name, child }
    }

    /// `Some(status)` once the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The interpreter to run the script with, checked to have both SDKs.
pub(crate) fn python() -> PathBuf {
    let python = match std::env::var_os("BITROUTER_TEST_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let venv = Path::new(WORKSPACE).join(".venv/bin/python");
            if !venv.exists() {
                panic!(
                    "no Python for the SDK test: BITROUTER_TEST_PYTHON is not set and {} does \
                     not exist; {SETUP_HINT}",
                    venv.display()
                );
            }
            venv
        }
    };
    let probe = Command::new(&python)
        .args([
            "-c",
            "import openai, anthropic; print(openai.__version__, anthropic.__version__)",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} cannot `import openai, anthropic` ({}):\n{}\n{SETUP_HINT}",
            python.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
        Err(e) => panic!("cannot run {}: {e}; {SETUP_HINT}", python.display()),
    }
}

/// One route per upstream protocol, all on the mock at `mock`.
fn every_protocol(mock: &str) -> String {
    format!(
        "server:
  log_level: info

providers:
  mock-openai:
    api_protocol: openai
    api_base: {mock}/v1
    api_key_required: false
  mock-anthropic:
    api_protocol: anthropic
    api_base: {mock}
    api_key_required: false
  mock-google:
    api_protocol: google
    api_base: {mock}/v1beta
    api_key_required: false

models:
  via-openai:
    endpoints:
      - provider: mock-openai
        model_id: mock-gpt
  via-anthropic:
    endpoints:
      - provider: mock-anthropic
        model_id: mock-claude
  via-gemini:
    endpoints:
      - provider: mock-google
        model_id: mock-gemini
"
    )
}

/// Everything that blocks (child processes, polling) runs here, off the runtime that serves the
/// mock.
fn run(yaml: String, script_path: &str, script_args: &[String]) {
    let script_name = Path::new(script_path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("script");
    let python = python();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("bitrouter.yaml");
    fs::write(&config, yaml).expect("write config");
    let mut gateway = ChildGateway::spawn(&config, dir.path());
    let addr = gateway.addr;

    let out_path = dir.path().join("sdk.stdout");
    let err_path = dir.path().join("sdk.stderr");
    let mut cmd = Command::new(&python);
    cmd.arg(script_path)
        .arg("--base-url")
        .arg(format!("http://{addr}"))
        .args(script_args)
        .current_dir(WORKSPACE)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"));
    // The SDKs go through httpx, which honours proxy variables; the gateway is local.
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    let mut script = ChildGuard::spawn("sdk script", &mut cmd);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = script.exited() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(script); // kills it on timeout
    let exited = gateway.try_wait();
    let stdout = read_lossy(&out_path);
    let stderr = read_lossy(&err_path);
    let report = || {
        format!(
            "--- {script_name} stdout ---\n{stdout}\n--- {script_name} stderr ---\n{stderr}\n\
             --- gateway output ---\n{}",
            gateway.log()
        )
    };
    match status {
        None => panic!(
            "{script_name} did not finish within {SCRIPT_TIMEOUT:?}\n{}",
            report()
        ),
        Some(s) if !s.success() => panic!("{script_name} failed ({s})\n{}", report()),
        Some(_) => print!("{stdout}"),
    }
    assert!(
        exited.is_none(),
        "the gateway exited during the SDK run\n{}",
        report()
    );
}

/// Runs one SDK script against a fresh mock and gateway.
async fn sdk_run(script: &'static str) {
    let mock = MockServer::start(MockBehavior::default())
        .await
        .expect("start mock upstream");
    let mock_url = mock.base_url();
    let result =
        tokio::task::spawn_blocking(move || run(every_protocol(&mock_url), script, &[])).await;
    mock.shutdown().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_openai_and_anthropic_through_every_protocol() {
    sdk_run(SDK_SCRIPT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_client_google_genai_through_every_protocol() {
    sdk_run(GEMINI_SCRIPT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_client_openai_responses_through_every_protocol() {
    sdk_run(RESPONSES_SCRIPT).await;
}

/// Mid-stream failover with every SDK: routes whose first endpoint (each upstream protocol)
/// cuts, errors or stalls after four words, and whose second continues the answer in the
/// next protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_get_one_whole_stream_across_a_mid_stream_failover() {
    let words = || MockBehavior {
        text: Some("Alpha bravo charlie delta echo foxtrot golf hotel india juliet.".into()),
        chunks: Some(10),
        ..Default::default()
    };
    let faults = [
        (
            "cut",
            MockBehavior {
                cut_after: Some(4),
                ..words()
            },
        ),
        (
            "error",
            MockBehavior {
                error_after: Some(4),
                ..words()
            },
        ),
        (
            "stall",
            MockBehavior {
                stall_after_chunks: Some(4),
                ..words()
            },
        ),
    ];
    let backup = MockServer::start(MockBehavior {
        continue_partial: true,
        repeat_words: 1,
        ..words()
    })
    .await
    .expect("start mock upstream");
    let mut mocks = Vec::new();
    for (name, b) in faults {
        mocks.push((
            name,
            MockServer::start(b).await.expect("start mock upstream"),
        ));
    }
    let protocols = [("openai", "/v1"), ("anthropic", ""), ("google", "/v1beta")];
    let mut yaml = String::from(
        "routing:\n  stream_idle_timeout: 500ms\n  mid_stream_failover: continue\n  cooldown: { failures: 1000, duration: 1s }\nproviders:\n",
    );
    for (protocol, path) in protocols {
        yaml.push_str(&format!(
            "  backup-{protocol}:\n    api_protocol: {protocol}\n    api_base: {}{path}\n    api_key_required: false\n",
            backup.base_url()
        ));
        for (fault, m) in &mocks {
            yaml.push_str(&format!(
                "  {fault}-{protocol}:\n    api_protocol: {protocol}\n    api_base: {}{path}\n    api_key_required: false\n",
                m.base_url()
            ));
        }
    }
    yaml.push_str("models:\n");
    let mut routes = Vec::new();
    for (i, (protocol, _)) in protocols.iter().enumerate() {
        let next = protocols[(i + 1) % protocols.len()].0;
        for (fault, _) in &mocks {
            routes.push(format!("{fault}-{protocol}"));
            yaml.push_str(&format!(
                "  {fault}-{protocol}:\n    endpoints:\n      - {{ provider: {fault}-{protocol}, model_id: broken }}\n      - {{ provider: backup-{next}, model_id: steady }}\n"
            ));
        }
    }
    let args = vec!["--routes".to_owned(), routes.join(",")];
    let result = tokio::task::spawn_blocking(move || run(yaml, MID_STREAM_SCRIPT, &args)).await;
    backup.shutdown().await;
    for (_, m) in mocks {
        m.shutdown().await;
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

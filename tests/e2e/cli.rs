//! The real `bitrouter` binary: `--version`, `--help`, `check-config`, `route list` and
//! `serve`, including config errors that name file, line, key and expectation, `${VAR}`
//! expansion with a `.env` beside the config, and a clean exit on SIGTERM.
//!
//! Every child runs with a deadline and is killed if it overruns or the test panics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bitrouter");
const QUICKSTART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml");

/// Environment variables that would change what the binary does; removed from every child.
const SCRUBBED_ENV: [&str; 5] = [
    "BITROUTER_CONFIG",
    "RUST_LOG",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "MY_TEST_KEY",
];

/// A command for the binary, run in `cwd` (a temp dir, so no stray `./bitrouter.yaml`).
fn bitrouter(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in SCRUBBED_ENV {
        c.env_remove(v);
    }
    c
}

/// A spawned child that is killed and reaped when dropped, with its output drained on
/// background threads so a full pipe can never block it.
struct Running {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

fn drain(r: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (without reaping its output).
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for exit up to `limit`; panics (after killing the child) if it takes longer.
    fn wait(mut self, limit: Duration, what: &str) -> Finished {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let stdout = self
                    .stdout
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                let stderr = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                return Finished {
                    status,
                    stdout,
                    stderr,
                    elapsed: started.elapsed(),
                };
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!("{what}: still running after {limit:?}; killed it. stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary to completion (at most 30 s).
fn run(cwd: &Path, args: &[&str]) -> Finished {
    Running::spawn(bitrouter(cwd, args)).wait(
        Duration::from_secs(30),
        &format!("bitrouter {}", args.join(" ")),
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Writes `text` to `name` inside `dir` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /health` over a plain TCP connection: the status code and body, if anything answered.
fn get_health(addr: SocketAddr) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

#[test]
fn version_prints_the_version() {
    let dir = tempdir();
    let out = run(dir.path(), &["--version"]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("bitrouter") && out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "stdout: {}",
        out.stdout
    );
}

#[test]
fn help_shows_examples() {
    let dir = tempdir();
    let out = run(dir.path(), &["--help"]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    for needle in [
        "Examples",
        "serve",
        "check-config",
        "route",
        "bitrouter serve --config",
    ] {
        assert!(
            out.stdout.contains(needle),
            "--help lacks {needle:?}:\n{}",
            out.stdout
        );
    }
    for sub in [
        &["serve", "--help"][..],
        &["check-config", "--help"],
        &["route", "list", "--help"],
    ] {
        let out = run(dir.path(), sub);
        assert_eq!(out.code(), Some(0), "{sub:?}: {}", out.stderr);
        assert!(
            out.stdout.contains("Example"),
            "{sub:?} lacks an example:\n{}",
            out.stdout
        );
    }
    // What a verb's help must say: serve how it reloads, token mint where its key lives.
    for (sub, needles) in [
        (&["serve", "--help"][..], &["SIGHUP", "SIGTERM"][..]),
        (&["token", "mint", "--help"], &["--home", "key store"]),
    ] {
        let out = run(dir.path(), sub);
        assert_eq!(out.code(), Some(0), "{sub:?}: {}", out.stderr);
        for needle in needles {
            assert!(
                out.stdout.contains(needle),
                "{sub:?} lacks {needle:?}:\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn no_or_unknown_subcommand_is_a_usage_error() {
    let dir = tempdir();
    for args in [&[][..], &["frobnicate"], &["serve", "--no-such-flag"]] {
        let out = run(dir.path(), args);
        assert_ne!(out.code(), Some(0), "{args:?} should fail");
        assert!(
            out.stderr.contains("Usage"),
            "{args:?}: stderr: {}",
            out.stderr
        );
    }
}

/// Asserts the quickstart's two routes and their endpoints are in `text`.
fn assert_quickstart_routes(text: &str) {
    for needle in [
        "default (priority)",
        "balanced (load_balance)",
        "mock-openai:mock-gpt",
        "mock-anthropic:mock-claude",
        "http://127.0.0.1:9999/v1/chat/completions",
        "http://127.0.0.1:9999/v1/messages",
        "weight 2",
    ] {
        assert!(
            text.contains(needle),
            "routes output lacks {needle:?}:\n{text}"
        );
    }
    let default_at = text.find("default (priority)").unwrap();
    let default_block = &text[default_at..];
    let openai = default_block.find("mock-openai:mock-gpt").unwrap();
    let anthropic = default_block.find("mock-anthropic:mock-claude").unwrap();
    assert!(
        openai < anthropic,
        "priority order must be printed as configured:\n{text}"
    );
}

#[test]
fn check_config_accepts_the_quickstart_and_prints_routes() {
    let dir = tempdir();
    let out = run(dir.path(), &["check-config", QUICKSTART]);
    assert_eq!(
        out.code(),
        Some(0),
        "stderr: {}\nstdout: {}",
        out.stderr,
        out.stdout
    );
    assert!(
        out.stdout.contains("quickstart.yaml: OK"),
        "stdout: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("listen: 127.0.0.1:8787"),
        "stdout: {}",
        out.stdout
    );
    assert_quickstart_routes(&out.stdout);
}

#[test]
fn route_list_prints_the_routes() {
    let dir = tempdir();
    let out = run(dir.path(), &["route", "list", "--config", QUICKSTART]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_quickstart_routes(&out.stdout);

    // Without --config and no ./bitrouter.yaml: built-in defaults, no routes.
    let out = run(dir.path(), &["route", "list"]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("no routes"), "stdout: {}", out.stdout);

    // BITROUTER_CONFIG names the file when --config is absent.
    let mut cmd = bitrouter(dir.path(), &["route", "list"]);
    cmd.env("BITROUTER_CONFIG", QUICKSTART);
    let out = Running::spawn(cmd).wait(Duration::from_secs(30), "route list with BITROUTER_CONFIG");
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_quickstart_routes(&out.stdout);
}

/// One broken config: the text, the line the error must point at, and what stderr must say.
struct BadConfig {
    what: &'static str,
    yaml: &'static str,
    line: Option<usize>,
    needles: &'static [&'static str],
}

const BAD_CONFIGS: &[BadConfig] = &[
    BadConfig {
        what: "unknown key",
        yaml: "server:\n  listne: 127.0.0.1:8787\n",
        line: Some(2),
        needles: &["listne", "listen"],
    },
    BadConfig {
        what: "unknown top-level key",
        yaml: "server:\n  listen: 127.0.0.1:8787\nroutes:\n  x: 1\n",
        line: Some(3),
        needles: &["routes", "models"],
    },
    BadConfig {
        what: "wrong enum value",
        yaml: "server:\n  listen: 127.0.0.1:8787\nmodels:\n  fast:\n    strategy: fastest\n    endpoints: []\n",
        line: Some(5),
        needles: &[
            "`models.fast.strategy`",
            "fastest",
            "priority",
            "load_balance",
        ],
    },
    BadConfig {
        what: "unknown provider in an endpoint",
        yaml: "models:\n  fast:\n    endpoints:\n      - provider: nope\n        model_id: m\n",
        line: Some(4),
        needles: &[
            "`models.fast.endpoints[0].provider`",
            "unknown provider \"nope\"",
            "expected one of",
            "openai",
        ],
    },
    BadConfig {
        what: "bad listen address",
        yaml: "server:\n  log_level: info\n  listen: not-an-address\n",
        line: Some(3),
        needles: &["`server.listen`", "not-an-address", "127.0.0.1:8787"],
    },
    BadConfig {
        what: "YAML syntax error",
        yaml: "server:\n  listen: 127.0.0.1:8787\n    log_level: info\n",
        line: Some(3),
        needles: &["mapping values are not allowed"],
    },
    BadConfig {
        what: "tab indentation",
        yaml: "server:\n  listen: 127.0.0.1:8787\n\tlog_level: info\n",
        line: Some(3),
        needles: &["tab character"],
    },
    BadConfig {
        what: "bad size",
        yaml: "server:\n  max_body_size: lots\n",
        line: Some(2),
        needles: &["max_body_size", "lots"],
    },
];

#[test]
fn check_config_rejects_bad_files_naming_file_line_key_and_expectation() {
    let dir = tempdir();
    for (i, case) in BAD_CONFIGS.iter().enumerate() {
        let path = write(dir.path(), &format!("bad-{i}.yaml"), case.yaml);
        let out = run(dir.path(), &["check-config", path_str(&path)]);
        let what = case.what;
        assert_ne!(
            out.code(),
            Some(0),
            "{what}: check-config accepted:\n{}\nstdout: {}",
            case.yaml,
            out.stdout
        );
        assert!(
            !out.stdout.contains(": OK"),
            "{what}: stdout says OK: {}",
            out.stdout
        );
        let err = &out.stderr;
        assert!(
            err.contains(path_str(&path)),
            "{what}: stderr should name {}: {err}",
            path.display()
        );
        if let Some(line) = case.line {
            let at = format!("{}:{line}", path.display());
            assert!(
                err.contains(&at),
                "{what}: stderr should point at {at}: {err}"
            );
        }
        for n in case.needles {
            assert!(
                err.contains(n),
                "{what}: stderr should contain {n:?}: {err}"
            );
        }
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "{what}: one error line: {err}"
        );
    }
}

#[test]
fn check_config_on_a_missing_file_names_it() {
    let dir = tempdir();
    let path = dir.path().join("does-not-exist.yaml");
    let out = run(dir.path(), &["check-config", path_str(&path)]);
    assert_ne!(out.code(), Some(0), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains(path_str(&path)),
        "stderr: {}",
        out.stderr
    );
    assert!(out.stderr.contains("cannot read"), "stderr: {}", out.stderr);

    // A directory is not a config file either.
    let out = run(dir.path(), &["check-config", path_str(dir.path())]);
    assert_ne!(out.code(), Some(0), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains(path_str(dir.path())),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn serve_with_a_bad_config_exits_quickly_without_listening() {
    let dir = tempdir();
    let port = free_port();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:{port}\nmodels:\n  fast:\n    strategy: fastest\n    endpoints: []\n"
    );
    let path = write(dir.path(), "bitrouter.yaml", &yaml);
    let out = Running::spawn(bitrouter(
        dir.path(),
        &["serve", "--config", path_str(&path)],
    ))
    .wait(Duration::from_secs(10), "serve with a bad config");
    assert_ne!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.elapsed < Duration::from_secs(5),
        "took {:?}",
        out.elapsed
    );
    assert!(
        out.stderr.contains(&format!("{}:5", path.display())) && out.stderr.contains("strategy"),
        "stderr: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("listening"), "stderr: {}", out.stderr);
    assert!(
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(500)
        )
        .is_err(),
        "something listens on {port}"
    );

    // Same for a bad --listen on a good config, and for the implicit ./bitrouter.yaml.
    let out = run(
        dir.path(),
        &["serve", "--config", QUICKSTART, "--listen", "nowhere"],
    );
    assert_ne!(out.code(), Some(0));
    assert!(
        out.stderr.contains("--listen") && out.stderr.contains("nowhere"),
        "stderr: {}",
        out.stderr
    );
    let out = run(dir.path(), &["serve"]);
    assert_ne!(
        out.code(),
        Some(0),
        "./bitrouter.yaml is broken and must be used: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("bitrouter.yaml:5"),
        "stderr: {}",
        out.stderr
    );
}

/// SIGHUP reloads, also when it comes the moment `/health` first answers: the handlers are in
/// place before the first connection is accepted (registered by the accept loop's first
/// poll, a signal sent then met the default action, which ends the process; CI saw it for
/// SIGTERM). Then SIGTERM ends it cleanly.
#[test]
fn sighup_right_after_the_first_answer_reloads_and_sigterm_still_ends_cleanly() {
    let dir = tempdir();
    let ledger = format!("redb://{}/bitrouter.redb", dir.path().display());
    let mut gateway = crate::child::ChildGateway::spawn_with_env(
        Path::new(QUICKSTART),
        dir.path(),
        &[("BITROUTER_DATABASE_URL", ledger.as_str())],
    );
    gateway.signal("HUP");
    let started = Instant::now();
    while !gateway.log().contains("SIGHUP: reloading plugins") {
        assert!(
            gateway.try_wait().is_none(),
            "SIGHUP ended the gateway: {}",
            gateway.log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no reload logged within 20 s: {}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM: {status:?}\n{}",
        gateway.log()
    );
}

#[test]
fn serve_answers_health_and_exits_cleanly_on_sigterm() {
    let dir = tempdir();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listen = addr.to_string();
    let mut cmd = bitrouter(
        dir.path(),
        &["serve", "--config", QUICKSTART, "--listen", &listen],
    );
    // The quickstart keeps its ledger beside itself; the test's goes in its temp dir.
    let ledger = format!("redb://{}/bitrouter.redb", dir.path().display());
    cmd.env("BITROUTER_DATABASE_URL", &ledger);
    let mut server = Running::spawn(cmd);

    let started = Instant::now();
    let health = loop {
        if let Some(h) = get_health(addr) {
            break h;
        }
        assert!(!server.exited(), "serve exited before answering /health");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no /health answer on {addr} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health.0, 200, "/health body: {}", health.1);
    let v: serde_json::Value = serde_json::from_str(&health.1)
        .unwrap_or_else(|e| panic!("/health is not JSON ({e}): {}", health.1));
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["routes"], 2);

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM failed");
    let out = server.wait(Duration::from_secs(10), "serve after SIGTERM");
    assert_eq!(
        out.code(),
        Some(0),
        "exit after SIGTERM: {:?}\nstderr: {}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr.contains("listening on http://") && out.stderr.contains(&listen),
        "stderr: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("shutting down"),
        "stderr: {}",
        out.stderr
    );
    assert!(get_health(addr).is_none(), "still answering after exit");
}

const KEYED_CONFIG: &str = "\
server:
  listen: ${MY_TEST_LISTEN:-127.0.0.1:8787}
providers:
  p:
    derives: openai
    api_key: ${MY_TEST_KEY}
models:
  r:
    endpoints:
      - provider: p
        model_id: gpt-4o-mini
";

#[test]
fn env_vars_and_dotenv_beside_the_config_are_expanded() {
    // With a .env beside the config: the key and the listen address come from it.
    let dir = tempdir();
    let path = write(dir.path(), "bitrouter.yaml", KEYED_CONFIG);
    write(
        dir.path(),
        ".env",
        "MY_TEST_KEY=sk-from-dotenv\nMY_TEST_LISTEN=127.0.0.1:18787\n",
    );
    // Run from elsewhere: the .env is found beside the config, not in the working directory.
    let cwd = tempdir();
    let out = run(cwd.path(), &["check-config", path_str(&path)]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("listen: 127.0.0.1:18787"),
        "stdout: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("p:gpt-4o-mini")
            && out
                .stdout
                .contains("https://api.openai.com/v1/chat/completions"),
        "stdout: {}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("sk-from-dotenv") && !out.stderr.contains("sk-from-dotenv"),
        "the key must not be printed"
    );

    // The process environment wins over the .env.
    let mut cmd = bitrouter(cwd.path(), &["check-config", path_str(&path)]);
    cmd.env("MY_TEST_LISTEN", "127.0.0.1:28787");
    let out = Running::spawn(cmd).wait(Duration::from_secs(30), "check-config with env override");
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("listen: 127.0.0.1:28787"),
        "stdout: {}",
        out.stdout
    );

    // A key from the process environment alone is enough too.
    let bare = tempdir();
    let bare_path = write(bare.path(), "bitrouter.yaml", KEYED_CONFIG);
    let mut cmd = bitrouter(cwd.path(), &["check-config", path_str(&bare_path)]);
    cmd.env("MY_TEST_KEY", "sk-from-env");
    let out = Running::spawn(cmd).wait(
        Duration::from_secs(30),
        "check-config with the key in the environment",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("listen: 127.0.0.1:8787"),
        "the ${{VAR:-default}} fallback: {}",
        out.stdout
    );

    // Without the .env (and no key in the environment) the route's provider has no key.
    let out = run(cwd.path(), &["check-config", path_str(&bare_path)]);
    assert_ne!(out.code(), Some(0), "stdout: {}", out.stdout);
    let err = &out.stderr;
    assert!(err.contains(path_str(&bare_path)), "stderr: {err}");
    assert!(
        err.contains("OPENAI_API_KEY") || err.contains("api_key"),
        "stderr should say which key is missing: {err}"
    );
    assert!(
        err.contains("`models.r.endpoints[0].provider`")
            && err.contains(&format!("{}:10", bare_path.display())),
        "stderr: {err}"
    );
}

/// Polls `GET /health` until it answers 200, the child exits, or 20 s pass.
fn wait_healthy(server: &mut Running, addr: SocketAddr) {
    let started = Instant::now();
    loop {
        if let Some((200, _)) = get_health(addr) {
            return;
        }
        assert!(!server.exited(), "serve exited before answering /health");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no /health answer on {addr} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish() {
    let upstream = crate::harness::mock_with(bitrouter_mock::MockBehavior {
        latency_ms: 1500,
        ..Default::default()
    })
    .await;
    let dir = tempdir();
    let yaml = format!(
        "{}models:\n  r:\n    endpoints:\n      - provider: m\n        model_id: mock-gpt\n",
        crate::harness::providers(&[("m", "openai", &upstream)])
    );
    let path = write(dir.path(), "bitrouter.yaml", &yaml);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cmd = bitrouter(
        dir.path(),
        &[
            "serve",
            "--config",
            path_str(&path),
            "--listen",
            &addr.to_string(),
        ],
    );
    let server = tokio::task::spawn_blocking(move || {
        let mut server = Running::spawn(cmd);
        wait_healthy(&mut server, addr);
        server
    })
    .await
    .unwrap();

    let url = format!("http://{addr}/v1/chat/completions");
    let call = tokio::spawn(async move {
        let resp = crate::harness::client()
            .post(url)
            .header("content-type", "application/json")
            .body(crate::harness::openai_chat("r", "slow one").to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    let started = Instant::now();
    while upstream.request_count() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .expect("run kill");
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || {
        server.wait(Duration::from_secs(10), "serve after SIGTERM")
    })
    .await
    .unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("in-flight request hung")
        .unwrap();
    assert_eq!(status, 200, "in-flight request cut off by shutdown: {body}");
    assert!(body.contains("Hello from the mock upstream."), "{body}");
    assert_eq!(
        out.code(),
        Some(0),
        "exit after SIGTERM: {:?}\nstderr: {}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr.contains("shutting down"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn missing_file_error_says_the_cause_once() {
    let dir = tempdir();
    let path = dir.path().join("does-not-exist.yaml");
    let out = run(dir.path(), &["check-config", path_str(&path)]);
    assert_ne!(out.code(), Some(0));
    assert_eq!(
        out.stderr.matches("No such file or directory").count(),
        1,
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn config_errors_do_not_repeat_the_key_path() {
    let dir = tempdir();
    for (i, yaml) in [
        "server:\n  listne: 127.0.0.1:8787\n",
        "server:\n  max_body_size: lots\n",
    ]
    .into_iter()
    .enumerate()
    {
        let path = write(dir.path(), &format!("c{i}.yaml"), yaml);
        let out = run(dir.path(), &["check-config", path_str(&path)]);
        assert_ne!(out.code(), Some(0));
        assert!(
            !out.stderr.contains("`: server: "),
            "the key path is said twice: {}",
            out.stderr
        );
    }
}

/// `bitrouter check-config … | head`: a reader that goes away ends the verb quietly (the
/// default SIGPIPE action), never with a panic on EPIPE.
#[test]
fn cli_verbs_end_quietly_when_their_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["check-config", QUICKSTART],
        vec!["route", "list", "--config", QUICKSTART],
        vec!["--help"],
    ] {
        let mut child = bitrouter(dir.path(), &args).spawn().unwrap();
        // Close the only read end before the child writes: its first write hits EPIPE.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            status.success() || std::os::unix::process::ExitStatusExt::signal(&status) == Some(13),
            "{args:?}: {status:?} {err}"
        );
    }
}

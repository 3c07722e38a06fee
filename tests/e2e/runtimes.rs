//! `server.runtime: per_core` through the real binary: one single-threaded runtime per
//! thread, each accepting on its own `SO_REUSEPORT` listener and calling the upstream through
//! its own pool; on SIGTERM all of them drain before the ledger is closed.

use std::process::Command;
use std::time::{Duration, Instant};

use bitrouter_mock::MockBehavior;
use futures_util::StreamExt;

use crate::child::{BIN, ChildGateway};
use crate::harness::{mock_with, openai_chat, providers};

/// Nanoseconds on a CPU of each thread of `pid` whose name starts with `prefix`
/// (`/proc/PID/task/*/schedstat`), by name.
fn cpu_ns(pid: u32, prefix: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let name = name.trim();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        out.push((name.to_owned(), ns));
    }
    out.sort();
    out
}

/// Three runtimes: 60 requests on 60 connections are spread over the listeners (each extra
/// runtime's thread does request work), every one answered; six streams in flight when
/// SIGTERM comes all finish, the process exits 0, and every request has its ledger row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_core_runtimes_share_connections_and_drain_together() {
    let mock = mock_with(MockBehavior {
        chunks: Some(25),
        chunk_delay_ms: 40,
        ..MockBehavior::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &config,
        format!(
            "{}models:\n  m:\n    endpoints: [{{ provider: up, model_id: mock-gpt }}]\nserver:\n  runtime: per_core\n  threads: 3\n  shutdown_grace: 20s\ndatabase:\n  url: redb://{}/spend.redb\nguardrails:\n  enabled: false\n",
            providers(&[("up", "openai", &mock)]),
            dir.path().display(),
        ),
    )
    .unwrap();
    let mut gateway = ChildGateway::spawn(&config, dir.path());
    // Every request on a connection of its own, so the kernel picks a listener for each.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let before = cpu_ns(gateway.pid(), "bitrouter-rt-");
    assert_eq!(
        before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["bitrouter-rt-1", "bitrouter-rt-2"],
        "{}",
        gateway.log()
    );
    let answers = futures_util::stream::iter(0..60)
        .map(|i| {
            let req = fresh
                .post(gateway.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .header("connection", "close")
                .body(openai_chat("m", &format!("request {i}")).to_string())
                .send();
            async move {
                let r = req.await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        })
        .buffer_unordered(6)
        .collect::<Vec<_>>()
        .await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}\n{}", gateway.log());
        assert!(body.contains("chat.completion"), "{body}");
    }
    // An idle runtime's thread sleeps in epoll_wait; each of these served about 20 requests
    // (a 60-connection split that leaves one of three listeners under 5 has odds below 1e-6).
    let after = cpu_ns(gateway.pid(), "bitrouter-rt-");
    for ((name, was), (_, now)) in before.iter().zip(&after) {
        assert!(
            now - was > 1_000_000,
            "{name} ran {} µs while 60 connections came in: {after:?}",
            (now - was) / 1000
        );
    }

    // The same split as the gateway counts it: connections accepted per runtime.
    let metrics: serde_json::Value = fresh
        .get(gateway.url("/admin/metrics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runtimes = metrics["connections"]["runtimes"].as_array().unwrap();
    assert_eq!(runtimes.len(), 3, "{metrics}");
    let accepted: Vec<u64> = runtimes
        .iter()
        .map(|r| r["accepted"].as_u64().unwrap())
        .collect();
    assert!(
        accepted.iter().all(|&n| n >= 5) && accepted.iter().sum::<u64>() >= 61,
        "{accepted:?}"
    );
    assert_eq!(
        metrics["connections"]["accepted"].as_u64(),
        Some(accepted.iter().sum())
    );
    let text = fresh
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for runtime in 0..3 {
        assert!(
            text.contains(&format!(
                "bitrouter_connections_accepted_total{{runtime=\"{runtime}\"}}"
            )),
            "{text}"
        );
    }
    assert!(
        gateway.log().contains("3 per-core runtimes"),
        "{}",
        gateway.log()
    );

    // Six 1-second streams, each on its own connection; SIGTERM once all have started.
    let mut streams = Vec::new();
    for i in 0..6 {
        let mut body = openai_chat("m", &format!("stream {i}"));
        body["stream"] = true.into();
        let r = fresh
            .post(gateway.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        streams.push(r.bytes_stream());
    }
    let mut firsts = Vec::new();
    for s in &mut streams {
        firsts.push(s.next().await.unwrap().unwrap());
    }
    gateway.signal("TERM");
    let reads = streams
        .into_iter()
        .zip(firsts)
        .map(|(mut s, first)| async move {
            let mut text = String::from_utf8_lossy(&first).into_owned();
            while let Some(chunk) = s.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
            text
        });
    for text in futures_util::future::join_all(reads).await {
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    }
    let started = Instant::now();
    let status = gateway.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM ({:?}): {status:?}\n{}",
        started.elapsed(),
        gateway.log()
    );
    // The rows of all 66 requests, the streams' written when the gateway closed.
    let out = Command::new(BIN)
        .args(["spend", "--group-by", "route", "--db"])
        .arg(format!("redb://{}/spend.redb", dir.path().display()))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text
                .lines()
                .any(|l| l.starts_with("m ") && l.contains(" 66 ")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port another socket holds (without `SO_REUSEPORT`) stops a per-core start with an
/// error that names the address, not a hang or a panic.
#[test]
fn per_core_on_a_taken_port_fails_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &config,
        "server:\n  runtime: per_core\n  threads: 2\ndatabase:\n  url: memory://\nguardrails:\n  enabled: false\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &addr.to_string()])
        .current_dir(dir.path())
        .env_remove("BITROUTER_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 20 s after it could not bind {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    drop(taken);
}

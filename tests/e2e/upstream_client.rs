//! The upstream client and the proxy variables: the gateway reaches providers directly
//! (hyper-util's pool) unless `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` names a proxy, and then
//! every upstream request goes through it.

use crate::child::ChildGateway;
use crate::harness::{mock, openai_chat};

/// With `HTTP_PROXY` set, a provider whose host cannot resolve (`.invalid`) is reached
/// through the proxy: the proxy (here the mock, which answers absolute-form requests by
/// their path) gets the request for the provider's host, and the caller its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_requests_go_through_the_proxy_the_environment_names() {
    let proxy = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &config,
        "providers:\n  up:\n    api_protocol: openai\n    api_base: http://upstream.invalid/v1\n    api_key: test-key\nmodels:\n  r:\n    endpoints: [{ provider: up, model_id: m }]\n",
    )
    .unwrap();
    let gw = ChildGateway::spawn_with_env(
        &config,
        dir.path(),
        &[("HTTP_PROXY", &proxy.base_url()), ("NO_PROXY", "")],
    );
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(openai_chat("r", "hi").to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1, "{}", gw.log());
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("host"), Some("upstream.invalid"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer test-key"));
    assert!(
        gw.log().contains("through the proxy the environment names"),
        "{}",
        gw.log()
    );
}

/// A proxy variable that is not a proxy URL stops the start with an error naming it (reqwest
/// would skip it and send the traffic direct), without echoing its value.
#[test]
fn a_proxy_variable_that_is_not_a_url_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(&config, "models: {}\n").unwrap();
    let mut child = std::process::Command::new(crate::child::BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("HTTPS_PROXY", "http://user:s3cret@bad host:1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway started with an invalid HTTPS_PROXY");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success());
    assert!(
        stderr.contains("HTTPS_PROXY is not a proxy URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

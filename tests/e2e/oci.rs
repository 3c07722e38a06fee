//! Plugins through a real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! server, started here on a free loopback port with its data in a temp dir): push a signed
//! plugin, run a gateway on its tag, update the tag and reload, refuse an unsigned push,
//! start from the artifact store with the registry gone, and the bad-artifact errors.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::guardrails::{config, stage_plugin};
use crate::harness::*;
use crate::plugin_trust::{KEY, edit_manifest};

/// A registry process, killed when dropped.
pub(crate) struct Registry {
    child: Child,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ci` / `bitrouter-test`, bcrypt (what distribution's htpasswd auth reads).
const HTPASSWD: &str = "ci:$2b$12$Xbn0ssAuPUJRYCu0H/vfo.l8yAHw7gL2ybvZhnDE47Xws3ugCoqbO\n";

impl Registry {
    pub(crate) async fn start() -> Registry {
        Self::start_with(false).await
    }

    /// With `login`, the registry wants basic auth (`HTPASSWD`).
    async fn start_with(login: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{}",
                dir.path().join("data").display(),
                if login {
                    let file = dir.path().join("htpasswd");
                    std::fs::write(&file, HTPASSWD).unwrap();
                    format!(
                        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                        file.display()
                    )
                } else {
                    String::new()
                }
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "docker-registry not found ({e}): `apt-get install -y docker-registry` (.ci/run does)"
                )
            });
        let registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(r) = client()
                .get(format!("http://{}/v2/", registry.addr))
                .send()
                .await
                && (r.status().is_success() || r.status() == 401)
            {
                return registry;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("docker-registry did not start on {}", registry.addr);
    }

    pub(crate) fn reference(&self, repo_tag: &str) -> String {
        format!("oci://{}/{repo_tag}", self.addr)
    }
}

async fn push(wasm: &Path, reference: &str) -> String {
    bitrouter::plugins::oci::push(wasm, reference, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("push {reference}: {e}"))
}

fn gateway_yaml(mock: &bitrouter_mock::MockServer, reference: &str, store: &Path) -> String {
    let public = bitrouter::plugins::public_key_hex(&KEY);
    config(
        mock,
        &format!(
            "guardrails:\n  builtin: false\n  plugins:\n    - oci: {reference}\n  upgoing: {{ confidential-id: block }}\nplugins:\n  trusted_keys: [\"{public}\"]\n  artifact_dir: {}\n",
            store.display()
        ),
    )
}

/// A registry holding the test plugin, signed with `KEY`, version 1.0.0, at
/// `guardrails/ids:stable`; a mock provider; a folder for the config and the store.
struct Published {
    registry: Registry,
    mock: bitrouter_mock::MockServer,
    dir: tempfile::TempDir,
    store: std::path::PathBuf,
    wasm: std::path::PathBuf,
    tag: String,
    digest: String,
}

async fn published() -> Published {
    let registry = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = stage_plugin("confidential-ids", dir.path(), "ids");
    edit_manifest(&wasm, Some(&KEY), |t| {
        t.insert("version".into(), "1.0.0".into());
    });
    let tag = registry.reference("guardrails/ids:stable");
    let digest = push(&wasm, &tag).await;
    Published {
        mock: mock().await,
        store: dir.path().join("artifacts"),
        registry,
        dir,
        wasm,
        tag,
        digest,
    }
}

#[tokio::test]
async fn a_signed_plugin_travels_through_a_registry_and_updates_without_a_restart() {
    let Published {
        registry,
        mock,
        dir,
        store,
        wasm,
        tag,
        digest: v1,
    } = published().await;

    // The registry's own HTTP API shows the Wasm OCI artifact layout.
    let sha = bitrouter::plugins::sha256_hex(&std::fs::read(&wasm).unwrap());
    let manifest: Value = client()
        .get(format!(
            "http://{}/v2/guardrails/ids/manifests/stable",
            registry.addr
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["digest"], format!("sha256:{sha}"));
    use base64::Engine;
    let plugin_toml = base64::engine::general_purpose::STANDARD
        .decode(
            manifest["annotations"]["dev.bitrouter.plugin.manifest"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(
        String::from_utf8(plugin_toml)
            .unwrap()
            .contains("signature")
    );

    // A gateway on the tag: the plugin blocks, and says where it came from.
    let yaml = gateway_yaml(&mock, &tag, &store);
    let gw = TestGateway::start_file(dir.path(), &yaml).await;
    let (path, body) = request_for("openai", "m", "see CONFIDENTIAL-123456");
    assert_eq!(post(&gw, path, &body).await.status, 403);
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    let p = &listed["plugins"][0];
    assert_eq!(p["origin"], json!(format!("{tag}@{v1}")), "{p}");
    assert_eq!(p["version"], "1.0.0");
    assert_eq!(p["signer"], json!(bitrouter::plugins::public_key_hex(&KEY)));

    // v2 pushed to the same tag: a reload pulls, verifies and swaps it in.
    edit_manifest(&wasm, Some(&KEY), |t| {
        t.insert("version".into(), "2.0.0".into());
    });
    let v2 = push(&wasm, &tag).await;
    assert_ne!(v1, v2);
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["plugins"][0]["version"], "2.0.0");
    assert_eq!(listed["plugins"][0]["origin"], json!(format!("{tag}@{v2}")));

    // An unsigned v3 on the tag: refused with the reason; v2 keeps running.
    edit_manifest(&wasm, None, |t| {
        t.insert("version".into(), "3.0.0".into());
    });
    push(&wasm, &tag).await;
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("not signed"), "{}", r.text);
    assert_eq!(post(&gw, path, &body).await.status, 403);
    drop(gw);

    // A signed 1.5.0 on the tag and a restart: no gateway runs 2.0.0 now, but the store
    // remembers this machine accepted it, so the start is refused as a rollback.
    edit_manifest(&wasm, Some(&KEY), |t| {
        t.insert("version".into(), "1.5.0".into());
    });
    push(&wasm, &tag).await;
    let config = bitrouter::Config::load(&dir.path().join("bitrouter.yaml")).unwrap();
    let e = bitrouter::Gateway::new(config)
        .await
        .err()
        .expect("an older signed version at a restart is a rollback")
        .message()
        .to_owned();
    assert!(
        e.contains("version 1.5.0 is older than 2.0.0, which this machine accepted before")
            && e.contains("accepted-versions.json")
            && e.contains("pin it by sha256"),
        "{e}"
    );
    let record = std::fs::read_to_string(store.join("accepted-versions.json")).unwrap();
    assert!(record.contains("\"2.0.0\""), "{record}");

    // The registry gone: a new gateway starts from the store, at the tag's last verified
    // digest (v2, not the refused v3 nor the refused 1.5.0).
    drop(registry);
    let gw = TestGateway::start_file(dir.path(), &yaml).await;
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["plugins"][0]["version"], "2.0.0");
    assert_eq!(post(&gw, path, &body).await.status, 403);
}

#[tokio::test]
async fn bad_references_and_artifacts_are_clear_errors() {
    let registry = Registry::start().await;
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("artifacts");
    let load = |yaml: &str| {
        write_config(&dir.path().join("bitrouter.yaml"), yaml);
        bitrouter::Config::load(&dir.path().join("bitrouter.yaml"))
    };
    let start_err = |yaml: String| {
        let c = load(&yaml).unwrap();
        async move {
            bitrouter::Gateway::new(c)
                .await
                .err()
                .expect("the gateway refuses to start")
                .message()
                .to_owned()
        }
    };

    // Not a reference at all: a config error at its key.
    let e = load(&gateway_yaml(&mock, "oci://UPPER/Case", &store)).unwrap_err();
    assert!(e.to_string().contains("oci"), "{e}");

    // Nothing at that name in the registry.
    let missing = registry.reference("guardrails/nothing:1");
    let e = start_err(gateway_yaml(&mock, &missing, &store)).await;
    assert!(e.contains("guardrails/nothing"), "{e}");

    // An ordinary image, not a Wasm plugin artifact.
    let image = registry.reference("images/app:1");
    let reference = bitrouter::plugins::oci::reference(&image).unwrap();
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let layers = [oci_client::client::ImageLayer::new(
        b"not a component".to_vec(),
        "application/vnd.oci.image.layer.v1.tar".into(),
        None,
    )];
    let cfg = oci_client::client::Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    let mut manifest = oci_client::manifest::OciImageManifest::build(&layers, &cfg, None);
    manifest.media_type = Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned());
    oci.push(
        &reference,
        &layers,
        cfg,
        &oci_client::secrets::RegistryAuth::Anonymous,
        Some(manifest),
    )
    .await
    .unwrap();
    let e = start_err(gateway_yaml(&mock, &image, &store)).await;
    assert!(e.contains("not a BitRouter plugin artifact"), "{e}");

    // Over plugins.max_artifact_size.
    let wasm = stage_plugin("confidential-ids", dir.path(), "ids");
    edit_manifest(&wasm, Some(&KEY), |_| {});
    let tag = registry.reference("guardrails/ids:1");
    push(&wasm, &tag).await;
    let small = gateway_yaml(&mock, &tag, &store).replace(
        "  artifact_dir:",
        "  max_artifact_size: 1KiB\n  artifact_dir:",
    );
    let e = start_err(small).await;
    assert!(e.contains("max_artifact_size"), "{e}");

    // A registry that cannot be reached, with nothing stored: named, with the store.
    drop(registry);
    let e = start_err(gateway_yaml(&mock, &tag, &dir.path().join("empty"))).await;
    assert!(e.contains("cannot be reached"), "{e}");
}

/// Waits until `/admin/plugins` satisfies `done` (the poller runs every second).
pub(crate) async fn wait_for(gw: &TestGateway, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let listed = get(gw, "/admin/plugins", &[]).await.json();
        if done(&listed) {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not reached in 10 s: {}",
        get(gw, "/admin/plugins", &[]).await.json()
    );
}

#[tokio::test]
async fn followed_tags_update_on_their_own_and_a_bad_push_is_refused() {
    let Published {
        registry: _registry,
        mock,
        dir,
        store,
        wasm,
        tag,
        ..
    } = published().await;
    let yaml = gateway_yaml(&mock, &tag, &store)
        .replace("  artifact_dir:", "  update_interval: 1s\n  artifact_dir:");
    let gw = TestGateway::start_file(dir.path(), &yaml).await;

    // v2 on the tag: within an interval or two the gateway runs it, no reload asked.
    edit_manifest(&wasm, Some(&KEY), |t| {
        t.insert("version".into(), "2.0.0".into());
    });
    let v2 = push(&wasm, &tag).await;
    let listed = wait_for(&gw, |l| l["plugins"][0]["version"] == "2.0.0").await;
    assert_eq!(listed["plugins"][0]["origin"], json!(format!("{tag}@{v2}")));
    assert_eq!(listed["updates"]["applied"], 1, "{listed}");

    // An unsigned v3 on the tag: each check fails and says why; v2 keeps serving.
    edit_manifest(&wasm, None, |t| {
        t.insert("version".into(), "3.0.0".into());
    });
    push(&wasm, &tag).await;
    let listed = wait_for(&gw, |l| l["updates"]["last_outcome"] == "failed").await;
    assert!(
        listed["updates"]["last_error"]
            .as_str()
            .unwrap()
            .contains("not signed"),
        "{listed}"
    );
    assert_eq!(listed["plugins"][0]["version"], "2.0.0");
    // The same refused digest is not pulled at every interval: tried again after twice the
    // interval, then after twice that.
    let at = |l: &Value, key: &str| l["updates"][key].as_i64().unwrap();
    assert_eq!(listed["updates"]["failed"], 1, "{listed}");
    assert_eq!(
        at(&listed, "retry_at_ms") - at(&listed, "last_check_ms"),
        2000,
        "{listed}"
    );
    let first_retry = at(&listed, "retry_at_ms");
    let listed = wait_for(&gw, |l| l["updates"]["failed"] == 2).await;
    assert!(at(&listed, "last_check_ms") >= first_retry, "{listed}");
    assert_eq!(
        at(&listed, "retry_at_ms") - at(&listed, "last_check_ms"),
        4000,
        "{listed}"
    );
    let (path, body) = request_for("openai", "m", "see CONFIDENTIAL-123456");
    assert_eq!(post(&gw, path, &body).await.status, 403);
    let metrics = get(&gw, "/metrics", &[]).await.text;
    assert!(
        metrics.contains("component=\"plugin_updates\",state=\"failed\""),
        "{metrics}"
    );
}

#[test]
fn a_registry_that_wants_a_login_gets_it_from_plugins_registries() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = runtime.block_on(Registry::start_with(true));
    let dir = tempfile::tempdir().unwrap();
    let wasm = stage_plugin("confidential-ids", dir.path(), "ids");
    let tag = registry.reference("guardrails/ids:1");
    let cli = |config: &str, password: &str, args: &[&str]| {
        let path = dir.path().join("cli.yaml");
        std::fs::write(&path, config).unwrap();
        Command::new(env!("CARGO_BIN_EXE_bitrouter"))
            .args(args)
            .arg("--config")
            .arg(&path)
            .env("BITROUTER_TEST_REGISTRY_PASSWORD", password)
            // No docker login of the machine's user may stand in for the config's.
            .env("DOCKER_CONFIG", dir.path())
            .output()
            .unwrap()
    };
    let login = format!(
        "plugins:\n  artifact_dir: {}\n  registries:\n    \"{}\": {{ username: ci, password_env: BITROUTER_TEST_REGISTRY_PASSWORD }}\n",
        dir.path().join("artifacts").display(),
        registry.addr
    );
    let wasm = wasm.display().to_string();

    // Anonymous: the registry's 401, named.
    let out = cli("{}\n", "", &["plugin", "push", &wasm, &tag]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("guardrails/ids"), "{err}");

    // A wrong password: refused too.
    let out = cli(&login, "wrong", &["plugin", "push", &wasm, &tag]);
    assert!(!out.status.success());

    // The configured login: push, then pull into the store.
    let out = cli(&login, "bitrouter-test", &["plugin", "push", &wasm, &tag]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed = String::from_utf8_lossy(&out.stdout).to_string();
    let out = cli(&login, "bitrouter-test", &["plugin", "pull", &tag]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = String::from_utf8_lossy(&out.stdout).to_string();
    let digest = pulled.split_whitespace().next().unwrap();
    assert!(pushed.trim().ends_with(digest), "{pushed} / {pulled}");
    assert!(pulled.contains("component.wasm"), "{pulled}");
    let out = cli(&login, "bitrouter-test", &["plugin", "inspect", &tag]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        shown.contains(&format!("reference:  {tag}@{digest}")),
        "{shown}"
    );
    assert!(shown.contains("confidential-ids"), "{shown}");

    // No login in the config: the docker config's credential helper for this registry
    // (`credHelpers`, a `docker-credential-<name>` program on PATH) is asked for it.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = |secret: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = bin.join("docker-credential-bitrouter-test");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 9\nread server\n[ \"$server\" = \"{}\" ] || {{ echo \"credentials not found in native keychain\"; exit 1; }}\n{secret}\n",
                registry.addr
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    std::fs::write(
        dir.path().join("config.json"),
        format!(
            "{{\"credHelpers\": {{\"{}\": \"bitrouter-test\"}}}}",
            registry.addr
        ),
    )
    .unwrap();
    let with_helper = |args: &[&str]| {
        let path = dir.path().join("cli.yaml");
        std::fs::write(
            &path,
            format!(
                "plugins:\n  artifact_dir: {}\n",
                dir.path().join("helper-store").display()
            ),
        )
        .unwrap();
        let search = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(env!("CARGO_BIN_EXE_bitrouter"))
            .args(args)
            .arg("--config")
            .arg(&path)
            .env("DOCKER_CONFIG", dir.path())
            .env("PATH", search)
            .output()
            .unwrap()
    };
    helper(r#"echo '{"ServerURL":"x","Username":"ci","Secret":"bitrouter-test"}'"#);
    let out = with_helper(&["plugin", "pull", &tag]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(digest),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A helper that fails: the error names it and says what it said, no anonymous 401.
    helper("echo 'the keychain is locked' >&2; exit 3");
    let out = with_helper(&["plugin", "pull", &tag]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("docker credential helper `bitrouter-test`")
            && err.contains("the keychain is locked"),
        "{err}"
    );
}

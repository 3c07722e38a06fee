//! Policies: several plugins plus a guardrails fragment as one signed unit. Built with the
//! real CLI into a `.policy` file and through a real OCI registry (Debian's
//! `docker-registry`), consumed by gateways; merge rules, reload, rollback, and the errors
//! for a tampered document, a signer outside its scope, an unknown pattern and policies that
//! contradict each other.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::guardrails::{config, stage_plugin};
use crate::harness::*;
use crate::oci::Registry;
use crate::plugin_trust::KEY;

const BIN: &str = env!("CARGO_BIN_EXE_bitrouter");

/// `dir/baseline/`: the Rust example guardrail and the e-mail guardrail, and a
/// `policy.yaml` at `version` with `fragment` as its guardrails section.
fn policy_source(dir: &Path, version: &str, fragment: &str) -> PathBuf {
    let src = dir.join("baseline");
    std::fs::create_dir_all(&src).unwrap();
    stage_plugin("confidential-ids", &src, "confidential-ids");
    stage_plugin("pii_emails", &src, "emails");
    std::fs::write(
        src.join("policy.yaml"),
        format!(
            "id: baseline\nversion: {version}\ndescription: the platform team's baseline\nplugins:\n  - path: confidential-ids.wasm\n  - path: emails.wasm\nguardrails:\n{fragment}"
        ),
    )
    .unwrap();
    src
}

const FRAGMENT: &str = "  upgoing: { confidential-id: block, pii_emails: block }\n  custom_patterns:\n    - { name: acme_token, regex: \"acme_[0-9]{8}\" }\n  custom_upgoing: { acme_token: block }\n  block_message: { include_help_link: false }\n";

/// Runs the CLI in `cwd`; panics with its output when it fails.
fn cli(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("HOME", cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bitrouter {args:?}: {text}");
    text
}

/// A signing key file for the CLI, holding `KEY`.
fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("team.key");
    std::fs::write(&path, hex::encode(KEY)).unwrap();
    path
}

fn public() -> String {
    bitrouter::plugins::public_key_hex(&KEY)
}

/// A gateway config on the mock with built-ins off, the given `guardrails` extra lines, and
/// trust in `KEY` for `scope`.
fn gateway_yaml(
    mock: &bitrouter_mock::MockServer,
    guardrails: &str,
    scope: &str,
    store: &Path,
) -> String {
    config(
        mock,
        &format!(
            "guardrails:\n  builtin: false\n{guardrails}plugins:\n  trust:\n    - keys: [\"{}\"]\n      scope: \"{scope}\"\n  artifact_dir: {}\n",
            public(),
            store.display()
        ),
    )
}

async fn status_of(gw: &TestGateway, text: &str) -> Reply {
    let (path, body) = request_for("openai", "m", text);
    post(gw, path, &body).await
}

#[tokio::test]
async fn a_signed_policy_file_brings_its_plugins_and_settings_and_the_local_config_wins() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let src = policy_source(dir.path(), "2026.12.0", FRAGMENT);
    let key = key_file(dir.path());
    let out = cli(
        dir.path(),
        &[
            "policy",
            "build",
            src.to_str().unwrap(),
            "-o",
            "baseline.policy",
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("built baseline 2026.12.0 (2 plugins)"),
        "{out}"
    );
    let inspected = cli(
        dir.path(),
        &["policy", "inspect", "baseline.policy", "--key", &public()],
    );
    assert!(inspected.contains("verified"), "{inspected}");
    assert!(inspected.contains("acme_token"), "{inspected}");

    let store = dir.path().join("artifacts");
    let policies = "  policies:\n    - path: baseline.policy\n";
    let scope = format!("{}/*.policy", dir.path().display());
    let yaml = gateway_yaml(&mock, policies, &scope, &store);
    let gw = TestGateway::start_file(dir.path(), &yaml).await;
    let checked = cli(dir.path(), &["check-config", "bitrouter.yaml"]);
    assert!(
        checked.contains(&format!(
            "policy baseline 2026.12.0 from {}",
            dir.path().join("baseline.policy").display()
        )) && checked.contains(&format!("trusted for `{scope}`")),
        "{checked}"
    );

    // The policy's actions: its plugins' patterns and its custom pattern block.
    let r = status_of(&gw, "see CONFIDENTIAL-123456").await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        !r.text.contains("http"),
        "include_help_link: false: {}",
        r.text
    );
    assert_eq!(
        status_of(&gw, "write to jane@corp.example").await.status,
        403
    );
    assert_eq!(status_of(&gw, "token acme_12345678").await.status, 403);
    assert_eq!(status_of(&gw, "nothing secret").await.status, 200);

    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    let p = &listed["policies"][0];
    assert_eq!(p["id"], "baseline", "{listed}");
    assert_eq!(p["version"], "2026.12.0");
    assert_eq!(p["signer"], json!(public()));
    assert_eq!(p["trust_scope"], json!(scope));
    assert_eq!(p["verified"], true);
    assert_eq!(p["plugins"], json!(["confidential-ids", "pii_emails"]));
    let plugin = |id: &str| {
        listed["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not loaded: {listed}"))
    };
    assert_eq!(plugin("confidential-ids")["policy"], "baseline");
    assert_eq!(plugin("pii_emails")["signer"], json!(public()));

    // The local config wins: a changed local action applies on reload.
    let local = format!("{policies}  upgoing: {{ confidential-id: warn }}\n");
    write_config(
        &dir.path().join("bitrouter.yaml"),
        &gateway_yaml(&mock, &local, &scope, &store),
    );
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = status_of(&gw, "see CONFIDENTIAL-123456").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("x-bitrouter-guardrail-warnings")
            .contains("confidential-id"),
        "{:?}",
        r.headers
    );
    assert_eq!(status_of(&gw, "token acme_12345678").await.status, 403);

    // A tampered document (the fragment weakened after signing): refused, the old set stays.
    let built = bitrouter::plugins::policy::Built::read_dir(
        &bitrouter::plugins::policy::unpack(&dir.path().join("baseline.policy"), &store, 1 << 26)
            .unwrap(),
    )
    .unwrap();
    let mut json: Value = serde_json::from_slice(&built.policy.to_json()).unwrap();
    json["document"]["guardrails"]["custom_upgoing"]["acme_token"] = "warn".into();
    let tampered =
        bitrouter::plugins::policy::Policy::from_json(&serde_json::to_vec(&json).unwrap(), "t")
            .unwrap();
    bitrouter::plugins::policy::Built {
        policy: tampered,
        components: built.components,
    }
    .write_archive(&dir.path().join("baseline.policy"))
    .unwrap();
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("policy `baseline`"), "{}", r.text);
    assert!(r.text.contains("bad signature"), "{}", r.text);
    assert_eq!(status_of(&gw, "token acme_12345678").await.status, 403);
}

#[tokio::test]
async fn policies_that_do_not_verify_or_do_not_fit_are_clear_errors() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("artifacts");
    let build = |name: &str, fragment: &str, signed: bool| {
        let src = policy_source(&dir.path().join(name), "1.0.0", fragment);
        let mut built = bitrouter::plugins::policy::build(&src).unwrap();
        if signed {
            built.policy.sign(&KEY);
        }
        let file = dir.path().join(format!("{name}.policy"));
        built.write_archive(&file).unwrap();
        file
    };
    let start_err = |guardrails: String, scope: &str| {
        let yaml = gateway_yaml(&mock, &guardrails, scope, &store);
        write_config(&dir.path().join("bitrouter.yaml"), &yaml);
        let c = bitrouter::Config::load(&dir.path().join("bitrouter.yaml")).unwrap();
        async move {
            bitrouter::Gateway::new(c)
                .await
                .err()
                .expect("the gateway refuses to start")
                .message()
                .to_owned()
        }
    };
    let entry = |file: &Path| format!("    - path: {}\n", file.display());
    let anywhere = "/**";

    // Unsigned, with trust on.
    let unsigned = build("unsigned", FRAGMENT, false);
    let e = start_err(format!("  policies:\n{}", entry(&unsigned)), anywhere).await;
    assert!(
        e.contains("guardrails.policies[0]") && e.contains("not signed"),
        "{e}"
    );

    // Signed, but by a key whose scope does not cover the file.
    let good = build("good", FRAGMENT, true);
    let e = start_err(format!("  policies:\n{}", entry(&good)), "/elsewhere/**").await;
    assert!(e.contains("allows only for `/elsewhere/**`"), "{e}");

    // A fragment naming a pattern no plugin declares: named as the policy's.
    let unknown = build("unknown", "  upgoing: { no_such_pattern: block }\n", true);
    let e = start_err(format!("  policies:\n{}", entry(&unknown)), anywhere).await;
    assert!(
        e.contains("(policy baseline) guardrails.upgoing.no_such_pattern")
            && e.contains("unknown pattern"),
        "{e}"
    );

    // A fragment may not set the local config's operational keys (refused at build).
    let src = policy_source(
        &dir.path().join("operational"),
        "1.0.0",
        "  stream_window: 4KiB\n",
    );
    let e = bitrouter::plugins::policy::build(&src)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stream_window"), "{e}");

    // Two policies that contradict each other. (Their plugins share ids, so the second one's
    // plugins come from a policy with another id and plugin copies with other ids.)
    let a = build(
        "a",
        "  custom_patterns:\n    - { name: t1, regex: \"tok_[0-9]{4}\" }\n  custom_upgoing: { t1: block }\n",
        true,
    );
    let b_src = dir.path().join("b");
    std::fs::create_dir_all(&b_src).unwrap();
    std::fs::write(
        b_src.join("policy.yaml"),
        "id: other\nversion: 1.0.0\nguardrails:\n  custom_patterns:\n    - { name: t1, regex: \"x_[0-9]{4}\" }\n",
    )
    .unwrap();
    let mut b = bitrouter::plugins::policy::build(&b_src).unwrap();
    b.policy.sign(&KEY);
    let b_file = dir.path().join("b.policy");
    b.write_archive(&b_file).unwrap();
    let e = start_err(
        format!("  policies:\n{}{}", entry(&a), entry(&b_file)),
        anywhere,
    )
    .await;
    assert!(
        e.contains(
            "custom pattern `t1` is also defined by guardrails.policies[0] (policy baseline)"
        ),
        "{e}"
    );

    // A plugin artifact is not a policy: the archive is refused with the reason.
    let e = start_err(
        format!(
            "  policies:\n{}",
            entry(&PathBuf::from(crate::guardrails::plugin(
                "confidential-ids"
            )))
        ),
        anywhere,
    )
    .await;
    assert!(e.contains("not a valid policy"), "{e}");
}

#[tokio::test]
async fn a_policy_travels_through_a_registry_updates_and_refuses_a_rollback() {
    let registry = Registry::start().await;
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let src = policy_source(dir.path(), "2026.12.0", FRAGMENT);
    let tag = registry.reference("policies/baseline:2026.12");
    let out = cli(
        dir.path(),
        &[
            "policy",
            "push",
            src.to_str().unwrap(),
            &tag,
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(out.contains("pushed"), "{out}");

    // The registry's own HTTP API: a policy config blob and one wasm layer per component,
    // each layer's digest its component's sha256.
    let manifest: Value = client()
        .get(format!(
            "http://{}/v2/policies/baseline/manifests/2026.12",
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
        "application/vnd.bitrouter.policy.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{manifest}");
    let sha = |f: &str| {
        format!(
            "sha256:{}",
            bitrouter::plugins::sha256_hex(&std::fs::read(src.join(f)).unwrap())
        )
    };
    for (layer, file) in layers.iter().zip(["confidential-ids.wasm", "emails.wasm"]) {
        assert_eq!(layer["mediaType"], "application/wasm");
        assert_eq!(layer["digest"], json!(sha(file)));
    }

    // A second team's gateway on the tag.
    let store = dir.path().join("artifacts");
    let scope = format!("{}/policies/*", registry.addr);
    let policies = format!("  policies:\n    - oci: {tag}\n");
    let yaml = gateway_yaml(&mock, &policies, &scope, &store)
        .replace("  artifact_dir:", "  update_interval: 1s\n  artifact_dir:");
    let gw = TestGateway::start_file(dir.path(), &yaml).await;
    assert_eq!(status_of(&gw, "see CONFIDENTIAL-123456").await.status, 403);
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    let source = listed["policies"][0]["source"].as_str().unwrap().to_owned();
    assert!(source.starts_with(&format!("{tag}@sha256:")), "{listed}");

    // Edits the source's policy.yaml and pushes it, signed, to the same tag.
    let push_edited = |edits: &[(&str, &str)]| {
        let path = src.join("policy.yaml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in edits {
            text = text.replace(from, to);
        }
        std::fs::write(&path, text).unwrap();
        let (src, key) = (src.to_str().unwrap(), key.to_str().unwrap());
        cli(dir.path(), &["policy", "push", src, &tag, "--key", key]);
    };

    // v2 on the same tag (the e-mail action relaxed): picked up by the poller.
    push_edited(&[
        ("2026.12.0", "2026.12.1"),
        ("pii_emails: block", "pii_emails: warn"),
    ]);
    let listed = crate::oci::wait_for(&gw, |l| l["policies"][0]["version"] == "2026.12.1").await;
    assert_ne!(listed["policies"][0]["source"], json!(source));
    assert_eq!(
        status_of(&gw, "write to jane@corp.example").await.status,
        200
    );

    // An older version pushed to the tag: refused as a rollback, v2 stays.
    push_edited(&[("2026.12.1", "2026.11.0")]);
    let listed = crate::oci::wait_for(&gw, |l| {
        l["updates"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("older than the running"))
    })
    .await;
    assert_eq!(listed["policies"][0]["version"], "2026.12.1");
    drop(gw);

    // A restart on the tag, which still names the older version: refused at the start too,
    // from the record of accepted versions in the store; `check-config` says the same.
    let e = bitrouter::Gateway::new(
        bitrouter::Config::load(&dir.path().join("bitrouter.yaml")).unwrap(),
    )
    .await
    .err()
    .expect("a rollback across a restart")
    .message()
    .to_owned();
    assert!(
        e.contains(
            "policy `baseline`: version 2026.11.0 is older than 2026.12.1, which this machine accepted before"
        ) && e.contains("bitrouter.yaml"),
        "{e}"
    );
    let out = Command::new(BIN)
        .args(["check-config", "bitrouter.yaml"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("is older than 2026.12.1"),
        "{text}"
    );

    // A plugin named under `policies` is refused saying where it belongs.
    let plugin_dir = tempfile::tempdir().unwrap();
    let wasm = stage_plugin("confidential-ids", plugin_dir.path(), "ids");
    let plugin_tag = registry.reference("guardrails/ids:1");
    bitrouter::plugins::oci::push(&wasm, &plugin_tag, &Default::default())
        .await
        .unwrap();
    let wrong = yaml.replace(&tag, &plugin_tag);
    write_config(&dir.path().join("wrong.yaml"), &wrong);
    let e =
        bitrouter::Gateway::new(bitrouter::Config::load(&dir.path().join("wrong.yaml")).unwrap())
            .await
            .err()
            .expect("a plugin is not a policy")
            .message()
            .to_owned();
    assert!(
        e.contains("guardrails.policies[0].oci") && e.contains("name it under guardrails.plugins"),
        "{e}"
    );

    // The registry gone: a restart comes up from the store at the last verified digest.
    drop(registry);
    let gw = TestGateway::start_file(dir.path(), &yaml).await;
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["policies"][0]["version"], "2026.12.1", "{listed}");
    assert_eq!(listed["policies"][0]["from_store"], true);
    assert_eq!(status_of(&gw, "see CONFIDENTIAL-123456").await.status, 403);
}

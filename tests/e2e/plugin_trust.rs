//! Trust and reload of plugins: `plugins.trusted_keys` with the built-in plugins on,
//! signatures over everything that decides behaviour, a reload that re-reads the config file
//! all or nothing, and rollback protection.

use std::path::Path;

use serde_json::json;

use crate::guardrails::{config, stage_plugin};
use crate::harness::*;

pub(crate) const KEY: [u8; 32] = [42; 32];

/// Rewrites a staged plugin's manifest: `edit` changes the TOML table, then, with `key`, the
/// manifest is signed again over the result.
pub(crate) fn edit_manifest(
    wasm: &Path,
    key: Option<&[u8; 32]>,
    edit: impl FnOnce(&mut toml::Table),
) {
    let path = wasm.with_extension("plugin.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut t);
    t.remove("signature");
    if let Some(key) = key {
        let m = bitrouter::plugins::Manifest::parse(&t.to_string()).unwrap();
        t.insert("signature".into(), bitrouter::plugins::sign(key, &m).into());
    }
    std::fs::write(&path, t.to_string()).unwrap();
}

/// An edit that sets the manifest's version.
fn version(v: &str) -> impl FnOnce(&mut toml::Table) {
    let v = v.to_owned();
    move |t: &mut toml::Table| {
        t.insert("version".into(), v.into());
    }
}

#[tokio::test]
async fn trusted_keys_keep_the_builtins_and_require_every_file_signed() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = stage_plugin("confidential-ids", dir.path(), "ids");
    let public = bitrouter::plugins::public_key_hex(&KEY);
    let yaml = config(
        &mock,
        &format!(
            "guardrails:\n  builtin: true\n  plugins:\n    - path: {}\nplugins:\n  trusted_keys: [\"{public}\"]\n",
            wasm.display()
        ),
    );

    // Unsigned: refused, naming the plugin; the built-ins are not what fails.
    write_config(&dir.path().join("bitrouter.yaml"), &yaml);
    let c = bitrouter::Config::load(&dir.path().join("bitrouter.yaml")).unwrap();
    let e = bitrouter::Gateway::new(c)
        .await
        .err()
        .expect("an unsigned plugin is refused");
    assert!(e.message().contains("confidential-ids"), "{e}");
    assert!(e.message().contains("not signed"), "{e}");

    // Signed by the trusted key: the gateway starts with the seven built-ins beside it.
    edit_manifest(&wasm, Some(&KEY), |_| {});
    let gw = TestGateway::start_file(dir.path(), &yaml).await;
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    let plugins = listed["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 8, "{listed}");
    for p in plugins {
        let signer = if p["id"] == "confidential-ids" {
            json!(public)
        } else {
            // Built-ins are trusted as part of the binary.
            json!(null)
        };
        assert_eq!(p["signer"], signer, "{p}");
    }

    // A signed manifest edited afterwards (a newer version claimed for the same component,
    // the signature kept) no longer verifies: the reload is refused and says why; the
    // loaded set stays.
    let path = wasm.with_extension("plugin.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    t.insert("version".into(), "9.9.9".into());
    std::fs::write(&path, t.to_string()).unwrap();
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("version"), "{}", r.text);
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["plugins"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn a_reload_rereads_the_config_file_all_or_nothing() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let before = config(&mock, "guardrails:\n  builtin: false\n");
    let gw = TestGateway::start_file(dir.path(), &before).await;
    let (path, body) = request_for("openai", "m", "the code is ACME-1234");
    assert_eq!(post(&gw, path, &body).await.status, 200);

    // A new custom pattern with a block action: it applies after the reload, no restart.
    let after = config(
        &mock,
        "guardrails:\n  builtin: false\n  custom_patterns:\n    - { name: acme, regex: \"ACME-[0-9]{4}\", direction: upgoing }\n  custom_upgoing: { acme: block }\n",
    );
    write_config(&dir.path().join("bitrouter.yaml"), &after);
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(&gw, path, &body).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("acme"), "{}", r.text);

    // A broken file: refused with file, line and key; the last good set keeps running.
    let broken = after.replace(
        "custom_upgoing: { acme: block }",
        "custom_upgoing: { acme: explode }",
    );
    write_config(&dir.path().join("bitrouter.yaml"), &broken);
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("bitrouter.yaml:"), "{}", r.text);
    assert!(r.text.contains("custom_upgoing"), "{}", r.text);
    assert_eq!(post(&gw, path, &body).await.status, 403);
}

#[tokio::test]
async fn an_older_version_is_refused_unless_pinned_by_sha256() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = stage_plugin("confidential-ids", dir.path(), "ids");
    edit_manifest(&wasm, None, version("2.0.0"));
    let yaml = config(
        &mock,
        &format!(
            "guardrails:\n  builtin: false\n  plugins:\n    - path: {}\n",
            wasm.display()
        ),
    );
    let gw = TestGateway::start_file(dir.path(), &yaml).await;

    // 1.5.0 put back over a running 2.0.0: refused, with the way to mean it.
    edit_manifest(&wasm, None, version("1.5.0"));
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(
        r.text.contains("older than the running 2.0.0"),
        "{}",
        r.text
    );
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["plugins"][0]["version"], "2.0.0");

    // Pinned by its sha256 in the config: that exact build is wanted, and loads.
    let sha = bitrouter::plugins::sha256_hex(&std::fs::read(&wasm).unwrap());
    let pinned = yaml.replace(
        &format!("    - path: {}\n", wasm.display()),
        &format!("    - path: {}\n      sha256: {sha}\n", wasm.display()),
    );
    write_config(&dir.path().join("bitrouter.yaml"), &pinned);
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["plugins"][0]["version"], "1.5.0");
    assert_eq!(listed["plugins"][0]["pinned"], true);

    // A newer version is an update, not a rollback.
    edit_manifest(&wasm, None, version("3.0.0"));
    write_config(&dir.path().join("bitrouter.yaml"), &yaml);
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn two_teams_plugins_with_the_same_pattern_id_load_side_by_side() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    // The same component shipped by two teams under their own plugin ids: both declare
    // `confidential-id` and `confidential-id-obfuscated`.
    let a = stage_plugin("confidential-ids", dir.path(), "team-a");
    edit_manifest(&a, None, |t| {
        t.insert("id".into(), "team-a".into());
    });
    let b = stage_plugin("confidential-ids", dir.path(), "team-b");
    edit_manifest(&b, None, |t| {
        t.insert("id".into(), "team-b".into());
    });
    let plugins = format!(
        "guardrails:\n  builtin: false\n  plugins:\n    - path: {}\n    - path: {}\n",
        a.display(),
        b.display()
    );

    // The bare id names neither: refused, with the names that work.
    let bare = config(
        &mock,
        &format!("{plugins}  upgoing: {{ confidential-id: block }}\n"),
    );
    write_config(&dir.path().join("bitrouter.yaml"), &bare);
    let c = bitrouter::Config::load(&dir.path().join("bitrouter.yaml")).unwrap();
    let e = bitrouter::Gateway::new(c)
        .await
        .err()
        .expect("an ambiguous id is refused");
    assert!(
        e.message()
            .contains("`team-a/confidential-id` or `team-b/confidential-id`"),
        "{e}"
    );

    // Full ids: each team's pattern has its own action, and shows under its full id.
    let full = config(
        &mock,
        &format!(
            "{plugins}  upgoing: {{ team-a/confidential-id: redact, team-b/confidential-id: warn }}\n"
        ),
    );
    let gw = TestGateway::start_file(dir.path(), &full).await;
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    let ids: Vec<&str> = listed["guardrail_patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "team-a/confidential-id",
            "team-a/confidential-id-obfuscated",
            "team-b/confidential-id",
            "team-b/confidential-id-obfuscated"
        ]
    );
    let (path, body) = request_for("openai", "m", "see CONFIDENTIAL-123456");
    let r = post(&gw, path, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("x-bitrouter-guardrail-redactions"),
        "team-a/confidential-id=1"
    );
    assert_eq!(
        r.header("x-bitrouter-guardrail-warnings"),
        "team-b/confidential-id=1"
    );
}

#[tokio::test]
async fn scoped_keys_sign_only_their_scope() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("team-a"), dir.path().join("team-b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    const TEAM_A: [u8; 32] = [1; 32];
    const TEAM_B: [u8; 32] = [2; 32];
    let trust = format!(
        "plugins:\n  trust:\n    - keys: [\"{}\"]\n      scope: \"{}/*\"\n    - keys: [\"{}\"]\n      scope: \"{}/*\"\n",
        bitrouter::plugins::public_key_hex(&TEAM_A),
        a_dir.display(),
        bitrouter::plugins::public_key_hex(&TEAM_B),
        b_dir.display()
    );
    let with = |wasm: &Path| {
        config(
            &mock,
            &format!(
                "guardrails:\n  builtin: true\n  plugins:\n    - path: {}\n{trust}",
                wasm.display()
            ),
        )
    };
    let start = |yaml: String| {
        write_config(&dir.path().join("bitrouter.yaml"), &yaml);
        let c = bitrouter::Config::load(&dir.path().join("bitrouter.yaml")).unwrap();
        bitrouter::Gateway::new(c)
    };

    // Team A's key on team A's plugin: loads (the built-ins beside it, trusted as the binary).
    let a = stage_plugin("confidential-ids", &a_dir, "ids");
    edit_manifest(&a, Some(&TEAM_A), |_| {});
    let gw = start(with(&a)).await.expect("in scope");
    let listed = gw.plugins_json();
    let ids = listed["plugins"].as_array().unwrap();
    let p = ids.iter().find(|p| p["id"] == "confidential-ids").unwrap();
    assert_eq!(
        p["signer"],
        json!(bitrouter::plugins::public_key_hex(&TEAM_A))
    );
    drop(gw);

    // Team A's key on a plugin in team B's scope: refused, saying whose scope it is.
    let b = stage_plugin("confidential-ids", &b_dir, "ids");
    edit_manifest(&b, Some(&TEAM_A), |_| {});
    let e = start(with(&b)).await.err().expect("out of scope");
    assert!(e.message().contains("allows only for"), "{e}");
    assert!(e.message().contains("team-a/*"), "{e}");

    // Outside every scope, with no trusted_keys: refused (fails closed), even when signed.
    let elsewhere = stage_plugin("confidential-ids", dir.path(), "ids");
    edit_manifest(&elsewhere, Some(&[9; 32]), |_| {});
    let e = start(with(&elsewhere)).await.err().expect("no scope");
    assert!(e.message().contains("no trusted key may sign"), "{e}");

    // A bad scope glob is a config error at its key.
    let bad = with(&a).replace(&format!("{}/*", a_dir.display()), "[unclosed");
    write_config(&dir.path().join("bitrouter.yaml"), &bad);
    let e = bitrouter::Config::load(&dir.path().join("bitrouter.yaml")).unwrap_err();
    assert!(e.to_string().contains("plugins.trust[0].scope"), "{e}");
}

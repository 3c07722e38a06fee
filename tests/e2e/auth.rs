//! Wallet-signed JWT auth against the real gateway: tokens from an independent signer
//! written here (ed25519-dalek, k256 and keccak directly) and from the `bitrouter` CLI, for
//! both chains; every rejection of the issue; account and model allowlists; both headers.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::child::{BIN, ChildGateway};
use crate::harness::{TestGateway, anthropic_msg, get, mock, openai_chat, post_raw, providers};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::wallet::{SOL_REF, Wallet, b64, now};

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn chat(gw: &TestGateway, model: &str, auth: &[(&str, &str)]) -> crate::harness::Reply {
    post_raw(
        gw,
        "/v1/chat/completions",
        openai_chat(model, "hi").to_string().into_bytes(),
        auth,
    )
    .await
}

async fn gateway(
    accounts: &[String],
    admins: &[String],
) -> (TestGateway, bitrouter_mock::MockServer) {
    let m = mock().await;
    let list = |v: &[String]| {
        v.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let yaml = format!(
        "{}models:\n  fast:\n    endpoints:\n      - provider: openai\n        model_id: gpt-4o\n  slow:\n    endpoints:\n      - provider: anthropic\n        model_id: claude\nauth:\n  mode: on\n  accounts: [{}]\n  admins: [{}]\n  max_token_size: 2KiB\n",
        providers(&[("openai", "openai", &m), ("anthropic", "anthropic", &m)]),
        list(accounts),
        list(admins),
    );
    (TestGateway::start(&yaml).await, m)
}

fn assert_openai_error(r: &crate::harness::Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let body = r.json();
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
}

#[tokio::test]
async fn independent_wallet_tokens_pass_and_every_bad_token_is_refused() {
    let sol = Wallet::sol(1);
    let evm = Wallet::evm(2);
    let admin = Wallet::sol(3);
    let (gw, _m) = gateway(&[sol.account(), "eip155:*:0x*".into()], &[admin.account()]).await;

    // Both chains, both header styles.
    let t = sol.token(json!({"exp": now() + 600}));
    let r = chat(&gw, "fast", &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = evm.token(json!({}));
    let r = chat(&gw, "fast", &[("x-api-key", &t)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // EVM checksummed (upper-case) iss verifies the same.
    let upper = format!("eip155:1:0x{}", evm.address()[2..].to_ascii_uppercase());
    let r = chat(
        &gw,
        "fast",
        &[("x-api-key", &evm.token(json!({"iss": upper})))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // No token: 401 in the caller's dialect, with a Bearer challenge.
    let r = chat(&gw, "fast", &[]).await;
    assert_openai_error(&r, 401, "missing credentials");
    assert_eq!(r.header("www-authenticate"), "Bearer");
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = post_raw(
        &gw,
        "/v1/messages",
        anthropic_msg("fast", "hi").to_string().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    // /health stays open.
    assert_eq!(get(&gw, "/health", &[]).await.status, 200);

    let good = sol.token(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = {
        let mut p: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        p["scope"] = json!("admin");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(p.to_string().as_bytes()),
            parts[2]
        )
    };
    let stranger = Wallet::sol(9);
    let wrong_key = {
        // Signed by another key while naming the allowed account.
        stranger.sign_raw(
            &json!({"alg": "SOL_EDDSA"}),
            &json!({"iss": sol.account(), "chain": format!("solana:{SOL_REF}")}),
        )
    };
    let header = |h: Value| {
        format!(
            "{}.{}.{}",
            b64(h.to_string().as_bytes()),
            parts[1],
            parts[2]
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            "three base64url segments",
        ),
        (
            "four segments",
            format!("{good}.x"),
            "three base64url segments",
        ),
        (
            "bad base64",
            format!("{}.{}.{}", parts[0], "***", parts[2]),
            "base64url",
        ),
        (
            "unknown alg",
            header(json!({"alg": "RS512"})),
            "unsupported token algorithm",
        ),
        ("alg none", header(json!({"alg": "none"})), "alg \"none\""),
        (
            "alg/namespace mismatch",
            header(json!({"alg": "EIP191K"})),
            "cannot sign for a solana account",
        ),
        (
            "chain mismatch",
            sol.token(json!({"chain": "solana:devnet"})),
            "does not match",
        ),
        ("tampered payload", tampered_payload, "invalid signature"),
        ("wrong key", wrong_key, "invalid signature"),
        (
            "expired",
            sol.token(json!({"exp": now() - 3600})),
            "expired",
        ),
        (
            "malformed CAIP-10",
            sol.token(json!({"iss": "solana:x:not-base58-0OIl"})),
            "malformed CAIP-10",
        ),
        (
            "oversized",
            sol.token(json!({"pad": "x".repeat(3000)})),
            "above the limit",
        ),
    ];
    for (what, token, needle) in &cases {
        let r = chat(&gw, "fast", &[("authorization", &bearer(token))]).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        assert_openai_error(&r, 401, needle);
        // The same refusal through x-api-key.
        let r = chat(&gw, "fast", &[("x-api-key", token)]).await;
        assert_eq!(r.status, 401, "{what} (x-api-key): {}", r.text);
    }

    // A valid signature from an account not on the allowlist: 403.
    let r = chat(
        &gw,
        "fast",
        &[("authorization", &bearer(&stranger.token(json!({}))))],
    )
    .await;
    assert_openai_error(&r, 403, "not allowed");
    assert_eq!(r.json()["error"]["type"], "permission_error");

    // Admin routes: api token 403; admin token from an admin account 200; admin token
    // from a non-admin account 403.
    let api = sol.token(json!({}));
    let r = get(&gw, "/admin/spend", &[("authorization", &bearer(&api))]).await;
    assert_openai_error(&r, 403, "needs an admin token");
    let r = get(&gw, "/admin/metrics", &[]).await;
    assert_eq!(r.status, 401);
    let adm = admin.token(json!({"scope": "admin", "exp": now() + 600}));
    let r = get(&gw, "/admin/spend", &[("authorization", &bearer(&adm))]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get(&gw, "/metrics", &[("x-api-key", &adm)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let not_admin = sol.token(json!({"scope": "adm", "exp": now() + 600}));
    let r = get(
        &gw,
        "/admin/spend",
        &[("authorization", &bearer(&not_admin))],
    )
    .await;
    assert_openai_error(&r, 403, "not an admin");
    // The dashboard page itself loads; its data needs the token.
    assert_eq!(get(&gw, "/admin", &[]).await.status, 200);

    // The ledger row carries the token's account and session.
    let t = sol.token(json!({"jti": "sess-42"}));
    assert_eq!(
        chat(&gw, "fast", &[("authorization", &bearer(&t))])
            .await
            .status,
        200
    );
    // Four model calls were served; wait for the ledger's writer to have them all.
    for _ in 0..500 {
        if gw.gateway.ledger().stats().written >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = get(
        &gw,
        "/admin/spend?group_by=session",
        &[("authorization", &bearer(&adm))],
    )
    .await;
    assert!(r.text.contains("sess-42"), "{}", r.text);
    let r = get(
        &gw,
        "/admin/spend?group_by=account",
        &[("authorization", &bearer(&adm))],
    )
    .await;
    assert!(r.text.contains(&sol.account()), "{}", r.text);
}

#[tokio::test]
async fn model_globs_gate_calls_and_the_models_list() {
    let sol = Wallet::sol(4);
    let (gw, _m) = gateway(&["solana:*".into()], &[]).await;
    let t = sol.token(json!({"mdl": ["openai:*", "fa?t"]}));
    let auth = [("authorization", bearer(&t))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(chat(&gw, "fast", &auth).await.status, 200);
    assert_eq!(chat(&gw, "openai:gpt-4o", &auth).await.status, 200);
    let r = chat(&gw, "slow", &auth).await;
    assert_openai_error(&r, 403, "may not use model \"slow\"");
    let r = post_raw(
        &gw,
        "/v1/messages",
        anthropic_msg("anthropic:claude", "hi")
            .to_string()
            .into_bytes(),
        &auth,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "permission_error");

    let ids = |r: crate::harness::Reply| -> Vec<String> {
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let listed = ids(get(&gw, "/v1/models", &auth).await);
    assert!(listed.contains(&"fast".to_owned()), "{listed:?}");
    assert!(
        listed.iter().any(|m| m.starts_with("openai:")),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .all(|m| m == "fast" || m.starts_with("openai:")),
        "{listed:?}"
    );
    // A token without `models` sees everything.
    let all = sol.token(json!({}));
    let listed = ids(get(&gw, "/v1/models", &[("x-api-key", &all)]).await);
    assert!(
        listed.contains(&"slow".to_owned()) && listed.iter().any(|m| m.starts_with("anthropic:")),
        "{listed:?}"
    );
    assert_eq!(get(&gw, "/v1/models", &[]).await.status, 401);
    // One model: the token's `models` globs apply as they do to the list.
    assert_eq!(get(&gw, "/v1/models/fast", &auth).await.status, 200);
    assert_eq!(get(&gw, "/v1/models/slow", &auth).await.status, 404);
    assert_eq!(
        get(&gw, "/v1/models/slow", &[("x-api-key", &all)])
            .await
            .status,
        200
    );
    assert_eq!(get(&gw, "/v1/models/slow", &[]).await.status, 401);
    // provider:model ids keep their colon, raw or percent-encoded.
    let pm = listed.iter().find(|m| m.starts_with("anthropic:")).unwrap();
    for path in [
        format!("/v1/models/{pm}"),
        format!("/v1/models/{}", pm.replace(':', "%3A")),
    ] {
        let r = get(&gw, &path, &[("x-api-key", &all)]).await;
        assert_eq!(
            r.json()["id"].as_str(),
            Some(pm.as_str()),
            "{path}: {}",
            r.text
        );
    }
}

pub(crate) fn cli(home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("BITROUTER_HOME", home)
        .env_remove("BITROUTER_TOKEN")
        .env_remove("BITROUTER_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The official Python SDKs with a JWT as their API key: OpenAI sends it as Bearer,
/// Anthropic as x-api-key.
const SDK_SCRIPT: &str = r#"
import sys, openai, anthropic
base, token = sys.argv[1], sys.argv[2]
o = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=30)
r = o.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
assert r.choices[0].message.content, r
ids = [m.id for m in o.models.list()]
assert ids == ["fast"], ids
a = anthropic.Anthropic(base_url=base, api_key=token, max_retries=0, timeout=30)
m = a.messages.create(model="fast", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
assert m.content, m
try:
    anthropic.Anthropic(base_url=base, api_key="not-a-jwt", max_retries=0).messages.create(
        model="fast", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("a bad token was accepted")
except anthropic.AuthenticationError:
    pass
print("sdk ok")
"#;

// Multi-threaded: the CLI and the Python SDKs block this thread while the in-process mock
// upstream answers the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keygen_mint_inspect_and_spend_against_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (ok, out, err) = cli(&home, &["keygen"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("solana account: solana:") && out.contains("evm account:    eip155:1:0x"),
        "{out}"
    );
    let key = home.join("keys/wallet.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let (ok, _, err) = cli(&home, &["keygen"]);
    assert!(!ok && err.contains("refusing to overwrite"), "{err}");
    let (ok, _, err) = cli(
        &home,
        &["token", "mint", "--scope", "admin", "--exp", "never"],
    );
    assert!(!ok && err.contains("admin tokens must expire"), "{err}");

    let (ok, sol, err) = cli(
        &home,
        &[
            "token", "mint", "--chain", "solana", "--scope", "api", "--exp", "30d", "--models",
            "fast",
        ],
    );
    assert!(ok, "{err}");
    let (ok, evm, err) = cli(
        &home,
        &[
            "token",
            "mint",
            "--chain",
            "evm",
            "--exp",
            "never",
            "--budget",
            "2.5usd",
            "--budget-scope",
            "account",
            "--budget-range",
            "rounds:10",
        ],
    );
    assert!(ok, "{err}");
    let (ok, inspected, err) = cli(&home, &["token", "inspect", &evm]);
    assert!(ok, "{inspected} {err}");
    let doc: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(doc["header"]["alg"], "EIP191K");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["claims"]["budget"], 2_500_000);
    assert_eq!(doc["claims"]["budget_scope"], "account");
    assert_eq!(
        doc["claims"]["budget_range"],
        json!({"type": "rounds", "count": 10})
    );
    // A changed signature character (mid-segment, so still valid base64url) fails inspection.
    let mut bad: Vec<char> = sol.chars().collect();
    let i = bad.len() - 10;
    bad[i] = if bad[i] == 'A' { 'B' } else { 'A' };
    let bad: String = bad.into_iter().collect();
    let (ok, inspected, _) = cli(&home, &["token", "inspect", &bad]);
    assert!(!ok && inspected.contains("\"valid\": false"), "{inspected}");

    let m = mock().await;
    let cfg = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}models:\n  fast:\n    endpoints:\n      - provider: openai\n        model_id: gpt-4o\nauth:\n  mode: on\ndatabase:\n  url: sqlite://spend.db\n",
            providers(&[("openai", "openai", &m)])
        ),
    )
    .unwrap();
    let home_s = home.to_str().unwrap().to_owned();
    let gw = ChildGateway::spawn_with_env(&cfg, dir.path(), &[("BITROUTER_HOME", &home_s)]);
    let client = crate::harness::client();
    let call = |token: Option<String>, model: &'static str| {
        let mut req = client
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(openai_chat(model, "hi").to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // The key store's accounts are the default allowlist.
    assert_eq!(call(Some(sol.clone()), "fast").await, 200);
    assert_eq!(call(Some(evm.clone()), "fast").await, 200);
    assert_eq!(call(Some(sol.clone()), "openai:gpt-4o").await, 403);
    assert_eq!(call(None, "fast").await, 401);
    // `bitrouter spend` mints its own admin token from the key store.
    let (ok, table, err) = cli(
        &home,
        &["spend", "--url", &gw.url(""), "--group-by", "model"],
    );
    assert!(ok, "{table}\n{err}\n{}", gw.log());
    assert!(table.contains("MODEL"), "{table}");
    // With no key store and no token it is refused.
    let (ok, _, err) = cli(&dir.path().join("empty"), &["spend", "--url", &gw.url("")]);
    assert!(!ok && err.contains("401"), "{err}");

    let out = Command::new(crate::sdk_clients::python())
        .args(["-c", SDK_SCRIPT, &gw.url(""), &sol])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sdk ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_public_listener_with_auth_off_is_refused_without_allow_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.yaml");
    std::fs::write(&cfg, "auth:\n  mode: off\ndatabase:\n  url: memory://\n").unwrap();
    let port = crate::child::free_port();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &format!("0.0.0.0:{port}"),
        ])
        .env("BITROUTER_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-open") && err.contains("auth.mode: off"),
        "{err}"
    );
}

/// The two halves of issue 6 together: a budget carried by a wallet-signed token (no test
/// hook) is enforced over HTTP, per session for `budget_scope: session` and across the
/// account's tokens for the `bsc: act` alias, and the spend rows carry the token's account.
#[tokio::test]
async fn a_budget_in_a_wallet_token_is_enforced_over_http() {
    let (sol, evm) = (Wallet::sol(21), Wallet::evm(22));
    let m = mock().await;
    let yaml = format!(
        "providers:\n  up:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      gpt-up: {{ pricing: {{ input_tokens: {{ no_cache: 2.0 }}, output_tokens: {{ text: 10.0 }} }} }}\nmodels:\n  m:\n    endpoints: [{{ provider: up, model_id: gpt-up }}]\nauth:\n  mode: on\n  accounts: ['{}', '{}']\n",
        m.base_url(),
        sol.account(),
        evm.account()
    );
    let gw = TestGateway::start(&yaml).await;
    let ask = |token: String| {
        let gw = &gw;
        async move {
            let body = json!({"model": "m", "max_tokens": 10,
                              "messages": [{"role": "user", "content": "hello"}]});
            post_raw(
                gw,
                "/v1/chat/completions",
                body.to_string().into_bytes(),
                &[("authorization", &bearer(&token))],
            )
            .await
        }
    };
    // Session budget: this token alone, until it no longer fits.
    let t1 = sol.token(json!({"jti": "s1", "budget": 250, "budget_scope": "session"}));
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = ask(t1.clone()).await;
        let remaining: u64 = r
            .header("x-bitrouter-budget-remaining")
            .parse()
            .unwrap_or_else(|_| panic!("no budget header: {}", r.text));
        assert!(remaining <= 250, "{remaining}");
        statuses.push(r.status);
        if r.status == 402 {
            assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.text);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(statuses.first(), Some(&200), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&402), "{statuses:?}");
    // Another token of the same account is another session: its own budget.
    let t2 = sol.token(json!({"jti": "s2", "budget": 250, "budget_scope": "session"}));
    assert_eq!(ask(t2).await.status, 200);
    // Account scope (short aliases): two tokens share one budget.
    let (a1, a2) = (
        evm.token(json!({"jti": "a1", "bgt": 150, "bsc": "act"})),
        evm.token(json!({"jti": "a2", "bgt": 150, "bsc": "act"})),
    );
    let mut refused = false;
    for i in 0..20 {
        let r = ask(if i % 2 == 0 { a1.clone() } else { a2.clone() }).await;
        if r.status == 402 {
            refused = true;
            // The other token of the account is out of budget too.
            let other = ask(if i % 2 == 0 { a2.clone() } else { a1.clone() }).await;
            assert_eq!(other.status, 402, "{}", other.text);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert!(refused, "the shared account budget never ran out");
    // Spend rows carry the verified account.
    for _ in 0..500 {
        if gw.gateway.ledger().stats().written >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.account.as_deref() == Some(sol.account().as_str()))
    );
    assert!(
        rows.iter()
            .any(|r| r.account.as_deref() == Some(evm.account().as_str()))
    );
}

#[tokio::test]
async fn a_refused_model_call_is_an_event_and_a_metric_but_not_a_ledger_row() {
    let m = mock().await;
    let sol = Wallet::sol(41);
    let yaml = format!(
        "{}models:\n  fast:\n    endpoints:\n      - provider: openai\n        model_id: gpt-4o\nauth:\n  mode: on\n  accounts: ['{}']\n",
        providers(&[("openai", "openai", &m)]),
        sol.account()
    );
    let events = std::sync::Arc::new(crate::observe::Collect::default());
    let gw = TestGateway::start_with(&yaml, vec![events.clone()]).await;
    let missing = chat(&gw, "fast", &[]).await;
    assert_eq!(missing.status, 401, "{}", missing.text);
    let stranger = bearer(&Wallet::sol(42).token(json!({})));
    let refused = chat(&gw, "fast", &[("authorization", &stranger)]).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    // Not a model call: no event.
    assert_eq!(get(&gw, "/v1/models", &[]).await.status, 401);
    let ok = chat(
        &gw,
        "fast",
        &[("authorization", &bearer(&sol.token(json!({}))))],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let seen = events.wait(3).await;
    let by_id = |r: &crate::harness::Reply| {
        seen.iter()
            .find(|e| e.request_id == r.header("x-request-id"))
            .unwrap_or_else(|| panic!("no event for {}", r.header("x-request-id")))
            .clone()
    };
    let (e401, e403) = (by_id(&missing), by_id(&refused));
    assert_eq!(
        (e401.status, e401.error_type.as_deref(), e401.success),
        (401, Some("Unauthorized"), false)
    );
    assert_eq!(
        (e403.status, e403.error_type.as_deref()),
        (403, Some("Forbidden"))
    );
    assert_eq!(
        by_id(&ok).account_id.as_deref(),
        Some(sol.account().as_str())
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let again = events.wait(3).await;
    assert_eq!(again.len(), 3, "the /v1/models refusal is not a model call");
    let metrics = gw.gateway.metrics().snapshot();
    assert_eq!(
        (metrics["requests"].clone(), metrics["errors"].clone()),
        (json!(3), json!(2))
    );
    // Only the served request has a ledger row.
    for _ in 0..300 {
        if gw.gateway.ledger().stats().written >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].success);
}

#[tokio::test]
async fn admin_token_lifetimes_are_capped_and_conflicting_credentials_refused() {
    let admin = Wallet::sol(7);
    let (gw, _m) = gateway(&[admin.account()], &[admin.account()]).await;
    let spend = |t: String| {
        let gw = &gw;
        async move { get(gw, "/admin/spend", &[("authorization", &bearer(&t))]).await }
    };
    // Within the default 24 h: accepted.
    let ok = admin.token(json!({"scope": "admin", "exp": now() + 3600}));
    assert_eq!(spend(ok.clone()).await.status, 200);
    // Absurd expiries: refused, naming the setting.
    for exp in [
        json!(now() + 30 * 86_400),
        json!(i64::MAX),
        json!(99_999_999_999u64),
    ] {
        let r = spend(admin.token(json!({"scope": "admin", "exp": exp}))).await;
        assert_openai_error(&r, 401, "max_admin_token_lifetime");
    }
    // Non-integer expiries: refused, whatever their value.
    for exp in [json!(1e300), json!((now() + 60) as f64 + 0.5)] {
        let r = spend(admin.token(json!({"scope": "admin", "exp": exp}))).await;
        assert_openai_error(&r, 401, "whole Unix seconds");
    }
    // An api token may still live long.
    let api = admin.token(json!({"exp": now() + 365 * 86_400}));
    assert_eq!(
        chat(&gw, "fast", &[("authorization", &bearer(&api))])
            .await
            .status,
        200
    );

    // Two different credentials: 401 naming the conflict; the same token twice is fine.
    let forged = format!("{}x", &api[..api.len() - 1]);
    let r = chat(
        &gw,
        "fast",
        &[("authorization", &bearer(&api)), ("x-api-key", &forged)],
    )
    .await;
    assert_openai_error(&r, 401, "two different credentials");
    let r = chat(
        &gw,
        "fast",
        &[("authorization", &bearer(&api)), ("x-api-key", &api)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = chat(
        &gw,
        "fast",
        &[("x-api-key", &api), ("x-goog-api-key", &forged)],
    )
    .await;
    assert_openai_error(&r, 401, "two different credentials");
}

#[tokio::test]
async fn minted_rate_claims_limit_the_token_through_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (ok, _, err) = cli(&home, &["keygen"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&home, &["token", "mint", "--rpm", "0"]);
    assert!(!ok && err.contains("--rpm"), "{err}");
    let (ok, token, err) = cli(
        &home,
        &[
            "token", "mint", "--exp", "1h", "--rpm", "2", "--tpm", "100000",
        ],
    );
    assert!(ok, "{err}");
    let (ok, inspected, err) = cli(&home, &["token", "inspect", &token]);
    assert!(ok, "{inspected} {err}");
    let doc: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(doc["claims"]["rpm"], 2);
    assert_eq!(doc["claims"]["tpm"], 100_000);
    assert!(doc["claims"].get("rate_scope").is_none());

    let m = mock().await;
    let cfg = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}models:\n  fast:\n    endpoints:\n      - provider: openai\n        model_id: gpt-4o\nauth:\n  mode: on\n",
            providers(&[("openai", "openai", &m)])
        ),
    )
    .unwrap();
    let home_s = home.to_str().unwrap().to_owned();
    let gw = ChildGateway::spawn_with_env(&cfg, dir.path(), &[("BITROUTER_HOME", &home_s)]);
    let client = crate::harness::client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(openai_chat("fast", "hi").to_string())
            .send()
            .await
            .unwrap();
        statuses.push((
            r.status().as_u16(),
            r.headers()
                .get("x-ratelimit-remaining-requests")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        ));
    }
    assert_eq!(
        statuses,
        [
            (200, "1".to_owned()),
            (200, "0".to_owned()),
            (429, "0".to_owned())
        ]
    );
    // The refusal is counted against the token's account on /admin/metrics.
    let (ok, admin, err) = cli(&home, &["token", "mint", "--scope", "admin", "--exp", "1h"]);
    assert!(ok, "{err}");
    let metrics: Value = client
        .get(gw.url("/admin/metrics"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let callers = metrics["routes"]["fast"]["rate_limited_callers"]
        .as_object()
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(callers.len(), 1, "{metrics}");
    let (account, limits) = callers.iter().next().unwrap();
    assert!(
        account.starts_with("solana:") || account.starts_with("eip155:"),
        "{account}"
    );
    assert_eq!(limits, &json!({"token:requests": 1}), "{metrics}");
}

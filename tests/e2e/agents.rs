//! A2A agent cards over real HTTP: cards signed here by independent wallets (ed25519-dalek,
//! k256 + keccak directly), registered, listed, shown and deleted for both chains; every
//! rejection of the issue; update semantics; persistence across a restart (redb, child
//! process) and on the real PostgreSQL and MariaDB servers, where a row altered behind the
//! gateway's back is served with `verified: false`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::child::ChildGateway;
use crate::harness::{Reply, TestGateway, client};
use crate::scratch_db::Scratch;
use crate::wallet::{SOL_REF, Wallet, b64};

fn card(name: &str, tag: &str) -> Value {
    json!({
        "name": name,
        "description": format!("{name} does things"),
        "version": "1.0.0",
        "protocolVersion": "0.3.0",
        "url": "https://agents.example/a2a",
        "provider": {"organization": "Example", "url": "https://example.org"},
        "capabilities": {"streaming": true},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "main", "name": "Main", "description": "the main skill",
                    "tags": [tag], "examples": ["do it"]}],
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    })
}

async fn call(method: reqwest::Method, url: String, body: Option<Vec<u8>>) -> Reply {
    call_as(method, url, body, None).await
}

async fn register(base: &str, card: &Value) -> Reply {
    call(
        reqwest::Method::POST,
        format!("{base}/v1/agents"),
        Some(card.to_string().into_bytes()),
    )
    .await
}

async fn get(base: &str, path: &str) -> Reply {
    call(reqwest::Method::GET, format!("{base}{path}"), None).await
}

async fn delete(base: &str, path: &str) -> Reply {
    call(reqwest::Method::DELETE, format!("{base}{path}"), None).await
}

fn base(gw: &TestGateway) -> String {
    gw.url("")
}

/// The error's status, `param` and `code`, checking the OpenAI error shape on the way.
fn refusal(r: &Reply) -> (u16, String, String) {
    let v = r.json();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    (
        r.status,
        e["param"].as_str().unwrap_or("").to_owned(),
        e["code"].as_str().unwrap_or("").to_owned(),
    )
}

const YAML: &str = "models: {}\n";

#[tokio::test]
async fn register_list_show_update_delete_for_both_chains() {
    let gw = TestGateway::start(YAML).await;
    let b = base(&gw);
    let sol = Wallet::sol(1);
    let evm = Wallet::evm(2);

    let r = register(&b, &sol.sign_card(&card("Researcher", "research"))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    assert_eq!(v["account"], sol.account());
    assert_eq!(v["chain"], format!("solana:{SOL_REF}"));
    assert_eq!(v["verified"], true);
    let created = v["created_at"].as_i64().unwrap();

    let r = register(&b, &evm.sign_card(&card("Trader", "finance"))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["chain"], "eip155:1");

    let all = get(&b, "/v1/agents").await.json();
    let names: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Researcher") && names.contains(&"Trader"));
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["verified"] == true)
    );
    let only = |q: &str| {
        let b = b.clone();
        let q = q.to_owned();
        async move {
            get(&b, &format!("/v1/agents?{q}")).await.json()["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only("chain=solana").await, ["Researcher"]);
    assert_eq!(only("chain=eip155%3A1").await, ["Trader"]);
    assert_eq!(only("chain=eip155:137").await, Vec::<String>::new());
    assert_eq!(only("skill=FINANCE").await, ["Trader"]);
    assert_eq!(only("name=search").await, ["Researcher"]);

    // Show, by the stored spelling, by an upper-case EVM address and with escaped colons.
    let r = get(&b, &format!("/v1/agents/{}", sol.account())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["card"]["name"], "Researcher");
    assert_eq!(r.json()["verified"], true);
    let upper = evm
        .account()
        .replace("0x", "0X")
        .to_uppercase()
        .replace("EIP", "eip");
    let r = get(&b, &format!("/v1/agents/{upper}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["account"], evm.account());
    let escaped = evm.account().replace(':', "%3A");
    let r = get(
        &b,
        &format!("/v1/agents/{escaped}/.well-known/agent-card.json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-agent-card-verified"), "true");
    let served = r.json();
    assert_eq!(served["name"], "Trader");
    assert_eq!(
        served,
        evm.sign_card(&card("Trader", "finance")),
        "the card as signed"
    );

    // Registering again replaces the card and keeps its creation time.
    let r = register(&b, &sol.sign_card(&card("Researcher 2", "papers"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["created_at"].as_i64(), Some(created));
    let r = get(&b, &format!("/v1/agents/{}", sol.account())).await;
    assert_eq!(r.json()["name"], "Researcher 2");
    assert_eq!(only("").await.len(), 2);
    assert_eq!(only("skill=research").await, Vec::<String>::new());

    let r = delete(&b, &format!("/v1/agents/{}", sol.account())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["deleted"], true);
    let r = get(&b, &format!("/v1/agents/{}", sol.account())).await;
    assert_eq!(refusal(&r), (404, String::new(), "agent_not_found".into()));
    let r = delete(&b, &format!("/v1/agents/{}", sol.account())).await;
    assert_eq!(r.status, 404);
    assert_eq!(only("").await, ["Trader"]);
}

#[tokio::test]
async fn refuses_bad_signatures_foreign_addresses_and_bad_cards() {
    let gw = TestGateway::start(YAML).await;
    let b = base(&gw);
    let (alice, mallory) = (Wallet::sol(3), Wallet::sol(4));
    let (evm_alice, evm_mallory) = (Wallet::evm(5), Wallet::evm(6));

    // A card naming alice but signed by mallory's key, on both chains.
    for (victim, signer) in [(&alice, &mallory), (&evm_alice, &evm_mallory)] {
        let forged = signer.sign_card_as(&card("Fake", "x"), &victim.account());
        let r = register(&b, &forged).await;
        assert_eq!(
            refusal(&r),
            (
                400,
                "signatures[0].signature".into(),
                "invalid_signature".into()
            ),
            "{}",
            r.text
        );
    }
    // Tampered after signing.
    let mut tampered = alice.sign_card(&card("Honest", "x"));
    tampered["description"] = json!("now evil");
    let r = register(&b, &tampered).await;
    assert_eq!(refusal(&r).2, "invalid_signature");
    let mut tampered = evm_alice.sign_card(&card("Honest", "x"));
    tampered["skills"][0]["tags"] = json!(["other"]);
    assert_eq!(
        refusal(&register(&b, &tampered).await).2,
        "invalid_signature"
    );
    // The right key with the other chain's algorithm.
    let mut wrong_alg = alice.sign_card(&card("A", "x"));
    wrong_alg["signatures"][0]["protected"] =
        json!(b64(json!({"alg": "EIP191K", "kid": alice.account()})
            .to_string()
            .as_bytes()));
    assert_eq!(
        refusal(&register(&b, &wrong_alg).await).1,
        "signatures[0].protected.alg"
    );
    // Unsigned; malformed kid; malformed CAIP-10 in the path.
    let r = register(&b, &card("A", "x")).await;
    assert_eq!(
        refusal(&r),
        (400, "signatures".into(), "invalid_signature".into())
    );
    let r = register(&b, &alice.sign_card_as(&card("A", "x"), "solana:abc")).await;
    assert_eq!(refusal(&r).1, "signatures[0].protected.kid");
    for bad in [
        "not-an-account",
        "eip155:1:0x12",
        "cosmos:hub:x",
        "solana:x:0OIl",
    ] {
        let r = get(&b, &format!("/v1/agents/{bad}")).await;
        assert_eq!(
            refusal(&r),
            (400, "account".into(), "invalid_caip10".into()),
            "{bad}"
        );
        let r = delete(&b, &format!("/v1/agents/{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    // Field errors name the field.
    let mut c = card("A", "x");
    c["skills"][0]["tags"] = json!("x");
    let r = register(&b, &alice.sign_card(&c)).await;
    assert_eq!(
        refusal(&r),
        (400, "skills[0].tags".into(), "invalid_agent_card".into())
    );
    let mut c = card("A", "x");
    c.as_object_mut().unwrap().remove("protocolVersion");
    assert_eq!(
        refusal(&register(&b, &alice.sign_card(&c)).await).1,
        "protocolVersion"
    );
    let r = call(
        reqwest::Method::POST,
        format!("{b}/v1/agents"),
        Some(b"{not json".to_vec()),
    )
    .await;
    assert_eq!(refusal(&r), (400, String::new(), "invalid_json".into()));
    // Oversized: refused before it is parsed, with or without Content-Length.
    let mut big = card("Big", "x");
    big["padding"] = json!("x".repeat(70 * 1024));
    let r = register(&b, &alice.sign_card(&big)).await;
    assert_eq!(
        refusal(&r),
        (413, String::new(), "agent_card_too_large".into())
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 40 * 1024]), Ok(vec![b' '; 40 * 1024])];
    let resp = client()
        .post(format!("{b}/v1/agents"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    // Just under the limit is fine.
    let mut fits = card("Fits", "x");
    fits["padding"] = json!("x".repeat(60 * 1024));
    assert_eq!(register(&b, &alice.sign_card(&fits)).await.status, 201);
    // Nothing else got in.
    let list = get(&b, "/v1/agents").await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["account"], alice.account());
    // Wrong methods.
    let r = call(reqwest::Method::PUT, format!("{b}/v1/agents"), None).await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn the_gateway_serves_its_own_card() {
    let gw = TestGateway::start(YAML).await;
    let r = get(&base(&gw), "/.well-known/agent-card.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = r.json();
    assert_eq!(c["name"], "BitRouter");
    assert_eq!(c["url"], base(&gw));
    let ids: Vec<&str> = c["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"openai-chat-completions") && ids.contains(&"anthropic-messages"));
    bitrouter::agents::card::validate(&c).unwrap();
}

#[tokio::test]
async fn cards_survive_a_restart_redb() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &config,
        format!(
            "models: {{}}\ndatabase:\n  url: redb://{}\n",
            dir.path().join("db.redb").display()
        ),
    )
    .unwrap();
    let sol = Wallet::sol(7);
    let evm = Wallet::evm(8);
    let mut gw = ChildGateway::spawn(&config, dir.path());
    let b = gw.url("");
    assert_eq!(
        register(&b, &sol.sign_card(&card("Sol", "a"))).await.status,
        201
    );
    assert_eq!(
        register(&b, &evm.sign_card(&card("Evm", "b"))).await.status,
        201
    );
    assert_eq!(
        register(&b, &evm.sign_card(&card("Evm v2", "b")))
            .await
            .status,
        200
    );
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some());
    let gw = ChildGateway::spawn(&config, dir.path());
    let b = gw.url("");
    let list = get(&b, "/v1/agents").await.json();
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{list}");
    assert!(data.iter().all(|e| e["verified"] == true));
    let r = get(&b, &format!("/v1/agents/{}", evm.account())).await;
    assert_eq!(r.json()["name"], "Evm v2");
}

/// Register, restart (a new gateway on the same database), then alter the stored card
/// directly in SQL: it must come back `verified: false`.
async fn exercise_sql(url: &str, tamper: impl AsyncFnOnce(&str)) {
    let yaml = format!("models: {{}}\ndatabase:\n  url: {url}\n");
    let sol = Wallet::sol(9);
    let evm = Wallet::evm(10);
    {
        let gw = TestGateway::start(&yaml).await;
        let b = base(&gw);
        assert_eq!(
            register(&b, &sol.sign_card(&card("Sol", "a"))).await.status,
            201
        );
        assert_eq!(
            register(&b, &evm.sign_card(&card("Evm", "b"))).await.status,
            201
        );
        let r = register(&b, &sol.sign_card(&card("Sol v2", "a"))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        gw.gateway.ledger().close().await;
    }
    let gw = TestGateway::start(&yaml).await;
    let b = base(&gw);
    let list = get(&b, "/v1/agents?chain=solana").await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["name"], "Sol v2");
    assert_eq!(list["data"][0]["verified"], true);
    tamper(&evm.account()).await;
    let r = get(&b, &format!("/v1/agents/{}", evm.account())).await;
    assert_eq!(r.json()["verified"], false, "{}", r.text);
    let r = get(
        &b,
        &format!("/v1/agents/{}/.well-known/agent-card.json", evm.account()),
    )
    .await;
    assert_eq!(r.header("x-agent-card-verified"), "false");
    assert_eq!(
        delete(&b, &format!("/v1/agents/{}", evm.account()))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&b, "/v1/agents").await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    gw.gateway.ledger().close().await;
}

const TAMPER: &str = "UPDATE agent_cards SET card = REPLACE(card, 'Evm does things', 'Evm does evil') WHERE account = ";

#[tokio::test]
async fn sqlite_cards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cards.db");
    let url = format!("sqlite://{}", path.display());
    exercise_sql(&url, async |account: &str| {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let n = sqlx::query(&format!("{TAMPER}?"))
            .bind(account)
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(n.rows_affected(), 1);
    })
    .await;
    assert!(Path::new(&path).exists());
}

/// Alters a stored card behind the gateway's back, on the server `url` names.
async fn tamper_on_server(url: &str, account: &str) {
    let affected = if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        let q = format!("{TAMPER}$1");
        let r = sqlx::query(&q).bind(account).execute(&mut c).await;
        r.unwrap().rows_affected()
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        let q = format!("{TAMPER}?");
        let r = sqlx::query(&q).bind(account).execute(&mut c).await;
        r.unwrap().rows_affected()
    };
    assert_eq!(affected, 1);
}

#[tokio::test]
async fn postgres_cards() {
    let db = Scratch::postgres("bitrouter_cards").await;
    let url = db.url().to_owned();
    exercise_sql(&url, async |account: &str| {
        tamper_on_server(&url, account).await;
    })
    .await;
    db.drop().await;
}

#[tokio::test]
async fn mysql_cards() {
    let db = Scratch::mysql("bitrouter_cards").await;
    let url = db.url().to_owned();
    exercise_sql(&url, async |account: &str| {
        tamper_on_server(&url, account).await;
    })
    .await;
    db.drop().await;
}

async fn call_as(
    method: reqwest::Method,
    url: String,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> Reply {
    let mut req = client().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    Reply::from(req.send().await.expect("request to the gateway failed")).await
}

#[tokio::test]
async fn with_auth_on_only_owners_write_and_requests_carry_the_agent_name() {
    use reqwest::Method;
    let m = crate::harness::mock().await;
    let (alice, bob, admin) = (Wallet::sol(31), Wallet::evm(32), Wallet::sol(33));
    let yaml = format!(
        "{}models:\n  fast:\n    endpoints:\n      - provider: openai\n        model_id: gpt-4o\nauth:\n  mode: on\n  accounts: ['{}', '{}', '{}']\n  admins: ['{}']\n",
        crate::harness::providers(&[("openai", "openai", &m)]),
        alice.account(),
        bob.account(),
        admin.account(),
        admin.account(),
    );
    let events = std::sync::Arc::new(crate::observe::Collect::default());
    let gw = TestGateway::start_with(&yaml, vec![events.clone()]).await;
    let b = base(&gw);
    let agents = format!("{b}/v1/agents");
    let (t_alice, t_bob) = (
        alice.token(json!({"scope": "api", "exp": crate::wallet::now() + 600})),
        bob.token(json!({"scope": "api", "exp": crate::wallet::now() + 600})),
    );
    let t_admin = admin.token(json!({"scope": "admin", "exp": crate::wallet::now() + 600}));
    let alice_card = alice.sign_card(&card("Alice agent", "research"));

    // Writing needs a token; a bad token is refused even where reading is public.
    let r = call_as(
        Method::POST,
        agents.clone(),
        Some(alice_card.to_string().into_bytes()),
        None,
    )
    .await;
    assert_eq!(refusal(&r).0, 401, "{}", r.text);
    let r = call_as(Method::GET, agents.clone(), None, Some("not-a-jwt")).await;
    assert_eq!(r.status, 401, "{}", r.text);
    // Bob's token cannot register Alice's (validly signed) card.
    let r = call_as(
        Method::POST,
        agents.clone(),
        Some(alice_card.to_string().into_bytes()),
        Some(&t_bob),
    )
    .await;
    assert_eq!(refusal(&r), (403, String::new(), "not_your_account".into()));
    let r = call_as(
        Method::POST,
        agents.clone(),
        Some(alice_card.to_string().into_bytes()),
        Some(&t_alice),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Reading is public: discovery needs no token.
    let r = call_as(Method::GET, format!("{agents}?skill=research"), None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"][0]["name"], "Alice agent");
    assert_eq!(r.json()["data"][0]["verified"], true);

    // Requests by Alice carry her agent's name into the event and the ledger row.
    let r = call_as(
        Method::POST,
        format!("{b}/v1/chat/completions"),
        Some(
            crate::harness::openai_chat("fast", "hi")
                .to_string()
                .into_bytes(),
        ),
        Some(&t_alice),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = events.wait(1).await;
    assert_eq!(seen[0].agent.as_deref(), Some("Alice agent"));
    assert_eq!(
        seen[0].account_id.as_deref(),
        Some(alice.account().as_str())
    );
    for _ in 0..300 {
        if gw.gateway.ledger().stats().written >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    assert_eq!(rows[0].agent.as_deref(), Some("Alice agent"));
    let r = call_as(
        Method::GET,
        format!("{b}/admin/spend?group_by=agent"),
        None,
        Some(&t_admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["groups"][0]["key"], "Alice agent", "{}", r.text);

    // Only the owner or an admin deletes.
    let alice_path = format!("{agents}/{}", alice.account());
    let r = call_as(Method::DELETE, alice_path.clone(), None, Some(&t_bob)).await;
    assert_eq!(refusal(&r).0, 403, "{}", r.text);
    let r = call_as(Method::DELETE, alice_path.clone(), None, None).await;
    assert_eq!(refusal(&r).0, 401, "{}", r.text);
    let r = call_as(Method::DELETE, alice_path.clone(), None, Some(&t_admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call_as(Method::GET, alice_path, None, None).await;
    assert_eq!(refusal(&r).0, 404, "{}", r.text);
}

// Multi-threaded: the CLI blocks this thread while the child gateway answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_signs_registers_lists_shows_verifies_and_deletes() {
    use crate::auth::cli;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (ok, keys, err) = cli(&home, &["keygen"]);
    assert!(ok, "{err}");
    let account_of = |prefix: &str| {
        keys.lines()
            .find_map(|l| {
                l.split_whitespace()
                    .last()
                    .filter(|a| a.starts_with(prefix))
            })
            .unwrap()
            .to_owned()
    };
    let (sol, evm) = (account_of("solana:"), account_of("eip155:"));
    let file = dir.path().join("card.json");
    std::fs::write(&file, card("CLI agent", "cli").to_string()).unwrap();
    let file_s = file.to_str().unwrap();

    // Unsigned: verify says why, with the field, and fails.
    let (ok, out, _) = cli(&home, &["agent", "verify", file_s]);
    assert!(!ok, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["valid"].clone(), v["field"].clone()),
        (json!(false), json!("signatures"))
    );

    // --dry-run prints the signed card, which verifies offline; a tampered copy does not.
    let (ok, signed, err) = cli(&home, &["agent", "register", file_s, "--dry-run"]);
    assert!(ok, "{err}");
    let signed_file = dir.path().join("signed.json");
    std::fs::write(&signed_file, &signed).unwrap();
    let (ok, out, _) = cli(&home, &["agent", "verify", signed_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["account"], sol);
    let mut tampered: Value = serde_json::from_str(&signed).unwrap();
    tampered["name"] = json!("Someone else");
    std::fs::write(&signed_file, tampered.to_string()).unwrap();
    let (ok, out, _) = cli(&home, &["agent", "verify", signed_file.to_str().unwrap()]);
    assert!(!ok && out.contains("invalid_signature"), "{out}");

    // Against a running gateway with auth on (the key store's accounts may call).
    let cfg = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &cfg,
        "models: {}\nauth:\n  mode: on\ndatabase:\n  url: memory://\n",
    )
    .unwrap();
    let home_s = home.to_str().unwrap().to_owned();
    let gw = ChildGateway::spawn_with_env(&cfg, dir.path(), &[("BITROUTER_HOME", &home_s)]);
    let url = gw.url("");
    let (ok, out, err) = cli(&home, &["agent", "register", file_s, "--url", &url]);
    assert!(ok, "{err}\n{}", gw.log());
    assert!(out.contains("\"verified\": true"), "{out}");
    let (ok, _, err) = cli(
        &home,
        &["agent", "register", file_s, "--chain", "evm", "--url", &url],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cli(
        &home,
        &["agent", "list", "--url", &url, "--chain", "eip155"],
    );
    assert!(ok, "{err}");
    assert!(out.contains(&evm) && !out.contains(&sol), "{out}");
    let (ok, out, err) = cli(&home, &["agent", "show", &sol, "--url", &url]);
    assert!(ok && out.contains("CLI agent"), "{out}{err}");
    let (ok, _, err) = cli(&home, &["agent", "delete", &sol, "--url", &url]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&home, &["agent", "show", &sol, "--url", &url]);
    assert!(!ok && err.contains("404"), "{err}");
    // Bad input: a missing file, a file that is not JSON, a malformed CAIP-10 id.
    let (ok, _, err) = cli(&home, &["agent", "verify", "/nonexistent/card.json"]);
    assert!(
        !ok && err.contains("reading /nonexistent/card.json"),
        "{err}"
    );
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{not json").unwrap();
    let (ok, out, _) = cli(&home, &["agent", "verify", junk.to_str().unwrap()]);
    assert!(!ok && out.contains("invalid_json"), "{out}");
    let (ok, _, err) = cli(
        &home,
        &["agent", "register", junk.to_str().unwrap(), "--url", &url],
    );
    assert!(!ok && err.contains("not JSON"), "{err}");
    let (ok, _, err) = cli(&home, &["agent", "show", "solana:nope", "--url", &url]);
    assert!(
        !ok && err.contains("400") && err.contains("account"),
        "{err}"
    );
    // Without a key store there is no token to write with.
    let (ok, _, err) = cli(
        &dir.path().join("nobody"),
        &["agent", "register", file_s, "--url", &url],
    );
    assert!(!ok && err.contains("key"), "{err}");
}

//! A2A agent cards over real HTTP: cards signed here by independent wallets (ed25519-dalek,
//! k256 + keccak directly), registered, listed, shown and deleted for both chains; every
//! rejection of the issue; update semantics; persistence across a restart (redb, child
//! process) and on the real PostgreSQL and MariaDB servers, where a row altered behind the
//! gateway's back is served with `verified: false`.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use sha3::Digest;
use sqlx::Connection;

use crate::child::ChildGateway;
use crate::harness::{Reply, TestGateway, client};

const SOL_REF: &str = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A wallet that can sign a card's detached JWS; independent of the gateway's code.
enum Wallet {
    Sol(ed25519_dalek::SigningKey),
    Evm(k256::ecdsa::SigningKey),
}

impl Wallet {
    fn sol(seed: u8) -> Wallet {
        Wallet::Sol(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }
    fn evm(seed: u8) -> Wallet {
        Wallet::Evm(k256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }
    fn account(&self) -> String {
        match self {
            Wallet::Sol(k) => format!(
                "solana:{SOL_REF}:{}",
                bs58::encode(k.verifying_key().as_bytes()).into_string()
            ),
            Wallet::Evm(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                let h = sha3::Keccak256::digest(&point.as_bytes()[1..]);
                let hex: String = h[12..].iter().map(|x| format!("{x:02x}")).collect();
                format!("eip155:1:0x{hex}")
            }
        }
    }
    fn alg(&self) -> &'static str {
        match self {
            Wallet::Sol(_) => "SOL_EDDSA",
            Wallet::Evm(_) => "EIP191K",
        }
    }
    fn raw_sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Wallet::Sol(k) => k.sign(input).to_bytes().to_vec(),
            Wallet::Evm(k) => {
                let mut h = sha3::Keccak256::new();
                h.update(format!("\x19Ethereum Signed Message:\n{}", input.len()).as_bytes());
                h.update(input);
                let (sig, rid) = k.sign_prehash_recoverable(&h.finalize()).unwrap();
                let mut out = sig.to_bytes().to_vec();
                out.push(27 + rid.to_byte());
                out
            }
        }
    }
    /// Signs `card` claiming to be `kid` (normally its own account).
    fn sign_as(&self, card: &Value, kid: &str) -> Value {
        let protected = b64(json!({"alg": self.alg(), "kid": kid, "typ": "JOSE"})
            .to_string()
            .as_bytes());
        let mut unsigned = card.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        let payload = b64(&serde_jcs::to_vec(&unsigned).unwrap());
        let sig = self.raw_sign(format!("{protected}.{payload}").as_bytes());
        let mut out = card.clone();
        out["signatures"] = json!([{"protected": protected, "signature": b64(&sig)}]);
        out
    }
    fn sign(&self, card: &Value) -> Value {
        self.sign_as(card, &self.account())
    }
}

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
    let mut req = client().request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.expect("request to the gateway failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Reply {
        status,
        headers,
        text: resp.text().await.unwrap(),
    }
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

    let r = register(&b, &sol.sign(&card("Researcher", "research"))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    assert_eq!(v["account"], sol.account());
    assert_eq!(v["chain"], format!("solana:{SOL_REF}"));
    assert_eq!(v["verified"], true);
    let created = v["created_at"].as_i64().unwrap();

    let r = register(&b, &evm.sign(&card("Trader", "finance"))).await;
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
        evm.sign(&card("Trader", "finance")),
        "the card as signed"
    );

    // Registering again replaces the card and keeps its creation time.
    let r = register(&b, &sol.sign(&card("Researcher 2", "papers"))).await;
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
        let forged = signer.sign_as(&card("Fake", "x"), &victim.account());
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
    let mut tampered = alice.sign(&card("Honest", "x"));
    tampered["description"] = json!("now evil");
    let r = register(&b, &tampered).await;
    assert_eq!(refusal(&r).2, "invalid_signature");
    let mut tampered = evm_alice.sign(&card("Honest", "x"));
    tampered["skills"][0]["tags"] = json!(["other"]);
    assert_eq!(
        refusal(&register(&b, &tampered).await).2,
        "invalid_signature"
    );
    // The right key with the other chain's algorithm.
    let mut wrong_alg = alice.sign(&card("A", "x"));
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
    let r = register(&b, &alice.sign_as(&card("A", "x"), "solana:abc")).await;
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
    let r = register(&b, &alice.sign(&c)).await;
    assert_eq!(
        refusal(&r),
        (400, "skills[0].tags".into(), "invalid_agent_card".into())
    );
    let mut c = card("A", "x");
    c.as_object_mut().unwrap().remove("protocolVersion");
    assert_eq!(
        refusal(&register(&b, &alice.sign(&c)).await).1,
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
    let r = register(&b, &alice.sign(&big)).await;
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
    assert_eq!(register(&b, &alice.sign(&fits)).await.status, 201);
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
    assert_eq!(register(&b, &sol.sign(&card("Sol", "a"))).await.status, 201);
    assert_eq!(register(&b, &evm.sign(&card("Evm", "b"))).await.status, 201);
    assert_eq!(
        register(&b, &evm.sign(&card("Evm v2", "b"))).await.status,
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
        assert_eq!(register(&b, &sol.sign(&card("Sol", "a"))).await.status, 201);
        assert_eq!(register(&b, &evm.sign(&card("Evm", "b"))).await.status, 201);
        let r = register(&b, &sol.sign(&card("Sol v2", "a"))).await;
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

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:x}_{:x}", std::process::id(), fastrand::u64(..))
}

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

#[tokio::test]
async fn postgres_cards() {
    let url = std::env::var("BITROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = unique("bitrouter_cards");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} is unreachable ({e}); set BITROUTER_TEST_POSTGRES_URL")
    });
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    exercise_sql(&scoped, async |account: &str| {
        let mut c = sqlx::PgConnection::connect(&scoped).await.unwrap();
        let n = sqlx::query(&format!("{TAMPER}$1"))
            .bind(account)
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(n.rows_affected(), 1);
    })
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn mysql_cards() {
    let url = std::env::var("BITROUTER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let name = unique("bitrouter_cards");
    let mut admin = sqlx::MySqlConnection::connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("MySQL/MariaDB at {url} is unreachable ({e}); set BITROUTER_TEST_MYSQL_URL")
        });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
    let db_url = format!("{base}/{name}");
    exercise_sql(&db_url, async |account: &str| {
        let mut c = sqlx::MySqlConnection::connect(&db_url).await.unwrap();
        let n = sqlx::query(&format!("{TAMPER}?"))
            .bind(account)
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(n.rows_affected(), 1);
    })
    .await;
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
}

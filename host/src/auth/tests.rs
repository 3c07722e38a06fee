//! Authenticator unit tests: both wallet algorithms end to end through `authenticate`, the
//! allowlists, expiry and the cache.

use super::*;
use crate::config;
use serde_json::json;

fn config(accounts: &[&str], admins: &[&str]) -> config::Auth {
    config::Auth {
        mode: Some(config::AuthMode::On),
        accounts: Some(accounts.iter().map(|s| s.to_string()).collect()),
        admins: Some(admins.iter().map(|s| s.to_string()).collect()),
        clock_skew: Duration::from_secs(0),
        max_admin_token_lifetime: Duration::from_secs(24 * 3600),
        max_token_bytes: 4096,
        operator_keys: Vec::new(),
    }
}

fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn both_chains_verify_and_repeat_tokens_come_from_the_cache() {
    let ks = keystore::KeyStore::from_seed([5u8; 32]);
    let auth = Authenticator::new(&config(&["solana:*", "eip155:*"], &[]), &[]).unwrap();
    for ns in [Namespace::Solana, Namespace::Eip155] {
        let token = ks
            .mint(
                ns,
                claims(json!({"models": ["openai:*"], "jti": "s1", "bgt": 5})),
            )
            .unwrap();
        let first = auth.authenticate(&token).unwrap();
        assert_eq!(first.caller.account, ks.account(ns));
        assert_eq!(first.caller.session, "s1");
        assert_eq!(first.caller.budget.unwrap().limit_micro_usd, 5);
        assert!(first.allows_model("openai:gpt-4o") && !first.allows_model("fast"));
        let again = auth.authenticate(&token).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }
}

#[test]
fn refusals_are_typed() {
    let ks = keystore::KeyStore::from_seed([6u8; 32]);
    let sol = ks.solana_account();
    let auth = Authenticator::new(&config(&[&sol], &[]), &[]).unwrap();
    let mint = |c: serde_json::Value| ks.mint(Namespace::Solana, claims(c)).unwrap();

    let expired = mint(json!({"exp": 1000}));
    assert!(matches!(
        auth.authenticate(&expired),
        Err(AuthError::Expired { exp: 1000, .. })
    ));
    let admin_forever = mint(json!({"scope": "admin"}));
    assert!(matches!(
        auth.authenticate(&admin_forever),
        Err(AuthError::BadClaim(_))
    ));
    let admin = mint(json!({"scope": "admin", "exp": now_secs() + 60}));
    let e = auth.authenticate(&admin).unwrap_err();
    assert!(matches!(e, AuthError::NotAdmin(_)) && e.is_forbidden());
    let evm = ks.mint(Namespace::Eip155, claims(json!({}))).unwrap();
    assert!(matches!(
        auth.authenticate(&evm),
        Err(AuthError::AccountNotAllowed(_))
    ));

    // Re-sign the payload under the wrong alg, alg none, and with a foreign chain claim.
    let ok = mint(json!({}));
    let parts: Vec<&str> = ok.split('.').collect();
    let with_header = |h: serde_json::Value| {
        format!(
            "{}.{}.{}",
            jwt::b64(h.to_string().as_bytes()),
            parts[1],
            parts[2]
        )
    };
    assert!(matches!(
        auth.authenticate(&with_header(json!({"alg": "EIP191K"}))),
        Err(AuthError::AlgMismatch { .. })
    ));
    assert!(matches!(
        auth.authenticate(&with_header(json!({"alg": "none"}))),
        Err(AuthError::AlgNone)
    ));
    assert!(matches!(
        auth.authenticate(&with_header(json!({"alg": "HS256"}))),
        Err(AuthError::UnknownAlg(_))
    ));
    // `mint` writes the right chain; build this payload by hand to carry a foreign one.
    let payload = json!({"iss": sol, "chain": "solana:other"});
    let input = jwt::signing_input(&json!({"alg": "SOL_EDDSA"}), &payload);
    let sig = solana::sign(&[6u8; 32], input.as_bytes());
    let token = format!("{input}.{}", jwt::b64(&sig));
    assert!(matches!(
        auth.authenticate(&token),
        Err(AuthError::ChainMismatch { .. })
    ));
    let big = "a".repeat(5000);
    assert!(matches!(
        auth.authenticate(&big),
        Err(AuthError::TooLarge(5000, 4096))
    ));
}

#[test]
fn cli_value_parsers() {
    assert_eq!(parse_budget("2.5usd"), Ok(2_500_000));
    assert_eq!(parse_budget("$1"), Ok(1_000_000));
    assert_eq!(parse_budget("42"), Ok(42));
    assert!(parse_budget("lots").is_err());
    assert_eq!(parse_exp("never"), Ok(None));
    assert_eq!(parse_exp("1h"), Ok(Some(Duration::from_secs(3600))));
    assert_eq!(
        parse_range("rounds:10"),
        Ok(crate::caller::BudgetWindow::Rounds(10))
    );
    assert_eq!(
        parse_range("duration:1h"),
        Ok(crate::caller::BudgetWindow::Duration(Duration::from_secs(
            3600
        )))
    );
    assert!(parse_range("rounds:0").is_err());
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b}\n-----END {label}-----\n")
}

#[test]
fn operator_eddsa_tokens_verify_with_the_configured_key_only() {
    let seed = [11u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").unwrap();
    pkcs8.extend_from_slice(&seed);
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(public.as_bytes());
    let mut cfg = config(&[], &[]);
    cfg.operator_keys.push(config::OperatorKey {
        alg: config::OperatorAlg::EdDSA,
        pem: pem("PUBLIC KEY", &spki),
        issuer: Some("ops".into()),
    });
    let auth = Authenticator::new(&cfg, &[]).unwrap();
    let key =
        jsonwebtoken::EncodingKey::from_ed_pem(pem("PRIVATE KEY", &pkcs8).as_bytes()).unwrap();
    let sign = |c: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &c,
            &key,
        )
        .unwrap()
    };
    let v = auth
        .authenticate(&sign(
            json!({"iss": "ops", "sub": "team-a", "scope": "admin", "exp": now_secs() + 60}),
        ))
        .unwrap();
    assert!(v.operator);
    assert_eq!(v.caller.account, "team-a");
    assert_eq!(v.caller.scope, Scope::Admin);
    // Wrong issuer, and a key the config does not hold.
    assert!(matches!(
        auth.authenticate(&sign(json!({"iss": "other", "sub": "x"}))),
        Err(AuthError::BadSignature(_))
    ));
    let mut other = hex::decode("302e020100300506032b657004220420").unwrap();
    other.extend_from_slice(&[12u8; 32]);
    let other =
        jsonwebtoken::EncodingKey::from_ed_pem(pem("PRIVATE KEY", &other).as_bytes()).unwrap();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &json!({"iss": "ops", "sub": "x"}),
        &other,
    )
    .unwrap();
    assert!(matches!(
        auth.authenticate(&forged),
        Err(AuthError::BadSignature(_))
    ));
    // ES256 with no ES256 key configured is an unknown algorithm here.
    let parts: Vec<&str> = forged.split('.').collect();
    let es = format!(
        "{}.{}.{}",
        jwt::b64(br#"{"alg":"ES256"}"#),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        auth.authenticate(&es),
        Err(AuthError::UnknownAlg(_))
    ));
}

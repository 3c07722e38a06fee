//! Token verification cost per request: a cold verify (decode, claims, signature, allowlist)
//! for SOL_EDDSA (Ed25519) and EIP191K (secp256k1 recovery + keccak), and a repeat request
//! served from the verified-token cache (hash + map lookup + expiry check).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use bitrouter::auth::caip10::Namespace;
use bitrouter::auth::keystore::KeyStore;
use bitrouter::auth::{Authenticator, now_secs};
use bitrouter::config::{Auth, AuthMode};

fn authenticator() -> Authenticator {
    let cfg = Auth {
        mode: Some(AuthMode::On),
        accounts: Some(vec!["solana:*".into(), "eip155:*".into()]),
        admins: Some(Vec::new()),
        clock_skew: Duration::from_secs(30),
        max_admin_token_lifetime: Duration::from_secs(24 * 3600),
        max_token_bytes: 8192,
        operator_keys: Vec::new(),
    };
    Authenticator::new(&cfg, &[]).expect("auth config")
}

fn token(ks: &KeyStore, ns: Namespace) -> String {
    let claims = serde_json::json!({"exp": now_secs() + 3600, "models": ["openai:*", "fast"], "budget": 2500000, "budget_scope": "session"});
    ks.mint(ns, claims.as_object().unwrap().clone()).unwrap()
}

fn verify(c: &mut Criterion) {
    let ks = KeyStore::from_seed([7u8; 32]);
    let auth = authenticator();
    let hash = [0u8; 32];
    let mut g = c.benchmark_group("auth");
    for (name, ns) in [
        ("sol_eddsa", Namespace::Solana),
        ("eip191k", Namespace::Eip155),
    ] {
        let t = token(&ks, ns);
        g.bench_function(format!("verify_cold_{name}"), |b| {
            b.iter(|| auth.verify(black_box(&t), &hash, now_secs()).unwrap());
        });
    }
    let t = token(&ks, Namespace::Eip155);
    auth.authenticate(&t).unwrap();
    g.bench_function("verify_cached", |b| {
        b.iter(|| auth.authenticate(black_box(&t)).unwrap());
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);

//! The token path of every authenticated request, on arbitrary text: splitting, base64url,
//! JSON, algorithm dispatch, signature checks and claims. Nothing may panic, and nothing
//! arbitrary may verify.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bitrouter::auth::Authenticator;
use bitrouter::config::{Auth, AuthMode};
use libfuzzer_sys::fuzz_target;

fn authenticator() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| {
        let cfg = Auth {
            mode: Some(AuthMode::On),
            accounts: Some(vec!["solana:*".into(), "eip155:*".into()]),
            admins: Some(vec!["solana:*".into()]),
            clock_skew: Duration::from_secs(30),
            max_admin_token_lifetime: Duration::from_secs(24 * 3600),
            max_token_bytes: 8192,
            operator_keys: Vec::new(),
        };
        Authenticator::new(&cfg, &[]).expect("auth config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = authenticator().authenticate(token) {
        panic!("an arbitrary token verified: {v:?}");
    }
    let _ = bitrouter::auth::jwt::decode(token);
});

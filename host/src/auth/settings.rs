//! The `auth:` section as the config resolves it (`crate::config` reads and checks it; the
//! types live here so that `auth` needs nothing from `config`).

use std::time::Duration;

/// `auth:`: who may call the gateway, as the config resolved it.
#[derive(Clone, Debug)]
pub struct Auth {
    /// `None`: on when listening on a non-loopback address, off on loopback.
    pub mode: Option<AuthMode>,
    /// CAIP-10 globs allowed to use the API; `None`: the local key store's accounts.
    pub accounts: Option<Vec<String>>,
    /// CAIP-10 globs whose admin tokens are honoured; `None`: the local key store's accounts.
    pub admins: Option<Vec<String>>,
    /// `auth.clock_skew`: leeway allowed on token `exp`/`nbf`/`iat` checks (default 30 s).
    pub clock_skew: Duration,
    /// The longest an admin token may still have to live (default 24 h).
    pub max_admin_token_lifetime: Duration,
    /// `auth.max_token_size`: the longest bearer token accepted, in bytes (default 8 KiB).
    pub max_token_bytes: usize,
    /// `auth.operator_keys`: keys whose operator JWTs are accepted.
    pub operator_keys: Vec<OperatorKey>,
}

/// `auth.mode`: whether requests need a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No token needed.
    Off,
    /// Every API request needs a token.
    On,
}

/// The signature algorithm of an operator key (`alg` in `auth.operator_keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum OperatorAlg {
    /// Ed25519.
    EdDSA,
    /// ECDSA over P-256 with SHA-256.
    ES256,
}

/// A public key that signs operator tokens.
#[derive(Clone, Debug)]
pub struct OperatorKey {
    /// The algorithm the key signs with.
    pub alg: OperatorAlg,
    /// The public key, PEM text (from `public_key` or `public_key_file`).
    pub pem: String,
    /// If set, the `iss` a token signed by this key must carry.
    pub issuer: Option<String>,
}

//! The auth stage: wallet-signed JWTs (SOL_EDDSA, EIP191K) and operator-signed JWTs
//! (EdDSA, ES256) turned into a `Caller`, with the config's account allowlists applied and
//! successful verifications cached by token hash until they expire.

pub mod caip10;
pub mod claims;
pub mod evm;
pub mod globs;
pub mod jwt;
pub mod keystore;
pub mod operator;
pub mod settings;
pub mod solana;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::caller::{Caller, Scope};
use caip10::{Account, Namespace};
use claims::Claims;
pub use globs::{AccountPatterns, ModelAllowlist};
use operator::OperatorKeys;

/// Why a token was refused. `status` tells 401 (no valid token) from 403 (valid, not allowed).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carries no token.
    #[error("missing credentials: send `Authorization: Bearer <token>` or `x-api-key: <token>`")]
    Missing,
    /// The token is longer than `auth.max_token_size`: its length and the limit, in bytes.
    #[error("the token is {0} bytes, above the limit of {1} bytes")]
    TooLarge(usize, usize),
    /// The token is not three dot-separated segments; the count found.
    #[error("a token is three base64url segments separated by dots; found {0}")]
    Segments(usize),
    /// A segment is not base64url JSON, or the header has no `alg`.
    #[error("malformed token: {0}")]
    BadEncoding(String),
    /// The header's `alg` is none of those accepted.
    #[error("unsupported token algorithm {0}; expected SOL_EDDSA, EIP191K, EdDSA or ES256")]
    UnknownAlg(String),
    /// `alg: none`: an unsigned token.
    #[error("unsigned tokens (alg \"none\") are refused")]
    AlgNone,
    /// A wallet algorithm signing for the other family's account.
    #[error(
        "alg {alg} cannot sign for a {namespace} account (SOL_EDDSA is for solana, EIP191K for eip155)"
    )]
    AlgMismatch {
        /// The token's `alg`.
        alg: String,
        /// The namespace of the `iss` account (`solana`, `eip155`).
        namespace: &'static str,
    },
    /// The `chain` claim is not the CAIP-2 chain of the `iss` account.
    #[error("the chain claim {chain:?} does not match the iss account's chain {expected:?}")]
    ChainMismatch {
        /// The `chain` claim as sent (empty when missing).
        chain: String,
        /// The `iss` account's CAIP-2 chain id.
        expected: String,
    },
    /// `iss` is not a CAIP-10 account the gateway can verify.
    #[error("malformed CAIP-10 account in iss: {0}")]
    MalformedAccount(String),
    /// The signature does not verify, or is malformed.
    #[error("invalid signature: {0}")]
    BadSignature(String),
    /// A claim has the wrong type or value (scope, models, budget, iat).
    #[error("invalid claim: {0}")]
    BadClaim(String),
    /// The token's `exp` has passed (allowing `auth.clock_skew`).
    #[error("the token expired at {exp} (Unix seconds; now {now})")]
    Expired {
        /// The token's `exp`, Unix seconds.
        exp: u64,
        /// The gateway's clock, Unix seconds.
        now: u64,
    },
    /// A valid api token whose account `auth.accounts` (or `auth.admins`) does not list.
    #[error("account {0} is not allowed to use this gateway (auth.accounts)")]
    AccountNotAllowed(String),
    /// A valid admin token whose account `auth.admins` does not list.
    #[error("account {0} is not an admin of this gateway (auth.admins)")]
    NotAdmin(String),
    /// An api-scoped token on an admin route; the route's path.
    #[error("{0} needs an admin token; this token's scope is api")]
    AdminRoute(String),
    /// The token's `models` claim does not allow the requested model.
    #[error("this token may not use model {model:?} (its models: {allowed})")]
    ModelNotAllowed {
        /// The model the request asked for.
        model: String,
        /// The token's `models` patterns, comma-separated.
        allowed: String,
    },
    /// The local key store cannot be created, read or parsed.
    #[error("key store: {0}")]
    KeyStore(String),
    /// Two different tokens in one request; which headers disagree.
    #[error("the request carries two different credentials ({0}); send one token, in one header")]
    Conflicting(&'static str),
    /// An admin token that lives longer than `auth.max_admin_token_lifetime`.
    #[error(
        "an admin token may live at most {max}s (auth.max_admin_token_lifetime); this one expires {left}s from now"
    )]
    AdminLifetime {
        /// `auth.max_admin_token_lifetime`, in seconds.
        max: u64,
        /// Seconds until the token's `exp`.
        left: u64,
    },
}

impl AuthError {
    /// 403 for a valid token that is not allowed; 401 for everything else.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            AuthError::AccountNotAllowed(_)
                | AuthError::NotAdmin(_)
                | AuthError::AdminRoute(_)
                | AuthError::ModelNotAllowed { .. }
        )
    }

    /// The gateway error this answers with: 403 `forbidden` or 401 `unauthorized`.
    pub fn to_error(&self) -> crate::error::Error {
        use crate::error::{Error, ErrorKind};
        let kind = if self.is_forbidden() {
            ErrorKind::Forbidden
        } else {
            ErrorKind::Unauthorized
        };
        Error::new(kind, self.to_string())
    }
}

/// The cache key and default session id source.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The current time in Unix seconds (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A verified token: who, what they may do, and until when.
#[derive(Debug)]
pub struct Verified {
    /// Who the token speaks for, as the request's caller.
    pub caller: Arc<Caller>,
    /// The `models` claim compiled; `None`: every model.
    pub models: Option<ModelAllowlist>,
    /// The token's `exp`, Unix seconds; `None`: it never expires.
    pub exp: Option<u64>,
    /// Signed by an operator key rather than a wallet.
    pub operator: bool,
}

impl Verified {
    /// Whether the token's `models` claim lets it call `model` (a route name or
    /// `provider:model_id`).
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.allows(model))
    }

    /// [`Verified::allows_model`], as an error that names the allowed patterns.
    pub fn check_model(&self, model: &str) -> Result<(), AuthError> {
        if self.allows_model(model) {
            return Ok(());
        }
        Err(AuthError::ModelNotAllowed {
            model: model.to_owned(),
            allowed: self
                .models
                .as_ref()
                .map(|m| m.patterns.join(", "))
                .unwrap_or_default(),
        })
    }
}

/// The token of a request: `Authorization: Bearer …`, `x-api-key` or `x-goog-api-key`
/// (where the Gemini SDKs put their key). The same token in several of them is fine; two
/// different ones are refused rather than one silently chosen, and so is a header sent
/// twice with different values.
pub fn token_from_headers(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut found: Option<&str> = None;
    let bearer = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let v = v.trim();
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        });
    let keys = ["x-api-key", "x-goog-api-key"].into_iter().flat_map(|h| {
        headers
            .get_all(h)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
    });
    for t in bearer.chain(keys).filter(|t| !t.is_empty()) {
        match found {
            Some(f) if f != t => {
                return Err(AuthError::Conflicting(
                    "Authorization, x-api-key and x-goog-api-key must carry the same token",
                ));
            }
            _ => found = Some(t),
        }
    }
    Ok(found)
}

const CACHE_CAPACITY: usize = 65_536;

/// Verifies tokens against one gateway's auth config.
pub struct Authenticator {
    accounts: AccountPatterns,
    admins: AccountPatterns,
    skew: u64,
    /// Seconds an admin token may still have to live when it is presented.
    max_admin_lifetime: u64,
    max_token_bytes: usize,
    operators: OperatorKeys,
    cache: RwLock<HashMap<[u8; 32], Arc<Verified>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("accounts", &self.accounts.patterns)
            .field("admins", &self.admins.patterns)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `local` is the key store's accounts: the default of both `accounts` and `admins`.
    pub fn new(auth: &settings::Auth, local: &[String]) -> Result<Authenticator, String> {
        let accounts = auth.accounts.clone().unwrap_or_else(|| local.to_vec());
        let admins = auth.admins.clone().unwrap_or_else(|| local.to_vec());
        Ok(Authenticator {
            accounts: AccountPatterns::new(&accounts, "auth.accounts")?,
            admins: AccountPatterns::new(&admins, "auth.admins")?,
            skew: auth.clock_skew.as_secs(),
            max_admin_lifetime: auth.max_admin_token_lifetime.as_secs(),
            max_token_bytes: auth.max_token_bytes,
            operators: OperatorKeys::new(&auth.operator_keys)
                .map_err(|(i, m)| format!("auth.operator_keys[{i}]: {m}"))?,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The `auth.accounts` patterns in force (the key store's accounts when the config sets none).
    pub fn accounts(&self) -> &[String] {
        &self.accounts.patterns
    }

    /// Verifies `token`, from the cache when it was verified before and has not expired.
    pub fn authenticate(&self, token: &str) -> Result<Arc<Verified>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge(token.len(), self.max_token_bytes));
        }
        let hash = token_hash(token);
        let now = now_secs();
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned();
        if let Some(v) = cached
            && v.exp.is_none_or(|exp| now < exp.saturating_add(self.skew))
        {
            return Ok(v);
        }
        let verified = Arc::new(self.verify(token, &hash, now)?);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            let skew = self.skew;
            cache.retain(|_, v| v.exp.is_none_or(|exp| now < exp.saturating_add(skew)));
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(hash, verified.clone());
        Ok(verified)
    }

    /// The full check, no cache: signature, claims, expiry, account allowlists.
    pub fn verify(&self, token: &str, hash: &[u8; 32], now: u64) -> Result<Verified, AuthError> {
        let compact = jwt::decode(token)?;
        let (account, claims, operator) = match compact.alg.as_str() {
            "SOL_EDDSA" | "EIP191K" => {
                let claims = Claims::parse(&compact.payload)?;
                let iss = claims
                    .iss
                    .as_deref()
                    .ok_or_else(|| AuthError::MalformedAccount("the token has no iss".into()))?;
                let account = Account::parse(iss)?;
                let want = match account.namespace {
                    Namespace::Solana => "SOL_EDDSA",
                    Namespace::Eip155 => "EIP191K",
                };
                if compact.alg != want {
                    return Err(AuthError::AlgMismatch {
                        alg: compact.alg.clone(),
                        namespace: account.namespace.as_str(),
                    });
                }
                let expected = account.chain();
                if claims.chain.as_deref() != Some(expected.as_str()) {
                    return Err(AuthError::ChainMismatch {
                        chain: claims.chain.clone().unwrap_or_default(),
                        expected,
                    });
                }
                let address = account.address_bytes();
                let signed = compact.signed.as_bytes();
                match account.namespace {
                    Namespace::Solana => solana::verify(&address, signed, &compact.signature)?,
                    Namespace::Eip155 => evm::verify(&address, signed, &compact.signature)?,
                }
                (account.to_string(), claims, false)
            }
            "EdDSA" | "ES256" => {
                let alg = if compact.alg == "EdDSA" {
                    jsonwebtoken::Algorithm::EdDSA
                } else {
                    jsonwebtoken::Algorithm::ES256
                };
                let payload = self.operators.verify(token, alg)?;
                let claims = Claims::parse(&payload)?;
                let account = claims.sub.clone().or(claims.iss.clone()).ok_or_else(|| {
                    AuthError::BadClaim("an operator token needs sub or iss".into())
                })?;
                (account, claims, true)
            }
            a if a.eq_ignore_ascii_case("none") => return Err(AuthError::AlgNone),
            other => return Err(AuthError::UnknownAlg(format!("{other:?}"))),
        };
        if let Some(exp) = claims.exp
            && now >= exp.saturating_add(self.skew)
        {
            return Err(AuthError::Expired { exp, now });
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(self.skew))
        {
            return Err(AuthError::BadClaim("iat is in the future".into()));
        }
        match (claims.scope, claims.exp) {
            (Scope::Admin, None) => {
                return Err(AuthError::BadClaim("an admin token must have exp".into()));
            }
            // An admin token is the key to the whole gateway: a leaked one must not stay
            // good for years because its signer picked a far expiry.
            (Scope::Admin, Some(exp))
                if exp.saturating_sub(now) > self.max_admin_lifetime.saturating_add(self.skew) =>
            {
                return Err(AuthError::AdminLifetime {
                    max: self.max_admin_lifetime,
                    left: exp.saturating_sub(now),
                });
            }
            _ => {}
        }
        if !operator {
            let allowed = match claims.scope {
                Scope::Admin => self.admins.matches(&account),
                Scope::Api => self.accounts.matches(&account) || self.admins.matches(&account),
            };
            if !allowed {
                return Err(match claims.scope {
                    Scope::Admin => AuthError::NotAdmin(account),
                    Scope::Api => AuthError::AccountNotAllowed(account),
                });
            }
        }
        let models = claims
            .models
            .as_deref()
            .map(ModelAllowlist::new)
            .transpose()?;
        let session = claims
            .jti
            .clone()
            .unwrap_or_else(|| format!("tok_{}", hex::encode(&hash[..12])));
        Ok(Verified {
            caller: Arc::new(Caller {
                account,
                session,
                scope: claims.scope,
                models: claims.models.clone(),
                budget: claims.budget,
                rate: claims.rate,
            }),
            models,
            exp: claims.exp,
            operator,
        })
    }
}

/// Parses `30d`, `1h`, `never` (→ `None`) for `--exp`.
pub fn parse_exp(s: &str) -> Result<Option<Duration>, String> {
    if s == "never" {
        return Ok(None);
    }
    humantime::parse_duration(s)
        .map(Some)
        .map_err(|e| format!("expected a duration such as 30d or 1h, or never: {e}"))
}

/// Parses `2.5usd`, `$2.5` or a plain number of micro-USD for `--budget`.
pub fn parse_budget(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let usd = t
        .strip_suffix("usd")
        .or_else(|| t.strip_suffix("USD"))
        .or_else(|| t.strip_prefix('$'));
    match usd {
        Some(n) => {
            let v: f64 = n
                .trim()
                .parse()
                .map_err(|_| format!("expected 2.5usd, found {s:?}"))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("expected a non-negative amount, found {s:?}"));
            }
            Ok((v * 1_000_000.0).round() as u64)
        }
        None => t
            .parse()
            .map_err(|_| format!("expected 2.5usd or a whole number of micro-USD, found {s:?}")),
    }
}

/// Parses `rounds:10` or `duration:1h` for `--budget-range`.
pub fn parse_range(s: &str) -> Result<crate::caller::BudgetWindow, String> {
    use crate::caller::BudgetWindow;
    match s.split_once(':') {
        Some(("rounds", n)) => n
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(BudgetWindow::Rounds)
            .ok_or_else(|| format!("expected rounds:N with N above 0, found {s:?}")),
        Some(("duration", d)) => humantime::parse_duration(d)
            .ok()
            .filter(|d| d.as_secs() > 0)
            .map(BudgetWindow::Duration)
            .ok_or_else(|| format!("expected duration:1h (at least 1s), found {s:?}")),
        _ => Err(format!("expected rounds:N or duration:D, found {s:?}")),
    }
}

#[cfg(test)]
mod tests;

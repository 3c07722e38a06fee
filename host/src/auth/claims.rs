//! Token claims, long names and BitRouter 0.14's short aliases alike (`scp`, `mdl`, `bgt`,
//! `bsc`), turned into typed values: scope, model globs, budget claim, expiry.

use std::time::Duration;

use serde_json::Value;

use super::AuthError;
use crate::caller::{BudgetClaim, BudgetScope, BudgetWindow, RateClaim, Scope};

/// A token's claims, typed and validated (aliases resolved).
#[derive(Clone, Debug, PartialEq)]
pub struct Claims {
    /// `iss`: for wallet tokens, the signer's CAIP-10 account.
    pub iss: Option<String>,
    /// `sub`: for operator tokens, the caller's account (else `iss`).
    pub sub: Option<String>,
    /// `chain`: the CAIP-2 chain of `iss`; wallet tokens must carry it.
    pub chain: Option<String>,
    /// `iat`: when it was issued, Unix seconds.
    pub iat: Option<u64>,
    /// Unix seconds; `None`: never expires.
    pub exp: Option<u64>,
    /// `scope` (`scp`): `api` (default) or `admin`.
    pub scope: Scope,
    /// `models` (`mdl`): globs of the models the token may call; `None`: any.
    pub models: Option<Vec<String>>,
    /// `budget` (`bgt`) with its scope and range; `None`: no budget.
    pub budget: Option<BudgetClaim>,
    /// `rpm`, `tpm` and `rate_scope`; `None`: neither limit.
    pub rate: Option<RateClaim>,
    /// `jti`: the token's id, used as the session id when present.
    pub jti: Option<String>,
}

fn first<'a>(p: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| p.get(*n))
        .filter(|v| !v.is_null())
}

fn text(p: &Value, names: &[&str]) -> Result<Option<String>, AuthError> {
    match first(p, names) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::BadClaim(format!(
            "{} must be a string",
            names[0]
        ))),
    }
}

fn seconds(p: &Value, name: &str) -> Result<Option<u64>, AuthError> {
    match first(p, &[name]) {
        None => Ok(None),
        // Whole seconds only: a float (1e300, 1.5) would have to be rounded into a claim
        // the signer never made.
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            AuthError::BadClaim(format!("{name} must be whole Unix seconds (an integer)"))
        }),
    }
}

impl Claims {
    /// Reads the claims of a decoded payload, long names or 0.14 aliases.
    pub fn parse(p: &Value) -> Result<Claims, AuthError> {
        let scope = match text(p, &["scope", "scp"])?.as_deref() {
            None | Some("api") => Scope::Api,
            Some("admin" | "adm") => Scope::Admin,
            Some(other) => {
                return Err(AuthError::BadClaim(format!(
                    "scope must be admin or api, found {other:?}"
                )));
            }
        };
        let models = match first(p, &["models", "mdl"]) {
            None => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|m| m.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| AuthError::BadClaim("models must be strings".into()))?,
            ),
            Some(_) => return Err(AuthError::BadClaim("models must be a list of globs".into())),
        };
        Ok(Claims {
            iss: text(p, &["iss"])?,
            sub: text(p, &["sub"])?,
            chain: text(p, &["chain"])?,
            iat: seconds(p, "iat")?,
            exp: seconds(p, "exp")?,
            scope,
            models,
            budget: budget(p)?,
            rate: rate(p)?,
            jti: text(p, &["jti"])?,
        })
    }
}

/// `rpm` and `tpm` (whole numbers above 0) and `rate_scope` (`session`, the default, or
/// `account`).
fn rate(p: &Value) -> Result<Option<RateClaim>, AuthError> {
    let count = |name: &str| -> Result<Option<u64>, AuthError> {
        match first(p, &[name]) {
            None => Ok(None),
            Some(v) => v.as_u64().filter(|n| *n > 0).map(Some).ok_or_else(|| {
                AuthError::BadClaim(format!("{name} must be a whole number above 0"))
            }),
        }
    };
    let (requests, tokens) = (count("rpm")?, count("tpm")?);
    let per_account = match text(p, &["rate_scope"])?.as_deref() {
        None | Some("session") => false,
        Some("account") => true,
        Some(other) => {
            return Err(AuthError::BadClaim(format!(
                "rate_scope must be session or account, found {other:?}"
            )));
        }
    };
    if requests.is_none() && tokens.is_none() {
        return Ok(None);
    }
    Ok(Some(RateClaim {
        requests,
        tokens,
        per_account,
    }))
}

/// `budget` (micro-USD), `budget_scope` and `budget_range`, or their aliases.
fn budget(p: &Value) -> Result<Option<BudgetClaim>, AuthError> {
    let Some(limit) = first(p, &["budget", "bgt"]) else {
        return Ok(None);
    };
    let limit_micro_usd = limit
        .as_u64()
        .ok_or_else(|| AuthError::BadClaim("budget must be a whole number of micro-USD".into()))?;
    let scope = match text(p, &["budget_scope", "bsc"])?.as_deref() {
        None | Some("session" | "ses") => BudgetScope::Session,
        Some("account" | "act") => BudgetScope::Account,
        Some(other) => {
            return Err(AuthError::BadClaim(format!(
                "budget_scope must be session or account, found {other:?}"
            )));
        }
    };
    let window = match first(p, &["budget_range", "brg"]) {
        None => BudgetWindow::Lifetime,
        Some(r) => {
            let n = |k: &str| r.get(k).and_then(Value::as_u64).filter(|n| *n > 0);
            match r.get("type").and_then(Value::as_str) {
                Some("rounds") => BudgetWindow::Rounds(n("count").ok_or_else(|| {
                    AuthError::BadClaim("budget_range rounds needs a count above 0".into())
                })?),
                Some("duration") => {
                    BudgetWindow::Duration(Duration::from_secs(n("seconds").ok_or_else(|| {
                        AuthError::BadClaim("budget_range duration needs seconds above 0".into())
                    })?))
                }
                _ => {
                    return Err(AuthError::BadClaim(
                        "budget_range must be {\"type\":\"rounds\",\"count\":N} or {\"type\":\"duration\",\"seconds\":S}".into(),
                    ));
                }
            }
        }
    };
    Ok(Some(BudgetClaim {
        limit_micro_usd,
        scope,
        window,
    }))
}

/// The claims object `bitrouter token mint` writes (long names).
pub fn budget_json(b: &BudgetClaim) -> Vec<(&'static str, Value)> {
    let mut out = vec![
        ("budget", Value::from(b.limit_micro_usd)),
        (
            "budget_scope",
            Value::from(match b.scope {
                BudgetScope::Session => "session",
                BudgetScope::Account => "account",
            }),
        ),
    ];
    match b.window {
        BudgetWindow::Lifetime => {}
        BudgetWindow::Rounds(n) => out.push((
            "budget_range",
            serde_json::json!({"type": "rounds", "count": n}),
        )),
        BudgetWindow::Duration(d) => out.push((
            "budget_range",
            serde_json::json!({"type": "duration", "seconds": d.as_secs()}),
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_names_and_aliases_mean_the_same() {
        let long = Claims::parse(&json!({"iss": "a", "scope": "admin", "models": ["openai:*"], "budget": 2500000, "budget_scope": "account", "budget_range": {"type": "rounds", "count": 10}, "exp": 5})).unwrap();
        let short = Claims::parse(&json!({"iss": "a", "scp": "adm", "mdl": ["openai:*"], "bgt": 2500000, "bsc": "act", "budget_range": {"type": "rounds", "count": 10}, "exp": 5})).unwrap();
        assert_eq!(long, short);
        assert_eq!(long.scope, Scope::Admin);
        assert_eq!(
            long.budget,
            Some(BudgetClaim {
                limit_micro_usd: 2_500_000,
                scope: BudgetScope::Account,
                window: BudgetWindow::Rounds(10)
            })
        );
        let d = Claims::parse(
            &json!({"bgt": 1, "bsc": "ses", "budget_range": {"type": "duration", "seconds": 3600}}),
        )
        .unwrap();
        assert_eq!(
            d.budget.unwrap().window,
            BudgetWindow::Duration(Duration::from_secs(3600))
        );
        assert_eq!(d.budget.unwrap().scope, BudgetScope::Session);
        assert_eq!(d.scope, Scope::Api);
    }

    #[test]
    fn bad_claims_are_named() {
        for (p, what) in [
            (json!({"scope": "root"}), "scope"),
            (json!({"budget": -1}), "budget"),
            (json!({"budget": 1, "bsc": "x"}), "budget_scope"),
            (
                json!({"budget": 1, "budget_range": {"type": "rounds"}}),
                "rounds",
            ),
            (json!({"exp": "tomorrow"}), "exp"),
            (json!({"exp": 1e300}), "exp"),
            (json!({"exp": 1700000000.5}), "exp"),
            (json!({"exp": -5}), "exp"),
            (json!({"iat": 1.0}), "iat"),
            (json!({"models": 3}), "models"),
        ] {
            let e = Claims::parse(&p).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn minted_budget_claims_parse_back() {
        let b = BudgetClaim {
            limit_micro_usd: 7,
            scope: BudgetScope::Session,
            window: BudgetWindow::Duration(Duration::from_secs(60)),
        };
        let obj: serde_json::Map<String, Value> = budget_json(&b)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(Claims::parse(&Value::Object(obj)).unwrap().budget, Some(b));
    }

    #[test]
    fn rate_claims_narrow_per_session_or_account() {
        let c = Claims::parse(&json!({"iss": "a", "rpm": 60, "tpm": 100000})).unwrap();
        assert_eq!(
            c.rate,
            Some(RateClaim {
                requests: Some(60),
                tokens: Some(100_000),
                per_account: false
            })
        );
        let c = Claims::parse(&json!({"iss": "a", "rpm": 5, "rate_scope": "account"})).unwrap();
        assert!(c.rate.is_some_and(|r| r.per_account && r.tokens.is_none()));
        assert_eq!(Claims::parse(&json!({"iss": "a"})).unwrap().rate, None);
        for (p, what) in [
            (json!({"iss": "a", "rpm": 0}), "rpm must be"),
            (json!({"iss": "a", "tpm": -1}), "tpm must be"),
            (json!({"iss": "a", "rpm": 1.5}), "rpm must be"),
            (
                json!({"iss": "a", "rpm": 1, "rate_scope": "team"}),
                "rate_scope",
            ),
        ] {
            let e = Claims::parse(&p).unwrap_err().to_string();
            assert!(e.contains(what), "{p}: {e}");
        }
    }
}

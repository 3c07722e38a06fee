//! Detached JWS over an Agent Card, as A2A defines it: each `signatures[]` entry is
//! `{protected: b64url(header), signature: b64url(sig)}` and the signed bytes are
//! `protected + "." + b64url(JCS(card without "signatures"))` (RFC 8785 canonical JSON).
//! The algorithms and keys are the auth tokens' (`SOL_EDDSA`, `EIP191K`, `kid` = CAIP-10).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::auth::caip10::{Account, Namespace};
use crate::auth::{evm, solana};

/// Why a card's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SignatureError {
    /// JSON path of the offending entry (`signatures`, `signatures[1].protected`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(path: impl Into<String>, message: impl Into<String>) -> SignatureError {
    SignatureError {
        path: path.into(),
        message: message.into(),
    }
}

/// The JWS `alg` a card signature must use for an account of `ns`.
pub fn alg_for(ns: Namespace) -> &'static str {
    match ns {
        Namespace::Solana => "SOL_EDDSA",
        Namespace::Eip155 => "EIP191K",
    }
}

/// RFC 8785 canonical JSON of the card without its `signatures` member.
pub fn canonical_payload(card: &Value) -> Result<Vec<u8>, SignatureError> {
    let mut unsigned = card.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signatures");
    }
    serde_jcs::to_vec(&unsigned).map_err(|e| bad("", format!("cannot canonicalise: {e}")))
}

/// The bytes a signature with this protected header covers.
pub fn signing_input(protected_b64: &str, card: &Value) -> Result<String, SignatureError> {
    Ok(format!(
        "{protected_b64}.{}",
        URL_SAFE_NO_PAD.encode(canonical_payload(card)?)
    ))
}

/// The account a card is registered under: the `kid` of its first signature.
pub fn signer(card: &Value) -> Result<Account, SignatureError> {
    let sigs = signatures(card)?;
    let (header, _) = protected_header(&sigs[0], "signatures[0]")?;
    let kid = header.get("kid").and_then(Value::as_str).ok_or_else(|| {
        bad(
            "signatures[0].protected",
            "the header has no kid (the signer's CAIP-10 account)",
        )
    })?;
    Account::parse(kid).map_err(|e| bad("signatures[0].protected.kid", e.to_string()))
}

fn signatures(card: &Value) -> Result<&Vec<Value>, SignatureError> {
    match card.get("signatures").and_then(Value::as_array) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(bad(
            "signatures",
            "the card is unsigned: add a detached JWS by the account's key (`bitrouter agent register` signs it)",
        )),
    }
}

fn protected_header(sig: &Value, at: &str) -> Result<(Value, String), SignatureError> {
    let protected = sig
        .get("protected")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{at}.protected"), "is required (a string)"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(protected)
        .map_err(|_| bad(format!("{at}.protected"), "is not unpadded base64url"))?;
    let header: Value = serde_json::from_slice(&bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            bad(
                format!("{at}.protected"),
                "does not decode to a JSON object",
            )
        })?;
    Ok((header, protected.to_owned()))
}

/// Checks that the card carries a valid signature by `account`. Signatures by other kids
/// (co-signers) are ignored; at least one must be the account's and every one of the
/// account's must verify.
pub fn verify(card: &Value, account: &Account) -> Result<(), SignatureError> {
    let want = account.to_string();
    let mut found = false;
    for (i, sig) in signatures(card)?.iter().enumerate() {
        let at = format!("signatures[{i}]");
        let (header, protected) = protected_header(sig, &at)?;
        let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
        if Account::parse(kid).map(|a| a.to_string()).ok().as_deref() != Some(want.as_str()) {
            continue;
        }
        found = true;
        if header.get("crit").is_some() || header.get("b64").is_some() {
            return Err(bad(
                format!("{at}.protected"),
                "crit and b64 header parameters are not supported",
            ));
        }
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let expected = alg_for(account.namespace);
        if alg != expected {
            return Err(bad(
                format!("{at}.protected.alg"),
                format!(
                    "a {} account signs with {expected}, found {alg:?}",
                    account.namespace.as_str()
                ),
            ));
        }
        let signature = sig
            .get("signature")
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .ok_or_else(|| bad(format!("{at}.signature"), "is not unpadded base64url"))?;
        let input = signing_input(&protected, card)?;
        let address = account.address_bytes();
        let checked = match account.namespace {
            Namespace::Solana => solana::verify(&address, input.as_bytes(), &signature),
            Namespace::Eip155 => evm::verify(&address, input.as_bytes(), &signature),
        };
        checked.map_err(|e| {
            bad(
                format!("{at}.signature"),
                format!("does not verify for {want}: {e}"),
            )
        })?;
    }
    if !found {
        return Err(bad("signatures", format!("no signature has kid {want}")));
    }
    Ok(())
}

/// Adds (or replaces) `account`'s signature; `sign` gets the signing input's bytes.
pub fn sign<E>(
    card: &Value,
    account: &Account,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Value, SignatureError>
where
    E: std::fmt::Display,
{
    let kid = account.to_string();
    let header = json!({"alg": alg_for(account.namespace), "kid": kid, "typ": "JOSE"});
    let protected = URL_SAFE_NO_PAD.encode(header.to_string());
    let input = signing_input(&protected, card)?;
    let sig = sign(input.as_bytes()).map_err(|e| bad("signatures", e.to_string()))?;
    let mut out = card.clone();
    let obj = out
        .as_object_mut()
        .ok_or_else(|| bad("", "an agent card is a JSON object"))?;
    let mut sigs: Vec<Value> = obj
        .get("signatures")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Re-signing replaces the account's old signature, so the newest is the one that counts.
    sigs.retain(|s| {
        protected_header(s, "")
            .ok()
            .and_then(|(h, _)| h.get("kid").and_then(Value::as_str).map(str::to_owned))
            .and_then(|k| Account::parse(&k).ok())
            .map(|a| a.to_string())
            != Some(kid.clone())
    });
    sigs.insert(
        0,
        json!({"protected": protected, "signature": URL_SAFE_NO_PAD.encode(sig)}),
    );
    obj.insert("signatures".into(), Value::Array(sigs));
    Ok(out)
}

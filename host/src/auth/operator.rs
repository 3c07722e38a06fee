//! Operator-signed JWTs (EdDSA / ES256) for teams without wallets: the operator's public
//! keys come from `auth.operator_keys`, and the jsonwebtoken crate checks the signature.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::AuthError;
use super::settings::{OperatorAlg, OperatorKey};

/// The `auth.operator_keys` public keys, parsed, with each key's required issuer.
pub struct OperatorKeys {
    keys: Vec<(Algorithm, DecodingKey, Option<String>)>,
}

impl OperatorKeys {
    /// Errors are `(index, message)` so the config can name `auth.operator_keys[i]`.
    pub fn new(keys: &[OperatorKey]) -> Result<OperatorKeys, (usize, String)> {
        let mut out = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let (alg, key) = match k.alg {
                OperatorAlg::EdDSA => {
                    (Algorithm::EdDSA, DecodingKey::from_ed_pem(k.pem.as_bytes()))
                }
                OperatorAlg::ES256 => {
                    (Algorithm::ES256, DecodingKey::from_ec_pem(k.pem.as_bytes()))
                }
            };
            let key = key.map_err(|e| {
                (
                    i,
                    format!(
                        "expected a PEM public key (SubjectPublicKeyInfo) for {:?}: {e}",
                        k.alg
                    ),
                )
            })?;
            out.push((alg, key, k.issuer.clone()));
        }
        Ok(OperatorKeys { keys: out })
    }

    /// Whether no operator keys are configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The verified payload of an `EdDSA`/`ES256` token, trying each key of that algorithm.
    pub fn verify(&self, token: &str, alg: Algorithm) -> Result<serde_json::Value, AuthError> {
        let mut validation = Validation::new(alg);
        // Expiry, scope and the rest are checked with the wallet tokens' rules.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let mut tried = false;
        for (a, key, issuer) in &self.keys {
            if *a != alg {
                continue;
            }
            tried = true;
            if let Ok(data) = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
                if let Some(want) = issuer
                    && data.claims.get("iss").and_then(|v| v.as_str()) != Some(want.as_str())
                {
                    continue;
                }
                return Ok(data.claims);
            }
        }
        Err(if tried {
            AuthError::BadSignature(format!(
                "no configured {alg:?} operator key verifies this token"
            ))
        } else {
            AuthError::UnknownAlg(format!(
                "{alg:?} (no operator key of that algorithm in auth.operator_keys)"
            ))
        })
    }
}

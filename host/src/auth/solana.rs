//! `SOL_EDDSA`: Ed25519 over the signed bytes, verified with the base58 public key that the
//! token's `iss` names. Signing is here too, for `bitrouter token mint`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::AuthError;

/// Checks a `SOL_EDDSA` (Ed25519) `signature` over `signed` against a 32-byte public key.
pub fn verify(public_key: &[u8], signed: &[u8], signature: &[u8]) -> Result<(), AuthError> {
    let key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| AuthError::BadSignature("the Solana public key is not 32 bytes".into()))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| {
        AuthError::BadSignature("the Solana public key is not a curve point".into())
    })?;
    let sig = Signature::from_slice(signature).map_err(|_| {
        AuthError::BadSignature(format!(
            "a SOL_EDDSA signature is 64 bytes, found {}",
            signature.len()
        ))
    })?;
    key.verify_strict(signed, &sig)
        .map_err(|_| AuthError::BadSignature("the Ed25519 signature does not match iss".into()))
}

/// Signs `signed` with the Ed25519 key of `secret`: a 64-byte signature.
pub fn sign(secret: &[u8; 32], signed: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(secret).sign(signed).to_bytes()
}

/// The base58 public key of a secret.
pub fn address(secret: &[u8; 32]) -> String {
    bs58::encode(SigningKey::from_bytes(secret).verifying_key().as_bytes()).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_tampering() {
        let secret = [9u8; 32];
        let public = bs58::decode(address(&secret)).into_vec().unwrap();
        let sig = sign(&secret, b"hello");
        verify(&public, b"hello", &sig).unwrap();
        assert!(verify(&public, b"hellO", &sig).is_err());
        assert!(verify(&public, b"hello", &sig[..63]).is_err());
        let other = bs58::decode(address(&[8u8; 32])).into_vec().unwrap();
        assert!(verify(&other, b"hello", &sig).is_err());
    }
}

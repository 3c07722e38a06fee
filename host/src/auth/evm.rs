//! `EIP191K`: secp256k1 ECDSA over the EIP-191 personal-message hash of the signed bytes,
//! a 65-byte r‖s‖v signature; verified by recovering the signer's address and comparing it
//! with the one in `iss`.

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

use super::AuthError;

/// keccak256("\x19Ethereum Signed Message:\n" + len + message), what `personal_sign` signs.
pub fn personal_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(message.len().to_string().as_bytes());
    h.update(message);
    h.finalize().into()
}

/// The 20-byte address of a public key: the last 20 bytes of keccak256(x‖y).
pub fn key_address(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    let digest = Keccak256::digest(&point.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest[12..]);
    out
}

/// Recovers the signer's address from a 65-byte r‖s‖v signature (v is 27/28 or 0/1).
pub fn recover(signed: &[u8], signature: &[u8]) -> Result<[u8; 20], AuthError> {
    if signature.len() != 65 {
        return Err(AuthError::BadSignature(format!(
            "an EIP191K signature is 65 bytes (r‖s‖v), found {}",
            signature.len()
        )));
    }
    let v = match signature[64] {
        v @ (27 | 28) => v - 27,
        v @ (0 | 1) => v,
        v => {
            return Err(AuthError::BadSignature(format!(
                "the recovery byte v must be 27, 28, 0 or 1, found {v}"
            )));
        }
    };
    let sig = Signature::from_slice(&signature[..64])
        .map_err(|_| AuthError::BadSignature("r or s is out of range".into()))?;
    let rid = RecoveryId::from_byte(v)
        .ok_or_else(|| AuthError::BadSignature("bad recovery id".into()))?;
    let key =
        VerifyingKey::recover_from_prehash(&personal_hash(signed), &sig, rid).map_err(|_| {
            AuthError::BadSignature("no public key recovers from this signature".into())
        })?;
    Ok(key_address(&key))
}

/// Checks that an `EIP191K` `signature` over `signed` recovers to the 20-byte `address`.
pub fn verify(address: &[u8], signed: &[u8], signature: &[u8]) -> Result<(), AuthError> {
    let recovered = recover(signed, signature)?;
    if recovered.as_slice() != address {
        return Err(AuthError::BadSignature(format!(
            "the EIP-191 signature recovers 0x{}, not the iss address",
            hex::encode(recovered)
        )));
    }
    Ok(())
}

/// Signs like a wallet's `personal_sign`: r‖s‖v with v = 27 + recovery id.
pub fn sign(secret: &[u8; 32], signed: &[u8]) -> Result<[u8; 65], AuthError> {
    let key = SigningKey::from_slice(secret)
        .map_err(|_| AuthError::BadSignature("the secp256k1 secret is out of range".into()))?;
    let (sig, rid) = key
        .sign_prehash_recoverable(&personal_hash(signed))
        .map_err(|e| AuthError::BadSignature(format!("signing failed: {e}")))?;
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + rid.to_byte();
    Ok(out)
}

/// `0x` + lower-case hex address of a secret.
pub fn address(secret: &[u8; 32]) -> Result<String, AuthError> {
    let key = SigningKey::from_slice(secret)
        .map_err(|_| AuthError::BadSignature("the secp256k1 secret is out of range".into()))?;
    Ok(format!(
        "0x{}",
        hex::encode(key_address(key.verifying_key()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_address_and_personal_hash() {
        // The private key 1's address, a well-known constant.
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(
            address(&one).unwrap(),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
        // personal_sign("hello") hash, as every EVM library computes it.
        assert_eq!(
            hex::encode(personal_hash(b"hello")),
            "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750"
        );
    }

    #[test]
    fn sign_recover_and_reject() {
        let secret = [3u8; 32];
        let addr = hex::decode(&address(&secret).unwrap()[2..]).unwrap();
        let sig = sign(&secret, b"msg").unwrap();
        verify(&addr, b"msg", &sig).unwrap();
        assert!(verify(&addr, b"msh", &sig).is_err());
        let mut zero_one = sig;
        zero_one[64] -= 27;
        verify(&addr, b"msg", &zero_one).unwrap();
        let mut bad_v = sig;
        bad_v[64] = 5;
        assert!(verify(&addr, b"msg", &bad_v).is_err());
        assert!(verify(&addr, b"msg", &sig[..64]).is_err());
    }
}

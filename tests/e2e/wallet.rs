//! Test wallets, independent of the gateway's code (ed25519-dalek, k256 and keccak used
//! directly): they mint auth tokens and sign agent cards the way a Solana or EVM wallet would.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use sha3::Digest;

pub const SOL_REF: &str = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub enum Wallet {
    Sol(ed25519_dalek::SigningKey),
    Evm(k256::ecdsa::SigningKey),
}

impl Wallet {
    pub fn sol(seed: u8) -> Wallet {
        Wallet::Sol(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    pub fn evm(seed: u8) -> Wallet {
        Wallet::Evm(k256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    /// The EVM address (`0x` + 40 lower-case hex digits); the base58 key for Solana.
    pub fn address(&self) -> String {
        match self {
            Wallet::Sol(k) => bs58::encode(k.verifying_key().as_bytes()).into_string(),
            Wallet::Evm(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                let h = sha3::Keccak256::digest(&point.as_bytes()[1..]);
                format!("0x{}", hex_lower(&h[12..]))
            }
        }
    }

    pub fn chain(&self) -> String {
        match self {
            Wallet::Sol(_) => format!("solana:{SOL_REF}"),
            Wallet::Evm(_) => "eip155:1".to_owned(),
        }
    }

    pub fn account(&self) -> String {
        format!("{}:{}", self.chain(), self.address())
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Wallet::Sol(_) => "SOL_EDDSA",
            Wallet::Evm(_) => "EIP191K",
        }
    }

    /// Ed25519 over the bytes, or `personal_sign` (EIP-191, r‖s‖v).
    pub fn raw_sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Wallet::Sol(k) => k.sign(input).to_bytes().to_vec(),
            Wallet::Evm(k) => {
                let mut h = sha3::Keccak256::new();
                h.update(format!("\x19Ethereum Signed Message:\n{}", input.len()).as_bytes());
                h.update(input);
                let (sig, rid) = k.sign_prehash_recoverable(&h.finalize()).unwrap();
                let mut out = sig.to_bytes().to_vec();
                out.push(27 + rid.to_byte());
                out
            }
        }
    }

    /// A JWT with exactly this header and payload.
    pub fn sign_raw(&self, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let sig = self.raw_sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    /// A token for this wallet: `iss`, `chain`, `iat`, then `extra`'s claims.
    pub fn token(&self, extra: Value) -> String {
        let mut p = json!({"iss": self.account(), "chain": self.chain(), "iat": now()});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        self.sign_raw(&json!({"alg": self.alg(), "typ": "JWT"}), &p)
    }

    /// Signs `card` with a detached JWS claiming to be `kid` (normally its own account).
    pub fn sign_card_as(&self, card: &Value, kid: &str) -> Value {
        let protected = b64(json!({"alg": self.alg(), "kid": kid, "typ": "JOSE"})
            .to_string()
            .as_bytes());
        let mut unsigned = card.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        let payload = b64(&serde_jcs::to_vec(&unsigned).unwrap());
        let sig = self.raw_sign(format!("{protected}.{payload}").as_bytes());
        let mut out = card.clone();
        out["signatures"] = json!([{"protected": protected, "signature": b64(&sig)}]);
        out
    }

    pub fn sign_card(&self, card: &Value) -> Value {
        self.sign_card_as(card, &self.account())
    }
}

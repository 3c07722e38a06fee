//! CAIP-10 account ids (`namespace:reference:address`) for the two wallet families a token
//! may be signed by: `solana:<genesis ref>:<base58 pubkey>` and `eip155:<chain id>:0x<address>`.

use super::AuthError;

/// Mainnet's CAIP-2 reference (the first 32 characters of the genesis hash).
pub const SOLANA_MAINNET: &str = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";

/// The wallet families a token may be signed by (the CAIP-10 namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// `solana`: Ed25519 keys, `SOL_EDDSA` tokens.
    Solana,
    /// `eip155`: EVM secp256k1 keys, `EIP191K` tokens.
    Eip155,
}

impl Namespace {
    /// The namespace as CAIP-10 spells it (`solana`, `eip155`).
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Solana => "solana",
            Namespace::Eip155 => "eip155",
        }
    }
}

/// A parsed, validated CAIP-10 account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Which wallet family.
    pub namespace: Namespace,
    /// The CAIP-2 chain reference: Solana's genesis-hash prefix, or an EVM chain id.
    pub reference: String,
    /// Solana: the base58 public key as written. EVM: `0x` + 40 lower-case hex digits.
    pub address: String,
}

impl Account {
    /// Parses `iss`. EVM addresses are normalised to lower case (checksums are advisory).
    pub fn parse(s: &str) -> Result<Account, AuthError> {
        let bad = |why: &str| AuthError::MalformedAccount(format!("{s:?}: {why}"));
        let mut parts = s.splitn(3, ':');
        let (Some(ns), Some(reference), Some(address)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected namespace:reference:address"));
        };
        let ref_ok = !reference.is_empty()
            && reference.len() <= 32
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ref_ok {
            return Err(bad("the chain reference must be 1-32 of [-_a-zA-Z0-9]"));
        }
        match ns {
            "solana" => {
                let key = bs58::decode(address)
                    .into_vec()
                    .map_err(|_| bad("the address is not base58"))?;
                if key.len() != 32 {
                    return Err(bad("a Solana address is a 32-byte public key"));
                }
                Ok(Account {
                    namespace: Namespace::Solana,
                    reference: reference.to_owned(),
                    address: address.to_owned(),
                })
            }
            "eip155" => {
                if !reference.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("an eip155 chain reference is a decimal chain id"));
                }
                let hex_part = address
                    .strip_prefix("0x")
                    .or_else(|| address.strip_prefix("0X"))
                    .ok_or_else(|| bad("an EVM address starts with 0x"))?;
                if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("an EVM address is 0x and 40 hex digits"));
                }
                Ok(Account {
                    namespace: Namespace::Eip155,
                    reference: reference.to_owned(),
                    address: format!("0x{}", hex_part.to_ascii_lowercase()),
                })
            }
            other => Err(bad(&format!(
                "unsupported namespace {other:?} (expected solana or eip155)"
            ))),
        }
    }

    /// The CAIP-2 chain id (`namespace:reference`), what the `chain` claim must equal.
    pub fn chain(&self) -> String {
        format!("{}:{}", self.namespace.as_str(), self.reference)
    }

    /// The address bytes: the Ed25519 public key, or the 20-byte EVM address.
    pub fn address_bytes(&self) -> Vec<u8> {
        match self.namespace {
            Namespace::Solana => bs58::decode(&self.address).into_vec().unwrap_or_default(),
            Namespace::Eip155 => hex::decode(&self.address[2..]).unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.namespace.as_str(),
            self.reference,
            self.address
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_namespaces_and_normalises_evm_case() {
        let a = Account::parse("eip155:1:0xAbCdEf0123456789abcdef0123456789ABCDEF01").unwrap();
        assert_eq!(
            a.to_string(),
            "eip155:1:0xabcdef0123456789abcdef0123456789abcdef01"
        );
        assert_eq!(a.chain(), "eip155:1");
        let key = bs58::encode([7u8; 32]).into_string();
        let s = Account::parse(&format!("solana:{SOLANA_MAINNET}:{key}")).unwrap();
        assert_eq!(s.address_bytes(), vec![7u8; 32]);
        assert_eq!(s.chain(), format!("solana:{SOLANA_MAINNET}"));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "solana",
            "solana:abc",
            "solana::11111111111111111111111111111111",
            "solana:x:0OIl",
            "solana:x:3yZe7d",
            "eip155:one:0x0000000000000000000000000000000000000000",
            "eip155:1:0000000000000000000000000000000000000000",
            "eip155:1:0x00",
            "cosmos:hub:addr",
        ] {
            assert!(
                matches!(Account::parse(bad), Err(AuthError::MalformedAccount(_))),
                "{bad:?}"
            );
        }
    }
}

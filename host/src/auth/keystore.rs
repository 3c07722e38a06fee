//! The local wallet key store: one 32-byte secret under `<home>/keys/` (mode 0600) from
//! which both the Solana (Ed25519) and the EVM (secp256k1) key derive, and minting of
//! tokens signed by them.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::caip10::{Namespace, SOLANA_MAINNET};
use super::{AuthError, evm, jwt, solana};

const FILE: &str = "wallet.key";

/// The local wallet: one secret from which the Solana and EVM keys derive.
pub struct KeyStore {
    seed: [u8; 32],
    /// The key file it was read from (empty for [`KeyStore::from_seed`]).
    pub path: PathBuf,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `<home>/keys/wallet.key`.
pub fn key_path(home: &Path) -> PathBuf {
    home.join("keys").join(FILE)
}

impl KeyStore {
    /// A key store held only in memory, from a known seed (tests, tools).
    pub fn from_seed(seed: [u8; 32]) -> KeyStore {
        KeyStore {
            seed,
            path: PathBuf::new(),
        }
    }

    /// Creates a new key store; refuses to overwrite one.
    pub fn generate(home: &Path) -> Result<KeyStore, AuthError> {
        let path = key_path(home);
        let io = |what: &str, e: std::io::Error| {
            AuthError::KeyStore(format!("{what} {}: {e}", path.display()))
        };
        if path.exists() {
            return Err(AuthError::KeyStore(format!(
                "{} exists; refusing to overwrite a wallet key",
                path.display()
            )));
        }
        let dir = path.parent().unwrap_or(home);
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create the folder of", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(|e| io("cannot read /dev/urandom for", e))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&path).map_err(|e| io("cannot create", e))?;
        std::io::Write::write_all(&mut f, format!("{}\n", hex::encode(seed)).as_bytes())
            .map_err(|e| io("cannot write", e))?;
        Ok(KeyStore { seed, path })
    }

    /// Reads `<home>/keys/wallet.key` (64 hex digits).
    pub fn load(home: &Path) -> Result<KeyStore, AuthError> {
        let path = key_path(home);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            AuthError::KeyStore(format!(
                "cannot read {} ({e}); create it with `bitrouter keygen`",
                path.display()
            ))
        })?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                AuthError::KeyStore(format!("{}: expected 64 hex digits", path.display()))
            })?;
        Ok(KeyStore { seed, path })
    }

    fn evm_secret(&self) -> [u8; 32] {
        // Hash with a counter until the value is a valid secp256k1 scalar (all but ~2^-128
        // of values are; the loop is for correctness, not expected to turn twice).
        let mut counter = 0u32;
        loop {
            let mut h = Sha256::new();
            h.update(b"bitrouter/evm-secp256k1/v1");
            h.update(self.seed);
            h.update(counter.to_be_bytes());
            let s: [u8; 32] = h.finalize().into();
            if evm::address(&s).is_ok() {
                return s;
            }
            counter += 1;
        }
    }

    /// `solana:<mainnet>:<base58 pubkey>`.
    pub fn solana_account(&self) -> String {
        format!("solana:{SOLANA_MAINNET}:{}", solana::address(&self.seed))
    }

    /// `eip155:1:0x<address>`.
    pub fn evm_account(&self) -> String {
        let addr = evm::address(&self.evm_secret()).unwrap_or_default();
        format!("eip155:1:{addr}")
    }

    /// The CAIP-10 account of the chosen chain's key.
    pub fn account(&self, ns: Namespace) -> String {
        match ns {
            Namespace::Solana => self.solana_account(),
            Namespace::Eip155 => self.evm_account(),
        }
    }

    /// Signs `claims` (plus `iss`, `chain` and `iat`) with the chosen chain's key.
    pub fn mint(&self, ns: Namespace, mut claims: Map<String, Value>) -> Result<String, AuthError> {
        let iss = self.account(ns);
        let chain = iss
            .rsplit_once(':')
            .map(|(c, _)| c.to_owned())
            .unwrap_or_default();
        claims.insert("iss".into(), iss.into());
        claims.insert("chain".into(), chain.into());
        claims
            .entry("iat")
            .or_insert_with(|| Value::from(super::now_secs()));
        let alg = match ns {
            Namespace::Solana => "SOL_EDDSA",
            Namespace::Eip155 => "EIP191K",
        };
        let input = jwt::signing_input(
            &serde_json::json!({"alg": alg, "typ": "JWT"}),
            &Value::Object(claims),
        );
        let sig = self.sign(ns, input.as_bytes())?;
        Ok(format!("{input}.{}", jwt::b64(&sig)))
    }

    /// Signs `bytes` with the chain's key: Ed25519 (64 bytes) for Solana, EIP-191
    /// `personal_sign` (r‖s‖v, 65 bytes) for EVM. Tokens and agent cards both use it.
    pub fn sign(&self, ns: Namespace, bytes: &[u8]) -> Result<Vec<u8>, AuthError> {
        Ok(match ns {
            Namespace::Solana => solana::sign(&self.seed, bytes).to_vec(),
            Namespace::Eip155 => evm::sign(&self.evm_secret(), bytes)?.to_vec(),
        })
    }
}

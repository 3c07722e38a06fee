//! Agent identity: A2A Agent Cards bound to CAIP-10 wallet accounts. A card is accepted only
//! with a detached JWS by the account's own key (`signature`), is stored next to the spend
//! ledger (`store`), served and searched over HTTP (`http`), and re-verified when served.
//! The account → agent-name map is kept in memory so requests can be labelled for free.

pub mod card;
pub mod http;
pub mod signature;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::auth::caip10::Account;
use crate::caller::{Caller, Scope};
use crate::spend::{Ledger, LedgerError};
pub use card::{CardError, MAX_CARD_BYTES};
pub use signature::SignatureError;
use store::{CardStore, StoredCard};

/// Why an agent-card request failed; each maps to an HTTP status in `agents::http`.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The body is not JSON.
    #[error("the agent card is not valid JSON: {0}")]
    Json(String),
    /// The body is larger than [`MAX_CARD_BYTES`].
    #[error("the agent card is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The card breaks the A2A shape.
    #[error("invalid agent card: {0}")]
    Card(#[from] CardError),
    /// The card's signature is missing, malformed or wrong.
    #[error("agent card signature: {0}")]
    Signature(#[from] SignatureError),
    /// The account in the path is not a CAIP-10 account.
    #[error("malformed CAIP-10 account: {0}")]
    Account(String),
    /// The request needs a token and has none (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token may not do this, e.g. register another account's card (403).
    #[error("{0}")]
    Forbidden(String),
    /// No card is registered for the account.
    #[error("no agent card is registered for {0}")]
    NotFound(String),
    /// The card store failed.
    #[error("agent card store: {0}")]
    Store(#[from] LedgerError),
}

/// One registered card as the API shows it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The row as stored.
    pub stored: StoredCard,
    /// The card, parsed from the stored text (`null` if it no longer parses).
    pub card: Value,
    /// The signature checked out again just now (false: the stored card was altered).
    pub verified: bool,
}

impl Entry {
    fn from_stored(stored: StoredCard) -> Entry {
        let card: Value = serde_json::from_str(&stored.card).unwrap_or(Value::Null);
        let verified = Account::parse(&stored.account)
            .ok()
            .is_some_and(|a| signature::verify(&card, &a).is_ok());
        Entry {
            stored,
            card,
            verified,
        }
    }

    /// The API's JSON for the entry (`object: "agent"`, account, chain, name, times, card).
    pub fn to_json(&self) -> Value {
        json!({
            "object": "agent",
            "account": self.stored.account,
            "chain": self.stored.chain,
            "name": self.stored.name,
            "verified": self.verified,
            "created_at": self.stored.created_ms,
            "updated_at": self.stored.updated_ms,
            "card": self.card,
        })
    }

    fn has_skill_tag(&self, tag: &str) -> bool {
        let skills = self.card.get("skills").and_then(Value::as_array);
        skills.into_iter().flatten().any(|s| {
            s.get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|t| t.eq_ignore_ascii_case(tag))
                || s.get("id").and_then(Value::as_str) == Some(tag)
        })
    }
}

/// `GET /v1/agents` filters; all must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// A skill tag (or skill id), case-insensitive.
    pub skill: Option<String>,
    /// A namespace (`solana`, `eip155`) or a CAIP-2 chain id (`eip155:1`).
    pub chain: Option<String>,
    /// A case-insensitive substring of the card's name.
    pub name: Option<String>,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        let chain_ok = self
            .chain
            .as_deref()
            .is_none_or(|c| e.stored.chain == c || e.stored.chain.split(':').next() == Some(c));
        let name_ok = self
            .name
            .as_deref()
            .is_none_or(|n| e.stored.name.to_lowercase().contains(&n.to_lowercase()));
        chain_ok && name_ok && self.skill.as_deref().is_none_or(|t| e.has_skill_tag(t))
    }
}

/// A card that passed every check: its JSON, its name and the account that signed it.
pub struct Checked {
    /// The card as sent.
    pub card: Value,
    /// The card's `name`.
    pub name: String,
    /// The account whose signature the card carries.
    pub account: Account,
}

/// Everything registration checks before storing, without storing: size, JSON, the A2A
/// shape (per field) and the detached signature of the account in its first `kid`.
pub fn check(body: &[u8]) -> Result<Checked, AgentError> {
    if body.len() > MAX_CARD_BYTES {
        return Err(AgentError::TooLarge {
            limit: MAX_CARD_BYTES,
        });
    }
    let card: Value = serde_json::from_slice(body).map_err(|e| AgentError::Json(e.to_string()))?;
    let name = card::validate(&card)?;
    let account = signature::signer(&card)?;
    signature::verify(&card, &account)?;
    Ok(Checked {
        card,
        name,
        account,
    })
}

/// The registry: storage plus the in-memory name map used on the request path.
pub struct Agents {
    store: CardStore,
    names: RwLock<HashMap<String, Arc<str>>>,
}

/// A CAIP-10 account in the form cards are stored under (EVM lower case).
pub fn normalize(account: &str) -> Result<Account, AgentError> {
    Account::parse(account).map_err(|e| AgentError::Account(e.to_string()))
}

impl Agents {
    /// Opens the registry over the ledger's database and loads the name map.
    pub async fn open(ledger: Arc<Ledger>) -> Result<Agents, LedgerError> {
        let store = CardStore::new(ledger);
        let names = store
            .select(None)
            .await?
            .into_iter()
            .map(|c| (c.account, Arc::from(c.name.as_str())))
            .collect();
        Ok(Agents {
            store,
            names: RwLock::new(names),
        })
    }

    /// The registered agent name of an account, if any (a map lookup; no I/O).
    /// `account` is a verified caller's, which auth has already normalised the way cards
    /// are stored (EVM lower case), so this is one lookup on every request.
    pub fn name_of(&self, account: &str) -> Option<Arc<str>> {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        names.get(account).cloned()
    }

    /// Validates, verifies and stores a card; `true` when it is new (not an update).
    /// `caller` is the verified token when auth is on: it must belong to the card's account.
    pub async fn register(
        &self,
        body: &[u8],
        caller: Option<&Caller>,
    ) -> Result<(Entry, bool), AgentError> {
        let Checked {
            card,
            name,
            account,
        } = check(body)?;
        let key = account.to_string();
        if let Some(c) = caller {
            let own = Account::parse(&c.account)
                .map(|a| a.to_string())
                .unwrap_or_else(|_| c.account.clone());
            if own != key {
                return Err(AgentError::Forbidden(format!(
                    "this token is for {own}; it may only register the card of its own account, not {key}"
                )));
            }
        }
        let now = crate::spend::query_now_ms();
        let existing = self.store.get(&key).await?;
        let stored = StoredCard {
            account: key.clone(),
            chain: account.chain(),
            name: name.clone(),
            card: card.to_string(),
            created_ms: existing.as_ref().map_or(now, |e| e.created_ms),
            updated_ms: now,
        };
        self.store.put(&stored).await?;
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::from(name.as_str()));
        Ok((
            Entry {
                stored,
                card,
                verified: true,
            },
            existing.is_none(),
        ))
    }

    /// The card registered for `account`.
    pub async fn get(&self, account: &str) -> Result<Entry, AgentError> {
        let key = normalize(account)?.to_string();
        match self.store.get(&key).await? {
            Some(s) => Ok(Entry::from_stored(s)),
            None => Err(AgentError::NotFound(key)),
        }
    }

    /// Every registered card that matches `filter`.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Entry>, AgentError> {
        Ok(self
            .store
            .select(None)
            .await?
            .into_iter()
            .map(Entry::from_stored)
            .filter(|e| filter.matches(e))
            .collect())
    }

    /// Removes a card. With auth on only its owner or an admin token may.
    pub async fn delete(&self, account: &str, caller: Option<&Caller>) -> Result<(), AgentError> {
        let key = normalize(account)?.to_string();
        if let Some(c) = caller {
            let own = Account::parse(&c.account).map(|a| a.to_string()).ok();
            if c.scope != Scope::Admin && own.as_deref() != Some(key.as_str()) {
                return Err(AgentError::Forbidden(format!(
                    "only {key} itself or an admin token may delete its card"
                )));
            }
        }
        if !self.store.delete(&key).await? {
            return Err(AgentError::NotFound(key));
        }
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Ok(())
    }
}

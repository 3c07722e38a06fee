//! Where agent cards live: a table `agent_cards` in the spend ledger's database (the redb
//! file, or the SQL database through the ledger's pool; memory with `memory://`). One row per
//! CAIP-10 account holding the card JSON as registered, signatures included.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Row};

use crate::spend::Store;
use crate::spend::ledger::{Ledger, LedgerError};

const CARDS: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_cards");

/// A registered card and its bookkeeping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredCard {
    /// Normalised CAIP-10 account (EVM addresses lower case).
    pub account: String,
    /// CAIP-2 chain id (`solana:<ref>`, `eip155:<id>`).
    pub chain: String,
    /// The card's `name`.
    pub name: String,
    /// The card JSON as registered.
    pub card: String,
    /// When it was first registered, Unix milliseconds.
    pub created_ms: i64,
    /// When it was last registered, Unix milliseconds.
    pub updated_ms: i64,
}

/// Where agent cards are kept: a table in the ledger's database (a map for `memory://`).
pub struct CardStore {
    ledger: Arc<Ledger>,
    /// Used when the ledger is `memory://`, which has no table to borrow.
    memory: Mutex<BTreeMap<String, StoredCard>>,
}

const COLUMNS: &str = "account, chain, name, card, created_ms, updated_ms";

macro_rules! sql_put {
    ($pool:expr, $db:ty, $c:expr) => {{
        let c: &StoredCard = $c;
        // Delete + insert in one transaction: one statement shape for all three engines
        // (their upsert syntaxes differ).
        let mut tx = $pool.begin().await?;
        let mut del = QueryBuilder::<$db>::new("DELETE FROM agent_cards WHERE account = ");
        del.push_bind(c.account.clone());
        del.build().execute(&mut *tx).await?;
        let mut qb = QueryBuilder::<$db>::new(format!("INSERT INTO agent_cards ({COLUMNS}) "));
        qb.push_values(std::iter::once(c), |mut b, c| {
            b.push_bind(c.account.clone())
                .push_bind(c.chain.clone())
                .push_bind(c.name.clone())
                .push_bind(c.card.clone())
                .push_bind(c.created_ms)
                .push_bind(c.updated_ms);
        });
        qb.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }};
}

macro_rules! sql_select {
    ($pool:expr, $db:ty, $account:expr) => {{
        let account: Option<&str> = $account;
        let mut qb = QueryBuilder::<$db>::new(format!("SELECT {COLUMNS} FROM agent_cards"));
        if let Some(a) = account {
            qb.push(" WHERE account = ").push_bind(a.to_owned());
        }
        qb.push(" ORDER BY account");
        let rows = qb.build().fetch_all($pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(StoredCard {
                account: row.try_get(0)?,
                chain: row.try_get(1)?,
                name: row.try_get(2)?,
                card: row.try_get(3)?,
                created_ms: row.try_get(4)?,
                updated_ms: row.try_get(5)?,
            });
        }
        Ok(out)
    }};
}

macro_rules! sql_delete {
    ($pool:expr, $db:ty, $account:expr) => {{
        let mut qb = QueryBuilder::<$db>::new("DELETE FROM agent_cards WHERE account = ");
        qb.push_bind($account.to_owned());
        Ok(qb.build().execute($pool).await?.rows_affected() > 0)
    }};
}

impl CardStore {
    /// A store over the ledger's database.
    pub fn new(ledger: Arc<Ledger>) -> CardStore {
        CardStore {
            ledger,
            memory: Mutex::new(BTreeMap::new()),
        }
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredCard>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts or replaces the card of `c.account`.
    pub async fn put(&self, c: &StoredCard) -> Result<(), LedgerError> {
        match self.ledger.store() {
            Store::Memory(_) => {
                self.mem().insert(c.account.clone(), c.clone());
                Ok(())
            }
            Store::Redb(db) => {
                let db = db.clone();
                let key = c.account.clone();
                let value = serde_json::to_vec(c).unwrap_or_default();
                blocking(move || {
                    let tx = db.begin_write().map_err(redb_err)?;
                    tx.open_table(CARDS)
                        .map_err(redb_err)?
                        .insert(key.as_str(), value.as_slice())
                        .map_err(redb_err)?;
                    tx.commit().map_err(redb_err)
                })
                .await
            }
            Store::Sqlite(p) => sql_put!(p, sqlx::Sqlite, c),
            Store::Postgres(p) => sql_put!(p, sqlx::Postgres, c),
            Store::MySql(p) => sql_put!(p, sqlx::MySql, c),
        }
    }

    /// Every card (`account: None`) or one account's, ordered by account.
    pub async fn select(&self, account: Option<&str>) -> Result<Vec<StoredCard>, LedgerError> {
        match self.ledger.store() {
            Store::Memory(_) => {
                let m = self.mem();
                Ok(match account {
                    Some(a) => m.get(a).cloned().into_iter().collect(),
                    None => m.values().cloned().collect(),
                })
            }
            Store::Redb(db) => {
                let db = db.clone();
                let account = account.map(str::to_owned);
                blocking(move || {
                    let tx = db.begin_read().map_err(redb_err)?;
                    let table = match tx.open_table(CARDS) {
                        Ok(t) => t,
                        // Nothing was ever registered in this file.
                        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                        Err(e) => return Err(redb_err(e)),
                    };
                    let decode = |v: &[u8]| serde_json::from_slice::<StoredCard>(v).ok();
                    if let Some(a) = account {
                        return Ok(table
                            .get(a.as_str())
                            .map_err(redb_err)?
                            .and_then(|v| decode(v.value()))
                            .into_iter()
                            .collect());
                    }
                    let mut out = Vec::new();
                    for entry in table.iter().map_err(redb_err)? {
                        let (_, v) = entry.map_err(redb_err)?;
                        out.extend(decode(v.value()));
                    }
                    Ok(out)
                })
                .await
            }
            Store::Sqlite(p) => sql_select!(p, sqlx::Sqlite, account),
            Store::Postgres(p) => sql_select!(p, sqlx::Postgres, account),
            Store::MySql(p) => sql_select!(p, sqlx::MySql, account),
        }
    }

    /// The card stored for a normalised `account`.
    pub async fn get(&self, account: &str) -> Result<Option<StoredCard>, LedgerError> {
        Ok(self.select(Some(account)).await?.pop())
    }

    /// Removes an account's card; whether there was one.
    pub async fn delete(&self, account: &str) -> Result<bool, LedgerError> {
        match self.ledger.store() {
            Store::Memory(_) => Ok(self.mem().remove(account).is_some()),
            Store::Redb(db) => {
                let db = db.clone();
                let key = account.to_owned();
                blocking(move || {
                    let tx = db.begin_write().map_err(redb_err)?;
                    let existed = tx
                        .open_table(CARDS)
                        .map_err(redb_err)?
                        .remove(key.as_str())
                        .map_err(redb_err)?
                        .is_some();
                    tx.commit().map_err(redb_err)?;
                    Ok(existed)
                })
                .await
            }
            Store::Sqlite(p) => sql_delete!(p, sqlx::Sqlite, account),
            Store::Postgres(p) => sql_delete!(p, sqlx::Postgres, account),
            Store::MySql(p) => sql_delete!(p, sqlx::MySql, account),
        }
    }
}

fn redb_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Redb(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    tokio::task::spawn_blocking(f).await.map_err(redb_err)?
}

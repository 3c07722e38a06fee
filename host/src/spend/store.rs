//! Where ledger rows live: redb (embedded, the default), SQLite, PostgreSQL, MySQL/MariaDB
//! (sqlx, schema from `migrations/<engine>/`), or memory. Each store writes a batch in one
//! transaction and answers grouped queries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{ReadableTable, TableDefinition};
use sqlx::{MySqlPool, PgPool, QueryBuilder, Row, SqlitePool};

use super::ledger::LedgerError;
use super::query::{SpendGroup, SpendQuery, aggregate, sort_groups};
use super::record::SpendRecord;
use super::schema;
use crate::background::{BackgroundThread, Job, Priority};
use crate::spend::cost::TokenBreakdown;

/// Rows keyed by (time, random nonce): time-ordered scans, no collisions across restarts.
const SPEND: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("spend_log");

pub enum Store {
    Memory(Mutex<Vec<SpendRecord>>),
    Redb(Arc<redb::Database>),
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

const COLUMNS: &str = "id, time_ms, account, session, route, provider, model, input_no_cache, input_cache_read, input_cache_write, output_text, output_reasoning, cost_nano_usd, latency_ms, success, error_type, attempts, estimated, agent";

/// Inserts `rows` in one transaction (in chunks well under every engine's bind limit).
macro_rules! sql_write {
    ($pool:expr, $db:ty, $rows:expr) => {{
        let mut tx = $pool.begin().await?;
        for chunk in $rows.chunks(500) {
            let mut qb = QueryBuilder::<$db>::new(format!("INSERT INTO spend_log ({COLUMNS}) "));
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id.clone())
                    .push_bind(r.time_ms)
                    .push_bind(r.account.clone())
                    .push_bind(r.session.clone())
                    .push_bind(r.route.clone())
                    .push_bind(r.provider.clone())
                    .push_bind(r.model.clone())
                    .push_bind(r.tokens.input_no_cache as i64)
                    .push_bind(r.tokens.input_cache_read as i64)
                    .push_bind(r.tokens.input_cache_write as i64)
                    .push_bind(r.tokens.output_text as i64)
                    .push_bind(r.tokens.output_reasoning as i64)
                    .push_bind(r.cost_nano_usd as i64)
                    .push_bind(r.latency_ms as i64)
                    .push_bind(i32::from(r.success))
                    .push_bind(r.error_type.clone())
                    .push_bind(r.attempts as i32)
                    .push_bind(i32::from(r.estimated))
                    .push_bind(r.agent.clone());
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }};
}

/// Sums per group in the database; `$int` is the engine's 64-bit integer type for CAST.
macro_rules! sql_query {
    ($pool:expr, $db:ty, $q:expr, $int:literal) => {{
        let q: &SpendQuery = $q;
        let col = q.group_by.column();
        let sum = |c: &str| format!("CAST(COALESCE(SUM({c}), 0) AS {})", $int);
        let mut qb = QueryBuilder::<$db>::new(format!(
            "SELECT {col}, CAST(COUNT(*) AS {int}), {}, {}, {}, {}, {}, {}, {} FROM spend_log WHERE time_ms >= ",
            sum("1 - success"),
            sum("input_no_cache"),
            sum("input_cache_read"),
            sum("input_cache_write"),
            sum("output_text"),
            sum("output_reasoning"),
            sum("cost_nano_usd"),
            int = $int,
        ));
        qb.push_bind(q.since_ms).push(" AND time_ms < ").push_bind(q.until_ms).push(format!(" GROUP BY {col}"));
        let rows = qb.build().fetch_all($pool).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let n = |i: usize| -> Result<u64, sqlx::Error> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
            groups.push(SpendGroup {
                key: row.try_get::<Option<String>, _>(0)?,
                requests: n(1)?,
                errors: n(2)?,
                tokens: TokenBreakdown {
                    input_no_cache: n(3)?,
                    input_cache_read: n(4)?,
                    input_cache_write: n(5)?,
                    output_text: n(6)?,
                    output_reasoning: n(7)?,
                },
                cost_nano_usd: n(8)?,
            });
        }
        Ok(sort_groups(groups))
    }};
}

/// Reads whole rows back (tests, exports) in time order.
macro_rules! sql_rows {
    ($pool:expr, $db:ty, $since:expr, $until:expr) => {{
        let mut qb =
            QueryBuilder::<$db>::new(format!("SELECT {COLUMNS} FROM spend_log WHERE time_ms >= "));
        qb.push_bind($since)
            .push(" AND time_ms < ")
            .push_bind($until)
            .push(" ORDER BY time_ms");
        let rows = qb.build().fetch_all($pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let n = |i: usize| -> Result<u64, sqlx::Error> {
                Ok(row.try_get::<i64, _>(i)?.max(0) as u64)
            };
            out.push(SpendRecord {
                id: row.try_get(0)?,
                time_ms: row.try_get(1)?,
                account: row.try_get(2)?,
                session: row.try_get(3)?,
                route: row.try_get(4)?,
                provider: row.try_get(5)?,
                model: row.try_get(6)?,
                tokens: TokenBreakdown {
                    input_no_cache: n(7)?,
                    input_cache_read: n(8)?,
                    input_cache_write: n(9)?,
                    output_text: n(10)?,
                    output_reasoning: n(11)?,
                },
                cost_nano_usd: n(12)?,
                latency_ms: n(13)?,
                success: row.try_get::<i32, _>(14)? != 0,
                error_type: row.try_get(15)?,
                attempts: row.try_get::<i32, _>(16)?.max(0) as u32,
                estimated: row.try_get::<i32, _>(17)? != 0,
                agent: row.try_get(18)?,
            });
        }
        Ok(out)
    }};
}

macro_rules! sql_prune {
    ($pool:expr, $db:ty, $before:expr) => {{
        let mut qb = QueryBuilder::<$db>::new("DELETE FROM spend_log WHERE time_ms < ");
        qb.push_bind($before);
        Ok(qb.build().execute($pool).await?.rows_affected())
    }};
}

impl Store {
    /// Opens (creating and migrating as needed) the store named by `url`. Relative redb and
    /// SQLite paths are relative to `base`.
    /// Opens the store at `url`; `cache_size` is redb's page cache (other engines ignore it).
    pub async fn open(url: &str, base: &Path, cache_size: u64) -> Result<Store, LedgerError> {
        let bad = |m: String| LedgerError::Url {
            url: url.to_owned(),
            message: m,
        };
        if url == "memory://" || url == "memory" {
            return Ok(Store::Memory(Mutex::new(Vec::new())));
        }
        if let Some(path) = url.strip_prefix("redb://") {
            let path = resolve(path, base);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
            }
            let db = tokio::task::spawn_blocking(move || -> Result<redb::Database, LedgerError> {
                let db = redb::Builder::new()
                    .set_cache_size(cache_size as usize)
                    .create(&path)
                    .map_err(|e| LedgerError::Redb(format!("{}: {e}", path.display())))?;
                let tx = db
                    .begin_write()
                    .map_err(|e| LedgerError::Redb(e.to_string()))?;
                tx.open_table(SPEND)
                    .map_err(|e| LedgerError::Redb(e.to_string()))?;
                tx.commit().map_err(|e| LedgerError::Redb(e.to_string()))?;
                Ok(db)
            })
            .await
            .map_err(|e| LedgerError::Redb(e.to_string()))??;
            return Ok(Store::Redb(Arc::new(db)));
        }
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let path = resolve(rest.split('?').next().unwrap_or(rest), base);
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            schema::migrator(schema::SQLITE).run(&pool).await?;
            return Ok(Store::Sqlite(pool));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(url)
                .await?;
            schema::migrator(schema::POSTGRES).run(&pool).await?;
            return Ok(Store::Postgres(pool));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(4)
                .connect(&url)
                .await?;
            schema::migrator(schema::MYSQL).run(&pool).await?;
            return Ok(Store::MySql(pool));
        }
        Err(bad(
            "expected redb://PATH, sqlite://PATH, postgres://…, mysql://… or memory://".into(),
        ))
    }

    pub async fn write(&self, rows: Vec<SpendRecord>) -> Result<(), LedgerError> {
        match self {
            Store::Memory(m) => {
                m.lock().unwrap_or_else(|p| p.into_inner()).extend(rows);
                Ok(())
            }
            Store::Redb(db) => {
                let db = db.clone();
                redb_background(move || {
                    // Encoded here, off the async workers: a batch is tens of rows.
                    let encoded: Vec<Vec<u8>> = rows
                        .iter()
                        .map(|r| serde_json::to_vec(r).unwrap_or_default())
                        .collect();
                    let keys: Vec<(i64, u64)> = rows
                        .iter()
                        .map(|r| (r.time_ms, fastrand::u64(..)))
                        .collect();
                    // One durable (fsync'd) transaction per batch: redb's copy-on-write pages
                    // make a crash lose at most the batch in flight, never the file.
                    let tx = db.begin_write().map_err(redb_err)?;
                    {
                        let mut table = tx.open_table(SPEND).map_err(redb_err)?;
                        for (k, v) in keys.iter().zip(&encoded) {
                            table.insert(k, v.as_slice()).map_err(redb_err)?;
                        }
                    }
                    tx.commit().map_err(redb_err)
                })
                .await
            }
            Store::Sqlite(p) => sql_write!(p, sqlx::Sqlite, rows),
            Store::Postgres(p) => sql_write!(p, sqlx::Postgres, rows),
            Store::MySql(p) => sql_write!(p, sqlx::MySql, rows),
        }
    }

    pub async fn query(&self, q: &SpendQuery) -> Result<Vec<SpendGroup>, LedgerError> {
        match self {
            Store::Memory(_) | Store::Redb(_) => {
                let rows = self.rows(q.since_ms, q.until_ms).await?;
                Ok(aggregate(q, rows.iter()))
            }
            Store::Sqlite(p) => sql_query!(p, sqlx::Sqlite, q, "BIGINT"),
            Store::Postgres(p) => sql_query!(p, sqlx::Postgres, q, "BIGINT"),
            Store::MySql(p) => sql_query!(p, sqlx::MySql, q, "SIGNED"),
        }
    }

    /// Rows with `since <= time < until`, oldest first.
    pub async fn rows(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<SpendRecord>, LedgerError> {
        match self {
            Store::Memory(m) => {
                let rows = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(rows
                    .iter()
                    .filter(|r| r.time_ms >= since_ms && r.time_ms < until_ms)
                    .cloned()
                    .collect())
            }
            Store::Redb(db) => {
                let db = db.clone();
                redb_blocking(move || {
                    let tx = db.begin_read().map_err(redb_err)?;
                    let table = tx.open_table(SPEND).map_err(redb_err)?;
                    let mut out = Vec::new();
                    for entry in table
                        .range((since_ms, 0)..(until_ms, 0))
                        .map_err(redb_err)?
                    {
                        let (_, v) = entry.map_err(redb_err)?;
                        if let Ok(r) = serde_json::from_slice::<SpendRecord>(v.value()) {
                            out.push(r);
                        }
                    }
                    Ok(out)
                })
                .await
            }
            Store::Sqlite(p) => sql_rows!(p, sqlx::Sqlite, since_ms, until_ms),
            Store::Postgres(p) => sql_rows!(p, sqlx::Postgres, since_ms, until_ms),
            Store::MySql(p) => sql_rows!(p, sqlx::MySql, since_ms, until_ms),
        }
    }

    /// Deletes rows older than `before_ms`; returns how many.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, LedgerError> {
        match self {
            Store::Memory(m) => {
                let mut rows = m.lock().unwrap_or_else(|p| p.into_inner());
                let n = rows.len();
                rows.retain(|r| r.time_ms >= before_ms);
                Ok((n - rows.len()) as u64)
            }
            Store::Redb(db) => {
                let db = db.clone();
                redb_blocking(move || {
                    let tx = db.begin_write().map_err(redb_err)?;
                    let n = {
                        let mut table = tx.open_table(SPEND).map_err(redb_err)?;
                        let keys: Vec<(i64, u64)> = table
                            .range(..(before_ms, 0))
                            .map_err(redb_err)?
                            .filter_map(|e| e.ok().map(|(k, _)| k.value()))
                            .collect();
                        for k in &keys {
                            table.remove(k).map_err(redb_err)?;
                        }
                        keys.len() as u64
                    };
                    tx.commit().map_err(redb_err)?;
                    Ok(n)
                })
                .await
            }
            Store::Sqlite(p) => sql_prune!(p, sqlx::Sqlite, before_ms),
            Store::Postgres(p) => sql_prune!(p, sqlx::Postgres, before_ms),
            Store::MySql(p) => sql_prune!(p, sqlx::MySql, before_ms),
        }
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redb(_) => "redb",
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
            Store::MySql(_) => "mysql",
        }
    }
}

fn redb_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Redb(e.to_string())
}

/// Runs `f` on the ledger's own thread, at the workers' priority: a lower one let a busy
/// machine starve the commits past the durability window ([`crate::background`]).
async fn redb_background<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    static THREAD: std::sync::OnceLock<Option<BackgroundThread>> = std::sync::OnceLock::new();
    let thread =
        THREAD.get_or_init(|| BackgroundThread::start("ledger-writer", Priority::Normal).ok());
    let Some(thread) = thread else {
        return redb_blocking(f).await;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    if thread.run(job).is_err() {
        return Err(LedgerError::Redb("the ledger writer thread is gone".into()));
    }
    rx.await
        .unwrap_or_else(|_| Err(LedgerError::Redb("the ledger write panicked".into())))
}

/// Runs blocking redb work off the async threads.
async fn redb_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    tokio::task::spawn_blocking(f).await.map_err(redb_err)?
}

fn resolve(path: &str, base: &Path) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() { p } else { base.join(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commits keep the workers' CPU priority: at nice 10 a busy machine starved them past
    /// the durability window of `durability: async` (see [`crate::background`]).
    #[tokio::test]
    async fn ledger_commits_run_at_the_workers_priority() {
        let here = crate::background::current_nice();
        let (name, there) = redb_background(|| {
            Ok((
                std::thread::current().name().map(str::to_owned),
                crate::background::current_nice(),
            ))
        })
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("ledger-writer"));
        assert_eq!(
            there, here,
            "the ledger writer runs at nice {there}, the caller at {here}"
        );
    }
}

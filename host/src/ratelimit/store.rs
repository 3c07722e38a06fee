//! Where the windows live: this process's memory, Redis (a hash of per-second buckets per key,
//! an atomic Lua script per check) or PostgreSQL (a row per key and second, one function
//! call per check, keys locked in one order). Every store takes a
//! request's limits all or nothing in one step, so a request refused by one limit takes
//! nothing from the others, and replicas sharing a store never admit more than a limit.

use std::collections::HashMap;
use std::sync::Mutex;

use super::window::{BUCKET_MS, Counts, Decision, SPAN, bucket, decide, fits};

/// One limit a request must fit: `cost` (1 request, or its worst-case tokens) against
/// `limit` per minute under `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Take {
    /// The store key (`bitrouter:rl:<scope>:<who>:<kind>`).
    pub key: String,
    /// Per minute.
    pub limit: u64,
    /// What this request takes.
    pub cost: u64,
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL refused or could not be reached.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The memory store holds as many keys as it may.
    #[error("the memory store tracks {0} keys, its most")]
    Full(usize),
    /// The store answered something this build does not understand.
    #[error("unexpected answer from the store: {0}")]
    Answer(String),
    /// PostgreSQL did not answer within [`PG_TIMEOUT`].
    #[error("postgres: no answer within {} ms", PG_TIMEOUT.as_millis())]
    Timeout,
}

/// The longest a check waits for PostgreSQL (its pool's own wait for a connection is 30 s):
/// like Redis's response timeout, so a database that went away costs a limited caller a
/// second before `on_store_error` decides, not the pool's patience.
pub const PG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `fut` within [`PG_TIMEOUT`].
async fn pg<T>(fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
    match tokio::time::timeout(PG_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// Most keys the memory store tracks; keys with nothing in the last minute are swept first. The keys
/// are accounts, sessions, routes and providers, all bounded by who may call (a verified
/// token) and what the config names.
pub const MAX_MEMORY_KEYS: usize = 200_000;

/// A rate-limit store.
pub enum Store {
    /// This process only.
    Memory(Mutex<HashMap<String, Counts>>),
    /// Shared through Redis: connected on first use (so the gateway starts while Redis is
    /// down) and reconnected by the connection manager after a failure.
    Redis(RedisConn),
    /// Shared through the ledger's PostgreSQL.
    Postgres(sqlx::PgPool),
}

/// The check-and-take script: reads every key's buckets (a hash, field = bucket number),
/// drops those that no longer count, and takes every cost in the current bucket only if
/// all fit. ARGV: bucket, span, expiry ms, then limit and cost per key. Returns
/// `[allowed, n1, bucket, taken, … (n1 pairs), n2, …]`, the buckets as they were before
/// the take.
const TAKE_LUA: &str = r#"
local b = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local n = #KEYS
local lists = {}
local ok = 1
for i = 1, n do
  local h = redis.call('HGETALL', KEYS[i])
  local list = {}
  local sum = 0
  for j = 1, #h, 2 do
    local k = tonumber(h[j])
    local v = tonumber(h[j + 1]) or 0
    if k == nil or k < b - span then
      redis.call('HDEL', KEYS[i], h[j])
    elseif v > 0 then
      list[#list + 1] = k
      list[#list + 1] = v
      sum = sum + v
    end
  end
  lists[i] = list
  if sum + tonumber(ARGV[3 + 2 * i]) > tonumber(ARGV[2 + 2 * i]) then ok = 0 end
end
local out = {ok}
for i = 1, n do
  if ok == 1 then
    redis.call('HINCRBY', KEYS[i], ARGV[1], ARGV[3 + 2 * i])
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  out[#out + 1] = #lists[i] / 2
  for _, v in ipairs(lists[i]) do out[#out + 1] = v end
end
return out
"#;

/// Settles a reservation: adds ARGV[2] (may be negative) to bucket ARGV[1], never below
/// zero, if that bucket is still there.
const ADJUST_LUA: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if v < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) end
return 1
"#;

/// The PostgreSQL side: one row per key and bucket, and a function that takes a
/// transaction-scoped advisory lock per key (in one order, so concurrent checks cannot
/// deadlock), drops the buckets that no longer count, decides and takes in one statement.
/// Returns the same shape as the Lua script.
const PG_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS bitrouter_rate_buckets (
    key TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (key, bucket)
);
CREATE OR REPLACE FUNCTION bitrouter_rate_take_buckets(
    keys TEXT[], b BIGINT, span BIGINT, limits BIGINT[], costs BIGINT[]
) RETURNS BIGINT[] AS $$
DECLARE
    i INT;
    h BIGINT;
    r RECORD;
    total NUMERIC;
    part BIGINT[];
    parts BIGINT[] := '{}';
    ok BOOLEAN := TRUE;
BEGIN
    FOR h IN SELECT DISTINCT hashtextextended(k, 7261) FROM unnest(keys) AS k ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(h);
    END LOOP;
    DELETE FROM bitrouter_rate_buckets WHERE key = ANY(keys) AND bucket < b - span;
    FOR i IN 1 .. array_length(keys, 1) LOOP
        part := '{}';
        total := 0;
        FOR r IN SELECT bucket, n FROM bitrouter_rate_buckets
                WHERE key = keys[i] AND n > 0 ORDER BY bucket LOOP
            part := part || r.bucket || r.n;
            total := total + r.n;
        END LOOP;
        parts := parts || (coalesce(array_length(part, 1), 0) / 2)::BIGINT || part;
        IF total + costs[i] > limits[i] THEN
            ok := FALSE;
        END IF;
    END LOOP;
    IF ok THEN
        FOR i IN 1 .. array_length(keys, 1) LOOP
            INSERT INTO bitrouter_rate_buckets (key, bucket, n) VALUES (keys[i], b, costs[i])
                ON CONFLICT (key, bucket) DO UPDATE
                SET n = bitrouter_rate_buckets.n + EXCLUDED.n;
        END LOOP;
    END IF;
    RETURN ARRAY[CASE WHEN ok THEN 1 ELSE 0 END]::BIGINT[] || parts;
END;
$$ LANGUAGE plpgsql;
"#;

/// Scripts are hashed once; Redis runs them by hash (`EVALSHA`), loading on first use.
static TAKE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(TAKE_LUA));
static ADJUST_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(ADJUST_LUA));

const PG_ADJUST: &str = "UPDATE bitrouter_rate_buckets SET n = GREATEST(n + $3, 0)
    WHERE key = $1 AND bucket = $2";

/// How long Redis keeps a key nobody touched: its oldest bucket stops counting by then.
const REDIS_EXPIRY_MS: i64 = (SPAN + 2) * BUCKET_MS;

impl Store {
    /// The memory store.
    pub fn memory() -> Store {
        Store::Memory(Mutex::new(HashMap::new()))
    }

    /// A Redis store at `url` (connected on first use).
    pub fn redis(url: &str) -> Result<Store, StoreError> {
        Ok(Store::Redis(RedisConn {
            client: redis::Client::open(url)?,
            conn: tokio::sync::OnceCell::new(),
        }))
    }

    /// A PostgreSQL store on `pool` (the ledger's): its table and function are created now.
    pub async fn postgres(pool: sqlx::PgPool) -> Result<Store, StoreError> {
        sqlx::raw_sql(PG_SCHEMA).execute(&pool).await?;
        Ok(Store::Postgres(pool))
    }

    /// `memory`, `redis` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Takes every cost of `takes` at `now_ms` if all fit, else none; one decision per take.
    pub async fn take(&self, takes: &[Take], now_ms: i64) -> Result<Vec<Decision>, StoreError> {
        let now = bucket(now_ms);
        let before: Vec<Counts> = match self {
            Store::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                let counts = takes
                    .iter()
                    .map(|t| map.get(&t.key).cloned().unwrap_or_default().at(now))
                    .collect::<Vec<_>>();
                let all_fit = takes
                    .iter()
                    .zip(&counts)
                    .all(|(t, c)| fits(c, t.limit, t.cost));
                if all_fit {
                    if map.len() + takes.len() > MAX_MEMORY_KEYS {
                        map.retain(|_, c| !c.expired_at(now));
                        if map.len() + takes.len() > MAX_MEMORY_KEYS {
                            return Err(StoreError::Full(MAX_MEMORY_KEYS));
                        }
                    }
                    for (t, c) in takes.iter().zip(&counts) {
                        let mut taken = c.clone();
                        taken.add(now, t.cost);
                        map.insert(t.key.clone(), taken);
                    }
                }
                counts
            }
            Store::Redis(redis) => {
                let mut script = TAKE_SCRIPT.prepare_invoke();
                for t in takes {
                    script.key(&t.key);
                }
                script.arg(now).arg(SPAN).arg(REDIS_EXPIRY_MS);
                for t in takes {
                    script.arg(t.limit).arg(t.cost);
                }
                let mut conn = redis.connection().await?;
                let out: Vec<i64> = script.invoke_async(&mut conn).await?;
                counts_from(&out, takes.len())?
            }
            Store::Postgres(pool) => {
                let keys: Vec<&str> = takes.iter().map(|t| t.key.as_str()).collect();
                let limits: Vec<i64> = takes.iter().map(|t| clamp(t.limit)).collect();
                let costs: Vec<i64> = takes.iter().map(|t| clamp(t.cost)).collect();
                let out: Vec<i64> = pg(sqlx::query_scalar(
                    "SELECT bitrouter_rate_take_buckets($1, $2, $3, $4, $5)",
                )
                .bind(&keys)
                .bind(now)
                .bind(SPAN)
                .bind(&limits)
                .bind(&costs)
                .fetch_one(pool))
                .await?;
                counts_from(&out, takes.len())?
            }
        };
        Ok(takes
            .iter()
            .zip(before)
            .map(|(t, c)| decide(&c, now_ms, t.limit, t.cost))
            .collect())
    }

    /// Adds `delta` to what `key` took in `bucket` (a token reservation settled to the
    /// real usage).
    pub async fn adjust(&self, key: &str, bucket: i64, delta: i64) -> Result<(), StoreError> {
        if delta == 0 {
            return Ok(());
        }
        match self {
            Store::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = map.get_mut(key) {
                    c.adjust(bucket, delta);
                }
            }
            Store::Redis(redis) => {
                let mut conn = redis.connection().await?;
                let _: i64 = ADJUST_SCRIPT
                    .key(key)
                    .arg(bucket)
                    .arg(delta)
                    .invoke_async(&mut conn)
                    .await?;
            }
            Store::Postgres(pool) => {
                pg(sqlx::query(PG_ADJUST)
                    .bind(key)
                    .bind(bucket)
                    .bind(delta)
                    .execute(pool))
                .await?;
            }
        }
        Ok(())
    }
}

/// A Redis client and its connection manager, made on first use.
pub struct RedisConn {
    client: redis::Client,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
}

impl RedisConn {
    /// The shared connection; a failed connect is retried by the next request.
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                // Short: a request waits for this when Redis is down.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(std::time::Duration::from_millis(500)))
                    .set_response_timeout(Some(std::time::Duration::from_secs(1)))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?;
        Ok(conn.clone())
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `[allowed, n1, bucket, taken, …, n2, …]` → each key's buckets before the take.
fn counts_from(out: &[i64], n: usize) -> Result<Vec<Counts>, StoreError> {
    let bad = || StoreError::Answer(format!("{} values for {n} keys", out.len()));
    let mut rest = out.get(1..).ok_or_else(bad)?;
    let mut counts = Vec::with_capacity(n);
    for _ in 0..n {
        let (&pairs, tail) = rest.split_first().ok_or_else(bad)?;
        let len = usize::try_from(pairs)
            .map_err(|_| bad())?
            .checked_mul(2)
            .ok_or_else(bad)?;
        if tail.len() < len {
            return Err(bad());
        }
        let (slots, tail) = tail.split_at(len);
        counts.push(Counts::from_slots(
            slots
                .chunks_exact(2)
                .map(|p| (p[0], u64::try_from(p[1]).unwrap_or(0))),
        ));
        rest = tail;
    }
    if rest.is_empty() {
        Ok(counts)
    } else {
        Err(bad())
    }
}

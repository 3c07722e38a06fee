//! Where the windows live: this process's memory, Redis (an atomic Lua script per check) or
//! PostgreSQL (one function call per check, rows locked in key order). Every store takes a
//! request's limits all or nothing in one step, so a request refused by one limit takes
//! nothing from the others, and replicas sharing a store never admit more than a limit.

use std::collections::HashMap;
use std::sync::Mutex;

use super::window::{Counts, Decision, decide, fits, position};

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
}

/// Most keys the memory store tracks; windows two minutes old are swept first. The keys
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

/// The check-and-take script: reads every key's counts, shifts them to the current window,
/// and takes every cost only if all fit (same integer arithmetic as `window.rs`). Returns
/// `[allowed, current1, previous1, current2, previous2, …]` as they were before the take.
const TAKE_LUA: &str = r#"
local w = tonumber(ARGV[1])
local into = tonumber(ARGV[2])
local W = tonumber(ARGV[3])
local n = #KEYS
local cur, prev = {}, {}
local ok = 1
for i = 1, n do
  local h = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local kw = tonumber(h[1]) or w
  local c = tonumber(h[2]) or 0
  local p = tonumber(h[3]) or 0
  if kw == w - 1 then p = c; c = 0 elseif kw < w - 1 then p = 0; c = 0 end
  cur[i] = c; prev[i] = p
  local limit = tonumber(ARGV[3 + 2 * i - 1])
  local cost = tonumber(ARGV[3 + 2 * i])
  if p * (W - into) + c * W + cost * W > limit * W then ok = 0 end
end
local out = {ok}
for i = 1, n do
  if ok == 1 then
    local cost = tonumber(ARGV[3 + 2 * i])
    redis.call('HSET', KEYS[i], 'w', w, 'c', cur[i] + cost, 'p', prev[i])
    redis.call('PEXPIRE', KEYS[i], 3 * W)
  end
  out[#out + 1] = cur[i]
  out[#out + 1] = prev[i]
end
return out
"#;

/// Settles a reservation: adds ARGV[2] (may be negative) to the count of window ARGV[1],
/// never below zero, if that window is still counted.
const ADJUST_LUA: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local kw = tonumber(h[1])
if not kw then return 0 end
local w = tonumber(ARGV[1])
local d = tonumber(ARGV[2])
local field
if kw == w then field = 'c' elseif kw == w + 1 then field = 'p' else return 0 end
local v = (tonumber(redis.call('HGET', KEYS[1], field)) or 0) + d
if v < 0 then v = 0 end
redis.call('HSET', KEYS[1], field, v)
return 1
"#;

/// The PostgreSQL side: one row per key, and a function that locks the request's rows in
/// key order (so concurrent checks cannot deadlock), decides and takes in one statement.
const PG_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS bitrouter_rate_windows (
    key TEXT PRIMARY KEY,
    w BIGINT NOT NULL,
    c BIGINT NOT NULL,
    p BIGINT NOT NULL
);
CREATE OR REPLACE FUNCTION bitrouter_rate_take(
    keys TEXT[], win BIGINT, into_ms BIGINT, wlen BIGINT, limits BIGINT[], costs BIGINT[]
) RETURNS BIGINT[] AS $$
DECLARE
    i INT;
    r RECORD;
    cur BIGINT[] := '{}';
    prev BIGINT[] := '{}';
    ok BOOLEAN := TRUE;
    c BIGINT;
    p BIGINT;
    out BIGINT[];
BEGIN
    INSERT INTO bitrouter_rate_windows (key, w, c, p)
        SELECT k, win, 0, 0 FROM unnest(keys) AS k ORDER BY k
        ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM bitrouter_rate_windows WHERE key = ANY(keys) ORDER BY key FOR UPDATE;
    FOR i IN 1 .. array_length(keys, 1) LOOP
        SELECT * INTO r FROM bitrouter_rate_windows WHERE key = keys[i];
        c := r.c; p := r.p;
        IF r.w = win - 1 THEN p := c; c := 0;
        ELSIF r.w < win - 1 THEN p := 0; c := 0;
        END IF;
        cur := cur || c; prev := prev || p;
        IF p::NUMERIC * (wlen - into_ms) + c::NUMERIC * wlen + costs[i]::NUMERIC * wlen
            > limits[i]::NUMERIC * wlen THEN
            ok := FALSE;
        END IF;
    END LOOP;
    out := ARRAY[CASE WHEN ok THEN 1 ELSE 0 END]::BIGINT[];
    FOR i IN 1 .. array_length(keys, 1) LOOP
        IF ok THEN
            UPDATE bitrouter_rate_windows
                SET w = GREATEST(w, win), c = cur[i] + costs[i], p = prev[i]
                WHERE key = keys[i];
        END IF;
        out := out || cur[i] || prev[i];
    END LOOP;
    RETURN out;
END;
$$ LANGUAGE plpgsql;
"#;

/// Scripts are hashed once; Redis runs them by hash (`EVALSHA`), loading on first use.
static TAKE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(TAKE_LUA));
static ADJUST_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(ADJUST_LUA));

const PG_ADJUST: &str = "UPDATE bitrouter_rate_windows SET
    c = CASE WHEN w = $2 THEN GREATEST(c + $3, 0) ELSE c END,
    p = CASE WHEN w = $2 + 1 THEN GREATEST(p + $3, 0) ELSE p END
    WHERE key = $1";

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
        let (window, into) = position(now_ms);
        let before: Vec<Counts> = match self {
            Store::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                let counts = takes
                    .iter()
                    .map(|t| map.get(&t.key).copied().unwrap_or_default().at(window))
                    .collect::<Vec<_>>();
                let all_fit = takes
                    .iter()
                    .zip(&counts)
                    .all(|(t, c)| fits(*c, into, t.limit, t.cost));
                if all_fit {
                    if map.len() + takes.len() > MAX_MEMORY_KEYS {
                        map.retain(|_, c| c.window + 1 >= window);
                        if map.len() + takes.len() > MAX_MEMORY_KEYS {
                            return Err(StoreError::Full(MAX_MEMORY_KEYS));
                        }
                    }
                    for (t, c) in takes.iter().zip(&counts) {
                        map.insert(
                            t.key.clone(),
                            Counts {
                                current: c.current + t.cost,
                                ..*c
                            },
                        );
                    }
                }
                counts
            }
            Store::Redis(redis) => {
                let mut script = TAKE_SCRIPT.prepare_invoke();
                for t in takes {
                    script.key(&t.key);
                }
                script.arg(window).arg(into).arg(super::window::WINDOW_MS);
                for t in takes {
                    script.arg(t.limit).arg(t.cost);
                }
                let mut conn = redis.connection().await?;
                let out: Vec<i64> = script.invoke_async(&mut conn).await?;
                counts_from(&out, takes.len(), window)?
            }
            Store::Postgres(pool) => {
                // Locked in key order inside the function; answers come back in that order.
                let mut order: Vec<usize> = (0..takes.len()).collect();
                order.sort_by(|a, b| takes[*a].key.cmp(&takes[*b].key));
                let keys: Vec<&str> = order.iter().map(|&i| takes[i].key.as_str()).collect();
                let limits: Vec<i64> = order.iter().map(|&i| clamp(takes[i].limit)).collect();
                let costs: Vec<i64> = order.iter().map(|&i| clamp(takes[i].cost)).collect();
                let out: Vec<i64> =
                    sqlx::query_scalar("SELECT bitrouter_rate_take($1, $2, $3, $4, $5, $6)")
                        .bind(&keys)
                        .bind(window)
                        .bind(into as i64)
                        .bind(super::window::WINDOW_MS)
                        .bind(&limits)
                        .bind(&costs)
                        .fetch_one(pool)
                        .await?;
                let sorted = counts_from(&out, takes.len(), window)?;
                let mut counts = vec![Counts::default(); takes.len()];
                for (pos, &i) in order.iter().enumerate() {
                    counts[i] = sorted[pos];
                }
                counts
            }
        };
        Ok(takes
            .iter()
            .zip(before)
            .map(|(t, c)| decide(c, into, t.limit, t.cost))
            .collect())
    }

    /// Adds `delta` to what `key` counted in `window` (a token reservation settled to the
    /// real usage).
    pub async fn adjust(&self, key: &str, window: i64, delta: i64) -> Result<(), StoreError> {
        if delta == 0 {
            return Ok(());
        }
        match self {
            Store::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = map.get_mut(key) {
                    c.adjust(window, delta);
                }
            }
            Store::Redis(redis) => {
                let mut conn = redis.connection().await?;
                let _: i64 = ADJUST_SCRIPT
                    .key(key)
                    .arg(window)
                    .arg(delta)
                    .invoke_async(&mut conn)
                    .await?;
            }
            Store::Postgres(pool) => {
                sqlx::query(PG_ADJUST)
                    .bind(key)
                    .bind(window)
                    .bind(delta)
                    .execute(pool)
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

/// `[allowed, c1, p1, c2, p2, …]` → the counts before the take.
fn counts_from(out: &[i64], n: usize, window: i64) -> Result<Vec<Counts>, StoreError> {
    if out.len() != 1 + 2 * n {
        return Err(StoreError::Answer(format!(
            "{} values for {n} keys",
            out.len()
        )));
    }
    Ok((0..n)
        .map(|i| Counts {
            window,
            current: out[1 + 2 * i].max(0) as u64,
            previous: out[2 + 2 * i].max(0) as u64,
        })
        .collect())
}

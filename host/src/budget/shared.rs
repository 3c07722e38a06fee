//! Budgets shared by every replica through PostgreSQL. Each change is one transaction that
//! locks the budget's row (`INSERT … ON CONFLICT DO UPDATE … RETURNING` creates it or locks
//! it, in one statement), applies the same window rules as the in-process map, and writes
//! the row back: replicas queue on the row lock, so no two ever admit against the same sum.

use sqlx::{PgPool, Row};

use super::BudgetError;
use super::window::{Remaining, State};
use crate::caller::BudgetClaim;

pub struct Shared {
    pool: PgPool,
}

const LOCK: &str = "INSERT INTO budgets (budget_key, window_start_ms, rounds, spent_nano_usd, reserved_nano_usd, reserved_until_ms) \
    VALUES ($1, $2, 0, 0, 0, 0) \
    ON CONFLICT (budget_key) DO UPDATE SET budget_key = EXCLUDED.budget_key \
    RETURNING window_start_ms, rounds, spent_nano_usd, reserved_nano_usd, reserved_until_ms";
const WRITE: &str = "UPDATE budgets SET window_start_ms = $2, rounds = $3, spent_nano_usd = $4, \
    reserved_nano_usd = $5, reserved_until_ms = $6 WHERE budget_key = $1";
const READ: &str = "SELECT window_start_ms, rounds, spent_nano_usd, reserved_nano_usd, reserved_until_ms \
    FROM budgets WHERE budget_key = $1";

fn state(row: &sqlx::postgres::PgRow) -> Result<State, sqlx::Error> {
    let n = |i: usize| -> Result<u64, sqlx::Error> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
    Ok(State {
        window_start_ms: row.try_get(0)?,
        rounds: n(1)?,
        spent_nano_usd: n(2)?,
        reserved_nano_usd: n(3)?,
        reserved_until_ms: row.try_get(4)?,
    })
}

impl Shared {
    pub fn new(pool: PgPool) -> Shared {
        Shared { pool }
    }

    /// Runs `f` on the budget `key` with its row locked, and stores the result.
    pub async fn with<R>(
        &self,
        key: &str,
        now_ms: i64,
        f: impl FnOnce(&mut State) -> R,
    ) -> Result<R, BudgetError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(LOCK)
            .bind(key)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
        // A new row's window starts at the request that created it ($2).
        let mut s = state(&row)?;
        let before = s;
        let r = f(&mut s);
        if s != before {
            sqlx::query(WRITE)
                .bind(key)
                .bind(s.window_start_ms)
                .bind(s.rounds as i64)
                .bind(s.spent_nano_usd as i64)
                .bind(s.reserved_nano_usd as i64)
                .bind(s.reserved_until_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(r)
    }

    pub async fn peek(
        &self,
        key: &str,
        claim: &BudgetClaim,
        now_ms: i64,
    ) -> Result<Remaining, BudgetError> {
        let row = sqlx::query(READ)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let mut s = match row {
            Some(r) => state(&r)?,
            None => State::new(now_ms),
        };
        Ok(s.peek(claim, now_ms))
    }
}

//! Budget enforcement: before a request is forwarded its worst-case cost is reserved against
//! the caller's budget window; when it ends the reservation is settled to the real cost (a
//! failure settles to what it cost, usually nothing). Kept beside the spend ledger: in
//! memory (+ redb/SQLite/MySQL persistence) for one process, in PostgreSQL for replicas.

mod local;
mod shared;
pub mod window;
pub mod worst;

use std::sync::Arc;

use crate::caller::{BudgetClaim, BudgetScope, BudgetWindow};
use crate::spend::Ledger;
use crate::spend::store::Store;

pub use window::{BudgetExceeded, Remaining, Reset, State};
pub use worst::{InputBound, input_bound, output_bound, plan_worst_case, worst_cost_nano_usd};

/// The response header carrying what is left of the caller's budget, in micro-USD.
pub const REMAINING_HEADER: &str = "x-bitrouter-budget-remaining";

/// Why a budgeted request was refused.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The request's worst case does not fit in what is left.
    #[error(transparent)]
    Exceeded(#[from] BudgetExceeded),
    /// The budget store could not be read or written; the request is refused (fail closed).
    #[error("budget store: {0}")]
    Store(String),
}

impl From<sqlx::Error> for BudgetError {
    fn from(e: sqlx::Error) -> Self {
        BudgetError::Store(e.to_string())
    }
}

impl BudgetExceeded {
    /// The 402 in the caller's dialect: the message says it in words, the error object
    /// carries `remaining_micro_usd`, `limit_micro_usd`, `required_micro_usd` and the reset
    /// (`resets_at` RFC 3339 for a duration window, `resets_after_requests` for rounds).
    pub fn to_error(&self) -> crate::error::Error {
        use serde_json::json;
        let r = &self.remaining;
        let mut d = serde_json::Map::new();
        d.insert("remaining_micro_usd".into(), json!(r.remaining_micro_usd));
        d.insert("limit_micro_usd".into(), json!(r.limit_micro_usd));
        d.insert(
            "required_micro_usd".into(),
            json!(self.needed_nano_usd.div_ceil(1000)),
        );
        let (at, after) = match r.reset {
            Reset::Never => (None, None),
            Reset::At(ms) => (Some(window::rfc3339(ms)), None),
            Reset::AfterRequests(n) => (None, Some(n)),
        };
        d.insert("resets_at".into(), json!(at));
        d.insert("resets_after_requests".into(), json!(after));
        crate::error::Error::new(crate::error::ErrorKind::BudgetExceeded, self.to_string())
            .with_details(d)
    }
}

/// Every budget this gateway enforces. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Budgets {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Shared stores only: how long a reservation counts if its replica never settles it.
    ttl_ms: i64,
}

enum Backend {
    Local(Arc<local::Local>),
    Shared(shared::Shared),
}

fn now_ms() -> i64 {
    crate::spend::query_now_ms()
}

impl Budgets {
    /// Budgets kept in memory only (lost on restart).
    pub fn memory() -> Budgets {
        Budgets::local(local::Local::start(
            local::Persist::None,
            Default::default(),
            std::time::Duration::ZERO,
        ))
    }

    fn local(l: Arc<local::Local>) -> Budgets {
        Budgets {
            inner: Arc::new(Inner {
                backend: Backend::Local(l),
                ttl_ms: 0,
            }),
        }
    }

    /// Budgets stored in the ledger's database: PostgreSQL enforces them in the database
    /// (shared by every replica); redb, SQLite and MySQL keep them in this process and
    /// persist the changes of each `database.flush_interval` in one commit, as the ledger
    /// does its rows (rebuilt from there on start); memory keeps them in memory. `reservation_ttl` bounds how long a dead replica's reservation counts.
    pub async fn open(
        ledger: &Ledger,
        reservation_ttl: std::time::Duration,
    ) -> Result<Budgets, BudgetError> {
        let persist = match ledger.store() {
            Store::Memory(_) => local::Persist::None,
            Store::Redb(db) => local::Persist::Redb(db.clone()),
            Store::Sqlite(p) => local::Persist::Sqlite(p.clone()),
            Store::MySql(p) => local::Persist::MySql(p.clone()),
            Store::Postgres(p) => {
                return Ok(Budgets {
                    inner: Arc::new(Inner {
                        backend: Backend::Shared(shared::Shared::new(p.clone())),
                        ttl_ms: reservation_ttl.as_millis().max(1) as i64,
                    }),
                });
            }
        };
        let states = persist.load().await?;
        Ok(Budgets::local(local::Local::start(
            persist,
            states,
            ledger.flush_interval(),
        )))
    }

    /// Where budgets live: `memory`, `redb`, `sqlite`, `mysql` (this process) or `postgres`
    /// (shared).
    pub fn engine(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Local(l) => l.engine(),
            Backend::Shared(_) => "postgres",
        }
    }

    /// Holds the worst case of `request` at the dearest of `targets` against `caller`'s
    /// budget; `Ok(None)` for a caller without one. A budgeted request without an output
    /// cap gets `default_max_output` as its cap first, so no answer can cost more than the
    /// hold (see `worst.rs` for the bound).
    pub async fn hold_for(
        &self,
        caller: Option<&crate::caller::Caller>,
        request: &mut crate::canonical::Request,
        targets: &[Arc<crate::router::Target>],
        default_max_output: u64,
        default_max_input: u64,
    ) -> Result<Option<Reservation>, BudgetError> {
        let Some((claim, id)) = caller.and_then(crate::caller::Caller::budget_key) else {
            return Ok(None);
        };
        request.max_tokens.get_or_insert(default_max_output);
        let worst = plan_worst_case(request, targets, default_max_output, default_max_input);
        self.reserve(id, &claim, worst).await.map(Some)
    }

    /// Reserves `worst_nano_usd` against the budget `claim` describes for `id` (the session
    /// or account, per the claim's scope), or refuses with what is left and when it resets.
    pub async fn reserve(
        &self,
        id: &str,
        claim: &BudgetClaim,
        worst_nano_usd: u64,
    ) -> Result<Reservation, BudgetError> {
        let key = storage_key(id, claim);
        let now = now_ms();
        let after = match &self.inner.backend {
            Backend::Local(l) => {
                l.with(&key, now, |s| s.reserve(claim, worst_nano_usd, now, None))?
            }
            Backend::Shared(s) => {
                let ttl = Some(self.inner.ttl_ms);
                s.with(&key, now, |st| st.reserve(claim, worst_nano_usd, now, ttl))
                    .await??
            }
        };
        Ok(Reservation {
            budgets: self.clone(),
            key,
            claim: *claim,
            amount: worst_nano_usd,
            after,
            open: true,
        })
    }

    /// What is left of a budget, without reserving anything.
    pub async fn remaining(&self, id: &str, claim: &BudgetClaim) -> Result<Remaining, BudgetError> {
        let key = storage_key(id, claim);
        let now = now_ms();
        match &self.inner.backend {
            Backend::Local(l) => Ok(l.peek(&key, claim, now)),
            Backend::Shared(s) => s.peek(&key, claim, now).await,
        }
    }

    async fn settle(
        &self,
        key: &str,
        claim: &BudgetClaim,
        reserved: u64,
        actual: u64,
    ) -> Result<Remaining, BudgetError> {
        let now = now_ms();
        match &self.inner.backend {
            Backend::Local(l) => Ok(l.with(key, now, |s| s.settle(claim, reserved, actual, now))),
            Backend::Shared(s) => {
                s.with(key, now, |st| st.settle(claim, reserved, actual, now))
                    .await
            }
        }
    }

    /// Writes what is not yet persisted and stops the writer (shutdown).
    pub async fn close(&self) {
        if let Backend::Local(l) = &self.inner.backend {
            l.close().await;
        }
    }
}

/// The key a budget is stored under: scope, window and id, so tokens of one account that
/// carry different windows keep different budgets.
fn storage_key(id: &str, claim: &BudgetClaim) -> String {
    let scope = match claim.scope {
        BudgetScope::Session => "s",
        BudgetScope::Account => "a",
    };
    let window = match claim.window {
        BudgetWindow::Lifetime => "life".to_owned(),
        BudgetWindow::Rounds(n) => format!("r{n}"),
        BudgetWindow::Duration(d) => format!("d{}", d.as_millis()),
    };
    format!("{scope}:{window}:{id}")
}

/// An admitted request's hold on its budget. Settle it with the real cost when the request
/// ends; dropping it unsettled releases it (a caller that hung up, a task that was cancelled).
pub struct Reservation {
    budgets: Budgets,
    key: String,
    claim: BudgetClaim,
    amount: u64,
    after: Remaining,
    open: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("key", &self.key)
            .field("amount_nano_usd", &self.amount)
            .finish()
    }
}

impl Reservation {
    /// The amount held, in nano-USD.
    pub fn amount_nano_usd(&self) -> u64 {
        self.amount
    }

    /// What was left right after this reservation was taken.
    pub fn remaining(&self) -> Remaining {
        self.after
    }

    /// Replaces the reservation with `actual_nano_usd` (the ledger row's cost).
    pub async fn settle(mut self, actual_nano_usd: u64) -> Result<Remaining, BudgetError> {
        self.open = false;
        self.budgets
            .settle(&self.key, &self.claim, self.amount, actual_nano_usd)
            .await
    }

    /// Settles without waiting, for paths that cannot await (a dropped stream): at once in
    /// this process, on a spawned task for a shared store.
    pub fn settle_detached(mut self, actual_nano_usd: u64) {
        self.open = false;
        self.detach(actual_nano_usd);
    }

    fn detach(&self, actual: u64) {
        let (budgets, key, claim, amount) = (
            self.budgets.clone(),
            self.key.clone(),
            self.claim,
            self.amount,
        );
        match &budgets.inner.backend {
            Backend::Local(l) => {
                let now = now_ms();
                l.with(&key, now, |s| s.settle(&claim, amount, actual, now));
            }
            Backend::Shared(_) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        if let Err(e) = budgets.settle(&key, &claim, amount, actual).await {
                            tracing::warn!(error = %e, budget = %key, "budget settle failed; the reservation expires after budgets.reservation_ttl");
                        }
                    });
                }
                Err(_) => {
                    tracing::warn!(budget = %key, "no runtime to settle a budget reservation; it expires after budgets.reservation_ttl");
                }
            },
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            self.open = false;
            self.detach(0);
        }
    }
}

#[cfg(test)]
mod tests;

//! Spend: what each request cost and where that is kept. `cost` turns usage into nano-USD
//! with integer arithmetic; `ledger` records one row per request off the hot path (bounded
//! queue, group commits) into redb, SQLite, PostgreSQL, MySQL or memory, and answers
//! grouped queries.

pub mod cost;
pub mod ledger;
mod query;
mod record;
mod schema;
pub(crate) mod store;

pub use cost::{PriceTable, TokenBreakdown, cost_nano_usd};
pub use ledger::{Ledger, LedgerError, LedgerStats};
pub use query::{GroupBy, SpendGroup, SpendQuery, now_ms as query_now_ms, parse_time};
pub use record::SpendRecord;
pub(crate) use store::Store;

//! One ledger row: a finished request with its token breakdown and cost.

use serde::{Deserialize, Serialize};

use super::cost::TokenBreakdown;

/// One ledger row: a finished request, what it used and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRecord {
    /// The request id (`x-request-id`).
    pub id: String,
    /// When the request arrived, Unix milliseconds.
    pub time_ms: i64,
    /// The caller's CAIP-10 account; `None` without auth.
    pub account: Option<String>,
    /// The caller's session.
    pub session: Option<String>,
    /// The caller's registered agent name; absent in rows written before agent cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The route (virtual model) named by the caller, if it was one.
    pub route: Option<String>,
    /// The provider and upstream model that served it (or were tried last).
    pub provider: Option<String>,
    /// The upstream model id.
    pub model: Option<String>,
    /// Tokens charged, by price category.
    pub tokens: TokenBreakdown,
    /// What the request cost, in nano-USD (0 when the model has no price).
    pub cost_nano_usd: u64,
    /// End-to-end time, in milliseconds.
    pub latency_ms: u64,
    /// No error reached the caller.
    pub success: bool,
    /// The error's kind, when it failed.
    pub error_type: Option<String>,
    /// Attempts made (1 unless there was failover; 0 if it failed before any).
    pub attempts: u32,
    /// Tokens were estimated (a stream cut before the upstream reported usage).
    pub estimated: bool,
}

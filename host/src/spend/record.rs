//! One ledger row: a finished request with its token breakdown and cost.

use serde::{Deserialize, Serialize};

use super::cost::TokenBreakdown;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRecord {
    /// The request id (`x-request-id`).
    pub id: String,
    /// When the request arrived, Unix milliseconds.
    pub time_ms: i64,
    pub account: Option<String>,
    pub session: Option<String>,
    /// The caller's registered agent name; absent in rows written before agent cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The route (virtual model) named by the caller, if it was one.
    pub route: Option<String>,
    /// The provider and upstream model that served it (or were tried last).
    pub provider: Option<String>,
    pub model: Option<String>,
    pub tokens: TokenBreakdown,
    pub cost_nano_usd: u64,
    pub latency_ms: u64,
    pub success: bool,
    pub error_type: Option<String>,
    pub attempts: u32,
    /// Tokens were estimated (a stream cut before the upstream reported usage).
    pub estimated: bool,
}

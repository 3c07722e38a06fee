//! The admin API: every `/admin/*` endpoint's document, built from the parts of the gateway
//! it reports on (the gateway routes to these and owns reloading). All of it needs an admin
//! token when auth is on (`routes::Access::Admin`), except the dashboard's static page.

mod dashboard;
mod metrics;
mod plugins;
mod spend;

pub use dashboard::dashboard;
pub use metrics::{metrics_document, prometheus};
pub use plugins::{guardrail_patterns, plugins_document};
pub use spend::{parse_spend_query, spend, usd};

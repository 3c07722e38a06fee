//! BitRouter: one binary between AI agents and LLM providers.
//!
//! A request travels these modules top-down:
//!
//! ```text
//! server     hyper accept loop(s), header timeout, graceful shutdown, SIGHUP reload
//! gateway    the app assembled from the config (router, upstream, ledger, plugins, auth)
//! dispatch   request id → route → token check → handler
//!   routes     the route table: path, method, access rule, handler
//!   auth       token → verified caller (wallet / operator JWTs, allowlists, cache)
//!   admin      /admin/* documents (spend, metrics, plugins, dashboard)
//!   agents     A2A agent cards
//! proxy      one model call: decode → guard → budget → plan → try targets → answer
//!   api        dialect codecs (OpenAI chat and responses, Anthropic, Gemini) ⇄ canonical
//!   guardrails the firewall over both directions (patterns from plugins and config)
//!   budget     worst-case reservation and settlement
//!   router     model name → ordered targets; priority / load_balance; cool-down
//!   upstream   the shared HTTP client; error classification for failover
//!   stream     upstream SSE → canonical events → the caller's SSE
//! outcome    after the answer: log line, metrics, ledger row, observers
//! respond    response body type and helpers every handler shares
//! ```
//!
//! `config` is read once at start; `plugins` loads and sandboxes WASM components; `canonical`,
//! `caller`, `context` and `error` are shared vocabulary; `spend` and `observe` are the
//! outcome's sinks; `background` runs housekeeping (ledger commits, plugin renewals) at a
//! lower CPU priority than requests.

#![warn(missing_docs)]
// A failed `unwrap` is a panic in a request; product code says what went wrong instead.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// In request order (blank lines keep rustfmt from sorting them).
pub mod server;

pub mod gateway;

pub mod dispatch;

pub mod routes;

pub mod auth;

pub mod admin;

pub mod agents;

pub mod proxy;

pub mod api;

pub mod guardrails;

pub mod budget;

pub mod ratelimit;

pub mod router;

pub mod upstream;

pub mod stream;

pub mod outcome;

pub mod respond;

// Shared vocabulary and the outcome's sinks.
pub mod background;
pub mod caller;
pub mod canonical;
pub mod config;
pub mod context;
pub mod error;
pub mod log_writer;
pub mod observe;
pub mod plugins;
pub mod spend;

pub use config::Config;
pub use gateway::Gateway;
pub use server::{bind_per_core, serve, serve_per_core};

//! BitRouter: one binary between AI agents and LLM providers.
//!
//! A request travels these modules top-down:
//!
//! ```text
//! server    hyper accept loop, request id, body limit, route table
//! auth      token → verified caller (wallet / operator JWTs, allowlists, cache)
//! proxy     one model call: decode → plan → try targets (failover) → answer
//!   api       dialect codecs (OpenAI chat, Anthropic messages, Gemini) ⇄ canonical
//!   router    model name → ordered targets; priority / load_balance; cool-down
//!   upstream  the shared HTTP client; error classification for failover
//!   stream    upstream SSE → canonical events → the caller's SSE
//! ```
//!
//! `config` is read once at start; `canonical` and `error` are shared vocabulary.

pub mod admin;
pub mod agents;
pub mod api;
pub mod auth;
pub mod budget;
pub mod caller;
pub mod canonical;
pub mod config;
pub mod context;
pub mod error;
pub mod guardrails;
pub mod log_writer;
pub mod observe;
pub mod outcome;
pub mod plugins;
pub mod proxy;
pub mod router;
pub mod server;
pub mod spend;
pub mod stream;
pub mod upstream;

pub use config::Config;
pub use server::{Gateway, serve};

//! BitRouter: one binary between AI agents and LLM providers.
pub mod api;
pub mod canonical;
pub mod error;
pub mod config;

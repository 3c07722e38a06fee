//! A mock LLM upstream speaking OpenAI Chat Completions, Anthropic Messages, Gemini
//! `generateContent` and a Cohere-chat-style API (`POST /v1/chat`, reached through the gateway's
//! adapter plugin), for the gateway's integration tests (in-process), its benchmark
//! (`bitrouter-bench` runs it as a pinned child process) and manual testing (the
//! `mock-upstream` binary). See `mock/README.md` for the routes, knobs and wire shapes.
//!
//! Start one with [`MockServer::start`] (or [`MockServer::builder`] to turn recording off), point
//! the gateway at [`MockServer::base_url`], and steer it with a [`MockBehavior`]: for the whole
//! instance ([`MockServer::set_behavior`]), or per request with an `x-mock: {json}` header or a
//! `[[mock {json}]]` directive in the text of the last user message. Overrides merge field by
//! field over the instance behavior (header first, then directives); `null` clears an optional
//! field; unknown fields or bad JSON get a 400 that says what is wrong.

mod anthropic;
mod behavior;
mod body;
mod cohere;
mod gemini;
mod openai;
mod reply;
mod request;
mod server;

/// The line a served mock prints on stdout once it listens (the `mock-upstream` binary, and
/// `bench --internal-mock`); its address follows, e.g. `127.0.0.1:9999`.
pub const BANNER: &str = "mock-upstream listening on http://";

pub use behavior::{DEFAULT_CHUNKS, DEFAULT_TEXT, MAX_CHUNKS, MAX_DELAY_MS, MockBehavior};
pub use server::{MockServer, MockServerBuilder, RecordedRequest};

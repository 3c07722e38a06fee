//! Anthropic Messages: wire types and both directions of translation — a caller's request
//! into canonical and answers back out (`decode_request`, `encode_response`, `StreamEncoder`),
//! and canonical requests out to an Anthropic upstream and its answers back in
//! (`encode_request`, `decode_response`, `StreamDecoder`).

mod caller;
mod upstream;

#[cfg(test)]
mod tests;

pub use caller::*;
pub use upstream::*;

use crate::canonical::Dialect;

/// Anthropic's API version this gateway speaks upstream, whatever the caller sent.
pub const API_VERSION: &str = "2023-06-01";

/// The header Anthropic takes the API key in.
pub const KEY_HEADER: &str = "x-api-key";

/// The header every Anthropic client sends; it marks a caller of this dialect on routes
/// shared with OpenAI's (`GET /v1/models`).
pub const VERSION_HEADER: &str = "anthropic-version";

const DIALECT: Dialect = Dialect::Anthropic;

/// The header that switches Anthropic beta features on; passed to an Anthropic upstream.
pub const BETA_HEADER: &str = "anthropic-beta";

/// Anthropic requires `max_tokens`; callers of other dialects may leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

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

const DIALECT: Dialect = Dialect::Anthropic;

/// Anthropic requires `max_tokens`; callers of other dialects may leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

//! Google Gemini `generateContent`: wire handling and both directions of translation — a
//! caller's request (model and stream come from the URL) into canonical and answers back out
//! (`decode_request`, `encode_response`, `StreamEncoder`), and canonical requests out to a
//! Gemini upstream and its answers back in (`encode_request`, `decode_response`, `StreamDecoder`).

mod caller;
mod upstream;

#[cfg(test)]
mod tests;

pub use caller::*;
pub use upstream::*;

use crate::canonical::Dialect;

/// The header Google's SDKs send the API key in; it marks a caller of this dialect.
pub const KEY_HEADER: &str = "x-goog-api-key";

const DIALECT: Dialect = Dialect::Gemini;

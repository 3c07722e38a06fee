//! OpenAI Chat Completions: wire types and both directions of translation — a caller's
//! request into canonical and canonical answers back out (`decode_request`, `encode_response`,
//! `StreamEncoder`), and canonical requests out to an OpenAI-compatible upstream and its
//! answers back in (`encode_request`, `decode_response`, `StreamDecoder`).

mod caller;
mod upstream;

#[cfg(test)]
mod tests;

pub use caller::*;
pub use upstream::*;

use crate::canonical::Dialect;

const DIALECT: Dialect = Dialect::OpenAiChat;

//! OpenAI Responses (`/v1/responses`): wire handling and both directions of translation — a
//! caller's request into canonical and answers back out as `response` objects and named SSE
//! events (`decode_request`, `encode_response`, `StreamEncoder`), and canonical requests out to
//! a Responses upstream and its answers back in (`encode_request`, `decode_response`,
//! `StreamDecoder`). The gateway is stateless: what needs OpenAI's stored state is refused for
//! any other upstream (`needs_responses_upstream`).

mod from_caller;
mod to_caller;
mod upstream;

#[cfg(test)]
mod tests;

pub use from_caller::{decode_request, needs_responses_upstream};
pub use to_caller::{StreamEncoder, encode_response};
pub use upstream::{StreamDecoder, decode_response, encode_request, upstream_url};

use crate::canonical::Dialect;

const DIALECT: Dialect = Dialect::OpenAiResponses;

/// Content-part types: an opaque value of one of these lives inside a message's `content`;
/// any other opaque value is a whole input item (a reasoning item, an `item_reference`, ...).
const CONTENT_TYPES: [&str; 7] = [
    "input_text",
    "input_image",
    "input_file",
    "input_audio",
    "output_text",
    "refusal",
    "reasoning_text",
];

/// Whether an opaque value is a content part (it lives inside a message's `content`).
fn is_content_type(v: &serde_json::Value) -> bool {
    v.get("type")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|t| CONTENT_TYPES.contains(&t))
}

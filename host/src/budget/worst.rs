//! A request's worst-case cost before it is forwarded: an upper bound on what the provider
//! can bill for *this* request, in any dialect, at the dearest price of every endpoint the
//! plan may try.
//!
//! The bound, and why each term holds:
//! 1. **Input the gateway can see**: one token per byte of every string the upstream body
//!    carries to the model — message text, tool calls and results, tool definitions
//!    (name, description, JSON schema), and every dialect field the gateway does not model
//!    (`response_format` and its JSON schema, Responses `text.format`, Anthropic
//!    `output_config`, Gemini `generationConfig.responseSchema`, …) at its serialized
//!    length. A BPE or SentencePiece token never covers less than one byte, so a provider
//!    cannot turn N bytes into more than N tokens.
//! 2. **What providers add**: 8 tokens per message for the chat template's role markers, and
//!    [`TOOLS_PREAMBLE_TOKENS`] once when tools are declared (Anthropic documents a
//!    346-token tool-use system prompt; OpenAI renders tools into a namespace preamble).
//! 3. **Images**: [`IMAGE_TOKENS`] each, inline or by URL — every provider resizes or tiles
//!    an image to a bounded token count.
//! 4. **Input the gateway cannot see**: content the provider fetches or keeps itself — an
//!    opaque part (documents, files, audio), stored state (Responses `previous_response_id`,
//!    `conversation`, `prompt`; Gemini `cachedContent`), built-in tools that add what they
//!    find (web search, file search, URL context, MCP servers). Nothing but the model's
//!    context window bounds these, so the input bound becomes the endpoint's
//!    `max_input_tokens` (from the registry or config), or
//!    `budgets.default_max_input_tokens` where the model's window is not known.
//! 5. **Output**: `max_tokens` (or `budgets.default_max_output_tokens`, which the gateway
//!    then sends upstream as the cap) plus Gemini's `thinkingBudget` where one is set, times
//!    the number of choices (`n`, `candidateCount`).
//!
//! Every input token is priced at the dearest input category and every output token at the
//! dearest output one, so whichever split the provider reports, its cost fits.

use serde_json::{Map, Value};

use crate::canonical::{Dialect, Extra, Part, Request};
use crate::router::Target;
use crate::spend::PriceTable;

/// Per image, inline or by URL. The largest per-image counts at today's providers: Gemini 2
/// tiles a large image into up to 16 768-px tiles of 258 tokens (4,128); OpenAI's patch
/// models bill up to 1,536 patches × 1.62 (2,489); Anthropic caps an image near 1,600.
pub const IMAGE_TOKENS: u64 = 5_000;
/// Per message: role markers and separators every chat template adds.
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 8;
/// Once per request that declares tools: the provider's own tool-use instructions.
pub const TOOLS_PREAMBLE_TOKENS: u64 = 1_000;
/// Per tool definition: the framing around its name, description and schema.
const TOOL_OVERHEAD_TOKENS: u64 = 16;

/// What the gateway can bound of a request's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputBound {
    /// Tokens the provider can make of what the request carries (terms 1–3 above).
    pub tokens: u64,
    /// The provider also bills input the request only refers to (term 4): only the
    /// model's context window bounds it.
    pub unseen: bool,
}

impl InputBound {
    /// The bound for an endpoint whose model takes at most `context` input tokens.
    pub fn for_context(self, context: u64) -> u64 {
        if self.unseen {
            self.tokens.max(context)
        } else {
            self.tokens
        }
    }
}

/// An upper bound on the request's input tokens (see the module header).
pub fn input_bound(request: &Request) -> InputBound {
    let mut b = InputBound::default();
    for m in &request.messages {
        b.tokens += MESSAGE_OVERHEAD_TOKENS + extra_bytes(&m.extra);
        for p in &m.content {
            part(p, &mut b);
        }
    }
    for t in &request.tools {
        b.tokens += TOOL_OVERHEAD_TOKENS
            + t.name.len() as u64
            + t.description.as_ref().map_or(0, |d| d.len() as u64)
            + json_len(&t.parameters)
            + extra_bytes(&t.extra);
    }
    b.tokens += request.stop.iter().map(|s| s.len() as u64).sum::<u64>();
    let extra = &request.extra.fields;
    b.tokens += map_bytes(extra);
    if !request.tools.is_empty() || extra.contains_key("tools") {
        b.tokens += TOOLS_PREAMBLE_TOKENS;
    }
    b.unseen |= refers_to_unseen_input(request);
    b
}

fn part(p: &Part, b: &mut InputBound) {
    match p {
        Part::Text { text, extra } => b.tokens += text.len() as u64 + extra_bytes(extra),
        Part::Reasoning { text, signature } => {
            b.tokens += (text.len() + signature.as_ref().map_or(0, String::len)) as u64;
        }
        Part::ToolCall(c) => b.tokens += (c.id.len() + c.name.len() + c.arguments.len()) as u64,
        Part::ToolResult { content, extra, .. } => {
            b.tokens += extra_bytes(extra);
            for p in content {
                part(p, b);
            }
        }
        Part::Image { extra, .. } => b.tokens += IMAGE_TOKENS + extra_bytes(extra),
        Part::Opaque { value, .. } => {
            b.tokens += json_len(value);
            b.unseen = true;
        }
    }
}

/// Request fields that make the provider bill input the body does not carry.
fn refers_to_unseen_input(request: &Request) -> bool {
    let f = &request.extra.fields;
    let set = |k: &str| f.get(k).is_some_and(|v| !v.is_null());
    match request.extra.dialect {
        // Stored state, stored prompts, and built-in tools (function tools are canonical).
        Some(Dialect::OpenAiResponses) => {
            set("previous_response_id") || set("conversation") || set("prompt") || set("tools")
        }
        // Chat tools are all function tools (canonical); search is its own field.
        Some(Dialect::OpenAiChat) => set("web_search_options"),
        // Server tools (web search, web fetch, code execution: a tool with a `type` other
        // than `custom`) and remote MCP servers.
        Some(Dialect::Anthropic) => {
            set("mcp_servers")
                || set("container")
                || request.tools.iter().any(|t| {
                    t.extra
                        .fields
                        .get("type")
                        .is_some_and(|k| k.as_str() != Some("custom"))
                })
        }
        // A context cache, and built-in tools (googleSearch, urlContext, codeExecution).
        Some(Dialect::Gemini) => set("cachedContent") || set("tools"),
        None => false,
    }
}

/// The most output tokens the provider can bill: the cap, plus a thinking budget the cap does
/// not include, for each choice asked for.
pub fn output_bound(request: &Request, default_max_output: u64) -> u64 {
    let f = &request.extra.fields;
    let cap = request.max_tokens.unwrap_or(default_max_output);
    let (choices, thinking) = match request.extra.dialect {
        Some(Dialect::OpenAiChat) => (f.get("n").and_then(Value::as_u64), None),
        Some(Dialect::Gemini) => {
            let g = f.get("generationConfig");
            let get = |path: &[&str]| {
                let mut v = g?;
                for k in path {
                    v = v.get(*k)?;
                }
                v.as_u64()
            };
            (
                get(&["candidateCount"]),
                get(&["thinkingConfig", "thinkingBudget"]),
            )
        }
        _ => (None, None),
    };
    cap.saturating_add(thinking.unwrap_or(0))
        .saturating_mul(choices.unwrap_or(1).max(1))
}

/// The most `input` + `output` tokens can cost at `prices`, in nano-USD (rounded up): every
/// input token at the dearest input category, every output token at the dearest output one.
pub fn worst_cost_nano_usd(input: u64, output: u64, prices: &PriceTable) -> u64 {
    let max_in = prices
        .no_cache
        .max(prices.cache_read)
        .max(prices.cache_write);
    let max_out = prices.text.max(prices.reasoning);
    let pico = input as u128 * max_in as u128 + output as u128 * max_out as u128;
    u64::try_from(pico.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// The reservation for a request that may be served by any of `targets`: the worst case at
/// the dearest of them, so whichever endpoint answers, its real cost is covered. A target
/// without prices costs nothing in the ledger, so it adds nothing here either.
/// `default_context` bounds unseen input where a target's model window is not known.
pub fn plan_worst_case(
    request: &Request,
    targets: &[std::sync::Arc<Target>],
    default_max_output: u64,
    default_context: u64,
) -> u64 {
    let input = input_bound(request);
    let output = output_bound(request, default_max_output);
    targets
        .iter()
        .filter_map(|t| {
            let prices = t.prices.as_ref()?;
            let context = t.max_input_tokens.unwrap_or(default_context);
            Some(worst_cost_nano_usd(
                input.for_context(context),
                output,
                prices,
            ))
        })
        .max()
        .unwrap_or(0)
}

fn extra_bytes(extra: &Extra) -> u64 {
    map_bytes(&extra.fields)
}

/// Serialized length of an object's members (keys and values).
fn map_bytes(m: &Map<String, Value>) -> u64 {
    m.iter().map(|(k, v)| k.len() as u64 + json_len(v)).sum()
}

/// Serialized JSON length of `v`, without building the text.
fn json_len(v: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{Message, Role};
    use crate::spend::{TokenBreakdown, cost_nano_usd};
    use serde_json::json;

    fn prices() -> PriceTable {
        PriceTable {
            no_cache: 3_000_000,
            cache_read: 300_000,
            cache_write: 3_750_000,
            text: 15_000_000,
            reasoning: 15_000_000,
        }
    }

    #[test]
    fn worst_case_bounds_every_real_cost_it_covers() {
        let prices = prices();
        let request = Request {
            messages: vec![Message::text(Role::User, "hello there")],
            max_tokens: Some(100),
            ..Default::default()
        };
        let input = input_bound(&request);
        assert_eq!(input.tokens, 11 + MESSAGE_OVERHEAD_TOKENS);
        assert!(!input.unseen);
        let worst = worst_cost_nano_usd(input.tokens, 100, &prices);
        // 19 × 3.75 µUSD + 100 × 15 µUSD = 1,571.25 µUSD → 1,571,250 nUSD.
        assert_eq!(worst, 1_571_250);
        // Any split of at most that many tokens costs no more.
        for t in [
            TokenBreakdown {
                input_no_cache: 19,
                output_text: 100,
                ..Default::default()
            },
            TokenBreakdown {
                input_cache_write: 19,
                output_reasoning: 100,
                ..Default::default()
            },
            TokenBreakdown {
                input_cache_read: 10,
                input_cache_write: 9,
                output_text: 60,
                output_reasoning: 40,
                ..Default::default()
            },
        ] {
            assert!(cost_nano_usd(&t, &prices) <= worst);
        }
    }

    fn decode(dialect: Dialect, body: Value) -> Request {
        crate::api::decode_request_at(dialect, body.to_string().as_bytes(), None).unwrap()
    }

    /// What a provider bills at most, as the stand-in does: every byte of message
    /// text, tool definitions and schemas.
    fn billed_floor(body: &Value) -> u64 {
        let mut b = body.clone();
        let o = b.as_object_mut().unwrap();
        let mut text = 0;
        for key in ["messages", "input", "contents"] {
            if let Some(v) = o.remove(key) {
                text += strings_len(&v);
            }
        }
        for key in ["model", "max_tokens", "max_output_tokens", "stream"] {
            o.remove(key);
        }
        text + json_len(&b)
    }

    fn strings_len(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64,
            Value::Array(a) => a.iter().map(strings_len).sum(),
            Value::Object(m) => m.values().map(strings_len).sum(),
            _ => 0,
        }
    }

    #[test]
    fn tools_schemas_and_unmodelled_fields_count_at_their_size_in_every_dialect() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string", "description": "x".repeat(10_000)}}});
        let cases = [
            (
                Dialect::OpenAiChat,
                json!({"model": "m", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "hi"}],
                       "tools": [{"type": "function", "function": {"name": "f", "description": "d".repeat(3000), "parameters": schema}}],
                       "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}),
            ),
            (
                Dialect::OpenAiResponses,
                json!({"model": "m", "max_output_tokens": 10, "input": "hi",
                       "tools": [{"type": "function", "name": "f", "description": "d".repeat(3000), "parameters": schema}],
                       "text": {"format": {"type": "json_schema", "name": "s", "schema": schema}}}),
            ),
            (
                Dialect::Anthropic,
                json!({"model": "m", "max_tokens": 10, "system": "be brief",
                       "messages": [{"role": "user", "content": "hi"}],
                       "tools": [{"name": "f", "description": "d".repeat(3000), "input_schema": schema}],
                       "output_config": {"format": {"type": "json_schema", "schema": schema}}}),
            ),
            (
                Dialect::Gemini,
                json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                       "tools": [{"functionDeclarations": [{"name": "f", "description": "d".repeat(3000), "parameters": schema}]}],
                       "generationConfig": {"maxOutputTokens": 10, "responseMimeType": "application/json", "responseSchema": schema}}),
            ),
        ];
        for (dialect, body) in cases {
            let r = decode(dialect, body.clone());
            let bound = input_bound(&r);
            assert!(
                bound.tokens >= billed_floor(&body),
                "{dialect:?}: bound {} < billed {}",
                bound.tokens,
                billed_floor(&body)
            );
            assert!(!bound.unseen, "{dialect:?}");
            assert!(
                bound.tokens >= 23_000 + TOOLS_PREAMBLE_TOKENS,
                "{dialect:?}"
            );
        }
    }

    #[test]
    fn choices_and_thinking_multiply_the_output() {
        let chat = decode(
            Dialect::OpenAiChat,
            json!({"model": "m", "max_tokens": 100, "n": 8, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(output_bound(&chat, 4096), 800);
        let gemini = decode(
            Dialect::Gemini,
            json!({"contents": [{"parts": [{"text": "hi"}]}],
                   "generationConfig": {"maxOutputTokens": 100, "candidateCount": 3,
                                        "thinkingConfig": {"thinkingBudget": 50}}}),
        );
        assert_eq!(output_bound(&gemini, 4096), 450);
        let bare = decode(
            Dialect::Anthropic,
            json!({"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(output_bound(&bare, 4096), 7);
        let uncapped = decode(
            Dialect::OpenAiChat,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(output_bound(&uncapped, 4096), 4096);
        // A hostile `n` saturates instead of wrapping to a small reservation.
        let huge = decode(
            Dialect::OpenAiChat,
            json!({"model": "m", "max_tokens": u64::MAX, "n": 3, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(output_bound(&huge, 4096), u64::MAX);
    }

    #[test]
    fn referenced_input_is_bounded_by_the_context_window() {
        let cases = [
            (
                Dialect::OpenAiResponses,
                json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
            ),
            (
                Dialect::OpenAiResponses,
                json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}),
            ),
            (
                Dialect::Anthropic,
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                    {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]}]}),
            ),
            (
                Dialect::Gemini,
                json!({"contents": [{"parts": [{"text": "hi"}]}], "cachedContent": "cachedContents/1"}),
            ),
            (
                Dialect::Anthropic,
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                       "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            ),
            (
                Dialect::OpenAiChat,
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                       "web_search_options": {}}),
            ),
        ];
        for (dialect, body) in cases {
            let b = input_bound(&decode(dialect, body));
            assert!(b.unseen, "{dialect:?}");
            assert_eq!(b.for_context(200_000), 200_000, "{dialect:?}");
        }
        let plain = input_bound(&decode(
            Dialect::OpenAiChat,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ));
        assert_eq!(plain.for_context(200_000), plain.tokens);
    }

    #[test]
    fn images_count_their_allowance() {
        let r = decode(
            Dialect::OpenAiChat,
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
        );
        let b = input_bound(&r);
        assert!(b.tokens >= 2 * IMAGE_TOKENS);
        assert!(!b.unseen);
    }
}

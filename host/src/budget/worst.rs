//! A request's worst-case cost before it is forwarded: an upper bound on its input tokens
//! plus `max_tokens` (or the configured cap) of output, at the dearest price of every
//! endpoint the plan may try.

use crate::canonical::{Part, Request};
use crate::router::Target;
use crate::spend::PriceTable;

/// Allowance for content whose token count the gateway cannot know (images, documents,
/// audio). Generous for one image at today's providers' tilings.
const OPAQUE_PART_TOKENS: u64 = 2_000;
/// Per message: role markers and separators every chat template adds.
const MESSAGE_OVERHEAD_TOKENS: u64 = 8;

/// An upper bound on the prompt's tokens: one per byte of text (a BPE token never covers
/// less than one byte), plus per-message overhead and allowances for non-text parts.
pub fn input_bound_tokens(request: &Request) -> u64 {
    fn part(p: &Part) -> u64 {
        match p {
            Part::Text { text, .. } | Part::Reasoning { text, .. } => text.len() as u64,
            Part::ToolCall(c) => (c.name.len() + c.arguments.len()) as u64,
            Part::ToolResult { content, .. } => content.iter().map(part).sum(),
            Part::Image { .. } | Part::Opaque { .. } => OPAQUE_PART_TOKENS,
        }
    }
    let messages: u64 = request
        .messages
        .iter()
        .map(|m| MESSAGE_OVERHEAD_TOKENS + m.content.iter().map(part).sum::<u64>())
        .sum();
    let tools: u64 = request
        .tools
        .iter()
        .map(|t| (t.name.len() + t.parameters.to_string().len()) as u64 + MESSAGE_OVERHEAD_TOKENS)
        .sum();
    messages + tools
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
pub fn plan_worst_case(
    request: &Request,
    targets: &[std::sync::Arc<Target>],
    default_max_output: u64,
) -> u64 {
    let input = input_bound_tokens(request);
    let output = request.max_tokens.unwrap_or(default_max_output);
    targets
        .iter()
        .filter_map(|t| t.prices.as_ref())
        .map(|p| worst_cost_nano_usd(input, output, p))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{Message, Role};
    use crate::spend::{TokenBreakdown, cost_nano_usd};

    #[test]
    fn worst_case_bounds_every_real_cost_it_covers() {
        let prices = PriceTable {
            no_cache: 3_000_000,
            cache_read: 300_000,
            cache_write: 3_750_000,
            text: 15_000_000,
            reasoning: 15_000_000,
        };
        let request = Request {
            messages: vec![Message::text(Role::User, "hello there")],
            max_tokens: Some(100),
            ..Default::default()
        };
        let input = input_bound_tokens(&request);
        assert_eq!(input, 11 + MESSAGE_OVERHEAD_TOKENS);
        let worst = worst_cost_nano_usd(input, 100, &prices);
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
}

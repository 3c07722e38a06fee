//! Prices and per-request cost in integer arithmetic. A price of X USD per million tokens is
//! X micro-USD per token; it is held as pico-USD per token so prices with up to six decimals
//! (0.0375 $/M) are exact, and a request's cost is rounded once, to the nano-USD.

use serde::{Deserialize, Serialize};

use crate::canonical::Usage;

/// A model's prices, USD per million tokens.
#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// `input_tokens`: prices of prompt tokens.
    #[serde(default)]
    pub input_tokens: InputPricing,
    /// `output_tokens`: prices of generated tokens.
    #[serde(default)]
    pub output_tokens: OutputPricing,
}

/// Input prices. A missing `cache_read` / `cache_write` is billed at `no_cache` (the
/// provider has no cache discount or surcharge); an explicit 0 means free.
#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputPricing {
    /// USD per million prompt tokens not read from or written to a cache.
    #[serde(default)]
    pub no_cache: f64,
    /// USD per million prompt tokens read from the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// USD per million prompt tokens written to the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// Output prices. A missing `reasoning` is billed at `text`.
#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputPricing {
    /// USD per million generated tokens.
    #[serde(default)]
    pub text: f64,
    /// USD per million reasoning tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

/// Pico-USD per token, per category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PriceTable {
    /// Pico-USD per uncached input token.
    pub no_cache: u64,
    /// Pico-USD per input token read from the provider's cache.
    pub cache_read: u64,
    /// Pico-USD per input token written to the provider's cache.
    pub cache_write: u64,
    /// Pico-USD per output token that is not reasoning.
    pub text: u64,
    /// Pico-USD per reasoning token.
    pub reasoning: u64,
}

/// USD per million tokens → pico-USD per token (× 10⁶), rounded to the nearest pico.
fn pico_per_token(usd_per_million: f64) -> u64 {
    if usd_per_million.is_finite() && usd_per_million > 0.0 {
        (usd_per_million * 1e6).round() as u64
    } else {
        0
    }
}

impl PriceTable {
    /// Resolves a config/registry price entry. A missing cache price means the provider has
    /// no cache discount or surcharge, so those tokens cost what uncached ones do; a missing
    /// reasoning price means reasoning is billed as text.
    pub fn from_pricing(p: &Pricing) -> PriceTable {
        let no_cache = pico_per_token(p.input_tokens.no_cache);
        let text = pico_per_token(p.output_tokens.text);
        PriceTable {
            no_cache,
            cache_read: p
                .input_tokens
                .cache_read
                .map(pico_per_token)
                .unwrap_or(no_cache),
            cache_write: p
                .input_tokens
                .cache_write
                .map(pico_per_token)
                .unwrap_or(no_cache),
            text,
            reasoning: p
                .output_tokens
                .reasoning
                .map(pico_per_token)
                .unwrap_or(text),
        }
    }
}

/// Token counts in the five billing categories; no token is in two of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenBreakdown {
    /// Input tokens neither read from nor written to a cache.
    pub input_no_cache: u64,
    /// Input tokens read from the provider's cache.
    pub input_cache_read: u64,
    /// Input tokens written to the provider's cache.
    pub input_cache_write: u64,
    /// Output tokens that are not reasoning.
    pub output_text: u64,
    /// Output tokens spent on reasoning.
    pub output_reasoning: u64,
}

impl TokenBreakdown {
    /// Splits canonical usage (whose input includes cached tokens and whose output includes
    /// reasoning tokens) into disjoint categories.
    pub fn from_usage(u: &Usage) -> TokenBreakdown {
        TokenBreakdown {
            input_no_cache: u.uncached_input_tokens(),
            input_cache_read: u.cache_read_tokens,
            input_cache_write: u.cache_write_tokens,
            output_text: u.output_tokens.saturating_sub(u.reasoning_tokens),
            output_reasoning: u.reasoning_tokens.min(u.output_tokens),
        }
    }

    /// All input tokens, cached or not.
    pub fn input_total(&self) -> u64 {
        self.input_no_cache + self.input_cache_read + self.input_cache_write
    }

    /// All output tokens, reasoning included.
    pub fn output_total(&self) -> u64 {
        self.output_text + self.output_reasoning
    }
}

/// The cost of `tokens` at `prices`, in nano-USD (rounded half up from pico-USD).
pub fn cost_nano_usd(tokens: &TokenBreakdown, prices: &PriceTable) -> u64 {
    let pico: u128 = tokens.input_no_cache as u128 * prices.no_cache as u128
        + tokens.input_cache_read as u128 * prices.cache_read as u128
        + tokens.input_cache_write as u128 * prices.cache_write as u128
        + tokens.output_text as u128 * prices.text as u128
        + tokens.output_reasoning as u128 * prices.reasoning as u128;
    u64::try_from((pico + 500) / 1000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file_pricing;

    fn prices(
        no_cache: f64,
        read: Option<f64>,
        write: Option<f64>,
        text: f64,
        reasoning: Option<f64>,
    ) -> PriceTable {
        PriceTable::from_pricing(&file_pricing(no_cache, read, write, text, reasoning))
    }

    #[test]
    fn prices_become_exact_pico_per_token() {
        let p = prices(2.5, Some(1.25), Some(0.0), 10.0, None);
        assert_eq!(
            p,
            PriceTable {
                no_cache: 2_500_000,
                cache_read: 1_250_000,
                cache_write: 0,
                text: 10_000_000,
                reasoning: 10_000_000
            }
        );
        // Six-decimal prices stay exact (0.0375 $/M = 37,500 pUSD per token).
        assert_eq!(prices(0.0375, None, None, 0.15, None).no_cache, 37_500);
        // Missing cache prices bill at the uncached rate.
        let p = prices(3.0, None, None, 15.0, Some(20.0));
        assert_eq!(
            (p.cache_read, p.cache_write, p.reasoning),
            (3_000_000, 3_000_000, 20_000_000)
        );
    }

    #[test]
    fn openai_usage_with_cache_hits_and_reasoning() {
        // gpt-4o-style: 10,000 prompt tokens of which 6,000 cached; 1,000 completion tokens
        // of which 400 reasoning. $2.50 / $1.25 cached / $10 out.
        let u = Usage {
            input_tokens: 10_000,
            cache_read_tokens: 6_000,
            cache_write_tokens: 0,
            output_tokens: 1_000,
            reasoning_tokens: 400,
        };
        let t = TokenBreakdown::from_usage(&u);
        assert_eq!(
            t,
            TokenBreakdown {
                input_no_cache: 4_000,
                input_cache_read: 6_000,
                input_cache_write: 0,
                output_text: 600,
                output_reasoning: 400
            }
        );
        // 4000×2.5 + 6000×1.25 + 600×10 + 400×10 = 10,000 + 7,500 + 6,000 + 4,000 = 27,500 µUSD
        let c = cost_nano_usd(&t, &prices(2.5, Some(1.25), Some(0.0), 10.0, Some(10.0)));
        assert_eq!(c, 27_500_000);
    }

    #[test]
    fn anthropic_cache_writes_and_reads_are_each_priced_once() {
        // Claude Sonnet-style: $3 in, $0.30 read, $3.75 write, $15 out. Anthropic reports
        // input_tokens=200 (uncached only), cache_creation=5,000, cache_read=20,000.
        let u = Usage {
            input_tokens: 25_200,
            cache_read_tokens: 20_000,
            cache_write_tokens: 5_000,
            output_tokens: 300,
            reasoning_tokens: 0,
        };
        let t = TokenBreakdown::from_usage(&u);
        assert_eq!(
            (t.input_no_cache, t.input_cache_read, t.input_cache_write),
            (200, 20_000, 5_000)
        );
        // 200×3 + 20,000×0.30 + 5,000×3.75 + 300×15 = 600 + 6,000 + 18,750 + 4,500 = 29,850 µUSD
        assert_eq!(
            cost_nano_usd(&t, &prices(3.0, Some(0.3), Some(3.75), 15.0, Some(15.0))),
            29_850_000
        );
    }

    #[test]
    fn sub_micro_costs_round_to_the_nano_and_sum_exactly() {
        // One token at $0.0375/M = 37.5 nUSD → 38 nUSD (half up); a million such requests sum exactly.
        let t = TokenBreakdown {
            input_no_cache: 1,
            ..Default::default()
        };
        let c = cost_nano_usd(&t, &prices(0.0375, None, None, 0.0, None));
        assert_eq!(c, 38);
        let total: u64 = (0..1_000_000).map(|_| c).sum();
        assert_eq!(total, 38_000_000);
    }

    #[test]
    fn reasoning_cannot_exceed_output() {
        let u = Usage {
            output_tokens: 5,
            reasoning_tokens: 9,
            ..Default::default()
        };
        let t = TokenBreakdown::from_usage(&u);
        assert_eq!((t.output_text, t.output_reasoning), (0, 5));
    }
}

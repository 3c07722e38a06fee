//! {{name}}: an observer that logs how many requests and tokens each batch held, and the
//! totals since it started. An observer keeps one instance across batches (the host starts a
//! fresh one only after a failed call), so totals may live in a `static`.

wit_bindgen::generate!({ path: "wit", world: "observer" });

use std::sync::atomic::{AtomicU64, Ordering};

use bitrouter::plugin::host::{Level, log};
use bitrouter::plugin::types::RequestEvent;
use exports::bitrouter::plugin::observe::Guest;

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static TOKENS: AtomicU64 = AtomicU64::new(0);

struct Plugin;

impl Guest for Plugin {
    /// The plugin's `config` from bitrouter.yaml, as JSON text (`null` when absent).
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    /// A batch of finished requests, oldest first. Each event also has the route, the
    /// endpoint, the status, latency, cost and guardrail findings (wit/types.wit,
    /// `request-event`); never the text of the request.
    fn observe(batch: Vec<RequestEvent>) {
        let requests = batch.len() as u64;
        let tokens: u64 = batch
            .iter()
            .map(|e| e.usage.input_tokens + e.usage.output_tokens)
            .sum();
        let total_requests = REQUESTS.fetch_add(requests, Ordering::Relaxed) + requests;
        let total_tokens = TOKENS.fetch_add(tokens, Ordering::Relaxed) + tokens;
        log(
            Level::Info,
            &format!(
                "{requests} requests, {tokens} tokens (since start: {total_requests} requests, {total_tokens} tokens)"
            ),
        );
    }
}

export!(Plugin);

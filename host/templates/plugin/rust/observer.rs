//! {{name}}: an observer that logs how many requests and tokens each batch held. An observer
//! keeps one instance across batches, so it may aggregate in a `static`.

wit_bindgen::generate!({ path: "wit", world: "observer" });

use bitrouter::plugin::host::{Level, log};
use bitrouter::plugin::types::RequestEvent;
use exports::bitrouter::plugin::observe::Guest;

struct Plugin;

impl Guest for Plugin {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn observe(batch: Vec<RequestEvent>) {
        let tokens: u64 = batch
            .iter()
            .map(|e| e.usage.input_tokens + e.usage.output_tokens)
            .sum();
        log(Level::Info, &format!("{} requests, {tokens} tokens", batch.len()));
    }
}

export!(Plugin);

//! The warm-instance renewal check shared by `plugins.rs` (a guardrail without WASI, sync
//! calls) and `plugins_polyglot.rs` (a WASI guardrail, async calls).

use std::time::{Duration, Instant};

use bitrouter::plugins::GuardrailPlugin;

/// A warm instance is replaced after 5,000 calls; its successor is set up off the request
/// path, so no call after the first sets up an instance (before, the call after each
/// 10,000th did, paying for instantiation and configuration on a request). `g` must be a
/// stateless guardrail with a `confidential-id` pattern that finds `CONFIDENTIAL-123456`.
pub async fn renewed_off_the_call_path(g: &GuardrailPlugin) {
    assert!(g.info().reuses_instances);
    let text = "see CONFIDENTIAL-123456 now";
    let candidate = 4..23;
    // Due after its 5,000th call; the 5,001st still runs in it and hands its place to the
    // successor, which is due after 5,000 calls of its own.
    for (calls, renewals) in [(5_000, 1), (5_001, 2), (1_000, 2)] {
        for _ in 0..calls {
            let found = g.check("confidential-id", text, std::slice::from_ref(&candidate));
            assert_eq!(found.await.unwrap().len(), 1);
        }
        let waited = Instant::now();
        while g.stats().renewals < renewals && waited.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            g.stats().renewals,
            renewals,
            "successor set up off the call path"
        );
    }
    let stats = g.stats();
    assert_eq!(stats.calls, 11_001);
    assert_eq!(stats.setups, 1, "only the first call set up an instance");
    assert_eq!(stats.failures(), 0);
    assert_eq!(g.warm_instances(), 1);
}

//! Heap allocations per request through the gateway (issue 24: "count allocations per
//! request"), over real HTTP on loopback, in one process: a counting global allocator
//! around the system one, a mock upstream, the gateway, and a client.
//!
//! The same client sends the same sequential keep-alive requests (a 2 KB chat prompt)
//! straight to the mock and then through the gateway; the gateway's own allocations per
//! request are the difference, so the client's and the mock's cancel out. Configurations:
//! the bare proxy (guardrails off), the default guardrails, and the default guardrails with
//! a 2 KB prompt holding three findings (redacted, so the plugins' `check` calls run); and
//! a streamed answer of 100 chunks with the default guardrails (per stream, not per chunk).
//! The spend ledger is in memory, auth off.
//!
//! Run: `cargo run --release -p bitrouter --example alloc_count [-- REQUESTS]`

// A global allocator is an `unsafe impl`; this one only counts and hands every call to the
// system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bitrouter::{Config, Gateway};
use bitrouter_mock::{MockBehavior, MockServer};

/// Counts every allocation (and reallocation) and the bytes asked for.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes per request of `n` sequential requests of `body` to `url`, after
/// a warm-up of the same requests (pools, caches and lazily built state excluded).
async fn per_request(client: &reqwest::Client, url: &str, body: &str, n: u64) -> (f64, f64) {
    let send = || async {
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("answer");
        assert!(status.is_success(), "{url}: {status}: {text}");
    };
    for _ in 0..200 {
        send().await;
    }
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..n {
        send().await;
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

async fn gateway(mock: &MockServer, guardrails: &str) -> (std::net::SocketAddr, impl Drop) {
    let yaml = format!(
        "database:\n  url: memory://\n{guardrails}providers:\n  mock:\n    api_protocol: openai\n    \
         api_base: {}/v1\n    api_key_required: false\nmodels:\n  mock-gpt:\n    endpoints:\n      \
         - {{ provider: mock, model_id: mock-gpt }}\n",
        mock.base_url()
    );
    let config = Config::parse(&yaml, Path::new("alloc_count.yaml")).expect("config");
    let gateway = Gateway::new(config).await.expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = bitrouter::serve(gateway, listener, async {
            let _ = rx.await;
        })
        .await;
    });
    /// Stops the gateway when dropped.
    struct Stop(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    (addr, Stop(Some(tx)))
}

fn body(prompt: &str) -> String {
    serde_json::json!({
        "model": "mock-gpt",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt}
        ]
    })
    .to_string()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(2000, |s| s.parse().expect("REQUESTS: a number"));
    let mock = MockServer::start(MockBehavior::default())
        .await
        .expect("mock");
    let client = reqwest::Client::new();
    let clean = body(&"The quick brown fox jumps over the lazy dog. ".repeat(45));
    let findings = body(&format!(
        "{} password=hunter2x9 and jane.doe@example.org and 10.20.30.40",
        "The quick brown fox jumps over the lazy dog. ".repeat(43)
    ));
    let direct_url = format!("{}/v1/chat/completions", mock.base_url());
    // Streams: a mock of its own that answers in 100 chunks.
    let streaming = MockServer::start(MockBehavior {
        chunks: Some(100),
        ..MockBehavior::default()
    })
    .await
    .expect("mock");
    let stream_body = {
        let mut v: serde_json::Value = serde_json::from_str(&clean).expect("json");
        v["stream"] = true.into();
        v.to_string()
    };
    let stream_direct = format!("{}/v1/chat/completions", streaming.base_url());
    let (s_direct, s_direct_bytes) = per_request(&client, &stream_direct, &stream_body, n).await;
    let (addr, _stop) = gateway(&streaming, "").await;
    let (s_via, s_via_bytes) = per_request(
        &client,
        &format!("http://{addr}/v1/chat/completions"),
        &stream_body,
        n,
    )
    .await;
    println!(
        "default guardrails, a 100-chunk stream: the gateway's own {:.1} allocations, {:.0} bytes per stream ({s_via:.1} in all; direct {s_direct:.1})",
        s_via - s_direct,
        s_via_bytes - s_direct_bytes
    );
    let redact = "guardrails:\n  upgoing:\n    credentials: redact\n    pii_emails: redact\n    ip_addresses: redact\n";
    for (label, guardrails, body) in [
        (
            "bare proxy (guardrails off)",
            "guardrails:\n  enabled: false\n",
            &clean,
        ),
        ("default guardrails, clean 2 KB prompt", "", &clean),
        ("default guardrails, 3 findings redacted", redact, &findings),
    ] {
        let (addr, _stop) = gateway(&mock, guardrails).await;
        let url = format!("http://{addr}/v1/chat/completions");
        let (via, via_bytes) = per_request(&client, &url, body, n).await;
        // The same body straight to the mock: what the client and mock allocate for it.
        let (base, base_bytes) = per_request(&client, &direct_url, body, n).await;
        println!(
            "{label}: the gateway's own {:.1} allocations, {:.0} bytes per request ({via:.1} in all; direct {base:.1})",
            via - base,
            via_bytes - base_bytes
        );
    }
}

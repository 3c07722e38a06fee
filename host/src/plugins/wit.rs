//! Rust bindings of the WIT interfaces every world shares: `types` (the canonical model call,
//! guardrail vocabulary, request events) and `host` (the `log` import). The per-world
//! bindings in `guardrail.rs`, `observer.rs` and `adapter.rs` reuse these with `with:`, so
//! there is one Rust type per WIT type.

// Generated items take their docs from the WIT comments (`wit/types.wit`), which the committed
// C bindings of the plugin template repeat; some records and fields there have none.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    interfaces: "
        import bitrouter:plugin/types@0.1.0;
        import bitrouter:plugin/host@0.1.0;
    ",
});

pub use self::bitrouter::plugin::host;
pub use self::bitrouter::plugin::types;

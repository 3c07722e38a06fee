//! Write BitRouter plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing one world of the WIT package
//! `bitrouter:plugin@0.1.0` (see `wit/` at the repository root). This crate wraps the
//! [wit-bindgen](https://docs.rs/wit-bindgen) bindings so that a plugin is one trait impl and
//! one export macro. Enable exactly one feature, the world you implement:
//!
//! | feature | trait | macro |
//! | --- | --- | --- |
//! | `guardrail` | [`guardrail::Guardrail`] | [`export_guardrail!`] |
//! | `observer` | [`observer::Observer`] | [`export_observer!`] |
//! | `provider-adapter` | [`adapter::Adapter`] | [`export_adapter!`] |
//!
//! ```ignore
//! use bitrouter_plugin::guardrail::*;
//!
//! struct Confidential;
//!
//! impl Guardrail for Confidential {
//!     fn describe() -> Vec<Pattern> {
//!         vec![Pattern::new("confidential-id", "Internal document ids")
//!             .regex(r"CONFIDENTIAL-\d{6}")
//!             .max_match_len(19)]
//!     }
//! }
//!
//! bitrouter_plugin::export_guardrail!(Confidential);
//! ```
//!
//! Keep no state between calls (observers excepted, see [`observer`]): each call runs in a
//! fresh instance, or, when the plugin's manifest says `stateless = true`, in a warm instance
//! that earlier calls used (the allocator starts the heap over between such calls). `configure`
//! runs at load and again at the start of each call when the plugin has a config, so a
//! `static` set there is visible to the call that follows.

#[cfg(any(
    all(feature = "guardrail", feature = "observer"),
    all(feature = "guardrail", feature = "provider-adapter"),
    all(feature = "observer", feature = "provider-adapter"),
))]
compile_error!(
    "enable exactly one of the features `guardrail`, `observer`, `provider-adapter` \
     (build plugin crates one at a time: `cargo build -p NAME`, so features do not unify)"
);

#[cfg(feature = "provider-adapter")]
pub mod adapter;
#[cfg(target_arch = "wasm32")]
pub mod alloc;

/// Guardrails and adapters allocate by bumping a pointer; the heap starts over when a call
/// has freed everything.
#[cfg(all(
    target_arch = "wasm32",
    any(feature = "guardrail", feature = "provider-adapter"),
    not(feature = "system-alloc")
))]
#[global_allocator]
static ALLOC: alloc::BumpAlloc = alloc::BumpAlloc::new();
#[cfg(feature = "guardrail")]
pub mod guardrail;
#[cfg(feature = "observer")]
pub mod observer;

/// Writing to the gateway's log (the host's only import). Lines are tagged with the
/// plugin's id, cut at 1 KiB, and limited to 16 per call.
#[cfg(any(feature = "guardrail", feature = "observer", feature = "provider-adapter"))]
pub mod log {
    #[cfg(feature = "provider-adapter")]
    use crate::adapter::bindings::bitrouter::plugin::host;
    #[cfg(feature = "guardrail")]
    use crate::guardrail::bindings::bitrouter::plugin::host;
    #[cfg(feature = "observer")]
    use crate::observer::bindings::bitrouter::plugin::host;

    pub use host::Level;

    pub fn log(level: Level, message: &str) {
        host::log(level, message);
    }
    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }
    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }
    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }
}

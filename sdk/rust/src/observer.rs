//! The `observer` world: finished requests, in batches, off the request path.
//!
//! An observer keeps one instance across batches, so `static` state (counters, histograms)
//! survives from one batch to the next. The host replaces the instance with a fresh one
//! after a failed call (trap, deadline, memory cap), which resets that state.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "observer",
        pub_export_macro: true,
        export_macro_name: "__export_observer_world",
        default_bindings_module: "bitrouter_plugin::observer::bindings",
    });
}

pub use bindings::bitrouter::plugin::types::{RequestEvent, Usage};
pub use crate::log;

/// An observer plugin.
pub trait Observer {
    /// Receives the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
    /// Runs when an instance starts; an `Err` at load refuses to start the plugin.
    fn configure(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// A batch of finished requests, oldest first.
    fn observe(batch: Vec<RequestEvent>);
}

/// Exports an [`Observer`] implementation as the component's `observe` interface.
#[macro_export]
macro_rules! export_observer {
    ($ty:ty) => {
        const _: () = {
            use $crate::observer::bindings::bitrouter::plugin::types as __t;
            struct __BitrouterObserver;
            impl $crate::observer::bindings::exports::bitrouter::plugin::observe::Guest
                for __BitrouterObserver
            {
                fn configure(config: String) -> Result<(), String> {
                    <$ty as $crate::observer::Observer>::configure(&config)
                }
                fn observe(batch: Vec<__t::RequestEvent>) {
                    <$ty as $crate::observer::Observer>::observe(batch)
                }
            }
            $crate::observer::bindings::__export_observer_world!(
                __BitrouterObserver with_types_in $crate::observer::bindings
            );
        };
    };
}

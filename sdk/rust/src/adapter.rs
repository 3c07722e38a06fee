//! The `provider-adapter` world: translate the canonical model call to a provider's HTTP
//! shape and back. No I/O: the host sends the request (adding the endpoint's credentials)
//! and hands back the answer. Stream decoding is a fold over chunks; the state you return
//! comes back with the next chunk, because every call runs in a fresh instance.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "provider-adapter",
        pub_export_macro: true,
        export_macro_name: "__export_adapter_world",
        default_bindings_module: "bitrouter_plugin::adapter::bindings",
    });
}

pub use bindings::bitrouter::plugin::types::*;
pub use bindings::exports::bitrouter::plugin::adapter::{
    HttpRequest, HttpResponse, StreamStep, UpstreamError,
};
pub use crate::log;

/// A provider adapter.
pub trait Adapter {
    /// Receives the plugin's config from bitrouter.yaml as JSON text (`null` when absent).
    fn configure(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// The upstream request for `request`, addressed to the endpoint's `model_id`. `path`
    /// is appended to the endpoint's base URL; do not add credentials.
    fn encode_request(request: Request, model_id: &str) -> Result<HttpRequest, String>;

    /// A complete upstream answer (any status) as a response or an error.
    fn decode_response(response: HttpResponse) -> Result<Response, UpstreamError>;

    /// The next chunk of a streamed body; `state` is what the previous step returned (empty
    /// at the start), `end` is true once after the last chunk.
    fn decode_stream(state: Vec<u8>, chunk: Vec<u8>, end: bool) -> Result<StreamStep, UpstreamError>;
}

/// Exports an [`Adapter`] implementation as the component's `adapter` interface.
#[macro_export]
macro_rules! export_adapter {
    ($ty:ty) => {
        const _: () = {
            use $crate::adapter::bindings::bitrouter::plugin::types as __t;
            use $crate::adapter::bindings::exports::bitrouter::plugin::adapter as __a;
            struct __BitrouterAdapter;
            impl __a::Guest for __BitrouterAdapter {
                fn configure(config: String) -> Result<(), String> {
                    <$ty as $crate::adapter::Adapter>::configure(&config)
                }
                fn encode_request(
                    request: __t::Request,
                    model_id: String,
                ) -> Result<__a::HttpRequest, String> {
                    <$ty as $crate::adapter::Adapter>::encode_request(request, &model_id)
                }
                fn decode_response(
                    response: __a::HttpResponse,
                ) -> Result<__t::Response, __a::UpstreamError> {
                    <$ty as $crate::adapter::Adapter>::decode_response(response)
                }
                fn decode_stream(
                    state: Vec<u8>,
                    chunk: Vec<u8>,
                    end: bool,
                ) -> Result<__a::StreamStep, __a::UpstreamError> {
                    <$ty as $crate::adapter::Adapter>::decode_stream(state, chunk, end)
                }
            }
            $crate::adapter::bindings::__export_adapter_world!(
                __BitrouterAdapter with_types_in $crate::adapter::bindings
            );
        };
    };
}

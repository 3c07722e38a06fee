//! How every route answers: the one response body type and the JSON, error and HTML
//! responses built on it. Error bodies take the caller's dialect (`Error::body`).

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use crate::canonical::Dialect;
use crate::error::{Error, ErrorKind};

/// Response body type of every route.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A body held whole in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON document with `status`.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `e` in `dialect`'s error shape, with its status.
pub fn error_response(dialect: Dialect, e: &Error) -> Response<Body> {
    json_response(e.status(), crate::api::error_body(dialect, e))
}

/// 405 for a known path asked with the wrong method, with `Allow`.
pub fn method_not_allowed(headers: &HeaderMap, path: &str, allow: &'static str) -> Response<Body> {
    let e = Error::new(
        ErrorKind::MethodNotAllowed,
        format!("{path} accepts {allow} only"),
    );
    let mut r = error_response(crate::api::guess_dialect(headers, path), &e);
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

//! `GET /admin`: the embedded dashboard page. It is one self-contained file whose fetches
//! carry the operator's token, so the page itself is open.

use http::{HeaderValue, Response};

use crate::respond::{Body, full};

/// The admin dashboard's Content-Security-Policy: the page is one self-contained file, so
/// only its own inline script and style run, and it talks to this origin alone (`data:`
/// images only for its empty favicon, which spares a request for `/favicon.ico`).
const DASHBOARD_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard page, with a CSP that allows only `'self'` and inline script/style.
pub fn dashboard() -> Response<Body> {
    let mut r = Response::new(full(include_str!("../../assets/dashboard.html")));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_CSP),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

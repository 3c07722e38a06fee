//! Where a caller's API key may be on a request: `Authorization: Bearer`, `x-api-key`
//! (Anthropic SDKs), `x-goog-api-key` or `?key=` (Google SDKs). One helper, so the auth stage
//! reads every dialect's spelling the same way.

use http::HeaderMap;

/// The key the caller sent, in the first place it is found (the order above).
pub fn caller_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
    header(headers, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or_else(|| header(headers, "x-api-key"))
        .or_else(|| header(headers, "x-goog-api-key"))
        .or_else(|| {
            query?
                .split('&')
                .find_map(|kv| kv.strip_prefix("key="))
                .filter(|v| !v.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn every_dialects_spelling() {
        let h = headers(&[("authorization", "Bearer tok")]);
        assert_eq!(caller_key(&h, None), Some("tok"));
        let h = headers(&[("x-api-key", "ak")]);
        assert_eq!(caller_key(&h, Some("key=qk")), Some("ak"));
        let h = headers(&[("x-goog-api-key", "gk")]);
        assert_eq!(caller_key(&h, None), Some("gk"));
        assert_eq!(
            caller_key(&HeaderMap::new(), Some("alt=sse&key=qk")),
            Some("qk")
        );
        assert_eq!(caller_key(&HeaderMap::new(), Some("alt=sse&key=")), None);
        let h = headers(&[("authorization", "Basic xyz")]);
        assert_eq!(caller_key(&h, None), None);
    }
}

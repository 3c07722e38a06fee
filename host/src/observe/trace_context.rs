//! W3C Trace Context for a model call: a caller's `traceparent` / `tracestate` continue its
//! trace (or a new one starts, sampled by `observe.otlp.sample_ratio`), the request gets a
//! span id, each upstream attempt its own, and the provider receives a `traceparent` naming
//! the attempt's span, so its own traces hang under ours.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The longest `tracestate` forwarded: the spec's 32 members of at most 256 bytes each.
const MAX_TRACESTATE: usize = 32 * 257;

/// One request's place in a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTrace {
    /// The trace: the caller's, or a new one.
    pub trace_id: [u8; 16],
    /// The request's own span.
    pub span_id: [u8; 8],
    /// The caller's span, when it sent a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the trace is recorded (exported).
    pub sampled: bool,
    /// The caller's `tracestate`, forwarded as is.
    pub tracestate: Option<HeaderValue>,
}

/// A random non-zero span id.
pub fn span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

fn trace_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

impl RequestTrace {
    /// The trace of a request whose headers are `headers`: the caller's `traceparent`
    /// continued (its sampled flag decides), else a new trace sampled with `ratio`.
    pub fn start(headers: &HeaderMap, ratio: f64) -> RequestTrace {
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let tracestate = headers
            .get("tracestate")
            .filter(|v| v.len() <= MAX_TRACESTATE)
            .cloned();
        match parent {
            Some((trace_id, parent, flags)) => RequestTrace {
                trace_id,
                span_id: span_id(),
                parent_span_id: Some(parent),
                sampled: flags & 1 == 1,
                tracestate,
            },
            None => {
                let trace_id = trace_id();
                // Trace-id ratio sampling: the same decision wherever the id is seen.
                let bits = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default());
                let sampled = ratio >= 1.0 || (bits as f64) < ratio * u64::MAX as f64;
                RequestTrace {
                    trace_id,
                    span_id: span_id(),
                    parent_span_id: None,
                    sampled,
                    tracestate: None,
                }
            }
        }
    }

    /// The headers that carry the trace to an upstream attempt whose span is `attempt`.
    pub fn headers_for(&self, attempt: [u8; 8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(attempt),
            u8::from(self.sampled)
        );
        if let Ok(v) = HeaderValue::try_from(value) {
            h.insert(HeaderName::from_static("traceparent"), v);
        }
        if let Some(state) = &self.tracestate {
            h.insert(HeaderName::from_static("tracestate"), state.clone());
        }
        h
    }
}

/// `version-traceid-parentid-flags` (version `00`; a later version's first four fields are
/// read the same way, as the spec says); all-zero ids are invalid.
fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2)
        || !lower_hex(trace, 32)
        || !lower_hex(parent, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(parent, &mut p).ok()?;
    let mut f = [0u8; 1];
    hex::decode_to_slice(flags, &mut f).ok()?;
    (t != [0; 16] && p != [0; 8]).then_some((t, p, f[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_callers_trace_is_continued_and_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", PARENT.parse().unwrap());
        h.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
        let t = RequestTrace::start(&h, 0.0);
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_span_id.map(hex::encode).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(t.sampled, "the caller's sampled flag wins over the ratio");
        let out = t.headers_for([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            out["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE");
    }

    #[test]
    fn bad_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let mut h = HeaderMap::new();
            h.insert("traceparent", bad.parse().unwrap());
            let t = RequestTrace::start(&h, 1.0);
            assert_eq!(t.parent_span_id, None, "{bad}");
        }
        // A later version with more fields is read by its first four.
        assert!(parse_traceparent(&format!("01{}-more", &PARENT[2..])).is_some());
    }

    #[test]
    fn new_traces_are_sampled_by_ratio() {
        let h = HeaderMap::new();
        assert!(RequestTrace::start(&h, 1.0).sampled);
        assert!(!RequestTrace::start(&h, 0.0).sampled);
        let sampled = (0..2000)
            .filter(|_| RequestTrace::start(&h, 0.25).sampled)
            .count();
        assert!((350..650).contains(&sampled), "{sampled}");
    }
}

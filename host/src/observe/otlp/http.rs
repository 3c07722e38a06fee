//! Where and how OTLP exports go: each signal's URL, headers and timeout, from
//! `observe.otlp` or the standard `OTEL_EXPORTER_OTLP_*` variables (the OpenTelemetry
//! specification's names and precedence), and one blocking HTTP client — the gateway's own
//! `reqwest`, so `https://` collectors use the same rustls as the upstreams — shared by the
//! span export and the SDK's metric exporter.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use opentelemetry_http::{HttpClient, HttpError};

use super::{Compression, OtlpError, OtlpSettings};

/// The specification's default collector and timeout.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read (it is only ever a small status message).
const MAX_ANSWER: u64 = 64 * 1024;

/// One OTLP signal.
#[derive(Clone, Copy, Debug)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "v1/traces",
            Signal::Metrics => "v1/metrics",
        }
    }

    fn var(self, suffix: &str) -> String {
        let name = match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        };
        format!("OTEL_EXPORTER_OTLP_{name}_{suffix}")
    }
}

/// An environment variable, unless unset or blank.
type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where one signal is exported.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The full URL (`…/v1/traces`).
    pub url: String,
    /// Sent with every export.
    pub headers: HashMap<String, String>,
    /// How long one export may take.
    pub timeout: Duration,
    /// How the body is encoded.
    pub compression: Compression,
}

/// `signal`'s destination: `observe.otlp.endpoint` with the signal's path appended, else
/// `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` with the
/// path appended, else `http://localhost:4318`. Headers: `OTEL_EXPORTER_OTLP_HEADERS`, then
/// the signal's own, then the file's, each overriding the same name before it.
pub fn destination(signal: Signal, settings: &OtlpSettings) -> Result<Destination, OtlpError> {
    destination_from(signal, settings, &|name| {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    })
}

fn destination_from(
    signal: Signal,
    settings: &OtlpSettings,
    env: Vars,
) -> Result<Destination, OtlpError> {
    let url = match &settings.endpoint {
        Some(base) => join(base, signal.path()),
        None => match env(&signal.var("ENDPOINT")) {
            Some(url) => url,
            None => join(
                &env("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
                signal.path(),
            ),
        },
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(OtlpError(format!(
            "the {signal:?} endpoint {url:?} is not an http:// or https:// URL (OTLP/HTTP)"
        )));
    }
    let mut headers = HashMap::new();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
        signal.var("HEADERS"),
    ] {
        if let Some(list) = env(&var) {
            headers.extend(parse_headers(&list).map_err(|e| OtlpError(format!("{var}: {e}")))?);
        }
    }
    headers.extend(settings.headers.iter().cloned());
    for (k, v) in &headers {
        HeaderName::try_from(k.as_str())
            .map_err(|_| OtlpError(format!("header name {k:?} is not valid in HTTP")))?;
        HeaderValue::try_from(v.as_str())
            .map_err(|_| OtlpError(format!("the value of header {k:?} is not valid in HTTP")))?;
    }
    let timeout = [
        signal.var("TIMEOUT"),
        "OTEL_EXPORTER_OTLP_TIMEOUT".to_owned(),
    ]
    .into_iter()
    .find_map(|var| env(&var).map(|ms| (var, ms)));
    let timeout = match timeout {
        Some((var, ms)) => Duration::from_millis(
            ms.trim()
                .parse()
                .map_err(|_| OtlpError(format!("{var}: expected milliseconds, found {ms:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let compression = match settings.compression {
        Some(c) => c,
        None => match [
            signal.var("COMPRESSION"),
            "OTEL_EXPORTER_OTLP_COMPRESSION".to_owned(),
        ]
        .into_iter()
        .find_map(|var| env(&var).map(|v| (var, v)))
        {
            Some((var, v)) => Compression::parse(&v)
                .ok_or_else(|| OtlpError(format!("{var}: expected gzip or none, found {v:?}")))?,
            None => Compression::None,
        },
    };
    Ok(Destination {
        url,
        headers,
        timeout,
        compression,
    })
}

fn join(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// `k1=v1,k2=v2` with percent-encoded values (the W3C Baggage form the specification uses).
fn parse_headers(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, found {item:?}"))?;
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .map_err(|_| format!("the value of {:?} is not UTF-8", k.trim()))?;
            Ok((k.trim().to_ascii_lowercase(), v.into_owned()))
        })
        .collect()
}

/// The blocking client every export goes through, with the timeout of one export; copies
/// share one connection pool and one runtime thread.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    timeout: Duration,
}

impl Client {
    /// The client. reqwest's blocking client runs its own runtime, which may not be started
    /// from inside the gateway's: it is built on a thread of its own.
    pub fn new() -> Result<Client, OtlpError> {
        std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .build()
                .map(|http| Client {
                    http,
                    timeout: DEFAULT_TIMEOUT,
                })
                .map_err(|e| OtlpError(format!("cannot build the HTTP client: {e}")))
        })
        .join()
        .map_err(|_| OtlpError("cannot build the HTTP client".into()))?
    }

    /// This client, each export limited to `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            http: self.http.clone(),
            timeout,
        }
    }

    /// Posts one export; the collector's status and `Retry-After`, or a transport error.
    pub fn post(&self, to: &Destination, body: Vec<u8>) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .http
            .post(&to.url)
            .timeout(self.timeout)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        req = match to.compression {
            Compression::Gzip => req
                .header(http::header::CONTENT_ENCODING, "gzip")
                .body(gzip(&body)),
            Compression::None => req.body(body),
        };
        for (k, v) in &to.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let res = req.send()?;
        let status = res.status();
        let retry_after = res
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read (a bounded part of) the answer so the connection goes back to the pool.
        let mut sink = std::io::sink();
        let _ = std::io::copy(&mut std::io::Read::take(res, MAX_ANSWER), &mut sink);
        Ok(Answer {
            status,
            retry_after,
        })
    }
}

/// `body` gzipped, at the fast level: the export runs on the exporter thread beside the
/// gateway's requests, so its CPU counts for more than the last bytes saved.
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = out.write_all(body);
    out.finish().unwrap_or_default()
}

/// What the collector said.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The specification's retryable answers: 429, 502, 503, 504 (and, here, 408).
    pub fn retryable(&self) -> bool {
        matches!(self.status.as_u16(), 408 | 429 | 502 | 503 | 504)
    }
}

/// The SDK's metric exporter posts through the same client.
#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let res = self
            .http
            .request(parts.method, parts.uri.to_string())
            .timeout(self.timeout)
            .headers(parts.headers)
            .body(body)
            .send()?;
        let status = res.status();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(res, MAX_ANSWER), &mut body)?;
        Ok(Response::builder().status(status).body(Bytes::from(body))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_are_parsed_and_decoded() {
        assert_eq!(
            parse_headers("Authorization=Bearer%20abc, x-team = core ,").unwrap(),
            [
                ("authorization".to_owned(), "Bearer abc".to_owned()),
                ("x-team".to_owned(), "core".to_owned())
            ]
        );
        assert!(parse_headers("novalue").is_err());
    }

    #[test]
    fn the_files_endpoint_gets_the_signal_path() {
        let s = settings(
            Some("https://otel.example:4318/"),
            ("authorization", "Bearer t"),
        );
        let d = destination(Signal::Traces, &s).unwrap();
        assert_eq!(d.url, "https://otel.example:4318/v1/traces");
        assert_eq!(d.headers["authorization"], "Bearer t");
        assert_eq!(
            destination(Signal::Metrics, &s).unwrap().url,
            "https://otel.example:4318/v1/metrics"
        );
        let bad = OtlpSettings {
            headers: vec![("bad header".into(), "x".into())],
            ..s
        };
        assert!(destination(Signal::Traces, &bad).is_err());
    }

    #[test]
    fn compression_comes_from_the_file_then_the_signal_variable_then_the_general_one() {
        let s = settings(None, ("x", "y"));
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let vars: &[(&str, &str)] = &[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
        ];
        let with = |s: &OtlpSettings, signal| destination_from(signal, s, &env(vars)).unwrap();
        assert_eq!(with(&s, Signal::Traces).compression, Compression::Gzip);
        assert_eq!(with(&s, Signal::Metrics).compression, Compression::None);
        let file = OtlpSettings {
            compression: Some(Compression::None),
            ..settings(None, ("x", "y"))
        };
        assert_eq!(with(&file, Signal::Traces).compression, Compression::None);
        let none = destination_from(Signal::Traces, &s, &env(&[])).unwrap();
        assert_eq!(none.compression, Compression::None);
        let e = destination_from(
            Signal::Traces,
            &s,
            &env(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: expected gzip or none"),
            "{e}"
        );
    }

    #[test]
    fn a_gzipped_body_decodes_to_the_same_bytes() {
        let body: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let packed = gzip(&body);
        assert!(packed.len() < body.len());
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut back)
            .unwrap();
        assert_eq!(back, body);
    }

    /// Settings as the config file gives them: an endpoint (or none) and one header.
    fn settings(endpoint: Option<&str>, header: (&str, &str)) -> OtlpSettings {
        OtlpSettings {
            endpoint: endpoint.map(str::to_owned),
            headers: vec![(header.0.to_owned(), header.1.to_owned())],
            traces: true,
            metrics: true,
            sample_ratio: 1.0,
            metrics_interval: Duration::from_secs(10),
            service_name: None,
            capture_content: false,
            compression: None,
        }
    }

    fn from_env(signal: Signal, vars: &[(&str, &str)]) -> Result<Destination, OtlpError> {
        let s = settings(None, ("x-from-file", "file"));
        destination_from(signal, &s, &|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_standard_variables_in_the_specifications_precedence() {
        let d = from_env(Signal::Traces, &[]).unwrap();
        assert_eq!(d.url, "http://localhost:4318/v1/traces");
        assert_eq!(d.timeout, DEFAULT_TIMEOUT);
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/custom",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-team=core,x-from-file=env"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-team=metrics"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
        ];
        let traces = from_env(Signal::Traces, &vars).unwrap();
        assert_eq!(traces.url, "https://traces.example/custom");
        assert_eq!(traces.headers["x-team"], "core");
        assert_eq!(traces.headers["x-from-file"], "file");
        assert_eq!(traces.timeout, Duration::from_millis(700));
        let metrics = from_env(Signal::Metrics, &vars).unwrap();
        assert_eq!(metrics.url, "http://collector:4318/v1/metrics");
        assert_eq!(metrics.headers["x-team"], "metrics");
        assert_eq!(metrics.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn malformed_variables_are_refused_naming_the_variable() {
        for (vars, says) in [
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5s")][..],
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_HEADERS", "authorization")][..],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317")][..],
                "http:// or https://",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad name=x")][..],
                "not valid in HTTP",
            ),
        ] {
            let e = from_env(Signal::Traces, vars).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}

//! The gateway's one error type. Its kind decides the HTTP status, whether failover may try
//! the next endpoint, and how the error is spelled in the caller's dialect.

use bytes::Bytes;
use http::StatusCode;

use crate::canonical::Dialect;

/// What went wrong, in the categories failover and observability care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's request is malformed (bad JSON, wrong types, missing fields).
    BadRequest,
    /// The body is larger than `server.max_body_size`.
    PayloadTooLarge,
    /// No route, provider or endpoint by that name.
    NotFound,
    /// No such path on this gateway.
    UnknownPath,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// Could not reach the upstream (connection refused, reset, DNS, TLS).
    Transport,
    /// The upstream did not answer (or send its first byte) in time.
    Timeout,
    /// The upstream answered 429.
    RateLimited,
    /// The upstream answered with an error status other than 429.
    Provider,
    /// The upstream answered 2xx with something we could not decode.
    BadUpstreamResponse,
    /// The request needs something the configuration does not provide (e.g. an API key).
    NotConfigured,
    /// The caller waited too long to send its request.
    ClientTimeout,
    /// The caller hung up before the answer was complete.
    ClientClosed,
    /// A guardrail pattern whose action is `block` matched (request or response).
    GuardrailBlocked,
    /// A plugin failed and the policy fails closed.
    Plugin,
    /// The request's worst-case cost does not fit in what is left of the caller's budget.
    BudgetExceeded,
    /// One of the caller's rate limits (`rate_limits`, claims `rpm` / `tpm`) is reached.
    RateLimitExceeded,
    /// No token, or one that does not verify (auth on).
    Unauthorized,
    /// A valid token that may not do this (admin route, account, model).
    Forbidden,
}

impl ErrorKind {
    /// The kind's name (`BadRequest`, `Provider`, …): `error_type` in logs, events and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::PayloadTooLarge => "PayloadTooLarge",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::UnknownPath => "UnknownPath",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::Transport => "Transport",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::RateLimited => "RateLimited",
            ErrorKind::Provider => "Provider",
            ErrorKind::BadUpstreamResponse => "BadUpstreamResponse",
            ErrorKind::NotConfigured => "NotConfigured",
            ErrorKind::ClientTimeout => "ClientTimeout",
            ErrorKind::ClientClosed => "ClientClosed",
            ErrorKind::GuardrailBlocked => "GuardrailBlocked",
            ErrorKind::Plugin => "Plugin",
            ErrorKind::BudgetExceeded => "BudgetExceeded",
            ErrorKind::RateLimitExceeded => "RateLimitExceeded",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::Forbidden => "Forbidden",
        }
    }
}

/// An upstream's own error answer, kept so it can go back to the caller unchanged when the
/// caller speaks the upstream's dialect.
#[derive(Clone, Debug)]
pub struct UpstreamError {
    /// The upstream's HTTP status.
    pub status: StatusCode,
    /// The dialect the upstream speaks.
    pub dialect: Dialect,
    /// The upstream's error body, as it arrived.
    pub body: Bytes,
    /// The message extracted from the body, for callers of another dialect.
    pub message: String,
}

/// A failed request: its kind (which decides status and failover), the message the caller
/// sees, and the upstream's own answer when there was one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    upstream: Option<Box<UpstreamError>>,
    /// Overrides the kind's failover rule: a provider-adapter plugin says whether its
    /// upstream's error may be retried elsewhere, and a failed adapter call always may.
    retry: Option<bool>,
    /// Extra fields of the error object in every dialect (e.g. a budget's remaining amount).
    details: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// The upstream's `Retry-After` (a 429 or 503), bounded.
    retry_after: Option<std::time::Duration>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            upstream: None,
            retry: None,
            details: None,
            retry_after: None,
        }
    }

    /// Adds fields to the error object of the JSON body.
    pub fn with_details(mut self, details: serde_json::Map<String, serde_json::Value>) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// An [`ErrorKind::BadRequest`] error: the caller's request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::BadRequest, message)
    }

    /// An error status from an upstream; 429 and 5xx are failover triggers.
    pub fn from_upstream(upstream: UpstreamError) -> Self {
        let kind = if upstream.status == StatusCode::TOO_MANY_REQUESTS {
            ErrorKind::RateLimited
        } else {
            ErrorKind::Provider
        };
        Error {
            kind,
            message: upstream.message.clone(),
            upstream: Some(Box::new(upstream)),
            retry: None,
            details: None,
            retry_after: None,
        }
    }

    /// What went wrong, by category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message the caller sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The upstream's own error answer, when the error came from one.
    pub fn upstream(&self) -> Option<&UpstreamError> {
        self.upstream.as_deref()
    }

    /// Sets whether failover may try the next endpoint, whatever the kind says.
    pub fn retryable(mut self, retry: bool) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Prefixes the message with context, keeping the kind and upstream answer.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Whether the next endpoint may be tried: the request never reached a model
    /// that could have acted on it, or the provider said to come back later.
    pub fn is_retryable(&self) -> bool {
        if let Some(retry) = self.retry {
            return retry;
        }
        match self.kind {
            ErrorKind::Transport
            | ErrorKind::Timeout
            | ErrorKind::RateLimited
            | ErrorKind::BadUpstreamResponse => true,
            ErrorKind::Provider => self
                .upstream
                .as_ref()
                .is_some_and(|u| u.status.is_server_error()),
            _ => false,
        }
    }

    /// The HTTP status to answer with: the upstream's own, else the kind's.
    pub fn status(&self) -> StatusCode {
        if let Some(u) = &self.upstream {
            return u.status;
        }
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::NotFound | ErrorKind::UnknownPath => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Transport | ErrorKind::Provider | ErrorKind::BadUpstreamResponse => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::GuardrailBlocked => StatusCode::FORBIDDEN,
            ErrorKind::Plugin => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::BudgetExceeded => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            // nginx's "client closed request"; never actually sent.
            ErrorKind::ClientClosed => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// Notes the upstream's `Retry-After`.
    pub fn with_retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The upstream's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// Extra fields of the error object (every dialect's error body carries them).
    pub fn details(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.details.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        assert!(Error::new(ErrorKind::Transport, "x").is_retryable());
        assert!(Error::new(ErrorKind::Timeout, "x").is_retryable());
        assert!(!Error::bad_request("x").is_retryable());
        let up = |s: u16| UpstreamError {
            status: StatusCode::from_u16(s).unwrap(),
            dialect: Dialect::OpenAiChat,
            body: Bytes::new(),
            message: "m".into(),
        };
        assert!(Error::from_upstream(up(429)).is_retryable());
        assert!(Error::from_upstream(up(503)).is_retryable());
        assert!(!Error::from_upstream(up(400)).is_retryable());
        assert!(!Error::from_upstream(up(404)).is_retryable());
    }
}

//! The agent-card endpoints: `/.well-known/agent-card.json` (the gateway's own card) and
//! `/v1/agents[/{caip10}[/.well-known/agent-card.json]]`. Errors are OpenAI-shaped JSON
//! (`{"error": {message, type, param, code}}`) with `param` naming the offending card field.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{AgentError, Agents, Filter, MAX_CARD_BYTES};
use crate::caller::Caller;
use crate::respond::{Body, json_response};

/// Whether a path is served here.
pub fn is_agent_path(path: &str) -> bool {
    path == "/.well-known/agent-card.json"
        || path == "/v1/agents"
        || path.starts_with("/v1/agents/")
}

/// What the server knows about the request that these handlers need.
pub struct RequestInfo<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The URL path.
    pub path: &'a str,
    /// The URL query, without `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The verified caller; `None` with auth off.
    pub caller: Option<&'a Caller>,
    /// Whether auth is on: writes then need a verified caller.
    pub auth_on: bool,
    /// How long the client may take to send the body (`server.body_timeout`).
    pub body_timeout: Duration,
}

/// Answers an agent-card request: `/.well-known/agent-card.json`, `/v1/agents`,
/// `/v1/agents/{account}`.
pub async fn handle(
    agents: &Agents,
    req: RequestInfo<'_>,
    body: Incoming,
    gateway_card: impl FnOnce() -> Value,
) -> Response<Body> {
    let result = route(agents, &req, body, gateway_card).await;
    result.unwrap_or_else(|e| error(&e))
}

async fn route(
    agents: &Agents,
    req: &RequestInfo<'_>,
    body: Incoming,
    gateway_card: impl FnOnce() -> Value,
) -> Result<Response<Body>, AgentError> {
    let m = req.method;
    if req.path == "/.well-known/agent-card.json" {
        return match *m {
            Method::GET => Ok(ok(StatusCode::OK, &gateway_card())),
            _ => Ok(not_allowed("GET")),
        };
    }
    if req.path == "/v1/agents" {
        return match *m {
            Method::GET => {
                let filter = filter(req.query);
                let list = agents.list(&filter).await?;
                let data: Vec<Value> = list.iter().map(|e| e.to_json()).collect();
                Ok(ok(StatusCode::OK, &json!({"object": "list", "data": data})))
            }
            Method::POST => {
                if req.auth_on && req.caller.is_none() {
                    return Err(AgentError::Unauthorized(
                        "registering an agent card needs an api token".into(),
                    ));
                }
                let bytes = read(req.headers, body, req.body_timeout).await?;
                let (entry, created) = agents.register(&bytes, req.caller).await?;
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(ok(status, &entry.to_json()))
            }
            _ => Ok(not_allowed("GET, POST")),
        };
    }
    let rest = req.path.strip_prefix("/v1/agents/").unwrap_or_default();
    if let Some(account) = rest.strip_suffix("/.well-known/agent-card.json") {
        if *m != Method::GET {
            return Ok(not_allowed("GET"));
        }
        let entry = agents.get(&percent_decode(account)).await?;
        let mut r = ok(StatusCode::OK, &entry.card);
        r.headers_mut().insert(
            "x-agent-card-verified",
            HeaderValue::from_static(if entry.verified { "true" } else { "false" }),
        );
        return Ok(r);
    }
    let account = percent_decode(rest);
    match *m {
        Method::GET => Ok(ok(StatusCode::OK, &agents.get(&account).await?.to_json())),
        Method::DELETE => {
            if req.auth_on && req.caller.is_none() {
                return Err(AgentError::Unauthorized(
                    "deleting an agent card needs its owner's token or an admin token".into(),
                ));
            }
            agents.delete(&account, req.caller).await?;
            let account = super::normalize(&account)?.to_string();
            Ok(ok(
                StatusCode::OK,
                &json!({"object": "agent.deleted", "account": account, "deleted": true}),
            ))
        }
        _ => Ok(not_allowed("GET, DELETE")),
    }
}

fn filter(query: Option<&str>) -> Filter {
    let mut f = Filter::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let v = Some(v.into_owned()).filter(|v| !v.is_empty());
        match k.as_ref() {
            "skill" | "tag" => f.skill = v,
            "chain" => f.chain = v,
            "name" => f.name = v,
            _ => {}
        }
    }
    f
}

/// `%3A` and friends: clients may escape the colons of a CAIP-10 id in the path.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read(
    headers: &HeaderMap,
    body: Incoming,
    timeout: Duration,
) -> Result<bytes::Bytes, AgentError> {
    let too_large = AgentError::TooLarge {
        limit: MAX_CARD_BYTES,
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CARD_BYTES as u64) {
        return Err(too_large);
    }
    match tokio::time::timeout(timeout, Limited::new(body, MAX_CARD_BYTES).collect()).await {
        Err(_) => Err(AgentError::Json(
            "the request body did not arrive in time (server.body_timeout)".into(),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Ok(Err(e)) => Err(AgentError::Json(format!("could not read the body: {e}"))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn ok(status: StatusCode, v: &Value) -> Response<Body> {
    json_response(status, v.to_string())
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"error": {"message": format!("this path allows {allow}"), "type": "invalid_request_error", "param": null, "code": "method_not_allowed"}}).to_string(),
    );
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The status, OpenAI error type, `param` and `code` of an error.
pub fn classify(e: &AgentError) -> (StatusCode, &'static str, Option<String>, &'static str) {
    match e {
        AgentError::Json(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "invalid_json",
        ),
        AgentError::TooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            None,
            "agent_card_too_large",
        ),
        AgentError::Card(c) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(c.path.clone()),
            "invalid_agent_card",
        ),
        AgentError::Signature(s) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(s.path.clone()),
            "invalid_signature",
        ),
        AgentError::Account(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("account".into()),
            "invalid_caip10",
        ),
        AgentError::Unauthorized(_) => (
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            None,
            "missing_token",
        ),
        AgentError::Forbidden(_) => (
            StatusCode::FORBIDDEN,
            "permission_error",
            None,
            "not_your_account",
        ),
        AgentError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            "not_found_error",
            None,
            "agent_not_found",
        ),
        AgentError::Store(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "storage_error",
        ),
    }
}

fn error(e: &AgentError) -> Response<Body> {
    let (status, kind, param, code) = classify(e);
    if status.is_server_error() {
        tracing::error!(error = %e, "agent card request failed");
    }
    json_response(
        status,
        json!({"error": {"message": e.to_string(), "type": kind, "param": param, "code": code}})
            .to_string(),
    )
}

/// The gateway's own card: its model endpoints as skills and its auth scheme.
pub fn gateway_card(base_url: &str, routes: &[String], auth_on: bool) -> Value {
    let mut card = json!({
        "name": "BitRouter",
        "description": "LLM gateway: one endpoint for many providers, with routing, failover, spend tracking and guardrails. Speaks the OpenAI (chat completions and responses), Anthropic and Gemini HTTP APIs.",
        "version": env!("CARGO_PKG_VERSION"),
        "protocolVersion": "0.3.0",
        "url": base_url,
        "preferredTransport": "HTTP+JSON",
        "provider": {"organization": "BitRouter", "url": base_url},
        "capabilities": {"streaming": true, "pushNotifications": false, "stateTransitionHistory": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json", "text/event-stream"],
        "skills": [
            {"id": "openai-chat-completions", "name": "OpenAI chat completions",
             "description": format!("POST {base_url}/v1/chat/completions (OpenAI dialect, JSON or SSE)"),
             "tags": ["llm", "openai", "chat"], "examples": routes.iter().take(32).collect::<Vec<_>>()},
            {"id": "openai-responses", "name": "OpenAI responses",
             "description": format!("POST {base_url}/v1/responses (OpenAI Responses dialect, JSON or SSE; stateless)"),
             "tags": ["llm", "openai", "responses"], "examples": routes.iter().take(32).collect::<Vec<_>>()},
            {"id": "anthropic-messages", "name": "Anthropic messages",
             "description": format!("POST {base_url}/v1/messages (Anthropic dialect, JSON or SSE)"),
             "tags": ["llm", "anthropic", "messages"], "examples": routes.iter().take(32).collect::<Vec<_>>()},
            {"id": "models", "name": "Model list",
             "description": format!("GET {base_url}/v1/models: the routes and provider:model ids this gateway serves"),
             "tags": ["llm", "models"]},
            {"id": "agent-registry", "name": "Agent registry",
             "description": format!("GET {base_url}/v1/agents: A2A agent cards bound to CAIP-10 wallet accounts, signed by their keys"),
             "tags": ["a2a", "agents", "discovery"]},
        ],
    });
    if auth_on {
        card["securitySchemes"] = json!({
            "wallet-jwt": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A JWT signed by a wallet key: alg SOL_EDDSA (Solana ed25519) or EIP191K (EVM secp256k1, EIP-191), iss = the CAIP-10 account. Sent as Authorization: Bearer or x-api-key."
            }
        });
        card["security"] = json!([{"wallet-jwt": []}]);
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_card_is_a_valid_card() {
        for auth in [false, true] {
            let c = gateway_card("http://127.0.0.1:8787", &["fast".into()], auth);
            assert_eq!(super::super::card::validate(&c).unwrap(), "BitRouter");
            assert_eq!(c.get("securitySchemes").is_some(), auth);
        }
    }

    #[test]
    fn decodes_escaped_colons_only_when_well_formed() {
        assert_eq!(percent_decode("eip155%3A1%3A0xab"), "eip155:1:0xab");
        assert_eq!(percent_decode("a%3"), "a%3");
        assert_eq!(percent_decode("a%zz"), "a%zz");
    }

    #[test]
    fn filters_parse_from_the_query() {
        let f = filter(Some("skill=research&chain=eip155%3A1&name=&x=1"));
        assert_eq!(f.skill.as_deref(), Some("research"));
        assert_eq!(f.chain.as_deref(), Some("eip155:1"));
        assert_eq!(f.name, None);
    }
}

//! The route table: every path the gateway serves, with its method, the token it needs and
//! the handler it goes to, in one place. The server looks a request up here once
//! ([`find`]); authentication reads the access rule ([`access`]); the 404 message lists the
//! table ([`unknown_path`]).

use http::Method;

use crate::canonical::Dialect;
use crate::error::{Error, ErrorKind};

/// What a path needs from the caller's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Liveness and the dashboard's static page (its fetches carry the token).
    Open,
    /// Model endpoints: any valid token.
    Api,
    /// `/admin/*` and metrics: an admin token.
    Admin,
    /// Agent cards: public to read; a token, when sent, must be valid and then says who
    /// writes (the handlers refuse anonymous writes when auth is on).
    Optional,
}

/// Where a matched request goes (`Gateway::handle` dispatches on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// A model call in a dialect whose model is in the body.
    Model(Dialect),
    /// A Gemini model call: model and stream flag come from the URL.
    GeminiModel,
    /// `GET /v1/models`: the models callers can name.
    ListModels,
    /// `GET /v1/models/{id}`: one model.
    GetModel,
    /// `GET /health`: liveness.
    Health,
    /// `GET /admin`: the dashboard page.
    Dashboard,
    /// `GET /admin/spend`: spend grouped by account, model, ….
    AdminSpend,
    /// `GET /admin/metrics`: the metrics as JSON.
    AdminMetrics,
    /// `GET /metrics`: the metrics in Prometheus text format.
    Prometheus,
    /// `GET /admin/plugins`: the loaded plugins and their counters.
    AdminPlugins,
    /// `POST /admin/plugins/reload`: reload the plugins from disk.
    ReloadPlugins,
    /// The agent-card endpoints, which check their own methods.
    Agents,
}

/// Which paths a route matches.
#[derive(Clone, Copy, Debug)]
pub enum PathMatch {
    /// These exact paths.
    Exact(&'static [&'static str]),
    /// `/v1/models/{id}` or `/models/{id}` (the id may hold `:` and `/`).
    ModelId,
    /// `/v1beta/models/{model}:{method}` (see `api::gemini::url_model`).
    GeminiMethod,
    /// `/.well-known/agent-card.json`, `/v1/agents[/...]`.
    Agents,
}

impl PathMatch {
    fn matches(self, path: &str) -> bool {
        match self {
            PathMatch::Exact(paths) => paths.contains(&path),
            PathMatch::ModelId => model_id(path).is_some(),
            PathMatch::GeminiMethod => crate::api::gemini::is_method_path(path),
            PathMatch::Agents => crate::agents::http::is_agent_path(path),
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Route {
    /// The paths it matches.
    pub path: PathMatch,
    /// `None`: the handler checks the method itself.
    pub method: Option<Method>,
    /// What the caller's token must allow.
    pub access: Access,
    /// What serves it.
    pub handler: Handler,
    /// How the 404 message names the route.
    pub doc: &'static str,
}

impl Route {
    /// Whether this route serves `method`.
    pub fn allows(&self, method: &Method) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
    }

    /// The `Allow` header for a 405.
    pub fn allow(&self) -> &'static str {
        match self.method {
            Some(Method::POST) => "POST",
            _ => "GET",
        }
    }

    /// Whether this route calls a model (its refusals are request outcomes).
    pub fn is_model_call(&self) -> bool {
        matches!(self.handler, Handler::Model(_) | Handler::GeminiModel)
    }
}

const fn route(
    path: PathMatch,
    method: Option<Method>,
    access: Access,
    handler: Handler,
    doc: &'static str,
) -> Route {
    Route {
        path,
        method,
        access,
        handler,
        doc,
    }
}

use Access::{Admin, Api, Open, Optional};
use PathMatch::Exact;

/// Every route, first match wins.
pub static ROUTES: &[Route] = &[
    route(
        Exact(&["/v1/chat/completions", "/chat/completions"]),
        Some(Method::POST),
        Api,
        Handler::Model(Dialect::OpenAiChat),
        "POST /v1/chat/completions",
    ),
    route(
        Exact(&["/v1/responses", "/responses"]),
        Some(Method::POST),
        Api,
        Handler::Model(Dialect::OpenAiResponses),
        "POST /v1/responses",
    ),
    route(
        Exact(&["/v1/messages", "/messages"]),
        Some(Method::POST),
        Api,
        Handler::Model(Dialect::Anthropic),
        "POST /v1/messages",
    ),
    route(
        PathMatch::GeminiMethod,
        Some(Method::POST),
        Api,
        Handler::GeminiModel,
        "POST /v1beta/models/{model}:generateContent and :streamGenerateContent",
    ),
    route(
        Exact(&["/v1/models", "/models"]),
        Some(Method::GET),
        Api,
        Handler::ListModels,
        "GET /v1/models",
    ),
    route(
        PathMatch::ModelId,
        Some(Method::GET),
        Api,
        Handler::GetModel,
        "GET /v1/models/{id}",
    ),
    route(
        Exact(&["/health", "/healthz"]),
        Some(Method::GET),
        Open,
        Handler::Health,
        "GET /health",
    ),
    route(
        Exact(&["/metrics"]),
        Some(Method::GET),
        Admin,
        Handler::Prometheus,
        "GET /metrics",
    ),
    route(
        Exact(&["/admin", "/admin/"]),
        Some(Method::GET),
        Open,
        Handler::Dashboard,
        "GET /admin (dashboard)",
    ),
    route(
        Exact(&["/admin/metrics", "/v1/metrics"]),
        Some(Method::GET),
        Admin,
        Handler::AdminMetrics,
        "GET /admin/metrics",
    ),
    route(
        Exact(&["/admin/spend"]),
        Some(Method::GET),
        Admin,
        Handler::AdminSpend,
        "GET /admin/spend",
    ),
    route(
        Exact(&["/admin/plugins"]),
        Some(Method::GET),
        Admin,
        Handler::AdminPlugins,
        "GET /admin/plugins",
    ),
    route(
        Exact(&["/admin/plugins/reload"]),
        Some(Method::POST),
        Admin,
        Handler::ReloadPlugins,
        "POST /admin/plugins/reload",
    ),
    route(
        PathMatch::Agents,
        None,
        Optional,
        Handler::Agents,
        "GET /.well-known/agent-card.json, GET/POST /v1/agents, GET/DELETE /v1/agents/{caip10}",
    ),
];

/// The route serving `path`, if any.
pub fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path.matches(path))
}

/// What `path` needs from the caller's token. Unknown paths still need a valid token before
/// they learn anything (then 404); unknown admin and metrics paths an admin token.
pub fn access(path: &str) -> Access {
    match find(path) {
        Some(r) => r.access,
        None if path.starts_with("/admin/") || path.ends_with("metrics") => Access::Admin,
        None => Access::Api,
    }
}

/// The 404 for a path no route serves, listing the ones that exist.
pub fn unknown_path(method: &Method, path: &str) -> Error {
    let served: Vec<&str> = ROUTES.iter().map(|r| r.doc).collect();
    Error::new(
        ErrorKind::UnknownPath,
        format!(
            "no route {method} {path}; this gateway serves {}",
            served.join(", ")
        ),
    )
}

/// The model id of `/v1/models/{id}` (or `/models/{id}`), still percent-encoded: ids such as
/// `openrouter:meta-llama/llama-3` keep their `:` and `/`.
pub fn model_id(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/v1/models/")
        .or_else(|| path.strip_prefix("/models/"))?;
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::percent_decode;

    #[test]
    fn model_paths_keep_colons_and_slashes() {
        assert_eq!(model_id("/v1/models/r"), Some("r"));
        assert_eq!(
            model_id("/v1/models/openrouter:meta/llama-3"),
            Some("openrouter:meta/llama-3")
        );
        assert_eq!(
            model_id("/models/m%3Ax").map(percent_decode).as_deref(),
            Some("m:x")
        );
        assert_eq!(model_id("/v1/models/"), None);
        assert_eq!(model_id("/v1/models"), None);
        assert_eq!(model_id("/v1beta/models/x:generateContent"), None);
    }

    #[test]
    fn every_path_has_one_route_and_its_access() {
        let h = |p: &str| find(p).map(|r| r.handler);
        assert_eq!(
            h("/chat/completions"),
            Some(Handler::Model(Dialect::OpenAiChat))
        );
        assert_eq!(
            h("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Some(Handler::GeminiModel)
        );
        // An unknown Gemini method still belongs to the Gemini route (its 404 is Gemini's).
        assert_eq!(
            h("/v1beta/models/m:countTokens"),
            Some(Handler::GeminiModel)
        );
        assert_eq!(h("/models/a:b/c"), Some(Handler::GetModel));
        assert_eq!(h("/v1/agents/solana:x:y"), Some(Handler::Agents));
        assert_eq!(h("/nope"), None);
        assert_eq!(access("/healthz"), Access::Open);
        assert_eq!(access("/admin/"), Access::Open);
        assert_eq!(access("/admin/spend"), Access::Admin);
        assert_eq!(access("/admin/unknown"), Access::Admin);
        assert_eq!(access("/v1/metrics"), Access::Admin);
        assert_eq!(access("/x/metrics"), Access::Admin);
        assert_eq!(access("/.well-known/agent-card.json"), Access::Optional);
        assert_eq!(access("/v1/models/x"), Access::Api);
        assert_eq!(access("/nope"), Access::Api);
    }

    #[test]
    fn the_404_lists_every_route() {
        let m = unknown_path(&Method::GET, "/nope").message().to_owned();
        for r in ROUTES {
            assert!(m.contains(r.doc), "{m}");
        }
    }
}

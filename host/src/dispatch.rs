//! A request from arrival to answer: request id, route lookup (`routes.rs`), the token its
//! route needs (`auth`), then its handler — a model call goes to `Proxy::model_call`, an
//! admin path to `admin`, agent cards to `agents::http`. Every answer carries `x-request-id`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::api::{self, guess_dialect};
use crate::auth::{AuthError, Verified};
use crate::caller::Scope;
use crate::canonical::Dialect;
use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::proxy::RequestContext;
use crate::respond::{Body, error_response, json_response, method_not_allowed};
use crate::routes::{self, Access, Handler, Route};

impl Gateway {
    /// Answers one request.
    pub(crate) async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let id = request_id(req.headers());
        let path = req.uri().path();
        let route = routes::find(path);
        let token = match self.authenticate(req.headers(), path, route) {
            Ok(t) => t,
            Err(e) => return self.refused(&req, route, &id, &e),
        };
        let mut response = match route {
            None => error_response(
                guess_dialect(req.headers(), path),
                &routes::unknown_path(req.method(), path),
            ),
            Some(r) if !r.allows(req.method()) => {
                method_not_allowed(req.headers(), path, r.allow())
            }
            Some(r) => self.route(r.handler, id.clone(), req, token).await,
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", v);
        }
        response
    }

    /// Runs the handler of a matched route.
    async fn route(
        self: Arc<Self>,
        handler: Handler,
        id: String,
        req: Request<Incoming>,
        token: Option<Arc<Verified>>,
    ) -> Response<Body> {
        let outcomes = &self.proxy.outcomes;
        match handler {
            Handler::Model(dialect) => self.model_call(dialect, None, id, req, token).await,
            Handler::GeminiModel => match api::gemini::url_model(req.uri().path()) {
                Some(Ok(url_model)) => {
                    self.model_call(Dialect::Gemini, Some(url_model), id, req, token)
                        .await
                }
                Some(Err(e)) => error_response(Dialect::Gemini, &e),
                None => error_response(
                    Dialect::Gemini,
                    &routes::unknown_path(req.method(), req.uri().path()),
                ),
            },
            Handler::ListModels => {
                let models = self.visible_models(token.as_deref());
                let body = api::model_list(req.headers(), &models);
                json_response(StatusCode::OK, body.to_string())
            }
            Handler::GetModel => self.get_model(&req, token.as_deref()),
            Handler::Health => self.health(),
            Handler::Dashboard => crate::admin::dashboard(),
            Handler::AdminSpend => crate::admin::spend(&outcomes.ledger, req.uri().query()).await,
            Handler::AdminMetrics => {
                let doc = crate::admin::metrics_document(
                    outcomes,
                    &self.proxy.guardrails(),
                    self.guardrails_enabled(),
                );
                json_response(StatusCode::OK, doc.to_string())
            }
            Handler::Prometheus => {
                let u = self.updates();
                outcomes
                    .metrics
                    .set_state("plugin_updates", "applied", u.applied);
                outcomes
                    .metrics
                    .set_state("plugin_updates", "failed", u.failed);
                for (id, setups, renewals) in self.plugin_instances() {
                    let component = format!("plugin_{id}");
                    outcomes.metrics.set_state(&component, "setups", setups);
                    outcomes.metrics.set_state(&component, "renewals", renewals);
                }
                crate::admin::prometheus(outcomes, &self.proxy.guardrails())
            }
            Handler::AdminPlugins => json_response(StatusCode::OK, self.plugins_json().to_string()),
            Handler::ReloadPlugins => match self.reload_plugins().await {
                Ok(doc) => json_response(StatusCode::OK, doc.to_string()),
                Err(e) => error_response(guess_dialect(req.headers(), req.uri().path()), &e),
            },
            Handler::Agents => {
                let caller = token.as_ref().map(|t| t.caller.clone());
                self.agents_call(req, caller.as_deref()).await
            }
        }
    }

    /// The auth stage: `Ok(None)` with auth off or on an open path, else the verified token
    /// or why it was refused.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        path: &str,
        route: Option<&Route>,
    ) -> Result<Option<Arc<Verified>>, AuthError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let need = route.map_or_else(|| routes::access(path), |r| r.access);
        if need == Access::Open {
            return Ok(None);
        }
        let token = crate::auth::token_from_headers(headers)?;
        if need == Access::Optional && token.is_none() {
            return Ok(None);
        }
        let checked = token
            .ok_or(AuthError::Missing)
            .and_then(|t| auth.authenticate(t))
            .and_then(|v| {
                if need == Access::Admin && v.caller.scope != Scope::Admin {
                    Err(AuthError::AdminRoute(path.to_owned()))
                } else {
                    Ok(v)
                }
            });
        checked.map(Some)
    }

    /// The answer to a request whose token was refused (401/403 in the caller's dialect).
    fn refused(
        &self,
        req: &Request<Incoming>,
        route: Option<&Route>,
        id: &str,
        e: &AuthError,
    ) -> Response<Body> {
        let path = req.uri().path();
        tracing::debug!(path, error = %e, "auth refused the request");
        let dialect = guess_dialect(req.headers(), path);
        let error = e.to_error();
        let mut r = error_response(dialect, &error);
        // A model call's refusal is a request outcome like any other.
        if req.method() == Method::POST && route.is_some_and(Route::is_model_call) {
            // The log line, the metrics and the observers see the refusal; the ledger does
            // not: an unauthenticated flood must not grow the database, and a refused request
            // has no account and costs nothing.
            let ctx = RequestContext::new(id.to_owned(), dialect);
            let _ = self
                .proxy
                .outcomes
                .finish(&ctx, r.status().as_u16(), Some(&error));
        }
        if !e.is_forbidden() {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        if let Ok(v) = HeaderValue::from_str(id) {
            r.headers_mut().insert("x-request-id", v);
        }
        r
    }

    async fn model_call(
        &self,
        dialect: Dialect,
        url_model: Option<crate::api::UrlModel>,
        id: String,
        req: Request<Incoming>,
        token: Option<Arc<Verified>>,
    ) -> Response<Body> {
        let mut ctx = RequestContext::new(id, dialect);
        match token {
            Some(t) => {
                ctx.who.agent = self.agents.name_of(&t.caller.account);
                ctx.who.token = Some(t);
            }
            None => {
                ctx.who.untokened = self
                    .test_caller
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
            }
        }
        ctx.url_model = url_model;
        ctx.in_flight = Some(self.proxy.outcomes.metrics.in_flight());
        let (parts, body) = req.into_parts();
        match self.read_body(&parts.headers, body).await {
            Ok(bytes) => self.proxy.model_call(ctx, &parts.headers, &bytes).await,
            Err(e) => self.proxy.fail(&mut ctx, e).await,
        }
    }

    /// Reads the whole body within `server.max_body_size` and `server.body_timeout`.
    async fn read_body(&self, headers: &HeaderMap, body: Incoming) -> Result<Bytes, Error> {
        let max = self.config.server.max_body_size;
        let too_large = || {
            Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the request body is larger than the limit of {max} bytes (server.max_body_size)"
                ),
            )
        };
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        match tokio::time::timeout(
            self.config.server.body_timeout,
            Limited::new(body, limit).collect(),
        )
        .await
        {
            Err(_) => Err(Error::new(
                ErrorKind::ClientTimeout,
                "the request body did not arrive in time (server.body_timeout)",
            )),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(e)) => Err(Error::bad_request(format!(
                "could not read the request body: {e}"
            ))),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    /// The agent-card endpoints (`crate::agents::http`).
    async fn agents_call(
        &self,
        req: Request<Incoming>,
        caller: Option<&crate::caller::Caller>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let auth_on = self.auth.is_some();
        let info = crate::agents::http::RequestInfo {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            caller,
            auth_on,
            body_timeout: self.config.server.body_timeout,
        };
        let card = || {
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| self.config.server.listen.to_string());
            let routes: Vec<String> = self.proxy.router.route_names().cloned().collect();
            crate::agents::http::gateway_card(&format!("http://{host}"), &routes, auth_on)
        };
        crate::agents::http::handle(&self.agents, info, body, card).await
    }

    /// Routes first, then `provider:model_id` for every provider that can be called, each
    /// with its owner. With a token, only the models its `models` globs allow.
    fn visible_models(&self, token: Option<&Verified>) -> Vec<(String, String)> {
        let mut ids: Vec<(String, String)> = self
            .proxy
            .router
            .route_names()
            .map(|r| (r.clone(), "bitrouter".to_owned()))
            .collect();
        for p in self.config.providers.values() {
            let listed = (p.configured || p.api_key.is_some()) && p.usable();
            if listed {
                ids.extend(
                    p.models
                        .keys()
                        .map(|m| (format!("{}:{m}", p.name), p.name.clone())),
                );
            }
        }
        if let Some(t) = token {
            ids.retain(|(id, _)| t.allows_model(id));
        }
        ids
    }

    /// `GET /v1/models/{id}`: one entry of the list (what the SDKs' `models.retrieve` asks),
    /// or a 404 in the caller's dialect for a name this caller cannot use.
    fn get_model(&self, req: &Request<Incoming>, token: Option<&Verified>) -> Response<Body> {
        let headers = req.headers();
        let id = api::percent_decode(routes::model_id(req.uri().path()).unwrap_or_default());
        match self
            .visible_models(token)
            .into_iter()
            .find(|(m, _)| *m == id)
        {
            Some((id, owner)) => json_response(
                StatusCode::OK,
                api::model_entry(headers, &id, &owner).to_string(),
            ),
            None => {
                let e = Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "model {id:?} is neither a route nor provider:model_id of a usable provider; GET /v1/models lists the names this gateway serves"
                    ),
                );
                error_response(guess_dialect(headers, "/v1/models"), &e)
            }
        }
    }

    fn health(&self) -> Response<Body> {
        let body = json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "routes": self.config.routes.len(),
        });
        json_response(StatusCode::OK, body.to_string())
    }
}

/// The caller's `x-request-id` when it is a sane token; a fresh one otherwise.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{:016x}", fastrand::u64(..)))
}

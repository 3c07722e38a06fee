//! The HTTP front door: hyper accept loop (HTTP/1.1 and h2c on one port), request ids,
//! header and body limits, graceful shutdown, and the one flat route table.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::{AuthError, Authenticator, Verified};
use crate::caller::Scope;
use crate::canonical::Dialect;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::guardrails::{self, Firewall};
use crate::observe::{JsonlSink, Metrics, ObserveCallback, Observers, WasmObserverSink};
use crate::outcome::Outcomes;
use crate::proxy::{Body, Proxy, RequestContext, error_response, json_response};
use crate::router::Router;
use crate::spend::Ledger;
use crate::upstream::Upstream;

/// Everything a request needs, built once from the config.
pub struct Gateway {
    config: Config,
    proxy: Proxy,
    /// The loaded plugins; replaced whole by a successful reload.
    firewall: std::sync::Mutex<Firewall>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    started: Instant,
    /// See `set_caller_for_tests`.
    test_caller: std::sync::RwLock<Option<Arc<crate::caller::Caller>>>,
    /// `Some` when auth is on.
    auth: Option<Arc<Authenticator>>,
    /// Registered A2A agent cards (same database as the ledger).
    agents: Arc<crate::agents::Agents>,
}

/// What a path needs from the caller's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
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

fn access(path: &str) -> Access {
    match path {
        "/health" | "/healthz" | "/admin" | "/admin/" => Access::Open,
        "/v1/models" | "/models" => Access::Api,
        p if is_model_path(p) => Access::Api,
        p if p.starts_with("/admin/") || p.ends_with("metrics") => Access::Admin,
        p if crate::agents::http::is_agent_path(p) => Access::Optional,
        // Unknown paths still need a valid token before they learn anything (then 404).
        _ => Access::Api,
    }
}

impl Gateway {
    /// Builds the router and the HTTP client and opens the spend ledger (creating or
    /// migrating its schema).
    pub async fn new(config: Config) -> Result<Arc<Gateway>, Error> {
        Self::with_observers(config, Vec::new()).await
    }

    /// Like `new`, with extra `ObserveCallback` sinks (a library user's own) beside the
    /// configured ones.
    pub async fn with_observers(
        config: Config,
        extra: Vec<Arc<dyn ObserveCallback>>,
    ) -> Result<Arc<Gateway>, Error> {
        let router = Router::new(&config)?;
        let upstream = Upstream::new(config.connect_timeout)?;
        let o = &config.observe;
        let mut observers = Observers::new();
        if let Some(path) = &o.jsonl {
            let sink = JsonlSink::open(path, o.jsonl_max_bytes, o.jsonl_keep).map_err(|e| {
                Error::new(
                    ErrorKind::NotConfigured,
                    format!("observe.jsonl {}: {e}", path.display()),
                )
            })?;
            observers.add(Arc::new(sink), o.queue_capacity);
        }
        for sink in extra {
            observers.add(sink, o.queue_capacity);
        }
        let ledger = Ledger::open(&config.database).await.map_err(|e| {
            Error::new(
                ErrorKind::NotConfigured,
                format!("cannot open the spend ledger: {e}"),
            )
        })?;
        let firewall = guardrails::load(&config).map_err(|e| {
            let file = config
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<built-in defaults>".into());
            Error::new(ErrorKind::NotConfigured, format!("{file}: {e}"))
        })?;
        for plugin in firewall.observers() {
            observers.add(Arc::new(WasmObserverSink::new(plugin)), o.queue_capacity);
        }
        let ledger = Arc::new(ledger);
        let agents = crate::agents::Agents::open(ledger.clone())
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::NotConfigured,
                    format!("cannot read the agent cards: {e}"),
                )
            })?;
        let budgets = crate::budget::Budgets::open(&ledger, config.budgets.reservation_ttl)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::NotConfigured,
                    format!("cannot open the budget store: {e}"),
                )
            })?;
        let auth = if config.auth_enabled() {
            // The local key store's accounts are the default allowlist.
            let local: Vec<String> =
                crate::auth::keystore::KeyStore::load(&crate::config::home_dir())
                    .map(|k| vec![k.solana_account(), k.evm_account()])
                    .unwrap_or_default();
            let a = Authenticator::new(&config.auth, &local)
                .map_err(|m| Error::new(ErrorKind::NotConfigured, m))?;
            if a.accounts().is_empty() && config.auth.operator_keys.is_empty() {
                tracing::warn!(
                    "auth is on but no account may call: set auth.accounts or create a key store with `bitrouter keygen`"
                );
            }
            Some(Arc::new(a))
        } else {
            None
        };
        let outcomes = Outcomes::new(ledger, Arc::new(Metrics::new()), observers);
        let proxy = Proxy::new(
            router,
            upstream,
            Arc::new(outcomes),
            firewall.engine.clone(),
            budgets,
            config.budgets,
        );
        proxy.set_adapters(firewall.adapters.clone());
        Ok(Arc::new(Gateway {
            proxy,
            test_caller: std::sync::RwLock::new(None),
            agents: Arc::new(agents),
            firewall: std::sync::Mutex::new(firewall),
            reloading: tokio::sync::Mutex::new(()),
            config,
            started: Instant::now(),
            auth,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Test hook: every model call from now on runs as `caller`, as if auth had verified a
    /// token for it. Only library code can call this; nothing over HTTP reaches it.
    #[doc(hidden)]
    pub fn set_caller_for_tests(&self, caller: Option<Arc<crate::caller::Caller>>) {
        *self.test_caller.write().unwrap_or_else(|p| p.into_inner()) = caller;
    }

    /// The budgets this gateway enforces.
    pub fn budgets(&self) -> &crate::budget::Budgets {
        &self.proxy.budgets
    }

    /// The guardrail engine new requests use.
    pub fn guardrails(&self) -> Arc<guardrails::GuardrailEngine> {
        self.proxy.guardrails()
    }

    /// The loaded plugins with their counters (`GET /admin/plugins`).
    pub fn plugins_json(&self) -> serde_json::Value {
        let firewall = self.firewall.lock().unwrap_or_else(|p| p.into_inner());
        let plugins: Vec<serde_json::Value> = firewall
            .host
            .iter()
            .flat_map(|h| h.plugins())
            .map(|p| {
                let i = p.info();
                let st = p.stats();
                json!({
                    "id": &*i.id, "version": i.version, "world": i.world.to_string(),
                    "path": i.path.display().to_string(), "sha256": i.sha256,
                    "wasi": i.uses_wasi,
                    "compiled": match i.compiled { crate::plugins::CompileSource::Cache => "cache", crate::plugins::CompileSource::Compiled => "compiled" },
                    "calls": st.calls, "failures": st.failures(), "traps": st.traps,
                    "deadlines": st.deadlines, "memory": st.memory, "invalid_results": st.invalid_results,
                })
            })
            .collect();
        let patterns: Vec<serde_json::Value> = self
            .guardrail_patterns()
            .into_iter()
            .map(|(id, mut v)| {
                v["id"] = json!(id);
                v
            })
            .collect();
        json!({
            "plugins": plugins,
            "guardrail_patterns": patterns,
            "missing_builtins": firewall.missing_builtins,
        })
    }

    /// Every active guardrail pattern with its actions and its findings so far (since the
    /// plugins were last loaded), in the engine's order.
    fn guardrail_patterns(&self) -> Vec<(String, serde_json::Value)> {
        use std::sync::atomic::Ordering::Relaxed;
        let engine = self.proxy.guardrails();
        engine
            .patterns()
            .iter()
            .map(|p| {
                let action = |d| p.action(d).map(guardrails::action_str);
                let n = |i: usize| p.counts[i].load(Relaxed);
                let doc = json!({
                    "plugin": p.plugin.as_ref().map(|pp| pp.plugin.id().to_owned()),
                    "upgoing": action(crate::plugins::Direction::Request),
                    "downgoing": action(crate::plugins::Direction::Response),
                    "findings": {"block": n(0), "redact": n(1), "warn": n(2)},
                    "plugin_failures": p.failures.load(Relaxed),
                });
                (p.id.to_string(), doc)
            })
            .collect()
    }

    /// Reloads every plugin from disk (the config is not re-read) and swaps the firewall in
    /// at once. Requests in flight finish with the old plugins; on failure the old ones stay
    /// and the error says why. Unchanged components come from the compile cache.
    pub async fn reload_plugins(self: &Arc<Self>) -> Result<serde_json::Value, Error> {
        let _one = self.reloading.lock().await;
        let this = self.clone();
        let loaded = tokio::task::spawn_blocking(move || guardrails::load(&this.config))
            .await
            .map_err(|e| Error::new(ErrorKind::Plugin, format!("plugin reload failed: {e}")))?;
        let firewall = loaded.map_err(|e| {
            tracing::warn!(error = %e, "plugin reload failed; keeping the loaded plugins");
            Error::new(
                ErrorKind::Plugin,
                format!("plugin reload failed, the loaded plugins stay: {e}"),
            )
        })?;
        let old: std::collections::HashMap<String, String> = {
            let f = self.firewall.lock().unwrap_or_else(|p| p.into_inner());
            f.host
                .iter()
                .flat_map(|h| h.plugins())
                .map(|p| (p.info().id.to_string(), p.info().sha256.clone()))
                .collect()
        };
        let changed: Vec<String> = firewall
            .host
            .iter()
            .flat_map(|h| h.plugins())
            .filter(|p| old.get(&*p.info().id) != Some(&p.info().sha256))
            .map(|p| p.info().id.to_string())
            .collect();
        self.proxy.set_guardrails(firewall.engine.clone());
        self.proxy.set_adapters(firewall.adapters.clone());
        *self.firewall.lock().unwrap_or_else(|p| p.into_inner()) = firewall;
        tracing::info!(changed = ?changed, "plugins reloaded");
        let mut doc = self.plugins_json();
        doc["changed"] = json!(changed);
        Ok(doc)
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.proxy.outcomes.ledger
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.proxy.outcomes.metrics
    }

    /// The `/admin/metrics` document: metrics plus the sinks' and the ledger's counters.
    fn metrics_json(&self) -> serde_json::Value {
        let outcomes = &self.proxy.outcomes;
        let mut doc = outcomes.metrics.snapshot();
        let sinks = outcomes
            .observers
            .read()
            .map(|o| o.stats())
            .unwrap_or_default();
        doc["observe"] = json!({ "sinks": sinks });
        doc["ledger"] =
            json!({ "engine": outcomes.ledger.engine(), "stats": outcomes.ledger.stats() });
        let patterns: serde_json::Map<String, serde_json::Value> =
            self.guardrail_patterns().into_iter().collect();
        doc["guardrails"] = json!({
            "enabled": self.config.guardrails.enabled,
            "patterns": patterns,
        });
        doc
    }

    fn prometheus(&self) -> Response<Body> {
        let outcomes = &self.proxy.outcomes;
        let m = &outcomes.metrics;
        let l = outcomes.ledger.stats();
        for (state, v) in [
            ("written", l.written),
            ("dropped", l.dropped),
            ("failed", l.failed),
            ("queued", l.queued),
        ] {
            m.set_state("ledger", state, v);
        }
        for s in outcomes
            .observers
            .read()
            .map(|o| o.stats())
            .unwrap_or_default()
        {
            let component = format!("observe_{}", s.name);
            m.set_state(&component, "delivered", s.delivered);
            m.set_state(&component, "dropped", s.dropped);
            m.set_state(&component, "panicked", s.panicked);
        }
        {
            use std::sync::atomic::Ordering::Relaxed;
            let engine = self.proxy.guardrails();
            for p in engine.patterns() {
                // `counts` is indexed block, redact, warn (as in `guardrail_patterns`).
                for (i, action) in ["block", "redact", "warn"].into_iter().enumerate() {
                    m.set_guardrail(&p.id, action, p.counts[i].load(Relaxed));
                }
                m.set_guardrail(&p.id, "plugin_failure", p.failures.load(Relaxed));
            }
        }
        let mut r = Response::new(crate::proxy::full(m.prometheus()));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    /// The auth stage: `Ok(None)` with auth off or on an open path, else the verified token
    /// or why it was refused.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Option<Arc<Verified>>, AuthError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let need = access(path);
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

    /// The flat route table.
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let id = request_id(req.headers());
        let path = req.uri().path();
        let method = req.method().clone();
        let token = match self.authenticate(req.headers(), path) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(path, error = %e, "auth refused the request");
                let dialect = guess_dialect(req.headers(), path);
                let error = e.to_error();
                let mut r = error_response(dialect, &error);
                // A model call's refusal is a request outcome like any other.
                if method == Method::POST && is_model_path(path) {
                    // The log line, the metrics and the observers see the refusal; the
                    // ledger does not: an unauthenticated flood must not grow the database,
                    // and a refused request has no account and costs nothing.
                    let ctx = RequestContext::new(id.clone(), dialect);
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
                if let Ok(v) = HeaderValue::from_str(&id) {
                    r.headers_mut().insert("x-request-id", v);
                }
                return r;
            }
        };
        let mut response = match (path, &method) {
            ("/v1/chat/completions" | "/chat/completions", &Method::POST) => {
                self.model_call(Dialect::OpenAiChat, None, id.clone(), req, token)
                    .await
            }
            ("/v1/messages" | "/messages", &Method::POST) => {
                self.model_call(Dialect::Anthropic, None, id.clone(), req, token)
                    .await
            }
            ("/v1/responses" | "/responses", &Method::POST) => {
                self.model_call(Dialect::OpenAiResponses, None, id.clone(), req, token)
                    .await
            }
            (p, _) if gemini_path(p).is_some() => match gemini_path(p) {
                Some(Ok(url_model)) if method == Method::POST => {
                    self.model_call(Dialect::Gemini, Some(url_model), id.clone(), req, token)
                        .await
                }
                Some(Err(e)) if method == Method::POST => error_response(Dialect::Gemini, &e),
                _ => method_not_allowed(req.headers(), path, "POST"),
            },
            ("/v1/models" | "/models", &Method::GET) => {
                self.list_models(req.headers(), token.as_deref())
            }
            (p, &Method::GET) if model_path(p).is_some() => {
                let id = percent_decode(model_path(p).unwrap_or_default());
                self.get_model(req.headers(), &id, token.as_deref())
            }
            (p, _) if model_path(p).is_some() => method_not_allowed(req.headers(), path, "GET"),
            ("/health" | "/healthz", &Method::GET) => self.health(),
            ("/admin/spend", &Method::GET) => {
                crate::admin::spend(&self.proxy.outcomes.ledger, req.uri().query()).await
            }
            ("/admin/metrics" | "/v1/metrics", &Method::GET) => {
                json_response(StatusCode::OK, self.metrics_json().to_string())
            }
            ("/metrics", &Method::GET) => self.prometheus(),
            ("/admin/plugins", &Method::GET) => {
                json_response(StatusCode::OK, self.plugins_json().to_string())
            }
            ("/admin/plugins/reload", &Method::POST) => match self.reload_plugins().await {
                Ok(doc) => json_response(StatusCode::OK, doc.to_string()),
                Err(e) => error_response(guess_dialect(req.headers(), path), &e),
            },
            ("/admin" | "/admin/", &Method::GET) => {
                html_response(include_str!("../assets/dashboard.html"))
            }
            ("/admin/metrics" | "/v1/metrics" | "/metrics", _) => {
                method_not_allowed(req.headers(), path, "GET")
            }
            (
                "/v1/chat/completions"
                | "/chat/completions"
                | "/v1/messages"
                | "/messages"
                | "/v1/responses"
                | "/responses",
                _,
            ) => method_not_allowed(req.headers(), path, "POST"),
            (
                "/v1/models" | "/models" | "/health" | "/healthz" | "/admin/spend" | "/admin"
                | "/admin/" | "/admin/plugins",
                _,
            ) => method_not_allowed(req.headers(), path, "GET"),
            ("/admin/plugins/reload", _) => method_not_allowed(req.headers(), path, "POST"),
            (p, _) if crate::agents::http::is_agent_path(p) => {
                let caller = token.as_ref().map(|t| t.caller.clone());
                self.agents_call(req, caller.as_deref()).await
            }
            _ => {
                let e = Error::new(
                    ErrorKind::UnknownPath,
                    format!(
                        "no route {method} {path}; this gateway serves POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, POST /v1beta/models/{{model}}:generateContent and :streamGenerateContent, GET /v1/models, GET /v1/models/{{id}}, GET /health, GET /metrics, GET /admin (dashboard), GET /admin/metrics, GET /admin/spend, GET /admin/plugins, POST /admin/plugins/reload, GET /.well-known/agent-card.json, GET/POST /v1/agents, GET/DELETE /v1/agents/{{caip10}}"
                    ),
                );
                error_response(guess_dialect(req.headers(), path), &e)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", v);
        }
        response
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
        ctx.caller = self
            .test_caller
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(t) = token {
            ctx.caller = Some(t.caller.clone());
            ctx.account = Some(t.caller.account.clone());
            ctx.session = Some(t.caller.session.clone());
            ctx.agent = self.agents.name_of(&t.caller.account);
            ctx.token = Some(t);
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
        let auth_on = self.auth_on();
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

    /// The registered agents (A2A cards by CAIP-10 account).
    pub fn agents(&self) -> &Arc<crate::agents::Agents> {
        &self.agents
    }

    fn auth_on(&self) -> bool {
        self.auth.is_some()
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

    /// `GET /v1/models`: OpenAI's list shape, Anthropic's when the caller sent
    /// `anthropic-version`.
    fn list_models(&self, headers: &HeaderMap, token: Option<&Verified>) -> Response<Body> {
        let ids = self.visible_models(token);
        let anthropic = headers.contains_key("anthropic-version");
        let data: Vec<_> = ids
            .iter()
            .map(|(id, owner)| model_object(anthropic, id, owner))
            .collect();
        let body = if anthropic {
            json!({"data": data, "has_more": false, "first_id": ids.first().map(|i| &i.0), "last_id": ids.last().map(|i| &i.0)})
        } else {
            json!({"object": "list", "data": data})
        };
        json_response(StatusCode::OK, body.to_string())
    }

    /// `GET /v1/models/{id}`: one entry of the list (what the SDKs' `models.retrieve` asks),
    /// or a 404 in the caller's dialect for a name this caller cannot use.
    fn get_model(&self, headers: &HeaderMap, id: &str, token: Option<&Verified>) -> Response<Body> {
        let anthropic = headers.contains_key("anthropic-version");
        match self
            .visible_models(token)
            .into_iter()
            .find(|(m, _)| m == id)
        {
            Some((id, owner)) => json_response(
                StatusCode::OK,
                model_object(anthropic, &id, &owner).to_string(),
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

/// One model in OpenAI's shape, or Anthropic's.
fn model_object(anthropic: bool, id: &str, owner: &str) -> serde_json::Value {
    if anthropic {
        json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
    } else {
        json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
    }
}

/// The model id of `/v1/models/{id}` (or `/models/{id}`), still percent-encoded: ids such as
/// `openrouter:meta-llama/llama-3` keep their `:` and `/`.
fn model_path(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/v1/models/")
        .or_else(|| path.strip_prefix("/models/"))?;
    (!id.is_empty()).then_some(id)
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

/// Parses a Gemini method path, `/v1beta/models/{model}:generateContent` (or
/// `:streamGenerateContent`). `None`: not a Gemini path. The model may hold
/// `:` (`provider:model_id`) and `/`, so only the last `:` separates the method.
/// The endpoints that call a model (every dialect).
fn is_model_path(path: &str) -> bool {
    matches!(
        path,
        "/v1/chat/completions"
            | "/chat/completions"
            | "/v1/responses"
            | "/responses"
            | "/v1/messages"
            | "/messages"
    ) || gemini_path(path).is_some()
}

fn gemini_path(path: &str) -> Option<Result<crate::api::UrlModel, Error>> {
    let rest = path.strip_prefix("/v1beta/models/")?;
    let (model, method) = rest.rsplit_once(':')?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return Some(Err(Error::new(
                ErrorKind::UnknownPath,
                format!(
                    "unknown method {method:?}; this gateway serves generateContent and streamGenerateContent"
                ),
            )));
        }
    };
    let model = percent_decode(model);
    if model.is_empty() {
        return Some(Err(Error::new(
            ErrorKind::NotFound,
            "the URL names no model before the method (/v1beta/models/{model}:generateContent)",
        )));
    }
    Some(Ok(crate::api::UrlModel { model, stream }))
}

/// `%3A` → `:` and the like; clients may escape the colon in `provider:model_id`.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn guess_dialect(headers: &HeaderMap, path: &str) -> Dialect {
    if path.starts_with("/v1beta/") || headers.contains_key("x-goog-api-key") {
        Dialect::Gemini
    } else if path.contains("/messages") || headers.contains_key("anthropic-version") {
        Dialect::Anthropic
    } else if path.ends_with("/responses") {
        Dialect::OpenAiResponses
    } else {
        Dialect::OpenAiChat
    }
}

fn method_not_allowed(headers: &HeaderMap, path: &str, allow: &'static str) -> Response<Body> {
    let e = Error::new(
        ErrorKind::MethodNotAllowed,
        format!("{path} accepts {allow} only"),
    );
    let mut r = error_response(guess_dialect(headers, path), &e);
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The admin dashboard's Content-Security-Policy: the page is one self-contained file, so
/// only its own inline script and style run, and it talks to this origin alone (`data:`
/// images only for its empty favicon, which spares a request for `/favicon.ico`).
const DASHBOARD_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// An embedded HTML page (the admin dashboard), with a CSP that allows only `'self'` and
/// inline script/style.
fn html_response(page: &'static str) -> Response<Body> {
    let mut r = Response::new(crate::proxy::full(page));
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

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until the first bytes tell HTTP/1 from the HTTP/2 preface. hyper's header timeout
/// only starts after that detection, so without this a client that connects and sends
/// nothing (or half a preface) would hold its connection forever.
async fn protocol_known(stream: &tokio::net::TcpStream, within: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return false,
            Ok(Ok(n)) if n == buf.len() || buf[..n] != H2_PREFACE[..n] => return true,
            // A partial preface: peek returns the same bytes at once (and `timeout_at` polls
            // it before its timer), so check the deadline here and wait a little.
            Ok(Ok(_)) if tokio::time::Instant::now() >= deadline => return false,
            Ok(Ok(_)) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for `server.shutdown_grace`.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gateway.config.server.header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let reloader = tokio::spawn(reload_on_sighup(gateway.clone()));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let service = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(gw.handle(req).await) }
        });
        let header_timeout = gateway.config.server.header_timeout;
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            if !protocol_known(&stream, header_timeout).await {
                return;
            }
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    reloader.abort();
    let grace = gateway.config.server.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace of {} expired; closing remaining connections", humantime::format_duration(grace)),
    }
    // Everything accepted is accounted: write what the ledger still holds.
    gateway.proxy.outcomes.close(grace).await;
    gateway.proxy.budgets.close().await;
    Ok(())
}

/// `SIGHUP` reloads the plugins, like `POST /admin/plugins/reload`.
async fn reload_on_sighup(gateway: Arc<Gateway>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading plugins");
            // Failures are logged by `reload_plugins`; the old plugins stay.
            let _ = gateway.reload_plugins().await;
        }
    }
    #[cfg(not(unix))]
    let _ = gateway;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths_keep_colons_and_slashes() {
        assert_eq!(model_path("/v1/models/r"), Some("r"));
        assert_eq!(
            model_path("/v1/models/openrouter:meta/llama-3"),
            Some("openrouter:meta/llama-3")
        );
        assert_eq!(
            model_path("/models/m%3Ax").map(percent_decode).as_deref(),
            Some("m:x")
        );
        assert_eq!(model_path("/v1/models/"), None);
        assert_eq!(model_path("/v1/models"), None);
        assert_eq!(model_path("/v1beta/models/x:generateContent"), None);
    }

    #[test]
    fn gemini_paths_keep_colons_and_slashes_in_the_model() {
        let ok = |p: &str| gemini_path(p).unwrap().unwrap();
        let m = ok("/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!((m.model.as_str(), m.stream), ("gemini-2.5-flash", false));
        let m = ok("/v1beta/models/google:gemini-2.5-pro:streamGenerateContent");
        assert_eq!(
            (m.model.as_str(), m.stream),
            ("google:gemini-2.5-pro", true)
        );
        let m = ok("/v1beta/models/openrouter:openai/gpt-4o:generateContent");
        assert_eq!(m.model, "openrouter:openai/gpt-4o");
        assert_eq!(
            ok("/v1beta/models/up%3Agem:generateContent").model,
            "up:gem"
        );
        assert!(
            gemini_path("/v1beta/models/m:countTokens")
                .unwrap()
                .is_err()
        );
        assert!(
            gemini_path("/v1beta/models/:generateContent")
                .unwrap()
                .is_err()
        );
        assert!(gemini_path("/v1/models").is_none());
        assert!(gemini_path("/v1beta/models/no-method").is_none());
    }
}

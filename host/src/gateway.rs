//! The application, assembled once from the config: router, upstream client, spend ledger,
//! budgets, plugins (guardrails, observers, adapters), authenticator and agent registry, wired
//! into one `Proxy`. Reloading swaps the plugins in place. `dispatch.rs` is where a request
//! enters it.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::guardrails::{self, Firewall};
use crate::observe::{JsonlSink, Metrics, ObserveCallback, Observers, WasmObserverSink};
use crate::outcome::Outcomes;
use crate::proxy::Proxy;
use crate::router::Router;
use crate::spend::Ledger;
use crate::upstream::Upstream;

/// Everything a request needs, built once from the config.
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) proxy: Proxy,
    /// The loaded plugins; replaced whole by a successful reload.
    firewall: std::sync::Mutex<Firewall>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// `guardrails.enabled` of the config the loaded plugins came from (a reload re-reads it).
    guardrails_enabled: std::sync::atomic::AtomicBool,
    /// What the last check of the followed OCI tags found, and how many applied or failed.
    updates: std::sync::Mutex<Updates>,
    pub(crate) started: Instant,
    /// See `set_caller_for_tests`.
    pub(crate) test_caller: std::sync::RwLock<Option<Arc<crate::caller::Caller>>>,
    /// `Some` when auth is on.
    pub(crate) auth: Option<Arc<Authenticator>>,
    /// Registered A2A agent cards (same database as the ledger).
    pub(crate) agents: Arc<crate::agents::Agents>,
}

/// The followed OCI tags' update checks (`plugins.update_interval`), for `/admin/plugins`
/// and `/metrics`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Updates {
    /// When the last check ran, Unix milliseconds.
    pub last_check_ms: Option<i64>,
    /// `unchanged`, `applied` (a new digest was verified and swapped in) or `failed`.
    pub last_outcome: Option<&'static str>,
    /// Why the last check failed (registry unreachable, the new digest did not verify, ...).
    pub last_error: Option<String>,
    /// Checks that swapped in a new digest.
    pub applied: u64,
    /// Checks that failed; the running plugins stayed.
    pub failed: u64,
    /// After a refused update: when the same digests are tried again, Unix milliseconds
    /// (`None` once the tags move or an update applies). A digest that moves the tag again
    /// is tried at the next check.
    pub retry_at_ms: Option<i64>,
    /// The tags' digests whose update was refused, and how many times in a row.
    #[serde(skip)]
    refused: Option<(Vec<String>, u32)>,
}

/// The longest a refused update waits before it is tried again.
const MAX_UPDATE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a refused update waits before the same digests are tried again: the interval
/// doubled per refusal in a row (twice the interval after the first), at most an hour. A
/// refusal that is the registry's fault passes by the next tries; one that is the artifact's
/// (unsigned, a rollback) would otherwise pull, verify and log again at every interval.
fn update_backoff(interval: std::time::Duration, refusals: u32) -> std::time::Duration {
    interval
        .saturating_mul(1u32 << refusals.min(20))
        .min(MAX_UPDATE_BACKOFF)
}

/// A start-up failure: the config is not usable as it stands.
fn not_configured(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::NotConfigured, message)
}

/// The rate-limit store `rate_limits.store` names, with the limits.
async fn rate_limits(
    config: &Config,
    ledger: &Ledger,
) -> Result<Arc<crate::ratelimit::RateLimits>, Error> {
    use crate::config::RateStore;
    use crate::ratelimit::{RateLimits, Store};
    let store = match &config.rate_limits.store {
        RateStore::Memory => Store::memory(),
        RateStore::Redis(url) => {
            Store::redis(url).map_err(|e| not_configured(format!("rate_limits.store: {e}")))?
        }
        RateStore::Postgres => match ledger.store() {
            crate::spend::store::Store::Postgres(pool) => Store::postgres(pool.clone())
                .await
                .map_err(|e| not_configured(format!("rate_limits.store: {e}")))?,
            _ => {
                return Err(not_configured(
                    "rate_limits.store: postgres needs a postgres:// database.url",
                ));
            }
        },
    };
    Ok(RateLimits::new(store, config.rate_limits.settings.clone()))
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
        let upstream = Upstream::new(config.connect_timeout, config.server.runtimes())?;
        let ledger = Ledger::open(&config.database)
            .await
            .map_err(|e| not_configured(format!("cannot open the spend ledger: {e}")))?;
        let firewall = load_firewall(&config)?;
        let store = &config.plugins.artifact_dir;
        crate::plugins::versions::check(store, &firewall.plugins)
            .map_err(|e| not_configured(format!("{}: {e}", config_file(&config))))?;
        firewall.plugins.remember_verified(store);
        record_versions(store, &firewall);
        let observers = observers(&config, extra, &firewall)?;
        let ledger = Arc::new(ledger);
        let agents = crate::agents::Agents::open(ledger.clone())
            .await
            .map_err(|e| not_configured(format!("cannot read the agent cards: {e}")))?;
        let budgets = crate::budget::Budgets::open(&ledger, config.budgets.reservation_ttl)
            .await
            .map_err(|e| not_configured(format!("cannot open the budget store: {e}")))?;
        let rate_limits = rate_limits(&config, &ledger).await?;
        let auth = authenticator(&config)?;
        let (observers, otlp) = observers;
        let mut outcomes = Outcomes::new(
            ledger,
            Arc::new(Metrics::with_runtimes(config.server.runtimes())),
            observers,
        );
        outcomes.otlp = otlp;
        outcomes.capture_content = config
            .observe
            .otlp
            .as_ref()
            .is_some_and(|o| o.traces && o.capture_content);
        outcomes.trace_ratio = config
            .observe
            .otlp
            .as_ref()
            .filter(|o| o.traces)
            .map(|o| o.sample_ratio);
        let mut proxy = Proxy::new(
            router,
            upstream,
            Arc::new(outcomes),
            firewall.engine.clone(),
            budgets,
            config.budgets,
        );
        proxy.rate_limits = rate_limits;
        proxy.set_adapters(firewall.plugins.adapters.clone());
        Ok(Arc::new(Gateway {
            proxy,
            test_caller: std::sync::RwLock::new(None),
            agents: Arc::new(agents),
            firewall: std::sync::Mutex::new(firewall),
            reloading: tokio::sync::Mutex::new(()),
            guardrails_enabled: config.guardrails.enabled.into(),
            updates: std::sync::Mutex::new(Updates::default()),
            config,
            started: Instant::now(),
            auth,
        }))
    }

    /// The configuration the gateway was built from.
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

    /// The spend ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.proxy.outcomes.ledger
    }

    /// The request metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.proxy.outcomes.metrics
    }

    /// The registered agents (A2A cards by CAIP-10 account).
    pub fn agents(&self) -> &Arc<crate::agents::Agents> {
        &self.agents
    }

    /// The loaded plugins with their counters (`GET /admin/plugins`), and the update checks.
    pub fn plugins_json(&self) -> serde_json::Value {
        let firewall = self.firewall.lock().unwrap_or_else(|p| p.into_inner());
        let mut doc = crate::admin::plugins_document(&firewall.plugins, &self.proxy.guardrails());
        doc["updates"] = json!(self.updates());
        doc
    }

    /// Each loaded plugin's id with its instance set-ups: on a call's path, and renewals of
    /// warm instances off it (for the Prometheus exposition).
    pub fn plugin_instances(&self) -> Vec<(String, u64, u64)> {
        let firewall = self.firewall.lock().unwrap_or_else(|p| p.into_inner());
        firewall
            .plugins
            .iter()
            .map(|p| {
                let st = p.stats();
                (p.info().id.to_string(), st.setups, st.renewals)
            })
            .collect()
    }

    /// The update checks so far.
    pub fn updates(&self) -> Updates {
        self.updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks every followed OCI tag for a new digest and, when one moved, reloads (pull,
    /// verify, compile, swap — all or nothing, as `reload_plugins`). `None` when no plugin
    /// follows a tag; `deferred` when the tags name the digests of a refused update whose
    /// retry time (`Updates::retry_at_ms`) has not come.
    pub async fn check_for_updates(self: &Arc<Self>) -> Option<&'static str> {
        let followed = {
            let f = self.firewall.lock().unwrap_or_else(|p| p.into_inner());
            f.plugins.followed.clone()
        };
        if followed.is_empty() {
            return None;
        }
        let mut moved = false;
        let mut failure = None;
        let mut digests = Vec::with_capacity(followed.len());
        for (reference, running) in &followed {
            match crate::plugins::oci::current_digest(reference, &self.config.plugins.registries)
                .await
            {
                Ok(now) => {
                    moved |= now != *running;
                    digests.push(now);
                }
                Err(e) => {
                    failure = Some(format!("cannot check {reference}: {e}"));
                    break;
                }
            }
        }
        let now_ms = crate::spend::query_now_ms();
        // The same digests as a refused update, before their retry time: not pulled again;
        // the refusal stays what `/admin/plugins` reports.
        if failure.is_none() && moved {
            let mut u = self.updates.lock().unwrap_or_else(|p| p.into_inner());
            if u.refused.as_ref().is_some_and(|(d, _)| *d == digests)
                && u.retry_at_ms.is_some_and(|at| now_ms < at)
            {
                u.last_check_ms = Some(now_ms);
                return Some("deferred");
            }
        }
        let mut refused = false;
        if failure.is_none()
            && moved
            && let Err(e) = self.reload_plugins().await
        {
            failure = Some(e.message().to_owned());
            refused = true;
        }
        let outcome = match (&failure, moved) {
            (Some(_), _) => "failed",
            (None, true) => "applied",
            (None, false) => "unchanged",
        };
        if let Some(e) = &failure {
            tracing::warn!(error = %e, "plugin update check failed; the running plugins stay");
        }
        let mut u = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        u.last_check_ms = Some(now_ms);
        u.last_outcome = Some(outcome);
        let checked = failure.is_none();
        u.last_error = failure;
        if refused {
            let in_a_row = match &u.refused {
                Some((d, n)) if *d == digests => n + 1,
                _ => 1,
            };
            let interval = self
                .config
                .plugins
                .update_interval
                .unwrap_or(std::time::Duration::from_secs(1));
            let wait = update_backoff(interval, in_a_row);
            u.retry_at_ms = Some(now_ms.saturating_add(wait.as_millis() as i64));
            u.refused = Some((digests, in_a_row));
        } else if checked {
            u.retry_at_ms = None;
            u.refused = None;
        }
        match outcome {
            "applied" => u.applied += 1,
            "failed" => u.failed += 1,
            _ => {}
        }
        Some(outcome)
    }

    /// Whether the guardrails of the loaded configuration are on.
    pub fn guardrails_enabled(&self) -> bool {
        self.guardrails_enabled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-reads the config file's `guardrails` and `plugins` sections (the rest needs a
    /// restart), reloads every plugin from disk, and swaps the firewall in at once — all or
    /// nothing: requests in flight finish with the old plugins; on any failure (a config
    /// error with its file, line and key, a plugin that does not load or verify, a version
    /// older than the one running) the old set stays and the error says why. Unchanged
    /// components come from the compile cache.
    pub async fn reload_plugins(self: &Arc<Self>) -> Result<serde_json::Value, Error> {
        let _one = self.reloading.lock().await;
        let this = self.clone();
        let loaded = tokio::task::spawn_blocking(move || this.load_again())
            .await
            .map_err(|e| Error::new(ErrorKind::Plugin, format!("plugin reload failed: {e}")))?;
        let checked = loaded.and_then(|(firewall, enabled, store)| {
            let f = self.firewall.lock().unwrap_or_else(|p| p.into_inner());
            refuse_rollback(&f, &firewall)?;
            crate::plugins::versions::check(&store, &firewall.plugins)?;
            firewall.plugins.remember_verified(&store);
            record_versions(&store, &firewall);
            Ok((firewall, enabled))
        });
        let (firewall, enabled) = checked.map_err(|e| {
            tracing::warn!(error = %e, "plugin reload failed; keeping the loaded plugins");
            Error::new(
                ErrorKind::Plugin,
                format!("plugin reload failed, the loaded plugins stay: {e}"),
            )
        })?;
        let old: std::collections::HashMap<String, String> = {
            let f = self.firewall.lock().unwrap_or_else(|p| p.into_inner());
            f.plugins
                .iter()
                .map(|p| (p.info().id.to_string(), p.info().sha256.clone()))
                .collect()
        };
        let changed: Vec<String> = firewall
            .plugins
            .iter()
            .filter(|p| old.get(&*p.info().id) != Some(&p.info().sha256))
            .map(|p| p.info().id.to_string())
            .collect();
        self.proxy.set_guardrails(firewall.engine.clone());
        self.proxy.set_adapters(firewall.plugins.adapters.clone());
        *self.firewall.lock().unwrap_or_else(|p| p.into_inner()) = firewall;
        self.guardrails_enabled
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(changed = ?changed, "plugins reloaded");
        let mut doc = self.plugins_json();
        doc["changed"] = json!(changed);
        Ok(doc)
    }

    /// Waits for what was accepted to be accounted: the ledger's queue written and the
    /// budget store's settlements flushed, within `grace`.
    pub async fn close(&self, grace: std::time::Duration) {
        self.proxy.outcomes.close(grace).await;
        self.proxy.budgets.close().await;
    }
}

impl Gateway {
    /// The plugins of the config file as it is now: its `guardrails` and `plugins` sections
    /// over the running config (the built-in defaults have no file to re-read).
    fn load_again(&self) -> Result<(Firewall, bool, std::path::PathBuf), String> {
        let mut config = self.config.clone();
        if let Some(path) = &self.config.source {
            let fresh = Config::load(path).map_err(|e| e.to_string())?;
            config.guardrails = fresh.guardrails;
            config.plugins = fresh.plugins;
        }
        let firewall = load_firewall(&config).map_err(|e| e.message().to_owned())?;
        Ok((
            firewall,
            config.guardrails.enabled,
            config.plugins.artifact_dir,
        ))
    }
}

/// Rollback protection: a plugin or policy whose new version is older than the one running is
/// refused, unless the config pins it (a plugin's component by sha256, a policy by OCI
/// digest: that exact build is wanted). Versions compare as semver; a version that is not
/// semver is not compared. A policy's plugins are covered by the policy's version.
fn refuse_rollback(running: &Firewall, next: &Firewall) -> Result<(), String> {
    for new in &next.plugins.policies {
        let Some(old) = running
            .plugins
            .policies
            .iter()
            .find(|o| o.info.id == new.info.id)
        else {
            continue;
        };
        if let (Ok(was), Ok(now)) = (
            semver::Version::parse(&old.info.version),
            semver::Version::parse(&new.info.version),
        ) && now < was
            && !new.info.pinned
        {
            return Err(format!(
                "policy `{}`: version {now} is older than the running {was}; a rollback needs the config to name it by digest (`oci: …@sha256:…`)",
                new.info.id
            ));
        }
    }
    for p in next.plugins.iter().filter(|p| p.info().policy.is_none()) {
        let new = p.info();
        let Some(old) = running
            .plugins
            .iter()
            .map(|o| o.info())
            .find(|o| o.id == new.id)
        else {
            continue;
        };
        let (Ok(was), Ok(now)) = (
            semver::Version::parse(&old.version),
            semver::Version::parse(&new.version),
        ) else {
            continue;
        };
        if now < was && !new.pinned {
            return Err(format!(
                "plugin `{}`: version {now} is older than the running {was}; a rollback needs the config to pin it by sha256 (`sha256: {}`)",
                new.id, new.sha256
            ));
        }
    }
    Ok(())
}

/// The plugins the config names, as an error that names the config file.
fn load_firewall(config: &Config) -> Result<Firewall, Error> {
    guardrails::load(config).map_err(|e| not_configured(format!("{}: {e}", config_file(config))))
}

/// The config file, for error messages.
fn config_file(config: &Config) -> String {
    config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<built-in defaults>".into())
}

/// Records an accepted set's signed versions (rollback protection across restarts). A store
/// that cannot be written costs only that protection at the next start, so it is logged, not
/// fatal: the set is verified either way.
fn record_versions(store: &std::path::Path, firewall: &Firewall) {
    if let Err(e) = crate::plugins::versions::record(store, &firewall.plugins) {
        tracing::warn!(error = %e, "cannot record the accepted plugin versions");
    }
}

/// The configured observer sinks (`observe.jsonl`), the library user's `extra` ones and the
/// observer plugins, each behind its own bounded queue.
fn observers(
    config: &Config,
    extra: Vec<Arc<dyn ObserveCallback>>,
    firewall: &Firewall,
) -> Result<(Observers, Option<Arc<crate::observe::otlp::OtlpStats>>), Error> {
    let o = &config.observe;
    let mut observers = Observers::new();
    let mut otlp = None;
    if let Some(settings) = &o.otlp {
        let sink = crate::observe::otlp::OtlpSink::new(settings)
            .map_err(|e| not_configured(e.to_string()))?;
        otlp = Some(sink.stats());
        observers.add(Arc::new(sink), o.queue_capacity);
    }
    if let Some(path) = &o.jsonl {
        let sink = JsonlSink::open(path, o.jsonl_max_bytes, o.jsonl_keep)
            .map_err(|e| not_configured(format!("observe.jsonl {}: {e}", path.display())))?;
        observers.add(Arc::new(sink), o.queue_capacity);
    }
    for sink in extra {
        observers.add(sink, o.queue_capacity);
    }
    for plugin in firewall.plugins.observers() {
        observers.add(Arc::new(WasmObserverSink::new(plugin)), o.queue_capacity);
    }
    Ok((observers, otlp))
}

/// The authenticator when auth is on.
fn authenticator(config: &Config) -> Result<Option<Arc<Authenticator>>, Error> {
    if !config.auth_enabled() {
        return Ok(None);
    }
    // The local key store's accounts are the default allowlist.
    let local: Vec<String> = crate::auth::keystore::KeyStore::load(&crate::config::home_dir())
        .map(|k| vec![k.solana_account(), k.evm_account()])
        .unwrap_or_default();
    let a = Authenticator::new(&config.auth, &local).map_err(not_configured)?;
    if a.accounts().is_empty() && config.auth.operator_keys.is_empty() {
        tracing::warn!(
            "auth is on but no account may call: set auth.accounts or create a key store with `bitrouter keygen`"
        );
    }
    Ok(Some(Arc::new(a)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_refused_update_waits_twice_as_long_each_time_up_to_an_hour() {
        let s = Duration::from_secs;
        assert_eq!(super::update_backoff(s(1), 1), s(2));
        assert_eq!(super::update_backoff(s(1), 2), s(4));
        assert_eq!(super::update_backoff(s(300), 1), s(600));
        assert_eq!(super::update_backoff(s(300), 4), s(3600));
        assert_eq!(super::update_backoff(s(1), u32::MAX), s(3600));
    }
}

//! The `observer` world: finished requests, delivered in batches off the request path.
//!
//! Reuse policy: unlike guardrails and adapters, an observer keeps one instance across
//! batches, so it can aggregate (count tokens per route, keep a histogram). This leaks
//! nothing between requests that the observer was not already shown: it sees every event
//! anyway. The instance holds one pool slot while it lives; a failed call (trap, deadline,
//! memory) drops it, and the next batch starts a fresh, freshly configured one.

use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::PluginInfo;
use super::engine::Prepared;
use super::error::{CallError, CallErrorKind, PluginErrorKind};
use super::sandbox::{Phase, Sandbox, StoreState};
use super::wit::types as wt;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "observer",
        with: {
            "bitrouter:plugin/types": crate::plugins::wit::types,
            "bitrouter:plugin/host": crate::plugins::wit::host,
        },
    });
}

use bindings::{Observer, ObserverPre};

/// One pattern's guardrail findings in a [`RequestEvent`].
pub use wt::GuardrailCount;
/// One finished request, as observers see it (the WIT record `request-event`).
pub use wt::RequestEvent;
/// Token counts in a [`RequestEvent`].
pub use wt::Usage as EventUsage;

impl From<crate::canonical::Usage> for wt::Usage {
    fn from(u: crate::canonical::Usage) -> Self {
        wt::Usage {
            input_tokens: u.input_tokens,
            cache_read_tokens: u.cache_read_tokens,
            cache_write_tokens: u.cache_write_tokens,
            output_tokens: u.output_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

/// A loaded observer plugin. Cheap to clone; batches are delivered one at a time.
#[derive(Clone)]
pub struct ObserverPlugin(Arc<Inner>);

struct Inner {
    info: PluginInfo,
    sandbox: Arc<Sandbox>,
    pre: ObserverPre<StoreState>,
    config: String,
    live: Mutex<Option<Live>>,
}

/// The long-lived instance.
struct Live {
    store: Store<StoreState>,
    bindings: Observer,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for ObserverPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverPlugin")
            .field("info", &self.0.info)
            .finish()
    }
}

impl ObserverPlugin {
    /// Checks that the component instantiates and accepts its config; the instance used
    /// for that check is dropped (the first batch starts the long-lived one).
    pub(crate) fn load(
        info: PluginInfo,
        sandbox: Arc<Sandbox>,
        prepared: Prepared,
        config_json: String,
    ) -> Result<ObserverPlugin, PluginErrorKind> {
        let pre = ObserverPre::new(prepared.pre)
            .map_err(|e| PluginErrorKind::WorldMismatch(format!("{e:#}")))?;
        let plugin = ObserverPlugin(Arc::new(Inner {
            info,
            sandbox,
            pre,
            config: config_json,
            live: Mutex::new(None),
        }));
        plugin
            .start()
            .map_err(|e| PluginErrorKind::Configure(e.kind.to_string()))?;
        Ok(plugin)
    }

    /// The plugin's manifest id.
    pub fn id(&self) -> &str {
        &self.0.info.id
    }

    /// What the host knows about the plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.0.info
    }

    /// A snapshot of the plugin's call counters.
    pub fn stats(&self) -> super::PluginStats {
        self.0.sandbox.stats()
    }

    /// Delivers one batch. A failure drops the instance; the next batch gets a fresh one.
    pub async fn observe(&self, batch: &[RequestEvent]) -> Result<(), CallError> {
        let slot = if self.is_live() {
            None
        } else {
            Some(self.0.sandbox.engine.permit().await)
        };
        if self.0.info.uses_wasi {
            let (this, batch) = (self.clone(), batch.to_vec());
            return match tokio::task::spawn_blocking(move || this.observe_now(&batch, slot)).await {
                Ok(r) => r,
                Err(e) => Err(self.0.sandbox.error(
                    "observe",
                    CallErrorKind::Trap(format!("host task failed: {e}")),
                )),
            };
        }
        self.observe_now(batch, slot)
    }

    fn is_live(&self) -> bool {
        self.0.live.lock().map(|l| l.is_some()).unwrap_or(false)
    }

    /// Instantiates and configures an instance (under the configure deadline).
    fn start(&self) -> Result<(Store<StoreState>, Observer), CallError> {
        let inner = &*self.0;
        let mut store = inner.sandbox.store();
        let _ticking = inner
            .sandbox
            .arm(&mut store, inner.sandbox.configure_deadline);
        let bindings = inner.pre.instantiate(&mut store).map_err(|e| {
            inner
                .sandbox
                .fail("configure", &store, e, Phase::Instantiate)
        })?;
        match bindings
            .bitrouter_plugin_observe()
            .call_configure(&mut store, &inner.config)
        {
            Ok(Ok(())) => Ok((store, bindings)),
            Ok(Err(msg)) => Err(inner.sandbox.error("configure", CallErrorKind::Failed(msg))),
            Err(e) => Err(inner.sandbox.fail("configure", &store, e, Phase::Call)),
        }
    }

    fn observe_now(
        &self,
        batch: &[RequestEvent],
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), CallError> {
        let inner = &*self.0;
        // A poisoned lock only means an earlier call panicked in host code; the slot is
        // still a valid Option.
        let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.is_none() {
            let Some(slot) = slot else {
                // Lost a race with a concurrent first batch; it holds the slot now.
                return Err(inner.sandbox.error(
                    "observe",
                    CallErrorKind::Instantiate("no instance slot".into()),
                ));
            };
            let (store, bindings) = self.start()?;
            *live = Some(Live {
                store,
                bindings,
                _slot: slot,
            });
        }
        let Some(l) = live.as_mut() else {
            unreachable!("set above")
        };
        inner.sandbox.count_call();
        let _ticking = inner.sandbox.arm(&mut l.store, inner.sandbox.call_deadline);
        let result = l
            .bindings
            .bitrouter_plugin_observe()
            .call_observe(&mut l.store, batch);
        if let Err(e) = result {
            let err = inner.sandbox.fail("observe", &l.store, e, Phase::Call);
            *live = None;
            return Err(err);
        }
        Ok(())
    }
}

//! Where a finished request goes: its log line, the metrics (inline), the observer sinks
//! (queued, on their own threads) and the spend ledger (queued; awaited in sync durability).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::context::RequestContext;
use crate::error::Error;
use crate::observe::{Metrics, Observers};
use crate::spend::{Ledger, SpendRecord};

/// Where a finished request goes: the log line, the metrics, the spend ledger and the
/// observer sinks.
pub struct Outcomes {
    /// The spend ledger.
    pub ledger: Arc<Ledger>,
    /// Request counters and latency samples (`/admin/metrics`, `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Written only at shutdown (to close the sinks); every request takes the read lock.
    pub observers: RwLock<Observers>,
    /// OTLP tracing: the share of new traces sampled; `None`: tracing off (no trace context
    /// is read, made or forwarded).
    pub trace_ratio: Option<f64>,
    /// `observe.otlp.capture_content`: sampled requests carry their prompt and answer.
    pub capture_content: bool,
    /// The OTLP exporter's counters, when it is on.
    pub otlp: Option<Arc<crate::observe::otlp::OtlpStats>>,
}

impl Outcomes {
    /// The sinks, ready to receive.
    pub fn new(ledger: Arc<Ledger>, metrics: Arc<Metrics>, observers: Observers) -> Self {
        Outcomes {
            ledger,
            metrics,
            observers: RwLock::new(observers),
            trace_ratio: None,
            capture_content: false,
            otlp: None,
        }
    }

    /// Logs, counts and publishes a finished request; returns its ledger row for the caller
    /// to record (awaiting it, or not, as its situation allows).
    pub fn finish(&self, ctx: &RequestContext, status: u16, error: Option<&Error>) -> SpendRecord {
        ctx.log(status, error);
        let event = ctx.event(status, error);
        self.metrics.record(&event);
        let row = SpendRecord::from(&event);
        let observers = self.observers.read().unwrap_or_else(|p| p.into_inner());
        if !observers.is_empty() {
            observers.emit(Arc::new(event));
        }
        row
    }

    /// Drains the observer sinks and the ledger (shutdown).
    pub async fn close(&self, grace: Duration) {
        // Sinks are threads: closing them blocks, so keep it off the async workers.
        let observers =
            std::mem::take(&mut *self.observers.write().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            let mut observers = observers;
            observers.close(grace);
        })
        .await;
        self.ledger.close().await;
    }
}

//! Sinks for request events. Each sink gets its own thread and bounded queue: `emit` never
//! waits (a full queue drops the event and counts it), and a sink that blocks or panics
//! only loses its own events. A batch collects for up to 20 ms after its first event, so a
//! sink (a file write, a WASM observer call) runs a few dozen times a second, not per request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::event::RequestEvent;

/// Something that wants every request event: implement this and register it with
/// `Observers::add`. Called on the sink's own thread, with events in batches.
pub trait ObserveCallback: Send + Sync + 'static {
    /// A short name for logs and counters.
    fn name(&self) -> &str;
    /// Receives a batch of events, oldest first.
    fn on_events(&self, events: &[Arc<RequestEvent>]);
    /// Called once when the gateway shuts down, after the last batch.
    fn flush(&self) {}
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    panicked: AtomicU64,
}

/// One sink's counters, on `/admin/metrics` and `/metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct SinkStats {
    /// The sink's name.
    pub name: String,
    /// Events the sink received without panicking.
    pub delivered: u64,
    /// Events dropped because its queue was full.
    pub dropped: u64,
    /// Events lost in batches whose callback panicked.
    pub panicked: u64,
}

struct Sink {
    name: String,
    tx: Option<SyncSender<Arc<RequestEvent>>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

/// The registered sinks.
#[derive(Default)]
pub struct Observers {
    sinks: Vec<Sink>,
}

const BATCH: usize = 256;
/// How long a batch's first event waits for company.
const LINGER: Duration = Duration::from_millis(20);

impl Observers {
    /// No sinks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `sink` on its own thread behind a queue of `capacity` events.
    pub fn add(&mut self, sink: Arc<dyn ObserveCallback>, capacity: usize) {
        let (tx, rx) = sync_channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let name = sink.name().to_owned();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("observe-{name}"))
            .spawn(move || run(sink, rx, c))
            .ok();
        self.sinks.push(Sink {
            name,
            tx: Some(tx),
            counters,
            thread,
        });
    }

    /// Whether no sink is registered.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Hands the event to every sink without waiting.
    pub fn emit(&self, event: Arc<RequestEvent>) {
        for s in &self.sinks {
            if let Some(tx) = &s.tx {
                match tx.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        let n = s.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            tracing::warn!(sink = %s.name, dropped = n, "observer sink is not keeping up; events dropped");
                        }
                    }
                }
            }
        }
    }

    /// Every sink's counters.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|s| SinkStats {
                name: s.name.clone(),
                delivered: s.counters.delivered.load(Ordering::Relaxed),
                dropped: s.counters.dropped.load(Ordering::Relaxed),
                panicked: s.counters.panicked.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Lets every sink drain its queue (waiting at most `grace` for all of them: a sink
    /// that is stuck is left behind rather than holding up shutdown).
    pub fn close(&mut self, grace: Duration) {
        for s in &mut self.sinks {
            s.tx = None;
        }
        let deadline = Instant::now() + grace;
        for s in &mut self.sinks {
            while s.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Some(t) = s.thread.take().filter(|t| t.is_finished()) {
                let _ = t.join();
            }
        }
    }
}

fn run(sink: Arc<dyn ObserveCallback>, rx: Receiver<Arc<RequestEvent>>, counters: Arc<Counters>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        // The linger is slept out, not waited out on the queue: a receiver blocked in
        // `recv_timeout` is woken by every send, which cost a futex wake and two context
        // switches per request on the request path; asleep, the sink wakes once a batch.
        std::thread::sleep(LINGER);
        loop {
            batch.extend(rx.try_iter().take(BATCH - batch.len()));
            deliver(sink.as_ref(), &batch, &counters);
            let full = batch.len() == BATCH;
            batch.clear();
            if !full {
                break;
            }
        }
    }
    if catch_unwind(AssertUnwindSafe(|| sink.flush())).is_err() {
        tracing::error!(sink = sink.name(), "observer sink panicked while flushing");
    }
}

/// Hands one batch to the sink, counting it as delivered or, if the sink panicked, lost.
fn deliver(sink: &dyn ObserveCallback, batch: &[Arc<RequestEvent>], counters: &Counters) {
    match catch_unwind(AssertUnwindSafe(|| sink.on_events(batch))) {
        Ok(()) => {
            counters
                .delivered
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(_) => {
            counters
                .panicked
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::error!(
                sink = sink.name(),
                events = batch.len(),
                "observer sink panicked; its batch is lost"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::observe::RequestEvent;

    /// Records the size of every batch it gets.
    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    impl ObserveCallback for Sizes {
        fn name(&self) -> &str {
            "sizes"
        }
        fn on_events(&self, events: &[Arc<RequestEvent>]) {
            self.0.lock().unwrap().push(events.len());
        }
    }

    #[test]
    fn events_close_together_share_a_batch_and_close_delivers_everything() {
        let sink = Arc::new(Sizes::default());
        let mut observers = Observers::new();
        observers.add(sink.clone(), 10_000);
        let event = Arc::new(
            crate::context::RequestContext::new("r".into(), crate::canonical::Dialect::OpenAiChat)
                .event(200, None),
        );
        for _ in 0..600 {
            observers.emit(event.clone());
        }
        observers.close(Duration::from_secs(10));
        let sizes = sink.0.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 600);
        assert!(sizes.iter().all(|&n| n <= BATCH), "{sizes:?}");
        assert!(sizes.len() <= 10, "600 events in {} batches", sizes.len());
        assert_eq!(observers.stats()[0].delivered, 600);
    }
}

//! The spend ledger: requests hand their row to a bounded in-memory queue and go on; one
//! writer task commits whatever has queued up in a single transaction (group commit), so a
//! busy gateway writes few large transactions and an idle one writes each row at once.
//!
//! Durability: with `durability: async` (default) a crash loses at most the rows still in the
//! queue — those of requests that finished in the last moments, typically the last batch.
//! With `durability: sync` a request's response does not end until its row is committed.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use super::query::{SpendGroup, SpendQuery, now_ms};
use super::record::SpendRecord;
use super::store::Store;
use crate::config::{Database, Durability, OnFull};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database.url {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("redb: {0}")]
    Redb(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Counters for the ledger's health, exposed on `/admin/spend/stats`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LedgerStats {
    pub written: u64,
    /// Rows dropped because the queue was full (`on_full: drop_oldest`).
    pub dropped: u64,
    /// Rows lost to a failed write (the error is logged).
    pub failed: u64,
    pub queued: u64,
}

type Item = (SpendRecord, Option<oneshot::Sender<()>>);

struct Inner {
    store: Store,
    queue: Mutex<VecDeque<Item>>,
    /// Wakes the writer when rows arrive.
    wake: Notify,
    /// Wakes producers waiting for room (`on_full: block`).
    space: Notify,
    capacity: usize,
    batch_size: usize,
    on_full: OnFull,
    durability: Durability,
    closed: AtomicBool,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

pub struct Ledger {
    inner: Arc<Inner>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl Ledger {
    /// Opens the store (creating and migrating its schema) and starts the writer.
    pub async fn open(cfg: &Database) -> Result<Ledger, LedgerError> {
        let store = Store::open(&cfg.url, &cfg.base_dir).await?;
        tracing::info!(engine = store.engine(), url = %redact(&cfg.url), "spend ledger open");
        let inner = Arc::new(Inner {
            store,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            space: Notify::new(),
            capacity: cfg.queue_capacity.max(1),
            batch_size: cfg.batch_size.max(1),
            on_full: cfg.on_full,
            durability: cfg.durability,
            closed: AtomicBool::new(false),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let writer = tokio::spawn(write_loop(inner.clone()));
        let retention = cfg
            .retention_days
            .map(|days| tokio::spawn(retention_loop(inner.clone(), days)));
        Ok(Ledger {
            inner,
            writer: Mutex::new(Some(writer)),
            retention,
        })
    }

    /// Opens a store only to read it (the `bitrouter spend --db` command).
    pub async fn open_for_query(url: &str, base: &Path) -> Result<Store, LedgerError> {
        Store::open(url, base).await
    }

    /// Records a finished request. Returns at once unless `durability: sync` (then after the
    /// row is committed) or the queue is full with `on_full: block` (then when there is room).
    pub async fn record(&self, row: SpendRecord) {
        let ack = if self.inner.durability == Durability::Sync {
            let (tx, rx) = oneshot::channel();
            self.push(row, Some(tx), self.inner.on_full).await;
            Some(rx)
        } else {
            self.push(row, None, self.inner.on_full).await;
            None
        };
        if let Some(rx) = ack {
            let _ = rx.await;
        }
    }

    /// Records without ever waiting (for a caller that is gone, e.g. a dropped stream): a
    /// full queue drops its oldest row.
    pub fn record_now(&self, row: SpendRecord) {
        let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.inner.capacity {
            q.pop_front();
            self.count_drop();
        }
        q.push_back((row, None));
        drop(q);
        self.inner.wake.notify_one();
    }

    async fn push(&self, row: SpendRecord, ack: Option<oneshot::Sender<()>>, on_full: OnFull) {
        let mut item = Some((row, ack));
        loop {
            let room = self.inner.space.notified();
            {
                let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.len() < self.inner.capacity || on_full == OnFull::DropOldest {
                    if q.len() >= self.inner.capacity {
                        q.pop_front();
                        self.count_drop();
                    }
                    if let Some(i) = item.take() {
                        q.push_back(i);
                    }
                }
            }
            if item.is_none() {
                self.inner.wake.notify_one();
                return;
            }
            room.await;
        }
    }

    fn count_drop(&self) {
        let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                "spend ledger queue full; dropping the oldest rows (database.on_full: drop_oldest)"
            );
        }
    }

    pub async fn query(&self, q: &SpendQuery) -> Result<Vec<SpendGroup>, LedgerError> {
        self.inner.store.query(q).await
    }

    pub async fn rows(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<SpendRecord>, LedgerError> {
        self.inner.store.rows(since_ms, until_ms).await
    }

    pub fn stats(&self) -> LedgerStats {
        let i = &self.inner;
        LedgerStats {
            written: i.written.load(Ordering::Relaxed),
            dropped: i.dropped.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
            queued: i.queue.lock().map(|q| q.len() as u64).unwrap_or(0),
        }
    }

    pub fn engine(&self) -> &'static str {
        self.inner.store.engine()
    }

    /// The store itself, for the tables kept beside the ledger (budgets, agent cards).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Writes everything still queued and stops the writer (shutdown).
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = writer {
            let _ = w.await;
        }
        if let Some(r) = &self.retention {
            r.abort();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Some(r) = &self.retention {
            r.abort();
        }
    }
}

async fn write_loop(inner: Arc<Inner>) {
    loop {
        let woken = inner.wake.notified();
        let batch: Vec<Item> = {
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len().min(inner.batch_size);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            woken.await;
            continue;
        }
        inner.space.notify_waiters();
        let (rows, acks): (Vec<SpendRecord>, Vec<Option<oneshot::Sender<()>>>) =
            batch.into_iter().unzip();
        match inner.store.write(&rows).await {
            Ok(()) => {
                inner
                    .written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                inner.failed.fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, rows = rows.len(), "spend ledger write failed; rows lost");
                // Do not spin on a database that is down.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(());
        }
    }
}

async fn retention_loop(inner: Arc<Inner>, days: u32) {
    loop {
        let cutoff = now_ms() - i64::from(days) * 86_400_000;
        match inner.store.prune(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rows = n,
                days,
                "spend ledger: pruned rows past database.retention_days"
            ),
            Err(e) => tracing::warn!(error = %e, "spend ledger: pruning failed"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spend::query::GroupBy;

    fn cfg(url: &str, capacity: usize, on_full: OnFull, durability: Durability) -> Database {
        Database {
            url: url.into(),
            base_dir: std::env::temp_dir(),
            queue_capacity: capacity,
            batch_size: 100,
            on_full,
            durability,
            retention_days: None,
        }
    }

    fn row(i: i64) -> SpendRecord {
        SpendRecord {
            id: format!("r{i}"),
            time_ms: 1_000 + i,
            model: Some("m".into()),
            cost_nano_usd: 10,
            success: true,
            attempts: 1,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn close_flushes_everything_queued() {
        let l = Ledger::open(&cfg("memory://", 10_000, OnFull::Block, Durability::Async))
            .await
            .unwrap();
        for i in 0..1000 {
            l.record(row(i)).await;
        }
        l.close().await;
        assert_eq!(l.rows(0, i64::MAX).await.unwrap().len(), 1000);
        let s = l.stats();
        assert_eq!((s.written, s.dropped, s.queued), (1000, 0, 0));
        let g = l
            .query(&SpendQuery {
                group_by: GroupBy::Model,
                since_ms: 0,
                until_ms: i64::MAX,
            })
            .await
            .unwrap();
        assert_eq!(g[0].cost_nano_usd, 10_000);
    }

    #[tokio::test]
    async fn sync_durability_commits_before_returning() {
        let l = Ledger::open(&cfg("memory://", 10, OnFull::Block, Durability::Sync))
            .await
            .unwrap();
        l.record(row(1)).await;
        assert_eq!(l.rows(0, i64::MAX).await.unwrap().len(), 1);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("redb://x"), "redb://x");
    }
}

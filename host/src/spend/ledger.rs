//! The spend ledger: requests hand their row to a bounded in-memory queue and go on; one
//! writer task commits whatever has queued up in a single transaction (group commit). The
//! writer waits `flush_interval` after the first row of a batch, so a gateway at 1,000 req/s
//! commits a few dozen times a second instead of waking a blocking thread per request.
//!
//! Durability: with `durability: async` (default) a crash loses the rows not yet committed —
//! those of requests that finished in the last max(`flush_interval`, one commit) + one commit
//! (rows queued during a commit linger only for what is left of the interval).
//! With `durability: sync` a request's response does not end until its row is committed (and
//! the writer does not wait: a request is waiting).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use super::query::{SpendGroup, SpendQuery, now_ms};
use super::record::SpendRecord;
use super::store::Store;

/// The spend ledger's store and queue.
#[derive(Clone, Debug)]
pub struct Database {
    /// `redb://PATH` (default), `sqlite://PATH`, `postgres://…`, `mysql://…` or `memory://`.
    pub url: String,
    /// Where relative redb/SQLite paths start: the config file's folder, or ~/.bitrouter.
    pub base_dir: PathBuf,
    /// `database.queue_capacity`: rows queued for the writer before `on_full` applies (default
    /// 10,000).
    pub queue_capacity: usize,
    /// `database.batch_size`: the most rows the writer commits at once (default 1,000).
    pub batch_size: usize,
    /// `database.on_full`: what a request does when the queue is full.
    pub on_full: OnFull,
    /// `database.durability`: whether a request waits for its row to be committed.
    pub durability: Durability,
    /// How long the writer lets a batch fill after its first row (async durability).
    pub flush_interval: Duration,
    /// `database.retention_days`: rows older than this many days are deleted; `None` keeps them.
    pub retention_days: Option<u32>,
    /// redb: memory for cached pages. redb's own default (1 GiB) would let a long-running
    /// gateway's RSS grow with its ledger file.
    pub cache_size: u64,
}

/// `database.cache_size` when the config does not set it.
pub const DEFAULT_REDB_CACHE: u64 = 16 << 20;

/// What a full ledger queue does with a new row.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Drop the oldest queued row (counted and logged); requests never wait.
    #[default]
    DropOldest,
    /// Make the finishing request wait for room (back-pressure).
    Block,
}

/// When a request's ledger row must be on disk.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Written by the background writer right after the request (group commit).
    #[default]
    Async,
    /// Committed before the response ends.
    Sync,
}

/// Why the ledger could not open, write or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// `database.url` names no store the ledger can open.
    #[error("database.url {url:?}: {message}")]
    Url {
        /// The `database.url` given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The redb file could not be opened or used.
    #[error("redb: {0}")]
    Redb(String),
    /// The SQL database failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The SQL schema could not be migrated.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Counters for the ledger's health, exposed on `/admin/spend/stats`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LedgerStats {
    /// Rows committed since start.
    pub written: u64,
    /// Rows dropped because the queue was full (`on_full: drop_oldest`).
    pub dropped: u64,
    /// Rows lost to a failed write (the error is logged).
    pub failed: u64,
    /// Rows waiting for the writer now.
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
    /// Cuts the writer's wait for a fuller batch short (shutdown, a reader's flush).
    hurry: Notify,
    /// Readers waiting until everything queued before they asked is committed; `None` once
    /// the writer has stopped (nothing will answer).
    flushes: Mutex<Option<Vec<oneshot::Sender<()>>>>,
    capacity: usize,
    batch_size: usize,
    on_full: OnFull,
    durability: Durability,
    flush_interval: Duration,
    closed: AtomicBool,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// The spend ledger: a queue in front of the store and the writer task that drains it in
/// batches (`database:`).
pub struct Ledger {
    inner: Arc<Inner>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl Ledger {
    /// Opens the store (creating and migrating its schema) and starts the writer.
    pub async fn open(cfg: &Database) -> Result<Ledger, LedgerError> {
        let store = Store::open(&cfg.url, &cfg.base_dir, cfg.cache_size).await?;
        tracing::info!(engine = store.engine(), url = %redact(&cfg.url), "spend ledger open");
        let inner = Arc::new(Inner {
            store,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            space: Notify::new(),
            hurry: Notify::new(),
            flushes: Mutex::new(Some(Vec::new())),
            capacity: cfg.queue_capacity.max(1),
            batch_size: cfg.batch_size.max(1),
            on_full: cfg.on_full,
            durability: cfg.durability,
            flush_interval: cfg.flush_interval,
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
        Store::open(url, base, DEFAULT_REDB_CACHE).await
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

    /// Spend per group, including every request that finished before the call (the queue
    /// is flushed first).
    pub async fn query(&self, q: &SpendQuery) -> Result<Vec<SpendGroup>, LedgerError> {
        self.flush().await;
        self.inner.store.query(q).await
    }

    /// The rows in a time range, including every request that finished before the call.
    pub async fn rows(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<SpendRecord>, LedgerError> {
        self.flush().await;
        self.inner.store.rows(since_ms, until_ms).await
    }

    /// How long the writer waits after a batch's first row for company
    /// (`database.flush_interval`).
    pub fn flush_interval(&self) -> Duration {
        self.inner.flush_interval
    }

    /// Returns once every row queued before the call is written (or failed): a reader must
    /// not miss the requests of the last `flush_interval`.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        match &mut *self.inner.flushes.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(waiting) => waiting.push(tx),
            None => return,
        }
        self.inner.hurry.notify_one();
        self.inner.wake.notify_one();
        let _ = rx.await;
    }

    /// The ledger's health counters now.
    pub fn stats(&self) -> LedgerStats {
        let i = &self.inner;
        LedgerStats {
            written: i.written.load(Ordering::Relaxed),
            dropped: i.dropped.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
            queued: i.queue.lock().map(|q| q.len() as u64).unwrap_or(0),
        }
    }

    /// The store's engine: `memory`, `redb`, `sqlite`, `postgres` or `mysql`.
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
        self.inner.hurry.notify_one();
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
    let linger = match inner.durability {
        Durability::Async => inner.flush_interval,
        Durability::Sync => Duration::ZERO,
    };
    let mut lingered = false;
    // When the last commit started. Rows queued while it ran have waited since at most
    // then: they linger only for what is left of `flush_interval`, so under load (commits
    // back to back) a row waits at most max(flush_interval, commit) before its own commit
    // starts, not commit + flush_interval. Measured before this: kill -9 at 2–4k req/s lost
    // rows finished up to ~100 ms before the kill with a 10 ms flush_interval.
    let mut last_commit: Option<tokio::time::Instant> = None;
    loop {
        let woken = inner.wake.notified();
        let hurried = || {
            inner.closed.load(Ordering::Acquire)
                || inner
                    .flushes
                    .lock()
                    .map(|f| f.as_ref().is_some_and(|f| !f.is_empty()))
                    .unwrap_or(true)
        };
        if !lingered && !linger.is_zero() && !hurried() {
            let queued = inner.queue.lock().map(|q| q.len()).unwrap_or(0);
            let left = last_commit.map_or(linger, |t| linger.saturating_sub(t.elapsed()));
            if queued > 0 && queued < inner.batch_size.min(inner.capacity) && !left.is_zero() {
                // Let the batch fill; a close or a reader's flush cuts the wait short.
                lingered = true;
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = inner.hurry.notified() => {}
                }
                continue;
            }
        }
        lingered = false;
        let batch: Vec<Item> = {
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len().min(inner.batch_size);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            // Everything queued before these flushes asked is written.
            let closed = inner.closed.load(Ordering::Acquire);
            let waiting = {
                let mut f = inner.flushes.lock().unwrap_or_else(|p| p.into_inner());
                if closed {
                    f.take().unwrap_or_default()
                } else {
                    f.as_mut().map(std::mem::take).unwrap_or_default()
                }
            };
            for f in waiting {
                let _ = f.send(());
            }
            if closed {
                return;
            }
            woken.await;
            // Rows that wake an idle writer get the whole linger.
            last_commit = None;
            continue;
        }
        inner.space.notify_waiters();
        let (rows, acks): (Vec<SpendRecord>, Vec<Option<oneshot::Sender<()>>>) =
            batch.into_iter().unzip();
        let n = rows.len();
        last_commit = Some(tokio::time::Instant::now());
        match inner.store.write(rows).await {
            Ok(()) => {
                inner.written.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                inner.failed.fetch_add(n as u64, Ordering::Relaxed);
                tracing::error!(error = %e, rows = n, "spend ledger write failed; rows lost");
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
            flush_interval: Duration::from_millis(5),
            cache_size: DEFAULT_REDB_CACHE,
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

    /// Rows that arrive within `flush_interval` of each other share a transaction, and a
    /// close does not wait out the interval.
    #[tokio::test]
    async fn rows_within_the_flush_interval_share_a_batch() {
        let mut c = cfg("memory://", 10_000, OnFull::Block, Durability::Async);
        c.flush_interval = Duration::from_secs(30);
        let l = Ledger::open(&c).await.unwrap();
        for i in 0..10 {
            l.record(row(i)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.stats().written, 0, "still waiting for the batch to fill");
        let t = std::time::Instant::now();
        l.close().await;
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "close cut the wait short"
        );
        assert_eq!(l.stats().written, 10);

        // A reader does not wait out the interval, and sees every row recorded before it.
        let l = Ledger::open(&c).await.unwrap();
        for i in 0..3 {
            l.record(row(i)).await;
        }
        assert_eq!(l.rows(0, i64::MAX).await.unwrap().len(), 3);
        l.close().await;
        l.flush().await; // after close: returns at once

        // A full batch does not wait.
        let l = Ledger::open(&c).await.unwrap();
        for i in 0..100 {
            l.record(row(i)).await;
        }
        for _ in 0..500 {
            if l.stats().written == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(l.stats().written, 100);
        l.close().await;
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("redb://x"), "redb://x");
    }
}

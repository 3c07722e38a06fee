//! Budgets end to end below HTTP: concurrent reservations against a small budget, and the
//! state surviving a reopen of every store (PostgreSQL shared by two instances).

use std::time::Duration;

use super::*;
use crate::caller::{BudgetClaim, BudgetScope, BudgetWindow};
use crate::config::{Database, Durability, OnFull};

fn claim(limit_micro: u64, window: BudgetWindow) -> BudgetClaim {
    BudgetClaim {
        limit_micro_usd: limit_micro,
        scope: BudgetScope::Account,
        window,
    }
}

/// Fires `n` concurrent requests at `budgets`, each reserving `worst` and settling
/// `actual` after a yield (so reservations overlap). Returns how many were admitted.
async fn hammer(
    budgets: &[Budgets],
    id: &str,
    c: BudgetClaim,
    n: usize,
    worst: u64,
    actual: u64,
) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let b = budgets[i % budgets.len()].clone();
        let id = id.to_owned();
        tasks.push(tokio::spawn(async move {
            match b.reserve(&id, &c, worst).await {
                Ok(r) => {
                    tokio::task::yield_now().await;
                    r.settle(actual).await.unwrap();
                    true
                }
                Err(BudgetError::Exceeded(_)) => false,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    admitted
}

fn spent(r: &Remaining) -> u64 {
    r.limit_micro_usd - r.remaining_micro_usd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_overspend() {
    // $0.001 budget; each request may cost 70 µUSD and does cost 70 µUSD (max_tokens given):
    // exactly 14 of 200 fit, and the spend never passes the limit.
    let b = Budgets::memory();
    let c = claim(1_000, BudgetWindow::Lifetime);
    let admitted = hammer(std::slice::from_ref(&b), "acct", c, 200, 70_000, 70_000).await;
    assert_eq!(admitted, 14);
    let r = b.remaining("acct", &c).await.unwrap();
    assert_eq!(spent(&r), 980);
    // Real costs below the reservation: the unused part comes back, so more fit, and the
    // total still never passes the limit.
    let c2 = claim(1_000, BudgetWindow::Rounds(1_000_000));
    let admitted = hammer(std::slice::from_ref(&b), "acct", c2, 200, 70_000, 30_000).await;
    let r = b.remaining("acct", &c2).await.unwrap();
    assert!(spent(&r) <= 1_000, "{r:?}");
    assert_eq!(spent(&r), admitted as u64 * 30);
    assert!(admitted >= 14);
    // Real costs above the reservation (no max_tokens, the cap was too low): the overspend
    // is bounded by the excess of the requests in flight when the budget ran out.
    let c3 = claim(1_000, BudgetWindow::Duration(Duration::from_secs(3600)));
    let admitted = hammer(std::slice::from_ref(&b), "acct", c3, 200, 70_000, 90_000).await;
    let r = b.remaining("acct", &c3).await.unwrap();
    let total = admitted as u64 * 90;
    assert!(total <= 1_000 + admitted as u64 * 20, "{total}");
    assert_eq!(spent(&r), total.min(1_000));
}

#[tokio::test]
async fn dropping_an_unsettled_reservation_releases_it() {
    let b = Budgets::memory();
    let c = claim(100, BudgetWindow::Lifetime);
    let r = b.reserve("s", &c, 80_000).await.unwrap();
    assert_eq!(r.remaining().remaining_micro_usd, 20);
    assert!(b.reserve("s", &c, 30_000).await.is_err());
    drop(r);
    assert_eq!(b.remaining("s", &c).await.unwrap().remaining_micro_usd, 100);
    let r = b.reserve("s", &c, 30_000).await.unwrap();
    r.settle_detached(10_000);
    assert_eq!(b.remaining("s", &c).await.unwrap().remaining_micro_usd, 90);
}

#[tokio::test]
async fn scopes_and_windows_are_separate_budgets() {
    let b = Budgets::memory();
    let session = BudgetClaim {
        scope: BudgetScope::Session,
        ..claim(100, BudgetWindow::Lifetime)
    };
    let account = claim(100, BudgetWindow::Lifetime);
    b.reserve("x", &session, 100_000)
        .await
        .unwrap()
        .settle(100_000)
        .await
        .unwrap();
    assert!(b.reserve("x", &session, 1).await.is_err());
    assert!(b.reserve("y", &session, 1).await.is_ok());
    assert!(b.reserve("x", &account, 1).await.is_ok());
    let rounds = claim(100, BudgetWindow::Rounds(5));
    assert!(b.reserve("x", &rounds, 1).await.is_ok());
}

fn db(url: &str, base: &std::path::Path) -> Database {
    Database {
        url: url.into(),
        base_dir: base.to_owned(),
        queue_capacity: 1000,
        batch_size: 100,
        on_full: OnFull::Block,
        durability: Durability::Async,
        flush_interval: std::time::Duration::from_millis(5),
        retention_days: None,
        cache_size: crate::config::DEFAULT_REDB_CACHE,
    }
}

/// Spends on a budget, closes everything, reopens the same database and checks the
/// spending (and the rounds window position) came back.
async fn survives_reopen(url: &str, base: &std::path::Path, id: &str) {
    let c = claim(1_000, BudgetWindow::Rounds(10));
    {
        let ledger = Ledger::open(&db(url, base)).await.unwrap();
        let b = Budgets::open(&ledger, Duration::from_secs(600))
            .await
            .unwrap();
        for _ in 0..3 {
            b.reserve(id, &c, 200_000)
                .await
                .unwrap()
                .settle(150_000)
                .await
                .unwrap();
        }
        // A reservation in flight at shutdown is not charged: only settled costs are.
        let held = b.reserve(id, &c, 100_000).await.unwrap();
        b.close().await;
        held.settle(0).await.unwrap();
        ledger.close().await;
    }
    let ledger = Ledger::open(&db(url, base)).await.unwrap();
    let b = Budgets::open(&ledger, Duration::from_secs(600))
        .await
        .unwrap();
    let r = b.remaining(id, &c).await.unwrap();
    assert_eq!(r.remaining_micro_usd, 1_000 - 450, "{}", b.engine());
    assert_eq!(r.reset, Reset::AfterRequests(6), "{}", b.engine());
    b.close().await;
    ledger.close().await;
}

#[tokio::test]
async fn redb_and_sqlite_budgets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    survives_reopen("redb://budgets.redb", dir.path(), "acct").await;
    survives_reopen("sqlite://budgets.sqlite", dir.path(), "acct").await;
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:x}_{:x}", std::process::id(), fastrand::u64(..))
}

#[tokio::test]
async fn mysql_budgets_survive_a_restart() {
    use sqlx::Connection;
    let url = std::env::var("BITROUTER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let name = unique("bitrouter_budget");
    let mut admin = sqlx::MySqlConnection::connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("MySQL at {url} is unreachable ({e}); set BITROUTER_TEST_MYSQL_URL")
        });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
    survives_reopen(&format!("{base}/{name}"), &std::env::temp_dir(), "acct").await;
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_postgres_budget() {
    use sqlx::Connection;
    let admin_url = std::env::var("BITROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    // A schema of its own, so parallel runs (and other branches' migrations) never meet.
    let schema = unique("bitrouter_budget");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {admin_url} is unreachable ({e}); set BITROUTER_TEST_POSTGRES_URL"
            )
        });
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options=-c%20search_path%3D{schema}");
    let base = std::env::temp_dir();
    // Two independent ledgers and budget instances: two gateway processes' worth of state.
    let (l1, l2) = (
        Ledger::open(&db(&url, &base)).await.unwrap(),
        Ledger::open(&db(&url, &base)).await.unwrap(),
    );
    let replicas = [
        Budgets::open(&l1, Duration::from_secs(600)).await.unwrap(),
        Budgets::open(&l2, Duration::from_secs(600)).await.unwrap(),
    ];
    assert_eq!(replicas[0].engine(), "postgres");
    let id = unique("acct");
    let c = claim(1_000, BudgetWindow::Lifetime);
    let admitted = hammer(&replicas, &id, c, 60, 70_000, 70_000).await;
    assert_eq!(admitted, 14);
    for b in &replicas {
        assert_eq!(b.remaining(&id, &c).await.unwrap().remaining_micro_usd, 20);
    }
    // A reservation held by one replica counts for the other until settled or dropped.
    let c = claim(100, BudgetWindow::Lifetime);
    let id = unique("acct");
    let held = replicas[0].reserve(&id, &c, 90_000).await.unwrap();
    assert!(matches!(
        replicas[1].reserve(&id, &c, 20_000).await,
        Err(BudgetError::Exceeded(_))
    ));
    held.settle(5_000).await.unwrap();
    replicas[1]
        .reserve(&id, &c, 20_000)
        .await
        .unwrap()
        .settle(20_000)
        .await
        .unwrap();
    assert_eq!(
        replicas[0]
            .remaining(&id, &c)
            .await
            .unwrap()
            .remaining_micro_usd,
        75
    );
    // Survives a restart: a third instance sees the same numbers.
    survives_reopen(&url, &base, &unique("acct")).await;
    for b in &replicas {
        b.close().await;
    }
    l1.close().await;
    l2.close().await;
    drop((replicas, l1, l2));
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// The changes of one `flush_interval` share a commit: twenty reserve + settle pairs, each
/// giving the writer a chance to run, make one or two commits, not forty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_one_interval_share_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = db("redb://budgets.redb", dir.path());
    cfg.flush_interval = Duration::from_millis(500);
    let c = claim(1_000_000, BudgetWindow::Lifetime);
    {
        let ledger = Ledger::open(&cfg).await.unwrap();
        let b = Budgets::open(&ledger, Duration::from_secs(600))
            .await
            .unwrap();
        for _ in 0..20 {
            let r = b.reserve("acct", &c, 10_000).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            r.settle(5_000).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let Backend::Local(local) = &b.inner.backend else {
            panic!("redb budgets are local")
        };
        // Still inside the interval: nothing committed yet; once it has passed, one commit.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let commits = local.commits();
        // One (two if this machine stalled past the interval mid-loop); one per change was 40.
        assert!(
            (1..=2).contains(&commits),
            "{commits} commits for 40 changes in one interval"
        );
        // What was committed comes back on reopen.
        b.close().await;
        ledger.close().await;
    }
    let ledger = Ledger::open(&cfg).await.unwrap();
    let b = Budgets::open(&ledger, Duration::from_secs(600))
        .await
        .unwrap();
    let left = b.remaining("acct", &c).await.unwrap();
    assert_eq!(
        left.remaining_micro_usd,
        1_000_000 - 100,
        "20 × 5 µUSD spent"
    );
}

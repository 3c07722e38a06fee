//! Cost of budget enforcement per request: one reservation plus its settlement, through
//! `Budgets` as the proxy calls it. Memory and redb (in-process map; redb persistence runs
//! on a background writer) with criterion; PostgreSQL (a locked-row transaction per step)
//! when `BITROUTER_TEST_POSTGRES_URL` answers. `cargo bench -p bitrouter --bench budgets`.

use std::hint::black_box;
use std::time::Duration;

use bitrouter::budget::Budgets;
use bitrouter::caller::{BudgetClaim, BudgetScope, BudgetWindow};
use bitrouter::config::{Database, Durability, OnFull};
use bitrouter::spend::Ledger;
use criterion::{Criterion, criterion_group, criterion_main};

fn db(url: &str, base: &std::path::Path) -> Database {
    Database {
        url: url.into(),
        base_dir: base.to_owned(),
        queue_capacity: 10_000,
        batch_size: 1_000,
        on_full: OnFull::Block,
        durability: Durability::Async,
        flush_interval: std::time::Duration::from_millis(50),
        retention_days: None,
        cache_size: bitrouter::config::DEFAULT_REDB_CACHE,
    }
}

const CLAIM: BudgetClaim = BudgetClaim {
    // Large enough never to run out during a run.
    limit_micro_usd: u64::MAX / 1_000_000,
    scope: BudgetScope::Account,
    window: BudgetWindow::Duration(Duration::from_secs(3600)),
};

fn reserve_settle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut backends = vec![("memory", "memory://".to_owned())];
    backends.push(("redb", "redb://budgets-bench.redb".to_owned()));
    // PostgreSQL in a throw-away schema, when it answers.
    let pg = std::env::var("BITROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("bitrouter_budget_bench_{}", std::process::id());
    let admin = rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&pg).await.ok()?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .ok()?;
        Some(admin)
    });
    if admin.is_some() {
        let sep = if pg.contains('?') { '&' } else { '?' };
        backends.push((
            "postgres",
            format!("{pg}{sep}options=-c%20search_path%3D{schema}"),
        ));
    }
    for (label, url) in backends {
        let (ledger, budgets) = match rt.block_on(async {
            let ledger = Ledger::open(&db(&url, dir.path())).await?;
            let b = Budgets::open(&ledger, Duration::from_secs(600))
                .await
                .map_err(|e| bitrouter::spend::LedgerError::Redb(e.to_string()))?;
            Ok::<_, bitrouter::spend::LedgerError>((ledger, b))
        }) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{label}: skipped: {e}");
                continue;
            }
        };
        let account = format!("bench-{}-{label}", std::process::id());
        c.bench_function(&format!("budget reserve + settle ({label})"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = budgets
                        .reserve(black_box(&account), &CLAIM, 1_571_250)
                        .await
                        .unwrap();
                    r.settle(black_box(27_500)).await.unwrap()
                })
            });
        });
        rt.block_on(async {
            budgets.close().await;
            ledger.close().await;
        });
    }
    if let Some(mut admin) = admin {
        rt.block_on(async {
            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await;
        });
    }
}

criterion_group!(benches, reserve_settle);
criterion_main!(benches);

//! Sustained write rate of the spend ledger per backend: rows/s through `Ledger::record`
//! (bounded queue, group commit) until `close` has committed them all. Prints a table;
//! `cargo bench -p bitrouter --bench ledger`. PostgreSQL and MySQL are measured when their
//! servers answer at `BITROUTER_TEST_POSTGRES_URL` / `BITROUTER_TEST_MYSQL_URL` (defaults:
//! the local test servers), in a throw-away schema / database.

use std::time::Instant;

use bitrouter::config::{Database, Durability, OnFull};
use bitrouter::spend::{Ledger, SpendRecord, TokenBreakdown};
use sqlx::Connection;

const ROWS: usize = 20_000;

fn row(i: usize) -> SpendRecord {
    SpendRecord {
        id: format!("req_{i:016x}"),
        time_ms: 1_700_000_000_000 + i as i64,
        account: Some("eip155:1:0x00000000000000000000000000000000000000aa".into()),
        session: Some(format!("s{}", i % 16)),
        agent: None,
        route: Some("default".into()),
        provider: Some("openai".into()),
        model: Some("gpt-4o".into()),
        tokens: TokenBreakdown {
            input_no_cache: 500,
            input_cache_read: 100,
            output_text: 120,
            ..Default::default()
        },
        cost_nano_usd: 2_250_000,
        latency_ms: 12,
        success: true,
        error_type: None,
        attempts: 1,
        estimated: false,
    }
}

async fn measure(label: &str, url: &str, base: &std::path::Path) {
    let cfg = Database {
        url: url.into(),
        base_dir: base.to_owned(),
        queue_capacity: 100_000,
        batch_size: 1_000,
        on_full: OnFull::Block,
        durability: Durability::Async,
        flush_interval: std::time::Duration::from_millis(50),
        retention_days: None,
        cache_size: bitrouter::config::DEFAULT_REDB_CACHE,
    };
    let ledger = match Ledger::open(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            println!("| {label} | skipped: {e} |");
            return;
        }
    };
    let started = Instant::now();
    for i in 0..ROWS {
        ledger.record(row(i)).await;
    }
    let queued = started.elapsed();
    ledger.close().await;
    let total = started.elapsed();
    println!(
        "| {label} | {:.0} rows/s | {:.2} µs per record call | {} rows written |",
        ROWS as f64 / total.as_secs_f64(),
        queued.as_secs_f64() * 1e6 / ROWS as f64,
        ledger.stats().written
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        println!("| backend | sustained write rate | enqueue cost | |\n|---|---|---|---|");
        measure("memory", "memory://", dir.path()).await;
        measure("redb", "redb://bench.redb", dir.path()).await;
        measure("sqlite", "sqlite://bench.db", dir.path()).await;

        let pg = std::env::var("BITROUTER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("bitrouter_bench_{}", std::process::id());
        if let Ok(mut admin) = sqlx::PgConnection::connect(&pg).await {
            let _ = sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut admin)
                .await;
            let sep = if pg.contains('?') { '&' } else { '?' };
            measure(
                "postgres",
                &format!("{pg}{sep}options=-c%20search_path%3D{schema}"),
                dir.path(),
            )
            .await;
            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await;
        } else {
            println!("| postgres | skipped: {pg} unreachable |");
        }
        let my = std::env::var("BITROUTER_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let name = format!("bitrouter_bench_{}", std::process::id());
        if let Ok(mut admin) = sqlx::MySqlConnection::connect(&my).await {
            let _ = sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await;
            let base = my
                .rsplit_once('/')
                .map(|(b, _)| b.to_owned())
                .unwrap_or(my.clone());
            measure("mysql", &format!("{base}/{name}"), dir.path()).await;
            let _ = sqlx::query(&format!("DROP DATABASE {name}"))
                .execute(&mut admin)
                .await;
        } else {
            println!("| mysql | skipped: {my} unreachable |");
        }
    });
}

//! Cost of one rate-limit check per request, as the proxy makes it: a requests and a
//! tokens limit taken together (all or nothing), through `Store::take`. Memory with
//! criterion directly (the check completes without a runtime turn); Redis (one Lua script
//! call) and PostgreSQL (one function call) when `BITROUTER_TEST_REDIS_URL` /
//! `BITROUTER_TEST_POSTGRES_URL` (default: the local servers) answer.
//! `cargo bench -p bitrouter --bench ratelimit`.

use std::hint::black_box;

use bitrouter::ratelimit::{Store, Take};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;

/// One request's limits: never reached during a run.
fn takes(who: &str) -> Vec<Take> {
    vec![
        Take {
            key: format!("bitrouter:rl:bench:{who}:requests"),
            limit: u64::MAX / 1_000_000,
            cost: 1,
        },
        Take {
            key: format!("bitrouter:rl:bench:{who}:tokens"),
            limit: u64::MAX / 1_000_000,
            cost: 1_500,
        },
    ]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn check(c: &mut Criterion) {
    let who = format!("{}", std::process::id());
    let memory = Store::memory();
    let t = takes(&who);
    c.bench_function("rate limit check (memory)", |b| {
        b.iter(|| {
            memory
                .take(black_box(&t), now_ms())
                .now_or_never()
                .expect("the memory store does not wait")
                .unwrap()
        });
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let redis_url = std::env::var("BITROUTER_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pg = std::env::var("BITROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("bitrouter_rl_bench_{}", std::process::id());
    let stores: Vec<(&str, Option<Store>)> = rt.block_on(async {
        let redis = match Store::redis(&redis_url) {
            Ok(s) if s.take(&t, now_ms()).await.is_ok() => Some(s),
            _ => None,
        };
        let postgres = async {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&pg).await.ok()?;
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut admin)
                .await
                .ok()?;
            let sep = if pg.contains('?') { '&' } else { '?' };
            let url = format!("{pg}{sep}options=-c%20search_path%3D{schema}");
            let pool = sqlx::PgPool::connect(&url).await.ok()?;
            Store::postgres(pool).await.ok()
        }
        .await;
        vec![("redis", redis), ("postgres", postgres)]
    });
    for (label, store) in &stores {
        let Some(store) = store else {
            eprintln!("{label}: skipped (not reachable)");
            continue;
        };
        c.bench_function(&format!("rate limit check ({label})"), |b| {
            b.iter(|| rt.block_on(store.take(black_box(&t), now_ms())).unwrap());
        });
    }
    rt.block_on(async {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&pg).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&mut admin)
                .await;
        }
    });
}

criterion_group!(benches, check);
criterion_main!(benches);

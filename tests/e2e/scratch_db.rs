//! A private schema (PostgreSQL) or database (MariaDB/MySQL) per test on the machine's real
//! servers, so parallel tests and runs never meet. URLs come from
//! `BITROUTER_TEST_POSTGRES_URL` / `BITROUTER_TEST_MYSQL_URL` (default: the local servers);
//! an unreachable server fails the test with the variable to set.

use sqlx::Connection;

pub fn postgres_url() -> String {
    std::env::var("BITROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_url() -> String {
    std::env::var("BITROUTER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:x}_{:x}", std::process::id(), fastrand::u64(..))
}

pub enum Scratch {
    Postgres {
        admin: String,
        schema: String,
        url: String,
    },
    MySql {
        admin: String,
        name: String,
        url: String,
    },
}

impl Scratch {
    /// A fresh schema, reached through `search_path` in the returned URL.
    pub async fn postgres(prefix: &str) -> Scratch {
        let admin = postgres_url();
        let schema = unique(prefix);
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {admin} is unreachable ({e}); set BITROUTER_TEST_POSTGRES_URL"
                )
            });
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut c)
            .await
            .unwrap();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
        Scratch::Postgres { admin, schema, url }
    }

    /// A fresh database on the same server.
    pub async fn mysql(prefix: &str) -> Scratch {
        let admin = mysql_url();
        let name = unique(prefix);
        let mut c = sqlx::MySqlConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MySQL/MariaDB at {admin} is unreachable ({e}); set BITROUTER_TEST_MYSQL_URL"
                )
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        Scratch::MySql { admin, name, url }
    }

    pub fn url(&self) -> &str {
        match self {
            Scratch::Postgres { url, .. } | Scratch::MySql { url, .. } => url,
        }
    }

    pub async fn drop(self) {
        match self {
            Scratch::Postgres { admin, schema, .. } => {
                let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Scratch::MySql { admin, name, .. } => {
                let mut c = sqlx::MySqlConnection::connect(&admin).await.unwrap();
                sqlx::query(&format!("DROP DATABASE {name}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }
}

//! The ledger's SQL schema, embedded in the binary: `migrations/<engine>/NNNN_name.sql`,
//! applied by sqlx's migrator. Listed by hand instead of `sqlx::migrate!` so sqlx's
//! proc-macro crate, which compiles every database driver a second time, stays out of the build.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One engine's migrations as (version, file stem, SQL). A unit test checks the list against
/// the files in `migrations/<engine>/`, so a new file cannot be forgotten here.
macro_rules! engine_schema {
    ($engine:literal: $($version:literal $stem:literal),+ $(,)?) => {
        &[$((
            $version,
            $stem,
            include_str!(concat!("../../../migrations/", $engine, "/", $stem, ".sql")),
        )),+]
    };
}

pub(super) const SQLITE: &[(i64, &str, &str)] = engine_schema!("sqlite":
    1 "0001_spend_log", 2 "0002_budgets", 3 "0003_agent_cards", 4 "0004_spend_agent");
pub(super) const POSTGRES: &[(i64, &str, &str)] = engine_schema!("postgres":
    1 "0001_spend_log", 2 "0002_budgets", 3 "0003_agent_cards", 4 "0004_spend_agent");
pub(super) const MYSQL: &[(i64, &str, &str)] = engine_schema!("mysql":
    1 "0001_spend_log", 2 "0002_budgets", 3 "0003_agent_cards", 4 "0004_spend_agent");

/// A migrator for one engine's files. Version, description and checksum are what
/// `sqlx::migrate!` derives from the same files (description: the stem after the first `_`,
/// underscores as spaces), so databases migrated by either agree.
pub(super) fn migrator(files: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    let migrations = files
        .iter()
        .map(|&(version, stem, sql)| {
            let description = stem
                .split_once('_')
                .map_or(stem, |(_, d)| d)
                .replace('_', " ");
            Migration::new(
                version,
                Cow::Owned(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(engine: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations")
            .join(engine);
        let mut stems: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|name| name.strip_suffix(".sql").map(str::to_owned))
            .collect();
        stems.sort();
        stems
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for (engine, files) in [("sqlite", SQLITE), ("postgres", POSTGRES), ("mysql", MYSQL)] {
            let listed: Vec<String> = files.iter().map(|(_, stem, _)| stem.to_string()).collect();
            assert_eq!(
                listed,
                on_disk(engine),
                "migrations/{engine}/ and spend/schema.rs differ"
            );
            for (version, stem, _) in files {
                let prefix: i64 = stem.split('_').next().unwrap().parse().unwrap();
                assert_eq!(
                    *version, prefix,
                    "{engine}/{stem}: version and file name differ"
                );
            }
        }
    }

    #[test]
    fn versions_and_descriptions_follow_sqlx_file_naming() {
        let m = migrator(POSTGRES);
        let first = m.iter().next().unwrap();
        assert_eq!(
            (first.version, first.description.as_ref()),
            (1, "spend log")
        );
        assert_eq!(
            first.checksum.len(),
            48,
            "SHA-384 of the SQL, as sqlx::migrate! computes"
        );
        assert_eq!(m.iter().count(), POSTGRES.len());
    }
}

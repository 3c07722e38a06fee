//! Grouped spend queries (`GET /admin/spend`, `bitrouter spend`) and their time bounds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::cost::TokenBreakdown;
use super::record::SpendRecord;

/// What spend is grouped by (`group_by` in `GET /admin/spend`, `--group-by` on the CLI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The caller's CAIP-10 account.
    Account,
    /// The caller's session.
    Session,
    /// The upstream model id.
    Model,
    /// The provider that served the request.
    Provider,
    /// The route (virtual model) the caller named.
    Route,
    /// The caller's registered agent name.
    Agent,
}

impl GroupBy {
    /// Parses the lowercase name (`account`, `session`, `model`, `provider`, `route`, `agent`).
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "account" => GroupBy::Account,
            "session" => GroupBy::Session,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "route" => GroupBy::Route,
            "agent" => GroupBy::Agent,
            _ => return None,
        })
    }

    /// The ledger column (SQL) this groups by.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Account => "account",
            GroupBy::Session => "session",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Route => "route",
            GroupBy::Agent => "agent",
        }
    }

    /// The value of this column in a row.
    pub fn key_of(self, r: &SpendRecord) -> Option<String> {
        match self {
            GroupBy::Account => r.account.clone(),
            GroupBy::Session => r.session.clone(),
            GroupBy::Model => r.model.clone(),
            GroupBy::Provider => r.provider.clone(),
            GroupBy::Route => r.route.clone(),
            GroupBy::Agent => r.agent.clone(),
        }
    }
}

/// Which rows to aggregate: `since <= time < until`, Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpendQuery {
    /// What to group by.
    pub group_by: GroupBy,
    /// Lower bound, inclusive, Unix milliseconds.
    pub since_ms: i64,
    /// Upper bound, exclusive, Unix milliseconds.
    pub until_ms: i64,
}

/// One group's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpendGroup {
    /// The group's value (`null` for rows without one, e.g. no account when auth is off).
    pub key: Option<String>,
    /// Requests in the group.
    pub requests: u64,
    /// Of those, requests that failed.
    pub errors: u64,
    /// Tokens charged, by price category.
    pub tokens: TokenBreakdown,
    /// What they cost, in nano-USD.
    pub cost_nano_usd: u64,
}

impl SpendGroup {
    /// Adds one ledger row to the totals.
    pub fn add(&mut self, r: &SpendRecord) {
        self.requests += 1;
        self.errors += u64::from(!r.success);
        let t = &mut self.tokens;
        t.input_no_cache += r.tokens.input_no_cache;
        t.input_cache_read += r.tokens.input_cache_read;
        t.input_cache_write += r.tokens.input_cache_write;
        t.output_text += r.tokens.output_text;
        t.output_reasoning += r.tokens.output_reasoning;
        self.cost_nano_usd += r.cost_nano_usd;
    }
}

/// Aggregates rows in memory (the redb and memory stores), most expensive group first.
pub fn aggregate<'a>(
    q: &SpendQuery,
    rows: impl Iterator<Item = &'a SpendRecord>,
) -> Vec<SpendGroup> {
    let mut groups: std::collections::HashMap<Option<String>, SpendGroup> =
        std::collections::HashMap::new();
    for r in rows.filter(|r| r.time_ms >= q.since_ms && r.time_ms < q.until_ms) {
        let key = q.group_by.key_of(r);
        groups
            .entry(key.clone())
            .or_insert_with(|| SpendGroup {
                key,
                ..Default::default()
            })
            .add(r);
    }
    sort_groups(groups.into_values().collect())
}

pub fn sort_groups(mut groups: Vec<SpendGroup>) -> Vec<SpendGroup> {
    groups.sort_by(|a, b| {
        b.cost_nano_usd
            .cmp(&a.cost_nano_usd)
            .then_with(|| a.key.cmp(&b.key))
    });
    groups
}

/// The current time in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses a time bound: RFC 3339 (`2026-11-25T00:00:00Z`), a date (`2026-11-25`), Unix
/// seconds, or a duration before now (`24h`, `7d`, `30m`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64)
        .map_err(|_| format!("expected an RFC 3339 time (2026-11-25T00:00:00Z), a date (2026-11-25), Unix seconds or a duration such as 24h, found {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2026-11-25").unwrap(),
            parse_time("2026-11-25T00:00:00Z").unwrap()
        );
        let d = now_ms() - parse_time("24h").unwrap();
        assert!((86_399_000..=86_401_000).contains(&d));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn aggregates_by_key_and_window() {
        let row = |t: i64, model: &str, cost: u64, ok: bool| SpendRecord {
            time_ms: t,
            model: Some(model.into()),
            cost_nano_usd: cost,
            success: ok,
            tokens: TokenBreakdown {
                input_no_cache: 1,
                output_text: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        let rows = [
            row(10, "a", 5, true),
            row(20, "b", 7, false),
            row(30, "a", 1, true),
            row(99, "a", 100, true),
        ];
        let q = SpendQuery {
            group_by: GroupBy::Model,
            since_ms: 10,
            until_ms: 99,
        };
        let g = aggregate(&q, rows.iter());
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].key.as_deref(), g[0].cost_nano_usd, g[0].errors),
            (Some("b"), 7, 1)
        );
        assert_eq!(
            (
                g[1].key.as_deref(),
                g[1].requests,
                g[1].cost_nano_usd,
                g[1].tokens.output_text
            ),
            (Some("a"), 2, 6, 4)
        );
    }
}

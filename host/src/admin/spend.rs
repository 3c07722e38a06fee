//! `GET /admin/spend`: grouped spend from the ledger, and the query parsing the `spend` CLI
//! verb shares.

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;

use crate::canonical::Dialect;
use crate::error::Error;
use crate::respond::{Body, error_response, json_response};
use crate::spend::{GroupBy, Ledger, SpendGroup, SpendQuery, parse_time};

/// Nano-USD as an exact decimal string of dollars (`"0.027500000"`).
pub fn usd(nano: u64) -> String {
    format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

/// Reads `group_by`, `since` and `until` from a query string.
pub fn parse_spend_query(query: Option<&str>) -> Result<SpendQuery, Error> {
    let mut q = SpendQuery {
        group_by: GroupBy::Model,
        since_ms: 0,
        until_ms: i64::MAX,
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "group_by" => {
                q.group_by = GroupBy::parse(&v).ok_or_else(|| {
                    Error::bad_request(format!(
                        "group_by: expected account, session, model, provider, route or agent, found {v:?}"
                    ))
                })?;
            }
            "since" => {
                q.since_ms =
                    parse_time(&v).map_err(|m| Error::bad_request(format!("since: {m}")))?;
            }
            "until" => {
                q.until_ms =
                    parse_time(&v).map_err(|m| Error::bad_request(format!("until: {m}")))?;
            }
            other => {
                return Err(Error::bad_request(format!(
                    "unknown parameter {other:?}; expected group_by, since, until"
                )));
            }
        }
    }
    Ok(q)
}

fn group_json(g: &SpendGroup) -> serde_json::Value {
    json!({
        "key": g.key,
        "requests": g.requests,
        "errors": g.errors,
        "tokens": g.tokens,
        "cost_nano_usd": g.cost_nano_usd,
        "cost_usd": usd(g.cost_nano_usd),
    })
}

/// `GET /admin/spend`: the ledger grouped by `group_by` between `since` and `until`.
pub async fn spend(ledger: &Arc<Ledger>, query: Option<&str>) -> http::Response<Body> {
    let q = match parse_spend_query(query) {
        Ok(q) => q,
        Err(e) => return error_response(Dialect::OpenAiChat, &e),
    };
    match ledger.query(&q).await {
        Ok(groups) => {
            let mut total = SpendGroup::default();
            for g in &groups {
                total.requests += g.requests;
                total.errors += g.errors;
                total.cost_nano_usd += g.cost_nano_usd;
                let (t, s) = (&mut total.tokens, &g.tokens);
                t.input_no_cache += s.input_no_cache;
                t.input_cache_read += s.input_cache_read;
                t.input_cache_write += s.input_cache_write;
                t.output_text += s.output_text;
                t.output_reasoning += s.output_reasoning;
            }
            let body = json!({
                "group_by": q.group_by,
                "since_ms": q.since_ms,
                "until_ms": q.until_ms,
                "groups": groups.iter().map(group_json).collect::<Vec<_>>(),
                "total": group_json(&total),
                "ledger": { "engine": ledger.engine(), "stats": ledger.stats() },
            });
            json_response(StatusCode::OK, body.to_string())
        }
        Err(e) => {
            let e = Error::new(
                crate::error::ErrorKind::NotConfigured,
                format!("spend query failed: {e}"),
            );
            error_response(Dialect::OpenAiChat, &e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_exact() {
        assert_eq!(usd(27_500_000), "0.027500000");
        assert_eq!(usd(12_000_000_001), "12.000000001");
    }

    #[test]
    fn query_parameters() {
        let q =
            parse_spend_query(Some("group_by=account&since=1700000000&until=2026-01-01")).unwrap();
        assert_eq!(q.group_by, GroupBy::Account);
        assert_eq!(q.since_ms, 1_700_000_000_000);
        assert!(
            parse_spend_query(Some("group_by=colour"))
                .unwrap_err()
                .message()
                .contains("group_by")
        );
        assert!(
            parse_spend_query(Some("sinse=1"))
                .unwrap_err()
                .message()
                .contains("sinse")
        );
    }
}

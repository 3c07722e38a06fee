//! `bitrouter spend`: grouped spend as a table, from a running gateway's `/admin/spend` or
//! straight from a ledger database (`--db`), with the query parsed by the server's own code.

use anyhow::Context;

use super::ConfigArg;

#[derive(clap::Args)]
pub struct SpendArgs {
    /// account | session | model | provider | route | agent
    #[arg(long, default_value = "model")]
    group_by: String,
    /// Start: RFC 3339 time, date, Unix seconds, or a duration ago (24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// End (exclusive), same forms as --since.
    #[arg(long)]
    until: Option<String>,
    /// Ask this running gateway (default: server.listen of the config).
    #[arg(long)]
    url: Option<String>,
    /// Read this database directly instead of asking a running gateway.
    #[arg(long, env = "BITROUTER_DATABASE_URL")]
    db: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
    /// Admin token for a gateway with auth on (default: one minted from the key store).
    #[arg(long, env = "BITROUTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl SpendArgs {
    pub fn run(self) -> anyhow::Result<()> {
        spend(self)
    }
}

/// Prints grouped spend, from a running gateway's `/admin/spend` or straight from a database.
fn spend(args: SpendArgs) -> anyhow::Result<()> {
    let mut query = vec![("group_by", args.group_by.clone())];
    query.extend(args.since.clone().map(|s| ("since", s)));
    query.extend(args.until.clone().map(|u| ("until", u)));
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    let parsed = bitrouter::admin::parse_spend_query(Some(&encoded))
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let body = match &args.db {
        Some(db) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let config = args.config.load()?;
                let store =
                    bitrouter::spend::Ledger::open_for_query(db, &config.database.base_dir)
                        .await?;
                let groups = store.query(&parsed).await?;
                let groups: Vec<serde_json::Value> = groups
                    .iter()
                    .map(|g| serde_json::json!({"key": g.key, "requests": g.requests, "errors": g.errors, "tokens": g.tokens, "cost_nano_usd": g.cost_nano_usd}))
                    .collect();
                anyhow::Ok(serde_json::json!({ "groups": groups }))
            })?
        }
        None => {
            let base = match &args.url {
                Some(u) => u.clone(),
                None => format!("http://{}", args.config.load()?.server.listen),
            };
            let token = super::auth::admin_token(args.token.clone());
            super::agent::send(
                &base,
                reqwest::Method::GET,
                &format!("/admin/spend?{encoded}"),
                None,
                token.as_deref(),
            )
            .context("or pass --db to read the database directly")?
        }
    };
    print_spend_table(&args.group_by, &body);
    Ok(())
}

fn print_spend_table(group_by: &str, body: &serde_json::Value) {
    let header = [
        group_by,
        "requests",
        "errors",
        "input",
        "cache_read",
        "cache_write",
        "output",
        "reasoning",
        "cost_usd",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_uppercase()).collect()];
    let empty = Vec::new();
    for g in body["groups"].as_array().unwrap_or(&empty) {
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0).to_string();
        let t = &g["tokens"];
        rows.push(vec![
            g["key"].as_str().unwrap_or("(none)").to_owned(),
            n(&g["requests"]),
            n(&g["errors"]),
            n(&t["input_no_cache"]),
            n(&t["input_cache_read"]),
            n(&t["input_cache_write"]),
            n(&t["output_text"]),
            n(&t["output_reasoning"]),
            bitrouter::admin::usd(g["cost_nano_usd"].as_u64().unwrap_or(0)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == 0 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("  "));
    }
    if rows.len() == 1 {
        println!("(no requests in this window)");
    }
}

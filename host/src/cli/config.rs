//! `bitrouter check-config` and `bitrouter route list`: what a config file resolves to
//! (routes in order, guardrail patterns), checked by the same code the server runs at start.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bitrouter::Config;
use bitrouter::router::Router;
use clap::Subcommand;

use super::ConfigArg;

#[derive(clap::Args)]
pub struct CheckConfigArgs {
    /// The config file to check (or `-c FILE`, as the other verbs take it; default
    /// ./bitrouter.yaml).
    path: Option<PathBuf>,
    #[arg(long, short, env = "BITROUTER_CONFIG", conflicts_with = "path")]
    config: Option<PathBuf>,
}

impl CheckConfigArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let path = self
            .path
            .or(self.config)
            .unwrap_or_else(|| PathBuf::from("bitrouter.yaml"));
        check_config(&path)
    }
}

#[derive(Subcommand)]
pub enum RouteCommand {
    /// List the routes of a config file with their endpoints in order.
    #[command(after_help = "Example:\n  bitrouter route list --config bitrouter.yaml")]
    List(RouteListArgs),
}

#[derive(clap::Args)]
pub struct RouteListArgs {
    #[command(flatten)]
    config: ConfigArg,
}

impl RouteCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            RouteCommand::List(a) => a.config.load().map(|c| print_routes(&c)),
        }
    }
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    // Building the router checks what only a built target can (header values, protocols).
    Router::new(&config)?;
    // Loading the plugins checks their files, hashes and signatures, and the pattern ids
    // the guardrail section names.
    let firewall =
        bitrouter::guardrails::load(&config).with_context(|| format!("{}", path.display()))?;
    // What a start would refuse as a rollback below this machine's accepted versions (checked,
    // not recorded: only a gateway that runs the set accepts it).
    bitrouter::plugins::versions::check(&config.plugins.artifact_dir, &firewall.plugins)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // Everything verified, as at a gateway's start: these digests are what a start with the
    // registry unreachable falls back to.
    firewall
        .plugins
        .remember_verified(&config.plugins.artifact_dir);
    println!("{}: OK", path.display());
    print_guardrails(&firewall);
    print_compile_cache(&firewall);
    println!("listen: {}", config.server.listen);
    print_routes(&config);
    Ok(())
}

/// How the plugins' machine code was had: compiled now, or from the cache `serve` uses too.
fn print_compile_cache(firewall: &bitrouter::guardrails::Firewall) {
    let Some(host) = &firewall.plugins.host else {
        return;
    };
    let stats = host.cache_stats();
    match host.cache_dir() {
        Some(dir) => println!(
            "plugins: {} compiled now, {} from the compile cache ({})",
            stats.misses,
            stats.hits,
            dir.display()
        ),
        None => println!("plugins: {} compiled now (no compile cache)", stats.misses),
    }
}

fn print_guardrails(firewall: &bitrouter::guardrails::Firewall) {
    use bitrouter::guardrails::action_str;
    use bitrouter::plugins::Direction;
    let patterns = firewall.engine.patterns();
    if patterns.is_empty() {
        println!("guardrails: off");
        return;
    }
    println!("guardrails: {} patterns", patterns.len());
    for p in patterns {
        let show = |d| p.action(d).map(action_str).unwrap_or("-");
        println!(
            "  {:<24} upgoing {:<6}  downgoing {:<6}  {}",
            &*p.id,
            show(Direction::Request),
            show(Direction::Response),
            p.plugin
                .as_ref()
                .map(|pp| format!("plugin {}", pp.plugin.id()))
                .unwrap_or_else(|| "custom".into())
        );
    }
    for p in &firewall.plugins.policies {
        let i = &p.info;
        println!(
            "  policy {} {} from {}: {} (plugins {})",
            i.id,
            i.version,
            i.source,
            match (&i.signer, &i.trust_scope) {
                (Some(key), Some(scope)) => format!("signed by {key}, trusted for `{scope}`"),
                _ => "not verified (no trust configured)".to_owned(),
            },
            i.plugins.join(", ")
        );
    }
    if !firewall.plugins.missing_builtins.is_empty() {
        println!(
            "  missing built-in plugins (run scripts/build-plugins.sh, then rebuild): {}",
            firewall.plugins.missing_builtins.join(", ")
        );
    }
}

fn print_routes(config: &Config) {
    if config.routes.is_empty() {
        println!("no routes (requests can still name provider:model_id)");
        return;
    }
    let router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            println!("routes cannot be built: {e}");
            return;
        }
    };
    for (name, route) in &config.routes {
        println!(
            "{name} ({})",
            match route.strategy {
                bitrouter::config::Strategy::Priority => "priority",
                bitrouter::config::Strategy::LoadBalance => "load_balance",
            }
        );
        let plan = router.plan(name).ok();
        for (i, e) in route.endpoints.iter().enumerate() {
            let url = plan
                .as_ref()
                .and_then(|p| p.targets.get(i))
                .map(|t| t.url.clone())
                .unwrap_or_default();
            println!(
                "  {}. {}:{} → {url}  weight {}  first_byte {}",
                i + 1,
                e.provider,
                e.model_id,
                e.weight,
                humantime::format_duration(e.timeouts.first_byte)
            );
        }
    }
}

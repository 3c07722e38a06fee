//! `bench`: the BitRouter benchmark. Starts the mock upstream and the gateway (pinned child
//! processes), runs issue 8's scenarios direct-to-mock and via the gateway in interleaved
//! rounds, prints a markdown report and writes `report.json` + `report.md`.
//!
//! ```sh
//! cargo build --release -p bitrouter
//! cargo run --release -p bitrouter-bench --bin bench            # full run, ~4 minutes
//! cargo run --release -p bitrouter-bench --bin bench -- --smoke # seconds, for CI
//! ```

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("bench: the benchmark harness reads /proc and pins CPUs; it runs on Linux only");
    std::process::ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use anyhow::{Context, bail};
    use bitrouter_bench::floor::{self, INTERNAL_FLOOR_FLAG};
    use bitrouter_bench::harness::{self, INTERNAL_MOCK_FLAG, MOCK_BANNER, Options};
    use bitrouter_bench::load::clock::tighten_timer_slack;
    use bitrouter_bench::process::{Pinning, allowed_cpus, pin_current_thread};
    use bitrouter_bench::report::markdown;
    use bitrouter_mock::{MockBehavior, MockServer};
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(
        name = "bench",
        about = "Benchmark BitRouter against a mock upstream: added latency, throughput, streaming, memory, cold start",
        after_help = "Build the gateway first: cargo build --release -p bitrouter"
    )]
    struct Args {
        /// A few hundred milliseconds per scenario, one round, goals not judged (for CI).
        #[arg(long)]
        smoke: bool,
        /// Interleaved rounds per scenario (default 3; 1 with --smoke).
        #[arg(long)]
        rounds: Option<usize>,
        /// Seconds per open-loop phase (default 3; 0.3 with --smoke).
        #[arg(long)]
        duration: Option<f64>,
        /// Seconds per closed-loop (max throughput) phase (default 2; 0.3 with --smoke).
        #[arg(long)]
        closed_duration: Option<f64>,
        /// Connections of the closed-loop phases.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Where report.json and report.md go.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
        out: PathBuf,
        /// The gateway binary (default: `bitrouter` beside this binary, else target/release).
        #[arg(long)]
        gateway: Option<PathBuf>,
        /// The gateway's `server.log_level`.
        #[arg(long, default_value = "info")]
        gateway_log_level: String,
        /// The gateway's `database.flush_interval` (e.g. `0s` to commit every row at once).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        ledger_flush_interval: Option<std::time::Duration>,
        /// One more key of the gateway's `server:` section (repeatable), e.g.
        /// `--gateway-server runtime=per_core --gateway-server threads=2`.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        gateway_server: Vec<(String, String)>,
        /// Skip the floor proxy (scenarios 1, 3, 4 and 5 through a bare hyper reverse proxy on
        /// the gateway's CPU, for the report's gateway-vs-floor ratios).
        #[arg(long)]
        no_floor: bool,
        /// Skip the LiteLLM peer run (otherwise scenarios 1 and 4 also run through LiteLLM
        /// when it is importable; never in smoke runs).
        #[arg(long)]
        no_peer: bool,
        /// Run only these scenarios (comma-separated ids, e.g. 1,4).
        #[arg(long, value_delimiter = ',')]
        scenario: Option<Vec<u8>>,
        /// A note to add to the report (repeatable), e.g. how the gateway was built.
        #[arg(long)]
        note: Vec<String>,
        /// Before starting, wait up to this many seconds for other processes to leave the CPUs
        /// alone (a shared machine's background load is noise in every figure).
        #[arg(long, default_value_t = 0.0)]
        wait_quiet: f64,
        /// Do not pin processes to CPUs.
        #[arg(long)]
        no_pin: bool,
        /// Turn on the gateway's OpenTelemetry export (every request traced, GenAI metrics)
        /// to a collector the harness runs, to measure what tracing costs.
        #[arg(long)]
        otlp: bool,
        /// Where the guardrail plugins of scenarios 8 and 9 are (default: target/plugins).
        #[arg(long)]
        plugins_dir: Option<PathBuf>,
        /// Internal: serve as the mock upstream (how the harness starts its mock).
        #[arg(long = &INTERNAL_MOCK_FLAG[2..], hide = true)]
        internal_mock: bool,
        /// Internal: serve as the floor proxy in front of this upstream address.
        #[arg(long = &INTERNAL_FLOOR_FLAG[2..], hide = true, value_name = "UPSTREAM")]
        internal_floor: Option<std::net::SocketAddr>,
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let result = if args.internal_mock {
            serve_mock()
        } else if let Some(upstream) = args.internal_floor {
            serve_floor(upstream)
        } else {
            bench(args)
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    /// `KEY=VALUE` for `--gateway-server`.
    fn key_value(text: &str) -> Result<(String, String), String> {
        match text.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!("expected KEY=VALUE, found {text:?}")),
        }
    }

    fn bench(args: Args) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let gateway = match args.gateway {
            Some(g) => g,
            None => find_gateway(&exe)?,
        };
        if !gateway.is_file() {
            bail!(
                "no gateway binary at {}; build it with `cargo build --release -p bitrouter` or pass --gateway",
                gateway.display()
            );
        }
        let mut opts = Options::defaults(args.smoke, gateway, exe);
        if let Some(r) = args.rounds {
            opts.rounds = r.max(1);
        }
        if let Some(d) = args.duration {
            opts.open_s = d;
        }
        if let Some(d) = args.closed_duration {
            opts.closed_s = d;
        }
        opts.concurrency = args.concurrency.max(1);
        opts.gateway_log_level = args.gateway_log_level;
        opts.ledger_flush_interval = args
            .ledger_flush_interval
            .map(|d| humantime::format_duration(d).to_string());
        if !args.gateway_server.is_empty() {
            let keys: Vec<String> = args
                .gateway_server
                .iter()
                .map(|(k, v)| format!("`{k}: {v}`"))
                .collect();
            opts.extra_notes
                .push(format!("gateway `server:` keys set: {}", keys.join(", ")));
        }
        opts.gateway_server = args.gateway_server;
        opts.peer &= !args.no_peer;
        opts.floor = !args.no_floor;
        opts.only = args.scenario;
        opts.otlp = args.otlp;
        if let Some(dir) = args.plugins_dir {
            opts.plugins_dir = dir;
        }
        opts.extra_notes.extend(args.note);
        opts.wait_quiet = std::time::Duration::from_secs_f64(args.wait_quiet.max(0.0));
        opts.command = std::env::args()
            .enumerate()
            .map(|(i, a)| match i {
                0 => "bench".to_owned(),
                // Quoted like a shell would need it, so the line can be pasted back.
                _ if a.contains(|c: char| c.is_whitespace() || c == '\'') => {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
                _ => a,
            })
            .collect::<Vec<_>>()
            .join(" ");
        opts.pinning = if args.no_pin {
            Pinning::none()
        } else {
            Pinning::plan(&allowed_cpus())
        };
        // Pin before the runtime exists, so every thread it makes inherits the CPU.
        if let Some(cpu) = opts.pinning.load_generator {
            pin_current_thread(cpu).context("pinning the load generator")?;
        }
        tighten_timer_slack();
        eprintln!("pinning: {}", opts.pinning.describe());

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the Tokio runtime")?;
        let local = tokio::task::LocalSet::new();
        let report = local.block_on(&runtime, async {
            // Dropping the run on a signal drops its process guards: no child outlives us.
            tokio::select! {
                r = harness::run(&opts) => r,
                s = shutdown_signal() => match s {
                    Ok(()) => bail!("interrupted"),
                    Err(e) => Err(e),
                },
            }
        })?;

        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        let md = markdown::render(&report);
        let json_path = args.out.join("report.json");
        let md_path = args.out.join("report.md");
        std::fs::write(&json_path, json + "\n")
            .with_context(|| format!("writing {}", json_path.display()))?;
        std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{md}")?;
        out.flush()?;
        eprintln!("wrote {} and {}", json_path.display(), md_path.display());
        Ok(())
    }

    /// `bitrouter` beside this binary (same profile), else the workspace's release build.
    fn find_gateway(exe: &Path) -> anyhow::Result<PathBuf> {
        let beside = exe.with_file_name("bitrouter");
        if beside.is_file() {
            return Ok(beside);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("locating the workspace")?;
        Ok(root.join("target/release/bitrouter"))
    }

    async fn shutdown_signal() -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
        Ok(())
    }

    /// The floor-proxy child: a multi-thread runtime like the gateway's, on whatever CPUs it
    /// was pinned to; killed by its parent.
    fn serve_floor(upstream: std::net::SocketAddr) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the Tokio runtime")?;
        runtime.block_on(async {
            let (addr, serve) = floor::bind(upstream)
                .await
                .context("binding the floor proxy")?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}{addr}", floor::BANNER)?;
            out.flush()?;
            drop(out);
            tokio::select! {
                r = serve => r.context("the floor proxy stopped")?,
                s = shutdown_signal() => s?,
            }
            Ok(())
        })
    }

    /// The mock child: fast behavior (the harness sets each scenario's over HTTP), recording
    /// off, on whatever CPUs it was pinned to; killed by its parent.
    fn serve_mock() -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the Tokio runtime")?;
        runtime.block_on(async {
            let server = MockServer::builder()
                .behavior(MockBehavior::default())
                .record(false)
                .start()
                .await
                .context("starting the mock")?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{MOCK_BANNER}{}", server.addr())?;
            out.flush()?;
            drop(out);
            shutdown_signal().await?;
            server.shutdown().await;
            Ok(())
        })
    }

    #[cfg(test)]
    mod tests {
        /// `--gateway-server` takes `KEY=VALUE`, trimmed; anything else is refused with what
        /// was expected.
        #[test]
        fn gateway_server_keys_are_key_value_pairs() {
            assert_eq!(
                super::key_value(" runtime = per_core "),
                Ok(("runtime".to_owned(), "per_core".to_owned()))
            );
            assert_eq!(
                super::key_value("threads=2"),
                Ok(("threads".to_owned(), "2".to_owned()))
            );
            for bad in ["per_core", "=2", " =x"] {
                let e = super::key_value(bad).unwrap_err();
                assert!(e.contains("KEY=VALUE"), "{e}");
            }
        }
    }
}

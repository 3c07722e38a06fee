//! `bitrouter guard scan`: the guardrail firewall from the command line. It loads the
//! firewall with the library's `guardrails::load`, so what it prints is what the gateway
//! would do; `plugin test` runs its one-plugin firewall through the same `scan`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bitrouter::Config;
use bitrouter::guardrails::{self, action_str};
use bitrouter::plugins::{Action, Direction, PluginHost};
use clap::Subcommand;

use super::ConfigArg;

#[derive(Subcommand)]
pub enum GuardCommand {
    /// Scan text (a file, or stdin) and print one JSON line per finding.
    #[command(
        after_help = "Examples:\n  bitrouter guard scan notes.txt\n  cat answer.txt | bitrouter guard scan --direction downgoing --config bitrouter.yaml\n\nEach line: {\"pattern\",\"direction\",\"action\",\"start\",\"end\"} (byte offsets). The matched text\nis printed only with --show-match. Exit status: 0 when nothing would be blocked, 2 when\nsomething would, 1 on errors."
    )]
    Scan(ScanArgs),
}

#[derive(clap::Args)]
pub struct ScanArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Which patterns to run: those that look at requests, at responses, or both.
    #[arg(long, value_enum, default_value_t = ScanDirection::Both)]
    direction: ScanDirection,
    /// Also print the matched text (it may be a secret).
    #[arg(long)]
    show_match: bool,
    /// The text to scan (default: stdin).
    file: Option<PathBuf>,
}

impl GuardCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            GuardCommand::Scan(a) => {
                let config = a.config.load()?;
                guard_scan(&config, a.direction, a.show_match, a.file.as_deref())
                    .map(super::scanned)
            }
        }
    }
}

/// Which patterns a scan runs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanDirection {
    Upgoing,
    Downgoing,
    Both,
}

/// `text`, else the contents of `file`, else stdin.
pub fn read_text(text: Option<String>, file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(t) = text {
        return Ok(t);
    }
    match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read stdin (expected UTF-8 text)")?;
            Ok(s)
        }
    }
}

/// Scans `text` with the firewall `config` describes and prints one JSON line per finding.
/// `Ok(true)` when something would be blocked.
pub fn scan(
    config: &Config,
    direction: ScanDirection,
    show_match: bool,
    text: &str,
) -> anyhow::Result<bool> {
    let firewall = guardrails::load(config)?;
    let engine = firewall.engine.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut blocked = false;
    let mut count = 0;
    for (d, name) in [
        (Direction::Request, "upgoing"),
        (Direction::Response, "downgoing"),
    ] {
        let wanted = match direction {
            ScanDirection::Upgoing => d == Direction::Request,
            ScanDirection::Downgoing => d == Direction::Response,
            ScanDirection::Both => true,
        };
        if !wanted {
            continue;
        }
        for hit in runtime.block_on(engine.scan(d, text)) {
            blocked |= hit.action == Action::Block;
            count += 1;
            let mut line = serde_json::json!({
                "pattern": &*engine.patterns()[hit.pattern].id,
                "direction": name,
                "action": action_str(hit.action),
                "start": hit.span.start,
                "end": hit.span.end,
            });
            if hit.failed {
                line["plugin_failed"] = true.into();
            }
            if show_match {
                line["match"] = text[hit.span.clone()].into();
            }
            println!("{line}");
        }
    }
    eprintln!(
        "{count} finding{}{}",
        if count == 1 { "" } else { "s" },
        if blocked {
            "; a request or response with this text would be blocked"
        } else {
            ""
        }
    );
    // A plugin that failed (fail-open) found nothing; saying "0 findings" and exiting 0
    // would hide the one thing the user needs to know.
    let failed = plugin_failures(firewall.plugins.host.as_ref());
    if !failed.is_empty() {
        for line in &failed {
            eprintln!("{line}");
        }
        bail!(
            "{} plugin{} failed during the scan; the findings above are incomplete",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" }
        );
    }
    Ok(blocked)
}

/// One line per plugin whose calls failed, saying how.
fn plugin_failures(host: Option<&PluginHost>) -> Vec<String> {
    let Some(host) = host else {
        return Vec::new();
    };
    host.plugins()
        .iter()
        .filter_map(|p| {
            let s = p.stats();
            if s.failures() == 0 {
                return None;
            }
            let mut how = Vec::new();
            for (n, what) in [
                (
                    s.deadlines,
                    "over the call deadline (raise `call_deadline`, or --call-deadline)",
                ),
                (s.traps, "trapped"),
                (s.memory, "over the memory limit"),
                (s.invalid_results, "returned an invalid result"),
                (
                    s.other_failures,
                    "failed to instantiate or reported an error",
                ),
            ] {
                if n > 0 {
                    how.push(format!("{n} {what}"));
                }
            }
            Some(format!(
                "plugin {}: {} of {} calls failed: {}",
                p.info().id,
                s.failures(),
                s.calls,
                how.join(", ")
            ))
        })
        .collect()
}

/// `bitrouter guard scan`.
fn guard_scan(
    config: &Config,
    direction: ScanDirection,
    show_match: bool,
    file: Option<&Path>,
) -> anyhow::Result<bool> {
    let text = read_text(None, file)?;
    scan(config, direction, show_match, &text)
}

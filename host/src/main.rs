//! The `bitrouter` command line: parses the arguments and runs the verb. The verbs live in
//! `cli/`, one file per group; everything they do goes through the library.

#![deny(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::Parser;

mod cli;
use cli::Command;

const EXAMPLES: &str = "\
Examples:
  bitrouter serve --config examples/quickstart.yaml
  bitrouter serve --config bitrouter.yaml --listen 0.0.0.0:8787
  bitrouter check-config bitrouter.yaml
  bitrouter route list --config bitrouter.yaml
  bitrouter keygen
  bitrouter token mint --chain solana --scope api --exp 30d --models 'openai:*'
  echo 'key: sk-proj-...' | bitrouter guard scan --config bitrouter.yaml";

#[derive(Parser)]
#[command(name = "bitrouter", version, about = "One binary between AI agents and LLM providers: routing, failover, streaming.", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A CLI verb whose reader went away (`bitrouter check-config | head`) ends quietly, as
/// Unix tools do, instead of panicking in `println!` on EPIPE: the default SIGPIPE action,
/// which Rust's runtime replaces with "ignore". The server keeps ignoring it, so a client
/// that hangs up is an error on that connection only.
fn quiet_on_closed_pipe() {
    // SAFETY: called once at start, before any thread exists; SIG_DFL is a valid handler.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_on_closed_pipe();
        use std::io::IsTerminal;
        bitrouter::plugins::show_compile_progress(std::io::stderr().is_terminal());
    }
    match cli.command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

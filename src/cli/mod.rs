//! The command line: argument parsing and one file per subcommand.

mod check;
mod completions;
mod demo_server;
mod docs;
pub(crate) mod error;
mod history;
mod init;
mod repl;
mod rollback;
mod run;
mod unlock;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::core::duration::parse_duration;
use crate::host::console::ColorChoice;
use crate::host::console::{Console, Verbosity};

const ABOUT: &str =
    "Deployment runbooks as short Rhai scripts: retries, probes, process control, rollback.";

const EXAMPLES: &str = "\
Examples:
  deployer run examples/hello.rhai
  deployer run deploy.rhai --env staging --var base_url=http://127.0.0.1:8080
  deployer run deploy.rhai --dry-run
  deployer check deploy.rhai lib/*.rhai
  deployer rollback deploy.rhai --env production
  deployer history --env staging
  deployer unlock --env production
  deployer repl --env staging
  deployer run deploy.rhai --watch
  deployer init --template systemd
  deployer docs http::wait_healthy
  deployer completions bash > ~/.local/share/bash-completion/completions/deployer

Exit codes: 0 pass, 1 failed, 2 script or usage error (nothing ran),
3 rollback failed (a person must act), 4 warning with --strict,
5 locked by another run, 130 interrupted.";

/// deployer command line.
#[derive(Debug, Parser)]
#[command(name = "deployer", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// When to use colours: auto (a terminal and no NO_COLOR), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a deployment script.
    #[command(after_help = run::EXAMPLES)]
    Run(run::RunArgs),
    /// Compile scripts and resolve their imports; report every error; run nothing.
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Run only the script's fn rollback(ctx), after confirmation.
    #[command(after_help = rollback::EXAMPLES)]
    Rollback(rollback::RollbackArgs),
    /// Show who holds an environment's locks (local and on its hosts) and remove them.
    #[command(after_help = unlock::EXAMPLES)]
    Unlock(unlock::UnlockArgs),
    /// Try the script API interactively: completion, signatures, :doc, reload on save.
    #[command(after_help = repl::EXAMPLES)]
    Repl(repl::ReplArgs),
    /// Show recent runs: time, environment, verdict, score, duration, rollback.
    #[command(after_help = history::EXAMPLES)]
    History(history::HistoryArgs),
    /// Start a project: write deploy.rhai and deployer.toml from a template (--list).
    #[command(after_help = init::EXAMPLES)]
    Init(init::InitArgs),
    /// Show the script API's documentation (as the REPL's :doc), or all of it as Markdown.
    #[command(after_help = docs::EXAMPLES)]
    Docs(docs::DocsArgs),
    /// Print a shell completion script: bash, zsh or fish.
    #[command(after_help = completions::COMPLETION_EXAMPLES)]
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand with --dir.
    #[command(after_help = completions::MAN_EXAMPLES)]
    Man(completions::ManArgs),
    /// A tiny local HTTP server for examples and trials (health, flaky and slow routes).
    #[command(hide = true)]
    DemoServer(demo_server::DemoArgs),
}

/// Parses a `--timeout`-style duration argument.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Parses `KEY=VALUE`.
pub fn var_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got \"{s}\"")),
    }
}

/// Turns on internal tracing when `DEPLOYER_LOG` is set (for example `DEPLOYER_LOG=debug`).
/// It is off otherwise so start-up stays fast.
fn init_tracing() {
    if let Ok(filter) = std::env::var("DEPLOYER_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_ansi(ColorChoice::Auto.enabled())
            .try_init();
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                crate::exit::USAGE
            } else {
                0
            };
            let _ = e.print();
            return code;
        }
    };
    let color = cli.color;
    let result = match cli.command {
        Command::Run(args) => run::run(args, color),
        Command::Check(args) => check::check(args, color),
        Command::Rollback(args) => rollback::rollback(args, color),
        Command::History(args) => history::history(args, color),
        Command::Unlock(args) => unlock::unlock(args, color),
        Command::Repl(args) => repl::repl(args, color),
        Command::Init(args) => init::init(args, color),
        Command::Docs(args) => docs::docs(args, color),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args, color),
        Command::DemoServer(args) => demo_server::serve(args),
    };
    match result {
        Ok(()) => crate::exit::OK,
        Err(e) => {
            if e.should_print() {
                Console::new(Verbosity::Normal, color.enabled()).error(&e.to_string());
            }
            e.code()
        }
    }
}

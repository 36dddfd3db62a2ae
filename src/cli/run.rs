//! `deployer run`: check a script, then run it with signals, timeout and cleanup handled.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::api::error::is_terminated;
use crate::core::duration::format_duration;
use crate::exit;
use crate::host::console::{ColorChoice, Console, Verbosity};
use crate::host::state::HostOptions;
use crate::host::Host;
use crate::sys::cancel::CancelReason;

pub const EXAMPLES: &str = "\
Examples:
  deployer run examples/hello.rhai
  deployer run deploy.rhai --env production --yes
  deployer run deploy.rhai --var base_url=http://127.0.0.1:8080 --var break=true
  deployer run deploy.rhai --dry-run        # print commands and mutating requests, run none
  deployer run deploy.rhai --timeout 20m -v # stop after 20 minutes; stream command output";

/// Arguments of `deployer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The script to run.
    pub script: PathBuf,
    /// The environment to deploy to (scripts read it with env()).
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// A script variable, read with var("KEY"); repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = super::var_arg)]
    pub vars: Vec<(String, String)>,
    /// Run no command and send no mutating request; print what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to every confirm() question.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Stop the run after this long, such as 20m or 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = super::duration_arg)]
    pub timeout: Option<Duration>,
    /// Print more: stream command output live.
    #[arg(long, short, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print less: only warnings, errors and script output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `deployer run`.
pub fn run(args: RunArgs, color: ColorChoice) -> i32 {
    let verbosity = if args.quiet {
        Verbosity::Quiet
    } else if args.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let console = Console::new(verbosity, color.enabled());
    let name = args.script.display().to_string();
    let text = match std::fs::read_to_string(&args.script) {
        Ok(t) => t,
        Err(e) => {
            console.error(&format!("cannot read script {name}: {e}"));
            return exit::USAGE;
        }
    };
    let options = HostOptions {
        env: args.env.clone().unwrap_or_else(|| "default".into()),
        vars: args.vars.iter().cloned().collect(),
        dry_run: args.dry_run,
        yes: args.yes,
        timeout: args.timeout,
    };
    let host = match Host::new(options, console.clone()) {
        Ok(h) => h,
        Err(e) => {
            console.error(&e.to_string());
            return exit::FAILED;
        }
    };
    let ast = match host.check(&name, &text) {
        Ok(ast) => ast,
        Err(diags) => {
            for d in &diags {
                host.print(d);
            }
            console.error(&format!(
                "{} problem{} in {name}; nothing was run",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            ));
            return exit::USAGE;
        }
    };
    host.install_signal_handlers();
    if let Some(limit) = args.timeout {
        host.start_timeout(limit);
    }
    if args.dry_run {
        console.info("dry run: no command will run and no mutating request will be sent");
    }
    let started = Instant::now();
    let result = host.run(&ast);
    host.stop_processes();
    let took = format_duration(started.elapsed());
    match result {
        Ok(_) => {
            console.success(&format!("{name} finished in {took}"));
            exit::OK
        }
        Err(err) => {
            let diag = host.diagnose(&err, &name);
            host.print(&diag);
            if is_terminated(&err) {
                let reason = host.state.cancel.reason();
                let at = diag
                    .location
                    .as_ref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                console.error(&format!(
                    "run stopped{at} after {took}; background processes were stopped"
                ));
                match reason {
                    Some(CancelReason::Timeout(_)) => exit::FAILED,
                    _ => exit::INTERRUPTED,
                }
            } else {
                console.error(&format!("{name} failed after {took}"));
                exit::FAILED
            }
        }
    }
}

//! `deployer check`: compile scripts and their imports, check the deployer.toml each would
//! use, report every problem, run nothing.

use std::path::PathBuf;

use clap::Args;

use super::error::{CliError, CmdResult};
use crate::host::console::{ColorChoice, Console, Verbosity};
use crate::host::state::HostOptions;
use crate::host::Host;

pub const EXAMPLES: &str = "\
Examples:
  deployer check deploy.rhai
  deployer check scripts/*.rhai stdlib/*.rhai examples/*.rhai";

/// Arguments of `deployer check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The scripts to check.
    #[arg(required = true)]
    pub scripts: Vec<PathBuf>,
    /// Print only problems.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `deployer check`; exits 2 when any script has a problem.
pub fn check(args: CheckArgs, color: ColorChoice) -> CmdResult {
    let verbosity = if args.quiet {
        Verbosity::Quiet
    } else {
        Verbosity::Normal
    };
    let console = Console::new(verbosity, color.enabled());
    let host = Host::new(
        HostOptions::default(),
        console.clone(),
        crate::api::bindings(),
        Default::default(),
    )
    .map_err(CliError::failed)?;
    let mut problems = 0;
    let mut config_errors = std::collections::HashSet::new();
    for path in &args.scripts {
        let name = path.display().to_string();
        let text = match crate::host::input::read_script(path) {
            Ok(t) => t,
            Err(e) => {
                console.error(&format!("cannot read {name}: {e}"));
                problems += 1;
                continue;
            }
        };
        // The deployer.toml a run of this script would use, checked the same way.
        if let Err(e) = crate::config::for_script(path) {
            // Scripts of one folder share a file: report its problem once.
            if config_errors.insert(e.to_string()) {
                console.error(&e.to_string());
                problems += 1;
            }
        }
        match host.check(&name, &text) {
            Ok(checked) => {
                for w in &checked.warnings {
                    host.print(w);
                }
                console.success(&name)
            }
            Err(diags) => {
                for d in &diags {
                    host.print(d);
                }
                problems += diags.len();
            }
        }
    }
    if problems > 0 {
        return Err(CliError::Problems { count: problems });
    }
    Ok(())
}

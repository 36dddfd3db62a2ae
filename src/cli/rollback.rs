//! `deployer rollback`: run only the script's `fn rollback(ctx)`, after confirmation.

use clap::Args;

use super::error::{from_code, CliError, CmdResult};
use super::run::Common;
use crate::host::console::ColorChoice;
use crate::runner::execute;

pub const EXAMPLES: &str = "\
Examples:
  deployer rollback deploy.rhai --env production        # asks before rolling back
  deployer rollback deploy.rhai --env staging --yes
  deployer rollback deploy.rhai --env staging --dry-run # show what it would do

Exit codes: 0 rolled back, 1 not confirmed, 2 script error, 3 the rollback failed,
5 another run holds the lock, 130 interrupted.";

/// Arguments of `deployer rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: Common,
}

/// Runs `deployer rollback`.
pub fn rollback(args: RollbackArgs, color: ColorChoice) -> CmdResult {
    args.common.check_paths().map_err(CliError::usage)?;
    let mut req = args.common.request();
    req.rollback_only = true;
    from_code(execute(&req, args.common.console(color)))
}

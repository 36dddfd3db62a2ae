//! `deployer rollback`: run only the script's `fn rollback(ctx)`, after confirmation.

use clap::Args;

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
pub fn rollback(args: RollbackArgs, color: ColorChoice) -> i32 {
    if let Err(e) = args.common.check_paths() {
        args.common.console(color).error(&e);
        return crate::exit::USAGE;
    }
    let mut req = args.common.request();
    req.rollback_only = true;
    execute(&req, args.common.console(color))
}

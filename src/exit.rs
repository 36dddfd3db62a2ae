//! The published exit codes (README "Exit codes").

/// The deployment passed (or ended in WARNING without `--strict`).
pub const OK: i32 = 0;
/// The deployment failed (a step or check failed; any rollback succeeded).
pub const FAILED: i32 = 1;
/// Usage or script error found before anything ran: bad arguments, syntax, unknown function.
pub const USAGE: i32 = 2;
/// The deployment failed and the rollback failed or was declined: a person must act.
pub const ROLLBACK_FAILED: i32 = 3;
/// WARNING verdict with `--strict`.
pub const WARNING_STRICT: i32 = 4;
/// Another deployment holds the lock for this environment.
pub const LOCKED: i32 = 5;
/// The run's record (report, history line, the `--junit` file) could not be written; the
/// run itself passed.
pub const RECORD_NOT_WRITTEN: i32 = 6;
/// Interrupted by Ctrl-C or SIGTERM.
pub const INTERRUPTED: i32 = 130;

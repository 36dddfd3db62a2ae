//! System capabilities used by the script API: child processes (groups, the subreaper,
//! detached services), signals' cancellation, HTTP, the git state of a folder, host and
//! user names. No Rhai.

pub mod browser;
pub mod cancel;
pub mod git;
pub mod http;
pub mod identity;
pub mod process;
pub mod reaper;
pub mod spawn;

#[cfg(test)]
pub(crate) mod test_dir;

//! System capabilities used by the script API: child processes (groups, the subreaper,
//! detached services), signals' cancellation and HTTP. No Rhai.

pub mod cancel;
pub mod http;
pub mod process;
pub mod reaper;
pub mod spawn;

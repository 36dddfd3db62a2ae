//! System capabilities used by the script API: child processes and HTTP. Async, no Rhai.

pub mod cancel;
pub mod http;
pub mod process;
pub mod spawn;

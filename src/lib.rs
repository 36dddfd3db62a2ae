//! deployer: deployment runbooks as short Rhai scripts. The Rust core provides retries,
//! probes, process control, cancellation and error reporting; scripts say what to do.
//!
//! Embedding: build a [`Deployer`] with [`Deployer::builder`], then [`Deployer::check`] a
//! script or run one with [`Deployer::run_file`] / [`Deployer::run_script`]; see
//! [`embed`](Deployer) and `examples/embed.rs`.

pub(crate) mod api;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod core;
mod embed;
pub(crate) mod exit;
pub(crate) mod host;
pub(crate) mod metrics;
pub(crate) mod pipeline;
pub(crate) mod remote;
pub(crate) mod report;
pub(crate) mod runner;
pub(crate) mod store;
pub(crate) mod sys;
pub(crate) mod watch;

pub use crate::core::score::Verdict;
pub use crate::pipeline::{CheckRecord, CheckStatus, Event, HostRecord, PhaseRecord, PhaseStatus};
pub use embed::{Captured, Deployer, DeployerBuilder, Error, Outcome};
/// The Rhai version deployer embeds, for registering functions and modules.
pub use rhai;

// The HTTP load sampler behind `sample()` and `monitor()`, exported on purpose for its own
// integration tests and benchmark (tests/sampler.rs, lifecycle.rs, memory.rs,
// benches/bench_sample.rs), which measure it against real servers from outside the crate.
// Hidden from the docs: it is not part of the embedding surface.
#[doc(hidden)]
pub use crate::metrics::sampler;

/// Counts allocated bytes so a script that builds huge values stops with an error instead
/// of aborting the process. Install it in the embedding program to get that bound:
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: deployer::CountingAlloc = deployer::CountingAlloc;
/// fn main() {}
/// ```
pub use crate::host::memory::CountingAlloc;

/// Runs the `deployer` command line with the process's arguments and returns its exit code
/// (what the `deployer` binary does).
pub fn cli_main() -> i32 {
    cli::main()
}

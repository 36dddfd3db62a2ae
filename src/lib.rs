//! deployer: deployment runbooks as short Rhai scripts. The Rust core provides retries,
//! probes, process control, cancellation and error reporting; scripts say what to do.
//!
//! Embedding: build a [`host::Host`], [`host::Host::check`] a script, then
//! [`host::Host::run`] it.

pub mod api;
pub mod cli;
pub mod config;
pub mod core;
pub mod exit;
pub mod host;
pub mod metrics;
pub mod pipeline;
pub mod remote;
pub mod report;
pub mod runner;
pub mod store;
pub mod sys;
pub mod watch;

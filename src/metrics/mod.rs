//! Measuring a service over HTTP: the sampler (async, no Rhai).

pub mod lines;
pub mod sampler;

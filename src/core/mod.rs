//! Pure logic with no Rhai in it, unit-tested with fixed inputs.

pub mod backoff;
pub mod duration;
pub mod jsonmatch;
pub mod mask;
pub mod score;
pub mod suggest;
pub mod time;

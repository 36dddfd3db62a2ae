//! Pure logic with no Rhai in it, unit-tested with fixed inputs.

pub mod alert;
pub mod attempts;
pub mod backoff;
pub mod browser;
pub mod clip;
pub mod dotenv;
pub mod duration;
pub mod jsonmatch;
pub mod logscan;
pub mod mask;
pub mod monitor;
pub mod options;
pub mod releases;
pub mod retention;
pub mod score;
pub mod stats;
pub mod suggest;
pub mod thresholds;
pub mod time;
pub mod transport;
pub mod workflow;

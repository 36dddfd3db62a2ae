//! Run records: atomic files, the lock per environment, run ids, history.

pub mod atomic;
pub mod history;
pub mod ids;
pub mod lock;
pub mod model;
pub mod record;
pub mod render;

//! A run's record: what it holds (`model`), writing it into the state folder (`record`) and
//! the score table (`render`), and the HTML page with its charts (`html`, `svg`).

pub mod html;
pub mod model;
pub mod record;
pub mod render;
pub mod svg;

// Kept at their old paths during the restructuring (runner.rs, api/fs.rs, api/releases.rs,
// cli/history.rs and the remote lock use them); they live in `store/`.
pub use crate::store::{atomic, history, ids, lock};

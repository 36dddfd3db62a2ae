//! The state folder `.deployer/`: files replaced atomically, the run history
//! (`history.jsonl`), the per-environment lock and run ids. What a run's record holds and
//! how it is shown is `report/`.

pub mod atomic;
pub mod history;
pub mod ids;
pub mod lock;

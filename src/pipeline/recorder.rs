//! The one writer of a run's pipeline: the script API emits typed [`Event`]s, the recorder
//! applies them to the [`Pipeline`] the run owns and passes each to the run's listener (an
//! embedder's event callback). Everything else only reads.

use std::sync::{Mutex, MutexGuard, OnceLock};

use super::{CheckRecord, HostRecord, PhaseRecord, Pipeline, PlannedPhase};
use crate::core::score::Thresholds;

/// What happened in the pipeline, as the script API reports it.
#[derive(Debug, Clone)]
pub enum Event {
    /// A phase began (its record has status `running`); `changes` when it is marked
    /// `changes: true` (from here on a failure rolls back).
    PhaseStarted { record: PhaseRecord, changes: bool },
    /// A phase was skipped (`--skip`, `--skip-e2e`, or an earlier required phase failed).
    PhaseSkipped { record: PhaseRecord },
    /// The running phase ended; its final record. `stopped`: its failure stops the pipeline.
    PhaseEnded { record: PhaseRecord, stopped: bool },
    /// A check ended inside the running phase.
    CheckResult { check: CheckRecord },
    /// A command on a remote host ended inside the running phase.
    HostResult { host: HostRecord },
    /// A host that failed within the failure budget in the running phase was rolled back
    /// on its own; `status` is how that went (`ok`, `failed`, `declined`, ...).
    HostRolledBack { host: String, status: &'static str },
    /// A summary of metrics (`monitor`) for the running phase's record, under `key`.
    Metrics {
        key: String,
        value: serde_json::Value,
    },
    /// `trigger_rollback()` or a monitor at critical asked for the rollback.
    RollbackRequested { reason: String },
}

/// What the run plans before the script starts.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Phases named by literal `phase(...)` calls, in source order.
    pub planned: Vec<PlannedPhase>,
    /// `--skip` names.
    pub skip: Vec<String>,
    /// `--skip-e2e`.
    pub skip_e2e: bool,
    /// The run's score thresholds.
    pub thresholds: Thresholds,
}

/// A listener for every event the recorder applies.
pub type Listener = Box<dyn Fn(&Event) + Send + Sync>;

/// Holds the run's pipeline; see the module documentation.
#[derive(Default)]
pub struct Recorder {
    pipeline: Mutex<Pipeline>,
    listener: OnceLock<Listener>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("pipeline", &*self.lock())
            .field("listener", &self.listener.get().is_some())
            .finish()
    }
}

impl Recorder {
    /// Passes every event from now on to `listener` as well (the first listener given
    /// stays; returns false when one was there already).
    pub fn listen(&self, listener: Listener) -> bool {
        self.listener.set(listener).is_ok()
    }

    // A panic elsewhere must not lose the record: a poisoned lock still holds it.
    fn lock(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the pipeline.
    pub fn read<T>(&self, f: impl FnOnce(&Pipeline) -> T) -> T {
        f(&self.lock())
    }

    /// Sets what the run plans, before the script starts.
    pub fn plan(&self, plan: Plan) {
        let mut p = self.lock();
        p.planned = plan.planned;
        p.skip = plan.skip;
        p.skip_e2e = plan.skip_e2e;
        p.thresholds = plan.thresholds;
    }

    /// Adds the phases that never ran because the pipeline stopped (see
    /// [`Pipeline::close`]) and returns a copy of the pipeline.
    pub fn close(&self) -> Pipeline {
        let mut p = self.lock();
        p.close();
        p.clone()
    }

    /// Applies an event. Results that belong to a phase (checks, hosts, metrics) are kept
    /// only while one runs; returns whether the event was kept.
    pub fn emit(&self, event: Event) -> bool {
        let kept = apply(&mut self.lock(), &event);
        if let Some(listener) = self.listener.get() {
            listener(&event);
        }
        kept
    }
}

fn apply(p: &mut Pipeline, event: &Event) -> bool {
    match event {
        Event::PhaseStarted { record, changes } => {
            if *changes {
                p.changes_began = true;
            }
            p.in_phase = true;
            p.phases.push(record.clone());
        }
        Event::PhaseSkipped { record } => p.phases.push(record.clone()),
        Event::PhaseEnded { record, stopped } => {
            p.in_phase = false;
            match p.phases.last_mut() {
                Some(last) if last.name == record.name => *last = record.clone(),
                _ => p.phases.push(record.clone()),
            }
            if *stopped {
                p.stopped_by = Some(record.name.clone());
            }
        }
        Event::CheckResult { check } => {
            let Some(rec) = running(p) else {
                return false;
            };
            rec.checks.push(check.clone());
        }
        Event::HostRolledBack { host, status } => {
            let Some(rec) = running(p) else {
                return false;
            };
            let Some(h) = rec
                .hosts
                .iter_mut()
                .rev()
                .find(|h| h.host == *host && h.status == "failed")
            else {
                return false;
            };
            h.rollback = Some(status);
        }
        Event::HostResult { host } => {
            let Some(rec) = running(p) else {
                return false;
            };
            rec.hosts.push(host.clone());
        }
        Event::Metrics { key, value } => {
            let Some(rec) = running(p) else {
                return false;
            };
            let mut metrics = rec.metrics.take().unwrap_or_else(|| serde_json::json!({}));
            if let Some(obj) = metrics.as_object_mut() {
                obj.insert(key.clone(), value.clone());
            }
            rec.metrics = Some(metrics);
        }
        Event::RollbackRequested { reason } => p.request_rollback(reason),
    }
    true
}

/// The record of the phase that is running, if one is.
fn running(p: &mut Pipeline) -> Option<&mut PhaseRecord> {
    if p.in_phase {
        p.phases.last_mut()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{CheckStatus, PhaseStatus};
    use std::sync::Arc;

    fn phase(name: &str, status: PhaseStatus) -> PhaseRecord {
        PhaseRecord {
            index: 1,
            name: name.into(),
            required: true,
            skippable: false,
            status,
            score: 0.0,
            checks: Vec::new(),
            duration_ms: 0,
            started_at: None,
            error: None,
            reason: None,
            metrics: None,
            hosts: Vec::new(),
        }
    }

    fn check(name: &str) -> CheckRecord {
        CheckRecord {
            name: name.into(),
            status: CheckStatus::Passed,
            duration_ms: 1,
            attempts: 1,
            error: None,
            warning: None,
            score: None,
            location: None,
        }
    }

    #[test]
    fn results_go_to_the_running_phase_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let r = Recorder::default();
        assert!(r.listen(Box::new(move |e: &Event| {
            if let Ok(mut l) = log.lock() {
                let name = format!("{e:?}");
                l.push(name.split([' ', '{']).next().unwrap_or("").to_string());
            }
        })));
        assert!(!r.listen(Box::new(|_: &Event| {})));
        assert!(!r.emit(Event::CheckResult {
            check: check("outside")
        }));
        r.emit(Event::PhaseStarted {
            record: phase("Deploy", PhaseStatus::Running),
            changes: true,
        });
        assert!(r.emit(Event::CheckResult { check: check("up") }));
        assert!(r.emit(Event::Metrics {
            key: "monitor".into(),
            value: serde_json::json!({ "ticks": 3 }),
        }));
        r.emit(Event::RollbackRequested {
            reason: "health failing".into(),
        });
        let mut ended = phase("Deploy", PhaseStatus::Failed);
        ended.checks = r.read(|p| p.phases[0].checks.clone());
        r.emit(Event::PhaseEnded {
            record: ended,
            stopped: true,
        });
        assert!(!r.emit(Event::Metrics {
            key: "late".into(),
            value: serde_json::json!(1),
        }));
        let p = r.close();
        assert!(p.changes_began && !p.in_phase);
        assert_eq!(p.stopped_by.as_deref(), Some("Deploy"));
        assert_eq!(p.phases.len(), 1);
        assert_eq!(p.phases[0].status, PhaseStatus::Failed);
        assert_eq!(p.phases[0].checks.len(), 1);
        let request = p.rollback_request.expect("rollback requested");
        assert_eq!(request.phase.as_deref(), Some("Deploy"));
        assert_eq!(
            seen.lock().map(|l| l.clone()).unwrap_or_default(),
            [
                "CheckResult",
                "PhaseStarted",
                "CheckResult",
                "Metrics",
                "RollbackRequested",
                "PhaseEnded",
                "Metrics"
            ]
        );
    }
}

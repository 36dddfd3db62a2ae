//! What a run's record holds (`report.json`): the types every writer and renderer reads.
//! Writing them is `report::record`, showing them `report::render`; both depend on this
//! module, never the reverse.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::score::{Thresholds, Verdict};
use crate::host::state::RetryEvent;
use crate::pipeline::{PhaseRecord, RollbackRequest};
pub use crate::sys::git::GitInfo;

/// The version tag of `report.json` (see `schemas/report.schema.json`).
/// v2 added `vars`, `recorded` and the rollback status `not_run`; v3 the `location` of each
/// check (`file:line:col`), the limits each monitor tick was judged against (`warning`,
/// `critical`) and the run's `screenshots`; older history lines are still read.
pub const SCHEMA: &str = "deployer/report/v3";

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Completed,
    Failed,
    Interrupted,
    Declined,
}

/// What happened about rolling back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackStatus {
    NotNeeded,
    Ok,
    Failed,
    Declined,
    Never,
    Missing,
    /// The run was interrupted after changes began: no rollback ran; a person decides.
    NotRun,
}

impl RollbackStatus {
    /// Returns the status as written in reports and history.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackStatus::NotNeeded => "not_needed",
            RollbackStatus::Ok => "ok",
            RollbackStatus::Failed => "failed",
            RollbackStatus::Declined => "declined",
            RollbackStatus::Never => "never",
            RollbackStatus::Missing => "missing",
            RollbackStatus::NotRun => "not_run",
        }
    }

    /// True when the deployment may be left half-changed: a person must act.
    pub fn needs_a_person(self) -> bool {
        matches!(
            self,
            RollbackStatus::Failed
                | RollbackStatus::Declined
                | RollbackStatus::Never
                | RollbackStatus::Missing
                | RollbackStatus::NotRun
        )
    }
}

/// The rollback part of a report.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackRecord {
    pub status: RollbackStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// `ctx.hosts`: the remote hosts given to `fn rollback(ctx)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl RollbackRecord {
    /// A rollback that was not needed.
    pub fn not_needed() -> RollbackRecord {
        RollbackRecord {
            status: RollbackStatus::NotNeeded,
            reason: None,
            phase: None,
            error: None,
            duration_ms: 0,
            hosts: Vec::new(),
        }
    }

    /// A rollback with a status and the request that called for it.
    pub fn for_request(status: RollbackStatus, req: &RollbackRequest) -> RollbackRecord {
        RollbackRecord {
            status,
            reason: Some(req.reason.clone()),
            phase: req.phase.clone(),
            error: None,
            duration_ms: 0,
            hosts: Vec::new(),
        }
    }
}

/// The script's error, if the run ended with one.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRecord {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// How this run compares with the previous one of the same environment.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub previous_run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_verdict: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_delta: Option<f64>,
}

/// The whole record of a run (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub run_id: String,
    pub mode: &'static str,
    pub script: String,
    pub script_sha256: String,
    pub env: String,
    pub dry_run: bool,
    /// The `--var`s given on the command line, masked.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// What the script recorded with `record::set`: `release` (live at the end),
    /// `rolled_back_from`, `version`, ...; masked.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub recorded: BTreeMap<String, String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    pub status: RunStatus,
    pub phases: Vec<PhaseRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// None for a dry run, which changes nothing and is not judged.
    pub verdict: Option<Verdict>,
    /// Why the verdict is not the one the score gives (`rolled back`, `interrupted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_reason: Option<String>,
    pub thresholds: Thresholds,
    pub rollback: RollbackRecord,
    /// The remote hosts the run changed, in the order they changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_hosts: Vec<String>,
    pub retries: Vec<RetryEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// Scores of the last runs of this environment, oldest first, this run last.
    pub trend: Vec<f64>,
    pub user: String,
    pub host: String,
    /// Processes started with `detach: true`, left running on purpose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detached: Vec<crate::sys::spawn::Detached>,
    /// The screenshots of `browser::visit`/`browser::check`, in the run folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub screenshots: Vec<crate::sys::browser::Shot>,
}

/// Returns a phase's status as shown in tables.
pub fn phase_status_text(p: &PhaseRecord, t: &Thresholds) -> String {
    crate::pipeline::phase_label(p, t)
}

/// A failed run of `staging` with the given phases: the fixture the report's renderers
/// (JUnit, HTML) start their unit tests from.
#[cfg(test)]
pub(crate) fn sample(phases: Vec<PhaseRecord>) -> Report {
    Report {
        schema: SCHEMA,
        run_id: "20260102T030405Z-staging-abcd".into(),
        mode: "deploy",
        script: "deploy.rhai".into(),
        script_sha256: "0".repeat(64),
        env: "staging".into(),
        dry_run: false,
        vars: Default::default(),
        recorded: Default::default(),
        started_at: "2026-01-02T03:04:05.000Z".into(),
        finished_at: "2026-01-02T03:04:09.000Z".into(),
        duration_ms: 4000,
        git: None,
        status: RunStatus::Failed,
        phases,
        score: Some(50.0),
        verdict: None,
        verdict_reason: None,
        thresholds: Thresholds::default(),
        rollback: RollbackRecord::not_needed(),
        changed_hosts: Vec::new(),
        retries: Vec::new(),
        error: None,
        exit_code: 1,
        comparison: None,
        trend: Vec::new(),
        user: "u".into(),
        host: "h".into(),
        detached: Vec::new(),
        screenshots: Vec::new(),
    }
}

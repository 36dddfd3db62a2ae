//! The record of one run: `report.json`, `summary.md`, `run.log`, and its line in
//! `history.jsonl`. Everything written is masked and written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::history::{self, History, HistoryEntry};
use crate::core::score::{Thresholds, Verdict};
use crate::host::state::RetryEvent;
use crate::pipeline::{PhaseRecord, RollbackRequest};

/// The version tag of `report.json` (see `schemas/report.schema.json`).
/// v2 added `vars`, `recorded` and the rollback status `not_run`; older history lines are
/// still read.
pub const SCHEMA: &str = "deployer/report/v2";

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

/// The git state of the script's folder.
#[derive(Debug, Clone, Serialize)]
pub struct GitInfo {
    pub commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
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
}

/// Returns the SHA-256 of a script's text, in hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the git commit and branch of `dir` from the repository's files (no `git`
/// process: it would cost more than the rest of a short run).
pub fn git_info(dir: &Path) -> Option<GitInfo> {
    let start = dir.canonicalize().ok()?;
    let git_dir = start
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.exists())?;
    // A worktree or submodule has a `.git` file pointing at the real folder.
    let git_dir = if git_dir.is_file() {
        let text = std::fs::read_to_string(&git_dir).ok()?;
        let target = text.strip_prefix("gitdir:")?.trim();
        git_dir.parent()?.join(target)
    } else {
        git_dir
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let (commit, branch) = match head.strip_prefix("ref: ") {
        Some(reference) => {
            let branch = reference.strip_prefix("refs/heads/").map(str::to_string);
            let loose = std::fs::read_to_string(git_dir.join(reference)).ok();
            let commit = match loose {
                Some(c) => c.trim().to_string(),
                None => {
                    // The ref may only be in packed-refs (or, in a worktree, the common dir).
                    let common = std::fs::read_to_string(git_dir.join("commondir"))
                        .ok()
                        .map(|c| git_dir.join(c.trim()))
                        .unwrap_or_else(|| git_dir.clone());
                    let packed = std::fs::read_to_string(common.join("packed-refs"))
                        .or_else(|_| std::fs::read_to_string(common.join(reference)))
                        .ok()?;
                    packed
                        .lines()
                        .find_map(|l| {
                            let (hash, name) = l.split_once(' ')?;
                            (name == reference).then(|| hash.to_string())
                        })
                        .or_else(|| {
                            let t = packed.trim();
                            (t.len() >= 40 && t.chars().all(|c| c.is_ascii_hexdigit()))
                                .then(|| t.to_string())
                        })?
                }
            };
            (commit, branch)
        }
        None => (head.to_string(), None),
    };
    let valid = commit.len() >= 40 && commit.chars().all(|c| c.is_ascii_hexdigit());
    valid.then_some(GitInfo { commit, branch })
}

/// Fills the comparison with the previous run and the trend, comparing like with like:
/// runs of the same environment, script and mode that were real (not dry) and not
/// interrupted. A dry or interrupted run is compared but does not enter the trend.
pub fn compare(report: &mut Report, history: &History) {
    let like = history::Like {
        env: &report.env,
        script: &report.script,
        mode: report.mode,
    };
    if let Some(prev) = history::previous(history, like, &report.run_id) {
        report.comparison = Some(Comparison {
            previous_run_id: prev.run_id.clone(),
            previous_score: prev.score,
            previous_verdict: prev.verdict.clone(),
            score_delta: match (report.score, prev.score) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            },
        });
    }
    let mut trend: Vec<f64> = history
        .entries
        .iter()
        .filter(|e| like.matches(e) && e.run_id != report.run_id)
        .filter_map(|e| e.score)
        .collect();
    if let Some(s) = report.score {
        if !report.dry_run && report.status != RunStatus::Interrupted {
            trend.push(s);
        }
    }
    let keep = trend.len().saturating_sub(10);
    report.trend = trend.split_off(keep);
}

/// Where a run's files went.
#[derive(Debug, Clone)]
pub struct Written {
    pub dir: PathBuf,
}

/// Returns the report as JSON with `mask` applied to every string in it: what every
/// sink of the report gets (report.json, `--json`, `fn on_finish(report)`). Masking the
/// values rather than the JSON text hides escaped forms and keeps the JSON valid.
pub fn masked_json(report: &Report, mask: &dyn Fn(&str) -> String) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    crate::core::mask::mask_json_with(&mut value, mask);
    value
}

/// The file that marks a run folder whose record is being written or was cut off.
pub const INCOMPLETE: &str = "INCOMPLETE";

/// Writes `report.json`, `summary.md` and `run.log` into `<state>/runs/<run-id>/` and
/// appends the history line. `mask` hides secrets in everything written.
///
/// The state folder, `runs/` and the run's folder must be real folders and history.jsonl a
/// real file: symlinks are refused, not followed. The run folder holds an [`INCOMPLETE`]
/// file until the history line is written, so a record cut off by an error or a kill is
/// marked as such; `runs/.<run-id>.incomplete` points at it, so the next run finds cut-off
/// folders without looking into every run folder, and removes the temp files killed runs
/// left there.
pub fn write(
    state_dir: &Path,
    report: &Report,
    log: &[String],
    mask: &dyn Fn(&str) -> String,
) -> std::io::Result<Written> {
    use super::atomic::{clean_stale_temps, open_nofollow, real_dir};
    use std::io::Write;
    real_dir(state_dir)?;
    let runs = state_dir.join("runs");
    real_dir(&runs)?;
    clean_incomplete(&runs);
    clean_stale_temps(state_dir);
    let dir = runs.join(&report.run_id);
    real_dir(&dir)?;
    let marker = dir.join(INCOMPLETE);
    let pointer = runs.join(pointer_name(&report.run_id));
    let create = |path: &Path, text: &[u8]| {
        open_nofollow(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
            path,
        )
        .and_then(|mut f| f.write_all(text))
        .map_err(|e| super::atomic::context(e, "cannot write", path))
    };
    create(&pointer, b"")?;
    create(
        &marker,
        b"This run's record was being written when deployer stopped: some files here may \
          be missing and history.jsonl may lack its line.\n",
    )?;
    let json =
        serde_json::to_string_pretty(&masked_json(report, mask)).map_err(std::io::Error::other)?;
    let report_path = dir.join("report.json");
    let summary = mask(&super::render::markdown(report));
    let mut text = log.join("\n");
    text.push('\n');
    let text = mask(&text);
    // report.json (and the history line) are the record and are fsynced; summary.md and
    // run.log are readable copies: renamed into place atomically, one folder fsync for all.
    super::atomic::write_atomic_all(
        &dir,
        &[
            ("summary.md", summary.as_bytes(), false),
            ("run.log", text.as_bytes(), false),
            ("report.json", json.as_bytes(), true),
        ],
    )?;
    let entry = HistoryEntry {
        run_id: report.run_id.clone(),
        started_at: report.started_at.clone(),
        finished_at: report.finished_at.clone(),
        env: mask(&report.env),
        script: mask(&report.script),
        verdict: report.verdict.map(|v| v.to_string()),
        score: report.score,
        duration_ms: report.duration_ms,
        rollback: Some(report.rollback.status.as_str().to_string()),
        dry_run: report.dry_run,
        interrupted: report.status == RunStatus::Interrupted,
        mode: Some(report.mode.to_string()),
        vars: report.vars.clone(),
        recorded: report.recorded.clone(),
        exit_code: report.exit_code,
        report: mask(&report_path.display().to_string()),
    };
    history::append(&state_dir.join("history.jsonl"), &entry)?;
    std::fs::remove_file(&marker)
        .map_err(|e| super::atomic::context(e, "cannot remove", &marker))?;
    // Only a pointer left: a missing one is no loss.
    let _ = std::fs::remove_file(&pointer);
    Ok(Written { dir })
}

/// The name of the file in `runs/` that points at a run folder marked [`INCOMPLETE`].
fn pointer_name(run_id: &str) -> String {
    format!(".{run_id}.incomplete")
}

/// Removes the temp files that killed runs left in run folders marked [`INCOMPLETE`], found
/// by their pointers in `runs/` (one listing; the folders, markers and pointers stay: they
/// tell that the record was cut off, and a pointer may be a live run's).
fn clean_incomplete(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(run_id) = name
            .to_str()
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.strip_suffix(".incomplete"))
        else {
            continue;
        };
        let dir = runs.join(run_id);
        if !run_id.contains('/') && std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            super::atomic::clean_stale_temps(&dir);
        }
    }
}

/// Returns a phase's status as shown in tables.
pub fn phase_status_text(p: &PhaseRecord, t: &Thresholds) -> String {
    crate::pipeline::phase_label(p, t)
}

/// Removes the oldest run folders of `env` beyond `keep` (`keep_runs` in deployer.toml),
/// never the current run; returns the removed run ids. Only real folders named like run
/// ids directly under `runs/` are touched; history.jsonl keeps their lines.
pub fn prune_runs(
    state_dir: &Path,
    env: &str,
    keep: usize,
    current: &str,
) -> std::io::Result<Vec<String>> {
    let runs = state_dir.join("runs");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&runs)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                let written = entry.metadata()?.modified()?;
                ids.push((name.to_string(), written));
            }
        }
    }
    let gone = super::ids::runs_to_prune(&ids, env, keep, current);
    for id in &gone {
        std::fs::remove_dir_all(runs.join(id))?;
    }
    Ok(gone)
}

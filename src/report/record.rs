//! The record of one run: `report.json`, `summary.md`, `report.html`, `run.log`, and its line in
//! `history.jsonl`. Everything written is masked and written atomically.

use std::path::{Path, PathBuf};

use crate::store::history::{self, History, HistoryEntry};

pub use super::model::{
    Comparison, ErrorRecord, Report, RollbackRecord, RollbackStatus, RunStatus, SCHEMA,
};

/// Returns the SHA-256 of a script's text, in hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
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
    // The scores of the last ten comparable runs, this one included (a run that stopped
    // before it was scored has no point).
    let mut earlier: Vec<&HistoryEntry> = history
        .entries
        .iter()
        .rev()
        .filter(|e| like.matches(e) && e.run_id != report.run_id)
        .take(TREND_RUNS - 1)
        .collect();
    earlier.reverse();
    let mut trend: Vec<f64> = earlier.iter().filter_map(|e| e.score).collect();
    if let Some(s) = report.score {
        if !report.dry_run && report.status != RunStatus::Interrupted {
            trend.push(s);
        }
    }
    report.trend = trend;
}

/// How many runs the trend covers, this one included.
pub const TREND_RUNS: usize = 10;

/// Where a run's files went.
#[derive(Debug, Clone)]
pub struct Written {
    pub dir: PathBuf,
    /// The `report.html` page written there (masked), for a `--html` copy.
    pub html: String,
}

/// Returns the report as JSON with `mask` applied to every string in it: what every
/// sink of the report gets (report.json, `--json`, `fn on_finish(report)`). Masking the
/// values rather than the JSON text hides escaped forms and keeps the JSON valid.
pub fn masked_json(report: &Report, mask: &dyn Fn(&str) -> String) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    crate::core::mask::mask_json_with(&mut value, mask);
    value
}

/// Returns `report.html` for the report: each text masked as it is rendered, then the
/// page masked as a whole like every other file of the record.
pub fn html_page(report: &Report, mask: &dyn Fn(&str) -> String) -> String {
    mask(&super::html::render(report, mask))
}

/// The file that marks a run folder whose record is being written or was cut off.
pub const INCOMPLETE: &str = "INCOMPLETE";

/// Writes `report.json`, `summary.md`, `report.html` and `run.log` into `<state>/runs/<run-id>/` and
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
    use crate::store::atomic::{clean_stale_temps, open_nofollow, real_dir};
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
        .map_err(|e| crate::store::atomic::context(e, "cannot write", path))
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
    let html = html_page(report, mask);
    let mut text = log.join("\n");
    text.push('\n');
    let text = mask(&text);
    // report.json (and the history line) are the record and are fsynced; summary.md,
    // report.html and run.log are readable copies: renamed into place atomically, one
    // folder fsync for all.
    crate::store::atomic::write_atomic_all(
        &dir,
        &[
            ("summary.md", summary.as_bytes(), false),
            ("report.html", html.as_bytes(), false),
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
        hosts: crate::remote::HostsSummary::of(&report.phases, &report.changed_hosts),
    };
    history::append(&state_dir.join("history.jsonl"), &entry)?;
    std::fs::remove_file(&marker)
        .map_err(|e| crate::store::atomic::context(e, "cannot remove", &marker))?;
    // Only a pointer left: a missing one is no loss.
    let _ = std::fs::remove_file(&pointer);
    Ok(Written { dir, html })
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
            crate::store::atomic::clean_stale_temps(&dir);
        }
    }
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
    let gone = crate::store::ids::runs_to_prune(&ids, env, keep, current);
    for id in &gone {
        std::fs::remove_dir_all(runs.join(id))?;
    }
    Ok(gone)
}

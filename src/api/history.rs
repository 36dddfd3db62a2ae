//! `history::*`: the run history as scripts see it, read by `store::history`'s reader
//! (the one `deployer history` uses): recent runs as maps, and a run's report.json.

use std::path::{Path, PathBuf};

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{state, throw, Error};
use crate::store::history;

/// The options `history::runs` knows.
pub const RUNS_OPTIONS: &[&str] = &["env", "script", "limit", "dry_runs"];

fn state_dir(ctx: &NativeCallContext) -> Result<PathBuf, Error> {
    Ok(state(ctx)?
        .options()
        .state_dir
        .unwrap_or_else(|| PathBuf::from(".deployer")))
}

fn text_opt(opts: &Map, key: &str) -> Result<Option<String>, Error> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) if v.is_string() => Ok(Some(v.to_string())),
        Some(v) => Err(throw(
            "usage",
            format!(
                "history::runs(): {key} must be a string, got {v} ({})",
                v.type_name()
            ),
        )),
    }
}

/// The report.json of run `run_id` in `state_dir`; the id must be one folder name.
pub fn report_path(state_dir: &Path, run_id: &str) -> Result<PathBuf, String> {
    if run_id.is_empty() || run_id.contains(['/', '\\']) || run_id.starts_with('.') {
        return Err(format!(
            "`{run_id}` is not a run id: give a run from history::runs() or its run_id"
        ));
    }
    Ok(state_dir.join("runs").join(run_id).join("report.json"))
}

#[export_module]
pub mod history_api {
    use super::*;

    /// The recent runs of the history (`STATE_DIR/history.jsonl`), newest first, each a
    /// map as `deployer history --json` prints it (`run_id`, `started_at`, `env`,
    /// `script`, `verdict`, `score`, `duration_ms`, `rollback`, `exit_code`, ...). Options:
    /// `env` (default: this run's environment; `""` for all), `script` (a path, file name
    /// or stem; default: every script), `limit` (default 10), `dry_runs` (default false).
    /// A damaged line is skipped with a warning.
    ///
    /// ```rhai
    /// for run in history::runs(#{ script: "monitor", limit: 5 }) {
    ///     log::info(`${run.run_id}: ${run.verdict} ${run.score}`);
    /// }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn runs(ctx: NativeCallContext, opts: Map) -> Result<Array, Error> {
        crate::api::opts::check_keys("history::runs", &opts, RUNS_OPTIONS)?;
        let st = state(&ctx)?;
        let env = text_opt(&opts, "env")?.unwrap_or_else(|| st.options().env);
        let script = text_opt(&opts, "script")?;
        let limit = match opts.get("limit").map(|v| v.as_int()) {
            None => 10,
            Some(Ok(n)) if n >= 1 => n as usize,
            Some(_) => {
                return Err(throw(
                    "usage",
                    format!(
                        "history::runs(): limit must be a whole number of at least 1, got {}",
                        opts["limit"]
                    ),
                ))
            }
        };
        let dry_runs = match opts.get("dry_runs").map(|v| v.as_bool()) {
            None => false,
            Some(Ok(b)) => b,
            Some(Err(_)) => {
                return Err(throw(
                    "usage",
                    "history::runs(): dry_runs must be true or false",
                ))
            }
        };
        let path = state_dir(&ctx)?.join("history.jsonl");
        let h = history::read(&path).map_err(|e| throw("history", e.to_string()))?;
        for w in &h.warnings {
            st.console.warn(w);
        }
        let env = (!env.is_empty()).then_some(env);
        let mut out = Array::new();
        for e in history::recent(&h, env.as_deref(), script.as_deref(), usize::MAX) {
            if out.len() >= limit {
                break;
            }
            if e.dry_run && !dry_runs {
                continue;
            }
            out.push(
                rhai::serde::to_dynamic(e)
                    .map_err(|err| throw("history", format!("{}: {err}", path.display())))?,
            );
        }
        Ok(out)
    }

    /// The recent runs of this environment, newest first: `history::runs(#{})`.
    ///
    /// ```rhai
    /// let last = history::runs();
    /// ```
    #[rhai_fn(name = "runs", return_raw)]
    pub fn runs_default(ctx: NativeCallContext) -> Result<Array, Error> {
        runs(ctx, Map::new())
    }

    /// The report.json of a run (a map from `history::runs()`, or its `run_id`) as a map:
    /// its phases, checks, metrics, score. `()` when the run left no readable report
    /// (cut off, or removed by `keep_runs`), with a warning saying which.
    ///
    /// ```rhai
    /// let runs = history::runs(#{ limit: 1 });
    /// if !runs.is_empty() {
    ///     let r = history::report(runs[0]);
    ///     if r != () { log::info(`previous score ${r.score}`); }
    /// }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn report(ctx: NativeCallContext, run: Dynamic) -> Result<Dynamic, Error> {
        let id = match run.read_lock::<Map>() {
            Some(m) => m.get("run_id").map(|v| v.to_string()).unwrap_or_default(),
            None => run.to_string(),
        };
        let path = report_path(&state_dir(&ctx)?, &id)
            .map_err(|e| throw("usage", format!("history::report(): {e}")))?;
        let st = state(&ctx)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                st.console.warn(&format!(
                    "run {id} has no readable report ({}: {e})",
                    path.display()
                ));
                return Ok(Dynamic::UNIT);
            }
        };
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => rhai::serde::to_dynamic(v)
                .map_err(|e| throw("history", format!("{}: {e}", path.display()))),
            Err(e) => {
                st.console.warn(&format!(
                    "run {id}: {} is damaged and was skipped: {e}",
                    path.display()
                ));
                Ok(Dynamic::UNIT)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn report_paths_stay_inside_the_runs_folder() {
        let p = report_path(Path::new("/s"), "20261202-1").unwrap();
        assert_eq!(p, Path::new("/s/runs/20261202-1/report.json"));
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(report_path(Path::new("/s"), bad).is_err(), "{bad}");
        }
    }
}

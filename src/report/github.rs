//! GitHub Actions output (`GITHUB_ACTIONS=true`): workflow commands (`::group::`,
//! `::error file=..,line=..,col=..::`, `::warning::`), the summary for
//! `$GITHUB_STEP_SUMMARY` and the step outputs for `$GITHUB_OUTPUT`.
//!
//! The formatting is pure and unit-tested (the command syntax itself is
//! `core::workflow`); [`publish`] is the thin sink the run calls at
//! its end. Workflow commands go to stderr: the runner reads commands on both streams, and
//! stdout stays free for `--json`. Secrets are masked in everything here; `::add-mask::`
//! is never used, since it would print the secret itself in the log.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::model::{Report, RollbackStatus};
use crate::core::workflow::command;
use crate::pipeline::CheckStatus;

/// True when the run is a GitHub Actions step (`GITHUB_ACTIONS=true`).
pub fn enabled() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// A place in a script: `file:line:col` as the report writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

/// Reads `file:line:col` (the file may itself hold colons).
pub fn parse_location(location: &str) -> Option<Place> {
    let mut parts = location.rsplitn(3, ':');
    let col = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next().filter(|f| !f.is_empty())?;
    Some(Place {
        file: file.to_string(),
        line,
        col,
    })
}

/// The path GitHub wants in `file=`: relative to the workspace (`GITHUB_WORKSPACE`) when
/// the script lies inside it, as the run named it otherwise. `cwd` is where the run
/// started (script names are relative to it).
pub fn workspace_path(file: &str, cwd: &Path, workspace: Option<&Path>) -> String {
    let path = Path::new(file);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let absolute = normalize(&absolute);
    match workspace.map(normalize) {
        Some(ws) => match absolute.strip_prefix(&ws) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => file.to_string(),
        },
        None => file.trim_start_matches("./").to_string(),
    }
}

/// Removes `.` and folds `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// One annotation: an error or warning, with its place when known.
fn annotation(
    kind: &str,
    place: Option<Place>,
    title: &str,
    message: &str,
    file: &dyn Fn(&str) -> String,
) -> String {
    let mut props = Vec::new();
    if let Some(p) = place {
        props.push(("file", file(&p.file)));
        props.push(("line", p.line.to_string()));
        props.push(("col", p.col.to_string()));
    }
    props.push(("title", title.to_string()));
    command(kind, &props, message)
}

/// The annotations of a finished run: each failed check as an `::error` at the line of its
/// `check(...)`, each check warning as a `::warning` there, the script's error (with its
/// place), and a rollback that failed or did not run. `mask` hides secrets; `file` turns
/// a script name into the path GitHub wants (see [`workspace_path`]).
pub fn annotations(
    r: &Report,
    mask: &dyn Fn(&str) -> String,
    file: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let place = |l: &Option<String>| l.as_deref().map(mask).as_deref().and_then(parse_location);
    for p in &r.phases {
        for c in &p.checks {
            let attempts = if c.attempts > 1 {
                format!(" after {} attempts", c.attempts)
            } else {
                String::new()
            };
            match c.status {
                CheckStatus::Failed => out.push(annotation(
                    "error",
                    place(&c.location),
                    &mask(&format!("{}: check \"{}\" failed", p.name, c.name)),
                    &mask(&format!(
                        "check \"{}\" failed{attempts}: {}",
                        c.name,
                        c.error.as_deref().unwrap_or("failed")
                    )),
                    file,
                )),
                CheckStatus::Warning => out.push(annotation(
                    "warning",
                    place(&c.location),
                    &mask(&format!("{}: check \"{}\" warned", p.name, c.name)),
                    &mask(&format!(
                        "check \"{}\"{attempts}: {}",
                        c.name,
                        c.warning.as_deref().unwrap_or("warning")
                    )),
                    file,
                )),
                _ => {}
            }
        }
        let check_failed = p.checks.iter().any(|c| c.status == CheckStatus::Failed);
        if p.status == crate::pipeline::PhaseStatus::Failed && !check_failed {
            if let Some(e) = &p.error {
                out.push(annotation(
                    "error",
                    None,
                    &mask(&format!("phase \"{}\" failed", p.name)),
                    &mask(e),
                    file,
                ));
            }
        }
    }
    if r.verdict == Some(crate::core::score::Verdict::Warning) {
        out.push(annotation(
            "warning",
            None,
            "deployment verdict WARNING",
            &format!(
                "{} to {} scored {}/100: WARNING (below the pass threshold {}); see the step summary",
                mask(&r.script),
                mask(&r.env),
                r.score.map(|s| format!("{s:.0}")).unwrap_or_else(|| "-".into()),
                r.thresholds.pass
            ),
            file,
        ));
    }
    if let Some(e) = &r.error {
        out.push(annotation(
            "error",
            place(&e.location),
            &format!("deployer {} failed", r.mode),
            &mask(&e.message),
            file,
        ));
    }
    match r.rollback.status {
        RollbackStatus::NotNeeded | RollbackStatus::Ok => {}
        RollbackStatus::Failed => out.push(annotation(
            "error",
            None,
            "rollback failed",
            &mask(&format!(
                "the rollback failed: {}; check the deployment now",
                r.rollback.error.as_deref().unwrap_or_default()
            )),
            file,
        )),
        other => out.push(annotation(
            "error",
            None,
            "not rolled back",
            &format!(
                "a rollback was needed and did not run ({}): check the deployment now",
                other.as_str()
            ),
            file,
        )),
    }
    out
}

/// One `name=value` entry for `$GITHUB_OUTPUT`; a value with a line break uses the
/// `name<<DELIMITER` form with a delimiter the value does not contain.
pub fn output_entry(name: &str, value: &str) -> String {
    if !value.contains('\n') && !value.contains('\r') {
        return format!("{name}={value}\n");
    }
    let mut n = 0u32;
    let delimiter = loop {
        let d = format!("DEPLOYER_EOF_{n}");
        if !value.contains(&d) {
            break d;
        }
        n += 1;
    };
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// What the run writes to `$GITHUB_OUTPUT`: `run_dir` (the run folder, when it was
/// written), `run_id`, `verdict` (empty for a dry run), `score` (empty without one) and
/// `exit_code`.
pub fn outputs(r: &Report, run_dir: Option<&Path>, mask: &dyn Fn(&str) -> String) -> String {
    let mut text = String::new();
    if let Some(dir) = run_dir {
        text.push_str(&output_entry("run_dir", &mask(&dir.display().to_string())));
    }
    text.push_str(&output_entry("run_id", &r.run_id));
    text.push_str(&output_entry(
        "verdict",
        &r.verdict.map(|v| v.to_string()).unwrap_or_default(),
    ));
    text.push_str(&output_entry(
        "score",
        &r.score.map(|s| format!("{s:.0}")).unwrap_or_default(),
    ));
    text.push_str(&output_entry("exit_code", &r.exit_code.to_string()));
    text
}

/// Appends `text` to the file an environment variable names (`GITHUB_STEP_SUMMARY`,
/// `GITHUB_OUTPUT`), creating it when missing; never truncates it.
fn append_to(var: &str, text: &str) -> Result<(), String> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            format!(
                "cannot append to ${var} ({}): {e}; the step's {} is missing",
                Path::new(&path).display(),
                if var == "GITHUB_OUTPUT" {
                    "outputs (run_dir, verdict, ...)"
                } else {
                    "summary"
                }
            )
        })
}

/// The sink: at the end of a run, prints the annotations (to stderr, through `emit`),
/// appends the summary to `$GITHUB_STEP_SUMMARY` when the run is a GitHub Actions step,
/// and the outputs to `$GITHUB_OUTPUT` whenever it is set. Returns what could not be
/// written, for the run to warn about.
pub fn publish(
    r: &Report,
    run_dir: Option<&Path>,
    mask: &dyn Fn(&str) -> String,
    emit: &dyn Fn(&str),
) -> Vec<String> {
    let mut problems = Vec::new();
    let cwd = std::env::current_dir().unwrap_or_default();
    // Absolute, so a later step finds the folder whatever its working directory.
    let run_dir = run_dir.map(|d| cwd.join(d));
    if enabled() {
        let workspace = std::env::var_os("GITHUB_WORKSPACE")
            .filter(|w| !w.is_empty())
            .map(PathBuf::from);
        let file = |f: &str| workspace_path(f, &cwd, workspace.as_deref());
        for line in annotations(r, mask, &file) {
            emit(&line);
        }
        let summary = mask(&super::render::markdown(r));
        if let Err(e) = append_to("GITHUB_STEP_SUMMARY", &format!("{summary}\n")) {
            problems.push(e);
        }
    }
    if let Err(e) = append_to("GITHUB_OUTPUT", &outputs(r, run_dir.as_deref(), mask)) {
        problems.push(e);
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_from_the_right() {
        assert_eq!(
            parse_location("dir:x/deploy.rhai:12:5"),
            Some(Place {
                file: "dir:x/deploy.rhai".into(),
                line: 12,
                col: 5
            })
        );
        assert_eq!(parse_location("deploy.rhai:12"), None);
        assert_eq!(parse_location(":1:2"), None);
    }

    #[test]
    fn files_are_relative_to_the_workspace() {
        let ws = Path::new("/home/runner/work/app/app");
        assert_eq!(
            workspace_path("deploy/deploy.rhai", &ws.join("sub"), Some(ws)),
            "sub/deploy/deploy.rhai"
        );
        assert_eq!(
            workspace_path("../deploy.rhai", &ws.join("sub"), Some(ws)),
            "deploy.rhai"
        );
        assert_eq!(
            workspace_path("/elsewhere/d.rhai", ws, Some(ws)),
            "/elsewhere/d.rhai"
        );
        assert_eq!(workspace_path("./d.rhai", ws, None), "d.rhai");
    }

    #[test]
    fn failed_checks_and_warnings_are_annotated_at_their_check_masked() {
        use crate::pipeline::{CheckStatus, PhaseStatus};
        use crate::report::junit::tests::{check, phase, report};
        let mut failed = check("up with s3cret", CheckStatus::Failed);
        failed.attempts = 3;
        failed.error = Some("HTTP 503: 50% down\nbody s3cret".into());
        let mut warned = check("slow", CheckStatus::Warning);
        warned.warning = Some("p95 900 ms".into());
        warned.location = Some("lib/checks.rhai:4:9".into());
        let mut r = report(vec![phase(
            2,
            "Health",
            PhaseStatus::Failed,
            vec![failed, warned],
        )]);
        r.rollback.status = RollbackStatus::Failed;
        r.rollback.error = Some("no previous release".into());
        let mask = |s: &str| s.replace("s3cret", "***");
        let file = |f: &str| format!("ws/{f}");
        let lines = annotations(&r, &mask, &file);
        assert_eq!(
            lines,
            vec![
                "::error file=ws/deploy.rhai,line=7,col=5,title=Health%3A check \"up with ***\" failed::check \"up with ***\" failed after 3 attempts: HTTP 503: 50%25 down%0Abody ***".to_string(),
                "::warning file=ws/lib/checks.rhai,line=4,col=9,title=Health%3A check \"slow\" warned::check \"slow\": p95 900 ms".to_string(),
                "::error title=rollback failed::the rollback failed: no previous release; check the deployment now".to_string(),
            ]
        );
        let out = outputs(&r, Some(Path::new("/s/runs/x")), &mask);
        assert_eq!(
            out,
            "run_dir=/s/runs/x\nrun_id=20260102T030405Z-staging-abcd\nverdict=\nscore=50\nexit_code=1\n"
        );
    }

    #[test]
    fn a_warning_verdict_is_a_warning_annotation() {
        use crate::report::junit::tests::report;
        let mut r = report(vec![]);
        r.verdict = Some(crate::core::score::Verdict::Warning);
        r.score = Some(72.0);
        let lines = annotations(&r, &|s: &str| s.to_string(), &|f: &str| f.to_string());
        assert_eq!(
            lines,
            ["::warning title=deployment verdict WARNING::deploy.rhai to staging scored 72/100: WARNING (below the pass threshold 80); see the step summary"]
        );
    }

    #[test]
    fn outputs_use_the_multiline_form_only_when_needed() {
        assert_eq!(output_entry("a", "b c"), "a=b c\n");
        assert_eq!(
            output_entry("a", "x\nDEPLOYER_EOF_0"),
            "a<<DEPLOYER_EOF_1\nx\nDEPLOYER_EOF_0\nDEPLOYER_EOF_1\n"
        );
    }
}

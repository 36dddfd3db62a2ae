//! The end of a run, in four steps that each consume what the one before produced: the
//! outcome (the report, with the verdict and exit code from [`decide`]), the optional
//! `fn on_finish(report)` hook, the console's end (`end.rs`), and the record (report.json
//! and its folder, the history line, JUnit, GitHub Actions output, `--html`, `--json`).

use std::time::{Duration, SystemTime};

use rhai::Dynamic;

use super::decide::{decide, error_record, Facts};
use super::{Ended, Run};
use crate::api::error::{is_terminated, message_of};
use crate::exit;
use crate::host::Host;
use crate::pipeline::PhaseStatus;
use crate::report::record::{self, ErrorRecord, Report, RollbackRecord, RollbackStatus, RunStatus};
use crate::store::history;
use crate::sys::cancel::CancelReason;

/// Hides secrets in what is written or shown.
type Mask<'a> = &'a dyn Fn(&str) -> String;

impl Run<'_> {
    /// Ends the run: decides, calls the hook, presents, records. Returns the exit code.
    pub(super) fn finish(self, run_id: String, ended: Ended, rollback: RollbackRecord) -> i32 {
        let console = self.console().clone();
        let (mut report, changes_began) = self.outcome(run_id, &ended, rollback);
        self.compare_with_history(&mut report);
        let masker = console.masker.clone();
        let mask = move |s: &str| masker.mask(s);
        self.call_on_finish(&record::masked_json(&report, &mask));
        console.end_group();
        self.print_end(&report, &ended, changes_began);
        let code = self.record(&mut report, &mask);
        if let Ok(mut out) = self.report_out.lock() {
            *out = Some(report);
        }
        code
    }

    /// The run's report: what happened, the verdict and the exit code. Also returns
    /// whether changes had begun. Writes and prints nothing.
    fn outcome(
        &self,
        run_id: String,
        ended: &Ended,
        mut rollback: RollbackRecord,
    ) -> (Report, bool) {
        let console = self.console();
        let (phases, changes_began, stopped, score, verdict) = {
            let p = self.host.state.pipeline.close();
            let has = p.has_phases();
            let (score, verdict) = p.total(&self.config.thresholds);
            (
                p.phases.clone(),
                p.changes_began,
                p.stopped_by.clone(),
                has.then_some(score),
                verdict,
            )
        };
        let (status, error) = match ended {
            Ended::Completed => (RunStatus::Completed, None),
            Ended::Declined(msg) => (
                RunStatus::Declined,
                Some(ErrorRecord {
                    message: msg.clone(),
                    location: None,
                }),
            ),
            Ended::Interrupted(d) => (RunStatus::Interrupted, Some(error_record(d))),
            Ended::Failed(d) => (RunStatus::Failed, d.as_ref().map(error_record)),
        };
        // Interrupted after changes began: no rollback ran, and "not needed" would be a lie.
        if status == RunStatus::Interrupted
            && changes_began
            && rollback.status == RollbackStatus::NotNeeded
            && !self.req.dry_run
        {
            rollback.status = RollbackStatus::NotRun;
            rollback.reason = Some("the run was interrupted after changes began".into());
            // The hosts left changed, so the record names what to roll back.
            rollback.hosts = self.host.state.remote.to_roll_back();
        }
        let broken_dry_run = self.req.dry_run
            && (matches!(ended, Ended::Failed(_))
                || phases.iter().any(|p| p.status == PhaseStatus::Failed));
        let decision = decide(&Facts {
            dry_run: self.req.dry_run,
            rollback_only: self.req.rollback_only,
            strict: self.req.strict,
            status,
            scored: score.map(|_| verdict),
            stopped_by: stopped,
            rollback: rollback.status,
            broken_dry_run,
        });
        let finished_at = SystemTime::now();
        let state = &self.host.state;
        let report = Report {
            schema: record::SCHEMA,
            run_id,
            mode: if self.req.rollback_only {
                "rollback"
            } else {
                "deploy"
            },
            script: self.name.clone(),
            script_sha256: record::sha256_hex(&self.text),
            env: self.env.name.clone(),
            dry_run: self.req.dry_run,
            vars: self
                .req
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), console.mask(v)))
                .collect(),
            recorded: state
                .recorded
                .lock()
                .map(|r| {
                    r.iter()
                        .map(|(k, v)| (k.clone(), console.mask(v)))
                        .collect()
                })
                .unwrap_or_default(),
            started_at: crate::core::time::rfc3339(self.started_at),
            finished_at: crate::core::time::rfc3339(finished_at),
            duration_ms: self.started.elapsed().as_millis() as u64,
            git: crate::sys::git::git_info(
                self.req
                    .script
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new(".")),
            ),
            status,
            phases,
            score: if self.req.dry_run { None } else { score },
            verdict: decision.verdict,
            verdict_reason: decision.reason,
            thresholds: self.config.thresholds,
            rollback,
            changed_hosts: state.remote.changed(),
            retries: state.retries.lock().map(|r| r.clone()).unwrap_or_default(),
            error,
            exit_code: decision.code,
            comparison: None,
            trend: Vec::new(),
            user: crate::sys::identity::username(),
            host: crate::sys::identity::hostname(),
            detached: state.processes.detached(),
            screenshots: state.browser.shots(),
        };
        (report, changes_began)
    }

    /// Adds the comparison with the previous comparable run and the trend.
    fn compare_with_history(&self, report: &mut Report) {
        let console = self.console();
        let history_path = self.config.state_dir.join("history.jsonl");
        // Read from the end until the runs the trend covers are found, within the last
        // 512 KiB (a few thousand runs): a run's cost stays flat however long the history
        // grows. (Parsing the whole 512 KiB was a third of a one-line run's instructions.)
        let like = history::Like {
            env: &report.env,
            script: &report.script,
            mode: report.mode,
        };
        match history::read_recent(&history_path, 512 * 1024, like, record::TREND_RUNS - 1) {
            Ok(h) => {
                for w in &h.warnings {
                    console.warn(w);
                }
                record::compare(report, &h);
            }
            Err(e) => console.warn(&format!("cannot read {}: {e}", history_path.display())),
        }
    }

    /// Writes the run's record and the copies asked for; returns the exit code, which
    /// becomes [`exit::RECORD_NOT_WRITTEN`] for a passing run whose record was lost.
    fn record(&self, report: &mut Report, mask: Mask<'_>) -> i32 {
        let console = self.console();
        // A run that failed keeps its own code; a passing one says its record is lost.
        let lost = |report: &mut Report| {
            if report.exit_code == exit::OK {
                report.exit_code = exit::RECORD_NOT_WRITTEN;
            }
        };
        let mut written = None;
        match record::write(&self.config.state_dir, report, &console.transcript(), mask) {
            Ok(w) => {
                console.info(&format!("run recorded in {}", w.dir.display()));
                self.prune(&report.run_id);
                written = Some(w);
            }
            Err(e) => {
                console.error(&format!(
                    "the run's record could not be written in {}: {e}. Fix the cause (disk space, permissions, a file in the way) so the next runs are recorded",
                    self.config.state_dir.display()
                ));
                lost(report);
            }
        }
        if let Some(path) = &self.req.junit {
            if let Err(e) = crate::report::junit::write(path, report, mask) {
                console.error(&e);
                lost(report);
            }
        }
        let run_dir = written.as_ref().map(|w| w.dir.as_path());
        for problem in
            crate::report::github::publish(report, run_dir, mask, &|l| console.workflow(l))
        {
            console.warn(&problem);
        }
        if let Some(path) = &self.req.html {
            // The page the run folder holds, rendered once; rendered here only when the
            // record was lost.
            let page = match &written {
                Some(w) => std::borrow::Cow::Borrowed(w.html.as_str()),
                None => std::borrow::Cow::Owned(record::html_page(report, mask)),
            };
            match crate::store::atomic::write_atomic(path, page.as_bytes()) {
                Ok(()) => console.info(&format!("HTML report written to {}", path.display())),
                Err(e) => {
                    console.error(&format!(
                        "cannot write the HTML report to {} (--html): {e}. The run folder's report.html has the same page when the record was written",
                        path.display()
                    ));
                    lost(report);
                }
            }
        }
        if self.req.json {
            // Masked again: the exit code may have changed when the record was lost.
            if let Ok(json) = serde_json::to_string_pretty(&record::masked_json(report, mask)) {
                console.report(&json);
            }
        }
        report.exit_code
    }

    /// Removes the environment's run folders beyond `keep_runs` (their history lines stay).
    fn prune(&self, run_id: &str) {
        let console = self.console();
        let keep = self.config.keep_runs();
        match record::prune_runs(&self.config.state_dir, &self.env.name, keep as usize, run_id) {
            Ok(gone) if !gone.is_empty() => console.info(&format!(
                "removed {} older run folder(s) of {} (keep_runs = {keep}); their history lines stay",
                gone.len(),
                self.env.name
            )),
            Ok(_) => {}
            Err(e) => console.warn(&format!(
                "cannot remove older run folders (keep_runs = {keep}): {e}"
            )),
        }
    }

    /// Calls the optional `fn on_finish(report)` with the masked report (a hook that posts
    /// it must not send a secret); a failing hook is a warning only.
    fn call_on_finish(&self, masked: &serde_json::Value) {
        if !Host::defines(&self.ast, "on_finish", 1) {
            return;
        }
        let value = rhai::serde::to_dynamic(masked).unwrap_or(Dynamic::UNIT);
        // After an interrupt or a timeout the hook gets a bound, then is stopped.
        let cancelled = self.host.state.cancel.is_cancelled();
        self.host.state.cancel.reset();
        let call = || self.host.call_fn(&self.ast, "on_finish", vec![value]);
        let result = if cancelled {
            let limit = crate::host::hook_timeout().unwrap_or_else(|e| {
                self.console().warn(&format!("{e}; using 10s"));
                Duration::from_secs(10)
            });
            self.host.bounded(limit, CancelReason::HookTimeout, call)
        } else {
            call()
        };
        if let Err(e) = result {
            let why = match self.host.state.cancel.reason() {
                Some(r) if is_terminated(&e) => r.to_string(),
                _ => message_of(&e),
            };
            self.console().warn(&format!(
                "on_finish hook failed (the verdict stands): {why}"
            ));
        }
    }
}

//! What the console shows when a run ends: the score table, then one line saying how the
//! run ended and, when something is left to a person, what to do.

use super::{Ended, Run};
use crate::core::duration::format_duration;
use crate::core::score::Verdict;
use crate::exit;
use crate::host::present;
use crate::host::Host;
use crate::pipeline::CheckStatus;
use crate::report::record::{Report, RollbackStatus};

impl Run<'_> {
    pub(super) fn print_end(&self, report: &Report, ended: &Ended, changes_began: bool) {
        let console = self.console();
        if !report.phases.is_empty() {
            for line in present::table(crate::report::render::table(report)) {
                console.show(&line);
            }
        }
        let took = format_duration(self.started.elapsed());
        match ended {
            Ended::Interrupted(d) => {
                self.host.print(d);
                let at = d
                    .location
                    .as_ref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                let live = report
                    .recorded
                    .get("release")
                    .filter(|_| !report.recorded.contains_key("rolled_back_from"));
                let state = if report.rollback.status == RollbackStatus::Ok {
                    "changes had begun and the rollback (on_interrupt = \"rollback\") succeeded"
                        .to_string()
                } else if report.rollback.status == RollbackStatus::Failed {
                    format!(
                        "changes had begun and the rollback (on_interrupt = \"rollback\") FAILED: {}. Check {} now and restore it by hand or with `deployer rollback {} --env {}`",
                        report.rollback.error.clone().unwrap_or_default(),
                        self.env.name, self.name, self.env.name
                    )
                } else if let (true, Some(live)) = (changes_began, live) {
                    format!(
                        "release {live} went live before the interrupt and is live now; if it must go back, run `deployer rollback {} --env {}`",
                        self.name, self.env.name
                    )
                } else if changes_began {
                    format!(
                        "the deployment of {} may be partial: changes had begun. Check the service, then run `deployer rollback {} --env {}` if it must go back",
                        self.env.name, self.name, self.env.name
                    )
                } else {
                    "no change had been made".to_string()
                };
                console.error(&format!(
                    "run stopped{at} after {took}; background processes were stopped; {state}"
                ));
            }
            Ended::Declined(msg) => console.error(msg),
            _ if report.rollback.status.needs_a_person() && !self.req.rollback_only => {
                console.error(&format!(
                    "ACTION NEEDED: the deployment of {env} failed and was not rolled back ({status}). {env} may be running a broken or partial release. Check it now; fix the cause and run `deployer rollback {script} --env {env}`, or restore it by hand.",
                    env = self.env.name,
                    status = report.rollback.status.as_str(),
                    script = self.name
                ));
            }
            _ if self.req.dry_run => self.print_dry_run_end(report, &took),
            _ if report.verdict == Some(Verdict::Failed) => {
                let rb = match report.rollback.status {
                    RollbackStatus::Ok => "; the rollback succeeded",
                    _ => "",
                };
                console.error(&format!("{} FAILED after {took}{rb}", self.name));
            }
            _ => console.success(&format!(
                "{} finished in {took}{}",
                self.name,
                match (report.score, report.verdict) {
                    (Some(s), Some(v)) => format!(": {s:.0}/100 {v}"),
                    _ => String::new(),
                }
            )),
        }
    }

    /// The end of a dry run: what it would do, what would fail, where the rollback is.
    fn print_dry_run_end(&self, report: &Report, took: &str) {
        let console = self.console();
        let checks = report.phases.iter().flat_map(|p| p.checks.iter());
        let (mut would_run, mut would_fail, mut read_only, mut broken) = (0, 0, 0, 0);
        for c in checks {
            match c.status {
                CheckStatus::WouldRun => would_run += 1,
                CheckStatus::WouldFail => would_fail += 1,
                CheckStatus::Failed => broken += 1,
                CheckStatus::Passed | CheckStatus::Warning => read_only += 1,
            }
        }
        let phase_fails = report
            .phases
            .iter()
            .filter(|p| {
                p.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("would fail"))
            })
            .count();
        if let Some((line, col)) = Host::position_of(&self.ast, "rollback", 1) {
            console.info(&format!(
                "a real run would call fn rollback(ctx) ({}:{line}:{col}) if it failed after changes began; the dry run did not run it",
                self.name
            ));
        }
        let mut parts = vec![format!("{would_run} check(s) would run")];
        if read_only > 0 {
            parts.push(format!("{read_only} read-only check(s) passed"));
        }
        if would_fail + phase_fails > 0 {
            parts.push(format!(
                "{} read-only probe(s) of the unchanged service would fail",
                would_fail + phase_fails
            ));
        }
        if report.exit_code == exit::USAGE {
            if broken > 0 {
                parts.push(format!(
                    "{broken} check(s) failed because of the script itself"
                ));
            }
            console.error(&format!(
                "dry run of {} found a fault in the script itself after {took}: {}; fix it before a real run (nothing was changed)",
                self.name,
                parts.join(", ")
            ));
        } else {
            console.success(&format!(
                "dry run of {} finished in {took}: {}; nothing was changed",
                self.name,
                parts.join(", ")
            ));
        }
    }
}

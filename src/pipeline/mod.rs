//! The deployment pipeline of a run: phases and their checks as they happen, what stopped
//! it, whether changes began, and the final score. No Rhai here.

use serde::Serialize;

mod control;
mod recorder;
pub use control::Control;
pub use recorder::{Event, Plan, Recorder};

use crate::core::score::{phase_score, total_score, Thresholds, Verdict};

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passed,
    Warning,
    Failed,
    /// Dry run: the check would run commands or requests that were not performed.
    #[serde(rename = "would_run")]
    WouldRun,
    /// Dry run: a read-only probe of the unchanged service failed.
    #[serde(rename = "would_fail")]
    WouldFail,
}

/// One check inside a phase.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRecord {
    pub name: String,
    pub status: CheckStatus,
    pub duration_ms: u64,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// A score of 0-5 the check returned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Where the script calls `check(...)`: `file:line:col` (the script or module name
    /// as the run knows it), when the engine gives the place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl CheckStatus {
    /// The mark shown before a check's name.
    pub fn mark(self) -> &'static str {
        match self {
            CheckStatus::Passed => "✓",
            CheckStatus::Warning => "⚠",
            CheckStatus::Failed => "✗",
            CheckStatus::WouldRun => "·",
            CheckStatus::WouldFail => "?",
        }
    }
}

impl CheckRecord {
    /// The check's share of a passing result, 0.0 to 1.0.
    fn fraction(&self) -> f64 {
        match (self.status, self.score) {
            (CheckStatus::Failed, _) => 0.0,
            (_, Some(s)) => (s / 5.0).clamp(0.0, 1.0),
            _ => 1.0,
        }
    }
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Passed,
    Failed,
    Skipped,
    Running,
}

/// Options of `phase(name, opts, closure)`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseOptions {
    /// A failure stops the pipeline.
    pub required: bool,
    /// `--skip NAME` (or `--skip-e2e` for end-to-end phases) may skip it.
    pub skippable: bool,
    /// The score of the phase when it is skipped (default 4).
    pub skipped_score: f64,
    /// A fixed score for the phase.
    pub score: Option<f64>,
    /// This phase changes the deployment: a failure from here on calls for a rollback.
    pub changes: bool,
    /// An end-to-end phase (`--skip-e2e`); phases named "E2E" or "end-to-end" are too.
    pub e2e: bool,
}

/// One phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    pub index: usize,
    pub name: String,
    pub required: bool,
    pub skippable: bool,
    pub status: PhaseStatus,
    pub score: f64,
    pub checks: Vec<CheckRecord>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// What failed (an error outside any check, or the failed checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Monitoring data recorded during the phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
    /// What `on(...)` did on each remote host during the phase, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostRecord>,
}

/// One host's part of an `on(...)` in a phase.
#[derive(Debug, Clone, Serialize)]
pub struct HostRecord {
    pub host: String,
    /// `passed`, `failed`, or `stopped` (its batch was given up when another host used
    /// up the failure budget).
    pub status: &'static str,
    /// The batch it was in (1-based).
    pub batch: usize,
    pub duration_ms: u64,
    /// Whether the run changed the host (a command ran on it after a `changes: true` phase
    /// began).
    pub changed: bool,
    /// How the rollback of this host alone went, when it failed within the failure budget
    /// after it had changed: `ok`, `failed`, `declined`, `never` or `missing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A phase the script names, found before it runs (`phase("Name", ...)` with a literal name).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPhase {
    pub name: String,
    /// `Some(true)` when the options are a literal map with `required: true`.
    pub required: Option<bool>,
    pub skippable: Option<bool>,
    /// `Some(true)` when the options are a literal map with `changes: true`.
    pub changes: Option<bool>,
}

/// A request to roll back: why, and in which phase.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackRequest {
    pub reason: String,
    pub phase: Option<String>,
}

/// The pipeline as it runs.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub planned: Vec<PlannedPhase>,
    pub phases: Vec<PhaseRecord>,
    /// A phase is running (phases do not nest).
    pub in_phase: bool,
    pub changes_began: bool,
    /// The required phase whose failure stopped the pipeline.
    pub stopped_by: Option<String>,
    pub rollback_request: Option<RollbackRequest>,
    pub skip: Vec<String>,
    pub skip_e2e: bool,
    /// The run's score thresholds, for phase labels.
    pub thresholds: Thresholds,
}

/// The word for a phase's outcome, in the verdict's vocabulary: `passed`, `WARNING (...)`
/// for a phase that passed with a score under the pass threshold, `FAILED`, `interrupted`,
/// or why it was skipped.
pub fn phase_label(p: &PhaseRecord, t: &Thresholds) -> String {
    match p.status {
        PhaseStatus::Passed if p.score * 20.0 >= t.pass => "passed".into(),
        PhaseStatus::Passed => format!("WARNING (under {:.1}/5)", t.pass / 20.0),
        PhaseStatus::Failed => "FAILED".into(),
        PhaseStatus::Running => "interrupted".into(),
        PhaseStatus::Skipped => p.reason.clone().unwrap_or_else(|| "skipped".into()),
    }
}

/// Returns true for names that mean an end-to-end phase.
pub fn looks_e2e(name: &str) -> bool {
    let n = name.to_lowercase();
    n.contains("e2e") || n.contains("end-to-end") || n.contains("end to end")
}

impl Pipeline {
    /// Returns true when the script has phases (so a score and verdict apply).
    pub fn has_phases(&self) -> bool {
        !self.phases.is_empty()
    }

    /// Returns the number of phases the run will have, as far as is known now.
    pub fn expected_count(&self) -> usize {
        let seen: Vec<&str> = self.phases.iter().map(|p| p.name.as_str()).collect();
        let unseen = self
            .planned
            .iter()
            .filter(|p| !seen.contains(&p.name.as_str()))
            .count();
        self.phases.len() + unseen
    }

    /// Decides whether a phase about to start is skipped, and why.
    pub fn skip_reason(&self, name: &str, opts: &PhaseOptions) -> Result<Option<String>, String> {
        if let Some(stopper) = &self.stopped_by {
            return Ok(Some(format!("skipped because {stopper} failed")));
        }
        let asked = self.skip.iter().any(|s| s.eq_ignore_ascii_case(name));
        let e2e = self.skip_e2e && (opts.e2e || looks_e2e(name));
        if !(asked || e2e) {
            return Ok(None);
        }
        if opts.required {
            return Err(format!(
                "phase \"{name}\" is required and cannot be skipped"
            ));
        }
        if !opts.skippable {
            return Err(format!(
                "phase \"{name}\" is not skippable: mark it `skippable: true` in the script to allow --skip"
            ));
        }
        Ok(Some(if asked {
            "skipped with --skip".to_string()
        } else {
            "skipped with --skip-e2e".to_string()
        }))
    }

    /// Asks for a rollback, naming the phase that is running (if any).
    pub fn request_rollback(&mut self, reason: &str) {
        let phase = if self.in_phase {
            self.phases.last().map(|r| r.name.clone())
        } else {
            None
        };
        self.rollback_request = Some(RollbackRequest {
            reason: reason.to_string(),
            phase,
        });
    }

    /// Adds the phases that never ran because the pipeline stopped, with score 0.
    pub fn close(&mut self) {
        let Some(stopper) = self.stopped_by.clone() else {
            return;
        };
        let planned = self.planned.clone();
        for p in planned {
            if self.phases.iter().any(|r| r.name == p.name) {
                continue;
            }
            let index = self.phases.len() + 1;
            self.phases.push(PhaseRecord {
                index,
                name: p.name.clone(),
                required: p.required.unwrap_or(false),
                skippable: p.skippable.unwrap_or(false),
                status: PhaseStatus::Skipped,
                score: 0.0,
                checks: Vec::new(),
                duration_ms: 0,
                started_at: None,
                error: None,
                reason: Some(format!("skipped because {stopper} failed")),
                metrics: None,
                hosts: Vec::new(),
            });
        }
    }

    /// Returns each phase's score.
    pub fn scores(&self) -> Vec<f64> {
        self.phases.iter().map(|p| p.score).collect()
    }

    /// Returns the total score 0-100 and the verdict.
    pub fn total(&self, thresholds: &Thresholds) -> (f64, Verdict) {
        let total = total_score(&self.scores());
        (total, thresholds.verdict(total))
    }
}

/// Scores a finished phase: a fixed score wins; otherwise 5 × the share of passing checks,
/// where an error outside any check counts as one more failed check.
pub fn score_phase(record: &PhaseRecord, fixed: Option<f64>) -> f64 {
    // Hosts that failed within an `on(...)` failure budget lower the score by their share.
    let failed = record.hosts.iter().filter(|h| h.status == "failed").count();
    if fixed.is_none() && failed > 0 {
        let mut rest = record.clone();
        rest.hosts.clear();
        let share = 1.0 - failed as f64 / record.hosts.len() as f64;
        return (score_phase(&rest, None) * share * 10.0).round() / 10.0;
    }
    if let Some(s) = fixed {
        let s = s.clamp(0.0, 5.0);
        // A score the script gives can lower a failed phase's score, never lift it.
        if record.status == PhaseStatus::Failed {
            return s.min(score_phase(record, None));
        }
        return s;
    }
    let outside_error = record.status == PhaseStatus::Failed
        && !record
            .checks
            .iter()
            .any(|c| c.status == CheckStatus::Failed);
    let total = record.checks.len() + usize::from(outside_error);
    if total == 0 {
        return phase_score(0, 0);
    }
    // `+ 0.0` turns the -0.0 that an empty float sum starts from into 0.0.
    let sum: f64 = record.checks.iter().map(CheckRecord::fraction).sum::<f64>() + 0.0;
    // phase_score works on whole counts; scale the fractional sum the same way.
    ((5.0 * sum / total as f64) * 10.0).round() / 10.0
}

/// The word for a phase in a dry run, which has no scores: what would run and fail.
pub fn dry_phase_label(p: &PhaseRecord) -> String {
    if p.status == PhaseStatus::Skipped {
        return p.reason.clone().unwrap_or_else(|| "skipped".into());
    }
    if p.status == PhaseStatus::Failed {
        return "FAILED (the script itself)".into();
    }
    let count = |s: CheckStatus| p.checks.iter().filter(|c| c.status == s).count();
    let mut parts = Vec::new();
    for (n, what) in [
        (count(CheckStatus::WouldRun), "would run"),
        (
            count(CheckStatus::Passed) + count(CheckStatus::Warning),
            "read-only passed",
        ),
        (count(CheckStatus::WouldFail), "would fail"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if p.error
        .as_deref()
        .is_some_and(|e| e.starts_with("would fail"))
    {
        parts.push("a probe would fail".into());
    }
    if parts.is_empty() {
        "planned".into()
    } else {
        format!("planned: {}", parts.join(", "))
    }
}

/// What a phase's closure returned, without Rhai: the binding converts the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Returned {
    /// `()`: nothing.
    Unit,
    Bool(bool),
    /// An integer or a float.
    Number(f64),
    /// An object map; `Some` when it holds a numeric `phase_score` (a monitor summary).
    Map(Option<f64>),
    /// A result map whose `ok` is false (a non-2xx response, a command with `allow_fail`).
    NotOk,
    /// An array (what an action such as `releases::prune` returned).
    Array,
    /// A string, an array or anything else.
    Other,
}

/// What a phase's returned value means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseValue {
    /// `()`: the phase is scored from its checks.
    FromChecks,
    /// `true`: the phase passes (its checks still decide).
    Pass,
    /// `false`: the phase fails.
    Fail,
    /// A score of 0-5 (a number, or a monitor summary's `phase_score`).
    Score(f64),
}

/// Reads a phase's returned value by the rule: `()` scores from the checks, `true`/`false`
/// pass or fail the phase, a number must be in 0..=5, a monitor summary is scored by its
/// `phase_score`, a result map of an action (`exec`, `http::get`) by its checks unless its
/// `ok` is false; anything else is an error (`shown` is the value as the user wrote it).
pub fn phase_value(shown: &str, v: Returned) -> Result<PhaseValue, String> {
    const RULE: &str = "a phase closure returns () to be scored from its checks, true or false to pass or fail, or a score from 0 to 5";
    match v {
        Returned::Unit => Ok(PhaseValue::FromChecks),
        Returned::Bool(true) => Ok(PhaseValue::Pass),
        Returned::Bool(false) => Ok(PhaseValue::Fail),
        Returned::Number(n) if (0.0..=5.0).contains(&n) => Ok(PhaseValue::Score(n)),
        Returned::Number(n) if n.is_nan() => Err(format!("returned NaN, which is not a score: {RULE}")),
        Returned::Number(n) if (0.0..=100.0).contains(&n) => Err(format!(
            "returned {shown}, outside 0..=5: {RULE} (a 0-100 score such as score::weighted(...) divides by 20)"
        )),
        Returned::Number(_) => Err(format!("returned {shown}, outside 0..=5: {RULE}")),
        Returned::Map(Some(s)) if (0.0..=5.0).contains(&s) => Ok(PhaseValue::Score(s)),
        Returned::Map(Some(s)) => Err(format!(
            "returned a map whose phase_score {s} is outside 0..=5: {RULE}"
        )),
        // The result of the phase's last action (`exec(...)`, `http::get(...)`): it did
        // not throw, so the checks decide.
        Returned::Map(None) => Ok(PhaseValue::FromChecks),
        Returned::NotOk => Ok(PhaseValue::Fail),
        Returned::Array => Ok(PhaseValue::FromChecks),
        Returned::Other => Err(format!("returned {shown}: {RULE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(status: PhaseStatus, checks: &[CheckStatus]) -> PhaseRecord {
        PhaseRecord {
            index: 1,
            name: "p".into(),
            required: false,
            skippable: false,
            status,
            score: 0.0,
            checks: checks
                .iter()
                .map(|s| CheckRecord {
                    name: "c".into(),
                    status: *s,
                    duration_ms: 0,
                    attempts: 1,
                    error: None,
                    warning: None,
                    score: None,
                    location: None,
                })
                .collect(),
            duration_ms: 0,
            started_at: None,
            error: None,
            reason: None,
            metrics: None,
            hosts: Vec::new(),
        }
    }

    #[test]
    fn phase_scores_follow_the_share_of_passing_checks() {
        use CheckStatus::*;
        assert_eq!(score_phase(&phase(PhaseStatus::Passed, &[]), None), 5.0);
        assert_eq!(
            score_phase(&phase(PhaseStatus::Passed, &[Passed, Warning]), None),
            5.0
        );
        assert_eq!(
            score_phase(&phase(PhaseStatus::Failed, &[Passed, Failed]), None),
            2.5
        );
        assert_eq!(
            score_phase(
                &phase(
                    PhaseStatus::Failed,
                    &[Passed, Passed, Passed, Failed, Failed]
                ),
                None
            ),
            3.0
        );
        // An error outside any check counts as one failed check.
        assert_eq!(score_phase(&phase(PhaseStatus::Failed, &[]), None), 0.0);
        assert_eq!(
            score_phase(&phase(PhaseStatus::Failed, &[Passed]), None),
            2.5
        );
        assert_eq!(
            score_phase(&phase(PhaseStatus::Passed, &[Passed]), Some(3.0)),
            3.0
        );
    }

    #[test]
    fn skipping_rules() {
        let mut p = Pipeline {
            skip: vec!["E2E tests".into()],
            ..Pipeline::default()
        };
        let skippable = PhaseOptions {
            skippable: true,
            skipped_score: 4.0,
            ..PhaseOptions::default()
        };
        assert!(p
            .skip_reason("e2e tests", &skippable)
            .expect("ok")
            .is_some());
        assert!(p.skip_reason("Deploy", &skippable).expect("ok").is_none());
        let required = PhaseOptions {
            required: true,
            ..PhaseOptions::default()
        };
        assert!(p.skip_reason("E2E tests", &required).is_err());
        p.skip.clear();
        p.skip_e2e = true;
        assert!(p
            .skip_reason("End-to-end validation", &skippable)
            .expect("ok")
            .is_some());
        p.stopped_by = Some("Deploy".into());
        assert_eq!(
            p.skip_reason("Health", &PhaseOptions::default())
                .expect("ok"),
            Some("skipped because Deploy failed".into())
        );
    }

    #[test]
    fn closing_a_stopped_pipeline_adds_planned_phases_at_zero() {
        let mut p = Pipeline {
            planned: ["A", "B", "C"]
                .iter()
                .map(|n| PlannedPhase {
                    name: n.to_string(),
                    required: None,
                    skippable: None,
                    changes: None,
                })
                .collect(),
            ..Pipeline::default()
        };
        let mut a = phase(PhaseStatus::Failed, &[]);
        a.name = "A".into();
        p.phases.push(a);
        p.stopped_by = Some("A".into());
        p.close();
        assert_eq!(p.phases.len(), 3);
        assert_eq!(
            p.phases[2].reason.as_deref(),
            Some("skipped because A failed")
        );
        assert_eq!(p.expected_count(), 3);
    }

    #[test]
    fn phase_labels_use_the_verdict_vocabulary() {
        let t = Thresholds::default();
        let mut p = phase(PhaseStatus::Passed, &[]);
        p.score = 5.0;
        assert_eq!(phase_label(&p, &t), "passed");
        p.score = 0.5;
        assert_eq!(phase_label(&p, &t), "WARNING (under 4.0/5)");
        p.status = PhaseStatus::Failed;
        assert_eq!(phase_label(&p, &t), "FAILED");
    }

    #[test]
    fn phase_values_follow_the_rule() {
        assert_eq!(
            phase_value("()", Returned::Unit),
            Ok(PhaseValue::FromChecks)
        );
        assert_eq!(
            phase_value("true", Returned::Bool(true)),
            Ok(PhaseValue::Pass)
        );
        assert_eq!(
            phase_value("false", Returned::Bool(false)),
            Ok(PhaseValue::Fail)
        );
        assert_eq!(
            phase_value("3", Returned::Number(3.0)),
            Ok(PhaseValue::Score(3.0))
        );
        assert_eq!(
            phase_value("0", Returned::Number(0.0)),
            Ok(PhaseValue::Score(0.0))
        );
        assert_eq!(
            phase_value("5", Returned::Number(5.0)),
            Ok(PhaseValue::Score(5.0))
        );
        assert_eq!(
            phase_value("#{..}", Returned::Map(Some(4.5))),
            Ok(PhaseValue::Score(4.5))
        );
        for (shown, v) in [
            ("-1", Returned::Number(-1.0)),
            ("7", Returned::Number(7.0)),
            ("NaN", Returned::Number(f64::NAN)),
            ("86.0", Returned::Number(86.0)),
            ("\"fine\"", Returned::Other),
            ("#{phase_score: 9}", Returned::Map(Some(9.0))),
        ] {
            let e = phase_value(shown, v).expect_err(shown);
            assert!(e.contains("0 to 5") || e.contains("0..=5"), "{e}");
        }
        assert_eq!(
            phase_value("#{code: 0}", Returned::Map(None)),
            Ok(PhaseValue::FromChecks)
        );
        assert_eq!(
            phase_value("#{ok: false}", Returned::NotOk),
            Ok(PhaseValue::Fail)
        );
        assert!(phase_value("86.0", Returned::Number(86.0))
            .expect_err("out of range")
            .contains("divides by 20"));
    }

    #[test]
    fn a_returned_score_never_lifts_a_failed_phase() {
        let mut p = phase(
            PhaseStatus::Failed,
            &[CheckStatus::Passed, CheckStatus::Failed],
        );
        assert_eq!(score_phase(&p, Some(5.0)), 2.5);
        assert_eq!(score_phase(&p, Some(1.0)), 1.0);
        p.status = PhaseStatus::Passed;
        p.checks.pop();
        assert_eq!(score_phase(&p, Some(1.0)), 1.0);
    }

    #[test]
    fn hosts_that_failed_within_the_budget_lower_the_score_by_their_share() {
        let host = |status: &'static str| HostRecord {
            host: "h".into(),
            status,
            batch: 1,
            duration_ms: 0,
            changed: false,
            rollback: None,
            error: None,
        };
        let mut p = phase(PhaseStatus::Passed, &[CheckStatus::Passed]);
        p.hosts = vec![
            host("passed"),
            host("failed"),
            host("passed"),
            host("passed"),
        ];
        assert_eq!(score_phase(&p, None), 3.8);
        p.hosts = vec![host("passed"); 3];
        assert_eq!(score_phase(&p, None), 5.0);
        p.hosts = vec![host("failed")];
        assert_eq!(score_phase(&p, None), 0.0);
    }
}

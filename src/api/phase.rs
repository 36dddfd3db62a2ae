//! `phase`, `check`, `trigger_rollback` and `score::weighted`: the pipeline as scripts say it.

use std::time::Instant;

use rhai::plugin::*;
use rhai::{FnPtr, Map};

use super::error::{
    control, control_of, is_script_bug, is_terminated, message_of, state, throw, Error,
};
use super::opts::Opts;
use crate::core::duration::format_duration;
use crate::host::present;
use crate::host::state::HostState;
use crate::pipeline::{
    score_phase, CheckRecord, CheckStatus, Control, Event, PhaseOptions, PhaseRecord, PhaseStatus,
    PhaseValue, Returned,
};

pub(crate) const PHASE_OPTS: &[&str] = &[
    "required",
    "skippable",
    "skipped_score",
    "score",
    "changes",
    "e2e",
];

fn score_value(v: &Dynamic) -> Option<f64> {
    super::opts::number(v).filter(|n| (0.0..=5.0).contains(n))
}

/// Converts a phase closure's value for [`crate::pipeline::phase_value`].
fn value_of(v: &Dynamic) -> Returned {
    if v.is_unit() {
        Returned::Unit
    } else if let Ok(b) = v.as_bool() {
        Returned::Bool(b)
    } else if let Ok(i) = v.as_int() {
        Returned::Number(i as f64)
    } else if let Ok(f) = v.as_float() {
        Returned::Number(f)
    } else if v.is_array() {
        Returned::Array
    } else if let Some(m) = v.read_lock::<Map>() {
        match m.get("phase_score") {
            Some(s) => Returned::Map(super::opts::number(s).or(Some(f64::NAN))),
            None if m.get("ok").and_then(|ok| ok.as_bool().ok()) == Some(false) => Returned::NotOk,
            None => Returned::Map(None),
        }
    } else {
        Returned::Other
    }
}

/// Names a failing value: `false`, or a result whose `ok` is false.
fn describe_failure(shown: &str) -> String {
    if shown == "false" {
        "false".into()
    } else {
        format!("a result with ok: false ({shown})")
    }
}

/// A value as the user would write it, clipped, with its type for strings and arrays.
fn describe(v: &Dynamic) -> String {
    let mut shown = if v.is_string() {
        format!("{v:?} (a string)")
    } else if v.is_array() {
        format!("{v:?} (an array)")
    } else {
        format!("{v:?}")
    };
    if shown.chars().count() > 80 {
        shown = shown.chars().take(77).collect::<String>() + "...";
    }
    shown
}

fn options(map: Map) -> Result<PhaseOptions, Error> {
    let o = Opts::new("phase", map, PHASE_OPTS)?;
    let score = |key: &str| -> Result<Option<f64>, Error> {
        match o.float(key)? {
            Some(s) if !(0.0..=5.0).contains(&s) => Err(throw(
                "usage",
                format!("phase(): `{key}` must be between 0 and 5, got {s}"),
            )),
            other => Ok(other),
        }
    };
    Ok(PhaseOptions {
        required: o.boolean("required")?.unwrap_or(false),
        skippable: o.boolean("skippable")?.unwrap_or(false),
        skipped_score: score("skipped_score")?.unwrap_or(4.0),
        score: score("score")?,
        changes: o.boolean("changes")?.unwrap_or(false),
        e2e: o.boolean("e2e")?.unwrap_or(false),
    })
}

fn banner(st: &HostState, index: usize, total: usize, name: &str, note: &str) {
    // In GitHub Actions each phase is a collapsed group (closed when the phase ends, or by
    // the next group or the end of the run).
    st.console
        .begin_group(&format!("[{index}/{total}] {name}{note}"));
    st.console
        .show(&present::phase_banner(index, total, name, note));
}

fn phase_impl(
    ctx: &NativeCallContext,
    name: &str,
    opts: PhaseOptions,
    body: FnPtr,
) -> Result<bool, Error> {
    let st = state(ctx)?;
    let (index, total, skip) = st.pipeline.read(|p| {
        if p.in_phase {
            return Err(throw("usage", format!("phase(\"{name}\") is inside another phase: phases do not nest; use check() inside a phase")));
        }
        if p.phases.iter().any(|r| r.name == name) {
            return Err(throw(
                "usage",
                format!("phase \"{name}\" ran already: give each phase its own name"),
            ));
        }
        let skip = p.skip_reason(name, &opts).map_err(|m| throw("usage", m))?;
        let planned = p.planned.iter().any(|x| x.name == name);
        let total = p.expected_count() + usize::from(!planned);
        Ok((p.phases.len() + 1, total, skip))
    })?;
    let mut record = PhaseRecord {
        index,
        name: name.to_string(),
        required: opts.required,
        skippable: opts.skippable,
        status: PhaseStatus::Running,
        score: 0.0,
        checks: Vec::new(),
        duration_ms: 0,
        started_at: Some(crate::core::time::rfc3339(std::time::SystemTime::now())),
        error: None,
        reason: None,
        metrics: None,
        hosts: Vec::new(),
    };
    if let Some(reason) = skip {
        let stopped = reason.starts_with("skipped because");
        record.status = PhaseStatus::Skipped;
        record.score = if stopped { 0.0 } else { opts.skipped_score };
        banner(&st, index, total, name, &format!(": {reason}"));
        st.console.end_group();
        record.reason = Some(reason);
        record.started_at = None;
        st.pipeline.emit(Event::PhaseSkipped { record });
        return Ok(false);
    }
    let note = if opts.required { " (required)" } else { "" };
    banner(&st, index, total, name, note);
    st.pipeline.emit(Event::PhaseStarted {
        record,
        changes: opts.changes,
    });
    let started = Instant::now();
    let result = body.call_within_context::<Dynamic>(ctx, ());
    // The phase's record as its checks and hosts left it; it ends below.
    let (rollback_asked, thresholds, mut rec) = st.pipeline.read(|p| {
        (
            p.rollback_request.is_some(),
            p.thresholds,
            p.phases.last().cloned(),
        )
    });
    let Some(rec) = rec.as_mut() else {
        return Err(throw("internal", "phase record missing"));
    };
    rec.duration_ms = started.elapsed().as_millis() as u64;
    let mut returned = None;
    let mut interrupted = None;
    let failed_checks: Vec<String> = rec
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .map(|c| c.name.clone())
        .collect();
    let v_shown = result.as_ref().map(describe).unwrap_or_default();
    match result.map(|v| crate::pipeline::phase_value(&describe(&v), value_of(&v))) {
        Ok(Ok(value)) => {
            let own_failure = match value {
                // In a dry run, false usually comes from a probe of the unchanged service.
                PhaseValue::Fail if st.dry_run() => {
                    if !rec
                        .checks
                        .iter()
                        .any(|c| c.status == CheckStatus::WouldFail)
                    {
                        rec.error = Some("would fail: the phase returned false".into());
                    }
                    None
                }
                // `false` from a failed check that ends the body (Rhai returns the last
                // statement's value, `;` or not): the failed checks say why, not "false".
                PhaseValue::Fail if v_shown == "false" && !failed_checks.is_empty() => None,
                PhaseValue::Fail => {
                    Some(format!("the phase returned {}", describe_failure(&v_shown)))
                }
                _ => None,
            };
            returned = match value {
                PhaseValue::Score(s) => Some(s),
                _ => None,
            };
            if failed_checks.is_empty() && own_failure.is_none() {
                rec.status = PhaseStatus::Passed;
            } else {
                rec.status = PhaseStatus::Failed;
                let mut why = Vec::new();
                if !failed_checks.is_empty() {
                    why.push(format!("failed checks: {}", failed_checks.join(", ")));
                }
                if let Some(own) = &own_failure {
                    st.console.error(&format!("phase \"{name}\" failed: {own}"));
                }
                why.extend(own_failure);
                rec.error = Some(why.join("; "));
            }
        }
        Ok(Err(msg)) => {
            let msg = format!("phase \"{name}\" {msg}");
            st.console.error(&msg);
            rec.status = PhaseStatus::Failed;
            rec.error = Some(msg);
        }
        Err(e)
            if st.dry_run()
                && !is_terminated(&e)
                && !is_script_bug(&e)
                && control_of(&e) != Some(Control::Stopped) =>
        {
            // A read-only probe of the unchanged service failed: the plan goes on.
            let msg = format!("would fail: {}", message_of(&e));
            st.console.warn(&format!(
                "{msg}\n(the rest of phase \"{name}\" is not planned: a real run would stop here)"
            ));
            rec.status = PhaseStatus::Passed;
            rec.error = Some(msg);
        }
        Err(e) => {
            rec.status = PhaseStatus::Failed;
            rec.error = Some(message_of(&e));
            if is_terminated(&e) {
                interrupted = Some(e);
            } else if control_of(&e) != Some(Control::RollbackRequested) {
                let msg = message_of(&e);
                let mut lines = msg.lines();
                st.console.error(lines.next().unwrap_or_default());
                for more in lines {
                    st.console.info(&format!("    {more}"));
                }
            }
        }
    }
    rec.score = score_phase(rec, opts.score.or(returned));
    let (status, score, rec_name) = (rec.status, rec.score, rec.name.clone());
    let took = format_duration(started.elapsed());
    let stopped =
        interrupted.is_none() && status == PhaseStatus::Failed && (opts.required || rollback_asked);
    let ended = rec.clone();
    if let Some(e) = interrupted {
        st.pipeline.emit(Event::PhaseEnded {
            record: ended,
            stopped,
        });
        return Err(e);
    }
    let label = crate::pipeline::phase_label(rec, &thresholds);
    let line = if st.dry_run() {
        format!(
            "  dry run: {} ({took})",
            crate::pipeline::dry_phase_label(rec)
        )
    } else {
        format!("  phase score {score:.1}/5 ({label}, {took})")
    };
    st.console.show(&present::phase_end(status, &label, line));
    st.console.end_group();
    st.pipeline.emit(Event::PhaseEnded {
        record: ended,
        stopped,
    });
    if stopped {
        return Err(control(
            Control::Stopped,
            format!("phase \"{rec_name}\" failed; the pipeline stopped"),
        ));
    }
    Ok(status == PhaseStatus::Passed)
}

fn check_impl(ctx: &NativeCallContext, name: &str, body: FnPtr) -> Result<bool, Error> {
    let st = state(ctx)?;
    let skipped_before = st.dry_skipped();
    let retries_before = st.retries.lock().map(|r| r.len()).unwrap_or(0);
    let started = Instant::now();
    let result = body.call_within_context::<Dynamic>(ctx, ());
    let attempts = 1 + st
        .retries
        .lock()
        .map(|r| r.len().saturating_sub(retries_before))
        .unwrap_or(0) as u32;
    let mut record = CheckRecord {
        name: name.to_string(),
        status: CheckStatus::Passed,
        duration_ms: started.elapsed().as_millis() as u64,
        attempts,
        error: None,
        warning: None,
        score: None,
        location: ctx.call_source().and_then(|source| {
            crate::host::diagnostic::Location::of(source, ctx.call_position())
                .map(|l| l.to_string())
        }),
    };
    let mut script_bug = false;
    match result {
        Err(e) if is_terminated(&e) || control_of(&e) == Some(Control::RollbackRequested) => {
            return Err(e)
        }
        Err(e) => {
            record.status = CheckStatus::Failed;
            record.error = Some(message_of(&e));
            script_bug = is_script_bug(&e);
        }
        Ok(v) => {
            if v.as_bool() == Ok(false) {
                record.status = CheckStatus::Failed;
                record.error = Some("the check returned false".into());
            } else if let Returned::NotOk = value_of(&v) {
                // `check("up", || http::get(url))` on a 503: the request did not throw,
                // but its result says it failed.
                record.status = CheckStatus::Failed;
                record.error = Some(format!(
                    "the check returned a result with ok: false ({})",
                    describe(&v)
                ));
            } else if let Some(m) = v.read_lock::<Map>() {
                if let Some(w) = m.get("warning").filter(|w| !w.is_unit()) {
                    record.status = CheckStatus::Warning;
                    record.warning = Some(w.to_string());
                }
                // A monitor summary carries its 0-5 `phase_score` beside a 0-100 `score`.
                if let Some(sv) = m.get("phase_score").or_else(|| m.get("score")) {
                    match score_value(sv) {
                        Some(n) => record.score = Some(n),
                        None => {
                            record.status = CheckStatus::Failed;
                            script_bug = true;
                            record.error = Some(format!(
                                "the check returned score {sv}, which is not a score from 0 to 5"
                            ));
                        }
                    }
                }
            } else if let Returned::Number(n) = value_of(&v) {
                if (0.0..=5.0).contains(&n) {
                    record.score = Some(n);
                } else {
                    // A gate that returns a figure (a latency, a count) instead of a
                    // comparison must not pass by accident.
                    record.status = CheckStatus::Failed;
                    script_bug = true;
                    record.error = Some(format!(
                        "the check returned {}, which is not a score from 0 to 5: return true or false (e.g. `p95 < 500`), or a score from 0 to 5",
                        describe(&v)
                    ));
                }
            }
        }
    }
    if st.dry_run() {
        // A dry run is a plan: a check whose commands were skipped would run; one whose
        // read-only probe of the unchanged service failed would fail. Only a fault of the
        // script itself stays a failure.
        if record.status == CheckStatus::Failed && !script_bug {
            record.status = CheckStatus::WouldFail;
        } else if record.status != CheckStatus::Failed && st.dry_skipped() > skipped_before {
            record.status = CheckStatus::WouldRun;
        }
    }
    let detail = {
        let mut d = format_duration(started.elapsed());
        if attempts > 1 {
            d.push_str(&format!(", {attempts} attempts"));
        }
        if let Some(s) = record.score {
            d.push_str(&format!(", score {s:.1}/5"));
        }
        d
    };
    let detail = match record.status {
        CheckStatus::WouldRun => "would run".to_string(),
        CheckStatus::WouldFail => format!("would fail, read-only, {detail}"),
        CheckStatus::Passed if st.dry_run() => format!("read-only, {detail}"),
        _ => detail,
    };
    st.console
        .show(&present::check(record.status, name, &detail));
    // Outside a phase a failed check ends the script: its error is shown once, by the
    // run's error with the script's place, not here as well.
    let thrown = record.status == CheckStatus::Failed && !st.pipeline.read(|p| p.in_phase);
    let details = record
        .error
        .iter()
        .filter(|_| !thrown)
        .chain(record.warning.iter());
    for extra in details {
        // The end of a long error names the cause (the program's own message): keep it.
        let shown = crate::core::clip::head_and_tail(extra, 3, 9, 240);
        let whole = extra.lines().count();
        for l in &shown {
            st.console.line(&format!("      {l}"), None);
        }
        if shown.len() != whole || extra.lines().any(|l| l.chars().count() > 240) {
            st.console.log_only("      whole message:");
            for l in extra.lines() {
                st.console.log_only(&format!("      {l}"));
            }
        }
    }
    let passed = !matches!(record.status, CheckStatus::Failed | CheckStatus::WouldFail);
    let (status, error) = (record.status, record.error.clone());
    // Outside a phase the check is not kept, and a failure ends the script.
    let kept = st.pipeline.emit(Event::CheckResult { check: record });
    if kept || passed || status == CheckStatus::WouldFail {
        Ok(passed)
    } else {
        Err(throw(
            "check",
            format!("check \"{name}\" failed: {}", error.unwrap_or_default()),
        ))
    }
}

#[export_module]
pub mod phase_api {
    use super::*;

    /// Runs a phase of the deployment: a banner, its checks, and a score of 0-5 (the
    /// share of its checks that passed, or the number the closure returns). A failure in a
    /// phase does not stop the pipeline unless the phase is `required`.
    ///
    /// ```rhai
    /// phase("Health validation", || {
    ///     check("Worker health", || http::wait_healthy(url + "/health"));
    /// });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn phase(ctx: NativeCallContext, name: &str, body: FnPtr) -> Result<bool, Error> {
        phase_impl(
            &ctx,
            name,
            PhaseOptions {
                skipped_score: 4.0,
                ..PhaseOptions::default()
            },
            body,
        )
    }

    /// Runs a phase with options: `required` (a failure stops the pipeline and, after
    /// changes began, rolls back), `changes` (this phase changes the deployment),
    /// `skippable` and `skipped_score` (default 4) for `--skip NAME`, `e2e` (skipped by
    /// `--skip-e2e`), `score` (a fixed 0-5 score). Returns true when the phase passed.
    ///
    /// ```rhai
    /// phase("Pre-deployment validation", #{ required: true }, || {
    ///     check("TypeScript compiles", || sh("pnpm tsc --noEmit"));
    /// });
    /// phase("Build & deploy", #{ required: true, changes: true }, || {
    ///     retry(#{ backoff: ["0s", "30s", "60s"] }, || exec(["wrangler", "deploy"]));
    /// });
    /// phase("E2E", #{ skippable: true, skipped_score: 4 }, || { sh("pnpm e2e"); });
    /// ```
    #[rhai_fn(name = "phase", return_raw)]
    pub fn phase_with(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
        body: FnPtr,
    ) -> Result<bool, Error> {
        phase_impl(&ctx, name, super::options(options)?, body)
    }

    /// Runs a check: it passes when the closure returns without throwing. A closure may
    /// return `false` (fails), `#{ warning: "..." }` (passes with a warning) or a score
    /// 0-5. Inside a phase a failed check is recorded and the phase goes on; outside a
    /// phase a failed check throws. Returns true when it passed.
    ///
    /// ```rhai
    /// check("Security headers", || checks::security_headers(url));
    /// check("P95 under 500 ms", || sample(url, #{ requests: 50 }).p95_ms < 500);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn check(ctx: NativeCallContext, name: &str, body: FnPtr) -> Result<bool, Error> {
        check_impl(&ctx, name, body)
    }

    /// Stops the pipeline and rolls back at once, with a reason for the report. (Your own
    /// `fn rollback(ctx)` is what runs; this asks for it.)
    ///
    /// ```rhai
    /// if http::get(url + "/health").status >= 500 { trigger_rollback("health endpoint failing"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn trigger_rollback(ctx: NativeCallContext, reason: &str) -> Result<(), Error> {
        let st = state(&ctx)?;
        if st.dry_run() {
            st.would(&format!("stop and roll back: {reason}"));
            return Ok(());
        }
        st.pipeline.emit(Event::RollbackRequested {
            reason: reason.to_string(),
        });
        Err(control(
            Control::RollbackRequested,
            format!("rollback requested: {reason}"),
        ))
    }
}

#[export_module]
pub mod score_api {
    use super::*;

    /// Combines 0-100 scores by weight (normalised by their sum); the usual weights are
    /// availability 0.4, performance 0.4, stability 0.2.
    ///
    /// ```rhai
    /// let s = score::weighted(#{ availability: 100, performance: 80, stability: 90 },
    ///                         #{ availability: 0.4, performance: 0.4, stability: 0.2 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn weighted(parts: Map, weights: Map) -> Result<f64, Error> {
        let conv = |m: &Map, what: &str| -> Result<Vec<(String, f64)>, Error> {
            m.iter()
                .map(|(k, v)| {
                    super::super::opts::number(v)
                        .map(|n| (k.to_string(), n))
                        .ok_or_else(|| {
                            throw(
                                "usage",
                                format!(
                                    "score::weighted(): {what} `{k}` must be a number, got {v}"
                                ),
                            )
                        })
                })
                .collect()
        };
        crate::core::score::weighted(&conv(&parts, "part")?, &conv(&weights, "weight")?)
            .map_err(|e| throw("usage", format!("score::weighted(): {e}")))
    }

    /// Combines availability, performance and stability scores (0-100) with the usual
    /// weights 40 % / 40 % / 20 %.
    ///
    /// ```rhai
    /// let s = score::weighted(#{ availability: 100, performance: 80, stability: 90 });
    /// ```
    #[rhai_fn(name = "weighted", return_raw)]
    pub fn weighted_default(parts: Map) -> Result<f64, Error> {
        let mut w = Map::new();
        for (k, v) in crate::core::score::DEFAULT_WEIGHTS {
            w.insert((*k).into(), Dynamic::from(*v));
        }
        weighted(parts, w)
    }
}

//! The monitor as a state machine: a plan of ticks, then one [`Monitor::tick`] per sample
//! (tick in, [`MonitorTick`] out: level change, breaches, series point, whether to roll
//! back) and a [`MonitorSummary`] at the end. No clock, no I/O, no styling: the caller
//! measures, sleeps, calls hooks and renders (`api::metrics`, `metrics::console`).
//!
//! Rules on top of [`AlertState`]:
//! - the warning limits of each tick are given with the tick (a script may change them);
//! - critical limits always include a failure limit on `error_rate`
//!   ([`Thresholds::with_failure_limit`]), so a target that does not answer reaches critical;
//! - a tick that broke only a critical limit is not "within the warning thresholds" for the
//!   score;
//! - at `critical`, with `rollback_on_critical`, the tick asks for a rollback and the monitor
//!   is over ([`Stopped::Critical`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::core::alert::{AlertState, Level, ScoreAccumulator, TickRecord};
use crate::core::stats::SampleStats;
use crate::core::thresholds::{Breach, Metric, Thresholds};
use crate::core::transport::TransportKind;

/// The default time a monitor watches.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// The default time between ticks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// A monitor's options that make no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    /// `duration` or `interval` is zero.
    #[error("monitor(): duration and interval must be more than 0s")]
    ZeroDuration,
}

/// When the ticks fall: `ticks` ticks, tick *i* due at `i × interval` after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorPlan {
    /// How long the monitor watches.
    pub total: Duration,
    /// Time between the starts of two ticks.
    pub interval: Duration,
    /// Number of ticks: `total / interval` rounded up, at least 1.
    pub ticks: u64,
    /// In a dry run, the duration asked for when it was cut to one tick.
    pub cut_from: Option<Duration>,
}

impl MonitorPlan {
    /// Plans a monitor of `total` with a tick every `interval`. A dry run takes one tick of
    /// the unchanged service instead of watching it for longer than one interval.
    pub fn new(
        total: Duration,
        interval: Duration,
        dry_run: bool,
    ) -> Result<MonitorPlan, MonitorError> {
        if total.is_zero() || interval.is_zero() {
            return Err(MonitorError::ZeroDuration);
        }
        let (total, cut_from) = if dry_run && total > interval {
            (interval, Some(total))
        } else {
            (total, None)
        };
        let ticks = (total.as_secs_f64() / interval.as_secs_f64())
            .ceil()
            .max(1.0) as u64;
        Ok(MonitorPlan {
            total,
            interval,
            ticks,
            cut_from,
        })
    }

    /// Returns when tick `index` (0-based) is due, as time since the monitor started.
    pub fn due(&self, index: u64) -> Duration {
        self.interval.mul_f64(index as f64)
    }
}

/// Why a monitor stopped; reports show it as `stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stopped {
    /// Every planned tick ran.
    Completed,
    /// Ctrl-C, `--timeout` or a reload stopped it.
    Interrupted,
    /// Critical was reached with `rollback_on_critical`.
    Critical,
    /// The target closure asked for a rollback (`trigger_rollback`).
    Rollback,
}

impl Stopped {
    /// Returns the name reports use: `completed`, `interrupted`, `critical`, `rollback`.
    #[cfg(test)]
    pub fn as_str(self) -> &'static str {
        match self {
            Stopped::Completed => "completed",
            Stopped::Interrupted => "interrupted",
            Stopped::Critical => "critical",
            Stopped::Rollback => "rollback",
        }
    }
}

/// One point of the monitor's series (report.json `metrics.monitor.ticks[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TickPoint {
    /// When the tick was judged, ms since the start.
    pub t_ms: u64,
    /// Requests in the tick's sample.
    pub count: u64,
    /// Median latency of successful responses.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Share of requests without a successful answer.
    pub error_rate: f64,
    /// Share of 5xx answers.
    pub rate_5xx: f64,
    /// Requests per second.
    pub rps: f64,
    /// Level after the tick, 0-3.
    pub level: u8,
    /// The limits broken, critical first, each marked `(critical limit)` or `(warning limit)`.
    pub breaches: Vec<String>,
    /// The warning limits the tick was judged against, by metric name (`p95_ms`,
    /// `error_rate`, ...): the HTML report draws them; they may change from tick to tick
    /// when a function gives them.
    pub warning: BTreeMap<&'static str, f64>,
    /// The critical limits the tick was judged against, with the implicit `error_rate`.
    pub critical: BTreeMap<&'static str, f64>,
}

/// A change of level (report.json `metrics.monitor.alerts[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertChange {
    /// When, ms since the start.
    pub t_ms: u64,
    /// Level before, 0-3.
    pub from: u8,
    /// Level after, 0-3.
    pub level: u8,
    /// Why the level is what it is.
    pub reason: String,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorTick {
    /// The tick's number, from 1.
    pub number: u64,
    /// The number of planned ticks.
    pub of: u64,
    /// The tick's sample.
    pub stats: SampleStats,
    /// Level after the tick.
    pub level: Level,
    /// Level before the tick.
    pub previous_level: Level,
    /// Why the level is what it is (with the breaches).
    pub reason: String,
    /// The limits broken, as in [`TickPoint::breaches`].
    pub breaches: Vec<String>,
    /// The change of level, when there was one (hooks are called for it).
    pub change: Option<AlertChange>,
    /// The reason of the rollback to request, when the tick reached critical with
    /// `rollback_on_critical`; the monitor is then over.
    pub rollback: Option<String>,
}

impl MonitorTick {
    /// Returns true when the level went up (an escalation), false when it went down or stayed.
    pub fn escalated(&self) -> bool {
        self.level > self.previous_level
    }
}

/// The result of a monitor: what report.json keeps and the script gets back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorSummary {
    /// The URL, or `closure NAME`.
    pub target: String,
    /// One point a tick.
    pub ticks: Vec<TickPoint>,
    /// One entry a change of level.
    pub alerts: Vec<AlertChange>,
    /// Highest level reached, 0-3.
    pub max_level: u8,
    /// Its name.
    pub max_level_name: &'static str,
    /// Share of requests ok, 0-100.
    pub availability: f64,
    /// Share of ticks that broke no limit, 0-100.
    pub performance: f64,
    /// 100 − 25 per level reached.
    pub stability: f64,
    /// 40/40/20 weighted score, 0-100.
    pub score: f64,
    /// `score` on 0-5.
    pub phase_score: f64,
    /// How long the monitor ran, ms.
    pub duration_ms: u64,
    /// Why it stopped.
    pub stopped: Stopped,
}

/// A monitor's fixed settings.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The ticks.
    pub plan: MonitorPlan,
    /// Critical limits as the script gave them (the failure limit is added per tick).
    pub critical: Thresholds,
    /// `critical.sustained`, or the top-level `sustained`.
    pub sustained: Option<Duration>,
    /// True when the warning limits are the built-in default (any failed request), so that
    /// they do not raise the implicit critical `error_rate`.
    pub default_warning: bool,
    /// Request a rollback at critical.
    pub rollback_on_critical: bool,
}

/// The warning limits when a script names none: any failed request is worth a warning.
pub fn default_warning() -> Thresholds {
    Thresholds::default().with_default(Metric::ErrorRate, 0.0)
}

/// A running monitor: feed it one [`Monitor::tick`] per sample, then take its
/// [`Monitor::summary`].
#[derive(Debug, Clone)]
pub struct Monitor {
    config: MonitorConfig,
    target: String,
    alert: AlertState,
    score: ScoreAccumulator,
    series: Vec<TickPoint>,
    alerts: Vec<AlertChange>,
    max_level: Level,
    done: u64,
}

impl Monitor {
    /// Starts a monitor of `target` (a URL or `closure NAME`).
    pub fn new(target: impl Into<String>, config: MonitorConfig) -> Monitor {
        Monitor {
            alert: AlertState::new(config.sustained),
            config,
            target: target.into(),
            score: ScoreAccumulator::default(),
            series: Vec::new(),
            alerts: Vec::new(),
            max_level: Level::Ok,
            done: 0,
        }
    }

    /// Returns the plan.
    pub fn plan(&self) -> &MonitorPlan {
        &self.config.plan
    }

    /// Returns the target.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Returns the current alert level (after the last tick judged).
    pub fn level(&self) -> Level {
        self.alert.level()
    }

    /// Judges one tick's sample, taken `at` after the start, against this tick's warning
    /// limits.
    pub fn tick(&mut self, at: Duration, stats: SampleStats, warning: &Thresholds) -> MonitorTick {
        let user_warning = (!self.config.default_warning).then_some(warning);
        let critical = self.config.critical.with_failure_limit(user_warning);
        let warn_breaches: Vec<Breach> = warning.breaches(&stats);
        let crit_breaches: Vec<Breach> = critical.breaches(&stats);
        let outcome = self.alert.tick(at, &warn_breaches, &crit_breaches);
        // A tick that broke only a critical limit is not "within the warning thresholds".
        let any_breach: Vec<Breach> = warn_breaches
            .iter()
            .chain(crit_breaches.iter())
            .copied()
            .collect();
        self.score
            .add(&TickRecord::new(&stats, &any_breach, outcome.level));
        self.max_level = self.max_level.max(outcome.level);
        let breaches: Vec<String> = crit_breaches
            .iter()
            .map(|b| format!("{b} (critical limit)"))
            .chain(warn_breaches.iter().map(|b| format!("{b} (warning limit)")))
            .collect();
        let t_ms = at.as_millis() as u64;
        self.series.push(TickPoint {
            t_ms,
            count: stats.count,
            p50_ms: stats.p50_ms,
            p95_ms: stats.p95_ms,
            p99_ms: stats.p99_ms,
            error_rate: stats.error_rate,
            rate_5xx: stats.rate_5xx,
            rps: stats.rps,
            level: outcome.level.as_u8(),
            breaches: breaches.clone(),
            warning: warning.named(),
            critical: critical.named(),
        });
        let change = outcome.changed.then(|| AlertChange {
            t_ms,
            from: outcome.previous_level.as_u8(),
            level: outcome.level.as_u8(),
            reason: outcome.reason.clone(),
        });
        if let Some(c) = &change {
            self.alerts.push(c.clone());
        }
        let rollback = (outcome.level.rollback_recommended() && self.config.rollback_on_critical)
            .then(|| format!("monitoring reached critical: {}", outcome.reason));
        self.done += 1;
        MonitorTick {
            number: self.done,
            of: self.config.plan.ticks,
            stats,
            level: outcome.level,
            previous_level: outcome.previous_level,
            reason: outcome.reason,
            breaches,
            change,
            rollback,
        }
    }

    /// Returns the summary of the ticks so far; `elapsed` is how long the monitor ran.
    pub fn summary(&self, elapsed: Duration, stopped: Stopped) -> MonitorSummary {
        let score = self.score.score();
        MonitorSummary {
            target: self.target.clone(),
            ticks: self.series.clone(),
            alerts: self.alerts.clone(),
            max_level: self.max_level.as_u8(),
            max_level_name: self.max_level.name(),
            availability: score.availability,
            performance: score.performance,
            stability: score.stability,
            score: score.weighted,
            phase_score: score.phase_score,
            duration_ms: elapsed.as_millis() as u64,
            stopped,
        }
    }
}

/// The statistics of a check that answered `ok` (true: healthy) after `took`: one request;
/// a failed check has no latency to speak of (unknown, like a request with no answer).
pub fn check_stats(ok: bool, took: Duration) -> SampleStats {
    let mut s = SampleStats::empty();
    s.duration_ms = took.as_secs_f64() * 1000.0;
    s.count = 1;
    s.ok = u64::from(ok);
    s.error_rate = if ok { 0.0 } else { 1.0 };
    let latency = ok.then_some(s.duration_ms);
    s.p50_ms = latency;
    s.p95_ms = latency;
    s.p99_ms = latency;
    s
}

/// The statistics of a check that failed with an error after `took`: one request, one
/// error of kind `other`.
pub fn failed_stats(took: Duration) -> SampleStats {
    let mut s = check_stats(false, took);
    s.errors = 1;
    s.error_kinds
        .insert(TransportKind::Other.as_str().into(), 1);
    s
}

/// The statistics of a sample-like map a check returned, read through `get` (a missing
/// key is `None`). A missing latency stays unknown (it breaches latency limits); a missing
/// percentile falls back on the next lower one given; without `error_rate`, every request
/// that was not ok failed.
pub fn figures_stats(get: impl Fn(&str) -> Option<f64>, took: Duration) -> SampleStats {
    let mut s = SampleStats::empty();
    s.duration_ms = took.as_secs_f64() * 1000.0;
    s.count = get("count").unwrap_or(1.0) as u64;
    s.ok = get("ok").unwrap_or(s.count as f64) as u64;
    s.errors = get("errors").unwrap_or(0.0) as u64;
    let not_ok = s.count.saturating_sub(s.ok) as f64;
    s.error_rate = get("error_rate").unwrap_or(if s.count == 0 {
        0.0
    } else {
        not_ok / s.count as f64
    });
    s.rate_5xx = get("rate_5xx").unwrap_or(0.0);
    s.p50_ms = get("p50_ms");
    s.p90_ms = get("p90_ms").or(s.p50_ms);
    s.p95_ms = get("p95_ms").or(s.p90_ms);
    s.p99_ms = get("p99_ms").or(s.p95_ms);
    s.max_ms = get("max_ms").or(s.p99_ms);
    s.rps = get("rps").unwrap_or(0.0);
    s
}

/// Samples for tests of the monitor and its console lines.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::core::stats::SampleStats;

    /// Ten requests, all answered fast.
    pub(crate) fn healthy() -> SampleStats {
        let mut st = SampleStats::empty();
        st.count = 10;
        st.ok = 10;
        st.p50_ms = Some(20.0);
        st.p95_ms = Some(40.0);
        st.p99_ms = Some(50.0);
        st.rps = 100.0;
        st
    }

    /// Ten requests, every one refused: no response, no latency, no 5xx.
    pub(crate) fn down() -> SampleStats {
        let mut st = SampleStats::empty();
        st.count = 10;
        st.errors = 10;
        st.error_rate = 1.0;
        st.error_kinds.insert("connect".into(), 10);
        st
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{down, healthy};
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn limits(pairs: &[(&str, f64)]) -> Thresholds {
        Thresholds::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), *v))).expect("limits")
    }

    fn slow() -> SampleStats {
        let mut st = healthy();
        st.p95_ms = Some(800.0);
        st
    }

    fn config(ticks: u64, rollback: bool) -> MonitorConfig {
        MonitorConfig {
            plan: MonitorPlan::new(s(10 * ticks), s(10), false).expect("plan"),
            critical: Thresholds::default(),
            sustained: None,
            default_warning: true,
            rollback_on_critical: rollback,
        }
    }

    #[test]
    fn plans_ticks_and_cuts_a_dry_run_to_one() {
        let p = MonitorPlan::new(s(60), s(10), false).expect("plan");
        assert_eq!((p.ticks, p.cut_from), (6, None));
        assert_eq!(p.due(3), s(30));
        let p = MonitorPlan::new(Duration::from_millis(2500), s(1), false).expect("plan");
        assert_eq!(p.ticks, 3, "rounded up");
        let p = MonitorPlan::new(s(5), s(10), false).expect("plan");
        assert_eq!(p.ticks, 1, "at least one");
        let p = MonitorPlan::new(s(900), s(60), true).expect("plan");
        assert_eq!((p.total, p.ticks, p.cut_from), (s(60), 1, Some(s(900))));
        let p = MonitorPlan::new(s(5), s(10), true).expect("plan");
        assert_eq!(p.cut_from, None, "already one tick");
        assert_eq!(
            MonitorPlan::new(s(0), s(1), false),
            Err(MonitorError::ZeroDuration)
        );
        assert_eq!(
            MonitorPlan::new(s(1), s(0), false)
                .expect_err("zero interval")
                .to_string(),
            "monitor(): duration and interval must be more than 0s"
        );
    }

    #[test]
    fn healthy_ticks_complete_at_level_0_with_a_full_score() {
        let mut m = Monitor::new("http://127.0.0.1:1/health", config(3, true));
        for i in 0..3 {
            let t = m.tick(s(i * 10), healthy(), &default_warning());
            assert_eq!(t.level, Level::Ok);
            assert_eq!((t.number, t.of), (i + 1, 3));
            assert!(t.change.is_none() && t.rollback.is_none() && t.breaches.is_empty());
        }
        let sum = m.summary(s(30), Stopped::Completed);
        assert_eq!(sum.ticks.len(), 3);
        assert_eq!(sum.ticks[2].t_ms, 20_000);
        assert!(sum.alerts.is_empty());
        assert_eq!((sum.max_level, sum.max_level_name), (0, "ok"));
        assert_eq!((sum.score, sum.phase_score), (100.0, 5.0));
        assert_eq!(sum.duration_ms, 30_000);
    }

    #[test]
    fn a_dead_target_escalates_to_critical_and_asks_for_a_rollback() {
        let mut m = Monitor::new("u", config(10, true));
        let t1 = m.tick(s(0), down(), &default_warning());
        assert_eq!(t1.level, Level::Warning);
        assert!(t1.escalated());
        assert_eq!(
            t1.breaches,
            [
                "error_rate 100.0 % > 5.0 % (critical limit)",
                "error_rate 100.0 % > 0.0 % (warning limit)"
            ]
        );
        assert_eq!(
            t1.change,
            Some(AlertChange {
                t_ms: 0,
                from: 0,
                level: 1,
                reason: t1.reason.clone()
            })
        );
        assert!(t1.rollback.is_none());
        assert_eq!(
            m.tick(s(10), down(), &default_warning()).level,
            Level::Elevated
        );
        let t3 = m.tick(s(20), down(), &default_warning());
        assert_eq!(t3.level, Level::Critical);
        assert_eq!(
            t3.rollback.as_deref(),
            Some(
                "monitoring reached critical: failing tick 3 in a row: \
                 error_rate 100.0 % > 5.0 % (critical limit)"
            )
        );
        let sum = m.summary(s(21), Stopped::Critical);
        assert_eq!(sum.max_level, 3);
        assert_eq!(sum.alerts.len(), 3);
        assert_eq!(sum.availability, 0.0);
        assert_eq!(sum.ticks[0].p95_ms, None, "unknown, never 0");
        assert_eq!(sum.stopped.as_str(), "critical");
    }

    #[test]
    fn without_rollback_on_critical_the_monitor_goes_on_and_recovers() {
        let mut m = Monitor::new("u", config(5, false));
        for i in 0..3 {
            assert!(m.tick(s(i), down(), &default_warning()).rollback.is_none());
        }
        let t = m.tick(s(3), healthy(), &default_warning());
        assert_eq!((t.previous_level, t.level), (Level::Critical, Level::Ok));
        assert!(!t.escalated());
        assert_eq!(t.change.map(|c| (c.from, c.level)), Some((3, 0)));
        assert_eq!(m.summary(s(4), Stopped::Completed).max_level, 3);
    }

    #[test]
    fn warning_limits_given_per_tick_raise_the_implicit_critical_error_rate() {
        let mut cfg = config(3, true);
        cfg.default_warning = false;
        let mut m = Monitor::new("u", cfg);
        let mut st = healthy();
        st.ok = 9;
        st.error_rate = 0.1;
        // A warning error_rate of 20 % lifts the implicit critical 5 % to 20 %: 10 % is fine.
        let t = m.tick(s(0), st.clone(), &limits(&[("error_rate", 0.2)]));
        assert_eq!(t.level, Level::Ok);
        // Limits change at the next tick (a script's fn thresholds()).
        let t = m.tick(s(1), st, &limits(&[("error_rate", 0.01)]));
        assert_eq!(
            t.breaches,
            [
                "error_rate 10.0 % > 5.0 % (critical limit)",
                "error_rate 10.0 % > 1.0 % (warning limit)"
            ]
        );
    }

    #[test]
    fn a_critical_only_breach_fails_the_tick_and_its_performance() {
        let mut cfg = config(2, true);
        cfg.critical = limits(&[("p95_ms", 500.0)]);
        let mut m = Monitor::new("u", cfg);
        let t = m.tick(s(0), slow(), &limits(&[("p99_ms", 1000.0)]));
        assert_eq!(t.level, Level::Warning);
        assert_eq!(t.breaches, ["p95_ms 800 ms > 500 ms (critical limit)"]);
        m.tick(s(1), healthy(), &limits(&[("p99_ms", 1000.0)]));
        let sum = m.summary(s(2), Stopped::Completed);
        assert_eq!(sum.performance, 50.0);
        assert_eq!(sum.availability, 100.0);
        assert_eq!(sum.stability, 75.0);
    }

    #[test]
    fn sustained_holds_critical_back_until_it_has_lasted() {
        let mut cfg = config(10, true);
        cfg.sustained = Some(s(25));
        let mut m = Monitor::new("u", cfg);
        for i in 0..3 {
            assert!(m
                .tick(s(i * 10), down(), &default_warning())
                .rollback
                .is_none());
        }
        let t = m.tick(s(30), down(), &default_warning());
        assert_eq!(t.level, Level::Critical);
        assert!(t.rollback.is_some());
    }

    #[test]
    fn an_interrupted_monitor_keeps_the_ticks_so_far() {
        let mut m = Monitor::new("closure check", config(10, true));
        m.tick(s(0), healthy(), &default_warning());
        let sum = m.summary(Duration::from_millis(1500), Stopped::Interrupted);
        let json = serde_json::to_value(&sum).expect("json");
        assert_eq!(json["stopped"], "interrupted");
        assert_eq!(json["target"], "closure check");
        assert_eq!(json["ticks"].as_array().map(Vec::len), Some(1));
        assert_eq!(json["duration_ms"], 1500);
        let mut keys: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "alerts",
                "availability",
                "duration_ms",
                "max_level",
                "max_level_name",
                "performance",
                "phase_score",
                "score",
                "stability",
                "stopped",
                "target",
                "ticks"
            ]
        );
        let point = &json["ticks"][0];
        assert_eq!(point["level"], 0);
        assert_eq!(point["p95_ms"], 40.0);
        // The limits it was judged against: the default warning (any failed request) and
        // the implicit critical error rate.
        assert_eq!(point["warning"], serde_json::json!({ "error_rate": 0.0 }));
        assert_eq!(point["critical"]["error_rate"], 0.05);
    }

    #[test]
    fn check_results_become_statistics() {
        let ok = check_stats(true, Duration::from_millis(12));
        assert_eq!((ok.count, ok.ok, ok.error_rate), (1, 1, 0.0));
        assert_eq!(ok.p95_ms, Some(12.0));
        let no = check_stats(false, Duration::from_millis(12));
        assert_eq!((no.ok, no.error_rate, no.p95_ms), (0, 1.0, None));
        let failed = failed_stats(Duration::from_millis(3));
        assert_eq!((failed.errors, failed.error_kinds["other"]), (1, 1));
        assert_eq!(failed.duration_ms, 3.0);
    }

    #[test]
    fn figures_fill_missing_values_closed() {
        let map = |pairs: &'static [(&'static str, f64)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
        };
        let st = figures_stats(map(&[("count", 10.0), ("ok", 0.0)]), s(1));
        assert_eq!(st.error_rate, 1.0, "not ok counts as failed");
        assert_eq!(st.p95_ms, None, "no latency stays unknown");
        let st = figures_stats(map(&[("p50_ms", 5.0), ("p95_ms", 9.0)]), s(1));
        assert_eq!((st.count, st.ok, st.error_rate), (1, 1, 0.0));
        assert_eq!(
            (st.p90_ms, st.p99_ms, st.max_ms),
            (Some(5.0), Some(9.0), Some(9.0))
        );
        let st = figures_stats(map(&[("count", 0.0)]), s(1));
        assert_eq!(st.error_rate, 0.0);
    }
}

//! Alert escalation for a monitor (ok → warning → elevated → critical) and its score.
//!
//! Rules of [`AlertState::tick`]:
//! - a tick with any breach, warning or critical, is *failing*; a tick with none is healthy
//!   and resets the level to `ok` and every streak;
//! - consecutive failing ticks raise the level: the 1st to `warning` (1), the 2nd to
//!   `elevated` (2), the 3rd and later to `critical` (3, rollback recommended);
//! - without `sustained`, that consecutive rule alone sets the level (a critical breach on
//!   its own counts as one failing tick, like a warning breach);
//! - with `sustained: Some(d)`, the level is `critical` exactly when critical breaches have
//!   held on every tick since the first tick of the current critical streak, and that first
//!   tick was at least `d` ago; otherwise the consecutive rule applies but stops at
//!   `elevated`. A tick without critical breaches (healthy, or warning only) ends the
//!   critical streak. Time that goes backwards counts as no time elapsed.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::stats::SampleStats;
use crate::core::thresholds::Breach;

/// An alert level, 0 to 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// 0: no breach on the last tick.
    Ok = 0,
    /// 1: one failing tick.
    Warning = 1,
    /// 2: two failing ticks in a row (or more, while `sustained` holds critical back).
    Elevated = 2,
    /// 3: failing for three ticks in a row, or critical breaches sustained: roll back.
    Critical = 3,
}

impl Level {
    /// Returns the level as a number, 0 to 3.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Returns the level for a number 0 to 3 (larger numbers are `Critical`).
    pub fn from_u8(n: u8) -> Level {
        match n {
            0 => Level::Ok,
            1 => Level::Warning,
            2 => Level::Elevated,
            _ => Level::Critical,
        }
    }

    /// Returns the level's name: `ok`, `warning`, `elevated` or `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Elevated => "elevated",
            Level::Critical => "critical",
        }
    }

    /// Returns true at `Critical`, where a rollback is recommended.
    pub fn rollback_recommended(self) -> bool {
        self == Level::Critical
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one tick did to the level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickOutcome {
    /// The level after the tick.
    pub level: Level,
    /// The level before the tick.
    pub previous_level: Level,
    /// True when `level` differs from `previous_level`.
    pub changed: bool,
    /// Why the level is what it is, with the breaches, for logs and reports.
    pub reason: String,
}

/// The escalation state of one monitor; feed it one [`AlertState::tick`] per sample.
#[derive(Debug, Clone)]
pub struct AlertState {
    sustained: Option<Duration>,
    level: Level,
    max_level: Level,
    failing_streak: u64,
    critical_since: Option<Duration>,
}

impl AlertState {
    /// Returns a state at `ok`; `sustained` enables the sustained-critical rule (see the module docs).
    pub fn new(sustained: Option<Duration>) -> AlertState {
        AlertState {
            sustained,
            level: Level::Ok,
            max_level: Level::Ok,
            failing_streak: 0,
            critical_since: None,
        }
    }

    /// Returns the current level.
    pub fn level(&self) -> Level {
        self.level
    }

    #[cfg(test)]
    /// Returns the highest level reached since creation.
    pub fn max_level(&self) -> Level {
        self.max_level
    }

    #[cfg(test)]
    /// Returns how many failing ticks in a row ended with the last tick.
    pub fn failing_streak(&self) -> u64 {
        self.failing_streak
    }

    /// Applies one tick taken at `now` (time since any fixed origin, such as the monitor's start).
    pub fn tick(
        &mut self,
        now: Duration,
        warning_breaches: &[Breach],
        critical_breaches: &[Breach],
    ) -> TickOutcome {
        let previous_level = self.level;
        let failing = !warning_breaches.is_empty() || !critical_breaches.is_empty();
        let reason;
        if !failing {
            self.failing_streak = 0;
            self.critical_since = None;
            self.level = Level::Ok;
            reason = "healthy: no threshold breached".to_string();
        } else {
            self.failing_streak += 1;
            let consecutive = Level::from_u8(u8::try_from(self.failing_streak.min(3)).unwrap_or(3));
            if critical_breaches.is_empty() {
                self.critical_since = None;
            } else if self.critical_since.is_none() {
                self.critical_since = Some(now);
            }
            let breaches = describe(warning_breaches, critical_breaches);
            let streak = format!("failing tick {} in a row", self.failing_streak);
            match self.sustained {
                None => {
                    self.level = consecutive;
                    reason = if consecutive == Level::Critical {
                        format!("{streak}: {breaches}")
                    } else {
                        format!("{streak} (critical at 3): {breaches}")
                    };
                }
                Some(need) => {
                    let held = self.critical_since.map(|since| now.saturating_sub(since));
                    match held {
                        Some(held) if held >= need => {
                            self.level = Level::Critical;
                            reason = format!(
                                "critical breaches held for {} (sustained {}): {breaches}",
                                secs(held),
                                secs(need)
                            );
                        }
                        Some(held) => {
                            self.level = consecutive.min(Level::Elevated);
                            reason = format!(
                                "{streak}, critical breaches held for {} of the {} needed for critical: {breaches}",
                                secs(held),
                                secs(need)
                            );
                        }
                        None => {
                            self.level = consecutive.min(Level::Elevated);
                            reason = format!(
                                "{streak}, warning breaches only (capped at elevated while sustained is {}): {breaches}",
                                secs(need)
                            );
                        }
                    }
                }
            }
        }
        self.max_level = self.max_level.max(self.level);
        TickOutcome {
            level: self.level,
            previous_level,
            changed: self.level != previous_level,
            reason,
        }
    }
}

/// Lists the breached limits, critical ones first: `p95_ms 1203.4 ms > 1000 ms (critical
/// limit); error_rate 20.0 % > 5.0 % (warning limit)`.
pub fn describe(warning: &[Breach], critical: &[Breach]) -> String {
    let mut parts: Vec<String> = critical
        .iter()
        .map(|b| format!("{b} (critical limit)"))
        .collect();
    // A warning limit broken on a metric whose critical limit is broken too says nothing more.
    parts.extend(
        warning
            .iter()
            .filter(|w| !critical.iter().any(|c| c.metric == w.metric))
            .map(|b| format!("{b} (warning limit)")),
    );
    parts.join("; ")
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// What one tick contributes to a [`MonitorScore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickRecord {
    /// Requests finished in the tick's sample.
    pub requests: u64,
    /// Of those, responses with status < 400.
    pub ok: u64,
    /// True when the sample broke no limit (warning or critical).
    pub within_warning: bool,
    /// The alert level after the tick.
    pub level: Level,
}

impl TickRecord {
    /// Builds the record of a tick from its sample, all its breaches (warning and critical)
    /// and the level it led to.
    pub fn new(stats: &SampleStats, warning_breaches: &[Breach], level: Level) -> TickRecord {
        TickRecord {
            requests: stats.count,
            ok: stats.ok,
            within_warning: warning_breaches.is_empty(),
            level,
        }
    }
}

/// The score of a monitor over a series of ticks.
///
/// - `availability` = 100 × ok / requests over all ticks (0 when there were no requests);
/// - `performance` = 100 × ticks that broke no limit (warning or critical) / ticks;
/// - `stability` = 100 − 25 × the highest level reached (ok 100, warning 75, elevated 50,
///   critical 25), never below 0;
/// - `weighted` = 0.4 × availability + 0.4 × performance + 0.2 × stability (0-100);
/// - `phase_score` = weighted / 20, rounded to one decimal (0-5).
///
/// With no tick at all every figure is 0: no evidence earns no score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MonitorScore {
    /// Ticks scored.
    pub ticks: u64,
    /// Share of requests ok, 0-100.
    pub availability: f64,
    /// Share of ticks that broke no limit, 0-100.
    pub performance: f64,
    /// 100 − 25 per level reached, 0-100.
    pub stability: f64,
    /// Highest level reached.
    pub max_level: Level,
    /// 40/40/20 weighted score, 0-100.
    pub weighted: f64,
    /// `weighted` / 20 rounded to one decimal, 0-5.
    pub phase_score: f64,
}

/// Builds a [`MonitorScore`] tick by tick, in constant memory.
#[derive(Debug, Clone, Default)]
pub struct ScoreAccumulator {
    ticks: u64,
    within: u64,
    requests: u64,
    ok: u64,
    max_level: Option<Level>,
}

impl ScoreAccumulator {
    /// Adds one tick.
    pub fn add(&mut self, tick: &TickRecord) {
        self.ticks += 1;
        self.within += u64::from(tick.within_warning);
        self.requests += tick.requests;
        self.ok += tick.ok.min(tick.requests);
        self.max_level = Some(self.max_level.map_or(tick.level, |m| m.max(tick.level)));
    }

    /// Returns the score of the ticks added so far.
    pub fn score(&self) -> MonitorScore {
        let Some(max_level) = self.max_level else {
            return MonitorScore {
                ticks: 0,
                availability: 0.0,
                performance: 0.0,
                stability: 0.0,
                max_level: Level::Ok,
                weighted: 0.0,
                phase_score: 0.0,
            };
        };
        let pct = |n: u64, d: u64| {
            if d == 0 {
                0.0
            } else {
                100.0 * n as f64 / d as f64
            }
        };
        let availability = pct(self.ok, self.requests);
        let performance = pct(self.within, self.ticks);
        let stability = (100.0 - 25.0 * f64::from(max_level.as_u8())).max(0.0);
        // The usual weights of `core::score` (availability 40 %, performance 40 %,
        // stability 20 %).
        let weight = |name: &str| {
            crate::core::score::DEFAULT_WEIGHTS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |(_, w)| *w)
        };
        let weighted = weight("availability") * availability
            + weight("performance") * performance
            + weight("stability") * stability;
        MonitorScore {
            ticks: self.ticks,
            availability,
            performance,
            stability,
            max_level,
            weighted,
            phase_score: (weighted / 20.0 * 10.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::thresholds::Metric;

    fn rec(requests: u64, ok: u64, within_warning: bool, level: Level) -> TickRecord {
        TickRecord {
            requests,
            ok,
            within_warning,
            level,
        }
    }

    fn score_of(ticks: &[TickRecord]) -> MonitorScore {
        let mut acc = ScoreAccumulator::default();
        for t in ticks {
            acc.add(t);
        }
        acc.score()
    }

    fn breach(metric: Metric, value: f64, limit: f64) -> Breach {
        Breach {
            metric,
            value: Some(value),
            limit,
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_5xx_burst_raises_warning_then_recovers() {
        let mut a = AlertState::new(None);
        let burst = [breach(Metric::Rate5xx, 0.3, 0.05)];
        let o = a.tick(s(0), &burst, &[]);
        assert_eq!(o.level, Level::Warning);
        assert_eq!(o.previous_level, Level::Ok);
        assert!(o.changed);
        assert_eq!(
            o.reason,
            "failing tick 1 in a row (critical at 3): rate_5xx 30.0 % > 5.0 % (warning limit)"
        );
        let o = a.tick(s(10), &[], &[]);
        assert_eq!(o.level, Level::Ok);
        assert_eq!(o.previous_level, Level::Warning);
        assert!(o.changed);
        let o = a.tick(s(20), &[], &[]);
        assert!(!o.changed);
        assert_eq!(a.level(), Level::Ok);
        assert_eq!(a.max_level(), Level::Warning);
    }

    #[test]
    fn three_failing_ticks_reach_critical() {
        let mut a = AlertState::new(None);
        let w = [breach(Metric::P95Ms, 1500.0, 1000.0)];
        let c = [breach(Metric::ErrorRate, 0.5, 0.1)];
        assert_eq!(a.tick(s(0), &w, &[]).level, Level::Warning);
        assert_eq!(a.tick(s(1), &[], &c).level, Level::Elevated);
        let o = a.tick(s(2), &w, &[]);
        assert_eq!(o.level, Level::Critical);
        assert!(o.level.rollback_recommended());
        assert_eq!(a.tick(s(3), &w, &[]).level, Level::Critical);
        assert!(!a.tick(s(4), &w, &[]).changed);
        assert_eq!(a.failing_streak(), 5);
        assert_eq!(a.tick(s(5), &[], &[]).level, Level::Ok);
        assert_eq!(a.max_level(), Level::Critical);
    }

    #[test]
    fn sustained_breach_reaches_critical_only_after_the_duration() {
        let mut a = AlertState::new(Some(s(30)));
        let c = [breach(Metric::ErrorRate, 0.5, 0.1)];
        assert_eq!(a.tick(s(100), &[], &c).level, Level::Warning);
        assert_eq!(a.tick(s(110), &[], &c).level, Level::Elevated);
        let o = a.tick(s(120), &[], &c);
        assert_eq!(o.level, Level::Elevated, "3 ticks but only 20s of 30s");
        assert!(o.reason.contains("held for 20s of the 30s"), "{}", o.reason);
        let o = a.tick(s(130), &[], &c);
        assert_eq!(o.level, Level::Critical);
        assert!(o.changed);
        assert_eq!(
            o.reason,
            "critical breaches held for 30s (sustained 30s): error_rate 50.0 % > 10.0 % (critical limit)"
        );
    }

    #[test]
    fn warning_breaches_alone_stop_at_elevated_while_sustained_is_set() {
        let mut a = AlertState::new(Some(s(30)));
        let w = [breach(Metric::P95Ms, 1500.0, 1000.0)];
        for t in 0..10 {
            a.tick(s(t * 10), &w, &[]);
        }
        assert_eq!(a.level(), Level::Elevated);
        assert_eq!(a.max_level(), Level::Elevated);
    }

    #[test]
    fn a_healthy_tick_resets_the_sustained_streak() {
        let mut a = AlertState::new(Some(s(30)));
        let c = [breach(Metric::ErrorRate, 0.5, 0.1)];
        a.tick(s(0), &[], &c);
        a.tick(s(20), &[], &c);
        assert_eq!(a.tick(s(25), &[], &[]).level, Level::Ok);
        // The streak restarts at 30s: 30s, 50s are not enough, 60s is.
        assert_eq!(a.tick(s(30), &[], &c).level, Level::Warning);
        assert_eq!(a.tick(s(50), &[], &c).level, Level::Elevated);
        assert_eq!(a.tick(s(59), &[], &c).level, Level::Elevated);
        assert_eq!(a.tick(s(60), &[], &c).level, Level::Critical);
    }

    #[test]
    fn a_level_below_critical_says_which_critical_limits_broke() {
        let mut a = AlertState::new(None);
        let w = [
            Breach {
                metric: Metric::P95Ms,
                value: None,
                limit: 500.0,
            },
            breach(Metric::MinRps, 1.0, 5.0),
        ];
        let c = [
            Breach {
                metric: Metric::P95Ms,
                value: None,
                limit: 1000.0,
            },
            breach(Metric::ErrorRate, 1.0, 0.05),
        ];
        let o = a.tick(s(0), &w, &c);
        assert_eq!(o.level, Level::Warning);
        assert_eq!(
            o.reason,
            "failing tick 1 in a row (critical at 3): \
             p95_ms unknown (no successful response) > 1000 ms (critical limit); \
             error_rate 100.0 % > 5.0 % (critical limit); min_rps 1 req/s < 5 req/s (warning limit)"
        );
    }

    #[test]
    fn a_warning_only_tick_also_ends_the_critical_streak() {
        let mut a = AlertState::new(Some(s(10)));
        let w = [breach(Metric::P95Ms, 1500.0, 1000.0)];
        let c = [breach(Metric::ErrorRate, 0.5, 0.1)];
        a.tick(s(0), &[], &c);
        a.tick(s(5), &w, &[]);
        assert_eq!(a.tick(s(12), &[], &c).level, Level::Elevated);
        assert_eq!(a.tick(s(22), &[], &c).level, Level::Critical);
        // Dropping back to warning-only breaches leaves critical.
        assert_eq!(a.tick(s(30), &w, &[]).level, Level::Elevated);
    }

    #[test]
    fn level_names_and_numbers() {
        let names: Vec<&str> = (0..=3).map(|n| Level::from_u8(n).name()).collect();
        assert_eq!(names, ["ok", "warning", "elevated", "critical"]);
        assert_eq!(Level::Critical.as_u8(), 3);
        assert_eq!(
            serde_json::to_string(&Level::Elevated).expect("serialize"),
            "\"elevated\""
        );
    }

    #[test]
    fn score_of_a_series() {
        let ticks = [
            rec(100, 100, true, Level::Ok),
            rec(100, 90, false, Level::Warning),
            rec(100, 100, true, Level::Ok),
            rec(100, 98, true, Level::Ok),
        ];
        let sc = score_of(&ticks);
        assert_eq!(sc.ticks, 4);
        assert!((sc.availability - 97.0).abs() < 1e-9);
        assert!((sc.performance - 75.0).abs() < 1e-9);
        assert_eq!(sc.stability, 75.0);
        assert_eq!(sc.max_level, Level::Warning);
        // 0.4 * 97 + 0.4 * 75 + 0.2 * 75 = 83.8 → 4.19 → 4.2
        assert!((sc.weighted - 83.8).abs() < 1e-9);
        assert_eq!(sc.phase_score, 4.2);
    }

    #[test]
    fn score_extremes() {
        let perfect = score_of(&[rec(10, 10, true, Level::Ok)]);
        assert_eq!(perfect.weighted, 100.0);
        assert_eq!(perfect.phase_score, 5.0);
        let down = score_of(&[rec(10, 0, false, Level::Critical)]);
        assert_eq!(down.stability, 25.0);
        assert_eq!(down.weighted, 5.0);
        assert_eq!(down.phase_score, 0.3);
        let none = score_of(&[]);
        assert_eq!(none.weighted, 0.0);
        assert_eq!(none.ticks, 0);
    }

    #[test]
    fn tick_record_from_stats() {
        let mut st = SampleStats::empty();
        st.count = 50;
        st.ok = 45;
        let r = TickRecord::new(&st, &[breach(Metric::P95Ms, 2.0, 1.0)], Level::Warning);
        assert_eq!(r.requests, 50);
        assert_eq!(r.ok, 45);
        assert!(!r.within_warning);
    }
}

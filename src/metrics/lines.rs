//! What `sample`, `monitor` and `collect` show on the console, as content: each line's text
//! and its tone. The caller decides how a tone looks (plain, ANSI) and where it goes.

use std::time::Duration;

use crate::core::alert::Level;
use crate::core::duration::format_duration;
use crate::core::monitor::{MonitorPlan, MonitorSummary, MonitorTick};
use crate::core::stats::SampleStats;
use crate::core::thresholds::format_percent;

/// How a line reads: its kind, not its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// An informational line.
    Info,
    /// A warning to the operator (something went wrong, the run goes on).
    Warn,
    /// A healthy tick: background.
    Healthy,
    /// A tick at warning or elevated.
    Degraded,
    /// A tick at critical.
    Critical,
}

/// One console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text, unmasked (the console masks secrets).
    pub text: String,
    /// How it reads.
    pub tone: Tone,
}

impl Line {
    fn info(text: String) -> Line {
        Line {
            text,
            tone: Tone::Info,
        }
    }

    fn warn(text: String) -> Line {
        Line {
            text,
            tone: Tone::Warn,
        }
    }
}

/// A latency for a one-line summary: `12.3 ms`, or `unknown` with no successful response.
fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| format!("{v:.1} ms"))
}

/// One line per sample or tick; rates as percentages, latencies over successful responses.
pub fn stats_line(s: &SampleStats) -> String {
    let failed = if s.errors > 0 {
        let kinds: Vec<String> = s
            .error_kinds
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        format!(" ({} failed: {})", s.errors, kinds.join(", "))
    } else {
        String::new()
    };
    format!(
        "{} req{failed}, p50 {}, p95 {}, p99 {}, errors {}, 5xx {}, {:.0} req/s",
        s.count,
        ms(s.p50_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        format_percent(s.error_rate),
        format_percent(s.rate_5xx),
        s.rps
    )
}

/// `sample URL: figures`.
pub fn sample(url: &str, stats: &SampleStats) -> Line {
    Line::info(format!("sample {url}: {}", stats_line(stats)))
}

/// A paced sample that could not keep its rate.
pub fn rate_shortfall(url: &str, why: &str) -> Line {
    Line::warn(format!("sample {url}: {why}"))
}

/// One round of `collect`.
pub fn collect_round(number: usize, of: usize, offset: Duration, stats: &SampleStats) -> Line {
    Line::info(format!(
        "round {number}/{of} at +{}: {}",
        format_duration(offset),
        stats_line(stats)
    ))
}

/// The lines before the first tick: the dry-run cut, if any, and what is watched.
pub fn monitor_start(target: &str, plan: &MonitorPlan) -> Vec<Line> {
    let mut lines = Vec::new();
    if let Some(asked) = plan.cut_from {
        lines.push(Line::info(format!(
            "  dry run: one tick instead of monitoring for {}",
            format_duration(asked)
        )));
    }
    lines.push(Line::info(format!(
        "monitoring {target} for {} every {} ({} ticks)",
        format_duration(plan.total),
        format_duration(plan.interval),
        plan.ticks
    )));
    lines
}

/// A tick's lines: the figures with the level (and why, when not ok), then the change of
/// level when there was one (a warning when it went up).
pub fn monitor_tick(t: &MonitorTick) -> Vec<Line> {
    // A failing tick says which limits it broke and why the level is what it is, so a
    // level below critical never stands beside an unexplained critical breach.
    let why = if t.level == Level::Ok {
        String::new()
    } else {
        format!(": {}", t.reason)
    };
    let tone = match t.level {
        Level::Ok => Tone::Healthy,
        Level::Warning | Level::Elevated => Tone::Degraded,
        Level::Critical => Tone::Critical,
    };
    let mut lines = vec![Line {
        text: format!(
            "  tick {}/{}: {} — level {} ({}){why}",
            t.number,
            t.of,
            stats_line(&t.stats),
            t.level.as_u8(),
            t.level.name()
        ),
        tone,
    }];
    if t.change.is_some() {
        let text = format!(
            "alert level {} ({}): {}",
            t.level.as_u8(),
            t.level.name(),
            t.reason
        );
        lines.push(if t.escalated() {
            Line::warn(text)
        } else {
            Line::info(text)
        });
    }
    lines
}

/// A check closure that threw or said nothing clear: the tick counts as failed.
pub fn check_failed(tick: u64, why: &str) -> Line {
    Line::warn(format!("monitor tick {tick}: {why}"))
}

/// `on_alert` failed; monitoring goes on.
pub fn hook_failed(why: &str) -> Line {
    Line::warn(format!("on_alert hook failed (monitoring goes on): {why}"))
}

/// The last line of a monitor that ran to its end.
pub fn monitor_done(s: &MonitorSummary) -> Line {
    Line::info(format!(
        "monitoring done: highest level {} ({}), availability {:.1} %, performance {:.1} %, stability {:.0} %, score {:.1} ({:.1}/5)",
        s.max_level,
        s.max_level_name,
        s.availability,
        s.performance,
        s.stability,
        s.score,
        s.phase_score
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::monitor::fixtures::{down, healthy};
    use crate::core::monitor::{default_warning, Monitor, MonitorConfig, Stopped};
    use crate::core::thresholds::Thresholds;

    #[test]
    fn figures_say_unknown_and_name_the_failures() {
        assert_eq!(
            stats_line(&down()),
            "10 req (10 failed: 10 connect), p50 unknown, p95 unknown, p99 unknown, errors 100.0 %, 5xx 0.0 %, 0 req/s"
        );
        assert_eq!(
            stats_line(&healthy()),
            "10 req, p50 20.0 ms, p95 40.0 ms, p99 50.0 ms, errors 0.0 %, 5xx 0.0 %, 100 req/s"
        );
    }

    #[test]
    fn a_monitor_renders_from_its_outcomes() {
        let plan = MonitorPlan::new(Duration::from_secs(900), Duration::from_secs(60), true)
            .expect("plan");
        let start = monitor_start("http://h/health", &plan);
        assert_eq!(
            start.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            [
                "  dry run: one tick instead of monitoring for 15m",
                "monitoring http://h/health for 1m every 1m (1 ticks)"
            ]
        );
        let mut m = Monitor::new(
            "u",
            MonitorConfig {
                plan: MonitorPlan::new(Duration::from_secs(30), Duration::from_secs(10), false)
                    .expect("plan"),
                critical: Thresholds::default(),
                sustained: None,
                default_warning: true,
                rollback_on_critical: true,
            },
        );
        let t = m.tick(Duration::ZERO, down(), &default_warning());
        let lines = monitor_tick(&t);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].tone, Tone::Degraded);
        assert!(
            lines[0]
                .text
                .starts_with("  tick 1/3: 10 req (10 failed: 10 connect)"),
            "{}",
            lines[0].text
        );
        assert!(lines[0]
            .text
            .contains(" — level 1 (warning): failing tick 1 in a row"));
        assert_eq!(lines[1].tone, Tone::Warn);
        assert!(lines[1].text.starts_with("alert level 1 (warning): "));
        let t = m.tick(Duration::from_secs(10), healthy(), &default_warning());
        let lines = monitor_tick(&t);
        assert_eq!(lines[0].tone, Tone::Healthy);
        assert!(
            lines[0].text.ends_with("— level 0 (ok)"),
            "{}",
            lines[0].text
        );
        assert_eq!(
            lines[1],
            Line::info("alert level 0 (ok): healthy: no threshold breached".into())
        );
        let t = m.tick(Duration::from_secs(20), healthy(), &default_warning());
        assert_eq!(monitor_tick(&t).len(), 1, "no change, no alert line");
        let done = monitor_done(&m.summary(Duration::from_secs(30), Stopped::Completed));
        assert_eq!(
            done.text,
            "monitoring done: highest level 1 (warning), availability 66.7 %, performance 66.7 %, stability 75 %, score 68.3 (3.4/5)"
        );
    }
}

//! How a run looks: content in (a phase began, a check ended, a rollback started, the end
//! table), a [`Shown`] line out: its plain text and where its styles go. The script API and
//! the runner say *what* happened; only this file decides how it looks, and the
//! [`Console`](super::console::Console) renders the line plain or in colour to its writer
//! (stderr, or the writer an embedder gave).

use crate::metrics::lines::{Line as MetricLine, Tone};
use crate::pipeline::{CheckStatus, PhaseStatus};

/// A text style; rendered as ANSI only when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bold,
    Dim,
    Red,
    Green,
    Yellow,
    Cyan,
}

impl Style {
    /// The ANSI SGR parameters of the style.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Red => "1;31",
            Style::Green => "32",
            Style::Yellow => "1;33",
            Style::Cyan => "36",
        }
    }
}

/// Who sees a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Progress: hidden by `-q` (kept in run.log).
    Info,
    /// Always printed: failures, rollbacks, the end table.
    Always,
    /// A warning (`warning: ` in front); always printed.
    Warn,
}

/// One line to show: parts of text, each with an optional style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Who sees it.
    pub level: Level,
    parts: Vec<(Option<Style>, String)>,
}

impl Shown {
    fn new(level: Level) -> Shown {
        Shown {
            level,
            parts: Vec::new(),
        }
    }

    fn text(mut self, text: impl Into<String>) -> Shown {
        self.parts.push((None, text.into()));
        self
    }

    fn styled(mut self, style: Style, text: impl Into<String>) -> Shown {
        self.parts.push((Some(style), text.into()));
        self
    }

    /// The line without styles: what run.log keeps and a pipe shows.
    pub fn plain(&self) -> String {
        self.parts.iter().map(|(_, t)| t.as_str()).collect()
    }

    /// The line with each styled part passed through `paint`.
    pub fn render(&self, paint: impl Fn(Style, &str) -> String) -> String {
        self.parts
            .iter()
            .map(|(s, t)| match s {
                Some(s) => paint(*s, t),
                None => t.clone(),
            })
            .collect()
    }
}

/// `━━ [2/5] Deploy (note)`: a phase begins.
pub fn phase_banner(index: usize, total: usize, name: &str, note: &str) -> Shown {
    Shown::new(Level::Info).styled(Style::Bold, format!("━━ [{index}/{total}] {name}{note}"))
}

/// The last line of a phase: its score and label, or what a dry run found.
pub fn phase_end(status: PhaseStatus, label: &str, text: String) -> Shown {
    let style = match status {
        PhaseStatus::Passed if label == "passed" => Style::Green,
        PhaseStatus::Passed => Style::Yellow,
        _ => Style::Red,
    };
    Shown::new(Level::Info).styled(style, text)
}

/// `  ✓ name (detail)`: a check ended. A failure is always shown, even with `-q`.
pub fn check(status: CheckStatus, name: &str, detail: &str) -> Shown {
    let style = match status {
        CheckStatus::Passed => Style::Green,
        CheckStatus::Warning | CheckStatus::WouldFail => Style::Yellow,
        CheckStatus::Failed => Style::Red,
        CheckStatus::WouldRun => Style::Bold,
    };
    let level = match status {
        CheckStatus::Failed => Level::Always,
        _ => Level::Info,
    };
    Shown::new(level)
        .text("  ")
        .styled(style, status.mark())
        .text(format!(" {name} ({detail})"))
}

/// A line of a monitor or a sample: its tone decides its look.
pub fn metric(line: &MetricLine) -> Shown {
    let (level, style) = match line.tone {
        Tone::Info => (Level::Info, None),
        Tone::Warn => (Level::Warn, None),
        Tone::Healthy => (Level::Info, Some(Style::Dim)),
        Tone::Degraded => (Level::Info, Some(Style::Yellow)),
        Tone::Critical => (Level::Info, Some(Style::Red)),
    };
    match style {
        Some(s) => Shown::new(level).styled(s, line.text.clone()),
        None => Shown::new(level).text(line.text.clone()),
    }
}

/// `━━ Rollback: reason` (or `━━ Rollback of host: reason`): always shown.
pub fn rollback_banner(host: Option<&str>, reason: &str) -> Shown {
    let text = match host {
        Some(h) => format!("━━ Rollback of {h}: {reason}"),
        None => format!("━━ Rollback: {reason}"),
    };
    Shown::new(Level::Always).styled(Style::Yellow, text)
}

/// The end table of a run (lines from `report::render::table`): its header and total in bold.
pub fn table(lines: Vec<String>) -> Vec<Shown> {
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 || line.trim_start().starts_with("Total") {
                Shown::new(Level::Always).styled(Style::Bold, line)
            } else {
                Shown::new(Level::Always).text(line)
            }
        })
        .collect()
}

/// `━━ deploy.rhai changed: running it again (run 3)`: `run --watch` starts again.
pub fn rerun(name: &str, run: u32) -> Shown {
    Shown::new(Level::Always).styled(
        Style::Bold,
        format!("━━ {name} changed: running it again (run {run})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ansi(s: Style, t: &str) -> String {
        format!("<{s:?}>{t}</>")
    }

    #[test]
    fn a_check_line_styles_only_its_mark() {
        let l = check(CheckStatus::Failed, "health", "2s, 3 attempts");
        assert_eq!(l.plain(), "  ✗ health (2s, 3 attempts)");
        assert_eq!(l.render(ansi), "  <Red>✗</> health (2s, 3 attempts)");
        assert_eq!(l.level, Level::Always);
        let l = check(CheckStatus::Passed, "health", "1ms");
        assert_eq!(l.render(ansi), "  <Green>✓</> health (1ms)");
        assert_eq!(l.level, Level::Info);
        assert_eq!(
            check(CheckStatus::WouldRun, "x", "would run").render(ansi),
            "  <Bold>·</> x (would run)"
        );
    }

    #[test]
    fn a_phase_end_is_green_only_when_it_passed_cleanly() {
        let t = || "  phase score 4.0/5".to_string();
        assert!(phase_end(PhaseStatus::Passed, "passed", t())
            .render(ansi)
            .starts_with("<Green>"));
        assert!(phase_end(PhaseStatus::Passed, "degraded", t())
            .render(ansi)
            .starts_with("<Yellow>"));
        assert!(phase_end(PhaseStatus::Failed, "failed", t())
            .render(ansi)
            .starts_with("<Red>"));
    }

    #[test]
    fn banners_and_tables_read_the_same_without_colour() {
        assert_eq!(
            phase_banner(2, 5, "Deploy", " (changes)").plain(),
            "━━ [2/5] Deploy (changes)"
        );
        assert_eq!(
            rollback_banner(Some("web-1"), "health failed").plain(),
            "━━ Rollback of web-1: health failed"
        );
        assert_eq!(rollback_banner(None, "x").level, Level::Always);
        let t = table(vec![
            "Phase  Score".into(),
            "Build  5.0".into(),
            "Total  5.0".into(),
        ]);
        let styled: Vec<String> = t.iter().map(|l| l.render(ansi)).collect();
        assert_eq!(
            styled,
            ["<Bold>Phase  Score</>", "Build  5.0", "<Bold>Total  5.0</>"]
        );
        assert_eq!(
            rerun("d.rhai", 3).plain(),
            "━━ d.rhai changed: running it again (run 3)"
        );
    }

    #[test]
    fn a_metric_line_takes_its_look_from_its_tone() {
        let line = |tone| MetricLine {
            text: "p95 120ms".into(),
            tone,
        };
        assert_eq!(metric(&line(Tone::Warn)).level, Level::Warn);
        assert_eq!(metric(&line(Tone::Info)).render(ansi), "p95 120ms");
        assert_eq!(
            metric(&line(Tone::Critical)).render(ansi),
            "<Red>p95 120ms</>"
        );
        assert_eq!(
            metric(&line(Tone::Healthy)).render(ansi),
            "<Dim>p95 120ms</>"
        );
    }
}

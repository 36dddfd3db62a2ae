//! Live progress on a terminal: a spinner per running command, one updating line for
//! `wait_healthy` and `retry`, a countdown to a monitor's next tick.
//!
//! The [`Console`](super::console::Console) owns a [`Progress`]; business code asks the
//! console for an [`Activity`] and updates it, and the console decides what that shows.
//! Off a terminal (CI, a pipe, `--color never`, `-q`, `TERM=dumb`) there is no progress at
//! all: an activity's lines print as plain log lines exactly as before, and nothing else
//! is drawn. On a terminal the lines an activity replaces still go to the run log, and the
//! spinner frames never do (they are drawn by indicatif, not written through the console).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a spinner redraws by itself (its frame and its elapsed time).
const TICK: Duration = Duration::from_millis(120);

/// The widest label a spinner shows before its message; longer ones are cut with `…`.
pub const MAX_LABEL: usize = 48;

/// What decides whether progress is drawn, gathered so the decision is a pure function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions<'a> {
    /// stderr is a terminal.
    pub terminal: bool,
    /// `--color never` was given.
    pub color_never: bool,
    /// `-q` was given.
    pub quiet: bool,
    /// The value of `CI`, if set.
    pub ci: Option<&'a str>,
    /// The value of `TERM`, if set.
    pub term: Option<&'a str>,
}

impl Conditions<'_> {
    /// Progress is drawn only on a terminal that is not a CI runner's or a dumb one, and
    /// only when neither `--color never` nor `-q` asked for plain output. `--json` does not
    /// matter: the report goes to stdout and progress to stderr.
    pub fn allow(&self) -> bool {
        let ci = self
            .ci
            .is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
        self.terminal
            && !self.color_never
            && !self.quiet
            && !ci
            && self.term.is_some_and(|t| !t.is_empty() && t != "dumb")
    }
}

/// Decides for this process from its stderr and environment (see [`Conditions::allow`]).
pub fn allowed(color_never: bool, quiet: bool) -> bool {
    use std::io::IsTerminal;
    let ci = std::env::var("CI").ok();
    let term = std::env::var("TERM").ok();
    Conditions {
        terminal: std::io::stderr().is_terminal(),
        color_never,
        quiet,
        ci: ci.as_deref(),
        term: term.as_deref(),
    }
    .allow()
}

/// The spinners of one console: none at all when progress is off.
#[derive(Clone, Default)]
pub struct Progress {
    multi: Option<MultiProgress>,
    color: bool,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("on", &self.multi.is_some())
            .finish()
    }
}

impl Progress {
    /// Progress drawn on stderr when `on`, styled with colour when `color`; otherwise none.
    pub fn new(on: bool, color: bool) -> Progress {
        let target = || ProgressDrawTarget::term_like_with_hz(Box::new(Margin::stderr()), 20);
        Progress {
            multi: on.then(|| MultiProgress::with_draw_target(target())),
            color,
        }
    }

    /// True when spinners are drawn.
    #[cfg(test)]
    pub fn on(&self) -> bool {
        self.multi.is_some()
    }

    /// Runs `f` (which writes lines to the terminal) with the spinners cleared, and draws
    /// them again below what it wrote; calls `f` directly when progress is off.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(m) => m.suspend(f),
            None => f(),
        }
    }

    /// Clears every spinner from the screen (before the process exits on a signal).
    pub fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    /// Starts a spinner showing `label`, its elapsed time and a message; `None` when off.
    pub fn spinner(&self, label: &str) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        // `{msg}`, not `{wide_msg}`: a line as wide as the terminal leaves the cursor in
        // the last column, where the `^C` the terminal echoes wraps to a new line and the
        // spinner is then no longer where indicatif clears. [`Progress::room`] cuts it.
        let template = if self.color {
            "{spinner:.cyan} {prefix} {elapsed:.dim} {msg:.dim}"
        } else {
            "{spinner} {prefix} {elapsed} {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ");
        let bar = multi.add(ProgressBar::new_spinner().with_style(style));
        bar.set_prefix(clip(label, MAX_LABEL));
        bar.enable_steady_tick(TICK);
        Some(bar)
    }
}

/// stderr, told to indicatif as [`MARGIN`] columns narrower than it is. indicatif fills
/// each line it draws with spaces up to the width, which leaves the cursor in the last
/// column: the `^C` the terminal echoes on Ctrl-C would then wrap to a new line, below the
/// spinner, and indicatif's clearing would clear that line instead of the spinner's. With
/// two columns kept free the echo stays on the spinner's line and is cleared with it.
#[derive(Debug)]
struct Margin(::console::Term);

/// The columns at the right of the terminal that spinners leave free (see [`Margin`]).
const MARGIN: u16 = 2;

impl Margin {
    fn stderr() -> Margin {
        Margin(::console::Term::stderr())
    }
}

impl indicatif::TermLike for Margin {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(MARGIN).max(10)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The characters a spinner's message may take on a terminal `columns` wide after a label
/// of `label` characters: the rest of the line less the frame, the elapsed time (up to
/// `59m59s`, say) and the free [`MARGIN`].
pub fn room(columns: usize, label: usize) -> usize {
    columns
        .saturating_sub(label + 10 + usize::from(MARGIN))
        .max(10)
}

/// The width of the terminal on stderr (80 when it cannot be read).
pub fn columns() -> usize {
    ::console::Term::stderr()
        .size_checked()
        .map(|(_, cols)| usize::from(cols))
        .unwrap_or(80)
}

/// Cuts `text` to its first line and at most `max` characters, marking a cut with `…`.
pub fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    let cut = line.chars().count() > max || text.lines().nth(1).is_some();
    if !cut {
        return line.to_string();
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One line of a command's output as a status shows it: what a terminal would leave
/// visible after carriage returns (progress bars redraw with `\r`), without escape
/// sequences or other control characters, so a spinner's line keeps its width.
pub fn plain_line(text: &str) -> String {
    let line = text.lines().last().unwrap_or_default();
    let line = line
        .rsplit('\r')
        .find(|p| !p.trim().is_empty())
        .unwrap_or_default();
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI `ESC [ ... final` and two-character escapes are dropped whole.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' {
            out.push(' ');
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// The status line of an attempt that failed and will be tried again, the countdown
/// before the problem so a narrow terminal cuts the problem, not the countdown:
/// `attempt 7/30 failed, next in 3s: status 503 (4 ms)`.
pub fn attempt_line(attempt: u64, attempts: u64, problem: &str, next_in: Duration) -> String {
    format!(
        "attempt {attempt}/{attempts} failed, next in {}: {}",
        countdown(next_in),
        clip(problem, 120)
    )
}

/// A wait still to go, as a countdown shows it: whole seconds rounded up (`3s`, `1m05s`),
/// and `now` once it is under a tenth of a second.
pub fn countdown(left: Duration) -> String {
    if left < Duration::from_millis(100) {
        return "now".into();
    }
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    if secs < 60 {
        return format!("{secs}s");
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

/// The status line of a monitor between ticks: `tick 3/10 in 4s · level ok`.
pub fn monitor_line(next_tick: u64, ticks: u64, left: Duration, level: &str) -> String {
    format!(
        "tick {next_tick}/{ticks} in {} · level {level}",
        countdown(left)
    )
}

/// How long each step of a countdown sleeps: to the next whole second left, so the shown
/// number changes on time, and never past the end.
pub fn countdown_step(left: Duration) -> Duration {
    let frac = Duration::from_nanos(u64::from(left.subsec_nanos()));
    let step = if frac.is_zero() {
        Duration::from_secs(1)
    } else {
        frac
    };
    step.min(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond<'a>(terminal: bool, ci: Option<&'a str>, term: Option<&'a str>) -> Conditions<'a> {
        Conditions {
            terminal,
            color_never: false,
            quiet: false,
            ci,
            term,
        }
    }

    #[test]
    fn progress_needs_a_real_terminal_and_no_ci_and_no_plain_flags() {
        assert!(cond(true, None, Some("xterm")).allow());
        assert!(cond(true, Some(""), Some("xterm-256color")).allow());
        assert!(cond(true, Some("false"), Some("screen")).allow());
        assert!(cond(true, Some("0"), Some("tmux")).allow());
        assert!(!cond(false, None, Some("xterm")).allow(), "a pipe");
        assert!(!cond(true, Some("true"), Some("xterm")).allow(), "CI");
        assert!(!cond(true, Some("1"), Some("xterm")).allow(), "CI");
        assert!(!cond(true, None, Some("dumb")).allow());
        assert!(!cond(true, None, None).allow(), "no TERM");
        let mut c = cond(true, None, Some("xterm"));
        c.color_never = true;
        assert!(!c.allow(), "--color never");
        let mut c = cond(true, None, Some("xterm"));
        c.quiet = true;
        assert!(!c.allow(), "-q");
    }

    #[test]
    fn attempt_lines_say_which_attempt_what_failed_and_when_the_next_is() {
        assert_eq!(
            attempt_line(7, 30, "status 503 (4 ms)", Duration::from_secs(3)),
            "attempt 7/30 failed, next in 3s: status 503 (4 ms)"
        );
        assert_eq!(
            attempt_line(
                1,
                3,
                "connect error: refused\nmore detail",
                Duration::from_millis(2500)
            ),
            "attempt 1/3 failed, next in 3s: connect error: refused…"
        );
        let long = "x".repeat(500);
        let line = attempt_line(2, 5, &long, Duration::from_secs(1));
        assert!(line.chars().count() < 160, "{line}");
        assert!(
            line.starts_with("attempt 2/5 failed, next in 1s: xxx"),
            "{line}"
        );
        assert!(line.ends_with("x…"), "{line}");
    }

    #[test]
    fn countdowns_round_up_to_whole_seconds() {
        assert_eq!(countdown(Duration::from_millis(50)), "now");
        assert_eq!(countdown(Duration::from_millis(100)), "1s");
        assert_eq!(countdown(Duration::from_millis(2001)), "3s");
        assert_eq!(countdown(Duration::from_secs(59)), "59s");
        assert_eq!(countdown(Duration::from_secs(65)), "1m05s");
        assert_eq!(countdown(Duration::from_secs(3600 + 61)), "1h01m01s");
    }

    #[test]
    fn countdown_steps_land_on_whole_seconds_and_never_overshoot() {
        assert_eq!(
            countdown_step(Duration::from_millis(2500)),
            Duration::from_millis(500)
        );
        assert_eq!(
            countdown_step(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        assert_eq!(
            countdown_step(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
        assert_eq!(countdown_step(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn monitor_lines_show_the_countdown_and_the_level() {
        assert_eq!(
            monitor_line(3, 10, Duration::from_millis(3200), "warning"),
            "tick 3/10 in 4s · level warning"
        );
    }

    #[test]
    fn output_lines_lose_escapes_control_characters_and_overdrawn_parts() {
        assert_eq!(plain_line("\x1b[32mok\x1b[0m done"), "ok done");
        assert_eq!(plain_line("10%\r50%\r100%"), "100%");
        assert_eq!(plain_line("100%\r   "), "100%");
        assert_eq!(plain_line("a\tb\x07"), "a b");
        assert_eq!(plain_line("first\nlast"), "last");
        assert_eq!(plain_line("\x1b7saved\x1b8"), "saved");
    }

    #[test]
    fn messages_leave_the_last_column_free() {
        // frame + space + label + space + "59m59s" + space = label + 10; two columns spare.
        assert_eq!(room(160, 48), 100);
        assert_eq!(2 + 48 + 1 + 6 + 1 + room(160, 48), 160 - 2);
        assert_eq!(room(20, 48), 10, "a narrow terminal still shows something");
    }

    #[test]
    fn labels_are_cut_to_one_short_line() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("exactly10!", 10), "exactly10!");
        assert_eq!(clip("much too long a label", 10), "much too …");
        assert_eq!(clip("two\nlines", 10), "two…");
    }

    #[test]
    fn progress_that_is_off_draws_nothing_and_runs_what_it_suspends() {
        let p = Progress::new(false, false);
        assert!(!p.on());
        assert!(p.spinner("x").is_none());
        assert_eq!(p.suspend(|| 7), 7);
    }
}

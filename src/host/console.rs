//! Everything a run prints goes through here: secrets masked, colour chosen once,
//! quiet and verbose levels applied, and a copy kept for the run log.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::core::mask::Masker;
use crate::host::progress::Progress;

/// How much a run prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    Quiet,
    #[default]
    Normal,
    Verbose,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Decides for stderr: `always`, `never`, or `auto` = a terminal and no `NO_COLOR`.
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        }
    }
}

pub use super::present::Style;

/// The run's output.
#[derive(Clone)]
pub struct Console {
    pub masker: Arc<Masker>,
    pub verbosity: Verbosity,
    pub color: bool,
    log: Arc<Mutex<Vec<String>>>,
    /// Bytes of streamed command output (`-v`) kept in the run log so far.
    streamed: Arc<std::sync::atomic::AtomicUsize>,
    /// Where messages go: stderr, or a writer the caller gave ([`Console::with_writer`]).
    out: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    /// `--json`: stdout holds the report alone, so script output goes with the messages.
    report_on_stdout: bool,
    /// `GITHUB_ACTIONS=true`: phases in `::group::`s.
    github: bool,
    /// A `::group::` is open (GitHub Actions).
    group_open: Arc<std::sync::atomic::AtomicBool>,
    /// Spinners and status lines on a terminal; off (drawing nothing) everywhere else.
    progress: Progress,
}

/// Streamed command output (`-v`) beyond this many bytes is printed but not kept for
/// run.log, so a command that writes gigabytes costs no memory.
pub const MAX_STREAMED_KEPT: usize = 4 * 1024 * 1024;

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("verbosity", &self.verbosity)
            .field("color", &self.color)
            .finish()
    }
}

impl Console {
    /// Creates a console with its own secret set.
    pub fn new(verbosity: Verbosity, color: bool) -> Console {
        Console {
            masker: Arc::new(Masker::default()),
            verbosity,
            color,
            log: Arc::new(Mutex::new(Vec::new())),
            streamed: Default::default(),
            out: None,
            report_on_stdout: false,
            github: false,
            group_open: Default::default(),
            progress: Progress::default(),
        }
    }

    /// Sets the CI forms of the output: `json` keeps stdout for the report alone (script
    /// `print` goes to stderr with the messages); `github` writes GitHub Actions workflow
    /// commands (groups; the run's annotations at its end) to stderr.
    pub fn for_ci(mut self, json: bool, github: bool) -> Console {
        self.report_on_stdout = json;
        self.github = github;
        self
    }

    /// Writes a GitHub Actions workflow command line (masked, not kept in the run log);
    /// nothing outside GitHub Actions.
    pub fn workflow(&self, line: &str) {
        if self.github {
            self.emit(&format!("{}\n", self.mask(line)));
        }
    }

    /// Opens a collapsed group in a GitHub Actions log (closing one left open first).
    pub fn begin_group(&self, title: &str) {
        if self.github {
            self.end_group();
            self.workflow(&crate::core::workflow::group(&self.mask(title)));
            self.group_open
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Closes the open group, if any.
    pub fn end_group(&self) {
        if self.github
            && self
                .group_open
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.workflow(crate::core::workflow::END_GROUP);
        }
    }

    /// Writes the run's report (`--json`) to stdout, or to the writer given.
    pub fn report(&self, text: &str) {
        if self.out.is_some() {
            self.emit(&format!("{text}\n"));
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Turns live progress on stderr on or off (see [`crate::host::progress::allowed`]);
    /// off by default. A console that writes to a caller's writer never draws it.
    pub fn with_progress(mut self, on: bool) -> Console {
        self.progress = Progress::new(on && self.out.is_none(), self.color);
        self
    }

    /// Starts an activity: a spinner showing `label` (masked) and its elapsed time on a
    /// terminal, nothing elsewhere. Update it with [`Activity::status`]; lines it replaces
    /// on a terminal go through [`Activity::info`] and [`Activity::warn`]. Dropping it
    /// clears the spinner, so an error or Ctrl-C leaves no half line behind.
    pub fn progress(&self, label: &str) -> Activity {
        let label =
            crate::host::progress::clip(&self.mask(label), crate::host::progress::MAX_LABEL);
        let bar = self.progress.spinner(&label);
        Activity {
            console: self.clone(),
            bar: Mutex::new(bar),
            label: label.chars().count(),
        }
    }

    /// Clears every spinner from the screen (before the process exits on a signal).
    pub fn clear_progress(&self) {
        self.progress.clear();
    }

    /// Creates a console that writes its messages to `out` instead of stderr, styled with
    /// colour when `color` is true (script `print` output goes there too).
    pub fn with_writer(verbosity: Verbosity, color: bool, out: Box<dyn Write + Send>) -> Console {
        Console {
            out: Some(Arc::new(Mutex::new(out))),
            ..Console::new(verbosity, color)
        }
    }

    /// Writes `text` to the console's writer (stderr unless one was given).
    fn emit(&self, text: &str) {
        match &self.out {
            Some(out) => {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            None => self.progress.suspend(|| {
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }),
        }
    }

    /// Wraps `text` in a style when colour is on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_string()
        }
    }

    /// Masks secrets in `text`.
    pub fn mask(&self, text: &str) -> String {
        if self.masker.is_empty() {
            text.to_string()
        } else {
            self.masker.mask(text)
        }
    }

    fn keep(&self, line: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.push(line.to_string());
        }
    }

    /// Returns every line printed so far (masked, uncoloured): the run log.
    pub fn transcript(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Writes a line to stderr (masked) regardless of verbosity, and keeps it in the log.
    pub fn line(&self, plain: &str, styled: Option<String>) {
        let plain = self.mask(plain);
        self.keep(&plain);
        let shown = match styled {
            Some(s) if self.color => self.mask(&s),
            _ => plain,
        };
        self.emit(&format!("{shown}\n"));
    }

    /// Writes script output (`print`) to stdout, masked (to stderr with `--json`).
    pub fn print(&self, text: &str) {
        let text = self.mask(text);
        self.keep(&text);
        if self.out.is_some() || self.report_on_stdout {
            self.emit(&format!("{text}\n"));
            return;
        }
        self.progress.suspend(|| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        });
    }

    /// Prints an informational line (hidden by `-q`).
    pub fn info(&self, msg: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.line(msg, None);
        } else {
            self.keep(&self.mask(msg));
        }
    }

    /// Prints an informational line with a styled form (hidden by `-q`).
    pub fn info_styled(&self, plain: &str, styled: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.line(plain, Some(styled.to_string()));
        } else {
            self.keep(&self.mask(plain));
        }
    }

    /// Prints a line that only `-v` shows.
    pub fn debug(&self, msg: &str) {
        if self.verbosity >= Verbosity::Verbose {
            self.line(msg, Some(self.paint(Style::Dim, msg)));
        }
    }

    /// Prints a command about to run (hidden by `-q`).
    pub fn command(&self, display: &str) {
        let plain = format!("$ {display}");
        if self.verbosity >= Verbosity::Normal {
            let styled = self.paint(Style::Cyan, &plain);
            self.line(&plain, Some(styled));
        } else {
            self.keep(&self.mask(&plain));
        }
    }

    /// Prints a line of a command's live output (`-v`).
    pub fn output_line(&self, stream: &str, line: &str) {
        use std::sync::atomic::Ordering;
        let mark = if stream == "stderr" { "!" } else { "|" };
        let plain = format!("  {mark} {line}");
        let before = self.streamed.fetch_add(plain.len() + 1, Ordering::Relaxed);
        if before + plain.len() < MAX_STREAMED_KEPT {
            self.line(&plain, Some(self.paint(Style::Dim, &plain)));
            return;
        }
        if before < MAX_STREAMED_KEPT {
            self.keep(&format!(
                "(command output beyond {} MiB is not kept in run.log; it was shown on the terminal)",
                MAX_STREAMED_KEPT / (1024 * 1024)
            ));
        }
        let plain = self.mask(&plain);
        let shown = if self.color {
            self.mask(&self.paint(Style::Dim, &plain))
        } else {
            plain
        };
        self.emit(&format!("{shown}\n"));
    }

    /// Prints a warning; always shown.
    pub fn warn(&self, msg: &str) {
        let plain = format!("warning: {msg}");
        let styled = format!("{} {msg}", self.paint(Style::Yellow, "warning:"));
        self.line(&plain, Some(styled));
    }

    /// Prints an error line; always shown.
    pub fn error(&self, msg: &str) {
        let plain = format!("error: {msg}");
        let styled = format!("{} {msg}", self.paint(Style::Red, "error:"));
        self.line(&plain, Some(styled));
    }

    /// Prints a success line (hidden by `-q`).
    pub fn success(&self, msg: &str) {
        if self.verbosity >= Verbosity::Normal {
            let plain = format!("✓ {msg}");
            let styled = format!("{} {msg}", self.paint(Style::Green, "✓"));
            self.line(&plain, Some(styled));
        }
    }

    /// Shows a line built by [`present`](super::present), plain or styled, at its level.
    pub fn show(&self, line: &super::present::Shown) {
        use super::present::Level;
        let plain = line.plain();
        match line.level {
            Level::Warn => self.warn(&plain),
            Level::Always => self.line(&plain, Some(line.render(|s, t| self.paint(s, t)))),
            Level::Info if self.verbosity >= Verbosity::Normal => {
                self.line(&plain, Some(line.render(|s, t| self.paint(s, t))))
            }
            Level::Info => self.keep(&self.mask(&plain)),
        }
    }

    /// Keeps a line in the run log (masked) without printing it: the whole text of a
    /// message the console showed clipped.
    pub fn log_only(&self, msg: &str) {
        self.keep(&self.mask(msg));
    }

    /// Writes a question without ending the line (masked, not kept in the run log).
    pub fn prompt(&self, question: &str) {
        self.emit(&self.mask(question));
    }

    /// Prints a pre-rendered block (a diagnostic) to stderr, masked.
    pub fn block(&self, plain: &str, styled: &str) {
        let plain = self.mask(plain);
        self.keep(&plain);
        let shown = if self.color { self.mask(styled) } else { plain };
        self.emit(&shown);
    }
}

/// A step in progress (a command, a health wait, a retry, a monitor's wait for its next
/// tick): a spinner with a status line on a terminal, nothing at all elsewhere.
pub struct Activity {
    console: Console,
    bar: Mutex<Option<indicatif::ProgressBar>>,
    /// The width of the spinner's label, in characters.
    label: usize,
}

impl Activity {
    fn bar(&self) -> Option<indicatif::ProgressBar> {
        self.bar.lock().ok().and_then(|b| b.clone())
    }

    /// True while the activity is drawn (its status lines replace log lines on screen).
    pub fn live(&self) -> bool {
        self.bar().is_some()
    }

    /// Shows `text` (masked, its last line) as the activity's status; nothing off a
    /// terminal or once finished.
    pub fn status(&self, text: &str) {
        use crate::host::progress::{clip, columns, plain_line, room};
        if let Some(bar) = self.bar() {
            let text = plain_line(&self.console.mask(text));
            bar.set_message(clip(&text, room(columns(), self.label)));
        }
    }

    /// An informational line about the activity: on a terminal it becomes the status (and
    /// goes to the run log); elsewhere it is printed as [`Console::info`] prints it.
    pub fn info(&self, line: &str) {
        if self.live() {
            self.console.log_only(line);
            self.status(line);
        } else {
            self.console.info(line);
        }
    }

    /// A warning about the activity (an attempt failed): on a terminal it becomes the
    /// status (and goes to the run log as `warning: ...`); elsewhere it is printed as
    /// [`Console::warn`] prints it.
    pub fn warn(&self, line: &str) {
        if self.live() {
            self.console.log_only(&format!("warning: {line}"));
            self.status(line);
        } else {
            self.console.warn(line);
        }
    }

    /// Clears the spinner for good; later updates show nothing. Dropping does it too.
    pub fn finish(&self) {
        let bar = self.bar.lock().ok().and_then(|mut b| b.take());
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.finish();
    }
}

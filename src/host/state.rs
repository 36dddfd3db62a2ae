//! The state every script-facing function reaches through its call context: options,
//! the async runtime, cancellation, output, background processes and HTTP clients.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::console::Console;
use super::sources::SourceMap;
use crate::sys::cancel::{or_cancel, Cancel, Cancelled};
use crate::sys::http::Clients;
use crate::sys::spawn::Registry;

/// What the operator asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The environment name (`--env`).
    pub env: String,
    /// Script variables (`--var KEY=VALUE`).
    pub vars: BTreeMap<String, String>,
    /// Perform no command and no mutating request (`--dry-run`).
    pub dry_run: bool,
    /// Answer yes to every confirmation (`--yes`).
    pub yes: bool,
    /// The state folder (history, run records), for `history::*`.
    pub state_dir: Option<PathBuf>,
    /// The host owns the process (the `deployer` command): it makes itself the child
    /// subreaper and, at the end, stops every child it does not track (orphans of the
    /// run's commands). Off for an embedding program, whose own children are not the run's.
    pub owns_process: bool,
}

/// A retry that happened, for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetryEvent {
    pub attempt: u32,
    pub attempts: u32,
    pub error: String,
    pub wait_ms: u64,
}

/// Shared state of one run (or one REPL session).
#[derive(Debug)]
pub struct HostState {
    pub options: Mutex<HostOptions>,
    pub runtime: tokio::runtime::Handle,
    pub cancel: Arc<Cancel>,
    pub console: Console,
    pub processes: Registry,
    pub http: Clients,
    pub sources: Arc<SourceMap>,
    /// Where background process logs go (created on first use).
    pub log_dir: PathBuf,
    pub retries: Mutex<Vec<RetryEvent>>,
    /// The deployment pipeline of the run (phases, checks, rollback requests).
    pub pipeline: crate::pipeline::Recorder,
    /// The latest version of the running script that passed the checks. Watch mode and
    /// the REPL replace it; long operations (a monitor's `on_alert` hook and
    /// `fn thresholds()`) look their functions up here, so edits apply at the next tick.
    pub script: super::slot::ScriptSlot,
    /// The sampler behind `sample()` and `monitor()`, started on first use; its kept-alive
    /// connections are reused across calls.
    pub sampler: std::sync::OnceLock<crate::metrics::sampler::Sampler>,
    /// How many actions a dry run has skipped so far (commands, mutating requests, file
    /// changes): a check during which one was skipped shows as "would run", not as passed.
    pub dry_skipped: std::sync::atomic::AtomicUsize,
    /// What the script recorded about the run with `record::set` (the release it made
    /// live, the one it rolled back from), for report.json and the history.
    pub recorded: Mutex<BTreeMap<String, String>>,
    /// Remote hosts: the inventory, the host of the current `on(...)`, the ssh masters.
    pub remote: crate::remote::Fleet,
    /// The REPL shows the value of an input's one `sample()` call itself (as a table); it
    /// asks that call to hold back its summary line, so the figures are shown once.
    pub held_sample: Mutex<HeldLine>,
    /// The run's headless Chromium for `browser::`, started on the first visit, and the
    /// screenshots taken.
    pub browser: crate::sys::browser::Session,
}

/// A summary line an interactive session shows itself instead (see
/// [`HostState::held_sample`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum HeldLine {
    /// Lines print as they come (every run; the REPL between inputs).
    #[default]
    Off,
    /// The next top-level call holds its line back.
    Armed,
    /// The line that call held back.
    Held(String),
}

/// The value stored as the engine's tag so native functions can find the state.
#[derive(Debug, Clone)]
pub struct StateRef(pub Arc<HostState>);

impl HostState {
    /// Returns a copy of the options.
    pub fn options(&self) -> HostOptions {
        self.options.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Returns true in `--dry-run`.
    pub fn dry_run(&self) -> bool {
        self.options.lock().map(|o| o.dry_run).unwrap_or(true)
    }

    /// In a dry run, says what would happen instead of doing it, and counts it.
    pub fn would(&self, what: &str) {
        self.dry_skipped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.console.info(&format!("  would {what}"));
    }

    /// In a dry run, says that a read-only probe runs for real.
    pub fn read_only(&self, what: &str) {
        if self.dry_run() {
            self.console.info(&format!("  read-only: {what}"));
        }
    }

    /// The number of actions skipped by the dry run so far.
    pub fn dry_skipped(&self) -> usize {
        self.dry_skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The token this thread's waits stop on: the run's, or inside a batch of `on(...)` its
    /// host's (a child of the run's, also cancelled when the batch is given up). Every
    /// command, copy, sample and sleep of the script API waits on this one.
    pub fn token(&self) -> tokio_util::sync::CancellationToken {
        self.remote.token(&self.cancel.token())
    }

    /// Runs a future on the runtime from the (non-async) script thread, stopping early if
    /// the run is cancelled.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output, Cancelled> {
        // Inside a batch of on(...), the host's own token: a batch given up stops it too.
        let token = self.token();
        if self.cancel.is_cancelled() || token.is_cancelled() {
            return Err(Cancelled);
        }
        self.runtime.block_on(or_cancel(&token, fut))
    }

    /// Asks a yes/no question on the terminal. `--yes` answers yes; with no terminal it
    /// answers no and says why. Never assumes yes.
    pub fn confirm(&self, question: &str) -> Result<bool, Cancelled> {
        use std::io::IsTerminal;
        if self.options().yes {
            self.console.info(&format!("{question} yes (--yes)"));
            return Ok(true);
        }
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            self.console.warn(&format!(
                "confirm(\"{question}\"): no terminal to ask on and --yes was not given; answering no"
            ));
            return Ok(false);
        }
        self.console.prompt(&format!("{question} [y/N] "));
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Reading the terminal blocks; a thread keeps Ctrl-C able to end the run meanwhile.
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = self.block_on(rx)?.unwrap_or_default();
        let yes = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
        self.console
            .info(&format!("{question} {}", if yes { "yes" } else { "no" }));
        Ok(yes)
    }

    /// Sleeps, waking at once if the run is cancelled.
    pub fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
        if d.is_zero() {
            return if self.cancel.is_cancelled() {
                Err(Cancelled)
            } else {
                Ok(())
            };
        }
        self.block_on(async move { tokio::time::sleep(d).await })
    }

    /// Holds back `line` when the REPL armed [`HostState::held_sample`] and the call is
    /// made by the input itself, not by a function it calls; true when held. A native
    /// function called by the input runs at call level 1, one called by a script function
    /// at 2 or more.
    pub fn hold_line(&self, call_level: usize, line: &str) -> bool {
        let Ok(mut held) = self.held_sample.lock() else {
            return false;
        };
        if call_level <= 1 && *held == HeldLine::Armed {
            *held = HeldLine::Held(line.to_string());
            return true;
        }
        false
    }

    /// Sleeps like [`HostState::sleep`]; on a terminal the activity's status counts down,
    /// showing `line(time left)` and changing as each second passes.
    pub fn sleep_counting(
        &self,
        activity: &super::console::Activity,
        d: Duration,
        line: impl Fn(Duration) -> String,
    ) -> Result<(), Cancelled> {
        if !activity.live() {
            return self.sleep(d);
        }
        let until = std::time::Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            activity.status(&line(left));
            if left.is_zero() {
                return Ok(());
            }
            self.sleep(super::progress::countdown_step(left))?;
        }
    }
}

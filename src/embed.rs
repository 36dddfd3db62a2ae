//! The embedding API: run deployment scripts from another Rust program.
//!
//! A [`Deployer`] is built once with the run's options, the embedder's own functions and
//! an event callback; [`Deployer::check`] checks a script, [`Deployer::run_file`] and
//! [`Deployer::run_script`] run one as a deployment (lock, phases, rollback, record) and
//! return its [`Outcome`], or an [`Error`] when nothing could run.
//!
//! A run inside a program stops the background processes the script started, but never
//! the program's own children (unlike `deployer run`, it does not adopt and stop every
//! leftover child process). While a run is in progress, SIGINT and SIGTERM cancel it, as
//! Ctrl-C does for `deployer run`.
//!
//! ```no_run
//! use deployer::{Deployer, Event};
//!
//! let deployer = Deployer::builder()
//!     .environment("staging")
//!     .var("base_url", "http://127.0.0.1:8080")
//!     .register(|engine| {
//!         engine.register_fn("app_version", || "1.4.2".to_string());
//!     })
//!     .on_event(|event| {
//!         if let Event::PhaseEnded { record, .. } = event {
//!             eprintln!("phase {} scored {:.1}", record.name, record.score);
//!         }
//!     })
//!     .build();
//! match deployer.run_script("deploy.rhai", r#"phase("Build", || check("version", || app_version() != ""));"#) {
//!     Ok(outcome) => println!("{:?} {:?} exit {}", outcome.verdict, outcome.score, outcome.exit_code),
//!     Err(e) => eprintln!("not run: {e} (exit {})", e.code()),
//! }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::score::Verdict;
use crate::host::console::{Console, Verbosity};
use crate::host::slot::ScriptSlot;
use crate::host::state::HostOptions;
use crate::host::{Bindings, Host};
use crate::pipeline::{Event, PhaseRecord};
use crate::runner::{Embedding, RunRequest};

/// Builds a [`Deployer`]; see [`Deployer::builder`].
#[derive(Default)]
pub struct DeployerBuilder {
    env: Option<String>,
    vars: Vec<(String, String)>,
    dry_run: bool,
    yes: bool,
    timeout: Option<Duration>,
    output: Option<Box<dyn Write + Send>>,
    styled: bool,
    embedding: Embedding,
}

impl DeployerBuilder {
    /// The environment to deploy to (an `[env.NAME]` of the script's deployer.toml); by
    /// default, the one deployer.toml chooses, as `deployer run` without `--env` does.
    pub fn environment(mut self, name: impl Into<String>) -> Self {
        self.env = Some(name.into());
        self
    }

    /// A script variable (`var("name")`), as `--var NAME=VALUE` gives it.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.push((name.into(), value.into()));
        self
    }

    /// Runs no command and sends no mutating request; says what would happen.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Answers yes to every confirmation (`--yes`).
    pub fn yes(mut self, yes: bool) -> Self {
        self.yes = yes;
        self
    }

    /// Stops a run after this long (`--timeout`).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Where the run's messages go (default: stderr); plain text unless [`Self::styled`].
    pub fn output(mut self, out: impl Write + Send + 'static) -> Self {
        self.output = Some(Box::new(out));
        self
    }

    /// Styles the output with colour (ANSI escapes).
    pub fn styled(mut self, yes: bool) -> Self {
        self.styled = yes;
        self
    }

    /// Registers the embedder's own functions, types or modules on the engine, after the
    /// script API (so they can add to it, not replace it by accident).
    pub fn register(mut self, f: impl Fn(&mut rhai::Engine) + Send + Sync + 'static) -> Self {
        self.embedding.register.push(Arc::new(f));
        self
    }

    /// Registers a Rhai module under `name`, so scripts call its functions as `name::f()`.
    pub fn module(self, name: &str, module: rhai::Module) -> Self {
        let (name, module) = (name.to_string(), Arc::new(module));
        self.register(move |engine| {
            engine.register_static_module(name.as_str(), module.clone());
        })
    }

    /// Calls `f` with each pipeline event (phase started and ended, check results, host
    /// results, metrics, rollback requests) as it happens.
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.embedding.on_event = Some(Arc::new(f));
        self
    }

    /// Builds the deployer.
    pub fn build(self) -> Deployer {
        let console = match self.output {
            Some(out) => Console::with_writer(Verbosity::Normal, self.styled, out),
            None => Console::new(Verbosity::Normal, self.styled),
        };
        Deployer {
            env: self.env,
            vars: self.vars,
            dry_run: self.dry_run,
            yes: self.yes,
            timeout: self.timeout,
            console,
            embedding: self.embedding,
        }
    }
}

/// Runs deployment scripts; see the module documentation.
pub struct Deployer {
    env: Option<String>,
    vars: Vec<(String, String)>,
    dry_run: bool,
    yes: bool,
    timeout: Option<Duration>,
    console: Console,
    embedding: Embedding,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run's id (its folder under `.deployer/runs/`).
    pub run_id: String,
    /// `PASS`, `WARNING` or `FAILED`; `None` for a dry run, which is not judged.
    pub verdict: Option<Verdict>,
    /// The total score 0-100, when the script has phases.
    pub score: Option<f64>,
    /// Each phase as it ended.
    pub phases: Vec<PhaseRecord>,
    /// The exit code `deployer run` would end with (see the README's exit codes).
    pub exit_code: i32,
    /// The report as written to report.json (secrets masked).
    pub report: serde_json::Value,
}

/// Nothing ran: the script did not pass the checks, or the run could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The script has problems (each rendered with its file, line, column and caret).
    #[error("{} problem(s) in the script:\n{}", .0.len(), .0.join("\n"))]
    Check(Vec<String>),
    /// The run stopped before the script ran (unknown environment, lock held, ...).
    #[error("{message}")]
    NotRun { message: String, code: i32 },
}

impl Error {
    /// The exit code `deployer` would end with.
    pub fn code(&self) -> i32 {
        match self {
            Error::Check(_) => crate::exit::USAGE,
            Error::NotRun { code, .. } => *code,
        }
    }
}

impl Deployer {
    /// Starts building a deployer.
    pub fn builder() -> DeployerBuilder {
        DeployerBuilder::default()
    }

    /// Checks a script and the modules it imports without running it: unknown functions
    /// and options, wrong argument counts, syntax errors.
    pub fn check(&self, name: &str, text: &str) -> Result<(), Error> {
        let register = |engine: &mut rhai::Engine| {
            crate::api::register_all(engine);
            for f in &self.embedding.register {
                f(engine);
            }
        };
        let bindings = Bindings {
            register: &register,
            ..crate::api::bindings()
        };
        let host = Host::new(
            HostOptions::default(),
            self.console.clone(),
            bindings,
            ScriptSlot::new(),
        )
        .map_err(|e| Error::NotRun {
            message: e.to_string(),
            code: crate::exit::FAILED,
        })?;
        host.check(name, text).map(|_| ()).map_err(|diags| {
            Error::Check(
                diags
                    .iter()
                    .map(|d| d.render(&host.state.sources, &self.console).0)
                    .collect(),
            )
        })
    }

    /// Runs a script file as a deployment: its deployer.toml is the one beside it.
    pub fn run_file(&self, path: impl AsRef<Path>) -> Result<Outcome, Error> {
        self.run_request(path.as_ref().to_path_buf(), None)
    }

    /// Runs a script given as text; `name` names it in messages and the report, and places
    /// it (deployer.toml is looked up from its folder, the current one for a bare name).
    pub fn run_script(&self, name: &str, text: &str) -> Result<Outcome, Error> {
        self.run_request(PathBuf::from(name), Some(text.to_string()))
    }

    fn run_request(&self, script: PathBuf, text: Option<String>) -> Result<Outcome, Error> {
        let req = RunRequest {
            script,
            env: self.env.clone(),
            vars: self.vars.clone(),
            dry_run: self.dry_run,
            yes: self.yes,
            timeout: self.timeout,
            text,
            embedding: self.embedding.clone(),
            embedded: true,
            ..RunRequest::default()
        };
        let seen = self.console.transcript().len();
        let ran = crate::runner::run(&req, self.console.clone());
        let Some(report) = ran.report else {
            let said = self.console.transcript();
            let message = said[seen.min(said.len())..]
                .iter()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or("the run did not start")
                .to_string();
            return Err(Error::NotRun {
                message,
                code: ran.code,
            });
        };
        let masker = self.console.masker.clone();
        let mask = move |s: &str| masker.mask(s);
        Ok(Outcome {
            run_id: report.run_id.clone(),
            verdict: report.verdict,
            score: report.score,
            phases: report.phases.clone(),
            exit_code: ran.code,
            report: crate::report::record::masked_json(&report, &mask),
        })
    }
}

/// Collects everything written to it; clones share the text (for tests and embedders that
/// show the output themselves).
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The text written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

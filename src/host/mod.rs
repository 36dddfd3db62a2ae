//! The Rhai engine: building it, module resolution, limits, cancellation, static checks and
//! error rendering. It knows nothing of deployments.

pub mod check;
pub mod console;
pub mod diagnostic;
pub mod errors;
pub mod input;
pub mod memory;
pub mod present;
pub mod progress;
pub mod resolver;
pub mod slot;
pub mod sources;
pub mod state;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};

use crate::sys::cancel::{Cancel, CancelReason};
use check::{check_script, Catalog};
use console::Console;
use diagnostic::Diagnostic;
use errors::{message_of, value_message};
use resolver::Resolver;
use slot::ScriptSlot;
use sources::SourceMap;
use state::{HostOptions, HostState, StateRef};

pub use slot::call_script_fn;

/// What a host registers on its engine, given by its caller: the script API
/// (`crate::api::bindings()`), with whatever an embedder adds. The engine itself knows no
/// function of its own.
#[derive(Clone, Copy)]
pub struct Bindings<'a> {
    /// Registers functions, types and modules on the engine.
    pub register: &'a dyn Fn(&mut Engine),
    /// The option names of the registered functions that take an option map, which
    /// `check` checks literal maps against.
    pub option_lists: &'a [crate::core::options::OptionList],
}

/// A script that passed the static checks.
pub struct Checked {
    pub ast: AST,
    /// Phases named by literal `phase("Name", ...)` calls, in source order.
    pub phases: Vec<crate::pipeline::PlannedPhase>,
    /// Problems that do not stop the script (printed before it runs).
    pub warnings: Vec<Diagnostic>,
    /// The variables the script and its modules read with `var()`.
    pub vars: check::VarsRead,
}

/// A scripting host: one engine, one runtime, one cancellation signal, one console.
pub struct Host {
    pub engine: Engine,
    pub state: Arc<HostState>,
    // Kept alive for the handle in `state`; dropped last.
    _runtime: tokio::runtime::Runtime,
    catalog: OnceLock<Catalog>,
    option_lists: Vec<crate::core::options::OptionList>,
    /// The `--timeout` timer, stopped when the rollback starts (it has its own bound).
    timeout_task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Where the private folder for `spawn()` logs is made: `$XDG_RUNTIME_DIR` (per user, mode
/// 0700) when set, else the system's temporary folder.
fn log_base() -> std::path::PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// How long hooks may run after an interrupt: `DEPLOYER_HOOK_TIMEOUT` (a duration), else 10 s.
pub fn hook_timeout() -> Result<Duration, String> {
    env_duration("DEPLOYER_HOOK_TIMEOUT", Duration::from_secs(10))
}

/// Reads a duration from an environment variable, or `default` when it is unset.
pub fn env_duration(name: &str, default: Duration) -> Result<Duration, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => crate::core::duration::parse_duration(v.trim())
            .map_err(|e| format!("{name}={v:?}: {e}; give a duration such as 10s or 5m")),
        _ => Ok(default),
    }
}

/// The host could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the async runtime: {0}")]
pub struct HostError(#[from] std::io::Error);

impl Host {
    /// Builds the engine with `bindings` registered. `script` receives the script this host
    /// runs, unless its caller has put a newer version there (watch mode, the REPL).
    pub fn new(
        options: HostOptions,
        console: Console,
        bindings: Bindings,
        script: ScriptSlot,
    ) -> Result<Host, HostError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("deployer-io")
            .enable_all()
            .build()?;
        let owns_process = options.owns_process;
        let sources = Arc::new(SourceMap::default());
        let state = Arc::new(HostState {
            options: Mutex::new(options),
            runtime: runtime.handle().clone(),
            cancel: Arc::new(Cancel::default()),
            console,
            processes: Default::default(),
            http: Default::default(),
            sources: sources.clone(),
            log_dir: log_base(),
            retries: Mutex::new(Vec::new()),
            pipeline: Default::default(),
            script,
            sampler: OnceLock::new(),
            dry_skipped: Default::default(),
            recorded: Mutex::new(Default::default()),
            remote: Default::default(),
            held_sample: Default::default(),
            browser: Default::default(),
        });
        // Orphans of the run's commands come back to deployer, which stops them at the end.
        if owns_process {
            crate::sys::reaper::become_subreaper();
        }
        let mut engine = Engine::new();
        engine
            .set_max_call_levels(128)
            .set_max_expr_depths(128, 64)
            .set_max_string_size(64 * 1024 * 1024)
            .set_max_array_size(1_000_000)
            .set_max_map_size(100_000)
            .set_max_modules(1000)
            // Long deploys run for hours; runaway loops end by --timeout or Ctrl-C.
            .set_max_operations(0)
            .set_strict_variables(true)
            .set_fail_on_invalid_map_property(true);
        engine.set_default_tag(Dynamic::from(StateRef(state.clone())));
        engine.set_module_resolver(Resolver::new(sources));
        let cancel = state.cancel.clone();
        engine.on_progress(move |_| {
            if cancel.is_cancelled() {
                Some(Dynamic::from("cancelled"))
            } else if memory::in_use() > memory::limit() {
                // Rhai's size limits miss aggregates (a map of large strings): stop here,
                // before the allocator fails and aborts the process.
                Some(Dynamic::from(memory::exceeded_message()))
            } else {
                None
            }
        });
        let out = state.console.clone();
        engine.on_print(move |s| out.print(s));
        let dbg = state.console.clone();
        engine.on_debug(move |s, src, pos| {
            let at = match (src, pos.line()) {
                (Some(src), Some(line)) => format!("{src}:{line}: "),
                _ => String::new(),
            };
            dbg.debug(&format!("debug: {at}{s}"));
        });
        (bindings.register)(&mut engine);
        Ok(Host {
            engine,
            state,
            _runtime: runtime,
            catalog: OnceLock::new(),
            option_lists: bindings.option_lists.to_vec(),
            timeout_task: Mutex::new(None),
        })
    }

    /// Returns the catalog of callable functions (built on first use).
    pub fn catalog(&self) -> &Catalog {
        self.catalog
            .get_or_init(|| Catalog::of(&self.engine).with_options(&self.option_lists))
    }

    /// Compiles a script and checks it and its imports. Returns the AST (and the phases
    /// it names) only when there are no problems.
    pub fn check(&self, name: &str, text: &str) -> Result<Checked, Vec<Diagnostic>> {
        let report = check_script(
            &self.engine,
            self.catalog(),
            &self.state.sources,
            name,
            text,
        );
        match report.ast {
            Some(ast) if report.diags.is_empty() => Ok(Checked {
                ast,
                phases: report.phases,
                warnings: report.warnings,
                vars: report.vars,
            }),
            _ => Err(report.diags),
        }
    }

    /// Calls a function the script defines (`rollback`, `on_finish`, `on_alert`); see
    /// [`call_script_fn`].
    pub fn call_fn(
        &self,
        ast: &AST,
        name: &str,
        args: Vec<Dynamic>,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        call_script_fn(&self.engine, ast, name, args)
    }

    /// Returns true when the script defines `name` with `arity` parameters.
    pub fn defines(ast: &AST, name: &str, arity: usize) -> bool {
        slot::defines(ast, name, arity)
    }

    /// Where a script function is defined (`line:col` of its body), if it is.
    pub fn position_of(ast: &AST, name: &str, arity: usize) -> Option<(usize, usize)> {
        ast.iter_fn_def()
            .find(|def| def.name == name && def.params.len() == arity)
            .and_then(|def| {
                let pos = def.body.start_position();
                Some((pos.line()?, pos.position().unwrap_or(1)))
            })
    }

    /// Runs a compiled script in a new scope.
    pub fn run(&self, ast: &AST) -> Result<Dynamic, Box<EvalAltResult>> {
        self.state.script.fill(ast);
        let mut scope = Scope::new();
        self.engine.eval_ast_with_scope(&mut scope, ast)
    }

    /// Turns a runtime error into a diagnostic pointing into the right file.
    pub fn diagnose(&self, err: &EvalAltResult, source: &str) -> Diagnostic {
        let describe = |e: &EvalAltResult| -> (String, Vec<String>) {
            match e {
                EvalAltResult::ErrorFunctionNotFound(sig, _) => {
                    let name = sig.split([' ', '(']).next().unwrap_or(sig);
                    let help = self
                        .catalog()
                        .suggest(name)
                        .map(|s| vec![format!("did you mean `{s}`?")])
                        .unwrap_or_default();
                    (format!("unknown function: {sig}"), help)
                }
                EvalAltResult::ErrorTerminated(v, _) => (
                    self.state
                        .cancel
                        .reason()
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| v.to_string()),
                    vec![],
                ),
                EvalAltResult::ErrorRuntime(v, _) => (value_message(v), vec![]),
                EvalAltResult::ErrorPropertyNotFound(name, _) => (
                    format!("the map has no property `{name}`"),
                    vec![format!(
                        "write `value.get(\"{name}\")` to get () when it may be missing, or test `\"{name}\" in value`"
                    )],
                ),
                other => (message_of(other), vec![]),
            }
        };
        Diagnostic::from_eval(err, source, &describe)
    }

    /// Prints a diagnostic to stderr (masked).
    pub fn print(&self, d: &Diagnostic) {
        let (plain, styled) = d.render(&self.state.sources, &self.state.console);
        self.state.console.block(&plain, &styled);
    }

    /// Cancels the run on SIGINT, SIGTERM, SIGHUP or SIGQUIT. A second signal hurries the
    /// end: every running command group and background process is killed at once
    /// (SIGKILL) and hooks are cut short, but the run still releases its lock and is
    /// recorded as interrupted. Should even that hang, the process exits 10 s later.
    pub fn install_signal_handlers(&self) {
        let mut seen = 0;
        self.on_signals(move |state, name| {
            seen += 1;
            if seen == 1 {
                state.cancel.cancel(CancelReason::Signal(name));
                return;
            }
            state.console.error(&format!(
                "second signal ({name}): killing every running command and background process now; the run is still recorded"
            ));
            state.cancel.hurry(CancelReason::Signal(name));
            crate::sys::process::signal_running_groups(libc::SIGKILL);
            state.processes.stop_all(Duration::ZERO);
            if seen == 2 {
                let state_console = state.console.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(10));
                    crate::sys::process::signal_running_groups(libc::SIGKILL);
                    state_console.clear_progress();
                    std::process::exit(crate::exit::INTERRUPTED);
                });
            }
        });
    }

    /// For interactive sessions (`deployer repl`): each SIGINT cancels the evaluation in
    /// progress (its sleeps, probes and child process groups stop) and the session goes on;
    /// the session calls `state.cancel.reset()` before the next evaluation. SIGTERM, SIGHUP
    /// and SIGQUIT stop background processes and exit. `run` keeps
    /// [`Host::install_signal_handlers`].
    pub fn install_interactive_signal_handlers(&self) {
        self.on_signals(|state, name| {
            state.cancel.cancel(CancelReason::Signal(name));
            if name != "SIGINT" {
                crate::sys::process::signal_running_groups(libc::SIGKILL);
                state.processes.stop_all(Duration::ZERO);
                let mut keep = state.processes.tracked_pids();
                keep.extend(crate::sys::process::running_pids());
                crate::sys::reaper::stop_orphans(
                    &keep,
                    &state.processes.detached_pids(),
                    Duration::ZERO,
                );
                state.processes.remove_log_dir();
                state.console.clear_progress();
                std::process::exit(crate::exit::INTERRUPTED);
            }
        });
    }

    /// Calls `handle` with the signal's name for every SIGINT, SIGTERM, SIGHUP and SIGQUIT.
    fn on_signals(&self, mut handle: impl FnMut(&HostState, &'static str) + Send + 'static) {
        let state = self.state.clone();
        self.state.runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
                signal(SignalKind::quit()),
            ) else {
                return;
            };
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                    _ = quit.recv() => "SIGQUIT",
                };
                handle(&state, name);
            }
        });
    }

    /// Cancels the run after `limit`.
    pub fn start_timeout(&self, limit: Duration) {
        let cancel = self.state.cancel.clone();
        let task = self.state.runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            cancel.cancel(CancelReason::Timeout(limit));
        });
        if let Ok(mut t) = self.timeout_task.lock() {
            *t = Some(task.abort_handle());
        }
    }

    /// Stops the `--timeout` timer (the rollback is bounded by its own limit instead).
    pub fn stop_timeout(&self) {
        if let Some(task) = self.timeout_task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }

    /// Runs `f` (a hook or the rollback) bounded by `limit`: after `limit` the run is
    /// cancelled with `reason(limit)`, which stops `f` at its next operation, sleep, probe
    /// or command. A signal still stops it at once. Callers reset an earlier cancellation
    /// first when `f` must run after it.
    pub fn bounded<T>(
        &self,
        limit: Duration,
        reason: impl FnOnce(Duration) -> CancelReason + Send + 'static,
        f: impl FnOnce() -> T,
    ) -> T {
        let cancel = self.state.cancel.clone();
        let token = cancel.token();
        let timer = self.state.runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            // Only this evaluation: a reset since then made a new token.
            if !token.is_cancelled() {
                cancel.cancel(reason(limit));
            }
        });
        let out = f();
        timer.abort();
        out
    }

    /// Stops every background process the run started and every leftover process its
    /// commands left running (orphans come back to deployer, the subreaper); reports them.
    /// Detached processes (`spawn(.., #{ detach: true })`) keep running.
    pub fn stop_processes(&self) {
        // The browser first: its helpers would otherwise be taken for orphans.
        self.state.browser.close();
        let grace = if self.state.cancel.is_cancelled() {
            crate::sys::process::CANCEL_GRACE
        } else {
            crate::sys::spawn::STOP_GRACE
        };
        for (display, outcome) in self.state.processes.stop_all(grace) {
            self.state.console.info(&format!(
                "stopped background process `{display}` ({outcome})"
            ));
        }
        let grace = if self.state.cancel.is_cancelled() {
            crate::sys::process::CANCEL_GRACE
        } else {
            crate::sys::reaper::ORPHAN_GRACE
        };
        // The ssh masters first: closing them ends every remote command still running.
        for host in self.state.remote.close_all() {
            self.state
                .console
                .debug(&format!("closed the ssh connection to {host}"));
        }
        self.stop_orphans(grace);
    }

    fn stop_orphans(&self, grace: Duration) {
        if !self.state.options().owns_process {
            return;
        }
        let procs = &self.state.processes;
        let mut keep = procs.tracked_pids();
        keep.extend(crate::sys::process::running_pids());
        let stopped = crate::sys::reaper::stop_orphans(&keep, &procs.detached_pids(), grace);
        if !stopped.is_empty() {
            self.state
                .console
                .warn(&crate::sys::reaper::describe(&stopped));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.state.browser.close();
        self.state
            .processes
            .stop_all(crate::sys::process::CANCEL_GRACE);
        self.stop_orphans(crate::sys::process::CANCEL_GRACE);
        self.state.processes.remove_log_dir();
    }
}

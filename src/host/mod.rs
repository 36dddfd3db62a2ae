//! The Rhai engine: building it, module resolution, limits, cancellation, static checks and
//! error rendering. It knows nothing of deployments.

pub mod check;
pub mod console;
pub mod diagnostic;
pub mod input;
pub mod memory;
pub mod resolver;
pub mod sources;
pub mod state;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};

use crate::api::error::{message_of, value_message};
use crate::sys::cancel::{Cancel, CancelReason};
use check::{check_script, Catalog};
use console::Console;
use diagnostic::Diagnostic;
use resolver::Resolver;
use sources::SourceMap;
use state::{HostOptions, HostState, StateRef};

/// Calls a function a script defines after running only the script's `import` statements,
/// so the function sees its modules but nothing else of the script runs again.
pub fn call_script_fn(
    engine: &Engine,
    ast: &AST,
    name: &str,
    args: Vec<Dynamic>,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let imports: Vec<rhai::Stmt> = ast
        .statements()
        .iter()
        .filter(|s| matches!(s, rhai::Stmt::Import(..)))
        .cloned()
        .collect();
    let mut prelude = ast.clone_functions_only();
    prelude.combine(AST::new(imports, rhai::Module::new()));
    if let Some(src) = ast.source() {
        prelude.set_source(src);
    }
    let mut scope = Scope::new();
    let options = rhai::CallFnOptions::new().eval_ast(true).rewind_scope(true);
    engine.call_fn_with_options::<Dynamic>(options, &mut scope, &prelude, name, args)
}

/// A script that passed the static checks.
pub struct Checked {
    pub ast: AST,
    /// Phases named by literal `phase("Name", ...)` calls, in source order.
    pub phases: Vec<crate::pipeline::PlannedPhase>,
    /// Problems that do not stop the script (printed before it runs).
    pub warnings: Vec<Diagnostic>,
}

/// A scripting host: one engine, one runtime, one cancellation signal, one console.
pub struct Host {
    pub engine: Engine,
    pub state: Arc<HostState>,
    // Kept alive for the handle in `state`; dropped last.
    _runtime: tokio::runtime::Runtime,
    catalog: OnceLock<Catalog>,
}

/// The host could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the async runtime: {0}")]
pub struct HostError(#[from] std::io::Error);

impl Host {
    /// Builds the engine with the whole script API registered.
    pub fn new(options: HostOptions, console: Console) -> Result<Host, HostError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("deployer-io")
            .enable_all()
            .build()?;
        let sources = Arc::new(SourceMap::default());
        let state = Arc::new(HostState {
            options: Mutex::new(options),
            runtime: runtime.handle().clone(),
            cancel: Arc::new(Cancel::default()),
            console,
            processes: Default::default(),
            http: Default::default(),
            sources: sources.clone(),
            log_dir: std::env::temp_dir().join(format!("deployer-{}", std::process::id())),
            retries: Mutex::new(Vec::new()),
            pipeline: Mutex::new(Default::default()),
            latest_ast: Mutex::new(None),
            sampler: OnceLock::new(),
        });
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
        crate::api::register(&mut engine);
        Ok(Host {
            engine,
            state,
            _runtime: runtime,
            catalog: OnceLock::new(),
        })
    }

    /// Returns the catalog of callable functions (built on first use).
    pub fn catalog(&self) -> &Catalog {
        self.catalog.get_or_init(|| Catalog::of(&self.engine))
    }

    /// Compiles a script and checks it and its imports. Returns the AST (and the phases
    /// it names) only when there are no problems.
    pub fn check(&self, name: &str, text: &str) -> Result<Checked, Vec<Diagnostic>> {
        let (ast, phases, diags, warnings) = check_script(
            &self.engine,
            self.catalog(),
            &self.state.sources,
            name,
            text,
        );
        match ast {
            Some(ast) if diags.is_empty() => Ok(Checked {
                ast,
                phases,
                warnings,
            }),
            _ => Err(diags),
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
        ast.iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }

    /// Runs a compiled script in a new scope.
    pub fn run(&self, ast: &AST) -> Result<Dynamic, Box<EvalAltResult>> {
        if let Ok(mut latest) = self.state.latest_ast.lock() {
            if latest.is_none() {
                *latest = Some(Arc::new(ast.clone()));
            }
        }
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

    /// Cancels the run on SIGINT/SIGTERM; a second signal exits at once (after killing
    /// background process groups), so deployer can never hang on shutdown.
    pub fn install_signal_handlers(&self) {
        let mut seen = 0;
        self.on_signals(move |state, name| {
            seen += 1;
            if seen == 1 {
                state.cancel.cancel(CancelReason::Signal(name));
            } else {
                state.console.error(&format!(
                    "second {name}: stopping background processes and exiting now"
                ));
                state.processes.stop_all(Duration::ZERO);
                std::process::exit(crate::exit::INTERRUPTED);
            }
        });
    }

    /// For interactive sessions (`deployer repl`): each SIGINT cancels the evaluation in
    /// progress (its sleeps, probes and child process groups stop) and the session goes on;
    /// the session calls `state.cancel.reset()` before the next evaluation. SIGTERM stops
    /// background processes and exits. `run` keeps [`Host::install_signal_handlers`].
    pub fn install_interactive_signal_handlers(&self) {
        self.on_signals(|state, name| {
            state.cancel.cancel(CancelReason::Signal(name));
            if name == "SIGTERM" {
                state.processes.stop_all(Duration::ZERO);
                std::process::exit(crate::exit::INTERRUPTED);
            }
        });
    }

    /// Calls `handle` with the signal's name for every SIGINT and SIGTERM.
    fn on_signals(&self, mut handle: impl FnMut(&HostState, &'static str) + Send + 'static) {
        let state = self.state.clone();
        self.state.runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                handle(&state, name);
            }
        });
    }

    /// Checks a new version of the running script and, when it passes, makes it the version
    /// hooks look their functions up in (`HostState::latest_ast`: a monitor's `on_alert` and
    /// `fn thresholds()`), so an edit applies at the next tick while the run goes on. When it
    /// does not pass, the previous version stays and the problems are returned.
    pub fn reload_latest(&self, name: &str, text: &str) -> Result<(), Vec<Diagnostic>> {
        let checked = self.check(name, text)?;
        if let Ok(mut latest) = self.state.latest_ast.lock() {
            *latest = Some(Arc::new(checked.ast));
        }
        Ok(())
    }

    /// Cancels the run after `limit`.
    pub fn start_timeout(&self, limit: Duration) {
        let cancel = self.state.cancel.clone();
        self.state.runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            cancel.cancel(CancelReason::Timeout(limit));
        });
    }

    /// Stops every background process the run started; reports each one stopped.
    pub fn stop_processes(&self) {
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
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.state
            .processes
            .stop_all(crate::sys::process::CANCEL_GRACE);
    }
}

//! A REPL session: one Host built like `deployer run` builds it, the variables, functions
//! and imports kept between inputs, and the `:` commands.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use rhai::{Dynamic, EvalAltResult, Expr, Scope, Stmt, AST};

use super::docs::{self, Origin, Vocabulary};
use super::render;
use crate::config::{self, Config, EnvConfig};
use crate::core::suggest::nearest;
use crate::host::console::{Console, Style};
use crate::host::diagnostic::Diagnostic;
use crate::host::resolver::Resolver;
use crate::host::slot::ScriptSlot;
use crate::host::state::{HeldLine, HostOptions};
use crate::host::{Host, HostError};
use crate::watch::WatchHandle;

/// The commands: name, argument, what it does.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (":help", "", "this help"),
    (
        ":functions",
        "[FILTER]",
        "functions you can call (a FILTER searches Rhai's standard library too)",
    ),
    (":doc", "NAME", "a function's documentation and example"),
    (":scope", "", "the session's variables"),
    (
        ":load",
        "FILE",
        "run a file and keep its functions (reloaded when it changes)",
    ),
    (":reload", "", "run the last loaded file again"),
    (
        ":env",
        "[NAME]",
        "show the environment, or switch to another of deployer.toml",
    ),
    (":dry-run", "on|off", "show or switch dry-run mode"),
    (
        ":clear",
        "",
        "forget variables, functions and imports; stop background processes",
    ),
    (":quit", "", "leave the REPL (Ctrl-D does too)"),
];

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub env: Option<String>,
    pub vars: Vec<(String, String)>,
    pub dry_run: bool,
    pub yes: bool,
    /// Where deployer.toml is looked for (upward): the FILE's folder, else the current one.
    pub config_from: PathBuf,
}

/// How an input went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Quit,
}

/// An `import` the session keeps.
#[derive(Debug, Clone)]
struct Import {
    alias: String,
    path: String,
    /// The source that imported it (paths are relative to its folder).
    source: String,
}

/// The session; see the module documentation.
pub struct Session {
    host: Host,
    /// The session's functions, where a monitor's hooks look theirs up.
    script: ScriptSlot,
    console: Console,
    scope: Scope<'static>,
    /// Every function defined so far (no statements).
    fns: AST,
    /// The source each session function was defined in, for error locations.
    defined_in: HashMap<String, String>,
    imports: Vec<Import>,
    inputs: usize,
    loaded: Option<PathBuf>,
    config: Config,
    env: EnvConfig,
    cli_vars: Vec<(String, String)>,
    /// The script whose `[scripts.STEM]` variables apply (`--var` still wins).
    config_from: PathBuf,
    vocab: Arc<RwLock<Vocabulary>>,
    api_modules: BTreeSet<String>,
    watch: Option<WatchHandle>,
    /// The thread reading Rhai's standard library docs, until they are needed and ready.
    std_docs: Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    /// Builds the host the way `deployer run` does: deployer.toml's environment, its
    /// variables overridden by `--var`, `--dry-run` and `--yes`.
    pub fn new(
        settings: &Settings,
        console: Console,
        vocab: Arc<RwLock<Vocabulary>>,
    ) -> Result<Session, String> {
        let config = config::for_script(&settings.config_from).map_err(|e| e.to_string())?;
        let env = match config.select(settings.env.as_deref()) {
            Ok(selected) => {
                if let Some(w) = &selected.warning {
                    console.warn(w);
                }
                selected.env
            }
            Err(e) if settings.env.is_some() => return Err(e.to_string()),
            Err(e) => {
                console.warn(&format!("{e}; using no environment (:env NAME picks one)"));
                EnvConfig {
                    name: "default".into(),
                    ..EnvConfig::default()
                }
            }
        };
        let mut vars = config.vars_for(&settings.config_from, &env);
        vars.extend(settings.vars.iter().cloned());
        let options = HostOptions {
            env: env.name.clone(),
            vars,
            dry_run: settings.dry_run,
            yes: settings.yes,
            state_dir: Some(config.state_dir.clone()),
            owns_process: true,
        };
        let script = ScriptSlot::new();
        let host = new_host(options, &console, &script).map_err(|e| e.to_string())?;
        let api_modules = host.catalog().modules.keys().cloned().collect();
        let mut session = Session {
            host,
            script,
            console,
            scope: Scope::new(),
            fns: AST::empty(),
            defined_in: HashMap::new(),
            imports: Vec::new(),
            inputs: 0,
            loaded: None,
            config,
            env,
            cli_vars: settings.vars.clone(),
            config_from: settings.config_from.clone(),
            vocab,
            api_modules,
            watch: None,
            std_docs: Mutex::new(None),
        };
        session.refresh();
        Ok(session)
    }

    /// Gives the session the thread that reads Rhai's standard library docs.
    pub fn set_std_docs(&mut self, handle: Option<JoinHandle<()>>) {
        self.std_docs = Mutex::new(handle);
    }

    /// Waits for Rhai's standard library docs (read in the background at start).
    fn std_docs_ready(&self) {
        let handle = self.std_docs.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Gives the session the watcher of loaded files and modules.
    pub fn set_watch(&mut self, watch: WatchHandle) {
        self.watch = Some(watch);
        self.watch_sources();
    }

    /// The prompt: the environment and dry-run mode.
    pub fn prompt(&self) -> String {
        let mut p = "deployer".to_string();
        if self.env.name != "default" {
            p.push_str(&format!("[{}]", self.env.name));
        }
        if self.host.state.dry_run() {
            p.push_str(" (dry-run)");
        }
        p.push_str("> ");
        p
    }

    /// One line saying where the session stands, for the banner.
    pub fn banner(&self) -> String {
        format!(
            "deployer repl: environment {}{}. :help lists commands; Tab completes; Ctrl-C stops an evaluation; Ctrl-D quits.",
            self.env.name,
            if self.host.state.dry_run() {
                ", dry run"
            } else {
                ""
            }
        )
    }

    /// Handles one input: a `:` command or Rhai code.
    pub fn handle(&mut self, input: &str) -> Outcome {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Outcome::Ok;
        }
        if trimmed.starts_with(':') {
            return self.command(trimmed);
        }
        self.eval_input(input)
    }

    fn eval_input(&mut self, text: &str) -> Outcome {
        self.inputs += 1;
        let name = format!("<input {}>", self.inputs);
        self.host.state.sources.insert(&name, text, None);
        let mut ast = match self.host.engine.compile_with_scope(&self.scope, text) {
            Ok(ast) => ast,
            Err(e) => {
                self.host.print(&Diagnostic::from_parse(&e, &name));
                return Outcome::Failed;
            }
        };
        ast.set_source(name.as_str());
        // An input that ends in its one sample() call shows the result as a table: the
        // call holds its summary line back so the figures are shown once.
        let arm = ends_in_its_only_sample_call(&ast);
        self.set_held(if arm { HeldLine::Armed } else { HeldLine::Off });
        let result = self.run(ast, &name);
        let held = self.set_held(HeldLine::Off);
        if let HeldLine::Held(line) = held {
            if !result.as_ref().is_some_and(render::is_sample) {
                self.console.info(&line);
            }
        }
        match result {
            Some(v) => {
                self.show(&v);
                Outcome::Ok
            }
            None => Outcome::Failed,
        }
    }

    /// Sets what a sample() call does with its summary line; returns what it was.
    fn set_held(&self, to: HeldLine) -> HeldLine {
        match self.host.state.held_sample.lock() {
            Ok(mut held) => std::mem::replace(&mut *held, to),
            Err(_) => HeldLine::Off,
        }
    }

    /// Runs statements in the session: its functions defined, its variables and imports
    /// kept. Prints the error of a failed run; returns the value of a good one.
    fn run(&mut self, ast: AST, name: &str) -> Option<Dynamic> {
        for f in ast.iter_functions() {
            self.defined_in.insert(f.name.to_string(), name.to_string());
        }
        let mut full = self.fns.clone();
        full += ast.clone();
        full.set_source(name);
        // Ctrl-C cancelled the previous evaluation at most; this one starts afresh.
        self.host.state.cancel.reset();
        let result = self
            .host
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &full);
        self.fns = full.clone_functions_only();
        self.keep_imports(&ast, name);
        self.tidy_scope();
        self.refresh();
        self.watch_sources();
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let e = self.relocate(*e, name);
                let mut d = self.host.diagnose(&e, name);
                self.explain_call(&e, &mut d);
                self.host.print(&d);
                None
            }
        }
    }

    /// A call to a known function with the wrong arguments: show how it is called (the
    /// session's own functions included) rather than a distant name.
    fn explain_call(&self, err: &EvalAltResult, d: &mut Diagnostic) {
        let EvalAltResult::ErrorFunctionNotFound(sig, _) = crate::api::error::innermost(err) else {
            return;
        };
        let fname = sig.split([' ', '(']).next().unwrap_or(sig);
        let Ok(v) = self.vocab.read() else { return };
        let found = v.lookup(fname);
        if !found.is_empty() {
            let sigs: Vec<&str> = found.iter().map(|f| f.signature.as_str()).collect();
            d.help = vec![format!("`{fname}` is called as: {}", sigs.join("  |  "))];
        }
    }

    /// Errors inside a session function name the input being run as their source; point
    /// them at the input (or file) that defined the function instead.
    fn relocate(&self, err: EvalAltResult, current: &str) -> EvalAltResult {
        match err {
            EvalAltResult::ErrorInFunctionCall(fname, src, inner, pos) => {
                let src = if src.is_empty() || src == current {
                    self.defined_in.get(&fname).cloned().unwrap_or(src)
                } else {
                    src
                };
                let inner = self.relocate(*inner, current);
                EvalAltResult::ErrorInFunctionCall(fname, src, Box::new(inner), pos)
            }
            other => other,
        }
    }

    fn show(&self, value: &Dynamic) {
        if value.is_unit() {
            return;
        }
        let names = |n: &str| self.host.engine.map_type_name(n).to_string();
        let text = self.console.mask(&render::render(value, &names));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Keeps the top-level imports of `ast` for later inputs, as static modules.
    fn keep_imports(&mut self, ast: &AST, source: &str) {
        for stmt in ast.statements() {
            let Stmt::Import(x, _) = stmt else { continue };
            let (Expr::StringConstant(path, _), alias) = (&x.0, &x.1) else {
                continue;
            };
            if alias.name.is_empty() {
                continue;
            }
            let import = Import {
                alias: alias.name.to_string(),
                path: path.to_string(),
                source: source.to_string(),
            };
            if self.register(&import).is_ok() {
                self.imports.retain(|i| i.alias != import.alias);
                self.imports.push(import);
            }
        }
    }

    fn register(&mut self, import: &Import) -> Result<(), Box<EvalAltResult>> {
        let module = self.host.engine.module_resolver().resolve(
            &self.host.engine,
            Some(&import.source),
            &import.path,
            rhai::Position::NONE,
        )?;
        self.host
            .engine
            .register_static_module(import.alias.as_str(), module);
        Ok(())
    }

    /// Reads modules afresh (they may have changed) and imports the session's modules again.
    /// Returns the errors of those that no longer load.
    fn reimport(&mut self) -> Vec<String> {
        self.host
            .engine
            .set_module_resolver(Resolver::new(self.host.state.sources.clone()));
        let mut errors = Vec::new();
        for import in self.imports.clone() {
            if let Err(e) = self.register(&import) {
                let d = self.host.diagnose(&e, &import.source);
                errors.push(self.render_diag(&d));
            }
        }
        errors
    }

    /// Drops shadowed variables (a `let` typed again), so `:scope` shows each name once.
    fn tidy_scope(&mut self) {
        let mut seen = HashSet::new();
        let mut keep: Vec<(String, bool, Dynamic)> = Vec::new();
        // `iter_raw` goes from the newest entry to the oldest.
        let entries: Vec<(&str, bool, &Dynamic)> = self.scope.iter_raw().collect();
        for (name, constant, value) in entries {
            if seen.insert(name) {
                keep.push((name.to_string(), constant, value.clone()));
            }
        }
        if keep.len() == self.scope.len() {
            return;
        }
        let mut scope = Scope::new();
        for (name, constant, value) in keep.into_iter().rev() {
            if constant {
                scope.push_constant_dynamic(name, value);
            } else {
                scope.push_dynamic(name, value);
            }
        }
        self.scope = scope;
    }

    /// Updates what completion knows and what a monitor's hooks see.
    fn refresh(&mut self) {
        self.script.replace(self.fns.clone());
        let json = self
            .host
            .engine
            .gen_fn_metadata_with_ast_to_json(&self.fns, false)
            .unwrap_or_default();
        let mut fns = docs::from_metadata(&json, Origin::Api, &self.api_modules);
        fns.extend(docs::from_table(crate::api::exec::SPAWN_DOC));
        fns.extend(docs::from_table(crate::api::env::VAR_DOC));
        let mut modules: Vec<String> = self.api_modules.iter().cloned().collect();
        modules.extend(self.imports.iter().map(|i| i.alias.clone()));
        modules.sort();
        modules.dedup();
        let vars = self
            .scope
            .iter_raw()
            .map(|(n, _, _)| n.to_string())
            .collect();
        if let Ok(mut v) = self.vocab.write() {
            v.fns = fns;
            v.vars = vars;
            v.modules = modules;
            v.envs = self.config.envs.keys().cloned().collect();
        }
    }

    /// Watches the loaded file and every module file loaded so far.
    fn watch_sources(&self) {
        let Some(watch) = &self.watch else { return };
        let mut files = self.host.state.sources.files();
        files.extend(self.loaded.clone());
        if let Err(e) = watch.watch(files) {
            self.console.warn(&e.to_string());
        }
    }

    fn render_diag(&self, d: &Diagnostic) -> String {
        let (plain, styled) = d.render(&self.host.state.sources, &self.console);
        self.console
            .mask(if self.console.color { &styled } else { &plain })
    }

    // ------------------------------------------------------------------ commands

    fn command(&mut self, line: &str) -> Outcome {
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        match cmd {
            ":help" | ":h" | ":?" => self.help(),
            ":functions" | ":fns" => self.functions(arg),
            ":doc" => self.doc(arg),
            ":scope" => self.show_scope(),
            ":load" if arg.is_empty() => self.fail("usage: :load FILE"),
            ":load" => self.load(Path::new(arg)),
            ":reload" => match self.loaded.clone() {
                Some(file) => self.load(&file),
                None => self.fail("nothing loaded yet: use :load FILE first"),
            },
            ":env" => self.switch_env(arg),
            ":dry-run" => self.dry_run(arg),
            ":clear" => self.clear(),
            ":quit" | ":q" | ":exit" => Outcome::Quit,
            _ => {
                let names: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
                let hint = match nearest(cmd, names.iter().copied()) {
                    Some(n) => format!("; did you mean `{n}`?"),
                    None => "; :help lists the commands".into(),
                };
                self.fail(&format!("unknown command `{cmd}`{hint}"))
            }
        }
    }

    fn fail(&self, message: &str) -> Outcome {
        self.console.error(message);
        Outcome::Failed
    }

    fn out(&self, text: &str) {
        let text = self.console.mask(text);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", text.trim_end());
        let _ = out.flush();
    }

    fn help(&self) -> Outcome {
        let mut text = String::from("Type Rhai code to run it; variables, functions and imports stay for the next input.\nAn input with open brackets or an open string goes on to the next line.\n\n");
        for (name, arg, what) in COMMANDS {
            let head = if arg.is_empty() {
                name.to_string()
            } else {
                format!("{name} {arg}")
            };
            text.push_str(&format!("  {head:<20} {what}\n"));
        }
        text.push_str("\nTab completes names; the signature of the function being typed shows after the cursor.\nCtrl-C stops the evaluation in progress (its commands are killed) or clears the line; Ctrl-D quits.");
        self.out(&text);
        Outcome::Ok
    }

    fn functions(&self, filter: &str) -> Outcome {
        if !filter.is_empty() {
            self.std_docs_ready();
        }
        let Ok(v) = self.vocab.read() else {
            return Outcome::Failed;
        };
        let needle = filter.to_lowercase();
        let matches = |name: &str| needle.is_empty() || name.to_lowercase().contains(&needle);
        let mut text = String::new();
        let groups = [
            (Origin::Api, "deployer"),
            (Origin::Module, "imported modules"),
            (Origin::Session, "defined in this session"),
        ];
        for (origin, title) in groups {
            let sigs: BTreeSet<&str> = v
                .fns
                .iter()
                .filter(|f| f.origin == origin && matches(&f.name))
                .map(|f| f.signature.as_str())
                .collect();
            if sigs.is_empty() {
                continue;
            }
            text.push_str(&format!("{title}:\n"));
            for s in sigs {
                text.push_str(&format!("  {s}\n"));
            }
        }
        if !needle.is_empty() {
            let sigs: BTreeSet<&str> = v
                .std
                .iter()
                .filter(|f| matches(&f.name))
                .map(|f| f.signature.as_str())
                .collect();
            if !sigs.is_empty() {
                text.push_str("Rhai's standard library:\n");
                for s in sigs {
                    text.push_str(&format!("  {s}\n"));
                }
            }
        }
        if text.is_empty() {
            text = format!("no function matches \"{filter}\"");
        } else if needle.is_empty() {
            text.push_str(
                "(:functions TEXT also searches Rhai's standard library; :doc NAME explains one)",
            );
        }
        self.out(&text);
        Outcome::Ok
    }

    fn doc(&self, name: &str) -> Outcome {
        if name.is_empty() {
            return self.fail("usage: :doc NAME, such as :doc exec or :doc http::get");
        }
        let name = name.trim_end_matches("()");
        self.std_docs_ready();
        let Ok(v) = self.vocab.read() else {
            return Outcome::Failed;
        };
        let found = v.lookup(name);
        if found.is_empty() {
            let names = v.names();
            let hint = nearest(name, names.iter().copied())
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_else(|| "; :functions lists them".into());
            return self.fail(&format!("no function `{name}`{hint}"));
        }
        self.out(&docs::render_doc(&found));
        Outcome::Ok
    }

    fn show_scope(&self) -> Outcome {
        let names = |n: &str| self.host.engine.map_type_name(n).to_string();
        let mut lines: Vec<String> = self
            .scope
            .iter_raw()
            .map(|(name, constant, value)| {
                let kw = if constant { "const" } else { "let" };
                format!("{kw} {name} = {}", render::compact(value, &names))
            })
            .collect();
        lines.reverse();
        for i in &self.imports {
            lines.push(format!("import \"{}\" as {};", i.path, i.alias));
        }
        if lines.is_empty() {
            lines.push("(no variables)".into());
        }
        self.out(&lines.join("\n"));
        Outcome::Ok
    }

    /// Runs a file in the session and keeps its functions; watches it.
    pub fn load(&mut self, path: &Path) -> Outcome {
        let name = path.display().to_string();
        let text = match crate::host::input::read_script(path) {
            Ok(t) => t,
            Err(e) => return self.fail(&format!("cannot read {name}: {e}")),
        };
        self.loaded = Some(path.to_path_buf());
        // Read modules afresh: they may have changed since the last load.
        for e in self.reimport() {
            self.console.block(&e, &e);
        }
        let checked = match self.host.check(&name, &text) {
            Ok(c) => c,
            Err(diags) => {
                for d in &diags {
                    self.host.print(d);
                }
                self.watch_sources();
                return self.fail(&format!(
                    "{} problem{} in {name}; nothing was run",
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" }
                ));
            }
        };
        self.host.state.sources.insert(&name, &text, Some(path));
        let fns: Vec<String> = checked
            .ast
            .iter_functions()
            .filter(|f| !f.name.starts_with("anon$"))
            .map(|f| f.name.to_string())
            .collect();
        match self.run(checked.ast, &name) {
            Some(v) => {
                self.show(&v);
                self.console.info(&format!(
                    "loaded {name}{}",
                    if fns.is_empty() {
                        String::new()
                    } else {
                        format!(": fn {}", fns.join(", fn "))
                    }
                ));
                Outcome::Ok
            }
            None => {
                self.console
                    .warn(&format!("{name} failed; the functions it defines are kept"));
                Outcome::Failed
            }
        }
    }

    /// Called when watched files change: imports modules afresh and, when the loaded file
    /// compiles, takes its new functions (without running it: `:reload` does). Returns
    /// what to tell the user, secrets masked (it is printed outside the console).
    pub fn files_changed(&mut self, changed: &[PathBuf]) -> String {
        let out = self.files_changed_unmasked(changed);
        self.console.mask(&out)
    }

    fn files_changed_unmasked(&mut self, changed: &[PathBuf]) -> String {
        let mut out = String::new();
        let shown: Vec<String> = changed
            .iter()
            .map(|p| {
                std::env::current_dir()
                    .ok()
                    .and_then(|cwd| p.strip_prefix(cwd).ok().map(|r| r.display().to_string()))
                    .unwrap_or_else(|| p.display().to_string())
            })
            .collect();
        for e in self.reimport() {
            out.push_str(&e);
        }
        let Some(file) = self.loaded.clone() else {
            out.push_str(&format!("reloaded {}", shown.join(", ")));
            self.refresh();
            return out;
        };
        let name = file.display().to_string();
        let text = match crate::host::input::read_script(&file) {
            Ok(t) => t,
            Err(e) => {
                out.push_str(&format!("warning: cannot read {name}: {e}"));
                return out;
            }
        };
        match self.host.check(&name, &text) {
            Ok(checked) => {
                self.host.state.sources.insert(&name, &text, Some(&file));
                for f in checked.ast.iter_functions() {
                    self.defined_in.insert(f.name.to_string(), name.clone());
                }
                self.fns += checked.ast.clone_functions_only();
                self.keep_imports(&checked.ast, &name);
                self.refresh();
                self.watch_sources();
                out.push_str(&format!(
                    "reloaded {}: functions updated (:reload runs {name} again)",
                    shown.join(", ")
                ));
            }
            Err(diags) => {
                for d in &diags {
                    out.push_str(&self.render_diag(d));
                }
                self.watch_sources();
                out.push_str(&format!(
                    "warning: {} changed but has {} problem{}; keeping the previous version",
                    shown.join(", "),
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" }
                ));
            }
        }
        out
    }

    fn switch_env(&mut self, name: &str) -> Outcome {
        if name.is_empty() {
            let mut text = format!("environment: {}", self.env.name);
            match &self.config.path {
                Some(p) if !self.config.envs.is_empty() => text.push_str(&format!(
                    " (in {}: {})",
                    p.display(),
                    self.config
                        .envs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                _ => text.push_str(" (no environments: no deployer.toml found)"),
            }
            for (k, v) in &self.host.state.options().vars {
                text.push_str(&format!("\n  var {k} = {v:?}"));
            }
            self.out(&text);
            return Outcome::Ok;
        }
        let env = match self.config.select_env(Some(name)) {
            Ok(e) => e,
            Err(e) => return self.fail(&e.to_string()),
        };
        let mut vars = self.config.vars_for(&self.config_from, &env);
        vars.extend(self.cli_vars.iter().cloned());
        if let Ok(mut o) = self.host.state.options.lock() {
            o.env = env.name.clone();
            o.vars = vars;
        }
        let note = if env.confirm {
            " (it asks for confirmation before deploys: confirm() still needs a yes)"
        } else {
            ""
        };
        self.console
            .info(&format!("environment: {}{note}", env.name));
        self.env = env;
        Outcome::Ok
    }

    fn dry_run(&mut self, arg: &str) -> Outcome {
        let on = match arg {
            "" => self.host.state.dry_run(),
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            other => return self.fail(&format!("usage: :dry-run on|off (got \"{other}\")")),
        };
        if let Ok(mut o) = self.host.state.options.lock() {
            o.dry_run = on;
        }
        self.console.info(if on {
            "dry run: on (no command runs and no mutating request is sent; each is printed)"
        } else {
            "dry run: off"
        });
        Outcome::Ok
    }

    fn clear(&mut self) -> Outcome {
        let options = self.host.state.options();
        let host = match new_host(options, &self.console, &self.script) {
            Ok(h) => h,
            Err(e) => return self.fail(&e.to_string()),
        };
        // Dropping the old host stops its background processes.
        self.host = host;
        self.scope = Scope::new();
        self.fns = AST::empty();
        self.defined_in.clear();
        self.imports.clear();
        self.loaded = None;
        self.refresh();
        self.console
            .info("cleared: variables, functions and imports are gone");
        Outcome::Ok
    }

    /// Stops the background processes the session started (`spawn`), saying so.
    pub fn stop_processes(&self) {
        self.host.stop_processes();
    }

    /// Prints a line in the session's error style (for the REPL's own messages).
    pub fn error(&self, message: &str) {
        self.console.error(message);
    }

    /// Says a line in the session's info style.
    pub fn note(&self, message: &str) {
        let styled = self.console.paint(Style::Dim, message);
        self.console.info_styled(message, &styled);
    }
}

fn new_host(
    options: HostOptions,
    console: &Console,
    script: &ScriptSlot,
) -> Result<Host, HostError> {
    let host = Host::new(
        options,
        console.clone(),
        crate::api::bindings(),
        script.clone(),
    )?;
    host.install_interactive_signal_handlers();
    Ok(host)
}

/// True when `ast` calls `sample` exactly once and that call is its last statement, so the
/// input's value is that call's result.
fn ends_in_its_only_sample_call(ast: &AST) -> bool {
    let is_sample = |f: &rhai::FnCallExpr| f.name == "sample" && f.namespace.is_empty();
    let last = match ast.statements().last() {
        Some(Stmt::FnCall(f, _)) => is_sample(f),
        Some(Stmt::Expr(e)) => matches!(e.as_ref(), Expr::FnCall(f, _) if is_sample(f)),
        _ => false,
    };
    if !last {
        return false;
    }
    let mut calls = 0;
    ast.walk(&mut |nodes: &[rhai::ASTNode]| {
        match nodes.last() {
            Some(rhai::ASTNode::Stmt(Stmt::FnCall(f, _))) if is_sample(f) => calls += 1,
            Some(rhai::ASTNode::Expr(Expr::FnCall(f, _))) if is_sample(f) => calls += 1,
            _ => {}
        }
        true
    });
    calls == 1
}

//! Static checks before anything runs: syntax, imports that resolve, and calls to functions
//! that exist with that number of arguments, each with a place and a suggestion.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use rhai::{ASTNode, Engine, Expr, FnAccess, Stmt, AST};

use super::diagnostic::{Diagnostic, Location};
use super::input::MAX_DECLARATIONS;
use super::sources::{clean, locate, SourceMap};
use crate::core::options::{self, unknown_option, OptionList};
use crate::core::suggest::nearest;
use crate::pipeline::PlannedPhase;

/// Rhai's standard library functions by name and argument counts (see `Catalog::of`).
const STD_FUNCTIONS: &str = include_str!("std_functions.txt");

/// Names Rhai treats as keywords that are called like functions.
const KEYWORD_FNS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "eval",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
];

/// Every callable name with the argument counts it accepts.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Global functions: name → accepted argument counts.
    pub globals: HashMap<String, BTreeSet<usize>>,
    /// Functions of static modules (`http`, `log`, ...): module → name → counts.
    pub modules: HashMap<String, HashMap<String, BTreeSet<usize>>>,
    /// The option names of the functions that take an option map (given with the API).
    pub options: Vec<OptionList>,
}

impl Catalog {
    /// Reads the engine's registered functions. Rhai's standard library comes from a table
    /// compiled in (`std_functions.txt`): asking the engine for it materialises every lazy
    /// standard module, which costs more than the rest of start-up together.
    pub fn of(engine: &Engine) -> Catalog {
        let mut cat = Catalog::default();
        for line in STD_FUNCTIONS.lines() {
            let Some((name, arities)) = line.split_once(':') else {
                continue;
            };
            let set = cat.globals.entry(name.to_string()).or_default();
            set.extend(arities.split(',').filter_map(|a| a.parse::<usize>().ok()));
        }
        cat.add_signatures(engine.gen_fn_signatures(false));
        cat
    }

    #[cfg(test)]
    /// Reads every function, including Rhai's standard library, from the engine (slow).
    pub fn of_all(engine: &Engine) -> Catalog {
        let mut cat = Catalog::default();
        cat.add_signatures(engine.gen_fn_signatures(true));
        cat
    }

    /// Adds the option lists of the registered functions that take an option map.
    pub fn with_options(mut self, lists: &[OptionList]) -> Catalog {
        self.options.extend_from_slice(lists);
        self
    }

    /// The option list of a call of `func` with `argc` arguments, if it takes one.
    pub fn option_list(&self, func: &str, argc: usize) -> Option<&OptionList> {
        options::find(&self.options, func, argc)
    }

    fn add_signatures(&mut self, signatures: Vec<String>) {
        for sig in signatures {
            let Some((name, arity)) = parse_signature(&sig) else {
                continue;
            };
            match name.rsplit_once("::") {
                Some((module, f)) => {
                    self.modules
                        .entry(module.to_string())
                        .or_default()
                        .entry(f.to_string())
                        .or_default()
                        .insert(arity);
                }
                None => {
                    self.globals
                        .entry(name.to_string())
                        .or_default()
                        .insert(arity);
                }
            }
        }
    }

    #[cfg(test)]
    /// Renders the global functions as the `std_functions.txt` table (`name:1,2` lines).
    pub fn table(&self) -> String {
        let mut names: Vec<(&String, &BTreeSet<usize>)> = self.globals.iter().collect();
        names.sort();
        let mut out = String::new();
        for (name, arities) in names {
            let a: Vec<String> = arities.iter().map(|n| n.to_string()).collect();
            out.push_str(&format!("{name}:{}\n", a.join(",")));
        }
        out
    }

    /// Returns every callable name, qualified for module functions, for suggestions.
    pub fn all_names(&self) -> Vec<String> {
        // Operators (`!`, `+`) are in the catalog too but are never what a typo meant.
        let mut names: Vec<String> = self
            .globals
            .keys()
            .filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .cloned()
            .collect();
        for (m, fns) in &self.modules {
            names.extend(fns.keys().map(|f| format!("{m}::{f}")));
        }
        names.sort();
        names
    }

    /// Suggests the nearest known name for an unknown `name`.
    pub fn suggest(&self, name: &str) -> Option<String> {
        let names = self.all_names();
        nearest(name, names.iter().map(String::as_str)).map(str::to_string)
    }
}

/// Splits `name(a: T, b: U) -> R` into the name and the number of parameters.
fn parse_signature(sig: &str) -> Option<(&str, usize)> {
    let open = sig.find('(')?;
    let name = sig[..open].trim();
    let mut depth = 0usize;
    let mut count = 0usize;
    let mut any = false;
    for c in sig[open + 1..].chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' if depth == 0 => break,
            ')' | '>' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => count += 1,
            c if !c.is_whitespace() => any = true,
            _ => {}
        }
    }
    Some((name, if any { count + 1 } else { 0 }))
}

/// Checks a script and, recursively, every module it imports. Records every loaded text in
/// `sources`. Returns all problems found (empty when the script may run).
pub fn check_script(
    engine: &Engine,
    catalog: &Catalog,
    sources: &SourceMap,
    name: &str,
    text: &str,
) -> Report {
    let mut checker = Checker {
        defined: Vec::new(),
        phases: Vec::new(),
        engine,
        catalog,
        sources,
        modules: HashMap::new(),
        loading: Vec::new(),
        vars: VarsRead::default(),
        module_options: HashMap::new(),
        diags: Vec::new(),
        browser_call: None,
    };
    // The script itself is being loaded: a module importing it back is a cycle.
    checker.modules.insert(clean(Path::new(name)), None);
    let ast = checker.check(name, text);
    let phases = std::mem::take(&mut checker.phases);
    let mut warnings = same_name_warnings(&checker.defined);
    // A browser check cannot run without the system's Chromium: say so before the run.
    if let Some(at) = checker.browser_call.take() {
        if let Err(e) = crate::sys::browser::find() {
            warnings.push(Diagnostic {
                label: "warning",
                ..Diagnostic::error(format!("this script uses browser:: but {e}"), at)
            });
        }
    }
    let vars = std::mem::take(&mut checker.vars);
    let mut diags = checker.diags;
    // Report in reading order within each file (calls in fn bodies are walked last).
    diags.sort_by_key(|d| {
        d.location
            .as_ref()
            .map(|l| (l.source != name, l.source.clone(), l.line, l.col))
    });
    Report {
        ast,
        phases,
        diags,
        warnings,
        vars,
    }
}

/// What [`check_script`] found.
pub struct Report {
    /// The compiled script, when it parsed.
    pub ast: Option<AST>,
    /// Phases named by literal `phase("Name", ...)` calls in the main script, in order.
    pub phases: Vec<PlannedPhase>,
    /// Problems that stop the script.
    pub diags: Vec<Diagnostic>,
    /// Problems that do not.
    pub warnings: Vec<Diagnostic>,
    /// The variables the script and its modules read with `var()`.
    pub vars: VarsRead,
}

/// The variables a script and its modules read with `var("NAME")`.
#[derive(Debug, Clone, Default)]
pub struct VarsRead {
    /// Names given as literal strings, with where each is first read.
    pub names: BTreeMap<String, Option<Location>>,
    /// Calls whose name is computed at run time (any `--var` may be read there).
    pub dynamic: Vec<Option<Location>>,
}

impl VarsRead {
    /// Checks `--var` names against what the script reads: an unread name is an error with
    /// the nearest name read, or only a warning when some `var()` computes its name.
    /// Returns (errors, warnings).
    pub fn check_given<'a>(
        &self,
        given: impl IntoIterator<Item = &'a str>,
    ) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for name in given {
            if self.names.contains_key(name) {
                continue;
            }
            let read: Vec<&str> = self.names.keys().map(String::as_str).collect();
            let mut d = Diagnostic::error(
                format!(
                    "--var {name}=...: no var(\"{name}\") in the script or its modules reads it"
                ),
                None,
            );
            if let Some(s) = nearest(name, read.iter().copied()) {
                d = d.with_help(format!(
                    "did you mean `{s}`? (read at {})",
                    self.shown_location(s)
                ));
            } else if read.is_empty() {
                d = d.with_help("the script reads no variables with var()");
            } else {
                d = d.with_help(format!("the variables it reads: {}", read.join(", ")));
            }
            if let Some(at) = self.dynamic.first() {
                d.label = "warning";
                d.message = format!(
                    "--var {name}=...: no var(\"{name}\") with that literal name in the script or its modules; it may be read by a var() whose name is computed at run time{}",
                    at.as_ref().map(|l| format!(" ({}:{}:{})", l.source, l.line, l.col)).unwrap_or_default()
                );
                warnings.push(d);
            } else {
                errors.push(d);
            }
        }
        (errors, warnings)
    }

    fn shown_location(&self, name: &str) -> String {
        match self.names.get(name) {
            Some(Some(l)) => format!("{}:{}:{}", l.source, l.line, l.col),
            _ => "an unknown place".into(),
        }
    }
}

/// Warns about functions with the same name and arity in two different files: Rhai 1.27's
/// function-resolution cache can then call one file's function from inside the other
/// (rhaiscript/rhai, cache not isolated for module functions), so a module may run
/// another module's helper.
fn same_name_warnings(defined: &[(String, String, usize)]) -> Vec<Diagnostic> {
    let mut by_fn: HashMap<(&str, usize), Vec<&str>> = HashMap::new();
    for (file, name, arity) in defined {
        let files = by_fn.entry((name.as_str(), *arity)).or_default();
        if !files.contains(&file.as_str()) {
            files.push(file.as_str());
        }
    }
    let mut out: Vec<Diagnostic> = by_fn
        .into_iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|((name, arity), files)| Diagnostic {
            label: "warning",
            message: format!(
                "`{name}` with {arity} parameter{} is defined in {}: Rhai may call the wrong one from inside a module",
                if arity == 1 { "" } else { "s" },
                files.join(" and ")
            ),
            location: None,
            frames: Vec::new(),
            help: vec![
                "give each a distinct name (for example prefix private helpers with their module's name)".into(),
            ],
        })
        .collect();
    out.sort_by(|a, b| a.message.cmp(&b.message));
    out
}

struct Checker<'a> {
    /// Every function (public or private) of every checked file: (file, name, arity).
    defined: Vec<(String, String, usize)>,
    /// Phases named by literal `phase("Name", ...)` calls in the main script, in order.
    phases: Vec<PlannedPhase>,
    engine: &'a Engine,
    catalog: &'a Catalog,
    sources: &'a SourceMap,
    /// Loaded modules by source name → their public functions (None while loading).
    modules: HashMap<String, Option<HashMap<String, BTreeSet<usize>>>>,
    /// The files being checked, outermost first (the chain an import cycle names).
    loading: Vec<String>,
    /// Variables read with `var()`.
    vars: VarsRead,
    /// Option lists of script functions, by file: what their `check_options` calls accept.
    module_options: HashMap<String, Vec<ModuleOptions>>,
    diags: Vec<Diagnostic>,
    /// The first call of a `browser::` function, if any (it needs Chromium installed).
    browser_call: Option<Option<Location>>,
}

/// A script function that checks an option map with a literal list:
/// `fn deploy_worker(opts) { check_options("cloudflare::deploy_worker", opts, ["cwd"]); }`.
#[derive(Debug, Clone)]
struct ModuleOptions {
    /// The name its errors use.
    func: String,
    name: String,
    argc: usize,
    arg: usize,
    known: Vec<String>,
}

/// The strings of a literal array of strings (possibly folded into a constant).
fn literal_strings(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Array(items, ..) => items
            .iter()
            .map(|e| match e {
                Expr::StringConstant(s, ..) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        Expr::DynamicConstant(d, ..) => d
            .read_lock::<rhai::Array>()
            .and_then(|a| a.iter().map(|v| v.clone().into_string().ok()).collect()),
        _ => None,
    }
}

impl Checker<'_> {
    fn check(&mut self, name: &str, text: &str) -> Option<AST> {
        self.loading.push(clean(Path::new(name)));
        let ast = self.check_file(name, text);
        self.loading.pop();
        ast
    }

    fn check_file(&mut self, name: &str, text: &str) -> Option<AST> {
        let is_main = self.loading.len() == 1;
        self.sources.insert(name, text, None);
        // Rhai's parse is quadratic in declarations: refuse too many before parsing.
        if let Some(d) = check_declarations(name, text) {
            self.diags.push(d);
            return None;
        }
        let mut ast = match self.engine.compile(text) {
            Ok(ast) => ast,
            Err(e) => {
                self.diags.push(Diagnostic::from_parse(&e, name));
                return None;
            }
        };
        ast.set_source(name);
        for f in ast.iter_functions() {
            if !f.name.starts_with("anon$") {
                self.defined
                    .push((name.to_string(), f.name.to_string(), f.params.len()));
            }
        }

        // Functions this script defines, names it declares (a variable may hold a closure
        // and be called like a function), and the modules it imports.
        let mut script_fns: HashMap<String, BTreeSet<usize>> = HashMap::new();
        let mut declared: HashSet<String> = HashSet::new();
        for f in ast.iter_functions() {
            script_fns
                .entry(f.name.to_string())
                .or_default()
                .insert(f.params.len());
            declared.extend(f.params.iter().map(|p| p.to_string()));
        }
        let mut imports: Vec<(String, String, rhai::Position)> = Vec::new();
        let mut calls: Vec<(Option<String>, String, usize, rhai::Position)> = Vec::new();
        let mut planned: Vec<(rhai::Position, PlannedPhase)> = Vec::new();
        // Literal option maps given to natives: (function, argument count, the map).
        let mut option_maps: Vec<(String, usize, OptionArg)> = Vec::new();
        let mut vars_read: Vec<(Option<String>, rhai::Position)> = Vec::new();
        // Literal maps given to functions of imported modules: (alias, name, argc, index, map).
        let mut module_maps: Vec<(String, String, usize, usize, OptionArg)> = Vec::new();
        // `check_options("mod::f", opts, ["a", "b"])` in this file's functions.
        let mut declared_opts: Vec<(String, String, Vec<String>)> = Vec::new();
        // `phase("Name", || { ... })`: the phase's name and its closure's function.
        let mut phase_closures: Vec<(String, String)> = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            match path.last() {
                Some(ASTNode::Expr(Expr::Custom(x, _))) => {
                    let keyword = x.tokens.first().map(|t| t.as_str()).unwrap_or_default();
                    if keyword == "var" {
                        match x.inputs.first() {
                            Some(Expr::StringConstant(s, p)) => {
                                vars_read.push((Some(s.to_string()), *p))
                            }
                            Some(e) => vars_read.push((None, e.start_position())),
                            None => {}
                        }
                    } else if keyword == "spawn" && x.inputs.len() == 2 {
                        if let Some(arg) = OptionArg::of(&x.inputs[1]) {
                            option_maps.push(("spawn".into(), 2, arg));
                        }
                    }
                }
                Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                    declared.insert(x.0.name.to_string());
                }
                Some(ASTNode::Stmt(Stmt::For(x, ..))) => {
                    declared.insert(x.0.name.to_string());
                    if let Some(counter) = &x.1 {
                        declared.insert(counter.name.to_string());
                    }
                }
                Some(ASTNode::Stmt(Stmt::TryCatch(x, ..))) => {
                    if let Expr::Variable(v, ..) = &x.expr {
                        declared.insert(v.1.to_string());
                    }
                }
                Some(ASTNode::Stmt(Stmt::Import(x, pos))) => {
                    if let Expr::StringConstant(path, ..) = &x.0 {
                        imports.push((path.to_string(), x.1.name.to_string(), *pos));
                    }
                }
                Some(ASTNode::Expr(Expr::FnCall(call, pos)))
                | Some(ASTNode::Stmt(Stmt::FnCall(call, pos)))
                    if !call.is_operator_call() =>
                {
                    let ns = (!call.namespace.is_empty()).then(|| {
                        call.namespace
                            .path
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join("::")
                    });
                    if ns.is_none() && call.name == "phase" && call.args.len() >= 2 {
                        if let (Some(Expr::StringConstant(phase_name, ..)), Some(f)) =
                            (call.args.first(), call.args.last().and_then(closure_name))
                        {
                            phase_closures.push((phase_name.to_string(), f));
                        }
                        if let Some(Expr::StringConstant(phase_name, ..)) = call.args.first() {
                            // A literal map may reach us folded into a constant.
                            let flag = |key: &str| match call.args.get(1) {
                                Some(Expr::Map(m, ..)) if call.args.len() == 3 => {
                                    Some(m.0.iter().any(|(k, v)| {
                                        k.name == key && matches!(v, Expr::BoolConstant(true, ..))
                                    }))
                                }
                                Some(Expr::DynamicConstant(d, ..)) if call.args.len() == 3 => {
                                    d.read_lock::<rhai::Map>().map(|m| {
                                        m.get(key).and_then(|v| v.as_bool().ok()) == Some(true)
                                    })
                                }
                                _ => None,
                            };
                            planned.push((
                                *pos,
                                PlannedPhase {
                                    name: phase_name.to_string(),
                                    required: flag("required"),
                                    skippable: flag("skippable"),
                                    changes: flag("changes"),
                                },
                            ));
                        }
                    }
                    let full = match &ns {
                        Some(ns) => format!("{ns}::{}", call.name),
                        None => call.name.to_string(),
                    };
                    if let Some(list) = self.catalog.option_list(&full, call.args.len()) {
                        if let Some(arg) = call.args.get(list.arg).and_then(OptionArg::of) {
                            option_maps.push((full, call.args.len(), arg));
                        }
                    } else if let Some(ns) = &ns {
                        for (i, arg) in call.args.iter().enumerate() {
                            if let Some(arg) = OptionArg::of(arg) {
                                module_maps.push((
                                    ns.clone(),
                                    call.name.to_string(),
                                    call.args.len(),
                                    i,
                                    arg,
                                ));
                            }
                        }
                    } else if ns.is_none() && call.name == "vars" && call.args.len() == 1 {
                        // `vars(#{ name: default, ... })` reads each key like var().
                        match &call.args[0] {
                            Expr::Map(m, ..) => vars_read
                                .extend(m.0.iter().map(|(k, _)| (Some(k.name.to_string()), k.pos))),
                            Expr::DynamicConstant(d, ..) => match d.read_lock::<rhai::Map>() {
                                Some(m) => {
                                    vars_read.extend(m.keys().map(|k| (Some(k.to_string()), *pos)))
                                }
                                None => vars_read.push((None, *pos)),
                            },
                            _ => vars_read.push((None, *pos)),
                        }
                    } else if call.name == "check_options" && call.args.len() == 3 {
                        if let (
                            Expr::StringConstant(func, ..),
                            Expr::Variable(v, ..),
                            Some(known),
                        ) = (&call.args[0], &call.args[1], literal_strings(&call.args[2]))
                        {
                            declared_opts.push((func.to_string(), v.1.to_string(), known));
                        }
                    }
                    calls.push((ns, call.name.to_string(), call.args.len(), *pos));
                }
                _ => {}
            }
            true
        });

        for (var, pos) in vars_read {
            let at = Location::of(name, pos);
            match var {
                Some(v) => {
                    self.vars.names.entry(v).or_insert(at);
                }
                None => self.vars.dynamic.push(at),
            }
        }
        for (func, argc, arg) in option_maps {
            // A script function of the same name and arity replaces the native one.
            if script_fns.get(&func).is_some_and(|a| a.contains(&argc)) {
                continue;
            }
            if let Some(list) = self.catalog.option_list(&func, argc) {
                self.check_options(name, text, &func, list.known, list.nested, &arg);
            }
        }
        for (phase_name, f) in &phase_closures {
            if let Some(d) = literal_phase_value(&ast, name, phase_name, f) {
                self.diags.push(d);
            }
        }
        if is_main {
            // Source order is the order a straight-line script runs its phases in.
            planned.sort_by_key(|(pos, _)| (pos.line(), pos.position()));
            self.phases = planned.into_iter().map(|(_, p)| p).collect();
        }
        // The option lists this file's functions check with check_options().
        let mut lists = Vec::new();
        for (func, param, known) in declared_opts {
            let short = func.rsplit("::").next().unwrap_or(&func).to_string();
            for f in ast.iter_functions() {
                if let Some(i) = f.params.iter().position(|p| *p == param.as_str()) {
                    if f.name == short {
                        lists.push(ModuleOptions {
                            func: func.clone(),
                            name: short.clone(),
                            argc: f.params.len(),
                            arg: i,
                            known: known.clone(),
                        });
                    }
                }
            }
        }
        self.module_options.insert(name.to_string(), lists);

        let mut aliases: HashMap<String, Option<HashMap<String, BTreeSet<usize>>>> = HashMap::new();
        let mut alias_names: HashMap<String, String> = HashMap::new();
        for (path, alias, pos) in imports {
            let (module, fns) = self.load_module(name, &path, pos);
            if let Some(module) = module {
                alias_names.insert(alias.clone(), module);
            }
            aliases.insert(alias, fns);
        }
        for (alias, fname, argc, index, arg) in module_maps {
            let Some(list) = alias_names
                .get(&alias)
                .and_then(|m| self.module_options.get(m))
                .and_then(|lists| {
                    lists
                        .iter()
                        .find(|l| l.name == fname && l.argc == argc && l.arg == index)
                })
                .cloned()
            else {
                continue;
            };
            let known: Vec<&str> = list.known.iter().map(String::as_str).collect();
            self.check_options(name, text, &list.func, &known, &[], &arg);
        }

        for (ns, fname, argc, pos) in calls {
            if !fname.chars().all(|c| c.is_alphanumeric() || c == '_') {
                continue; // operators and internal helpers Rhai generates
            }
            let location = Location::of(name, pos);
            match ns {
                None => {
                    if KEYWORD_FNS.contains(&fname.as_str()) || declared.contains(&fname) {
                        continue;
                    }
                    let arities = merge(self.catalog.globals.get(&fname), script_fns.get(&fname));
                    self.check_call(&fname, argc, arities, location, &script_fns);
                }
                Some(ns) => {
                    if let Some(fns) = self.catalog.modules.get(&ns) {
                        let full = format!("{ns}::{fname}");
                        if ns == "browser" && self.browser_call.is_none() {
                            self.browser_call = Some(location.clone());
                        }
                        self.check_call(
                            &full,
                            argc,
                            fns.get(&fname).cloned(),
                            location,
                            &script_fns,
                        );
                    } else if let Some(loaded) = aliases.get(&ns) {
                        // A module that failed to load was reported already.
                        let Some(fns) = loaded else { continue };
                        let full = format!("{ns}::{fname}");
                        if fns.contains_key(&fname) {
                            self.check_call(
                                &full,
                                argc,
                                fns.get(&fname).cloned(),
                                location,
                                &script_fns,
                            );
                        } else {
                            let mut d = Diagnostic::error(
                                format!("unknown function `{full}`: the module imported as `{ns}` has no public function `{fname}`"),
                                location,
                            );
                            let names: Vec<&str> = fns.keys().map(String::as_str).collect();
                            if let Some(s) = nearest(&fname, names.iter().copied()) {
                                d = d.with_help(format!("did you mean `{ns}::{s}`?"));
                            } else if !names.is_empty() {
                                let mut names = names;
                                names.sort();
                                d = d.with_help(format!("it has: {}", names.join(", ")));
                            }
                            self.diags.push(d);
                        }
                    } else {
                        let mut known: Vec<String> = self.catalog.modules.keys().cloned().collect();
                        known.extend(aliases.keys().cloned());
                        known.sort();
                        let mut d = Diagnostic::error(
                            format!("unknown module `{ns}` in call to `{ns}::{fname}`"),
                            location,
                        );
                        if let Some(s) = nearest(&ns, known.iter().map(String::as_str)) {
                            d = d.with_help(format!("did you mean `{s}::{fname}`?"));
                        }
                        d = d.with_help(format!(
                            "import it first, such as `import \"std/checks\" as checks;`; modules available without import: {}",
                            self.catalog.modules.keys().cloned().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
                        ));
                        self.diags.push(d);
                    }
                }
            }
        }
        Some(ast)
    }

    fn check_call(
        &mut self,
        full: &str,
        argc: usize,
        arities: Option<BTreeSet<usize>>,
        location: Option<Location>,
        script_fns: &HashMap<String, BTreeSet<usize>>,
    ) {
        match arities {
            Some(a) if a.contains(&argc) => {}
            Some(a) => {
                let counts: Vec<String> = a.iter().map(|n| n.to_string()).collect();
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "`{full}` takes {} argument{}, but this call gives {argc}",
                            counts.join(" or "),
                            if a.len() == 1 && a.contains(&1) {
                                ""
                            } else {
                                "s"
                            }
                        ),
                        location,
                    )
                    .with_help(format!(
                        "run `deployer repl` and `:doc {full}` to see how to call it"
                    )),
                );
            }
            None => {
                let mut d = Diagnostic::error(format!("unknown function `{full}`"), location);
                let mut names = self.catalog.all_names();
                names.extend(script_fns.keys().cloned());
                if let Some(s) = nearest(full, names.iter().map(String::as_str)) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.diags.push(d);
            }
        }
    }

    /// Loads and checks an imported module; returns its public functions.
    fn load_module(
        &mut self,
        importer: &str,
        path: &str,
        pos: rhai::Position,
    ) -> (Option<String>, Option<HashMap<String, BTreeSet<usize>>>) {
        let located = match locate(Some(importer), path) {
            Ok(l) => l,
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    e.to_string(),
                    Location::of(importer, pos),
                ));
                return (None, None);
            }
        };
        let name = located.name.clone();
        (Some(name), self.load_located(importer, located, pos))
    }

    fn load_located(
        &mut self,
        importer: &str,
        located: super::sources::Located,
        pos: rhai::Position,
    ) -> Option<HashMap<String, BTreeSet<usize>>> {
        match self.modules.get(&located.name) {
            Some(Some(done)) => return Some(done.clone()),
            Some(None) => {
                // Being loaded further up: an import cycle.
                let start = self
                    .loading
                    .iter()
                    .position(|n| *n == located.name)
                    .unwrap_or(0);
                let mut chain: Vec<&str> =
                    self.loading[start..].iter().map(String::as_str).collect();
                chain.push(&located.name);
                self.diags.push(
                    Diagnostic::error(
                        format!("import cycle: {}", chain.join(" → ")),
                        Location::of(importer, pos),
                    )
                    .with_help(
                        "a module cannot import (directly or through others) a file that imports it: move what both need into a third module",
                    ),
                );
                return None;
            }
            None => {}
        }
        self.modules.insert(located.name.clone(), None);
        self.sources
            .insert(&located.name, &located.text, located.file.as_deref());
        let ast = self.check(&located.name, &located.text)?;
        let mut fns: HashMap<String, BTreeSet<usize>> = HashMap::new();
        for f in ast.iter_functions() {
            if f.access != FnAccess::Private {
                fns.entry(f.name.to_string())
                    .or_default()
                    .insert(f.params.len());
            }
        }
        self.modules.insert(located.name, Some(fns.clone()));
        Some(fns)
    }
}

/// A literal option map in the AST: with a place per key, or folded into a constant by
/// the optimiser (then the keys are found in the text from the map's place).
enum OptionArg {
    Literal(Vec<(String, rhai::Position, Option<OptionArg>)>),
    Constant(rhai::Map, rhai::Position),
}

impl OptionArg {
    fn of(expr: &Expr) -> Option<OptionArg> {
        match expr {
            Expr::Map(m, ..) => Some(OptionArg::Literal(
                m.0.iter()
                    .map(|(k, v)| (k.name.to_string(), k.pos, OptionArg::of(v)))
                    .collect(),
            )),
            Expr::DynamicConstant(d, pos) => d
                .read_lock::<rhai::Map>()
                .map(|m| OptionArg::Constant(m.clone(), *pos)),
            _ => None,
        }
    }

    /// Every key with its place and nested map.
    fn keys(&self, text: &str) -> Vec<(String, rhai::Position, Option<OptionArg>)> {
        match self {
            OptionArg::Literal(keys) => keys
                .iter()
                .map(|(k, p, v)| (k.clone(), *p, v.as_ref().map(OptionArg::copy)))
                .collect(),
            OptionArg::Constant(map, pos) => map
                .iter()
                .map(|(k, v)| {
                    let at = key_position(text, *pos, k).unwrap_or(*pos);
                    let nested = v
                        .read_lock::<rhai::Map>()
                        .map(|m| OptionArg::Constant(m.clone(), at));
                    (k.to_string(), at, nested)
                })
                .collect(),
        }
    }

    fn copy(&self) -> OptionArg {
        match self {
            OptionArg::Literal(keys) => OptionArg::Literal(
                keys.iter()
                    .map(|(k, p, v)| (k.clone(), *p, v.as_ref().map(OptionArg::copy)))
                    .collect(),
            ),
            OptionArg::Constant(m, p) => OptionArg::Constant(m.clone(), *p),
        }
    }
}

/// Finds `key:` (or `"key":`) in `text` at or after `from`, for the place of a key of a
/// map the optimiser folded into a constant.
fn key_position(text: &str, from: rhai::Position, key: &str) -> Option<rhai::Position> {
    let line = from.line()?;
    let col = from.position().unwrap_or(1);
    for (i, l) in text.lines().enumerate().skip(line - 1) {
        let start = if i + 1 == line {
            l.char_indices()
                .nth(col - 1)
                .map(|(b, _)| b)
                .unwrap_or(l.len())
        } else {
            0
        };
        let rest = &l[start..];
        let mut search = 0;
        while let Some(found) = rest[search..].find(key) {
            let at = search + found;
            let before = rest[..at].chars().next_back();
            let after = rest[at + key.len()..].trim_start_matches(['"', ' ', '\t']);
            let boundary = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if boundary && after.starts_with(':') && !after.starts_with("::") {
                let col = l[..start + at].chars().count() + 1 - usize::from(before == Some('"'));
                return Some(rhai::Position::new(i as u16 + 1, col as u16));
            }
            search = at + key.len();
        }
    }
    None
}

impl Checker<'_> {
    /// Reports every unknown key of a literal option map (and of its nested maps).
    fn check_options(
        &mut self,
        file: &str,
        text: &str,
        func: &str,
        known: &[&str],
        nested: &[(&str, &[&str])],
        arg: &OptionArg,
    ) {
        for (key, pos, value) in arg.keys(text) {
            if !known.contains(&key.as_str()) {
                let mut d =
                    Diagnostic::error(unknown_option(func, &key, known), Location::of(file, pos));
                d = d.with_help(format!(
                    "run `deployer repl` and `:doc {func}` to see its options"
                ));
                self.diags.push(d);
                continue;
            }
            if let (Some((_, inner)), Some(value)) = (nested.iter().find(|(k, _)| *k == key), value)
            {
                for (k, p, _) in value.keys(text) {
                    if !inner.contains(&k.as_str()) {
                        self.diags.push(Diagnostic::error(
                            format!("{key}: {}", unknown_option(func, &k, inner)),
                            Location::of(file, p),
                        ));
                    }
                }
            }
        }
    }
}

/// Returns an error when `text` declares more than [`MAX_DECLARATIONS`] variables
/// (`let` and `const` words outside comments and strings), pointing at the first one over
/// the limit. One linear pass over the text.
fn check_declarations(name: &str, text: &str) -> Option<Diagnostic> {
    let (count, over) = super::input::count_declarations(text, MAX_DECLARATIONS);
    let (line, col) = over?;
    Some(
        Diagnostic::error(
            format!(
                "{name} declares {count} variables (let/const); the limit is {MAX_DECLARATIONS} per script or module"
            ),
            Some(Location {
                source: name.to_string(),
                line,
                col,
            }),
        )
        .with_help("keep many values in an array or a map, or split the script into modules with `import`"),
    )
}

/// The function behind a closure argument (`|| { ... }`, with or without captures).
fn closure_name(e: &Expr) -> Option<String> {
    match e {
        Expr::DynamicConstant(d, _) => d
            .read_lock::<rhai::FnPtr>()
            .map(|f| f.fn_name().to_string()),
        // A closure that captures variables is curried: `Fn("anon$..").curry(x)`.
        Expr::Stmt(block) => block.iter().find_map(|stmt| match stmt {
            Stmt::FnCall(call, _) if call.name == "curry" => {
                call.args.first().and_then(closure_name)
            }
            Stmt::Expr(e) => closure_name(e),
            _ => None,
        }),
        Expr::FnCall(call, _) if call.name == "curry" => call.args.first().and_then(closure_name),
        _ => None,
    }
}

/// A phase closure whose last expression is a literal that the phase rule refuses
/// (`"fine"`, `-1`, `7`): found before anything runs, so the run never starts.
fn literal_phase_value(ast: &AST, file: &str, phase: &str, closure: &str) -> Option<Diagnostic> {
    use crate::pipeline::{phase_value, Returned};
    // Walking the AST visits every function body's statements at depth 1: the closure's
    // own are those inside its span and not inside a closure nested in it.
    let key = |p: rhai::Position| (p.line().unwrap_or(0), p.position().unwrap_or(0));
    let span = |d: &rhai::Shared<rhai::ScriptFuncDef>| {
        let start = key(d.body.start_position());
        // A closure without braces (`|| 7`) has no end position: its body is one expression.
        (start, key(d.body.end_position()).max(start))
    };
    let def = ast.iter_fn_def().find(|d| d.name == closure)?;
    let (from, to) = span(def);
    let nested: Vec<_> = ast
        .iter_fn_def()
        .filter(|d| d.name != closure)
        .map(span)
        .filter(|(a, b)| *a > from && *b <= to)
        .collect();
    let mut last: Option<((usize, usize), Option<Expr>)> = None;
    ast.walk(&mut |path: &[ASTNode]| {
        if let [ASTNode::Stmt(stmt)] = path {
            let at = key(stmt.position());
            let inside = at >= from && at <= to;
            let in_nested = nested.iter().any(|(a, b)| at >= *a && at <= *b);
            if inside && !in_nested && last.as_ref().is_none_or(|(p, _)| at >= *p) {
                let expr = match stmt {
                    Stmt::Expr(e) => Some(e.as_ref().clone()),
                    _ => None,
                };
                last = Some((at, expr));
            }
        }
        true
    });
    let last = last?.1?;
    let (shown, value) = match &last {
        Expr::StringConstant(s, _) => (format!("{s:?} (a string)"), Returned::Other),
        Expr::IntegerConstant(n, _) => (n.to_string(), Returned::Number(*n as f64)),
        Expr::FloatConstant(f, _) => (format!("{f:?}"), Returned::Number(**f)),
        _ => return None,
    };
    let message = phase_value(&shown, value).err()?;
    Some(Diagnostic::error(
        format!("phase \"{phase}\" {message}"),
        Location::of(file, last.position()),
    ))
}

fn merge(a: Option<&BTreeSet<usize>>, b: Option<&BTreeSet<usize>>) -> Option<BTreeSet<usize>> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(
            a.into_iter()
                .flatten()
                .chain(b.into_iter().flatten())
                .copied()
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_first_declaration_over_the_limit() {
        let n = MAX_DECLARATIONS + 2;
        let text: String = (0..n).map(|i| format!("let x{i} = {i};\n")).collect();
        let d = check_declarations("big.rhai", &text).expect("over the limit");
        assert!(
            d.message.contains(&format!("declares {n} variables")),
            "{}",
            d.message
        );
        let at = d.location.expect("location");
        assert_eq!((at.line, at.col), (MAX_DECLARATIONS + 1, 1));
        assert!(check_declarations("ok.rhai", "let a = 1;").is_none());
        let (_, over) = super::super::input::count_declarations(&text, 10);
        assert_eq!(over, Some((11, 1)));
        assert!(check_declarations("ok.rhai", &text[..text.len() / 3]).is_none());
    }

    #[test]
    fn std_function_table_is_current() {
        // The table stands in for Rhai's standard library; it must match the Rhai in use.
        let live = Catalog::of_all(&Engine::new()).table();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/host/std_functions.txt");
        if std::env::var_os("UPDATE_STD_TABLE").is_some() {
            std::fs::write(path, &live).expect("write the table");
        }
        assert!(
            STD_FUNCTIONS == live,
            "src/host/std_functions.txt is out of date: run UPDATE_STD_TABLE=1 cargo test std_function_table"
        );
    }

    #[test]
    fn parses_signatures() {
        assert_eq!(
            parse_signature("exec(argv: Array, opts: Map) -> Map"),
            Some(("exec", 2))
        );
        assert_eq!(parse_signature("now() -> String"), Some(("now", 0)));
        assert_eq!(
            parse_signature("http::get(url: &str)"),
            Some(("http::get", 1))
        );
        assert_eq!(
            parse_signature("f(a: Result<Map, Box<E>>, b: i64)"),
            Some(("f", 2))
        );
    }
}

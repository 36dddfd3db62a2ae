//! Static checks before anything runs: syntax, imports that resolve, and calls to functions
//! that exist with that number of arguments, each with a place and a suggestion.

use std::collections::{BTreeSet, HashMap, HashSet};

use rhai::{ASTNode, Engine, Expr, FnAccess, Stmt, AST};

use super::diagnostic::{Diagnostic, Location};
use super::sources::{locate, SourceMap};
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

    /// Reads every function, including Rhai's standard library, from the engine (slow).
    pub fn of_all(engine: &Engine) -> Catalog {
        let mut cat = Catalog::default();
        cat.add_signatures(engine.gen_fn_signatures(true));
        cat
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
) -> (
    Option<AST>,
    Vec<PlannedPhase>,
    Vec<Diagnostic>,
    Vec<Diagnostic>,
) {
    let mut checker = Checker {
        defined: Vec::new(),
        phases: Vec::new(),
        engine,
        catalog,
        sources,
        modules: HashMap::new(),
        diags: Vec::new(),
    };
    let ast = checker.check(name, text);
    let phases = std::mem::take(&mut checker.phases);
    let warnings = same_name_warnings(&checker.defined);
    let mut diags = checker.diags;
    // Report in reading order within each file (calls in fn bodies are walked last).
    diags.sort_by_key(|d| {
        d.location
            .as_ref()
            .map(|l| (l.source != name, l.source.clone(), l.line, l.col))
    });
    (ast, phases, diags, warnings)
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
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn check(&mut self, name: &str, text: &str) -> Option<AST> {
        self.sources.insert(name, text, None);
        // Rhai's parse is quadratic in declarations: refuse too many before parsing.
        if let Some(d) = super::input::check_declarations(name, text) {
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
        ast.walk(&mut |path: &[ASTNode]| {
            match path.last() {
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
                    calls.push((ns, call.name.to_string(), call.args.len(), *pos));
                }
                _ => {}
            }
            true
        });

        if self.phases.is_empty() && self.modules.is_empty() {
            // Source order is the order a straight-line script runs its phases in.
            planned.sort_by_key(|(pos, _)| (pos.line(), pos.position()));
            self.phases = planned.into_iter().map(|(_, p)| p).collect();
        }
        let mut aliases: HashMap<String, Option<HashMap<String, BTreeSet<usize>>>> = HashMap::new();
        for (path, alias, pos) in imports {
            let fns = self.load_module(name, &path, pos);
            aliases.insert(alias, fns);
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
    ) -> Option<HashMap<String, BTreeSet<usize>>> {
        let located = match locate(Some(importer), path) {
            Ok(l) => l,
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    e.to_string(),
                    Location::of(importer, pos),
                ));
                return None;
            }
        };
        if let Some(done) = self.modules.get(&located.name) {
            return done.clone();
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

//! The latest good version of the running script, where hooks look their functions up.
//!
//! Created by whoever can see a newer version arrive (watch mode, the REPL) and handed to
//! the host, which fills it with the script it runs. A long operation (a monitor's
//! `on_alert` hook, `fn thresholds()`) looks its function up here at each use, so an edit
//! that passes the checks applies at its next tick while the run goes on.

use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};

/// Holds the latest good AST of a script; clones share it.
#[derive(Debug, Clone, Default)]
pub struct ScriptSlot(Arc<Mutex<Option<Arc<AST>>>>);

impl ScriptSlot {
    /// An empty slot.
    pub fn new() -> ScriptSlot {
        ScriptSlot::default()
    }

    /// Makes `ast` the latest version: hooks use it from their next call.
    pub fn replace(&self, ast: AST) {
        if let Ok(mut latest) = self.0.lock() {
            *latest = Some(Arc::new(ast));
        }
    }

    /// Puts `ast` in the slot unless a version is there already (a newer one that watch
    /// mode or the REPL put there first stays).
    pub(crate) fn fill(&self, ast: &AST) {
        if let Ok(mut latest) = self.0.lock() {
            if latest.is_none() {
                *latest = Some(Arc::new(ast.clone()));
            }
        }
    }

    /// The latest version, when it defines `name` with `arity` parameters.
    pub fn lookup(&self, name: &str, arity: usize) -> Option<Arc<AST>> {
        let ast = self.0.lock().ok()?.clone()?;
        defines(&ast, name, arity).then_some(ast)
    }

    /// Calls `name` in the latest version (see [`call_script_fn`]); `None` when that version
    /// does not define it with `args.len()` parameters.
    pub fn call(
        &self,
        engine: &Engine,
        name: &str,
        args: Vec<Dynamic>,
    ) -> Option<Result<Dynamic, Box<EvalAltResult>>> {
        let ast = self.lookup(name, args.len())?;
        Some(call_script_fn(engine, &ast, name, args))
    }
}

/// Returns true when the script defines `name` with `arity` parameters.
pub fn defines(ast: &AST, name: &str, arity: usize) -> bool {
    ast.iter_functions()
        .any(|f| f.name == name && f.params.len() == arity)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_see_the_latest_version_and_fill_keeps_a_newer_one() {
        let engine = Engine::new();
        let slot = ScriptSlot::new();
        assert!(slot.call(&engine, "level", vec![]).is_none());
        let v1 = engine.compile("fn level() { 1 }").expect("v1");
        slot.fill(&v1);
        let got = slot
            .call(&engine, "level", vec![])
            .map(|r| r.map(|d| d.as_int()));
        assert!(matches!(got, Some(Ok(Ok(1)))), "{got:?}");
        let v2 = engine
            .compile("fn level() { 2 } fn other(x) { x }")
            .expect("v2");
        slot.clone().replace(v2);
        slot.fill(&v1);
        let got = slot
            .call(&engine, "level", vec![])
            .map(|r| r.map(|d| d.as_int()));
        assert!(matches!(got, Some(Ok(Ok(2)))), "{got:?}");
        assert!(slot.lookup("other", 1).is_some());
        assert!(slot.lookup("other", 0).is_none());
    }

    #[test]
    fn a_called_function_sees_imports_but_not_the_script_body() {
        let engine = Engine::new();
        let ast = engine
            .compile("let x = 1; throw \"the body ran\"; fn f(a) { a + 1 }")
            .expect("compile");
        let got = call_script_fn(&engine, &ast, "f", vec![Dynamic::from(41_i64)]);
        assert_eq!(got.ok().and_then(|d| d.as_int().ok()), Some(42));
    }
}

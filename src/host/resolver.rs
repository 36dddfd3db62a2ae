//! Module resolution for `import`: the embedded standard library first, then files next to
//! the importing script. Every loaded text is kept for error rendering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

type SharedModule = Shared<Module>;

use super::sources::{locate, LocateError, SourceMap};

/// Resolves `import "std/NAME"` and relative imports, caching each module for the run.
pub struct Resolver {
    sources: Arc<SourceMap>,
    cache: Mutex<HashMap<String, SharedModule>>,
}

impl Resolver {
    /// Creates a resolver that records loaded texts in `sources`.
    pub fn new(sources: Arc<SourceMap>) -> Resolver {
        Resolver {
            sources,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let located = locate(source, path).map_err(|e| match e {
            LocateError::NotFound { .. } | LocateError::NoStd { .. } => {
                Box::new(EvalAltResult::ErrorModuleNotFound(e.to_string(), pos))
            }
            LocateError::Unreadable { .. } => {
                Box::new(EvalAltResult::ErrorRuntime(e.to_string().into(), pos))
            }
        })?;
        if let Some(m) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&located.name).cloned())
        {
            return Ok(m);
        }
        // An import cycle would recurse until the stack overflows: stop at the second visit.
        let cycle = LOADING.with(|l| {
            let l = l.borrow();
            l.iter().position(|n| *n == located.name).map(|start| {
                let mut chain: Vec<&str> = l[start..].iter().map(String::as_str).collect();
                chain.push(&located.name);
                chain.join(" → ")
            })
        });
        if let Some(chain) = cycle {
            return Err(Box::new(EvalAltResult::ErrorRuntime(
                format!("import cycle: {chain}: a module cannot import a file that imports it; move what both need into a third module").into(),
                pos,
            )));
        }
        LOADING.with(|l| l.borrow_mut().push(located.name.clone()));
        let module = self.load(engine, &located, pos);
        LOADING.with(|l| l.borrow_mut().pop());
        let module = module?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(located.name, module.clone());
        }
        Ok(module)
    }
}

thread_local! {
    /// The modules being loaded on this thread, outermost first.
    static LOADING: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Resolver {
    fn load(
        &self,
        engine: &Engine,
        located: &super::sources::Located,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        self.sources
            .insert(&located.name, &located.text, located.file.as_deref());
        let mut ast = engine.compile(&located.text).map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                located.name.clone(),
                e.into(),
                pos,
            ))
        })?;
        ast.set_source(located.name.as_str());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(located.name.clone(), e, pos)))?;
        Ok(module.into())
    }
}

//! Functions whose names Rhai reserves (`spawn`, `var`) registered as custom syntax that
//! reads exactly like a call: `spawn(argv)`, `spawn(argv, opts)`, `var(name, default)`.

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, Position};

use super::error::{throw, Error};
use crate::host::state::{HostState, StateRef};

/// The handler of a call-like syntax: the run's state and the evaluated arguments.
pub type Handler = fn(&Arc<HostState>, Vec<Dynamic>) -> Result<Dynamic, Error>;

/// Registers `name(a)` .. `name(a, b, ...)` with `min..=max` arguments as custom syntax.
pub fn register_call(
    engine: &mut Engine,
    name: &'static str,
    min: usize,
    max: usize,
    handler: Handler,
) {
    engine.register_custom_syntax_with_state_raw(
        name,
        move |symbols, look_ahead, _| {
            // Symbols so far: name ( $expr$ , $expr$ , ... )
            let last = symbols.last().map(|s| s.as_str()).unwrap_or_default();
            let args = symbols.iter().filter(|s| s.as_str() == "$expr$").count();
            let next = match last {
                _ if symbols.len() == 1 => Some("("),
                "(" | "," => Some("$expr$"),
                "$expr$" if look_ahead == "," && args < max => Some(","),
                "$expr$" => Some(")"),
                _ => None,
            };
            Ok(next.map(Into::into))
        },
        false,
        move |ctx, inputs, _| {
            let pos = inputs
                .first()
                .map(|e| e.position())
                .unwrap_or(Position::NONE);
            let at = |mut e: Box<EvalAltResult>| {
                if e.position().is_none() {
                    e.set_position(pos);
                }
                e
            };
            if inputs.len() < min {
                return Err(at(throw(
                    "usage",
                    format!(
                        "{name}() takes at least {min} argument{}",
                        if min == 1 { "" } else { "s" }
                    ),
                )));
            }
            let st = ctx
                .tag()
                .clone()
                .try_cast::<StateRef>()
                .map(|s| s.0)
                .ok_or_else(|| throw("internal", format!("{name}() needs a deployer host")))?;
            let mut args = Vec::with_capacity(inputs.len());
            for input in inputs {
                args.push(ctx.eval_expression_tree(input)?);
            }
            handler(&st, args).map_err(at)
        },
    );
}

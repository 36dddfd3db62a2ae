//! Errors as scripts see them: maps with a `kind` and a `message`, catchable with
//! `try { } catch (e) { e.kind }`, except cancellation, which no script can swallow.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position};

pub use crate::host::errors::{innermost, is_terminated, message_of};
use crate::host::state::{HostState, StateRef};
use crate::pipeline::Control;

/// The error type of every native function.
pub type Error = Box<EvalAltResult>;

/// Returns the run's state from a call context.
pub fn state(ctx: &NativeCallContext) -> Result<Arc<HostState>, Error> {
    ctx.tag()
        .and_then(|t| t.clone().try_cast::<StateRef>())
        .map(|s| s.0)
        .ok_or_else(|| {
            throw(
                "internal",
                "this function needs a deployer host: run scripts with `deployer run`",
            )
        })
}

/// Builds a script error `#{ kind, message }`.
pub fn throw(kind: &str, message: impl Into<String>) -> Error {
    throw_with(kind, message, Map::new())
}

/// Builds a script error `#{ kind, message, ...extra }`.
pub fn throw_with(kind: &str, message: impl Into<String>, mut extra: Map) -> Error {
    extra.insert("kind".into(), kind.into());
    extra.insert("message".into(), message.into().into());
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from_map(extra),
        Position::NONE,
    ))
}

/// Builds the error by which the pipeline ends the script early: a map scripts read like any
/// other (`kind`, `message`), carrying `control` as its tag, which only [`control_of`] reads.
pub fn control(control: Control, message: impl Into<String>) -> Error {
    let mut value = Map::new();
    value.insert("kind".into(), control.kind().into());
    value.insert("message".into(), message.into().into());
    let mut value = Dynamic::from_map(value);
    value.set_tag(control.tag().into());
    Box::new(EvalAltResult::ErrorRuntime(value, Position::NONE))
}

/// The pipeline control an error carries (see [`control`]), past call and module wrappers
/// and a script's `catch (e) { throw e; }`.
pub fn control_of(err: &EvalAltResult) -> Option<Control> {
    match innermost(err) {
        EvalAltResult::ErrorRuntime(v, _) if v.is_map() => Control::from_tag(v.tag().into()),
        _ => None,
    }
}

/// Builds the error that ends a cancelled run. Scripts cannot catch it.
pub fn terminated(state: &HostState) -> Error {
    let reason = state
        .cancel
        .reason()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "cancelled".into());
    Box::new(EvalAltResult::ErrorTerminated(
        reason.into(),
        Position::NONE,
    ))
}

/// Returns true when the error is a fault of the script itself (an unknown function or
/// variable, a type mismatch, a bad option or duration), not of the world it probes: a dry
/// run reports these as errors, and everything else as "would fail".
pub fn is_script_bug(err: &EvalAltResult) -> bool {
    use EvalAltResult as E;
    match innermost(err) {
        E::ErrorRuntime(..) => kind_of(err).as_deref() == Some("usage"),
        E::ErrorFunctionNotFound(..)
        | E::ErrorVariableNotFound(..)
        | E::ErrorPropertyNotFound(..)
        | E::ErrorModuleNotFound(..)
        | E::ErrorMismatchDataType(..)
        | E::ErrorMismatchOutputType(..)
        | E::ErrorIndexingType(..)
        | E::ErrorFor(..)
        | E::ErrorDotExpr(..)
        | E::ErrorParsing(..)
        | E::ErrorUnboundThis(..)
        | E::ErrorAssignmentToConstant(..)
        | E::ErrorStackOverflow(..)
        | E::ErrorTooManyOperations(..)
        | E::ErrorTooManyModules(..)
        | E::ErrorDataTooLarge(..) => true,
        _ => false,
    }
}

/// Returns the `kind` of a thrown error map, if any.
pub fn kind_of(err: &EvalAltResult) -> Option<String> {
    match innermost(err) {
        EvalAltResult::ErrorRuntime(v, _) => v
            .read_lock::<Map>()
            .and_then(|m| m.get("kind").map(|k| k.to_string())),
        EvalAltResult::ErrorTerminated(..) => Some("cancelled".into()),
        _ => None,
    }
}

/// Adds the call site to an error that has no position: Rhai gives none to errors of
/// qualified calls such as `http::get`.
pub fn at_call(ctx: &NativeCallContext, mut e: Error) -> Error {
    if e.position().is_none() {
        e.set_position(ctx.call_position());
    }
    e
}

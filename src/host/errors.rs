//! Reading Rhai errors: the innermost cause past call and module wrappers, and its message
//! without Rhai's position suffix (diagnostics show the place themselves).

use rhai::{Dynamic, EvalAltResult, Map};

/// Returns the innermost error, past function-call and module wrappers.
pub fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => innermost(inner),
        other => other,
    }
}

/// Returns true when the error is a cancellation (Ctrl-C, `--timeout`): never retried.
pub fn is_terminated(err: &EvalAltResult) -> bool {
    matches!(innermost(err), EvalAltResult::ErrorTerminated(..))
}

/// Returns the message of an error without its position: for thrown maps their `message`,
/// for thrown strings the string, otherwise Rhai's description.
pub fn message_of(err: &EvalAltResult) -> String {
    match innermost(err) {
        EvalAltResult::ErrorRuntime(v, _) => value_message(v),
        EvalAltResult::ErrorTerminated(v, _) => v.to_string(),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => format!("unknown function: {sig}"),
        EvalAltResult::ErrorVariableNotFound(name, _) => format!("unknown variable: {name}"),
        other => strip_position(&other.to_string()),
    }
}

/// Returns the message carried by a thrown value.
pub fn value_message(v: &Dynamic) -> String {
    if let Some(m) = v.read_lock::<Map>() {
        if let Some(msg) = m.get("message") {
            return msg.to_string();
        }
        return format!("{:?}", *m);
    }
    v.to_string()
}

/// Removes Rhai's ` (line 3, position 5)` suffix; diagnostics show the place themselves.
pub fn strip_position(text: &str) -> String {
    match text.rfind(" (line ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text.to_string(),
    }
}

//! Option maps (`#{ timeout: "5s", cwd: "app" }`) read with their names checked, so a typo
//! is an error that names the option and the nearest known one.

use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use super::error::{throw, Error};
use crate::core::duration::{from_secs_f64, parse_duration};
pub use crate::core::options::unknown_option;

/// The options given to one function call.
pub struct Opts {
    func: &'static str,
    map: Map,
}

impl Opts {
    /// Checks that every key of `map` is one of `known`.
    pub fn new(func: &'static str, map: Map, known: &[&str]) -> Result<Opts, Error> {
        check_keys(func, &map, known)?;
        Ok(Opts { func, map })
    }

    /// An empty option set.
    pub fn none(func: &'static str) -> Opts {
        Opts {
            func,
            map: Map::new(),
        }
    }

    /// Returns the raw value of an option (unit counts as absent).
    pub fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|v| !v.is_unit())
    }

    fn bad(&self, key: &str, want: &str, got: &Dynamic) -> Error {
        throw(
            "usage",
            format!(
                "{}(): option `{key}` must be {want}, got {} ({})",
                self.func,
                show(got),
                got.type_name()
            ),
        )
    }

    /// Reads a string option.
    pub fn string(&self, key: &str) -> Result<Option<String>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.to_string())),
            Some(v) => Err(self.bad(key, "a string", v)),
        }
    }

    /// Reads a true/false option.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .map_err(|_| self.bad(key, "true or false", v)),
        }
    }

    /// Reads a whole-number option.
    pub fn int(&self, key: &str) -> Result<Option<i64>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_int()
                .map(Some)
                .map_err(|_| self.bad(key, "a whole number", v)),
        }
    }

    /// Reads a number option (whole or decimal).
    pub fn float(&self, key: &str) -> Result<Option<f64>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => number(v)
                .map(Some)
                .ok_or_else(|| self.bad(key, "a number", v)),
        }
    }

    /// Reads a duration option: `"250ms"`, `"30s"`, `"5m"` or a number of seconds.
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => duration(v)
                .map(Some)
                .map_err(|e| throw("usage", format!("{}(): option `{key}`: {e}", self.func))),
        }
    }

    /// Reads a map option.
    pub fn map(&self, key: &str) -> Result<Option<Map>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .clone()
                .try_cast::<Map>()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a map such as #{ name: \"value\" }", v)),
        }
    }

    /// Reads a map of strings (headers, environment variables).
    pub fn string_pairs(&self, key: &str) -> Result<Vec<(String, String)>, Error> {
        Ok(self
            .map(key)?
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Reads an array option.
    pub fn array(&self, key: &str) -> Result<Option<Array>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .clone()
                .try_cast::<Array>()
                .map(Some)
                .ok_or_else(|| self.bad(key, "an array", v)),
        }
    }
}

/// Checks that every key of `map` is one of `known`; the error names the option, the
/// nearest known one and all of them.
pub fn check_keys(func: &str, map: &Map, known: &[&str]) -> Result<(), Error> {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            return Err(throw("usage", unknown_option(func, key, known)));
        }
    }
    Ok(())
}

/// Reads a number from an int or float value.
pub fn number(v: &Dynamic) -> Option<f64> {
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
}

/// Reads a duration from a string such as `"30s"` or a number of seconds.
pub fn duration(v: &Dynamic) -> Result<Duration, String> {
    if v.is_string() {
        return parse_duration(&v.to_string()).map_err(|e| e.to_string());
    }
    match number(v) {
        Some(secs) => from_secs_f64(secs).map_err(|e| e.to_string()),
        None => Err(format!(
            "bad duration {} ({}): write a string such as \"30s\" or a number of seconds",
            show(v),
            v.type_name()
        )),
    }
}

/// Shows a value the way a script would write it.
pub fn show(v: &Dynamic) -> String {
    if v.is_string() {
        format!("\"{v}\"")
    } else {
        format!("{v:?}")
    }
}

/// Converts an array of values into program arguments.
pub fn argv(func: &str, arr: &Array) -> Result<Vec<String>, Error> {
    if arr.is_empty() {
        return Err(throw(
            "usage",
            format!("{func}(): the command is empty; give the program and its arguments, such as [\"git\", \"status\"]"),
        ));
    }
    arr.iter()
        .map(|v| {
            if v.is_unit() || v.is_map() || v.is_array() {
                Err(throw(
                    "usage",
                    format!(
                        "{func}(): command arguments must be strings or numbers, got {} in {}",
                        show(v),
                        arr.iter().map(show).collect::<Vec<_>>().join(", ")
                    ),
                ))
            } else {
                Ok(v.to_string())
            }
        })
        .collect()
}

//! The run's context and safety switches: `env`, `var`, `env_var`, `secret`, `dry_run`,
//! `confirm`, `abort`, logging, time, and small helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use rhai::plugin::*;

use super::error::{state, terminated, throw, Error};
use crate::core::mask::MIN_SECRET_LEN;
use crate::host::state::HostState;

/// Converts a `--var` string to the type of the default the script gave.
fn typed_like(name: &str, value: &str, default: &Dynamic) -> Result<Dynamic, Error> {
    let bad = |want: &str| {
        throw(
            "usage",
            format!("--var {name}={value}: expected {want} (the script's default is {default})"),
        )
    };
    if default.is_bool() {
        return match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true.into()),
            "false" | "no" | "0" | "off" => Ok(false.into()),
            _ => Err(bad("true or false")),
        };
    }
    if default.is_int() {
        return value
            .trim()
            .parse::<i64>()
            .map(Dynamic::from)
            .map_err(|_| bad("a whole number"));
    }
    if default.is_array() {
        // A list setting: `--var paths=/,/login` gives ["/", "/login"].
        return Ok(crate::api::text::split_list(value)
            .into_iter()
            .map(Dynamic::from)
            .collect::<rhai::Array>()
            .into());
    }
    if default.is_float() {
        return value
            .trim()
            .parse::<f64>()
            .map(Dynamic::from)
            .map_err(|_| bad("a number"));
    }
    Ok(value.into())
}

fn ask(ctx: &NativeCallContext, question: &str) -> Result<bool, Error> {
    let st = state(ctx)?;
    st.confirm(question).map_err(|_| terminated(&st))
}

/// The handler of `var(name)` and `var(name, default)` (custom syntax: `var` is a reserved
/// word in Rhai). Without a default, a variable that was not given is an error naming the
/// ones that were; with one, the value takes the default's type, so `--var break=true`
/// reads as a bool when the default is `false`.
pub fn var_syntax(st: &std::sync::Arc<HostState>, args: Vec<Dynamic>) -> Result<Dynamic, Error> {
    let mut args = args.into_iter();
    let name = args.next().unwrap_or_default();
    if !name.is_string() {
        return Err(throw(
            "usage",
            format!("var(): the name must be a string, got {name}"),
        ));
    }
    let name = name.to_string();
    let opts = st.options();
    match (opts.vars.get(&name), args.next()) {
        (Some(v), Some(default)) => typed_like(&name, v, &default),
        (Some(v), None) => Ok(v.clone().into()),
        (None, Some(default)) => Ok(default),
        (None, None) => {
            let known: Vec<&str> = opts.vars.keys().map(String::as_str).collect();
            Err(throw(
                "usage",
                format!(
                    "variable `{name}` is not set: pass --var {name}=VALUE{}",
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (set: {})", known.join(", "))
                    }
                ),
            ))
        }
    }
}

/// The documentation of `var`, which is syntax rather than a registered function: one
/// `(signature, documentation)` row per form, documentation as doc comments would give it
/// (the REPL's completion, hints and `:doc` read it).
pub const VAR_DOC: &[(&str, &str)] = &[
    (
        "var(name: String) -> String",
        r#"A script variable, first match wins: `--var NAME=VALUE`, then deployer.toml's
`[env.E.scripts.S]`, `[env.E.vars]`, `[scripts.S]`, `[vars]`; an error naming the ones
that were given if it was not. A `--var` that no `var()` reads is an error before the
run (literal names are found in the script and its modules).

```rhai
let url = var("base_url");
```"#,
    ),
    (
        "var(name: String, default: Dynamic) -> Dynamic",
        r#"A script variable with a default; the value takes the default's type, so
`--var break=true` reads as a bool when the default is `false`.

```rhai
let broken = var("break", false);
let rounds = var("rounds", 3);
```"#,
    ),
];

#[export_module]
pub mod env_api {
    use super::*;

    /// The name of the environment this run targets (`--env`).
    ///
    /// ```rhai
    /// if env() == "production" { log::warn("deploying to production"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn env(ctx: NativeCallContext) -> Result<String, Error> {
        Ok(state(&ctx)?.options().env)
    }

    /// An environment variable of the deployer process; an error if it is not set.
    ///
    /// ```rhai
    /// let home = env_var("HOME");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn env_var(name: &str) -> Result<String, Error> {
        std::env::var(name).map_err(|_| {
            throw(
                "usage",
                format!("environment variable {name} is not set: export {name}=... before running deployer, or use env_var(\"{name}\", default)"),
            )
        })
    }

    /// An environment variable, or `default` when it is not set.
    ///
    /// ```rhai
    /// let region = env_var("AWS_REGION", "eu-west-1");
    /// ```
    #[rhai_fn(name = "env_var")]
    pub fn env_var_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_string())
    }

    /// A secret from the environment. Its value is masked as `***` in every log line,
    /// error message, record and hook, in every form it is rendered in (quoted, escaped,
    /// URL-encoded, base64, line by line). An error if it is not set, or shorter than 6
    /// characters (too short to mask without garbling other output); the error names the
    /// variable, never the value.
    ///
    /// ```rhai
    /// let hook = secret("SLACK_WEBHOOK_URL");
    /// http::post(hook, #{ json: #{ text: "deployed" } });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn secret(ctx: NativeCallContext, name: &str) -> Result<String, Error> {
        let st = state(&ctx)?;
        let value = std::env::var(name).unwrap_or_default();
        if value.is_empty() {
            return Err(throw(
                "secret",
                format!("secret {name} is not set: export {name}=... in the environment that runs deployer (its value is never printed)"),
            ));
        }
        if !st.console.masker.add(&value) {
            return Err(throw(
                "secret",
                format!("secret {name} is shorter than {MIN_SECRET_LEN} characters, too short to be masked in output: use a longer value, or read it with env_var(\"{name}\") if it is not secret (its value is never printed)"),
            ));
        }
        Ok(value)
    }

    /// True when the run was started with `--dry-run`.
    ///
    /// ```rhai
    /// if !dry_run() { log::info("this is for real"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn dry_run(ctx: NativeCallContext) -> Result<bool, Error> {
        Ok(state(&ctx)?.dry_run())
    }

    /// Asks the operator a yes/no question on the terminal. `--yes` answers yes; with no
    /// terminal and no `--yes` it answers no and says why. It never assumes yes.
    ///
    /// ```rhai
    /// if !confirm("Deploy to PRODUCTION?") { abort("cancelled by operator"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn confirm(ctx: NativeCallContext, question: &str) -> Result<bool, Error> {
        ask(&ctx, question)
    }

    /// Stops the run with an error of kind `abort` (never retried).
    ///
    /// ```rhai
    /// if env() == "production" && !confirm("Continue?") { abort("cancelled by operator"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn abort(message: &str) -> Result<(), Error> {
        Err(throw("abort", format!("aborted: {message}")))
    }

    /// Checks an options map against the option names a function knows and returns it: a
    /// typo is an error naming the option and the nearest known one, never a silent default.
    /// For script modules that take option maps, as the built-in functions do.
    ///
    /// ```rhai
    /// fn deploy(opts) {
    ///     check_options("deploy", opts, ["cwd", "timeout"]);
    /// }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn check_options(
        func: &str,
        options: Dynamic,
        known: rhai::Array,
    ) -> Result<rhai::Map, Error> {
        let Some(map) = options.clone().try_cast::<rhai::Map>() else {
            return Err(throw(
                "usage",
                format!(
                    "{func}(): options must be a map such as #{{ cwd: \"app\" }}, got {} ({})",
                    options,
                    options.type_name()
                ),
            ));
        };
        let names: Vec<String> = known.iter().map(|k| k.to_string()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        crate::api::opts::check_keys(func, &map, &refs)?;
        Ok(map)
    }

    /// The script's variables in one call, with their defaults: a map of the same keys,
    /// each value found as `var(name, default)` finds it (first match: `--var`, then
    /// deployer.toml's `[env.E.scripts.S]`, `[env.E.vars]`, `[scripts.S]`, `[vars]`) and
    /// typed like its default (a list default splits `a,b,c`). `()` as the default makes a
    /// variable required. The one home of a script's defaults: `deployer check` knows the
    /// names, so a misspelt `--var` is an error before the run.
    ///
    /// ```rhai
    /// let s = vars(#{ base_url: "http://127.0.0.1:8080", attempts: 20, paths: ["/", "/login"] });
    /// log::info(`${s.base_url}: ${s.attempts} attempts on ${s.paths.len()} paths`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn vars(ctx: NativeCallContext, defaults: rhai::Map) -> Result<rhai::Map, Error> {
        let st = state(&ctx)?;
        let mut out = rhai::Map::new();
        for (name, default) in defaults {
            let mut args = vec![Dynamic::from(name.to_string())];
            if !default.is_unit() {
                args.push(default);
            }
            let v = var_syntax(&st, args).map_err(|mut e| {
                if e.position().is_none() {
                    e.set_position(ctx.call_position());
                }
                e
            })?;
            out.insert(name, v);
        }
        Ok(out)
    }

    /// The current time in UTC, RFC 3339 (`2026-11-23T19:12:00.123Z`).
    ///
    /// ```rhai
    /// let started = now();
    /// ```
    pub fn now() -> String {
        crate::core::time::rfc3339(SystemTime::now())
    }

    /// The current time in whole seconds since 1970-01-01 UTC.
    ///
    /// ```rhai
    /// let t0 = timestamp();
    /// sleep("1s");
    /// log::info(`took ${timestamp() - t0}s`);
    /// ```
    pub fn timestamp() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// A TCP port on 127.0.0.1 that is free right now, for a local server.
    ///
    /// ```rhai
    /// let port = free_port();
    /// let app = spawn(["my-server", "--port", `${port}`]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn free_port() -> Result<i64, Error> {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port() as i64)
            .map_err(|e| throw("exec", format!("free_port(): cannot bind 127.0.0.1: {e}")))
    }

    /// The path of the running deployer binary (to start its built-in demo server).
    ///
    /// ```rhai
    /// let server = spawn([deployer_exe(), "demo-server", "--port", "8080"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn deployer_exe() -> Result<String, Error> {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .map_err(|e| throw("exec", format!("cannot find the deployer binary: {e}")))
    }
}

#[export_module]
pub mod log_api {
    use super::*;

    /// Logs an informational line (hidden by `-q`).
    ///
    /// ```rhai
    /// log::info(`deploying ${env()}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn info(ctx: NativeCallContext, message: Dynamic) -> Result<(), Error> {
        state(&ctx)?.console.info(&message.to_string());
        Ok(())
    }

    /// In a dry run, says what a real run would do here (`would ...`) and counts it as a
    /// skipped action, so the check around it shows `would run`, never ✓; in a real run,
    /// logs the line like `log::info`. For script modules that skip an action themselves.
    ///
    /// ```rhai
    /// if dry_run() { log::would("restart the queue workers"); return; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn would(ctx: NativeCallContext, message: Dynamic) -> Result<(), Error> {
        let st = state(&ctx)?;
        if st.dry_run() {
            st.would(&message.to_string());
        } else {
            st.console.info(&message.to_string());
        }
        Ok(())
    }

    /// Logs a warning.
    ///
    /// ```rhai
    /// log::warn("the cache could not be cleared");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn warn(ctx: NativeCallContext, message: Dynamic) -> Result<(), Error> {
        state(&ctx)?.console.warn(&message.to_string());
        Ok(())
    }

    /// Logs an error line (the run goes on; throw or `abort` to stop it).
    ///
    /// ```rhai
    /// log::error("error rate above 5 %");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn error(ctx: NativeCallContext, message: Dynamic) -> Result<(), Error> {
        state(&ctx)?.console.error(&message.to_string());
        Ok(())
    }
}

//! `retry` and `sleep`: schedules from `core::backoff`, cancellation never retried.

use rhai::plugin::*;
use rhai::{Array, FnPtr, Map};

use super::error::{
    is_terminated, kind_of, message_of, state, terminated, throw, throw_with, Error,
};
use super::opts::{duration, Opts};
use crate::core::backoff::Backoff;
use crate::core::duration::format_duration;
use crate::host::console::Activity;
use crate::host::progress;
use crate::host::state::RetryEvent;

pub(crate) const RETRY_OPTS: &[&str] = &[
    "attempts", "backoff", "base", "factor", "max", "jitter", "when", "name",
];

/// Error kinds that mean "stop now", never "try again" (as do the pipeline's own controls
/// and cancellation).
const NEVER_RETRIED: &[&str] = &["abort", "usage"];

fn schedule(opts: &Opts) -> Result<(u32, Backoff), Error> {
    let attempts = opts.int("attempts")?;
    let list = opts.array("backoff")?;
    let exponential = ["base", "factor", "max", "jitter"]
        .iter()
        .any(|k| opts.get(k).is_some());
    if list.is_some() && exponential {
        return Err(throw(
            "usage",
            "retry(): give either `backoff` (a list of waits) or `base`/`factor`/`max`/`jitter`, not both",
        ));
    }
    let backoff = match &list {
        Some(waits) => Backoff::Fixed(
            waits
                .iter()
                .map(|w| duration(w).map_err(|e| throw("usage", format!("retry(): backoff: {e}"))))
                .collect::<Result<_, _>>()?,
        ),
        None => Backoff::Exponential {
            base: opts
                .duration("base")?
                .unwrap_or(std::time::Duration::from_secs(1)),
            factor: opts.float("factor")?.unwrap_or(2.0),
            max: opts
                .duration("max")?
                .unwrap_or(std::time::Duration::from_secs(30)),
            jitter: opts.boolean("jitter")?.unwrap_or(false),
        },
    };
    backoff
        .validate()
        .map_err(|e| throw("usage", format!("retry(): {e}")))?;
    let attempts = match (attempts, &list) {
        (Some(n), _) => n,
        (None, Some(l)) => l.len() as i64,
        (None, None) => 3,
    };
    if !(1..=1000).contains(&attempts) {
        return Err(throw(
            "usage",
            format!("retry(): attempts must be between 1 and 1000, got {attempts}"),
        ));
    }
    Ok((attempts as u32, backoff))
}

fn retry_impl(ctx: &NativeCallContext, opts: Opts, body: FnPtr) -> Result<Dynamic, Error> {
    let st = state(ctx)?;
    let (mut attempts, backoff) = schedule(&opts)?;
    if st.dry_run() && attempts > 1 {
        // A dry run shows the plan; it does not wait out backoffs against a service that
        // the run has not changed.
        st.console.info(&format!(
            "  dry run: one attempt instead of {attempts} (a real run retries with backoff)"
        ));
        attempts = 1;
    }
    let when = match opts.get("when") {
        None => None,
        Some(v) => Some(v.clone().try_cast::<FnPtr>().ok_or_else(|| {
            throw(
                "usage",
                "retry(): option `when` must be a closure such as |err| err.kind == \"connect\"",
            )
        })?),
    };
    let label = opts
        .string("name")?
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    let mut errors: Vec<String> = Vec::new();
    let mut last: Option<Error> = None;
    // On a terminal, after a first failure, one line shows the attempts and the countdown
    // to the next instead of a warning per attempt (run.log keeps every warning).
    let mut activity: Option<Activity> = None;
    let mut failed = String::new();
    for attempt in 1..=attempts {
        let wait = backoff.wait_before(attempt, rand::random::<f64>());
        if attempt > 1 && !wait.is_zero() {
            match &activity {
                Some(a) => st.sleep_counting(a, wait, |left| {
                    progress::attempt_line(
                        u64::from(attempt - 1),
                        u64::from(attempts),
                        &failed,
                        left,
                    )
                }),
                None => st.sleep(wait),
            }
            .map_err(|_| terminated(&st))?;
        } else if st.cancel.is_cancelled() {
            return Err(terminated(&st));
        }
        if let Some(a) = &activity {
            a.status(&format!("attempt {attempt}/{attempts}"));
        }
        match body.call_within_context::<Dynamic>(ctx, ()) {
            Ok(v) => {
                drop(activity.take());
                if attempt > 1 {
                    st.console
                        .success(&format!("{label}succeeded on attempt {attempt}/{attempts}"));
                }
                return Ok(v);
            }
            Err(e) => {
                if is_terminated(&e) || super::error::control_of(&e).is_some() {
                    return Err(e);
                }
                let kind = kind_of(&e).unwrap_or_default();
                if NEVER_RETRIED.contains(&kind.as_str()) {
                    return Err(e);
                }
                if let Some(when) = &when {
                    let err_value = match super::error::innermost(&e) {
                        EvalAltResult::ErrorRuntime(v, _) => v.clone(),
                        _ => message_of(&e).into(),
                    };
                    let again = when
                        .call_within_context::<bool>(ctx, (err_value,))
                        .map_err(|we| {
                            if is_terminated(&we) {
                                we
                            } else {
                                throw(
                                    "usage",
                                    format!(
                                        "retry(): the `when` closure failed: {}",
                                        message_of(&we)
                                    ),
                                )
                            }
                        })?;
                    if !again {
                        return Err(e);
                    }
                }
                let msg = message_of(&e);
                let first = msg.lines().next().unwrap_or_default().to_string();
                let activity = activity.get_or_insert_with(|| {
                    let what = match label.strip_suffix(": ") {
                        Some(name) => format!("retry {name}"),
                        None => "retry".to_string(),
                    };
                    st.console.progress(&what)
                });
                failed = first.clone();
                if attempt < attempts {
                    let next = backoff.wait_before(attempt + 1, 0.5);
                    activity.warn(&format!(
                        "{label}attempt {attempt}/{attempts} failed: {first}; waiting {}",
                        format_duration(next)
                    ));
                    if let Ok(mut r) = st.retries.lock() {
                        r.push(RetryEvent {
                            attempt,
                            attempts,
                            error: first.clone(),
                            wait_ms: next.as_millis() as u64,
                        });
                    }
                } else {
                    activity.warn(&format!(
                        "{label}attempt {attempt}/{attempts} failed: {first}"
                    ));
                }
                errors.push(msg);
                last = Some(e);
            }
        }
    }
    let kind = last
        .as_deref()
        .and_then(kind_of)
        .unwrap_or_else(|| "retry".into());
    let mut msg = format!("{label}all {attempts} attempts failed:");
    // Attempts that failed with the same message read as one line.
    let failed: Vec<crate::core::attempts::Failed> = errors
        .iter()
        .enumerate()
        .map(|(i, e)| crate::core::attempts::Failed {
            number: i as i64 + 1,
            problem: e.clone(),
            ms: None,
        })
        .collect();
    for folded in crate::core::attempts::fold(&failed) {
        let mut lines = folded.lines();
        msg.push_str(&format!("\n  {}", lines.next().unwrap_or_default()));
        for more in lines {
            msg.push_str(&format!("\n    {more}"));
        }
    }
    let mut extra = Map::new();
    extra.insert(
        "errors".into(),
        errors
            .into_iter()
            .map(Dynamic::from)
            .collect::<Array>()
            .into(),
    );
    Err(throw_with(&kind, msg, extra))
}

#[export_module]
pub mod retry_api {
    use super::*;

    /// Calls a closure until it succeeds, up to 3 attempts with exponential backoff
    /// (1 s, 2 s, ...), and returns its value. Options: `attempts`, either `backoff`
    /// (a fixed list of waits, the first before attempt 1) or `base`, `factor`, `max`,
    /// `jitter`; `when` (a closure given the error, true to retry); `name` (for logs).
    /// Errors of kind `abort` and cancellation (Ctrl-C) are never retried. The final error
    /// lists every attempt's error. For HTTP requests that must not run twice, retry only
    /// errors with `err.sent == false` (`connect`, `dns`, `tls`: the request never reached
    /// the server); `timeout`, `reset`, `protocol` and `body` mean it may have.
    ///
    /// ```rhai
    /// retry(#{ attempts: 3, backoff: ["0s", "30s", "60s"] }, || {
    ///     exec(["wrangler", "deploy"]);
    /// });
    /// let res = retry(#{ attempts: 6, base: "1s", factor: 2, max: "30s", jitter: true,
    ///                    when: |err| err.kind != "exit" }, || http::get(url));
    /// retry(#{ attempts: 3, when: |err| !err.sent }, || http::post(url, #{ json: #{ id: 7 } }));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn retry(ctx: NativeCallContext, options: Map, body: FnPtr) -> Result<Dynamic, Error> {
        retry_impl(&ctx, Opts::new("retry", options, RETRY_OPTS)?, body)
    }

    /// Calls a closure up to `attempts` times with exponential backoff (1 s, 2 s, 4 s, ...
    /// up to 30 s).
    ///
    /// ```rhai
    /// let r = retry(5, || http::get("http://127.0.0.1:8080/health"));
    /// ```
    #[rhai_fn(name = "retry", return_raw)]
    pub fn retry_n(ctx: NativeCallContext, attempts: i64, body: FnPtr) -> Result<Dynamic, Error> {
        let mut m = Map::new();
        m.insert("attempts".into(), attempts.into());
        retry_impl(&ctx, Opts::new("retry", m, RETRY_OPTS)?, body)
    }

    /// Waits for a duration: `"250ms"`, `"30s"`, `"5m"`, `"1h30m"` or a number of
    /// seconds. Ctrl-C interrupts it at once.
    ///
    /// ```rhai
    /// sleep("30s");
    /// sleep(1.5);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn sleep(ctx: NativeCallContext, duration: Dynamic) -> Result<(), Error> {
        let st = state(&ctx)?;
        let d = super::duration(&duration).map_err(|e| throw("usage", format!("sleep(): {e}")))?;
        st.sleep(d).map_err(|_| terminated(&st))
    }

    /// Waits a whole number of seconds (replaces Rhai's uninterruptible `sleep`).
    ///
    /// ```rhai
    /// sleep(2);
    /// ```
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_int(ctx: NativeCallContext, seconds: i64) -> Result<(), Error> {
        sleep(ctx, Dynamic::from(seconds))
    }

    /// Waits a number of seconds (replaces Rhai's uninterruptible `sleep`).
    ///
    /// ```rhai
    /// sleep(0.25);
    /// ```
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_float(ctx: NativeCallContext, seconds: f64) -> Result<(), Error> {
        sleep(ctx, Dynamic::from(seconds))
    }
}

//! `process::alive` and `process::stop`: services started with `spawn(.., #{ detach: true })`
//! (or by anything else that writes a pid file), found again by pid or pid file, in this
//! run or a later one.

use std::path::PathBuf;
use std::time::Duration;

use rhai::plugin::*;
use rhai::Map;

use super::error::{throw, Error};
use super::exec::ProcessHandle;
use crate::core::duration::format_duration;
use crate::sys::reaper::pid_running;
use crate::sys::spawn::{read_pidfile, stop_pid, StopOutcome, STOP_GRACE};

/// A process named by a script: its pid (if any runs) and the pid file it came from.
struct Target {
    pid: Option<i32>,
    pidfile: Option<PathBuf>,
    shown: String,
}

fn target(func: &str, v: &Dynamic) -> Result<Target, Error> {
    if let Ok(pid) = v.as_int() {
        if pid <= 1 || pid > i32::MAX as i64 {
            return Err(throw(
                "usage",
                format!("{func}(): {pid} is not a process id; give a pid above 1 or the path of a pid file"),
            ));
        }
        return Ok(Target {
            pid: Some(pid as i32),
            pidfile: None,
            shown: format!("pid {pid}"),
        });
    }
    if let Some(p) = v.clone().try_cast::<ProcessHandle>() {
        let pid = p.pid_value();
        return Ok(Target {
            pid: (pid > 1).then_some(pid),
            pidfile: None,
            shown: format!("pid {pid}"),
        });
    }
    if v.is_string() {
        let path = PathBuf::from(v.to_string());
        let pid = read_pidfile(&path).map_err(|e| throw("process", format!("{func}(): {e}")))?;
        // A pid file outlives its process; its pid may since name another program. A
        // process that started after the file was written is not the one it names.
        if let Some(p) = pid {
            let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let started = crate::sys::reaper::started_at(p);
            if let (Some(written), Some(started)) = (written, started) {
                if started > written + Duration::from_secs(2) {
                    return Ok(Target {
                        pid: None,
                        shown: format!(
                            "{} (stale: pid {p} is now another process, started after the file was written)",
                            path.display()
                        ),
                        pidfile: Some(path),
                    });
                }
            }
        }
        return Ok(Target {
            pid,
            shown: match pid {
                Some(pid) => format!("pid {pid} (from {})", path.display()),
                None => format!("{} (no such pid file)", path.display()),
            },
            pidfile: Some(path),
        });
    }
    Err(throw(
        "usage",
        format!(
            "{func}(): give a pid, the path of a pid file or a process from spawn(), not {} ({})",
            v,
            v.type_name()
        ),
    ))
}

/// Removes a pid file that still names `pid` (it is stale once the process is gone).
fn remove_stale(pidfile: &Option<PathBuf>, pid: i32) {
    if let Some(path) = pidfile {
        if read_pidfile(path) == Ok(Some(pid)) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn stop_impl(func: &str, v: &Dynamic, grace: Duration) -> Result<Map, Error> {
    let t = target(func, v)?;
    let mut m = Map::new();
    m.insert(
        "pid".into(),
        t.pid
            .map(|p| Dynamic::from(p as i64))
            .unwrap_or(Dynamic::UNIT),
    );
    let Some(pid) = t.pid else {
        if let Some(stale) = &t.pidfile {
            let _ = std::fs::remove_file(stale);
        }
        m.insert("was_running".into(), false.into());
        m.insert("how".into(), "not_running".into());
        m.insert(
            "message".into(),
            format!("{}: nothing to stop", t.shown).into(),
        );
        return Ok(m);
    };
    let outcome = stop_pid(pid, grace).map_err(|e| throw("usage", format!("{func}(): {e}")))?;
    let (how, message) = match outcome {
        StopOutcome::NotRunning => ("not_running", format!("{}: not running", t.shown)),
        StopOutcome::Terminated(after) => (
            "term",
            format!(
                "{}: stopped by SIGTERM in {}",
                t.shown,
                format_duration(after)
            ),
        ),
        StopOutcome::Killed => (
            "kill",
            format!(
                "{}: did not stop within {} of SIGTERM; killed with SIGKILL",
                t.shown,
                format_duration(grace)
            ),
        ),
    };
    remove_stale(&t.pidfile, pid);
    m.insert(
        "was_running".into(),
        (outcome != StopOutcome::NotRunning).into(),
    );
    m.insert("how".into(), how.into());
    m.insert("message".into(), message.into());
    Ok(m)
}

#[export_module]
pub mod process_api {
    use super::*;

    /// Returns true while the process runs: give a pid, the path of a pid file (false when
    /// the file does not exist) or a process from `spawn()`. A process that exited but was
    /// not yet reaped (a zombie) is not alive.
    ///
    /// ```rhai
    /// if process::alive(".deploy/app.pid") { log::info("the app runs"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn alive(pid_or_pidfile: Dynamic) -> Result<bool, Error> {
        let t = target("process::alive", &pid_or_pidfile)?;
        Ok(t.pid.is_some_and(pid_running))
    }

    /// Stops a process and its group (a detached service leads its own): SIGTERM, 5 s for
    /// it to exit, then SIGKILL. Returns what happened: `#{ pid, was_running, how, message }`
    /// where `how` is `"not_running"`, `"term"` or `"kill"`. A pid file that names the
    /// stopped process is removed, and so is a stale one: a pid file whose pid now names a
    /// process that started after the file was written (pid reuse) stops nothing. In a dry
    /// run nothing is stopped.
    ///
    /// ```rhai
    /// let r = process::stop(".deploy/app.pid");
    /// log::info(r.message);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stop(ctx: NativeCallContext, pid_or_pidfile: Dynamic) -> Result<Map, Error> {
        stop_with(ctx, pid_or_pidfile, Dynamic::from(STOP_GRACE.as_secs_f64()))
    }

    /// Stops a process as `process::stop(target)` does, waiting `grace` (a duration)
    /// between SIGTERM and SIGKILL.
    ///
    /// ```rhai
    /// process::stop(".deploy/app.pid", "10s");
    /// ```
    #[rhai_fn(name = "stop", return_raw)]
    pub fn stop_with(
        ctx: NativeCallContext,
        pid_or_pidfile: Dynamic,
        grace: Dynamic,
    ) -> Result<Map, Error> {
        let grace = super::super::opts::duration(&grace)
            .map_err(|e| throw("usage", format!("process::stop(): grace: {e}")))?;
        let st = super::super::error::state(&ctx)?;
        if st.dry_run() {
            let t = target("process::stop", &pid_or_pidfile)?;
            st.console.info(&format!("would stop: {}", t.shown));
            let mut m = Map::new();
            m.insert(
                "pid".into(),
                t.pid
                    .map(|p| Dynamic::from(p as i64))
                    .unwrap_or(Dynamic::UNIT),
            );
            m.insert("was_running".into(), t.pid.is_some_and(pid_running).into());
            m.insert("how".into(), "dry_run".into());
            m.insert(
                "message".into(),
                format!("{}: not stopped (dry run)", t.shown).into(),
            );
            return Ok(m);
        }
        let m = stop_impl("process::stop", &pid_or_pidfile, grace)?;
        if let Some(msg) = m.get("message") {
            st.console.info(&msg.to_string());
        }
        Ok(m)
    }
}

//! `hosts`, `on`, `host`, `host_var`, `local`, `upload`, `download`: running a script's
//! steps on remote hosts over OpenSSH (see `crate::remote`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::{Array, FnPtr, Map};

use super::error::{is_script_bug, is_terminated, message_of, state, terminated, throw, Error};
use super::opts::Opts;
use crate::config::RollbackPolicy;
use crate::host::state::HostState;
use crate::remote::ssh::{self, ConnectError};
use crate::remote::{marked_script, rsync_paths, split_noise, valid_env_name, Plan, Share};
use crate::sys::process::{CommandOutput, CommandSpec, LineSink, ProcessError};
use tokio_util::sync::CancellationToken;

pub(crate) const ON_OPTS: &[&str] = &["batch", "max_fail", "once"];

/// Leaves the host entered by `on(...)`/`local(...)` even when the closure throws.
struct Entered(Arc<HostState>);

impl Entered {
    fn new(st: &Arc<HostState>, host: Option<String>) -> Entered {
        st.remote.push(host);
        Entered(st.clone())
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.remote.pop();
    }
}

/// The text a command is shown with: prefixed with its host inside `on(...)`.
pub(crate) fn shown(st: &HostState, shown: String) -> String {
    match st.remote.current() {
        Some(h) => format!("{h} | {shown}"),
        None => shown,
    }
}

fn connect(st: &HostState, host: &str) -> Result<(), Error> {
    let token = st.token();
    match st
        .remote
        .connect(host, &|| st.cancel.is_cancelled() || token.is_cancelled())
    {
        Ok(()) => Ok(()),
        Err(ConnectError::Cancelled(_)) => Err(terminated(st)),
        Err(ConnectError::Failed(msg)) => Err(throw("connect", msg)),
    }
}

/// Runs a command of `exec`/`sh` on `host`: the command, its environment and folder go
/// over the master connection on stdin to `sh -s`, never into an argv.
pub(crate) fn exec_on(
    st: &HostState,
    host: &str,
    spec: &CommandSpec,
    token: &tokio_util::sync::CancellationToken,
    live: Option<LineSink>,
) -> Result<Result<CommandOutput, ProcessError>, Error> {
    run_on(st, host, spec, token, live, true)
}

/// [`exec_on`]; `changes`: whether running it counts as changing the host (a probe that
/// only looks does not).
fn run_on(
    st: &HostState,
    host: &str,
    spec: &CommandSpec,
    token: &tokio_util::sync::CancellationToken,
    live: Option<LineSink>,
    changes: bool,
) -> Result<Result<CommandOutput, ProcessError>, Error> {
    if let Some((k, _)) = spec.env.iter().find(|(k, _)| !valid_env_name(k)) {
        return Err(throw(
            "usage",
            format!("env: `{k}` is not a valid variable name for the remote shell on {host}: use letters, digits and _"),
        ));
    }
    for word in &spec.argv {
        if st.console.mask(word) != *word {
            st.console.warn(&format!(
                "a secret is part of a command's arguments on {host}, where any user can read it in the process list: pass it through `env` instead, such as sh(\"... $TOKEN\", #{{ env: #{{ TOKEN: token }} }})"
            ));
            break;
        }
    }
    let argv = shell_on(st, host, changes)?;
    let cwd = spec.cwd.as_ref().map(|p| p.display().to_string());
    let script = marked_script(&spec.argv, &spec.env, cwd.as_deref(), spec.stdin.as_deref());
    let live = live.map(|sink| {
        let h = host.to_string();
        // Lines before the BEGIN line are the remote shell's, not the command's.
        let begun = std::sync::Mutex::new([false, false]);
        Arc::new(move |stream: &str, line: &str| {
            let i = usize::from(stream != "stdout");
            let Ok(mut begun) = begun.lock() else { return };
            if !begun[i] {
                begun[i] = line == crate::remote::BEGIN;
                return;
            }
            drop(begun);
            sink(stream, &format!("{h} | {line}"))
        }) as LineSink
    });
    let mut out = st.runtime.block_on(ssh::run(
        &argv,
        Some(script.into_bytes()),
        spec.timeout,
        token,
        live,
        crate::sys::process::MAX_CAPTURE,
    ));
    if let Ok(o) = &mut out {
        let (noise_out, stdout) = split_noise(&o.stdout);
        let (noise_err, stderr) = split_noise(&o.stderr);
        let noise = format!("{noise_out}{noise_err}");
        if !noise.trim().is_empty() && st.remote.note_noisy(host) {
            let first = noise.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            st.console.warn(&format!(
                "{host}: the remote shell prints text before every command (\"{}\"): a start-up file of the remote user's shell writes to non-interactive shells (~/.bashrc for bash, ~/.zshenv for zsh; ~/.profile, /etc/profile or /etc/bash.bashrc when it runs as a login shell). deployer leaves that text out of the command's output, but upload()/download() (scp, sftp, rsync) break on it: make the file print only in interactive shells (case $- in *i*) ... esac)",
                st.console.mask(first.trim())
            ));
        }
        let (stdout, stderr) = (stdout.to_string(), stderr.to_string());
        o.stdout = stdout;
        o.stderr = stderr;
    }
    if let Some(why) = out.as_ref().ok().and_then(|o| connection_lost(st, host, o)) {
        return Err(throw(
            "connect",
            format!(
                "lost the connection to {host} while running `{}`: {why}; the host went down or off the network (the command's outcome there is unknown)",
                crate::sys::process::display_argv(&spec.argv)
            ),
        ));
    }
    Ok(out)
}

/// Connects to `host` (if need be), notes the change when `changes`, and returns the argv
/// that runs `sh -s` there over the master.
fn shell_on(st: &HostState, host: &str, changes: bool) -> Result<Vec<String>, Error> {
    connect(st, host)?;
    if changes {
        note_change(st, host);
    }
    st.remote.shell_argv(host).map_err(|e| throw("connect", e))
}

/// Why the connection to `host` was lost, when ssh's exit says so: ssh exits 255 for its
/// own failures, and a remote command's own 255 comes with no such message and a master
/// that still answers.
fn connection_lost(st: &HostState, host: &str, out: &CommandOutput) -> Option<String> {
    if out.code != Some(255) {
        return None;
    }
    match ssh::lost_connection(&out.stderr) {
        Some(line) => Some(line),
        None if !st.remote.alive(host) => Some("the ssh connection closed".to_string()),
        None => None,
    }
}

/// What a file operation's output may hold: a whole file as `fs::read` takes it, and room
/// for what a noisy remote shell prints before the answer's marker.
const FILE_OP_KEEP: usize =
    super::fs::MAX_READ_BYTES as usize + 1 + crate::sys::process::MAX_CAPTURE;

/// Runs a file operation (`crate::remote::files`) on `host` over its master connection:
/// the text, with any file content in it, goes on stdin, never into an argv. Returns the
/// operation's output; a lost connection is an error of kind `connect` naming the host.
pub(crate) fn script_on(
    st: &HostState,
    host: &str,
    body: &str,
    changes: bool,
    what: &str,
) -> Result<CommandOutput, Error> {
    let argv = shell_on(st, host, changes)?;
    let script = crate::remote::remote_shell(body);
    match st.runtime.block_on(ssh::run(
        &argv,
        Some(script.into_bytes()),
        None,
        &st.token(),
        None,
        FILE_OP_KEEP,
    )) {
        Ok(o) => match connection_lost(st, host, &o) {
            Some(why) => Err(throw(
                "connect",
                format!(
                    "lost the connection to {host} during a file operation ({what} ...): {why}; the host went down or off the network (the operation's outcome there is unknown)"
                ),
            )),
            None => Ok(o),
        },
        Err(ProcessError::Cancelled { .. }) => Err(terminated(st)),
        Err(e) => Err(throw("connect", format!("{what} on {host}: {e}"))),
    }
}

/// A host has changed once a command runs on it after a `changes: true` phase began.
fn note_change(st: &HostState, host: &str) {
    let began = st.pipeline.read(|p| p.changes_began);
    if began {
        st.remote.mark_changed(host);
    }
}

/// Adds a host's outcome to the phase that is running, if any.
fn record(st: &HostState, host: &str, batch: usize, took: Duration, error: Option<String>) {
    let status = if error.is_none() { "passed" } else { "failed" };
    record_status(st, host, batch, took, status, error);
}

/// Sets how the rollback of a host that failed within the budget went, on its record.
fn set_rollback(st: &HostState, host: &str, status: &'static str) {
    st.pipeline.emit(crate::pipeline::Event::HostRolledBack {
        host: host.to_string(),
        status,
    });
}

/// [`record`] with an explicit status (`passed`, `failed` or `stopped`).
fn record_status(
    st: &HostState,
    host: &str,
    batch: usize,
    took: Duration,
    status: &'static str,
    error: Option<String>,
) {
    // What a rollback does on the hosts is its own record's, not the phase's.
    if st.remote.rolling_back() {
        return;
    }
    let changed = st.remote.changed().iter().any(|h| h == host);
    st.pipeline.emit(crate::pipeline::Event::HostResult {
        host: crate::pipeline::HostRecord {
            host: host.to_string(),
            status,
            batch,
            duration_ms: took.as_millis() as u64,
            changed,
            rollback: None,
            error,
        },
    });
}

fn share(opts: &Opts, key: &str) -> Result<Option<Share>, Error> {
    let Some(v) = opts.get(key) else {
        return Ok(None);
    };
    let r = if let Ok(n) = v.as_int() {
        Share::count(key, n)
    } else if let Ok(s) = v.clone().into_immutable_string() {
        Share::parse(key, &s)
    } else {
        return Err(throw(
            "usage",
            format!(
                "on(): `{key}` must be a number of hosts or a percentage such as \"30%\", got {}",
                super::opts::show(v)
            ),
        ));
    };
    r.map(Some).map_err(|e| throw("usage", e.0))
}

fn targets(st: &HostState, targets: Dynamic) -> Result<Vec<String>, Error> {
    let inv = st.remote.inventory();
    let list = if let Ok(role) = targets.clone().into_immutable_string() {
        inv.role(&role).map_err(|e| throw("usage", e.0))?
    } else if let Some(arr) = targets.clone().try_cast::<Array>() {
        let mut out = Vec::new();
        for v in arr {
            match v.into_immutable_string() {
                Ok(s) => out.push(s.to_string()),
                Err(t) => {
                    return Err(throw(
                        "usage",
                        format!("on(): a host must be a string, got a {t}"),
                    ))
                }
            }
        }
        out
    } else {
        return Err(throw(
            "usage",
            format!(
                "on(): the first argument must be a role name or an array of hosts such as hosts(), got a {}",
                targets.type_name()
            ),
        ));
    };
    inv.check_list(&list).map_err(|e| throw("usage", e.0))
}

/// Runs `body` on one host; connection errors count as that host's failure.
fn on_host(
    ctx: &NativeCallContext,
    st: &Arc<HostState>,
    host: &str,
    body: &FnPtr,
) -> Result<Dynamic, Error> {
    if st.cancel.is_cancelled() {
        return Err(terminated(st));
    }
    if !st.dry_run() {
        connect(st, host)?;
    }
    let _in = Entered::new(st, Some(host.to_string()));
    body.call_within_context::<Dynamic>(ctx, ())
}

/// What became of one host of a batch.
struct HostRun {
    host: String,
    result: Result<Dynamic, Error>,
    took: Duration,
}

/// A host's thread: Rhai closures are deep-recursive, give them the main thread's stack.
const HOST_STACK: usize = 8 * 1024 * 1024;

/// Runs `body` on every host of a batch at once, one thread per host, each with a token
/// of its own under `abort`; a host failing beyond the budget (or a mistake in the
/// script) cancels `abort`, which stops the other hosts' commands.
fn run_batch(
    ctx: &NativeCallContext,
    st: &Arc<HostState>,
    batch: &[String],
    body: &FnPtr,
    abort: &CancellationToken,
    failures: &AtomicUsize,
    max_fail: usize,
) -> Vec<HostRun> {
    let one = |host: &String| -> HostRun {
        st.remote.set_token(Some(abort.child_token()));
        let started = Instant::now();
        let result = on_host(ctx, st, host, body);
        st.remote.set_token(None);
        if let Err(e) = &result {
            // A mistake in the script fails every host; a failure past the budget ends the
            // rollout: either way the rest of the batch is stopped.
            let past_budget = || failures.fetch_add(1, Ordering::SeqCst) + 1 > max_fail;
            if is_script_bug(e) || (!is_terminated(e) && past_budget()) {
                abort.cancel();
            }
        }
        HostRun {
            host: host.clone(),
            result,
            took: started.elapsed(),
        }
    };
    if batch.len() == 1 {
        return batch.iter().map(one).collect();
    }
    // The masters start here, on the script's thread: ssh dies with the thread that
    // started it, and the hosts' threads end with the batch. A failure to start is
    // reported by the host's own connect().
    if !st.dry_run() {
        for host in batch {
            let _ = st.remote.start(host);
        }
    }
    std::thread::scope(|scope| {
        let spawned: Vec<_> = batch
            .iter()
            .map(|host| {
                let run = std::thread::Builder::new()
                    .name(format!("on {host}"))
                    .stack_size(HOST_STACK)
                    .spawn_scoped(scope, || one(host));
                (host, run)
            })
            .collect();
        spawned
            .into_iter()
            .map(|(host, run)| {
                let result = match run {
                    Ok(handle) => handle.join().unwrap_or_else(|_| HostRun {
                        host: host.clone(),
                        result: Err(throw(
                            "remote",
                            format!("on(): the thread running {host} panicked (a bug in deployer: please report it)"),
                        )),
                        took: Duration::ZERO,
                    }),
                    Err(e) => HostRun {
                        host: host.clone(),
                        result: Err(throw(
                            "remote",
                            format!("on(): cannot start a thread for {host}: {e}"),
                        )),
                        took: Duration::ZERO,
                    },
                };
                result
            })
            .collect()
    })
}

/// Rolls back one host that failed within the failure budget, by calling the script's
/// `fn rollback(ctx)` with `ctx.hosts` = that host, as the environment's policy says.
/// Returns the rollback's status for the host's record.
fn roll_back_host(
    ctx: &NativeCallContext,
    st: &Arc<HostState>,
    host: &str,
    why: &str,
) -> Result<&'static str, Error> {
    let defined = st.script.lookup("rollback", 1).is_some();
    if !defined {
        st.console.warn(&format!(
            "{host} changed and failed, but the script defines no fn rollback(ctx): {host} is left as it is"
        ));
        return Ok("missing");
    }
    let inv = st.remote.inventory();
    match inv.rollback {
        RollbackPolicy::Never => {
            st.console.warn(&format!(
                "{host} changed and failed, but environment {} has rollback = \"never\": {host} is left as it is",
                inv.env
            ));
            return Ok("never");
        }
        RollbackPolicy::Confirm => match st.confirm(&format!("Roll back {host} ({why})?")) {
            Ok(true) => {}
            Ok(false) => return Ok("declined"),
            Err(_) => return Err(terminated(st)),
        },
        RollbackPolicy::Auto => {}
    }
    st.console
        .show(&crate::host::present::rollback_banner(Some(host), why));
    let phase = st.pipeline.read(|p| {
        if p.in_phase {
            p.phases.last().map(|r| r.name.clone())
        } else {
            None
        }
    });
    let mut arg = Map::new();
    arg.insert("reason".into(), format!("{host} failed: {why}").into());
    arg.insert(
        "phase".into(),
        phase.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    arg.insert("score".into(), Dynamic::UNIT);
    arg.insert("env".into(), inv.env.clone().into());
    arg.insert("hosts".into(), vec![Dynamic::from(host.to_string())].into());
    arg.insert("dry_run".into(), st.dry_run().into());
    let started = Instant::now();
    let was = st.remote.set_rolling_back(true);
    let result = ctx.call_fn::<Dynamic>("rollback", (arg,));
    st.remote.set_rolling_back(was);
    match result {
        Ok(_) => {
            st.remote.mark_rolled_back(host);
            st.console.success(&format!(
                "{host} rolled back in {}",
                crate::core::duration::format_duration(started.elapsed())
            ));
            Ok("ok")
        }
        Err(e) if is_terminated(&e) => Err(e),
        Err(e) => {
            st.console.error(&format!(
                "the rollback of {host} failed: {}",
                message_of(&e)
            ));
            Ok("failed")
        }
    }
}

fn on_impl(
    ctx: &NativeCallContext,
    target: Dynamic,
    opts: Opts,
    body: FnPtr,
) -> Result<Dynamic, Error> {
    let st = state(ctx)?;
    if let Some(h) = st.remote.current() {
        return Err(throw(
            "usage",
            format!("on() inside on() (already on {h}): call on() at the top level, or use local(|| ...) to run on this machine"),
        ));
    }
    let hosts = targets(&st, target)?;
    let once = opts.boolean("once")?.unwrap_or(false);
    let plan = Plan::new(hosts, share(&opts, "batch")?, share(&opts, "max_fail")?)
        .map_err(|e| throw("usage", e.0))?;
    if once {
        // The first reachable host: a migration runs once for the fleet.
        let mut unreachable = Vec::new();
        for host in &plan.hosts {
            if !st.dry_run() {
                if let Err(e) = connect(&st, host) {
                    if is_terminated(&e) {
                        return Err(e);
                    }
                    st.console
                        .warn(&format!("{host}: {}; trying the next host", message_of(&e)));
                    unreachable.push(message_of(&e));
                    continue;
                }
            }
            st.console.info(&format!("on {host} (once)"));
            let started = Instant::now();
            let r = on_host(ctx, &st, host, &body);
            if !matches!(&r, Err(e) if is_terminated(e) || is_script_bug(e)) {
                let error = r.as_ref().err().map(|e| message_of(e));
                record(&st, host, 1, started.elapsed(), error);
            }
            return r;
        }
        return Err(throw(
            "connect",
            format!(
                "on(once): no host could be reached:\n  {}",
                unreachable.join("\n  ")
            ),
        ));
    }
    let batches = plan.batches();
    st.console.info(&format!(
        "on {} host{}: {} batch{} of up to {} at once, failure budget {} host{}",
        plan.hosts.len(),
        if plan.hosts.len() == 1 { "" } else { "s" },
        batches.len(),
        if batches.len() == 1 { "" } else { "es" },
        plan.batch,
        plan.max_fail,
        if plan.max_fail == 1 { "" } else { "s" },
    ));
    let mut results = Map::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let failures = AtomicUsize::new(0);
    let mut done = 0usize;
    for (i, batch) in batches.iter().enumerate() {
        st.console.info(&format!(
            "batch {}/{}: {}",
            i + 1,
            batches.len(),
            batch.join(", ")
        ));
        let abort = st.cancel.token().child_token();
        let runs = run_batch(ctx, &st, batch, &body, &abort, &failures, plan.max_fail);
        done += batch.len();
        let mut interrupted = None;
        let mut script_bug = None;
        let mut stopped = Vec::new();
        let mut newly_failed = Vec::new();
        for run in runs {
            let HostRun { host, result, took } = run;
            match result {
                Ok(v) => {
                    record(&st, &host, i + 1, took, None);
                    results.insert(host.as_str().into(), v);
                }
                Err(e) if is_terminated(&e) && st.cancel.is_cancelled() => {
                    interrupted.get_or_insert((host, e));
                }
                // Stopped because another host of the batch used up the budget.
                Err(e) if is_terminated(&e) => {
                    let msg =
                        "stopped: the failure budget was used up on another host of its batch"
                            .to_string();
                    record_status(&st, &host, i + 1, took, "stopped", Some(msg));
                    stopped.push(host);
                    drop(e);
                }
                // A mistake in the script would fail on every host: it is not a host's failure.
                Err(e) if is_script_bug(&e) => {
                    script_bug.get_or_insert(e);
                }
                Err(e) => {
                    let msg = message_of(&e);
                    record(&st, &host, i + 1, took, Some(msg.clone()));
                    failed.push((host.clone(), msg.clone()));
                    newly_failed.push((host, msg));
                }
            }
        }
        if let Some((host, e)) = interrupted {
            let changed = st.remote.to_roll_back();
            if !changed.is_empty() {
                st.console.warn(&format!(
                    "the rollout was interrupted on {host}; hosts changed so far, in order: {}",
                    changed.join(", ")
                ));
            }
            return Err(e);
        }
        if let Some(e) = script_bug {
            return Err(e);
        }
        if failed.len() > plan.max_fail {
            let left: Vec<&str> = plan.hosts[done..].iter().map(String::as_str).collect();
            let mut not_done = stopped.clone();
            not_done.extend(left.iter().map(|h| h.to_string()));
            return Err(throw(
                "remote",
                format!(
                    "on(): {} of {} hosts failed, more than the failure budget (max_fail {}); the rollout stopped{}:\n  {}",
                    failed.len(),
                    plan.hosts.len(),
                    plan.max_fail,
                    if not_done.is_empty() { String::new() } else { format!(" before {}", not_done.join(", ")) },
                    failed.iter().map(|(h, m)| format!("{h}: {m}")).collect::<Vec<_>>().join("\n  ")
                ),
            ));
        }
        for (host, msg) in newly_failed {
            st.console.warn(&format!(
                "{host} failed and is taken out of the rollout ({} of {} failures allowed): {msg}",
                failed.len(),
                plan.max_fail
            ));
            // Inside a rollback, a failing host stays as the rollback left it: rolling it
            // back from the rollback would go round in circles.
            if st.remote.rolling_back() || !st.remote.changed().contains(&host) {
                continue;
            }
            let status = roll_back_host(ctx, &st, &host, &msg)?;
            set_rollback(&st, &host, status);
            if status == "failed" {
                return Err(throw(
                    "remote",
                    format!(
                        "on(): {host} failed and so did its rollback: {host} is in an unknown state; the rollout stopped. Check {host} now, then run `deployer rollback` or restore it by hand"
                    ),
                ));
            }
        }
    }
    Ok(results.into())
}

fn current(st: &HostState, func: &str) -> Result<String, Error> {
    st.remote.current().ok_or_else(|| {
        throw(
            "usage",
            format!(
                "{func} is only available inside on(...), such as on(\"web\", || {{ {func}; }})"
            ),
        )
    })
}

/// True when rsync is on this machine's PATH.
fn local_rsync() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join("rsync"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// One round trip before a copy: whether `path` is a folder on `host`, and (asked once per
/// host) whether the host has rsync.
fn probe(st: &HostState, host: &str, path: &str) -> Result<(bool, bool), Error> {
    let ask_rsync = st.remote.has_rsync(host).is_none();
    let mut script = format!(
        "if [ -d {} ]; then echo dir; fi",
        crate::remote::sh_quote(path)
    );
    if ask_rsync {
        script.push_str("; if command -v rsync >/dev/null 2>&1; then echo rsync; fi");
    }
    let spec = CommandSpec {
        argv: vec!["sh".into(), "-c".into(), script],
        ..CommandSpec::default()
    };
    let token = st.token();
    let out = match run_on(st, host, &spec, &token, None, false)? {
        Ok(o) => o,
        Err(ProcessError::Cancelled { .. }) => return Err(terminated(st)),
        Err(e) => {
            return Err(throw(
                "copy",
                format!("cannot look at {path} on {host}: {e}"),
            ))
        }
    };
    let said = |w: &str| out.stdout.lines().any(|l| l.trim() == w);
    if ask_rsync {
        st.remote.set_rsync(host, said("rsync"));
    }
    Ok((said("dir"), st.remote.has_rsync(host).unwrap_or(false)))
}

fn copy(ctx: &NativeCallContext, up: bool, from: &str, to: &str) -> Result<(), Error> {
    let st = state(ctx)?;
    let func = if up { "upload()" } else { "download()" };
    let host = current(&st, func)?;
    let (src, dst) = if up {
        (from.to_string(), format!("{host}:{to}"))
    } else {
        (format!("{host}:{from}"), to.to_string())
    };
    if st.dry_run() {
        st.would(&format!("copy {src} to {dst}"));
        return Ok(());
    }
    if up && !std::path::Path::new(from).exists() {
        return Err(throw(
            "not_found",
            format!(
                "upload(): {from} does not exist on this machine (nothing was copied to {host})"
            ),
        ));
    }
    connect(&st, &host)?;
    let (remote_dir, remote_rsync) = probe(&st, &host, if up { to } else { from })?;
    // rsync when both ends have it (only what changed is sent), else scp; both land the
    // copy in the same place (see rsync_paths).
    let rsync = remote_rsync && local_rsync();
    let (tool, argv) = if rsync {
        let local_dir = std::path::Path::new(if up { from } else { to }).is_dir();
        let (s, d) = if up {
            let (s, d) = rsync_paths(from, local_dir, to, remote_dir);
            (s, format!("{host}:{d}"))
        } else {
            let (s, d) = rsync_paths(from, remote_dir, to, local_dir);
            (format!("{host}:{s}"), d)
        };
        ("rsync", st.remote.rsync_argv(&s, &d))
    } else {
        ("scp", st.remote.copy_argv(&src, &dst))
    };
    let argv = argv.map_err(|e| throw("connect", e))?;
    if up {
        note_change(&st, &host);
    }
    st.console.command(&format!("{host} | {tool} {src} {dst}"));
    let token = st.token();
    match st.runtime.block_on(ssh::run(
        &argv,
        None,
        None,
        &token,
        None,
        crate::sys::process::MAX_CAPTURE,
    )) {
        Ok(out) if out.code == Some(0) => Ok(()),
        Ok(out) => {
            let mut msg = format!(
                "{func} of {src} to {dst} failed ({tool} exit code {}): {}",
                out.code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into()),
                crate::sys::process::last_lines(out.stderr.trim(), 5)
            );
            if [
                "Received message too long",
                "protocol error",
                "protocol version mismatch",
                "is your shell clean",
            ]
            .iter()
            .any(|m| out.stderr.contains(m))
            {
                msg.push_str(&format!("; a shell start-up file on {host} that prints text (~/.bashrc, ~/.zshenv; ~/.profile or /etc/profile for login shells) breaks scp, sftp and rsync: make it silent for non-interactive shells"));
            }
            Err(throw("copy", msg))
        }
        Err(ProcessError::Cancelled { .. }) => Err(terminated(&st)),
        Err(e) => Err(throw("copy", format!("{func} to/from {host}: {e}"))),
    }
}

#[export_module]
pub mod remote_api {
    /// The hosts of the selected environment (`[env.NAME] hosts` in deployer.toml); empty
    /// when it has none (everything runs locally).
    ///
    /// ```rhai
    /// for h in hosts() { print(h); }
    /// ```
    #[rhai_fn(name = "hosts", return_raw)]
    pub fn hosts_all(ctx: NativeCallContext) -> Result<Array, Error> {
        let st = state(&ctx)?;
        Ok(st
            .remote
            .inventory()
            .hosts
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }

    /// The hosts of a role (`[env.NAME.roles]`); an unknown role is an error naming the
    /// roles there are.
    ///
    /// ```rhai
    /// let web = hosts("web");
    /// ```
    #[rhai_fn(name = "hosts", return_raw)]
    pub fn hosts_role(ctx: NativeCallContext, role: &str) -> Result<Array, Error> {
        let st = state(&ctx)?;
        let list = st
            .remote
            .inventory()
            .role(role)
            .map_err(|e| throw("usage", e.0))?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Runs `body` once per host (`targets`: a role name or an array of hosts), all at
    /// once (one batch); inside it `exec`, `sh`, `upload` and `download` act on that host.
    /// Returns a map host → what `body` returned. Any host failing fails the `on` and
    /// stops the commands still running on the others.
    ///
    /// ```rhai
    /// on("web", || sh("systemctl reload nginx"));
    /// ```
    #[rhai_fn(name = "on", return_raw)]
    pub fn on(ctx: NativeCallContext, targets: Dynamic, body: FnPtr) -> Result<Dynamic, Error> {
        on_impl(&ctx, targets, Opts::none("on"), body)
    }

    /// `on` with options: `batch` (hosts at a time, in parallel: a number or "30%"),
    /// `max_fail` (hosts that may fail, a number or "25%", before the `on` fails and
    /// stops the rollout; a host failing within it is left out of the rest and, if it had
    /// changed, rolled back alone with `fn rollback(ctx)`, `ctx.hosts` = that host),
    /// `once: true` (only the first reachable host: migrations).
    ///
    /// ```rhai
    /// on(hosts("web"), #{ batch: "30%", max_fail: 1 }, || {
    ///     sh("ln -sfn /srv/app/releases/42 /srv/app/current");
    ///     sh("systemctl reload app");
    /// });
    /// on("web", #{ once: true }, || sh("php artisan migrate --force", #{ cwd: "/srv/app/current" }));
    /// ```
    #[rhai_fn(name = "on", return_raw)]
    pub fn on_with(
        ctx: NativeCallContext,
        targets: Dynamic,
        options: Map,
        body: FnPtr,
    ) -> Result<Dynamic, Error> {
        on_impl(&ctx, targets, Opts::new("on", options, ON_OPTS)?, body)
    }

    /// The host the surrounding `on(...)` runs on.
    ///
    /// ```rhai
    /// on(hosts(), || log::info(`deploying to ${host()}`));
    /// ```
    #[rhai_fn(name = "host", return_raw)]
    pub fn host(ctx: NativeCallContext) -> Result<String, Error> {
        let st = state(&ctx)?;
        current(&st, "host()")
    }

    /// A variable of the current host (`[env.NAME.host_vars.HOST]`); an error naming the
    /// table to add it to when it is not set.
    ///
    /// ```rhai
    /// on("web", || http::get(host_var("url") + "/health"));
    /// ```
    #[rhai_fn(name = "host_var", return_raw)]
    pub fn host_var(ctx: NativeCallContext, name: &str) -> Result<String, Error> {
        let st = state(&ctx)?;
        let host = current(&st, "host_var()")?;
        let inv = st.remote.inventory();
        inv.var(&host, name).cloned().ok_or_else(|| {
            throw(
                "usage",
                format!(
                    "host variable `{name}` is not set for {host}: add {name} = \"...\" under [env.{}.host_vars.{host}] in deployer.toml, or give a default: host_var(\"{name}\", ...)",
                    inv.env
                ),
            )
        })
    }

    /// A variable of the current host, or `default` when it is not set; the value takes
    /// the default's type.
    ///
    /// ```rhai
    /// let port = host_var("port", 8080);
    /// ```
    #[rhai_fn(name = "host_var", return_raw)]
    pub fn host_var_or(
        ctx: NativeCallContext,
        name: &str,
        default: Dynamic,
    ) -> Result<Dynamic, Error> {
        let st = state(&ctx)?;
        let host = current(&st, "host_var()")?;
        match st.remote.inventory().var(&host, name) {
            None => Ok(default),
            Some(v) if default.is_int() => v.trim().parse::<i64>().map(Dynamic::from).map_err(|_| {
                throw("usage", format!("host variable `{name}` of {host} must be a whole number (like its default {default}), got \"{v}\""))
            }),
            Some(v) if default.is_bool() => v.trim().parse::<bool>().map(Dynamic::from).map_err(|_| {
                throw("usage", format!("host variable `{name}` of {host} must be true or false (like its default {default}), got \"{v}\""))
            }),
            Some(v) => Ok(v.clone().into()),
        }
    }

    /// Runs `body` on the machine running deployer, inside `on(...)`.
    ///
    /// ```rhai
    /// on("web", || {
    ///     local(|| sh("pnpm run build"));
    ///     upload("dist", "/srv/app/releases/42");
    /// });
    /// ```
    #[rhai_fn(name = "local", return_raw)]
    pub fn local(ctx: NativeCallContext, body: FnPtr) -> Result<Dynamic, Error> {
        let st = state(&ctx)?;
        let _in = Entered::new(&st, None);
        body.call_within_context::<Dynamic>(&ctx, ())
    }

    /// Copies a local file or folder to the current host over its connection: with rsync
    /// when both ends have it (only what changed is sent), else scp. A folder copied to a
    /// path that is not a folder becomes that path; to an existing folder, it goes inside.
    ///
    /// ```rhai
    /// on("web", || upload("build/app.tar.gz", "/tmp/app.tar.gz"));
    /// ```
    #[rhai_fn(name = "upload", return_raw)]
    pub fn upload(ctx: NativeCallContext, local: &str, remote: &str) -> Result<(), Error> {
        copy(&ctx, true, local, remote)
    }

    /// Copies a file or folder of the current host to this machine.
    ///
    /// ```rhai
    /// on("db", #{ once: true }, || download("/var/backups/db.sql.gz", "backups/db.sql.gz"));
    /// ```
    #[rhai_fn(name = "download", return_raw)]
    pub fn download(ctx: NativeCallContext, remote: &str, local: &str) -> Result<(), Error> {
        copy(&ctx, false, remote, local)
    }
}

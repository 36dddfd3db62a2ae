//! `exec`, `sh` and `spawn`: running programs from scripts, never through a shell unless
//! asked, always in their own process group, never left running after the run.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{state, terminated, throw, throw_with, Error};
use super::opts::{argv, Opts};
use crate::core::duration::format_duration;
use crate::host::console::{Activity, Verbosity};
use crate::host::state::HostState;
use crate::sys::process::{self, display_argv, last_lines, CommandSpec, ProcessError};
use crate::sys::spawn::{SpawnSpec, Spawned, STOP_GRACE};

pub(crate) const EXEC_OPTS: &[&str] = &[
    "cwd",
    "env",
    "timeout",
    "stdin",
    "allow_fail",
    "quiet",
    "read_only",
    "leave_running",
];
pub(crate) const SPAWN_OPTS: &[&str] = &["cwd", "env", "log", "detach", "name", "pidfile"];

/// Runs a command for `exec` or `sh`; `shown` is what the operator sees.
fn run(
    ctx: &NativeCallContext,
    argv: Vec<String>,
    shown: String,
    opts: Opts,
) -> Result<Map, Error> {
    let st = state(ctx)?;
    let shown = super::remote::shown(&st, shown);
    let spec = CommandSpec {
        argv,
        cwd: opts.string("cwd")?.map(PathBuf::from),
        env: opts.string_pairs("env")?,
        timeout: opts.duration("timeout")?,
        stdin: opts.string("stdin")?.map(String::into_bytes),
    };
    let allow_fail = opts.boolean("allow_fail")?.unwrap_or(false);
    let quiet = opts.boolean("quiet")?.unwrap_or(false);
    // A command that only reads (`git rev-parse`, `docker info`) may run in a dry run.
    let read_only = opts.boolean("read_only")?.unwrap_or(false);
    if st.dry_run() && !read_only {
        st.would(&format!("run: {shown}"));
        let mut m = result(0, String::new(), String::new(), 0);
        m.insert("dry_run".into(), true.into());
        return Ok(m);
    }
    if st.dry_run() {
        st.read_only(&format!("$ {shown}"));
    } else if !quiet {
        st.console.command(&shown);
    }
    // On a terminal a spinner shows the command's elapsed time and its last output line.
    let activity = (!quiet).then(|| Arc::new(st.console.progress(&shown)));
    let live = output_sink(&st, quiet, activity.as_ref().filter(|a| a.live()).cloned());
    let leave_running = opts.boolean("leave_running")?.unwrap_or(false);
    reap_exited_orphans(&st);
    let token = st.token();
    let outcome = match st.remote.current() {
        Some(host) => super::remote::exec_on(&st, &host, &spec, &token, live)?,
        None => st.runtime.block_on(process::run(&spec, &token, live)),
    };
    if leave_running {
        for p in st.processes.keep_leftovers(&shown) {
            st.console.info(&format!(
                "`{shown}` left pid {} running ({}); it is left running after the run, as asked (leave_running)",
                p.pid, p.command
            ));
        }
    }
    if let Some(a) = &activity {
        a.finish();
    }
    let out = match outcome {
        Ok(out) => out,
        Err(ProcessError::Cancelled { .. }) => return Err(terminated(&st)),
        Err(ProcessError::NotFound { program }) => {
            return Err(throw(
                "not_found",
                format!("command not found: {program} (is it installed and on PATH?)"),
            ))
        }
        Err(ProcessError::Timeout {
            display,
            after,
            partial,
        }) => {
            let mut msg = format!(
                "command timed out after {}: {display} (its process group was killed)",
                format_duration(after)
            );
            append_tail(&mut msg, &partial.stderr, &partial.stdout);
            return Err(throw("timeout", msg));
        }
        Err(e) => return Err(throw("exec", e.to_string())),
    };
    if out.pipes_left_open {
        st.console.warn(&format!(
            "`{shown}` exited but a background process it started still holds its output open; it will be stopped when the run ends: use spawn() for background processes, spawn(.., #{{ detach: true }}) for a service that must keep running, or leave_running: true if the command starts a daemon on purpose"
        ));
    }
    let code = match (out.code, out.signal) {
        (Some(c), _) => c as i64,
        (None, Some(sig)) => 128 + sig as i64,
        _ => -1,
    };
    let tail = if code != 0 && !allow_fail {
        let mut t = String::new();
        append_tail(&mut t, &out.stderr, &out.stdout);
        t
    } else {
        String::new()
    };
    let mut m = result(
        code,
        out.stdout,
        out.stderr,
        out.duration.as_millis() as i64,
    );
    let truncated = out.stdout_dropped > 0 || out.stderr_dropped > 0;
    m.insert("truncated".into(), truncated.into());
    for (name, dropped) in [
        ("stdout", out.stdout_dropped),
        ("stderr", out.stderr_dropped),
    ] {
        if dropped > 0 {
            st.console.warn(&format!(
                "the {name} of `{shown}` was cut: its first {dropped} bytes were dropped and r.{name} holds only the last {} MiB (r.truncated is true); write large output to a file instead",
                process::MAX_CAPTURE / (1024 * 1024)
            ));
        }
    }
    if code != 0 && !allow_fail {
        let mut msg = match out.signal {
            Some(sig) if out.code.is_none() => {
                format!("command killed by signal {sig}: {shown}")
            }
            _ => format!("command failed with exit code {code}: {shown}"),
        };
        msg.push_str(&tail);
        m.remove("ok");
        return Err(throw_with("exit", msg, m));
    }
    Ok(m)
}

/// Where a command's output lines go as they come: printed with `-v`, and shown as the
/// status of its spinner on a terminal; `None` when neither wants them.
fn output_sink(
    st: &HostState,
    quiet: bool,
    activity: Option<Arc<Activity>>,
) -> Option<process::LineSink> {
    let verbose =
        (st.console.verbosity >= Verbosity::Verbose && !quiet).then(|| st.console.clone());
    if verbose.is_none() && activity.is_none() {
        return None;
    }
    Some(Arc::new(move |stream: &str, line: &str| {
        if let Some(console) = &verbose {
            console.output_line(stream, line);
        }
        if let Some(a) = &activity {
            if !line.trim().is_empty() {
                a.status(line);
            }
        }
    }))
}

/// Adds the last lines of stderr (or of stdout when stderr is empty) to an error message.
fn append_tail(msg: &mut String, stderr: &str, stdout: &str) {
    let (name, text) = if stderr.trim().is_empty() {
        ("stdout", stdout)
    } else {
        ("stderr", stderr)
    };
    let tail = last_lines(text, 10);
    if !tail.is_empty() {
        msg.push_str(&format!("\nlast lines of {name}:"));
        for line in tail.lines() {
            msg.push_str(&format!("\n  {line}"));
        }
    }
}

/// The result map; takes the output by value so 16 MiB of it is never copied.
fn result(code: i64, stdout: String, stderr: String, duration_ms: i64) -> Map {
    let mut m = Map::new();
    m.insert("code".into(), code.into());
    m.insert("ok".into(), (code == 0).into());
    m.insert("stdout".into(), stdout.into());
    m.insert("stderr".into(), stderr.into());
    m.insert("duration_ms".into(), duration_ms.into());
    m.insert("truncated".into(), false.into());
    m
}

/// Reaps the orphans that exited since the last command, where that is safe: only while
/// no other thread of the run starts children. With remote hosts, ssh children come and
/// go on other threads (the hosts of a batch, the remote lock's renewals) and one that
/// just exited would be taken for an orphan and reaped under its owner, who then gets
/// ECHILD; those runs leave their zombies to the end-of-run sweep.
fn reap_exited_orphans(st: &HostState) {
    if !st.remote.has_hosts() {
        st.processes.reap_exited_orphans();
    }
}

fn spawn_impl(st: &HostState, argv: Vec<String>, opts: Opts) -> Result<ProcessHandle, Error> {
    let display = display_argv(&argv);
    if let Some(host) = st.remote.current() {
        return Err(throw(
            "usage",
            format!("spawn() inside on() (on {host}): background processes run only on this machine in this version; start a service on the host with sh(\"systemctl restart ...\")"),
        ));
    }
    // Inside local(...) within on(...): the host's thread ends with its batch, and a
    // process it started would die with it (PR_SET_PDEATHSIG follows the thread).
    if st.remote.in_batch() {
        return Err(throw(
            "usage",
            "spawn() inside on(...) (in local(...)): the hosts of a batch run on threads that end with the batch, and a background process started there would be stopped with it; start it before or after on(...)",
        ));
    }
    if st.dry_run() {
        st.would(&format!("start: {display}"));
        return Ok(ProcessHandle {
            inner: None,
            display,
        });
    }
    let detach = opts.boolean("detach")?.unwrap_or(false);
    let spec = SpawnSpec {
        argv,
        cwd: opts.string("cwd")?.map(PathBuf::from),
        env: opts.string_pairs("env")?,
        log: opts.string("log")?.map(PathBuf::from),
        detach,
        name: opts.string("name")?,
        pidfile: opts.string("pidfile")?.map(PathBuf::from),
    };
    if !detach && (spec.name.is_some() || spec.pidfile.is_some()) {
        return Err(throw(
            "usage",
            "spawn(): `name` and `pidfile` are for detached processes; add `detach: true` to keep the process running after the run",
        ));
    }
    if detach && spec.log.is_none() {
        return Err(throw(
            "usage",
            "spawn(): a detached process needs `log`, the file its output goes to after the run, such as #{ detach: true, log: \"app.log\", pidfile: \"app.pid\" }",
        ));
    }
    st.console.command(&format!("{display} &"));
    reap_exited_orphans(st);
    match st.processes.spawn(&spec, &st.log_dir) {
        Ok(p) if detach => {
            st.console.info(&format!(
                "started `{display}` detached as pid {}: it keeps running after the run (output in {}{}); stop it with process::stop",
                p.pid,
                p.log.display(),
                spec.pidfile
                    .as_ref()
                    .map(|f| format!(", pid in {}", f.display()))
                    .unwrap_or_default()
            ));
            Ok(ProcessHandle {
                inner: Some(p),
                display,
            })
        }
        Ok(p) => {
            st.console.debug(&format!(
                "started pid {} (output in {})",
                p.pid,
                p.log.display()
            ));
            Ok(ProcessHandle {
                inner: Some(p),
                display,
            })
        }
        Err(ProcessError::NotFound { program }) => Err(throw(
            "not_found",
            format!("command not found: {program} (is it installed and on PATH?)"),
        )),
        Err(e) => Err(throw("exec", e.to_string())),
    }
}

/// A background process started by `spawn()`.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    inner: Option<Arc<Spawned>>,
    display: String,
}

impl ProcessHandle {
    /// The pid, or 0 when nothing was started (a dry run).
    pub fn pid_value(&self) -> i32 {
        self.inner.as_ref().map(|s| s.pid as i32).unwrap_or(0)
    }

    /// How the process ended (`exit code 1`, `signal 9`), or `None` while it runs (or in a
    /// dry run, where nothing started).
    pub fn exited(&self) -> Option<String> {
        self.inner.as_ref().and_then(|s| s.poll())
    }

    /// What it is, for messages: `pid N (command)`.
    pub fn describe(&self) -> String {
        format!("pid {} ({})", self.pid_value(), self.display)
    }

    /// The path of its log file, if it was started.
    pub fn log_file(&self) -> Option<&std::path::Path> {
        self.inner.as_ref().map(|s| s.log.as_path())
    }
}

// Rhai's export_module unwraps `&mut` receivers in its generated glue.
#[allow(clippy::unwrap_used)]
#[export_module]
pub mod exec_api {
    use super::*;

    /// Runs a program (no shell) and returns `#{code, ok, stdout, stderr, duration_ms,
    /// truncated}`. A non-zero exit throws an error naming the command, its code and the
    /// last lines of stderr. The final newline of stdout and stderr is removed. Each stream
    /// keeps its last 16 MiB: longer output sets `truncated` and prints a warning.
    ///
    /// ```rhai
    /// let r = exec(["git", "rev-parse", "HEAD"]);
    /// log::info(`deploying ${r.stdout}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn exec(ctx: NativeCallContext, command: Array) -> Result<Map, Error> {
        let argv = argv("exec", &command)?;
        let shown = display_argv(&argv);
        run(&ctx, argv, shown, Opts::none("exec"))
    }

    /// Runs a program with options: `cwd`, `env` (map), `timeout` (duration), `stdin`
    /// (string), `allow_fail` (no error on a non-zero exit), `quiet` (do not echo it),
    /// `read_only` (it changes nothing, so it runs even in a dry run), `leave_running` (the
    /// daemon it starts in the background, such as `pm2`'s, is meant to keep running: it is
    /// listed under `detached` in report.json instead of being stopped at the end of the
    /// run). On timeout or Ctrl-C the whole process group is killed.
    ///
    /// ```rhai
    /// let r = exec(["wrangler", "deploy", "--env", env()],
    ///              #{ cwd: "apps/worker", timeout: "5m", env: #{ CI: "1" } });
    /// let probe = exec(["test", "-f", ".env"], #{ allow_fail: true });
    /// if probe.code != 0 { log::warn("no .env file"); }
    /// ```
    #[rhai_fn(name = "exec", return_raw)]
    pub fn exec_with(ctx: NativeCallContext, command: Array, options: Map) -> Result<Map, Error> {
        let argv = argv("exec", &command)?;
        let shown = display_argv(&argv);
        run(&ctx, argv, shown, Opts::new("exec", options, EXEC_OPTS)?)
    }

    /// Runs a command line through `sh -c`, for pipelines and redirections. Same result
    /// and errors as `exec`.
    ///
    /// ```rhai
    /// sh("pnpm run build 2>&1 | tail -n 20");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn sh(ctx: NativeCallContext, command_line: &str) -> Result<Map, Error> {
        run(
            &ctx,
            shell(command_line),
            command_line.to_string(),
            Opts::none("sh"),
        )
    }

    /// Runs a command line through `sh -c` with the options of `exec`.
    ///
    /// ```rhai
    /// let r = sh("php artisan migrate --force", #{ cwd: "/srv/app", timeout: "10m" });
    /// ```
    #[rhai_fn(name = "sh", return_raw)]
    pub fn sh_with(ctx: NativeCallContext, command_line: &str, options: Map) -> Result<Map, Error> {
        run(
            &ctx,
            shell(command_line),
            command_line.to_string(),
            Opts::new("sh", options, EXEC_OPTS)?,
        )
    }

    /// The process id of a spawned process (0 in a dry run).
    ///
    /// ```rhai
    /// let p = spawn(["sleep", "60"]);
    /// log::info(`started ${p.pid}`);
    /// ```
    #[rhai_fn(get = "pid", pure)]
    pub fn pid(p: &mut ProcessHandle) -> i64 {
        p.inner.as_ref().map(|s| s.pid as i64).unwrap_or(0)
    }

    /// The path of the log file that holds a spawned process's output.
    ///
    /// ```rhai
    /// let p = spawn(["my-server"]);
    /// log::info(`server output: ${p.log}`);
    /// ```
    #[rhai_fn(get = "log", pure)]
    pub fn log_path(p: &mut ProcessHandle) -> String {
        p.inner
            .as_ref()
            .map(|s| s.log.display().to_string())
            .unwrap_or_default()
    }

    /// Returns true while a spawned process is running.
    ///
    /// ```rhai
    /// let p = spawn(["my-server"]);
    /// if !p.alive() { abort("the server exited at once; see " + p.log); }
    /// ```
    #[rhai_fn(pure)]
    pub fn alive(p: &mut ProcessHandle) -> bool {
        p.inner.as_ref().is_some_and(|s| s.alive())
    }

    /// Stops a spawned process and its children (SIGTERM, then SIGKILL after 5 s) and
    /// returns how it ended, such as `"signal 15"` or `"exit code 0"`.
    ///
    /// ```rhai
    /// let p = spawn(["my-server"]);
    /// p.stop();
    /// ```
    #[rhai_fn(pure)]
    pub fn stop(p: &mut ProcessHandle) -> String {
        match &p.inner {
            Some(s) => s.stop(STOP_GRACE),
            None => "not started (dry run)".into(),
        }
    }

    /// Stops a spawned process, waiting `grace` between SIGTERM and SIGKILL.
    ///
    /// ```rhai
    /// let p = spawn(["my-server"]);
    /// p.stop("10s");
    /// ```
    #[rhai_fn(name = "stop", pure, return_raw)]
    pub fn stop_grace(p: &mut ProcessHandle, grace: Dynamic) -> Result<String, Error> {
        let grace = super::super::opts::duration(&grace)
            .map_err(|e| throw("usage", format!("stop(): {e}")))?;
        Ok(match &p.inner {
            Some(s) => s.stop(grace),
            None => "not started (dry run)".into(),
        })
    }

    /// Returns the last `lines` lines a spawned process wrote to its log.
    ///
    /// ```rhai
    /// let p = spawn(["my-server"]);
    /// print(p.output(20));
    /// ```
    #[rhai_fn(pure)]
    pub fn output(p: &mut ProcessHandle, lines: i64) -> String {
        let Some(s) = &p.inner else {
            return String::new();
        };
        let text = std::fs::read(&s.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines.max(0) as usize)..].join("\n")
    }

    /// Describes a spawned process, for `print` and string interpolation.
    ///
    /// ```rhai
    /// let p = spawn(["sleep", "5"]);
    /// print(`${p}`);
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn describe(p: &mut ProcessHandle) -> String {
        match &p.inner {
            Some(s) => format!("process {} ({})", s.pid, p.display),
            None => format!("process not started, dry run ({})", p.display),
        }
    }
}

fn shell(command_line: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), command_line.into()]
}

/// The handler of `spawn(argv)` and `spawn(argv, opts)` (custom syntax: `spawn` is a
/// reserved word in Rhai).
pub fn spawn_syntax(st: &std::sync::Arc<HostState>, args: Vec<Dynamic>) -> Result<Dynamic, Error> {
    let mut args = args.into_iter();
    let command = args.next().unwrap_or_default().try_cast::<Array>().ok_or_else(|| {
        throw("usage", "spawn(): the command must be an array such as [\"my-server\", \"--port\", \"8080\"]")
    })?;
    let argv = argv("spawn", &command)?;
    let opts = match args.next() {
        None => Opts::none("spawn"),
        Some(m) => {
            let m = m.try_cast::<Map>().ok_or_else(|| {
                throw(
                    "usage",
                    "spawn(): options must be a map such as #{ cwd: \"app\" }",
                )
            })?;
            Opts::new("spawn", m, SPAWN_OPTS)?
        }
    };
    spawn_impl(st, argv, opts).map(Dynamic::from)
}

/// The documentation of `spawn`, which is syntax rather than a registered function: one
/// `(signature, documentation)` row per form, documentation as doc comments would give it
/// (the REPL's completion, hints and `:doc` read it).
pub const SPAWN_DOC: &[(&str, &str)] = &[
    (
        "spawn(command: Array) -> Process",
        r#"Starts a program in the background and returns its handle (`pid`, `log`, `alive()`,
`stop()`, `stop(grace)`, `output(lines)`). Its output goes to a log file in a private
folder (mode 0700) that is removed when the run ends. Every spawned process is stopped
when the run ends, however it ends, unless started with `detach: true`. In a dry run
nothing starts.

```rhai
let server = spawn(["python3", "-m", "http.server", "8080"]);
http::wait_healthy("http://127.0.0.1:8080/", #{ attempts: 20, interval: "250ms" });
server.stop();
```"#,
    ),
    (
        "spawn(command: Array, options: Map) -> Process",
        r#"Starts a program in the background with options: `cwd`, `env` (map), `log` (the
path of its log file). `detach: true` starts a service that outlives the run on
purpose: its own session, stdin from /dev/null, output appended to `log` (required),
its pid written atomically to `pidfile`, listed under `detached` in report.json and
never stopped by deployer; `name` names it in the record. Stop it in a later run with
`process::stop(pidfile, grace)`.

```rhai
let app = spawn(["php", "artisan", "serve", "--port=8000"], #{ cwd: "app", log: "artisan.log" });
process::stop("app.pid", "5s");
let svc = spawn(["./server", "--port", "8080"],
                #{ detach: true, name: "web", log: "web.log", pidfile: "web.pid" });
```"#,
    ),
];

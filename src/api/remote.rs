//! `hosts`, `on`, `host`, `host_var`, `local`, `upload`, `download`: running a script's
//! steps on remote hosts over OpenSSH (see `crate::remote`).

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, FnPtr, Map};

use super::error::{is_script_bug, is_terminated, message_of, state, terminated, throw, Error};
use super::opts::Opts;
use crate::host::state::HostState;
use crate::remote::ssh::{self, ConnectError};
use crate::remote::{remote_script, valid_env_name, Plan, Share};
use crate::sys::process::{CommandOutput, CommandSpec, LineSink, ProcessError};

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
    match st.remote.connect(host, &|| st.cancel.is_cancelled()) {
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
    if spec.stdin.is_some() {
        return Err(throw(
            "usage",
            format!("the `stdin` option is not supported on remote hosts yet (on {host}): upload() the input and redirect it, such as sh(\"psql < /tmp/input.sql\")"),
        ));
    }
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
    connect(st, host)?;
    note_change(st, host);
    let argv = st
        .remote
        .shell_argv(host)
        .map_err(|e| throw("connect", e))?;
    let cwd = spec.cwd.as_ref().map(|p| p.display().to_string());
    let script = remote_script(&spec.argv, &spec.env, cwd.as_deref());
    let live = live.map(|sink| {
        let h = host.to_string();
        Arc::new(move |stream: &str, line: &str| sink(stream, &format!("{h} | {line}"))) as LineSink
    });
    let out = st.runtime.block_on(ssh::run(
        &argv,
        Some(script.into_bytes()),
        spec.timeout,
        token,
        live,
    ));
    // ssh exits 255 for its own failures; a remote command's own 255 has no such message.
    if let Ok(o) = &out {
        if o.code == Some(255) {
            let said = ssh::lost_connection(&o.stderr);
            let why = match said {
                Some(line) => Some(line),
                None if !st.remote.alive(host) => Some("the ssh connection closed".to_string()),
                None => None,
            };
            if let Some(why) = why {
                return Err(throw(
                    "connect",
                    format!(
                        "lost the connection to {host} while running `{}`: {why}; the host went down or off the network (the command's outcome there is unknown)",
                        crate::sys::process::display_argv(&spec.argv)
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Refuses a change to this machine's files inside `on(...)`, where the script most likely
/// meant the host: `fs::` functions act only locally in this version.
pub(crate) fn local_only(st: &HostState, module: &str, what: &str) -> Result<(), Error> {
    match st.remote.current() {
        None => Ok(()),
        Some(host) => Err(throw(
            "usage",
            format!(
                "{module} functions act on this machine, not on {host} (inside on(...)): refused to {what}; run it on the host with sh(...), or wrap it in local(|| ...) to mean this machine"
            ),
        )),
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
fn record(
    st: &HostState,
    host: &str,
    batch: usize,
    took: std::time::Duration,
    error: Option<String>,
) {
    let changed = st.remote.changed().iter().any(|h| h == host);
    st.pipeline.emit(crate::pipeline::Event::HostResult {
        host: crate::pipeline::HostRecord {
            host: host.to_string(),
            status: if error.is_none() { "passed" } else { "failed" },
            batch,
            duration_ms: took.as_millis() as u64,
            changed,
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
            let started = std::time::Instant::now();
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
        "on {} host{}: {} batch{} of up to {}, failure budget {} host{}",
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
    let mut done = 0usize;
    for (i, batch) in batches.iter().enumerate() {
        st.console.info(&format!(
            "batch {}/{}: {}",
            i + 1,
            batches.len(),
            batch.join(", ")
        ));
        // Hosts of a batch run one after the other: Rhai closures share one engine.
        for host in batch {
            let started = std::time::Instant::now();
            match on_host(ctx, &st, host, &body) {
                Ok(v) => {
                    record(&st, host, i + 1, started.elapsed(), None);
                    results.insert(host.as_str().into(), v);
                }
                Err(e) if is_terminated(&e) => {
                    let changed = st.remote.changed();
                    if !changed.is_empty() {
                        st.console.warn(&format!(
                            "the rollout was interrupted on {host}; hosts changed so far, in order: {}",
                            changed.join(", ")
                        ));
                    }
                    return Err(e);
                }
                // A mistake in the script would fail on every host: it is not a host's failure.
                Err(e) if is_script_bug(&e) => return Err(e),
                Err(e) => {
                    let msg = message_of(&e);
                    record(&st, host, i + 1, started.elapsed(), Some(msg.clone()));
                    failed.push((host.clone(), msg.clone()));
                    if failed.len() > plan.max_fail {
                        let left: Vec<&str> =
                            plan.hosts[done + 1..].iter().map(String::as_str).collect();
                        return Err(throw(
                            "remote",
                            format!(
                                "on(): {} of {} hosts failed, more than the failure budget (max_fail {}); the rollout stopped{}:\n  {}",
                                failed.len(),
                                plan.hosts.len(),
                                plan.max_fail,
                                if left.is_empty() { String::new() } else { format!(" before {}", left.join(", ")) },
                                failed.iter().map(|(h, m)| format!("{h}: {m}")).collect::<Vec<_>>().join("\n  ")
                            ),
                        ));
                    }
                    st.console.warn(&format!(
                        "{host} failed and is taken out of the rollout ({} of {} failures allowed): {msg}",
                        failed.len(),
                        plan.max_fail
                    ));
                }
            }
            done += 1;
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
    let argv = st
        .remote
        .copy_argv(&src, &dst)
        .map_err(|e| throw("connect", e))?;
    st.console.command(&format!("{host} | scp {src} {dst}"));
    let token = st.cancel.token();
    match st
        .runtime
        .block_on(ssh::run(&argv, None, None, &token, None))
    {
        Ok(out) if out.code == Some(0) => Ok(()),
        Ok(out) => {
            let mut msg = format!(
                "{func} of {src} to {dst} failed (scp exit code {}): {}",
                out.code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into()),
                crate::sys::process::last_lines(out.stderr.trim(), 5)
            );
            if out.stderr.contains("Received message too long")
                || out.stderr.contains("protocol error")
            {
                msg.push_str("; a shell start-up file on the host that prints text (~/.bashrc, ~/.profile) breaks scp/sftp: make it silent for non-interactive shells");
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
    /// once; inside it `exec`, `sh`, `upload` and `download` act on that host. Returns a
    /// map host → what `body` returned. Any host failing fails the `on`.
    ///
    /// ```rhai
    /// on("web", || sh("systemctl reload nginx"));
    /// ```
    #[rhai_fn(name = "on", return_raw)]
    pub fn on(ctx: NativeCallContext, targets: Dynamic, body: FnPtr) -> Result<Dynamic, Error> {
        on_impl(&ctx, targets, Opts::none("on"), body)
    }

    /// `on` with options: `batch` (hosts at a time: a number or "30%"; the hosts of a
    /// batch run one after the other in this version), `max_fail` (hosts that may fail,
    /// a number or "25%", before the `on` fails; a failed host is left out of the rest),
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

    /// Copies a local file or folder to the current host (scp over its connection).
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

//! The remote lock: a lease on every host of an environment, so that deployer processes on
//! different machines (two CI runners with different state folders) exclude each other.
//!
//! On each host the lock is a folder (`[env.NAME] lock_path`, by default
//! `/tmp/deployer-lock-NAME`) made with an atomic `mkdir`, holding a `holder` file of
//! `key=value` lines: run id, controller machine, user, pid, script, start, lease and its
//! expiry. Every operation runs as one small script sent to `sh -s` over the host's master
//! connection (nothing in any argv) under a short guard folder (`PATH.guard`, also made with
//! `mkdir`), so a take-over, a renewal and a release never interleave. Expiry is judged with
//! the host's own clock on both sides, so clock skew between controllers does not matter.
//!
//! A dead holder on another machine cannot be detected by pid: the holder renews its lease
//! every lease/3 while it runs; a lease not renewed in time has expired and the next run takes
//! the lock over, naming the old holder. `deployer unlock` removes a lock after showing it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{sh_quote, Fleet};
use crate::core::duration::format_duration;

/// How long a lease lasts when `[env.NAME] lock_lease` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

pub use crate::config::MIN_LEASE;

/// Marks the lines of the lock scripts' answers (a noisy rc file may print other lines).
const MARK: &str = "@@deployer-lock";

/// How long one lock operation on a host may take (the guard wait included).
const OP_LIMIT: Duration = Duration::from_secs(30);

/// The lock folder on the hosts when `[env.NAME] lock_path` is not set.
pub fn default_path(env: &str) -> String {
    format!("/tmp/deployer-lock-{env}")
}

/// Who holds a remote lock, as written in its `holder` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    pub run_id: String,
    /// The machine deployer runs on.
    pub controller: String,
    pub user: String,
    pub pid: u32,
    pub script: String,
    /// UTC RFC 3339.
    pub started_at: String,
    /// The lease, in seconds.
    pub lease_secs: u64,
    /// When the lease ends, in seconds since the epoch by the host's clock (0: unknown).
    pub expires: u64,
    /// When the lease was last renewed, by the host's clock (0: unknown).
    pub renewed: u64,
}

/// One line of a holder file: control characters become spaces, so a value stays a line.
fn clean(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Holder {
    /// Describes this process as the holder of a lease of `lease`.
    pub fn for_this_process(info: &crate::store::lock::LockInfo, lease: Duration) -> Holder {
        Holder {
            run_id: info.run_id.clone(),
            controller: info.host.clone(),
            user: info.user.clone(),
            pid: info.pid,
            script: info.script.clone(),
            started_at: info.started_at.clone(),
            lease_secs: lease.as_secs().max(1),
            expires: 0,
            renewed: 0,
        }
    }

    /// The lines this process writes (the expiry is added on the host, by its clock).
    pub fn fixed_lines(&self) -> Vec<String> {
        vec![
            format!("run_id={}", clean(&self.run_id)),
            format!("controller={}", clean(&self.controller)),
            format!("user={}", clean(&self.user)),
            format!("pid={}", self.pid),
            format!("script={}", clean(&self.script)),
            format!("started_at={}", clean(&self.started_at)),
            format!("lease={}", self.lease_secs),
        ]
    }

    /// Reads a holder from its `key=value` lines; `None` when it names no run.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Holder> {
        let mut h = Holder::default();
        for line in lines {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim_end_matches('\r');
            let num = || v.trim().parse::<u64>().unwrap_or(0);
            match k.trim() {
                "run_id" => h.run_id = v.to_string(),
                "controller" => h.controller = v.to_string(),
                "user" => h.user = v.to_string(),
                "pid" => h.pid = num() as u32,
                "script" => h.script = v.to_string(),
                "started_at" => h.started_at = v.to_string(),
                "lease" => h.lease_secs = num(),
                "expires" => h.expires = num(),
                "renewed" => h.renewed = num(),
                _ => {}
            }
        }
        (!h.run_id.is_empty()).then_some(h)
    }

    /// How long the lease has left at `now` (host clock); zero when it has expired.
    pub fn lease_left(&self, now: u64) -> Duration {
        Duration::from_secs(self.expires.saturating_sub(now))
    }

    /// True when the lease has expired at `now` (host clock): it may be taken over.
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires
    }

    /// "run R (user@controller, pid P, script S, started T; lease ...)" for messages.
    pub fn describe(&self, now: u64) -> String {
        let lease = if self.expires == 0 {
            "its lease expiry cannot be read".to_string()
        } else if self.expired(now) {
            format!(
                "its lease expired {} ago",
                format_duration(Duration::from_secs(now - self.expires))
            )
        } else {
            format!(
                "lease renewed {} ago, {} left",
                format_duration(Duration::from_secs(now.saturating_sub(self.renewed))),
                format_duration(self.lease_left(now))
            )
        };
        format!(
            "run {} ({}@{}, pid {}, script {}, started {}; {lease})",
            self.run_id, self.user, self.controller, self.pid, self.script, self.started_at
        )
    }
}

/// What a lock operation asks of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Take the lock, or renew it if it is ours, or take it over if its lease expired.
    Acquire(Holder),
    /// Extend our lease (only if the lock is still ours).
    Renew(Holder),
    /// Remove the lock if it is ours.
    Release(String),
    /// Read who holds it (read-only: no guard, nothing written).
    Show,
    /// Remove the lock if it is still held by this run id (`deployer unlock`); `""`
    /// removes a lock folder without a readable holder.
    Remove(String),
}

/// The shell function that writes the holder file of `h` with a fresh expiry.
fn write_holder_fn(h: &Holder) -> String {
    let lines: Vec<String> = h.fixed_lines().iter().map(|l| sh_quote(l)).collect();
    format!(
        "write_holder() {{\n  t=$(date +%s)\n  {{ printf '%s\\n' {}; echo \"expires=$((t + {}))\"; echo \"renewed=$t\"; }} > \"$d/holder.tmp\" && mv -f \"$d/holder.tmp\" \"$d/holder\"\n}}\n",
        lines.join(" "),
        h.lease_secs
    )
}

/// The script sent to `sh -s` on a host for `op` on the lock folder `path`. Its answer is
/// in lines starting with `@@deployer-lock` (see [`Reply::parse`]).
pub fn script(path: &str, op: &Op) -> String {
    let mut s = format!(
        r#"d={d}
g="$d.guard"
n=$(date +%s)
say() {{ printf '%s %s\n' '{MARK}' "$*"; }}
field() {{ sed -n "s/^$1=//p" "$d/holder" 2>/dev/null | head -n 1; }}
unlock_dir() {{ rm -f "$d/holder" "$d/holder.tmp" && rmdir "$d"; }}
show() {{ if [ -f "$d/holder" ]; then while IFS= read -r l; do say "holder $l"; done < "$d/holder"; fi; }}
guard() {{
  i=0
  while :; do
    e=$(mkdir "$g" 2>&1) && break
    i=$((i + 1))
    # Gone again: released between our mkdir and this look; try again. Still failing
    # with no guard there: it cannot be made (permissions, a missing folder).
    if [ ! -d "$g" ]; then
      if [ "$i" -gt 5 ]; then say "error cannot create $g: $e"; exit 0; fi
      continue
    fi
    t=$(stat -c %Y "$g" 2>/dev/null || echo "$n")
    if [ $(($(date +%s) - t)) -gt 10 ]; then rmdir "$g" 2>/dev/null; continue; fi
    if [ "$i" -gt 100 ]; then say busy; exit 0; fi
    sleep 0.1 2>/dev/null || sleep 1
  done
  trap 'rmdir "$g" 2>/dev/null' EXIT
  n=$(date +%s)
}}
"#,
        d = sh_quote(path)
    );
    match op {
        Op::Acquire(h) => {
            s.push_str(&write_holder_fn(h));
            s.push_str(&format!(
                r#"guard
if [ -d "$d" ]; then
  if [ -f "$d/holder" ]; then
    if [ "$(field run_id)" = {run} ]; then write_holder && say mine; exit 0; fi
    x=$(field expires)
    case "$x" in ''|*[!0-9]*) x=0;; esac
    if [ "$n" -lt "$x" ]; then say "held now=$n"; show; exit 0; fi
    say "expired now=$n"; show
  else
    if [ -n "$(ls -A "$d" 2>/dev/null | grep -v '^holder.tmp$')" ]; then
      say "error $d exists and is not a deployer lock folder (it holds other files): set [env.NAME] lock_path to a folder of its own"; exit 0
    fi
    a=$(stat -c %Y "$d" 2>/dev/null || echo "$n")
    say "damaged now=$n age=$((n - a))"
  fi
  if write_holder; then say took-over; else say "error cannot write $d/holder"; fi
  exit 0
fi
e=$(mkdir "$d" 2>&1) || {{ say "error cannot create the lock folder $d: $e"; exit 0; }}
if write_holder; then say acquired; else unlock_dir; say "error cannot write $d/holder"; fi
"#,
                run = sh_quote(&h.run_id)
            ));
        }
        Op::Renew(h) => {
            s.push_str(&write_holder_fn(h));
            s.push_str(&format!(
                r#"guard
if [ "$(field run_id)" = {run} ]; then
  if write_holder; then say "renewed now=$n"; else say "error cannot write $d/holder"; fi
elif [ -d "$d" ]; then say "lost now=$n"; show
else say gone; fi
"#,
                run = sh_quote(&h.run_id)
            ));
        }
        Op::Release(run_id) => s.push_str(&format!(
            r#"guard
if [ "$(field run_id)" = {run} ]; then
  e=$(unlock_dir 2>&1) && say released || say "error cannot remove $d: $e"
elif [ -d "$d" ]; then say "not-mine now=$n"; show
else say gone; fi
"#,
            run = sh_quote(run_id)
        )),
        Op::Show => s.push_str(
            r#"if [ -d "$d" ]; then
  a=$(stat -c %Y "$d" 2>/dev/null || echo "$n")
  say "held now=$n age=$((n - a))"; show
else say "free now=$n"; fi
"#,
        ),
        Op::Remove(run_id) => s.push_str(&format!(
            r#"guard
if [ ! -d "$d" ]; then say gone; exit 0; fi
if [ "$(field run_id)" = {run} ]; then
  e=$(unlock_dir 2>&1) && say removed || say "error cannot remove $d: $e"
else say "changed now=$n"; show; fi
"#,
            run = sh_quote(run_id)
        )),
    }
    s
}

/// What a host answered to a lock script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status words, in order (`acquired`, `held`, `expired`, `took-over`, ...).
    pub words: Vec<String>,
    /// The host's clock, seconds since the epoch (0 when not said).
    pub now: u64,
    /// Seconds since the lock folder was made (`Show`, damaged take-overs).
    pub age: u64,
    /// The holder the host showed, if any.
    pub holder: Option<Holder>,
    /// What went wrong on the host, if anything.
    pub error: Option<String>,
}

impl Reply {
    /// Reads the marked lines of a lock script's output; other lines (an rc file's noise)
    /// are ignored. `None` when there is no marked line at all.
    pub fn parse(stdout: &str) -> Option<Reply> {
        let mut r = Reply {
            words: Vec::new(),
            now: 0,
            age: 0,
            holder: None,
            error: None,
        };
        let mut holder_lines = Vec::new();
        let mut any = false;
        for line in stdout.lines() {
            let Some(rest) = line.strip_prefix(MARK).and_then(|l| l.strip_prefix(' ')) else {
                continue;
            };
            any = true;
            if let Some(h) = rest.strip_prefix("holder ") {
                holder_lines.push(h.to_string());
                continue;
            }
            if let Some(e) = rest.strip_prefix("error ") {
                r.error = Some(e.to_string());
                continue;
            }
            let mut parts = rest.split_whitespace();
            if let Some(word) = parts.next() {
                r.words.push(word.to_string());
            }
            for kv in parts {
                match kv.split_once('=') {
                    Some(("now", v)) => r.now = v.parse().unwrap_or(0),
                    Some(("age", v)) => r.age = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        r.holder = Holder::parse(holder_lines.iter().map(String::as_str));
        any.then_some(r)
    }

    /// True when the answer has status `word`.
    pub fn has(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }
}

/// Runs `script` through `argv` (ssh ... sh -s), bounded by `limit`; returns stdout, or
/// what went wrong.
fn run_script(argv: &[String], script: &str, limit: Duration) -> Result<String, String> {
    let program = argv.first().ok_or("no ssh command")?;
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::sys::process::prepare(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > limit => {
                crate::sys::process::kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "no answer after {} (the host or its connection hangs)",
                    format_duration(limit)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for ssh: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if stdout.contains(MARK) {
        return Ok(stdout);
    }
    let said = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("(nothing on stderr)");
    Err(format!(
        "the lock script gave no answer (ssh exit {}): {said}",
        status
            .code()
            .map(|c| c.to_string())
            .unwrap_or("by signal".into())
    ))
}

/// Runs `op` on `host` through `argv`; a reply with an error is an error.
fn ask(host: &str, argv: &[String], path: &str, op: &Op) -> Result<Reply, String> {
    let stdout = run_script(argv, &script(path, op), OP_LIMIT)
        .map_err(|e| format!("remote lock on {host}: {e}"))?;
    let reply = Reply::parse(&stdout)
        .ok_or_else(|| format!("remote lock on {host}: the lock script gave no answer"))?;
    if let Some(e) = &reply.error {
        return Err(format!(
            "remote lock on {host}: {e}; check that the ssh user may write there, or set [env.NAME] lock_path to a folder it may write"
        ));
    }
    if reply.has("busy") {
        return Err(format!(
            "remote lock on {host}: another deployer is changing the lock at {path} right now (its guard {path}.guard stayed for 10s); try again"
        ));
    }
    Ok(reply)
}

/// Why the remote lock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteLockError {
    #[error(
        "another deployment holds the remote lock of environment {env} on host {host} ({path}): {}. Wait for it to finish (or pass --lock-wait <duration>); if it is no longer running (its machine or CI job died), run `deployer unlock --env {env}` to remove the lock after checking, or wait for its lease to expire",
        .holder.as_ref().as_ref().map(|h| h.describe(*.now)).unwrap_or_else(|| "its holder file cannot be read".into())
    )]
    Held {
        env: String,
        host: String,
        path: String,
        /// Boxed to keep `Result<_, RemoteLockError>` small.
        holder: Box<Option<Holder>>,
        now: u64,
    },
    /// No host of the environment could be reached (each error names its host).
    #[error("cannot take the remote lock of environment {env}: no host could be reached: {}", .errors.join("; "))]
    Unreachable { env: String, errors: Vec<String> },
    #[error("{0}")]
    Failed(String),
    #[error("interrupted while taking the remote lock")]
    Cancelled,
}

impl RemoteLockError {
    /// The exit code of a run that stops with this error (DESIGN.md "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            RemoteLockError::Held { .. } => crate::exit::LOCKED,
            RemoteLockError::Cancelled => crate::exit::INTERRUPTED,
            RemoteLockError::Unreachable { .. } | RemoteLockError::Failed(_) => crate::exit::FAILED,
        }
    }
}

/// Where an environment's remote lock lives and how long its lease is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub env: String,
    pub path: String,
    pub lease: Duration,
}

impl Settings {
    /// The settings of `env` (`lock_path`, `lock_lease`, or their defaults).
    pub fn of(env: &crate::config::EnvConfig) -> Settings {
        Settings {
            env: env.name.clone(),
            path: env
                .lock_path
                .clone()
                .unwrap_or_else(|| default_path(&env.name)),
            lease: env.lock_lease.unwrap_or(DEFAULT_LEASE).max(MIN_LEASE),
        }
    }
}

/// Prints a line (a warning or a note) for the person running deployer.
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// Hosts reached (with the argv that runs `sh -s` there), hosts not reached (with the
/// error), and whether the run was cancelled meanwhile.
pub type Connected = (Vec<(String, Vec<String>)>, Vec<(String, String)>, bool);

/// Opens the master connection of each host in turn, from this thread: OpenSSH masters
/// are started with a parent-death signal tied to the thread that starts them, so a
/// master opened from a short-lived thread would die with it. Returns the shell argv of
/// each host reached, the error of each one not reached (in inventory order), and whether
/// the run was cancelled meanwhile.
pub fn connect_each(
    fleet: &Fleet,
    hosts: &[String],
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Connected {
    let (mut up, mut down) = (Vec::new(), Vec::new());
    // Every handshake at once (started here, on the run's thread, which outlives them):
    // the connects below then wait for the slowest host, not for the sum of them all.
    for h in hosts {
        let _ = fleet.start(h);
    }
    for h in hosts {
        match fleet.connect(h, cancelled) {
            Ok(()) => match fleet.shell_argv(h) {
                Ok(argv) => up.push((h.clone(), argv)),
                Err(e) => down.push((h.clone(), e)),
            },
            Err(super::ssh::ConnectError::Cancelled(_)) => return (up, down, true),
            Err(super::ssh::ConnectError::Failed(e)) => down.push((h.clone(), e)),
        }
    }
    (up, down, false)
}

/// The remote lock of a run: held on the hosts in `hosts`, renewed by a background thread
/// until it is dropped (which releases it on every host).
pub struct RemoteLock {
    settings: Settings,
    holder: Holder,
    hosts: Vec<(String, Vec<String>)>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
    say: Say,
}

impl std::fmt::Debug for RemoteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLock")
            .field("settings", &self.settings)
            .field(
                "hosts",
                &self.hosts.iter().map(|h| &h.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Takes the remote lock of a run on every host of the inventory, in inventory order (so
/// two runs racing for it meet on the first host and one of them stops at once).
///
/// A host that cannot be reached is not locked: a warning names it and the connection
/// error, and `on(...)` meets it as a failed host within the failure budget; when no host
/// can be reached the run fails with every connection error. A host where another run's
/// live lease holds the lock stops the run (the locks taken so far are released). An
/// expired lease is taken over, with a warning naming the old holder.
pub fn acquire(
    fleet: &Fleet,
    settings: &Settings,
    holder: Holder,
    cancelled: &(dyn Fn() -> bool + Sync),
    say: Say,
) -> Result<RemoteLock, RemoteLockError> {
    let hosts = fleet.inventory().hosts;
    let (up, down, cancel) = connect_each(fleet, &hosts, cancelled);
    if cancel {
        return Err(RemoteLockError::Cancelled);
    }
    if up.is_empty() {
        return Err(RemoteLockError::Unreachable {
            env: settings.env.clone(),
            errors: down.into_iter().map(|(_, e)| e).collect(),
        });
    }
    for (host, e) in &down {
        say(&format!(
            "the remote lock of {} is not taken on {host}, which cannot be reached ({e}); on(...) will count it as a failed host",
            settings.env
        ));
    }
    let mut lock = RemoteLock {
        settings: settings.clone(),
        holder: holder.clone(),
        hosts: Vec::new(),
        stop: None,
        renewer: None,
        say: say.clone(),
    };
    // The first host alone (two racing runs meet there and one stops at once), then the
    // others all at once: a round trip for the fleet, not one per host.
    let mut up = up.into_iter();
    let first: Vec<(String, Vec<String>)> = up.next().into_iter().collect();
    let rest: Vec<(String, Vec<String>)> = up.collect();
    for group in [first, rest] {
        if cancelled() {
            return Err(RemoteLockError::Cancelled);
        }
        let op = Op::Acquire(holder.clone());
        let replies: Vec<(String, Vec<String>, Result<Reply, String>)> = std::thread::scope(|s| {
            let asked: Vec<_> = group
                .into_iter()
                .map(|(host, argv)| {
                    let (path, op) = (&settings.path, &op);
                    s.spawn(move || {
                        let r = ask(&host, &argv, path, op);
                        (host, argv, r)
                    })
                })
                .collect();
            asked.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut first_error = None;
        for (host, argv, reply) in replies {
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    // The script may still take the lock after we gave up on its answer.
                    lock.hosts.push((host, argv));
                    first_error.get_or_insert(RemoteLockError::Failed(e));
                    continue;
                }
            };
            if reply.has("held") {
                first_error.get_or_insert(RemoteLockError::Held {
                    env: settings.env.clone(),
                    host,
                    path: settings.path.clone(),
                    holder: Box::new(reply.holder),
                    now: reply.now,
                });
                continue;
            }
            if reply.has("took-over") {
                say(&took_over_message(settings, &host, &reply));
            }
            lock.hosts.push((host, argv));
        }
        // The locks taken so far are released when `lock` is dropped.
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    lock.start_renewing();
    Ok(lock)
}

fn took_over_message(settings: &Settings, host: &str, reply: &Reply) -> String {
    let old = match (&reply.holder, reply.has("damaged")) {
        (_, true) => format!(
            "a lock folder without a holder file (damaged or made by hand, {} old)",
            format_duration(Duration::from_secs(reply.age))
        ),
        (Some(h), false) => h.describe(reply.now),
        (None, false) => "a holder that cannot be read".into(),
    };
    format!(
        "took over the expired remote lock of {} on {host} ({}): it was held by {old}",
        settings.env, settings.path
    )
}

impl RemoteLock {
    fn start_renewing(&mut self) {
        let (tx, rx) = mpsc::channel::<()>();
        let every = self.settings.lease / 3;
        let hosts = self.hosts.clone();
        let settings = self.settings.clone();
        let holder = self.holder.clone();
        let say = self.say.clone();
        let handle = std::thread::spawn(move || {
            // A host whose renewal failed is named once until a renewal works again.
            let mut failing: BTreeMap<String, bool> = BTreeMap::new();
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                for (host, argv) in &hosts {
                    let op = Op::Renew(holder.clone());
                    let problem = match ask(host, argv, &settings.path, &op) {
                        Ok(r) if r.has("renewed") => None,
                        Ok(r) if r.has("gone") => Some(format!(
                            "the remote lock of {} on {host} was removed while this run holds it (deployer unlock?): another run may start there now",
                            settings.env
                        )),
                        Ok(r) => Some(format!(
                            "the remote lock of {} on {host} was taken over by {} while this run holds it (its lease expired before it could be renewed): two runs may be deploying at once",
                            settings.env,
                            r.holder
                                .map(|h| h.describe(r.now))
                                .unwrap_or_else(|| "another run".into())
                        )),
                        Err(e) => Some(format!(
                            "cannot renew {e}; the lease ends {} after its last renewal",
                            format_duration(settings.lease)
                        )),
                    };
                    let was = failing.get(host).copied().unwrap_or(false);
                    match problem {
                        Some(msg) if !was => {
                            say(&msg);
                            failing.insert(host.clone(), true);
                        }
                        None if was => {
                            say(&format!(
                                "renewed the remote lock of {} on {host} again",
                                settings.env
                            ));
                            failing.insert(host.clone(), false);
                        }
                        _ => {}
                    }
                }
            }
        });
        self.stop = Some(tx);
        self.renewer = Some(handle);
    }

    fn stop_renewing(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
    }

    fn release_all(&mut self) {
        self.stop_renewing();
        let hosts = std::mem::take(&mut self.hosts);
        let (settings, run_id, say) = (&self.settings, &self.holder.run_id, &self.say);
        std::thread::scope(|s| {
            for (host, argv) in &hosts {
                s.spawn(move || {
                    match ask(host, argv, &settings.path, &Op::Release(run_id.clone())) {
                        Ok(r) if r.has("released") || r.has("gone") => {}
                        Ok(r) => say(&format!(
                            "the remote lock of {} on {host} was not removed: it is now held by {}",
                            settings.env,
                            r.holder
                                .map(|h| h.describe(r.now))
                                .unwrap_or_else(|| "another run".into())
                        )),
                        Err(e) => say(&format!(
                            "cannot release {e}; its lease expires within {}, or remove it with `deployer unlock --env {}`",
                            format_duration(settings.lease),
                            settings.env
                        )),
                    }
                });
            }
        });
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// The remote lock step of a run, after the local lock: nothing when the environment has
/// no hosts; in a dry run, only a read of the lock (a held one is a warning); otherwise the
/// lock taken on the hosts (see [`acquire`]). `warn` prints warnings.
pub fn for_run(
    fleet: &Fleet,
    env: &crate::config::EnvConfig,
    info: &crate::store::lock::LockInfo,
    dry_run: bool,
    wait: Option<Duration>,
    cancelled: &(dyn Fn() -> bool + Sync),
    warn: Say,
) -> Result<Option<RemoteLock>, RemoteLockError> {
    if fleet.inventory().hosts.is_empty() {
        return Ok(None);
    }
    let settings = Settings::of(env);
    if dry_run {
        for (_, msg) in check_for_dry_run(fleet, &settings, &info.run_id, cancelled) {
            warn(&msg);
        }
        return Ok(None);
    }
    let holder = Holder::for_this_process(info, settings.lease);
    // Each warning once, however many times `--lock-wait` tries again.
    let said = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let once: Say = Arc::new(move |m: &str| {
        let new = said
            .lock()
            .map(|mut s| s.insert(m.to_string()))
            .unwrap_or(true);
        if new {
            warn(m);
        }
    });
    let start = Instant::now();
    let result = loop {
        match acquire(fleet, &settings, holder.clone(), cancelled, once.clone()) {
            Err(RemoteLockError::Held { .. }) if wait.is_some_and(|w| start.elapsed() < w) => {
                // Poll once a second; Ctrl-C stops the wait at once.
                let pause = Instant::now();
                while pause.elapsed() < Duration::from_secs(1) {
                    if cancelled() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if cancelled() {
                    break Err(RemoteLockError::Cancelled);
                }
            }
            r => break r,
        }
    };
    result.map(Some).inspect_err(|_| {
        // The run ends here: its masters must not outlive it.
        fleet.close_all();
    })
}

/// One host's lock as read (`deployer unlock`, dry runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No lock on this host.
    Free,
    /// Locked: the holder (if readable), the host's clock and the folder's age.
    Held {
        holder: Option<Holder>,
        now: u64,
        age: u64,
    },
    /// The host could not be reached or read.
    Unknown(String),
}

impl Seen {
    /// Describes the lock on `host` for a person.
    pub fn describe(&self, host: &str) -> String {
        match self {
            Seen::Free => format!("{host}: not locked"),
            Seen::Held {
                holder: Some(h),
                now,
                ..
            } => format!("{host}: held by {}", h.describe(*now)),
            Seen::Held {
                holder: None, age, ..
            } => format!(
                "{host}: a lock folder without a readable holder ({} old; damaged or being made)",
                format_duration(Duration::from_secs(*age))
            ),
            Seen::Unknown(e) => format!("{host}: cannot read the lock: {e}"),
        }
    }
}

/// Reads the lock on every host, all hosts at once, in inventory order. Each host's
/// connection is opened by the thread that reads it and ends with it (see
/// [`connect_each`]), so a later command to the host (`deployer unlock`'s removal) opens
/// one of its own.
pub fn show_all(
    fleet: &Fleet,
    settings: &Settings,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Vec<(String, Seen, Option<Vec<String>>)> {
    let hosts = fleet.inventory().hosts;
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|host| {
                s.spawn(move || {
                    let (up, down, _) = connect_each(fleet, std::slice::from_ref(host), cancelled);
                    match (up.into_iter().next(), down.into_iter().next()) {
                        (Some((_, argv)), _) => {
                            let seen = match ask(host, &argv, &settings.path, &Op::Show) {
                                Ok(r) if r.has("free") => Seen::Free,
                                Ok(r) => Seen::Held {
                                    holder: r.holder,
                                    now: r.now,
                                    age: r.age,
                                },
                                Err(e) => Seen::Unknown(e),
                            };
                            (host.clone(), seen, Some(argv))
                        }
                        (None, Some((_, e))) => (host.clone(), Seen::Unknown(e), None),
                        (None, None) => (host.clone(), Seen::Unknown("interrupted".into()), None),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&hosts)
            .map(|(h, host)| {
                h.join().unwrap_or_else(|_| {
                    (
                        host.clone(),
                        Seen::Unknown("the reading thread failed".into()),
                        None,
                    )
                })
            })
            .collect()
    })
}

/// Removes the lock on `host` if it is still held by `run_id` (`""`: a lock without a
/// readable holder). Returns whether it was removed, or why not.
pub fn remove(
    host: &str,
    argv: &[String],
    settings: &Settings,
    run_id: &str,
) -> Result<bool, String> {
    let r = ask(host, argv, &settings.path, &Op::Remove(run_id.to_string()))?;
    if r.has("removed") {
        Ok(true)
    } else if r.has("gone") {
        Ok(false)
    } else {
        Err(format!(
            "the lock on {host} changed since it was shown: it is now held by {}; run deployer unlock again to see it",
            r.holder
                .map(|h| h.describe(r.now))
                .unwrap_or_else(|| "a holder that cannot be read".into())
        ))
    }
}

/// What a dry run says about the remote lock: a held lock (a real run would stop) as a
/// warning, an unreadable host as a note. Reads only: no guard, nothing written.
pub fn check_for_dry_run(
    fleet: &Fleet,
    settings: &Settings,
    my_run_id: &str,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Vec<(bool, String)> {
    let seen = show_all(fleet, settings, cancelled);
    // Their masters ended with the reading threads: start the run with none.
    fleet.close_all();
    let mut out = Vec::new();
    for (host, s, _) in seen {
        match &s {
            Seen::Free => {}
            Seen::Held {
                holder: Some(h), now, ..
            } if h.run_id == my_run_id || h.expired(*now) => {}
            Seen::Held { .. } => out.push((
                true,
                format!(
                    "the remote lock of {} is held on {}: a real run would stop now (exit 5); `deployer unlock --env {}` removes it",
                    settings.env,
                    s.describe(&host),
                    settings.env
                ),
            )),
            Seen::Unknown(e) => out.push((
                false,
                format!("dry run: the remote lock on {host} was not checked: {e}"),
            )),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn holder(run: &str, lease: u64) -> Holder {
        Holder {
            run_id: run.into(),
            controller: "ci-1".into(),
            user: "deploy".into(),
            pid: 42,
            script: "deploy it's.rhai\nx".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            lease_secs: lease,
            expires: 0,
            renewed: 0,
        }
    }

    #[test]
    fn holders_render_and_parse_back() {
        let h = holder("r1", 120);
        let mut lines = h.fixed_lines();
        assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:?}");
        lines.push("expires=1000".into());
        lines.push("renewed=900".into());
        lines.push("noise without equals".into());
        let back = Holder::parse(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(back.script, "deploy it's.rhai x");
        assert_eq!(
            (back.expires, back.renewed, back.lease_secs),
            (1000, 900, 120)
        );
        assert_eq!((back.pid, back.run_id.as_str()), (42, "r1"));
        assert!(Holder::parse(["user=x"]).is_none());
    }

    #[test]
    fn lease_expiry_decisions() {
        let h = Holder {
            expires: 1000,
            renewed: 960,
            ..holder("r1", 60)
        };
        assert!(!h.expired(999));
        assert!(h.expired(1000));
        assert_eq!(h.lease_left(990), Duration::from_secs(10));
        assert_eq!(h.lease_left(2000), Duration::ZERO);
        let d = h.describe(990);
        assert!(
            d.contains("run r1 (deploy@ci-1, pid 42") && d.contains("renewed 30s ago, 10s left"),
            "{d}"
        );
        assert!(h.describe(1005).contains("its lease expired 5s ago"));
    }

    #[test]
    fn replies_ignore_noise_and_read_the_holder() {
        let out = "Welcome to web1!\n@@deployer-lock expired now=1234\n@@deployer-lock holder run_id=old\n@@deployer-lock holder expires=1200\n@@deployer-lock took-over\nbye\n";
        let r = Reply::parse(out).unwrap();
        assert_eq!(r.words, ["expired", "took-over"]);
        assert_eq!(r.now, 1234);
        assert_eq!(r.holder.unwrap().expires, 1200);
        assert!(Reply::parse("motd only\n").is_none());
        let r =
            Reply::parse("@@deployer-lock error cannot create /x: Permission denied\n").unwrap();
        assert_eq!(
            r.error.as_deref(),
            Some("cannot create /x: Permission denied")
        );
    }

    /// Runs a lock script with the local `sh`, as a host would.
    fn local(path: &str, op: &Op) -> Reply {
        let argv = vec!["sh".to_string(), "-s".to_string()];
        Reply::parse(&run_script(&argv, &script(path, op), OP_LIMIT).unwrap()).unwrap()
    }

    #[test]
    fn the_lock_scripts_take_renew_refuse_take_over_and_release() {
        let dir = std::env::temp_dir().join(format!("dpl-lock-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("it's a lock").display().to_string();
        let a = holder("run-a", 60);
        let b = holder("run-b", 60);
        assert!(local(&path, &Op::Show).has("free"));
        assert!(local(&path, &Op::Acquire(a.clone())).has("acquired"));
        let text = std::fs::read_to_string(format!("{path}/holder")).unwrap();
        assert!(text.contains("script=deploy it's.rhai x\n"), "{text}");
        // Taking it again is a renewal; a rival's live lease refuses.
        assert!(local(&path, &Op::Acquire(a.clone())).has("mine"));
        let r = local(&path, &Op::Acquire(b.clone()));
        assert!(r.has("held"), "{r:?}");
        let seen = r.holder.unwrap();
        assert_eq!(seen.run_id, "run-a");
        assert!(!seen.expired(r.now) && seen.lease_left(r.now) > Duration::from_secs(50));
        assert!(local(&path, &Op::Renew(a.clone())).has("renewed"));
        assert!(local(&path, &Op::Renew(b.clone())).has("lost"));
        assert!(local(&path, &Op::Release("run-b".into())).has("not-mine"));
        // An expired lease is taken over and the old holder is named.
        let expired = text
            .lines()
            .map(|l| {
                if l.starts_with("expires=") {
                    "expires=5"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(format!("{path}/holder"), expired).unwrap();
        let r = local(&path, &Op::Acquire(b.clone()));
        assert!(r.has("expired") && r.has("took-over"), "{r:?}");
        assert_eq!(r.holder.as_ref().unwrap().run_id, "run-a");
        assert!(local(&path, &Op::Renew(a.clone())).has("lost"));
        // A folder without a holder file is damaged and taken over.
        std::fs::remove_file(format!("{path}/holder")).unwrap();
        let r = local(&path, &Op::Acquire(a.clone()));
        assert!(r.has("damaged") && r.has("took-over"), "{r:?}");
        // unlock removes only the lock it was shown.
        assert!(local(&path, &Op::Remove("run-b".into())).has("changed"));
        assert!(local(&path, &Op::Remove("run-a".into())).has("removed"));
        assert!(local(&path, &Op::Release("run-a".into())).has("gone"));
        assert!(!std::path::Path::new(&path).exists());
        assert!(!std::path::Path::new(&format!("{path}.guard")).exists());
        // A stale guard (its deployer died mid-operation) is cleared after 10 s.
        std::fs::create_dir(format!("{path}.guard")).unwrap();
        let old = std::process::Command::new("touch")
            .args(["-d", "1 minute ago", &format!("{path}.guard")])
            .status()
            .unwrap();
        assert!(old.success());
        assert!(local(&path, &Op::Acquire(a.clone())).has("acquired"));
        // A folder that holds anything else is not a lock: refused, and left as it is.
        let other = dir.join("app").display().to_string();
        std::fs::create_dir(&other).unwrap();
        std::fs::write(format!("{other}/keep"), "x").unwrap();
        let r = local(&other, &Op::Acquire(b.clone()));
        assert!(r.error.unwrap().contains("is not a deployer lock folder"));
        assert!(std::path::Path::new(&format!("{other}/keep")).exists());
        // A folder it may not create is an error naming it.
        let r = local("/proc/no/such/lock", &Op::Acquire(a));
        assert!(r.error.unwrap().contains("/proc/no/such/lock"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

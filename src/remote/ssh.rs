//! One OpenSSH master connection per host per run (ControlMaster in a private 0700 folder),
//! commands sent over it to `sh -s` on stdin, and copies with scp over the same master.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::Inventory;
use crate::sys::process::{
    capture, kill_group, prepare, Captured, CommandOutput, LineSink, ProcessError,
};

/// Seconds to wait for a connection when `[env.NAME.ssh] connect_timeout` is not set.
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 10;

/// Why a host could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Failed(String),
    #[error("interrupted while connecting to {0}")]
    Cancelled(String),
}

/// The remote hosts of a run: the inventory, the current host of `on(...)` and the masters.
#[derive(Debug, Default)]
pub struct Fleet {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    inventory: Inventory,
    dir: Option<PathBuf>,
    masters: BTreeMap<String, Child>,
    /// Masters started and not answering yet.
    pending: BTreeMap<String, Pending>,
    /// Per thread (the hosts of a batch run on threads of their own): `on(...)` pushes its
    /// host, `local(...)` pushes none.
    current: HashMap<std::thread::ThreadId, Vec<Option<String>>>,
    /// Per thread: the token that stops the commands of one host of a batch (a child of
    /// the run's, cancelled when the batch is given up).
    tokens: HashMap<std::thread::ThreadId, CancellationToken>,
    /// Hosts the run changed, in the order they changed.
    changed: Vec<String>,
    /// Changed hosts already rolled back on their own (failed within the failure budget).
    rolled_back: Vec<String>,
    /// Numbers the masters' log files (hosts connect from several threads at once).
    logs: usize,
    /// Hosts found with (true) or without rsync.
    rsync: BTreeMap<String, bool>,
    /// Hosts whose shell was found printing text before commands (warned about once).
    noisy: Vec<String>,
    /// A rollback is running: hosts failing in it are not rolled back on their own (that
    /// would call the rollback from itself), and its `on(...)` adds no host records.
    rolling_back: bool,
}

/// A master connection started and not answering yet.
#[derive(Debug)]
struct Pending {
    child: Child,
    log: PathBuf,
    since: Instant,
}

impl Fleet {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the inventory of the selected environment.
    pub fn configure(&self, inventory: Inventory) {
        self.lock().inventory = inventory;
    }

    /// True when the environment has remote hosts.
    pub fn has_hosts(&self) -> bool {
        !self.lock().inventory.hosts.is_empty()
    }

    /// The inventory (empty when the environment has no hosts).
    pub fn inventory(&self) -> Inventory {
        self.lock().inventory.clone()
    }

    /// Enters a host (`Some`) or the local machine (`None`) on this thread.
    pub fn push(&self, host: Option<String>) {
        let id = std::thread::current().id();
        self.lock().current.entry(id).or_default().push(host);
    }

    /// Leaves what [`Fleet::push`] entered on this thread.
    pub fn pop(&self) {
        let id = std::thread::current().id();
        let mut inner = self.lock();
        if let Some(stack) = inner.current.get_mut(&id) {
            stack.pop();
            if stack.is_empty() {
                inner.current.remove(&id);
            }
        }
    }

    /// The host commands of this thread run on now, if any.
    pub fn current(&self) -> Option<String> {
        let id = std::thread::current().id();
        self.lock()
            .current
            .get(&id)
            .and_then(|s| s.last().cloned().flatten())
    }

    /// Sets (or clears) the token that stops this thread's remote commands.
    pub fn set_token(&self, token: Option<CancellationToken>) {
        let id = std::thread::current().id();
        let mut inner = self.lock();
        match token {
            Some(t) => inner.tokens.insert(id, t),
            None => inner.tokens.remove(&id),
        };
    }

    /// True on the thread of one host of a batch of `on(...)` (inside `local(...)` too).
    pub fn in_batch(&self) -> bool {
        let id = std::thread::current().id();
        self.lock().tokens.contains_key(&id)
    }

    /// The token this thread's remote commands stop on: its host's within a batch, else
    /// `run` (the run's).
    pub fn token(&self, run: &CancellationToken) -> CancellationToken {
        let id = std::thread::current().id();
        self.lock()
            .tokens
            .get(&id)
            .cloned()
            .unwrap_or_else(|| run.clone())
    }

    /// Notes that `host`'s shell prints text before commands; true the first time.
    pub fn note_noisy(&self, host: &str) -> bool {
        let mut inner = self.lock();
        if inner.noisy.iter().any(|h| h == host) {
            return false;
        }
        inner.noisy.push(host.to_string());
        true
    }

    /// Marks the start (`true`) or end of a rollback; returns what it was before.
    pub fn set_rolling_back(&self, on: bool) -> bool {
        std::mem::replace(&mut self.lock().rolling_back, on)
    }

    /// True while a rollback runs (see [`Fleet::set_rolling_back`]).
    pub fn rolling_back(&self) -> bool {
        self.lock().rolling_back
    }

    /// Records that `host`, changed by the run, was rolled back on its own.
    pub fn mark_rolled_back(&self, host: &str) {
        let mut inner = self.lock();
        if !inner.rolled_back.iter().any(|h| h == host) {
            inner.rolled_back.push(host.to_string());
        }
    }

    /// The changed hosts that are not rolled back yet, in the order they changed: what
    /// `fn rollback(ctx)` gets as `ctx.hosts`.
    pub fn to_roll_back(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .changed
            .iter()
            .filter(|h| !inner.rolled_back.contains(h))
            .cloned()
            .collect()
    }

    /// Records that the run changed `host` (once).
    pub fn mark_changed(&self, host: &str) {
        let mut inner = self.lock();
        if !inner.changed.iter().any(|h| h == host) {
            inner.changed.push(host.to_string());
        }
    }

    /// The hosts the run changed, in the order they changed.
    pub fn changed(&self) -> Vec<String> {
        self.lock().changed.clone()
    }

    /// The private folder of the control sockets (created on first use).
    fn dir(&self) -> Result<PathBuf, String> {
        let mut inner = self.lock();
        if let Some(d) = &inner.dir {
            return Ok(d.clone());
        }
        // In /tmp, not $TMPDIR: a socket path must fit in 104 bytes (%C adds 40).
        use std::os::unix::fs::DirBuilderExt;
        let pid = std::process::id();
        for n in 0..100 {
            let d = PathBuf::from(format!("/tmp/dpl-{pid}-{n}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {
                    inner.dir = Some(d.clone());
                    return Ok(d);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot create the folder for ssh control sockets {}: {e}",
                        d.display()
                    ))
                }
            }
        }
        Err("cannot create a folder for ssh control sockets in /tmp: /tmp/dpl-* names are taken; remove stale ones".into())
    }

    /// The OpenSSH options every command to a host uses (also understood by scp).
    pub fn options(&self) -> Result<Vec<String>, String> {
        let dir = self.dir()?;
        let ssh = self.lock().inventory.ssh.clone();
        let timeout = connect_timeout(&ssh);
        let mut o = vec![
            format!("ControlPath={}/%C", dir.display()),
            "BatchMode=yes".into(),
            format!("ConnectTimeout={timeout}"),
            // A host cut off mid-run is noticed after 3 unanswered keepalives, half the
            // connect timeout apart (15 s by default), not at the TCP timeout.
            format!("ServerAliveInterval={}", timeout.div_ceil(2)),
            "ServerAliveCountMax=3".into(),
            "LogLevel=ERROR".into(),
        ];
        if ssh.host_key_checking.as_deref() == Some("accept-new") {
            o.push("StrictHostKeyChecking=accept-new".into());
        }
        if let Some(p) = ssh.port {
            o.push(format!("Port={p}"));
        }
        if let Some(u) = &ssh.user {
            o.push(format!("User={u}"));
        }
        if let Some(i) = &ssh.identity {
            o.push(format!("IdentityFile={}", expand_home(i)));
            o.push("IdentitiesOnly=yes".into());
        }
        if let Some(k) = &ssh.known_hosts {
            o.push(format!("UserKnownHostsFile={}", expand_home(k)));
        }
        Ok(o.into_iter().flat_map(|x| ["-o".to_string(), x]).collect())
    }

    /// Starts the master connection to `host` unless it is started or open, without
    /// waiting for it. Call it from a thread that lives as long as the run: the master dies
    /// with the thread that started it (`PR_SET_PDEATHSIG` follows the thread), so `on(...)`
    /// starts the masters of a batch before its hosts' threads.
    pub fn start(&self, host: &str) -> Result<(), ConnectError> {
        {
            let inner = self.lock();
            if inner.masters.contains_key(host) || inner.pending.contains_key(host) {
                return Ok(());
            }
        }
        let fail = ConnectError::Failed;
        let opts = self.options().map_err(fail)?;
        let dir = self.dir().map_err(fail)?;
        let log_path = {
            let mut inner = self.lock();
            inner.logs += 1;
            dir.join(format!("{}.log", inner.logs))
        };
        let log = std::fs::File::create(&log_path)
            .map_err(|e| fail(format!("cannot create {}: {e}", log_path.display())))?;
        let mut cmd = Command::new("ssh");
        cmd.args(&opts)
            .args([
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=no",
                "-N",
                "--",
                host,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        prepare(&mut cmd);
        let child = cmd.spawn().map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::NotFound {
                "ssh not found: install the OpenSSH client (Debian: apt-get install openssh-client)"
                    .into()
            } else {
                format!("cannot start ssh for {host}: {e}")
            })
        })?;
        self.lock().pending.insert(
            host.to_string(),
            Pending {
                child,
                log: log_path,
                since: Instant::now(),
            },
        );
        Ok(())
    }

    /// Opens the master connection to `host` unless it is open (starting it, see
    /// [`Fleet::start`], unless it is started) and waits until it answers; fails fast,
    /// naming the host and what to do, when it is down, refuses the key or has an unknown
    /// host key.
    pub fn connect(&self, host: &str, cancelled: &dyn Fn() -> bool) -> Result<(), ConnectError> {
        if self.lock().masters.contains_key(host) {
            return Ok(());
        }
        self.start(host)?;
        let fail = ConnectError::Failed;
        let opts = self.options().map_err(fail)?;
        let env = self.lock().inventory.env.clone();
        let limit = Duration::from_secs(connect_timeout(&self.lock().inventory.ssh) + 5);
        let stop = |mut p: Pending| {
            kill_group(p.child.id(), libc::SIGKILL);
            let _ = p.child.wait();
        };
        let mut retries = 0u32;
        loop {
            let (exited, since, log) = {
                let mut inner = self.lock();
                let Some(p) = inner.pending.get_mut(host) else {
                    // Another thread finished connecting it.
                    return if inner.masters.contains_key(host) {
                        Ok(())
                    } else {
                        Err(fail(format!(
                            "the connection to {host} was closed while connecting"
                        )))
                    };
                };
                (
                    matches!(p.child.try_wait(), Ok(Some(_))),
                    p.since,
                    p.log.clone(),
                )
            };
            if exited {
                let p = self.lock().pending.remove(host);
                drop(p);
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                // sshd drops bursts of unauthenticated connections (MaxStartups 10:30:100)
                // before the key exchange: a wide fan-out to one server tries again.
                if dropped_before_kex(&text) && retries < KEX_RETRIES && !cancelled() {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(150 * u64::from(retries)));
                    self.start(host)?;
                    continue;
                }
                return Err(fail(explain(host, &env, &text)));
            }
            if master_answers(&opts, host) {
                let mut inner = self.lock();
                if let Some(p) = inner.pending.remove(host) {
                    inner.masters.insert(host.to_string(), p.child);
                }
                return Ok(());
            }
            if cancelled() {
                if let Some(p) = self.lock().pending.remove(host) {
                    stop(p);
                }
                return Err(ConnectError::Cancelled(host.into()));
            }
            if since.elapsed() > limit {
                if let Some(p) = self.lock().pending.remove(host) {
                    stop(p);
                }
                return Err(fail(format!(
                    "cannot connect to {host}: no connection after {}s (host down or unreachable?); check that it is up and reachable with `ssh {host} true`, or raise [env.{env}.ssh] connect_timeout",
                    limit.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Checks that the master of `host` still answers; forgets it (so the next command
    /// connects again and fails fast with a clear error) when it does not.
    pub fn alive(&self, host: &str) -> bool {
        let Ok(opts) = self.options() else {
            return false;
        };
        let up = master_answers(&opts, host);
        if !up {
            if let Some(mut child) = self.lock().masters.remove(host) {
                kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
            }
        }
        up
    }

    /// The ssh argv that runs `sh -s` on `host` through its master.
    pub fn shell_argv(&self, host: &str) -> Result<Vec<String>, String> {
        let mut argv = vec!["ssh".to_string()];
        argv.extend(self.options()?);
        // No terminal: a pty would echo the script (and the secrets in it) back.
        argv.extend(["-T", "-o", "ControlMaster=no", "--", host, "sh -s"].map(String::from));
        Ok(argv)
    }

    /// The rsync argv that copies `from` to `to` (one of them `host:path`) over the master
    /// (`-a`: times, modes and links kept, like scp's `-p`).
    pub fn rsync_argv(&self, from: &str, to: &str) -> Result<Vec<String>, String> {
        let mut ssh: Vec<String> = vec!["ssh".into()];
        ssh.extend(self.options()?.iter().map(|o| super::sh_quote(o)));
        ssh.extend(["-T", "-o", "ControlMaster=no"].map(String::from));
        Ok(vec![
            "rsync".into(),
            "-a".into(),
            "-e".into(),
            ssh.join(" "),
            "--".into(),
            from.into(),
            to.into(),
        ])
    }

    /// Whether `host` has rsync, as found before (`None`: not asked yet).
    pub fn has_rsync(&self, host: &str) -> Option<bool> {
        self.lock().rsync.get(host).copied()
    }

    /// Remembers whether `host` has rsync.
    pub fn set_rsync(&self, host: &str, has: bool) {
        self.lock().rsync.insert(host.to_string(), has);
    }

    /// The scp argv that copies `from` to `to` (one of them `host:path`) over the master.
    pub fn copy_argv(&self, from: &str, to: &str) -> Result<Vec<String>, String> {
        let mut argv = vec!["scp".to_string(), "-q".into(), "-r".into(), "-p".into()];
        argv.extend(self.options()?);
        argv.extend(["-o", "ControlMaster=no", "--", from, to].map(String::from));
        Ok(argv)
    }

    /// Closes every master (and removes the socket folder); returns the hosts closed.
    pub fn close_all(&self) -> Vec<String> {
        let (masters, dir) = {
            let mut inner = self.lock();
            for (_, mut p) in std::mem::take(&mut inner.pending) {
                kill_group(p.child.id(), libc::SIGKILL);
                let _ = p.child.wait();
            }
            (std::mem::take(&mut inner.masters), inner.dir.take())
        };
        // Every master is asked to exit at once, then each is waited for (a second at
        // most, then killed): closing a fleet costs one round trip, not one per host.
        let mut asked = Vec::new();
        if let Some(d) = &dir {
            for host in masters.keys() {
                let exit = Command::new("ssh")
                    .args(["-o", &format!("ControlPath={}/%C", d.display())])
                    .args(self.port_user())
                    .args(["-O", "exit", "--", host])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                asked.extend(exit.ok());
            }
        }
        for mut a in asked {
            let _ = a.wait();
        }
        let mut closed = Vec::new();
        for (host, mut child) in masters {
            let start = Instant::now();
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if start.elapsed() > Duration::from_secs(1) {
                    kill_group(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            closed.push(host);
        }
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(d);
        }
        closed
    }

    /// `Port`/`User` options: %C hashes them, so `-O exit` must name the same ones.
    fn port_user(&self) -> Vec<String> {
        let ssh = self.lock().inventory.ssh.clone();
        let mut o = Vec::new();
        if let Some(p) = ssh.port {
            o.extend(["-o".to_string(), format!("Port={p}")]);
        }
        if let Some(u) = ssh.user {
            o.extend(["-o".to_string(), format!("User={u}")]);
        }
        o
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// How many times a master dropped before the key exchange is started again.
const KEX_RETRIES: u32 = 3;

/// True when ssh says the server closed the connection before the key exchange: what sshd
/// does to connections beyond `MaxStartups`, worth another try (not a refused key or an
/// unknown host key, which never are).
pub fn dropped_before_kex(log: &str) -> bool {
    log.lines().any(|l| {
        l.contains("kex_exchange_identification")
            || (l.contains("Connection closed by") && !l.contains("authenticating"))
            || l.contains("Connection reset by peer")
    })
}

fn connect_timeout(ssh: &crate::config::SshConfig) -> u64 {
    ssh.connect_timeout
        .as_deref()
        .and_then(|t| crate::core::duration::parse_duration(t).ok())
        .map(|d| d.as_secs_f64().ceil().max(1.0) as u64)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

/// Turns what ssh printed when the master failed into an error naming the host and what
/// to do.
pub fn explain(host: &str, env: &str, stderr: &str) -> String {
    let said = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("@@@"))
        .unwrap_or("(ssh printed nothing)");
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return format!(
            "cannot connect to {host}: its host key CHANGED since it was recorded in known_hosts; this may be an attack or a reinstalled server: verify the new key with the server's administrator, then replace the old entry (ssh-keygen -R {host})"
        );
    }
    if stderr.contains("Host key verification failed")
        || stderr.contains("host key is known")
        || stderr.contains("No matching host key")
    {
        return format!(
            "cannot connect to {host}: its host key is not in known_hosts ({said}); deployer never trusts an unknown host key by itself: verify it and add it (ssh-keyscan {host} >> ~/.ssh/known_hosts, or the file in [env.{env}.ssh] known_hosts), or set host_key_checking = \"accept-new\" in [env.{env}.ssh] to trust new hosts on first use"
        );
    }
    if stderr.contains("Permission denied") || stderr.contains("Too many authentication failures") {
        return format!(
            "cannot connect to {host}: the host refused the key ({said}); check [env.{env}.ssh] identity and user, that the key is in the host's authorized_keys, and that `ssh {host} true` works"
        );
    }
    if [
        "Connection refused",
        "timed out",
        "No route to host",
        "Network is unreachable",
        "Could not resolve",
        "Connection closed",
        "Connection reset",
    ]
    .iter()
    .any(|s| stderr.contains(s))
    {
        return format!(
            "cannot connect to {host}: host down or unreachable ({said}); check that it is up and that sshd listens (ssh {host} true)"
        );
    }
    format!("cannot connect to {host}: ssh failed: {said}; try `ssh {host} true` to see why")
}

/// The line in which ssh said it lost the connection, if it did.
pub fn lost_connection(stderr: &str) -> Option<String> {
    const SIGNS: &[&str] = &[
        "Timeout, server not responding",
        "Connection closed by",
        "Connection reset",
        "Broken pipe",
        "client_loop: send disconnect",
        "mux_client_request_session",
        "Control socket connect",
    ];
    stderr
        .lines()
        .rfind(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(|l| l.trim().to_string())
}

/// Runs `argv` (an ssh or scp command), writing `input` to its stdin and keeping stdin open
/// until it ends: the remote watcher kills the command when stdin closes, so killing the
/// local ssh on timeout or Ctrl-C stops the remote command too. Of each output stream the
/// last `keep` bytes are kept and the count of the others is in the result.
pub async fn run(
    argv: &[String],
    input: Option<Vec<u8>>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    live: Option<LineSink>,
    keep: usize,
) -> Result<CommandOutput, ProcessError> {
    let program = argv.first().ok_or(ProcessError::Empty)?.clone();
    let display = crate::sys::process::display_argv(argv);
    let mut std_cmd = Command::new(&program);
    std_cmd
        .args(&argv[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    prepare(&mut std_cmd);
    let start = Instant::now();
    let mut child = tokio::process::Command::from(std_cmd)
        .spawn()
        .map_err(|source| ProcessError::spawning(&program, source))?;
    let pid = child.id().unwrap_or(0);
    let mut stdin = child.stdin.take();
    if let (Some(text), Some(s)) = (&input, stdin.as_mut()) {
        let _ = s.write_all(text).await;
        let _ = s.flush().await;
    }
    // Bounded like a local command's output: the last `keep` bytes of each stream.
    let out = read(child.stdout.take(), "stdout", live.clone(), keep);
    let err = read(child.stderr.take(), "stderr", live, keep);
    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut(Duration),
        Cancelled,
    }
    let end = tokio::select! {
        s = child.wait() => End::Exited(s),
        _ = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        } => End::TimedOut(timeout.unwrap_or_default()),
        _ = cancel.cancelled() => End::Cancelled,
    };
    drop(stdin);
    let kill = |pid| {
        kill_group(pid, libc::SIGTERM);
    };
    match end {
        End::Exited(status) => {
            let status = status.map_err(|source| ProcessError::Spawn {
                program: program.clone(),
                source,
            })?;
            let (stdout, stdout_dropped) = text(out.await.ok());
            let (stderr, stderr_dropped) = text(err.await.ok());
            use std::os::unix::process::ExitStatusExt;
            Ok(CommandOutput {
                code: status.code(),
                signal: status.signal(),
                stdout,
                stderr,
                stdout_dropped,
                stderr_dropped,
                duration: start.elapsed(),
                pipes_left_open: false,
            })
        }
        End::TimedOut(after) => {
            kill(pid);
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            kill_group(pid, libc::SIGKILL);
            // What was read so far; a reader still held open elsewhere is not waited for.
            let grab = |task: tokio::task::JoinHandle<Captured>| async move {
                text(
                    tokio::time::timeout(Duration::from_secs(1), task)
                        .await
                        .ok()
                        .and_then(Result::ok),
                )
            };
            let (stdout, stdout_dropped) = grab(out).await;
            let (stderr, stderr_dropped) = grab(err).await;
            Err(ProcessError::Timeout {
                display,
                after,
                partial: Box::new(CommandOutput {
                    code: None,
                    signal: None,
                    stdout,
                    stderr,
                    stdout_dropped,
                    stderr_dropped,
                    duration: start.elapsed(),
                    pipes_left_open: false,
                }),
            })
        }
        End::Cancelled => {
            kill(pid);
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            kill_group(pid, libc::SIGKILL);
            Err(ProcessError::Cancelled { display })
        }
    }
}

/// Reads one output stream of an ssh command in a task (see [`capture`]).
fn read<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    r: Option<R>,
    name: &'static str,
    live: Option<LineSink>,
    keep: usize,
) -> tokio::task::JoinHandle<Captured> {
    tokio::spawn(async move {
        match r {
            Some(r) => capture(r, name, live, keep).await,
            None => Captured {
                bytes: Vec::new(),
                dropped: 0,
            },
        }
    })
}

/// A stream's kept bytes as text (invalid UTF-8 replaced, valid text not copied), and how
/// many bytes came before them.
fn text(c: Option<Captured>) -> (String, u64) {
    let Some(c) = c else {
        return (String::new(), 0);
    };
    let s = match String::from_utf8(c.bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    (s, c.dropped)
}

/// True when the master connection of `host` answers `ssh -O check`.
fn master_answers(opts: &[String], host: &str) -> bool {
    Command::new("ssh")
        .args(opts)
        .args(["-O", "check", "--", host])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_before_the_key_exchange_is_tried_again_a_refusal_is_not() {
        assert!(dropped_before_kex(
            "kex_exchange_identification: read: Connection reset by peer\n"
        ));
        assert!(dropped_before_kex(
            "kex_exchange_identification: Connection closed by remote host\nConnection closed by 10.0.0.1 port 22\n"
        ));
        assert!(!dropped_before_kex(
            "root@web1: Permission denied (publickey).\n"
        ));
        assert!(!dropped_before_kex("Host key verification failed.\n"));
        assert!(!dropped_before_kex(
            "Connection closed by authenticating user root 10.0.0.1 port 22 [preauth]\n"
        ));
        assert!(!dropped_before_kex(
            "ssh: connect to host web1 port 22: Connection refused\n"
        ));
    }

    #[test]
    fn explains_ssh_failures() {
        let e = explain("web1", "prod", "web1: Permission denied (publickey).\n");
        assert!(
            e.contains("web1") && e.contains("refused the key") && e.contains("identity"),
            "{e}"
        );
        let e = explain("web2", "prod", "No ED25519 host key is known for web2 and you have requested strict checking.\nHost key verification failed.\n");
        assert!(
            e.contains("web2") && e.contains("not in known_hosts") && e.contains("accept-new"),
            "{e}"
        );
        let e = explain(
            "web3",
            "prod",
            "ssh: connect to host 10.0.0.3 port 22: Connection refused\n",
        );
        assert!(
            e.contains("web3") && e.contains("host down or unreachable"),
            "{e}"
        );
        assert_eq!(
            lost_connection("out\nTimeout, server not responding.\n").as_deref(),
            Some("Timeout, server not responding.")
        );
        assert_eq!(lost_connection("exit 255 from the app\n"), None);
        let e = explain("web4", "prod", "");
        assert!(
            e.contains("web4") && e.contains("ssh printed nothing"),
            "{e}"
        );
    }
}

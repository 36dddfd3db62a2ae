//! Background processes started by `spawn()`: a handle per process, output in a log file
//! in a private folder, and a registry that stops every one of them when the run ends,
//! however it ends, except the ones started with `detach: true` on purpose.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::{display_argv, kill_group, prepare, ProcessError};

/// The grace period between SIGTERM and SIGKILL when stopping a background process.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A process running in the background.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    pub display: String,
    pub log: PathBuf,
    child: Mutex<Child>,
    exit: Mutex<Option<String>>,
}

impl Spawned {
    /// Returns true while the process has not exited.
    pub fn alive(&self) -> bool {
        self.poll().is_none()
    }

    /// Returns how the process ended (`exit code 1`, `signal 15`), or `None` while it runs.
    pub fn poll(&self) -> Option<String> {
        if let Ok(exit) = self.exit.lock() {
            if exit.is_some() {
                return exit.clone();
            }
        }
        let status = self.child.lock().ok()?.try_wait().ok()??;
        let text = describe_status(status);
        if let Ok(mut exit) = self.exit.lock() {
            *exit = Some(text.clone());
        }
        Some(text)
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`. Returns how it ended.
    pub fn stop(&self, grace: Duration) -> String {
        if let Some(done) = self.poll() {
            kill_group(self.pid, libc::SIGKILL);
            return done;
        }
        kill_group(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(done) = self.poll() {
                kill_group(self.pid, libc::SIGKILL);
                return done;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_group(self.pid, libc::SIGKILL);
        if let Ok(mut child) = self.child.lock() {
            let _ = child.wait();
        }
        self.poll().unwrap_or_else(|| "killed".into())
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "exited".into(),
    }
}

/// A process started with `detach: true`, as the run's record lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detached {
    pub pid: u32,
    pub name: String,
    pub command: String,
    pub log: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfile: Option<String>,
}

/// Every background process of a run.
#[derive(Debug, Default)]
pub struct Registry {
    procs: Mutex<Vec<Arc<Spawned>>>,
    detached: Mutex<Vec<(Arc<Spawned>, Detached)>>,
    /// Processes a command left running on purpose (`exec(.., #{ leave_running: true })`):
    /// (pid, session id, record).
    kept: Mutex<Vec<(i32, i32, Detached)>>,
    counter: Mutex<u32>,
    /// The run's private log folder, made on first use (mode 0700, unpredictable name).
    dir: Mutex<Option<PathBuf>>,
    /// When exited orphans were last reaped.
    last_reap: Mutex<Option<Instant>>,
}

/// What to start in the background.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub log: Option<PathBuf>,
    /// Outlive the run: own session, no stop at the end of the run.
    pub detach: bool,
    /// A name for the record (detached processes); the program's name by default.
    pub name: Option<String>,
    /// Where to write the pid (atomically), for `process::alive` and `process::stop`.
    pub pidfile: Option<PathBuf>,
}

/// Creates a private folder `base/deployer-XXXXXX` (mode 0700, a name nobody can guess or
/// create first, as mkdtemp(3) does).
pub fn private_dir(base: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let template = base.join("deployer-XXXXXX");
    let mut bytes = std::ffi::CString::new(template.as_os_str().as_bytes())
        .map_err(std::io::Error::other)?
        .into_bytes_with_nul();
    // SAFETY: `bytes` is a NUL-terminated, writable template that outlives the call.
    let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast::<libc::c_char>()) };
    if made.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    bytes.pop();
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// Opens a log file for writing without following a symlink at its last component, with
/// mode 0600 when it is created. `fresh` demands a new file (O_EXCL); `append` keeps what
/// an existing file holds.
pub fn open_log(path: &Path, fresh: bool, append: bool) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
    if fresh {
        o.create_new(true);
    } else if append {
        o.create(true).append(true);
    } else {
        o.create(true).truncate(true);
    }
    o.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            std::io::Error::other(format!(
                "{} is a symbolic link; deployer does not follow links for log files: remove it or choose another path",
                path.display()
            ))
        } else {
            std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
        }
    })
}

/// Writes `pid` to `path` atomically (a new file beside it, then a rename), so a reader
/// never sees a partial pid file.
pub fn write_pidfile(path: &Path, pid: u32) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pid".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = open_log(&tmp, true, false)?;
    f.write_all(format!("{pid}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl Registry {
    /// Returns the run's private log folder, creating it under `base` on first use.
    fn log_dir(&self, base: &Path) -> std::io::Result<PathBuf> {
        let mut dir = self
            .dir
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))?;
        if let Some(d) = &*dir {
            return Ok(d.clone());
        }
        std::fs::create_dir_all(base)?;
        let made = private_dir(base)?;
        *dir = Some(made.clone());
        Ok(made)
    }

    /// Starts a process with stdout and stderr in a log file: in its own group (stopped at
    /// the end of the run), or with `detach` in its own session (left running, recorded).
    /// Logs without a path given go to a private folder under `base`.
    pub fn spawn(&self, spec: &SpawnSpec, base: &Path) -> Result<Arc<Spawned>, ProcessError> {
        let program = spec.argv.first().ok_or(ProcessError::Empty)?.clone();
        if let Some(cwd) = &spec.cwd {
            if !cwd.is_dir() {
                return Err(ProcessError::BadCwd {
                    path: cwd.display().to_string(),
                });
            }
        }
        let io_err = |source| ProcessError::Spawn {
            program: program.clone(),
            source,
        };
        let base_name = Path::new(&program)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".into());
        let (log, fresh) = match &spec.log {
            Some(p) => (p.clone(), false),
            None => {
                let n = {
                    let mut c = self.counter.lock().map_err(|_| spawn_err(&program))?;
                    *c += 1;
                    *c
                };
                (
                    self.log_dir(base)
                        .map_err(io_err)?
                        .join(format!("{n:02}-{base_name}.log")),
                    true,
                )
            }
        };
        if let Some(parent) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let file = open_log(&log, fresh, spec.detach).map_err(io_err)?;
        let file2 = file.try_clone().map_err(io_err)?;
        let mut cmd = Command::new(&program);
        cmd.args(&spec.argv[1..])
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(file2));
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        if spec.detach {
            use std::os::unix::process::CommandExt;
            // SAFETY: setsid is async-signal-safe; a new session has no controlling
            // terminal, so a closed terminal (SIGHUP) or Ctrl-C does not reach it.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        } else {
            prepare(&mut cmd);
        }
        let child = cmd
            .spawn()
            .map_err(|source| ProcessError::spawning(&program, source))?;
        let pid = child.id();
        let spawned = Arc::new(Spawned {
            pid,
            display: display_argv(&spec.argv),
            log: log.clone(),
            child: Mutex::new(child),
            exit: Mutex::new(None),
        });
        if spec.detach {
            if let Some(pidfile) = &spec.pidfile {
                if let Err(e) = write_pidfile(pidfile, pid) {
                    spawned.stop(Duration::from_secs(1));
                    return Err(ProcessError::Spawn {
                        program,
                        source: std::io::Error::other(format!(
                            "cannot write the pid file {}: {e} (the process was stopped)",
                            pidfile.display()
                        )),
                    });
                }
            }
            let record = Detached {
                pid,
                name: spec.name.clone().unwrap_or(base_name),
                command: spawned.display.clone(),
                log: log.display().to_string(),
                pidfile: spec.pidfile.as_ref().map(|p| p.display().to_string()),
            };
            if let Ok(mut d) = self.detached.lock() {
                d.push((spawned.clone(), record));
            }
        } else if let Ok(mut procs) = self.procs.lock() {
            procs.push(spawned.clone());
        }
        Ok(spawned)
    }

    /// Reaps orphans that exited since the last time (at most once a second). Called by the
    /// script thread before it starts a command, when no child is half-registered.
    pub fn reap_exited_orphans(&self) {
        if let Ok(mut last) = self.last_reap.lock() {
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut keep = self.tracked_pids();
        keep.extend(super::process::running_pids());
        super::reaper::reap_exited_orphans(&keep);
    }

    /// Returns the processes started with `detach: true` and those a command left running
    /// on purpose, for the run's record.
    pub fn detached(&self) -> Vec<Detached> {
        let mut all: Vec<Detached> = self
            .detached
            .lock()
            .map(|d| d.iter().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default();
        if let Ok(k) = self.kept.lock() {
            all.extend(k.iter().map(|(_, _, r)| r.clone()));
        }
        all
    }

    /// Marks every leftover child of deployer that is not tracked (the background processes
    /// the command `display` just left, such as a daemon it started) as left running on
    /// purpose: the end-of-run sweep spares them and their sessions. Returns them.
    pub fn keep_leftovers(&self, display: &str) -> Vec<Detached> {
        let me = std::process::id() as i32;
        let mut skip = self.tracked_pids();
        skip.extend(super::process::running_pids());
        let sessions = self.detached_pids();
        let found: Vec<(i32, i32, Detached)> = super::reaper::children_of(me)
            .into_iter()
            .filter(|p| p.state != 'Z' && !skip.contains(&p.pid) && !sessions.contains(&p.sid))
            .map(|p| {
                let record = Detached {
                    pid: p.pid as u32,
                    name: format!("left running by `{display}`"),
                    command: p.command.clone(),
                    log: String::new(),
                    pidfile: None,
                };
                // A process still in deployer's session (not yet in its own) is kept by
                // its pid alone: sparing deployer's session would spare every leftover.
                let sid = if Some(p.sid) == super::reaper::own_session() {
                    p.pid
                } else {
                    p.sid
                };
                (p.pid, sid, record)
            })
            .collect();
        let out = found.iter().map(|(_, _, r)| r.clone()).collect();
        if let Ok(mut k) = self.kept.lock() {
            k.extend(found);
        }
        out
    }

    /// Returns the pids this registry tracks itself (running or detached), which a sweep of
    /// leftovers must leave alone.
    pub fn tracked_pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .procs
            .lock()
            .map(|p| p.iter().map(|s| s.pid as i32).collect())
            .unwrap_or_default();
        pids.extend(self.detached_pids());
        if let Ok(k) = self.kept.lock() {
            pids.extend(k.iter().map(|(pid, _, _)| *pid));
        }
        pids
    }

    /// Returns the sessions left running on purpose: each detached process leads its own,
    /// and processes a command left running keep theirs.
    pub fn detached_pids(&self) -> Vec<i32> {
        let mut sids: Vec<i32> = self
            .detached
            .lock()
            .map(|d| d.iter().map(|(s, _)| s.pid as i32).collect())
            .unwrap_or_default();
        if let Ok(k) = self.kept.lock() {
            sids.extend(k.iter().map(|(_, sid, _)| *sid));
        }
        sids
    }

    /// Stops every process still running: all get SIGTERM at once, then SIGKILL after
    /// `grace`. Returns the (display, outcome) of each one that had to be stopped.
    /// Detached processes are left running.
    pub fn stop_all(&self, grace: Duration) -> Vec<(String, String)> {
        let procs: Vec<Arc<Spawned>> = match self.procs.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Vec::new(),
        };
        let running: Vec<&Arc<Spawned>> = procs.iter().filter(|p| p.alive()).collect();
        for p in &running {
            kill_group(p.pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && running.iter().any(|p| p.alive()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut stopped = Vec::new();
        for p in procs.iter() {
            // The group may hold children of a process that already exited.
            kill_group(p.pid, libc::SIGKILL);
        }
        for p in running {
            let outcome = p.stop(Duration::ZERO);
            stopped.push((p.display.clone(), outcome));
        }
        stopped
    }

    /// Removes the private log folder (at the end of the run, once its processes stopped).
    pub fn remove_log_dir(&self) {
        if let Some(dir) = self.dir.lock().ok().and_then(|mut d| d.take()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// How [`stop_pid`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Nothing ran under that pid.
    NotRunning,
    /// It exited within the grace period after SIGTERM.
    Terminated(Duration),
    /// It ignored SIGTERM for the whole grace period and was killed (SIGKILL).
    Killed,
}

/// Stops the process `pid` (and its whole group when it leads one, as a detached service
/// does): SIGTERM, up to `grace` for it to exit, then SIGKILL. Refuses pids that are not a
/// plain process of some other program (0, 1, negative, deployer itself).
pub fn stop_pid(pid: i32, grace: Duration) -> Result<StopOutcome, String> {
    let me = std::process::id() as i32;
    if pid <= 1 || pid == me {
        return Err(format!(
            "refusing to stop pid {pid}: it is {}",
            if pid == me {
                "deployer itself"
            } else {
                "not a single process (0, 1 and negative pids mean groups or init)"
            }
        ));
    }
    if !super::reaper::pid_running(pid) {
        return Ok(StopOutcome::NotRunning);
    }
    // SAFETY: getpgid/kill/killpg have no memory effects; a stale pid yields ESRCH.
    let leads_group = unsafe { libc::getpgid(pid) } == pid;
    let send = |sig: i32| unsafe {
        if leads_group {
            libc::killpg(pid, sig);
        } else {
            libc::kill(pid, sig);
        }
    };
    let started = Instant::now();
    send(libc::SIGTERM);
    while started.elapsed() < grace {
        if !super::reaper::pid_running(pid) {
            return Ok(StopOutcome::Terminated(started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !super::reaper::pid_running(pid) {
        return Ok(StopOutcome::Terminated(started.elapsed()));
    }
    send(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while super::reaper::pid_running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(StopOutcome::Killed)
}

/// Reads a pid file: `Ok(None)` when it does not exist; an error naming the file when it
/// cannot be read or does not hold a process id.
pub fn read_pidfile(path: &Path) -> Result<Option<i32>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the pid file {}: {e}", path.display())),
    };
    let first = text.lines().next().unwrap_or_default().trim();
    match first.parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(Some(pid)),
        _ => Err(format!(
            "the pid file {} holds {first:?}, not a process id; remove it if it is stale",
            path.display()
        )),
    }
}

/// Returns the last `lines` non-empty lines of a log file, reading at most its last 64 KiB.
pub fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.take(64 * 1024).read_to_end(&mut buf);
    super::process::last_lines(&String::from_utf8_lossy(&buf), lines)
}

fn spawn_err(program: &str) -> ProcessError {
    ProcessError::Spawn {
        program: program.to_string(),
        source: std::io::Error::other("internal lock poisoned"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stop_pid_refuses_groups_init_and_itself() {
        for pid in [0, 1, -1, std::process::id() as i32] {
            assert!(stop_pid(pid, Duration::ZERO).is_err(), "{pid}");
        }
    }

    #[test]
    fn private_dirs_are_0700_and_unpredictable() {
        let base = std::env::temp_dir();
        let a = private_dir(&base).unwrap();
        let b = private_dir(&base).unwrap();
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = std::fs::remove_dir(&a);
        let _ = std::fs::remove_dir(&b);
    }

    #[test]
    fn logs_refuse_symlinks_and_are_0600() {
        let dir = private_dir(&std::env::temp_dir()).unwrap();
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_log(&link, false, false).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let log = dir.join("new.log");
        open_log(&log, true, false).unwrap();
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(open_log(&log, true, false).is_err(), "O_EXCL");
        write_pidfile(&dir.join("app.pid"), 4242).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("app.pid")).unwrap(),
            "4242\n"
        );
        assert_eq!(read_pidfile(&dir.join("app.pid")), Ok(Some(4242)));
        assert_eq!(read_pidfile(&dir.join("none.pid")), Ok(None));
        std::fs::write(dir.join("bad.pid"), "x\n").unwrap();
        assert!(read_pidfile(&dir.join("bad.pid"))
            .unwrap_err()
            .contains("not a process id"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

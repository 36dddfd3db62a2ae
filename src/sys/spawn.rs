//! Background processes started by `spawn()`: a handle per process, output in a log file,
//! and a registry that stops every one of them when the run ends, however it ends.

use std::fs::File;
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

/// Every background process of a run.
#[derive(Debug, Default)]
pub struct Registry {
    procs: Mutex<Vec<Arc<Spawned>>>,
    counter: Mutex<u32>,
}

/// What to start in the background.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub log: Option<PathBuf>,
}

impl Registry {
    /// Starts a process in its own group with stdout and stderr appended to a log file.
    pub fn spawn(&self, spec: &SpawnSpec, log_dir: &Path) -> Result<Arc<Spawned>, ProcessError> {
        let program = spec.argv.first().ok_or(ProcessError::Empty)?.clone();
        if let Some(cwd) = &spec.cwd {
            if !cwd.is_dir() {
                return Err(ProcessError::BadCwd {
                    path: cwd.display().to_string(),
                });
            }
        }
        let log = match &spec.log {
            Some(p) => p.clone(),
            None => {
                let n = {
                    let mut c = self.counter.lock().map_err(|_| spawn_err(&program))?;
                    *c += 1;
                    *c
                };
                let base = Path::new(&program)
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "process".into());
                log_dir.join(format!("{n:02}-{base}.log"))
            }
        };
        let io_err = |source| ProcessError::Spawn {
            program: program.clone(),
            source,
        };
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let file = File::create(&log).map_err(io_err)?;
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
        prepare(&mut cmd);
        let child = cmd.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ProcessError::NotFound {
                program: program.clone(),
            },
            _ => ProcessError::Spawn {
                program: program.clone(),
                source,
            },
        })?;
        let spawned = Arc::new(Spawned {
            pid: child.id(),
            display: display_argv(&spec.argv),
            log,
            child: Mutex::new(child),
            exit: Mutex::new(None),
        });
        if let Ok(mut procs) = self.procs.lock() {
            procs.push(spawned.clone());
        }
        Ok(spawned)
    }

    /// Stops every process still running: all get SIGTERM at once, then SIGKILL after
    /// `grace`. Returns the (display, outcome) of each one that had to be stopped.
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
}

fn spawn_err(program: &str) -> ProcessError {
    ProcessError::Spawn {
        program: program.to_string(),
        source: std::io::Error::other("internal lock poisoned"),
    }
}

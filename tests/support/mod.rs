//! Integration-test support: run the real `deployer` binary in a temp dir and check its output.
#![allow(dead_code, clippy::unwrap_used)] // test code: panicking is the error report

pub mod fake;
pub mod golden;
pub mod server;
pub mod sshnet;
pub mod tmux;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod ports;
// Not every test binary that includes `support` binds ports.
#[allow(unused_imports)]
pub use ports::free_port;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_deployer");

/// The pids of every deployer [`Test::spawn`] started in this test process: checks for
/// leftovers (such as ssh control folders named by pid) look at these runs only, not at
/// other processes on the machine.
static SPAWNED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// True when [`Test::spawn`] started a deployer with this pid in this test process.
pub fn spawned_here(pid: i32) -> bool {
    SPAWNED.lock().map(|p| p.contains(&pid)).unwrap_or(false)
}

/// A unique directory under `std::env::temp_dir()`, removed on drop
/// unless `DEPLOYER_KEEP_TEST_DIRS` is set (then its path is printed).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, empty directory.
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let dir = base.join(format!("deployer-test-{}-{n}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return TempDir(dir.canonicalize().unwrap()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("creating {}: {e}", dir.display()),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("DEPLOYER_KEEP_TEST_DIRS").is_some() {
            eprintln!("keeping test dir {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Builder for one run of the binary, in the style of casey/just's `tests/test.rs`. A
/// clone shares the temp dir (several runs in one project).
#[derive(Clone)]
pub struct Test {
    dir: Arc<TempDir>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    path_prepend: Vec<PathBuf>,
    stdin: Option<String>,
    timeout: Duration,
}

impl Default for Test {
    fn default() -> Self {
        Test::new()
    }
}

impl Test {
    /// A test in a fresh temp dir, with no args, `NO_COLOR=1`, no GitHub Actions variables,
    /// no stdin and a 60 s run timeout.
    pub fn new() -> Test {
        Test {
            dir: Arc::new(TempDir::new()),
            args: Vec::new(),
            // A test that wants GitHub Actions output sets these itself.
            env: vec![
                ("NO_COLOR".into(), Some("1".into())),
                ("GITHUB_ACTIONS".into(), None),
                ("GITHUB_OUTPUT".into(), None),
                ("GITHUB_STEP_SUMMARY".into(), None),
            ],
            path_prepend: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// The temp dir (the child's working directory).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `rel` inside the temp dir, creating parent directories.
    pub fn file(self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Test {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self
    }

    /// Writes `deploy.rhai`.
    pub fn script(self, contents: &str) -> Test {
        self.file("deploy.rhai", contents)
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Test {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Test {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Test {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Test {
        self.env.push((key.into(), None));
        self
    }

    /// Puts `dir` in front of the child's `PATH` (later calls go further in front).
    pub fn path_prepend(mut self, dir: impl Into<PathBuf>) -> Test {
        self.path_prepend.insert(0, dir.into());
        self
    }

    /// Feeds `input` on stdin (default: no stdin).
    pub fn stdin(mut self, input: impl Into<String>) -> Test {
        self.stdin = Some(input.into());
        self
    }

    /// How long [`Test::run`] waits before killing the child and panicking (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Test {
        self.timeout = timeout;
        self
    }

    /// Runs the binary to completion in the temp dir.
    pub fn run(&self) -> Output {
        self.spawn().wait(self.timeout)
    }

    /// Starts the binary in the temp dir (same process group as the test) and returns at once.
    pub fn spawn(&self) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args).current_dir(self.path());
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if !self.path_prepend.is_empty() {
            let set = self
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone());
            let old = set.unwrap_or_else(|| std::env::var_os("PATH"));
            let old = old.iter().flat_map(std::env::split_paths);
            cmd.env(
                "PATH",
                std::env::join_paths(self.path_prepend.iter().cloned().chain(old)).unwrap(),
            );
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
        if let Ok(mut pids) = SPAWNED.lock() {
            pids.push(child.id() as i32);
        }
        if let Some(input) = self.stdin.clone() {
            let mut pipe = child.stdin.take().unwrap();
            std::thread::spawn(move || pipe.write_all(input.as_bytes()));
        }
        let stdout = Capture::start(child.stdout.take().unwrap());
        let stderr = Capture::start(child.stderr.take().unwrap());
        Running {
            child: KillOnDrop(child),
            stdout,
            stderr,
            dir: self.dir.clone(),
        }
    }
}

/// Collects a pipe on a background thread.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: JoinHandle<()>,
}

impl Capture {
    fn start(mut pipe: impl Read + Send + 'static) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let thread = std::thread::spawn(move || {
            let mut chunk = [0; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Capture { buf, thread }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Waits for EOF, but at most `grace`: a leftover grandchild may hold the pipe open.
    fn finish(self, grace: Duration, name: &str) -> String {
        if !wait_until(grace, || self.thread.is_finished()) {
            eprintln!(
                "note: {name} still open after the child exited (a leftover process holds it)"
            );
        }
        self.text()
    }
}

/// A child started with [`Test::spawn`]; killed if dropped before [`Running::wait`].
pub struct Running {
    child: KillOnDrop,
    stdout: Capture,
    stderr: Capture,
    dir: Arc<TempDir>,
}

impl Running {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    /// The temp dir the child runs in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stderr captured so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// Stdout captured so far.
    pub fn stdout_so_far(&self) -> String {
        self.stdout.text()
    }

    /// Returns once stderr contains `text`; panics (showing what was seen) on timeout or early EOF.
    #[track_caller]
    pub fn wait_for_stderr(&self, text: &str, timeout: Duration) -> &Running {
        let found = wait_until(timeout, || {
            self.stderr.text().contains(text) || self.stderr.thread.is_finished()
        });
        let seen = self.stderr.text();
        if !seen.contains(text) {
            let why = if found { "stderr closed" } else { "timed out" };
            panic!("{why} waiting for {text:?} on stderr after {timeout:?}\n--- stderr ---\n{seen}\n--- stdout ---\n{}", self.stdout.text());
        }
        self
    }

    /// Sends SIGINT to the child (only the child, not its process group).
    pub fn interrupt(&self) -> &Running {
        self.signal(libc::SIGINT)
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) -> &Running {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
        self
    }

    /// Waits for exit; on timeout kills the child and panics with its output so far.
    #[track_caller]
    pub fn wait(self, timeout: Duration) -> Output {
        let Running {
            mut child,
            stdout,
            stderr,
            dir,
        } = self;
        let child = &mut child.0;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "{BIN} did not exit within {timeout:?}; killed ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let grace = Duration::from_secs(1);
        Output {
            status,
            stdout: stdout.finish(grace, "stdout"),
            stderr: stderr.finish(grace, "stderr"),
            dir,
        }
    }
}

/// Kills and reaps the child on drop (a no-op once it has been waited for).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Result of a run; keeps the temp dir alive so files can be inspected afterwards.
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Stdout, lossy UTF-8.
    pub stdout: String,
    /// Stderr, lossy UTF-8.
    pub stderr: String,
    dir: Arc<TempDir>,
}

impl Output {
    /// Exit code; death by signal N gives 128 + N.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    /// The temp dir the child ran in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    #[track_caller]
    fn check(&self, ok: bool, what: &str) -> &Output {
        if !ok {
            panic!(
                "{what}\n--- code: {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.code(),
                self.stdout,
                self.stderr
            );
        }
        self
    }

    /// Panics unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Output {
        self.check(
            self.code() == code,
            &format!("expected exit code {code}, got {}", self.code()),
        )
    }

    /// Panics unless stdout contains `text`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, text: &str) -> &Output {
        self.check(
            self.stdout.contains(text),
            &format!("stdout does not contain {text:?}"),
        )
    }

    /// Panics if stdout contains `text`.
    #[track_caller]
    pub fn assert_stdout_not_contains(&self, text: &str) -> &Output {
        self.check(
            !self.stdout.contains(text),
            &format!("stdout contains {text:?}"),
        )
    }

    /// Panics unless stderr contains `text`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) -> &Output {
        self.check(
            self.stderr.contains(text),
            &format!("stderr does not contain {text:?}"),
        )
    }

    /// Panics if stderr contains `text`.
    #[track_caller]
    pub fn assert_stderr_not_contains(&self, text: &str) -> &Output {
        self.check(
            !self.stderr.contains(text),
            &format!("stderr contains {text:?}"),
        )
    }
}

/// Whether the tests run as root (some need it: file owners, containers, namespaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Every file and folder under `dir`, recursively, sorted (nothing when `dir` is missing).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The binary as a command in `dir` with `args`, `NO_COLOR=1`, no stdin and piped stdout and
/// stderr, for tests that read its output their own way.
pub fn deployer_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the binary in `dir` (any folder, not only a [`Test`]'s) with `args` and `NO_COLOR=1`;
/// `env` adds variables (an empty value removes one). Returns the exit code, stdout and
/// stderr; kills the child and panics after 300 s.
#[track_caller]
pub fn deployer_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = deployer_command(dir, args);
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
    let stdout = Capture::start(child.stdout.take().unwrap());
    let stderr = Capture::start(child.stderr.take().unwrap());
    let mut child = KillOnDrop(child);
    let timeout = Duration::from_secs(300);
    if !wait_until(timeout, || matches!(child.0.try_wait(), Ok(Some(_)))) {
        panic!(
            "deployer {args:?} in {} did not finish in {timeout:?}\n--- stderr ---\n{}",
            dir.display(),
            stderr.text()
        );
    }
    let status = child.0.wait().unwrap();
    let grace = Duration::from_secs(1);
    (
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout.finish(grace, "stdout"),
        stderr.finish(grace, "stderr"),
    )
}

/// Whether missing tools fail the tests that need them rather than skip them (`CI=true`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says `test` was skipped because `why` (a missing tool, no root); under `CI=true` it
/// panics instead, so a machine without what the test needs cannot pass in CI.
#[track_caller]
pub fn skip(test: &str, why: &str) {
    assert!(
        !ci(),
        "{test}: {why}; CI=true requires it (.ci/run installs it)"
    );
    eprintln!("SKIPPED {test}: {why} (set CI=true to make this a failure)");
}

/// Writes `#!/bin/sh` + `body` to `dir/name` with mode 0755 and returns its path.
pub fn write_executable(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Whether a process with `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // An exited but unreaped process (e.g. an orphan when pid 1 does not reap) still answers kill(0).
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    exists && !zombie
}

/// Polls `cond` every 10 ms until it is true (returns true) or `timeout` passes (returns false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs git in `dir` with no global or system configuration (test setup); panics with its
/// output on failure; returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Returns the `report.json` of the run recorded last in `dir/.deployer` (the history's last
/// line; the newest run folder when there is no history).
pub fn newest_report(dir: &Path) -> serde_json::Value {
    // The history's last line names the run recorded last: run ids have a one-second
    // resolution and a random tail, so two runs in one second do not sort by their folders.
    let last = std::fs::read_to_string(dir.join(".deployer/history.jsonl"))
        .ok()
        .and_then(|h| {
            let line = h.lines().rev().find(|l| !l.trim().is_empty())?.to_string();
            let entry: serde_json::Value = serde_json::from_str(&line).ok()?;
            std::fs::read_to_string(entry["report"].as_str()?).ok()
        });
    if let Some(text) = last {
        return serde_json::from_str(&text).unwrap();
    }
    let runs = dir.join(".deployer/runs");
    let newest = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("no runs in {}: {e}", runs.display()))
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap_or_else(|| panic!("no run in {}", runs.display()));
    serde_json::from_str(&std::fs::read_to_string(newest.join("report.json")).unwrap()).unwrap()
}

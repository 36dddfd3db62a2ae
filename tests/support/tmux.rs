//! A program running in a pseudo-terminal: a tmux pane on a private tmux server, driven
//! with send-keys and read with capture-pane. The pane runs without `CI` in its
//! environment, so the program behaves as on a person's terminal wherever the test runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{skip, wait_until, TempDir, BIN};

/// How long a wait for the screen lasts before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A program running in a tmux pane on a private tmux server.
pub struct Tmux {
    socket: PathBuf,
    _dir: TempDir,
    pub dir: PathBuf,
}

impl Tmux {
    /// Starts `deployer ARGS` in a 160x30 pane for `test`; `None` (test skipped, or failed
    /// with `CI=true`) when tmux is missing. The pane closes when deployer exits.
    #[track_caller]
    pub fn start(test: &str, args: &str) -> Option<Tmux> {
        Tmux::start_with(test, &[], &[], args, false)
    }

    /// Starts `deployer ARGS` in a 160x30 pane in a folder holding `files` (path, text),
    /// with the variables `env` added. With `keep`, the pane stays when deployer exits and
    /// shows `[exit CODE]` below its output, so the test can read the final screen.
    #[track_caller]
    pub fn start_with(
        test: &str,
        files: &[(&str, &str)],
        env: &[(&str, &str)],
        args: &str,
        keep: bool,
    ) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            skip(test, "tmux is not installed (apt-get install tmux)");
            return None;
        }
        let dir = TempDir::new();
        let path = dir.path().to_path_buf();
        for (name, text) in files {
            let file = path.join(name);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(file, text).unwrap();
        }
        let socket = path.join("tmux.sock");
        let run = format!(
            "env -u CI XDG_DATA_HOME={d}/data HOME={d} TERM=xterm {BIN} {args}",
            d = path.display()
        );
        let cmd = if keep {
            format!(
                "cd {d} && {run}; echo \"[exit $?]\"; exec sleep 600",
                d = path.display()
            )
        } else {
            format!("cd {d} && exec {run}", d = path.display())
        };
        // The private server starts with this environment, and its pane inherits it.
        let status = Command::new("tmux")
            .envs(env.iter().copied())
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "30",
            ])
            .arg(cmd)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Some(Tmux {
            socket,
            _dir: dir,
            dir: path,
        })
    }

    /// The folder the program runs in.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) {
        // tmux reads a `;` ending an argument as its own command separator.
        let text = match text.strip_suffix(';') {
            Some(t) => format!("{t}\\;"),
            None => text.to_string(),
        };
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", "0", "-l", &text])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Types an input, presses Enter and waits for the next prompt (keys typed while an
    /// evaluation runs may be lost, as in most REPLs).
    #[track_caller]
    pub fn submit(&self, text: &str) {
        let before = self.screen().matches("deployer>").count();
        self.type_text(text);
        self.keys(&["Enter"]);
        self.wait_count("deployer>", before + 1);
    }

    /// The visible screen as text.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[track_caller]
    pub fn wait_for(&self, text: &str) {
        if !wait_until(PATIENCE, || self.screen().contains(text)) {
            panic!(
                "waited {PATIENCE:?} for {text:?} on the screen:\n{}",
                self.screen()
            );
        }
    }

    /// Waits until the screen shows `text` `n` times.
    #[track_caller]
    pub fn wait_count(&self, text: &str, n: usize) {
        if !wait_until(PATIENCE, || self.screen().matches(text).count() >= n) {
            panic!(
                "waited {PATIENCE:?} for {text:?} x{n} on the screen:\n{}",
                self.screen()
            );
        }
    }

    /// Waits until a screen satisfies `cond` and returns that screen.
    #[track_caller]
    pub fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut seen = String::new();
        if wait_until(PATIENCE, || {
            seen = self.screen();
            cond(&seen)
        }) {
            return seen;
        }
        panic!("waited {PATIENCE:?} for {what} on the screen:\n{seen}");
    }

    pub fn alive(&self) -> bool {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["has-session", "-t", "0"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

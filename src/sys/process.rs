//! Running a child process to completion: no shell, its own process group, a timeout,
//! cancellation that kills the whole group, output captured (and optionally streamed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::core::duration::format_duration;

/// Captured output beyond this many bytes per stream keeps only the most recent part.
pub const MAX_CAPTURE: usize = 16 * 1024 * 1024;

/// How long a process group gets between SIGTERM and SIGKILL after a timeout.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// How long a process group gets between SIGTERM and SIGKILL after Ctrl-C: short, so the
/// run stops within a second.
pub const CANCEL_GRACE: Duration = Duration::from_millis(300);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub stdin: Option<Vec<u8>>,
}

/// How a finished process ended and what it wrote.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The exit code, or `None` when a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended the process, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    /// True when a background process kept the output pipes open after the command ended.
    pub pipes_left_open: bool,
}

/// A process that could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("empty command: give at least the program name, such as [\"git\", \"status\"]")]
    Empty,
    #[error("command not found: {program} (is it installed and on PATH?)")]
    NotFound { program: String },
    #[error("working directory does not exist: {path}")]
    BadCwd { path: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("command timed out after {}: {display} (its process group was killed)", format_duration(*after))]
    Timeout {
        display: String,
        after: Duration,
        partial: Box<CommandOutput>,
    },
    #[error("cancelled while running: {display} (its process group was killed)")]
    Cancelled { display: String },
}

/// Quotes argv for display the way a shell would accept it.
pub fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends `signal` to every process of the group led by `pid`.
pub fn kill_group(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: killpg has no memory effects; a stale group id only yields ESRCH.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}

/// Sets up a child: its own process group (so Ctrl-C at the terminal reaches only us, and
/// we can kill the whole tree), and SIGTERM if deployer itself dies without cleaning up.
pub fn prepare(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// A line-oriented sink for live output (`-v`): called with (stream name, line).
pub type LineSink = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Runs a command to completion, killing its process group on timeout or cancellation.
pub async fn run(
    spec: &CommandSpec,
    cancel: &CancellationToken,
    live: Option<LineSink>,
) -> Result<CommandOutput, ProcessError> {
    let program = spec.argv.first().ok_or(ProcessError::Empty)?.clone();
    let display = display_argv(&spec.argv);
    if let Some(cwd) = &spec.cwd {
        if !cwd.is_dir() {
            return Err(ProcessError::BadCwd {
                path: cwd.display().to_string(),
            });
        }
    }
    let mut std_cmd = std::process::Command::new(&program);
    std_cmd
        .args(&spec.argv[1..])
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &spec.cwd {
        std_cmd.current_dir(cwd);
    }
    prepare(&mut std_cmd);
    let mut cmd = tokio::process::Command::from(std_cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProcessError::NotFound {
            program: program.clone(),
        },
        _ => ProcessError::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    let pid = child.id().unwrap_or(0);
    // No arguments here: they may hold a secret, and tracing output is not masked.
    tracing::debug!(pid, program = program.as_str(), "started");

    if let (Some(input), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            // A child that exits without reading its input is not an error of ours.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let out_task = child
        .stdout
        .take()
        .map(|s| tokio::spawn(capture(s, "stdout", live.clone())));
    let err_task = child
        .stderr
        .take()
        .map(|s| tokio::spawn(capture(s, "stderr", live.clone())));

    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut(Duration),
        Cancelled,
    }
    let timeout = spec.timeout;
    let end = tokio::select! {
        status = child.wait() => End::Exited(status),
        _ = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        } => End::TimedOut(timeout.unwrap_or_default()),
        _ = cancel.cancelled() => End::Cancelled,
    };

    let status = match end {
        End::Exited(status) => status.map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?,
        End::TimedOut(after) => {
            terminate(&mut child, pid, TIMEOUT_GRACE).await;
            let (stdout, stderr, _) = collect(out_task, err_task).await;
            return Err(ProcessError::Timeout {
                display,
                after,
                partial: Box::new(CommandOutput {
                    code: None,
                    signal: None,
                    stdout,
                    stderr,
                    duration: start.elapsed(),
                    pipes_left_open: false,
                }),
            });
        }
        End::Cancelled => {
            terminate(&mut child, pid, CANCEL_GRACE).await;
            return Err(ProcessError::Cancelled { display });
        }
    };
    let duration = start.elapsed();
    tracing::debug!(pid, ?status, ?duration, "exited");
    let (stdout, stderr, pipes_left_open) = collect(out_task, err_task).await;
    use std::os::unix::process::ExitStatusExt;
    Ok(CommandOutput {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        duration,
        pipes_left_open,
    })
}

/// TERM the group, give it `grace`, then KILL whatever is left of it.
async fn terminate(child: &mut tokio::process::Child, pid: u32, grace: Duration) {
    kill_group(pid, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Members of the group that outlived the leader are killed too: no orphans.
    kill_group(pid, libc::SIGKILL);
}

type Capture = tokio::task::JoinHandle<Vec<u8>>;

/// Waits for both output readers; a background process that keeps a pipe open is given
/// one second, then left alone (its output is cut there).
async fn collect(out: Option<Capture>, err: Option<Capture>) -> (String, String, bool) {
    let mut left_open = false;
    let finish = |task: Option<Capture>| {
        let task = task;
        async move {
            let Some(mut task) = task else {
                return (Vec::new(), false);
            };
            match tokio::time::timeout(Duration::from_secs(1), &mut task).await {
                Ok(Ok(bytes)) => (bytes, false),
                Ok(Err(_)) => (Vec::new(), false),
                Err(_) => {
                    task.abort();
                    (Vec::new(), true)
                }
            }
        }
    };
    let (o, e) = tokio::join!(finish(out), finish(err));
    left_open |= o.1 || e.1;
    (decode(&o.0), decode(&e.0), left_open)
}

/// Decodes output lossily and removes one final newline, as shells do for `$(...)`.
fn decode(bytes: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

async fn capture<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: &'static str,
    live: Option<LineSink>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut line_start = 0;
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(sink) = &live {
            while let Some(pos) = buf[line_start..].iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(&buf[line_start..line_start + pos]);
                sink(stream, line.trim_end_matches('\r'));
                line_start += pos + 1;
            }
        }
        if buf.len() > MAX_CAPTURE {
            let cut = buf.len() - MAX_CAPTURE;
            buf.drain(..cut);
            line_start = line_start.saturating_sub(cut);
        }
    }
    if let Some(sink) = &live {
        if line_start < buf.len() {
            sink(stream, &String::from_utf8_lossy(&buf[line_start..]));
        }
    }
    buf
}

/// Returns the last `n` non-empty lines of `text`, for error messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_display() {
        let argv: Vec<String> = ["git", "commit", "-m", "it's done", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(display_argv(&argv), r"git commit -m 'it'\''s done' ''");
    }

    #[test]
    fn decodes_lossily_and_strips_one_newline() {
        assert_eq!(decode(b"ok\n\n"), "ok\n");
        assert_eq!(decode(b"a\xffb\r\n"), "a\u{fffd}b");
    }

    #[test]
    fn keeps_last_lines() {
        assert_eq!(last_lines("a\nb\n\nc\nd\n", 2), "c\nd");
    }
}

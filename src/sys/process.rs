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

/// A line streamed live (`-v`) longer than this prints its first part and the count of the
/// rest, so a huge line without newline costs neither memory nor quadratic time.
pub const MAX_LIVE_LINE: usize = 16 * 1024;

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
    /// Bytes of stdout before the part kept (output beyond [`MAX_CAPTURE`]); 0 when whole.
    pub stdout_dropped: u64,
    /// Bytes of stderr before the part kept; 0 when whole.
    pub stderr_dropped: u64,
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

impl ProcessError {
    /// The error for a program that could not be started: `NotFound` when it is not on
    /// PATH, `Spawn` otherwise.
    pub fn spawning(program: &str, source: std::io::Error) -> ProcessError {
        match source.kind() {
            std::io::ErrorKind::NotFound => ProcessError::NotFound {
                program: program.to_string(),
            },
            _ => ProcessError::Spawn {
                program: program.to_string(),
                source,
            },
        }
    }
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

/// Process groups of the commands running now, so a second Ctrl-C can kill them at once.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn running(pid: u32, add: bool) {
    if let Ok(mut r) = RUNNING.lock() {
        if add {
            r.push(pid);
        } else {
            r.retain(|p| *p != pid);
        }
    }
}

/// Returns the pids of the commands running now (a sweep of leftovers leaves them alone).
pub fn running_pids() -> Vec<i32> {
    RUNNING
        .lock()
        .map(|r| r.iter().map(|p| *p as i32).collect())
        .unwrap_or_default()
}

/// Sends `signal` to the process group of every command running now (a second Ctrl-C
/// sends SIGKILL); returns how many groups there were.
pub fn signal_running_groups(signal: i32) -> usize {
    let groups = RUNNING.lock().map(|r| r.clone()).unwrap_or_default();
    for pid in &groups {
        kill_group(*pid, signal);
    }
    groups.len()
}

/// Sets up a child: its own process group (so Ctrl-C at the terminal reaches only us, and
/// we can kill the whole tree), and SIGTERM if deployer itself dies without cleaning up.
pub fn prepare(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    #[cfg(target_os = "linux")]
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
    let child = cmd
        .spawn()
        .map_err(|source| ProcessError::spawning(&program, source))?;
    let pid = child.id().unwrap_or(0);
    running(pid, true);
    let result = finish_run(spec, cancel, live, child, pid, display, program, start).await;
    running(pid, false);
    result
}

/// Feeds, reads and waits for a started command (see [`run`]).
#[allow(clippy::too_many_arguments)]
async fn finish_run(
    spec: &CommandSpec,
    cancel: &CancellationToken,
    live: Option<LineSink>,
    mut child: tokio::process::Child,
    pid: u32,
    display: String,
    program: String,
    start: Instant,
) -> Result<CommandOutput, ProcessError> {
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
        .map(|s| tokio::spawn(capture(s, "stdout", live.clone(), MAX_CAPTURE)));
    let err_task = child
        .stderr
        .take()
        .map(|s| tokio::spawn(capture(s, "stderr", live.clone(), MAX_CAPTURE)));

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
            let c = collect(out_task, err_task).await;
            return Err(ProcessError::Timeout {
                display,
                after,
                partial: Box::new(CommandOutput {
                    code: None,
                    signal: None,
                    stdout: c.stdout,
                    stderr: c.stderr,
                    stdout_dropped: c.stdout_dropped,
                    stderr_dropped: c.stderr_dropped,
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
    let c = collect(out_task, err_task).await;
    use std::os::unix::process::ExitStatusExt;
    Ok(CommandOutput {
        code: status.code(),
        signal: status.signal(),
        stdout: c.stdout,
        stderr: c.stderr,
        stdout_dropped: c.stdout_dropped,
        stderr_dropped: c.stderr_dropped,
        duration,
        pipes_left_open: c.left_open,
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

type Capture = tokio::task::JoinHandle<Captured>;

/// Both streams as collected.
struct Collected {
    stdout: String,
    stderr: String,
    stdout_dropped: u64,
    stderr_dropped: u64,
    left_open: bool,
}

/// Waits for both output readers; a background process that keeps a pipe open is given
/// one second, then left alone (its output is cut there).
async fn collect(out: Option<Capture>, err: Option<Capture>) -> Collected {
    let finish = |task: Option<Capture>| async move {
        let empty = || Captured {
            bytes: Vec::new(),
            dropped: 0,
        };
        let Some(mut task) = task else {
            return (empty(), false);
        };
        match tokio::time::timeout(Duration::from_secs(1), &mut task).await {
            Ok(Ok(c)) => (c, false),
            Ok(Err(_)) => (empty(), false),
            Err(_) => {
                task.abort();
                (empty(), true)
            }
        }
    };
    let ((o, o_open), (e, e_open)) = tokio::join!(finish(out), finish(err));
    Collected {
        stdout: decode(o.bytes),
        stderr: decode(e.bytes),
        stdout_dropped: o.dropped,
        stderr_dropped: e.dropped,
        left_open: o_open || e_open,
    }
}

/// Decodes output lossily and removes one final newline, as shells do for `$(...)`.
fn decode(bytes: Vec<u8>) -> String {
    // Valid UTF-8 (the usual case) keeps its buffer: no second copy of 16 MiB.
    let mut s = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    // A Rhai string is a copy the size of the capacity, not of the length.
    s.shrink_to_fit();
    s
}

/// What a reader kept of one stream: its last bytes (at most the bound it was given) and
/// how many came before them.
pub(crate) struct Captured {
    pub(crate) bytes: Vec<u8>,
    pub(crate) dropped: u64,
}

/// Reads a stream to its end in time linear in its size and memory bounded by `keep` (the
/// tail kept: [`MAX_CAPTURE`] for a command's output) plus [`MAX_LIVE_LINE`] (the line
/// being streamed to `live`). Local commands and commands on hosts (over ssh) read
/// their output with it.
pub(crate) async fn capture<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: &'static str,
    live: Option<LineSink>,
    keep: usize,
) -> Captured {
    let mut tail = Tail::new(keep);
    let mut line = LiveLine::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &chunk[..n];
        tail.push(data);
        if let Some(sink) = &live {
            line.push(data, &|text| sink(stream, text));
        }
    }
    if let Some(sink) = &live {
        line.finish(&|text| sink(stream, text));
    }
    if tail.dropped > 0 {
        // The cut may fall inside a UTF-8 sequence: start at the next character.
        while tail.bytes.front().is_some_and(|b| b & 0xC0 == 0x80) {
            tail.bytes.pop_front();
            tail.dropped += 1;
        }
    }
    Captured {
        dropped: tail.dropped,
        bytes: tail.bytes.into(),
    }
}

/// The last `max` bytes of a stream and the count of the bytes before them.
struct Tail {
    bytes: std::collections::VecDeque<u8>,
    dropped: u64,
    max: usize,
}

impl Tail {
    fn new(max: usize) -> Tail {
        Tail {
            bytes: Default::default(),
            dropped: 0,
            max,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.max {
            let skip = data.len() - self.max;
            self.dropped += skip as u64;
            &data[skip..]
        } else {
            data
        };
        let over = (self.bytes.len() + data.len()).saturating_sub(self.max);
        if over > 0 {
            self.bytes.drain(..over);
            self.dropped += over as u64;
        }
        // Grow by doubling but never past `max`: left to itself the buffer may double to
        // nearly twice that, and the string made from it (and Rhai's copy of that string)
        // would carry the spare capacity too.
        let needed = self.bytes.len() + data.len();
        if needed > self.bytes.capacity() {
            let want = (self.bytes.capacity() * 2).max(needed).min(self.max);
            self.bytes.reserve_exact(want - self.bytes.len());
        }
        self.bytes.extend(data);
    }
}

/// The line being streamed live: its first [`MAX_LIVE_LINE`] bytes and a count of the rest.
#[derive(Default)]
struct LiveLine {
    head: Vec<u8>,
    more: u64,
}

impl LiveLine {
    fn push(&mut self, data: &[u8], emit: &dyn Fn(&str)) {
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            self.add(&rest[..pos]);
            self.emit(emit);
            rest = &rest[pos + 1..];
        }
        self.add(rest);
    }

    fn add(&mut self, part: &[u8]) {
        let room = MAX_LIVE_LINE.saturating_sub(self.head.len());
        let take = room.min(part.len());
        self.head.extend_from_slice(&part[..take]);
        self.more += (part.len() - take) as u64;
    }

    fn emit(&mut self, emit: &dyn Fn(&str)) {
        let text = String::from_utf8_lossy(&self.head);
        let text = text.trim_end_matches('\r');
        if self.more > 0 {
            emit(&format!(
                "{text} [... {} more bytes of this line not shown]",
                self.more
            ));
        } else {
            emit(text);
        }
        self.head.clear();
        self.more = 0;
    }

    fn finish(&mut self, emit: &dyn Fn(&str)) {
        if !self.head.is_empty() || self.more > 0 {
            self.emit(emit);
        }
    }
}

/// Returns the last `n` non-empty lines of `text`, for error messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
        assert_eq!(decode(b"ok\n\n".to_vec()), "ok\n");
        assert_eq!(decode(b"a\xffb\r\n".to_vec()), "a\u{fffd}b");
    }

    #[test]
    fn tail_keeps_the_last_bytes_and_counts_the_rest() {
        let mut t = Tail::new(MAX_CAPTURE);
        t.push(&vec![b'a'; MAX_CAPTURE - 1]);
        t.push(b"bcd");
        assert_eq!(t.dropped, 2);
        assert_eq!(t.bytes.len(), MAX_CAPTURE);
        assert_eq!(t.bytes.back(), Some(&b'd'));
        t.push(&vec![b'z'; MAX_CAPTURE + 5]);
        assert_eq!(t.dropped, 2 + MAX_CAPTURE as u64 + 5);
        assert!(t.bytes.iter().all(|b| *b == b'z'));
    }

    #[test]
    fn the_tail_never_holds_more_room_than_max_capture() {
        // Odd chunk sizes (a pipe gives what the writer wrote) used to let the buffer
        // double to nearly twice MAX_CAPTURE.
        for first in [1usize, 34, 3000, 4096, 65_535] {
            let mut t = Tail::new(MAX_CAPTURE);
            t.push(&vec![b'a'; first]);
            let mut total = first;
            while total < MAX_CAPTURE + 200_000 {
                t.push(&[b'b'; 65_536]);
                total += 65_536;
            }
            assert!(
                t.bytes.capacity() <= MAX_CAPTURE,
                "first chunk {first}: capacity {}",
                t.bytes.capacity()
            );
            let s = decode(Vec::from(t.bytes));
            assert_eq!(s.capacity(), s.len(), "first chunk {first}");
        }
    }

    #[test]
    fn live_lines_are_capped_and_split_across_chunks() {
        let seen = std::sync::Mutex::new(Vec::<String>::new());
        let emit = |s: &str| seen.lock().unwrap().push(s.to_string());
        let mut l = LiveLine::default();
        l.push(b"one\r\ntw", &emit);
        l.push(b"o\n", &emit);
        l.push(&vec![b'x'; MAX_LIVE_LINE + 10], &emit);
        l.push(b"yy", &emit);
        l.finish(&emit);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen[0], "one");
        assert_eq!(seen[1], "two");
        assert_eq!(seen.len(), 3);
        assert!(seen[2].ends_with("[... 12 more bytes of this line not shown]"));
        assert!(seen[2].len() < MAX_LIVE_LINE + 100);
    }

    #[test]
    fn keeps_last_lines() {
        assert_eq!(last_lines("a\nb\n\nc\nd\n", 2), "c\nd");
    }
}

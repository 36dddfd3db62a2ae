//! Orphans: processes that children started and left behind (`sh -c "sleep 300 &"`, a
//! daemon that double-forks with `setsid`). On Linux deployer makes itself a child
//! subreaper, so such orphans are re-parented to it instead of to init; at the end of the
//! run it finds them (every process whose parent is deployer and that it does not track
//! itself) and stops them. Elsewhere this is a no-op: orphans are not guaranteed to stop.

use std::time::{Duration, Instant};

/// How long leftover processes get between SIGTERM and SIGKILL at the end of a run.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// Makes this process a child subreaper (Linux): orphaned descendants come back to it.
/// Returns false where that is not possible.
pub fn become_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// A process found by a scan of `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub sid: i32,
    /// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, ...).
    pub state: char,
    /// The command line, arguments separated by spaces (the name in brackets if empty).
    pub command: String,
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid pgrp session ...`; `comm` may hold
/// spaces and parentheses, so the fields are read after the last `)`.
pub fn parse_stat(stat: &str) -> Option<(i32, String, char, i32, i32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat[..open].trim().parse().ok()?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let _pgrp: i32 = rest.next()?.parse().ok()?;
    let sid = rest.next()?.parse().ok()?;
    Some((pid, comm, state, ppid, sid))
}

/// Reads one process from `/proc`; `None` when it is gone or unreadable.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (pid, comm, state, ppid, sid) = parse_stat(&stat)?;
    // A process in the middle of execve shows its new name with an empty command line
    // for a moment: read it again briefly before falling back to `[name]` (zombies and
    // kernel threads have none for good).
    let read = || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut cmdline = read();
    for _ in 0..5 {
        if !cmdline.is_empty() || state == 'Z' {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        cmdline = read();
    }
    let command = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Some(ProcInfo {
        pid,
        ppid,
        sid,
        state,
        command: if command.is_empty() {
            format!("[{comm}]")
        } else {
            command
        },
    })
}

/// Returns false when this process has no child at all, running or exited (`waitid`
/// answers `ECHILD`); true when it has one or cannot tell. Nothing is reaped (`WNOWAIT`).
pub fn has_children() -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with WNOHANG | WNOWAIT neither blocks nor changes any child's state.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    !(rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// Returns the processes whose parent is `parent` (a scan of `/proc`; empty elsewhere).
pub fn children_of(parent: i32) -> Vec<ProcInfo> {
    // Scanning /proc reads every process's stat (hundreds of files on a busy machine, most
    // of a short run's system time); a process with no child at all needs none of it.
    if parent == std::process::id() as i32 && !has_children() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // The parent is read from `stat` first: the command line is read only for the few
    // processes that match (a machine runs hundreds; this scan runs at every run's end).
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|(_, _, _, ppid, _)| ppid == parent)
        })
        .filter_map(proc_info)
        .filter(|p| p.ppid == parent)
        .collect()
}

/// Returns true while `pid` names a process that runs (a zombie does not).
pub fn pid_running(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && proc_info(pid).is_none_or(|p| p.state != 'Z')
}

/// Returns when process `pid` started (Linux: `/proc/PID/stat` field 22 and the boot time
/// in `/proc/stat`); `None` when unknown.
pub fn started_at(pid: i32) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    // Fields after `)` start at field 3 (state); starttime is field 22.
    let ticks: u64 = stat
        .get(close + 1..)?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    let since_boot = Duration::from_millis(ticks * 1000 / hz);
    Some(std::time::UNIX_EPOCH + Duration::from_secs(btime) + since_boot)
}

/// Returns the session id of this process.
pub fn own_session() -> Option<i32> {
    // SAFETY: getsid(0) has no memory effects.
    let sid = unsafe { libc::getsid(0) };
    (sid > 0).then_some(sid)
}

/// Reaps `pid` if it is a zombie child of ours; never blocks.
fn reap(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one specific pid with WNOHANG; never a wildcard, so exit statuses
    // of children that tokio or std wait for are never taken.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
}

/// Reaps the zombies among this process's children that are not in `keep` (orphans that
/// exited during the run), so a long run does not fill the process table with them. Only
/// safe where no child is being started concurrently (the script thread, before it starts
/// a command): a child that is not tracked yet would be taken for an orphan.
pub fn reap_exited_orphans(keep: &[i32]) -> usize {
    let me = std::process::id() as i32;
    children_of(me)
        .into_iter()
        .filter(|p| p.state == 'Z' && !keep.contains(&p.pid))
        .filter(|p| reap(p.pid))
        .count()
}

/// A leftover process that was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub pid: i32,
    pub command: String,
}

/// Finds every leftover child of this process (orphans re-parented to it), except the pids
/// in `keep` and every process of a session in `keep_sessions` (detached services), and
/// stops them: SIGTERM, `grace`, SIGKILL. Repeats while stopping one leaves new orphans (a
/// daemon's own children), a few rounds at most. Zombies are reaped silently. Must be
/// called when no tracked child is running (the end of a run): direct children that the
/// run still tracks must be listed in `keep`.
pub fn stop_orphans(keep: &[i32], keep_sessions: &[i32], grace: Duration) -> Vec<Stopped> {
    let me = std::process::id() as i32;
    // deployer's own session is never one to spare: its commands run in it.
    let mine = own_session();
    let keep_sessions: Vec<i32> = keep_sessions
        .iter()
        .copied()
        .filter(|s| Some(*s) != mine)
        .collect();
    let mut stopped = Vec::new();
    for _round in 0..5 {
        let found: Vec<ProcInfo> = children_of(me)
            .into_iter()
            .filter(|p| !keep.contains(&p.pid) && !keep_sessions.contains(&p.sid))
            .collect();
        let mut live = Vec::new();
        for p in found {
            if p.state == 'Z' {
                reap(p.pid);
            } else {
                live.push(p);
            }
        }
        if live.is_empty() {
            break;
        }
        for p in &live {
            // SAFETY: kill(2) on a child of ours that we found just now.
            unsafe { libc::kill(p.pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        let mut waiting: Vec<i32> = live.iter().map(|p| p.pid).collect();
        while !waiting.is_empty() && Instant::now() < deadline {
            waiting.retain(|pid| !reap(*pid));
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for pid in &waiting {
            // SAFETY: as above; the process ignored SIGTERM.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while !waiting.is_empty() && Instant::now() < deadline {
            waiting.retain(|pid| !reap(*pid));
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        stopped.extend(live.into_iter().map(|p| Stopped {
            pid: p.pid,
            command: p.command,
        }));
    }
    stopped
}

/// Describes stopped leftovers in one line: how many, then `pid (command)` for each.
pub fn describe(stopped: &[Stopped]) -> String {
    let list = stopped
        .iter()
        .map(|s| {
            let mut cmd = s.command.clone();
            if cmd.chars().count() > 80 {
                cmd = cmd.chars().take(77).collect::<String>() + "...";
            }
            format!("{} ({cmd})", s.pid)
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "stopped {} leftover process{} that commands of the run had left running in the background: {list}",
        stopped.len(),
        if stopped.len() == 1 { "" } else { "es" }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0";
        assert_eq!(
            parse_stat(stat),
            Some((4242, "my (odd) cmd".into(), 'S', 1, 4242))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn describes_in_one_line() {
        let s = describe(&[
            Stopped {
                pid: 10,
                command: "sleep 300".into(),
            },
            Stopped {
                pid: 11,
                command: "x".repeat(100),
            },
        ]);
        assert!(s.starts_with("stopped 2 leftover processes"), "{s}");
        assert!(s.contains("10 (sleep 300)"), "{s}");
        assert!(s.contains("..."), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn knows_when_this_process_started() {
        let started = started_at(std::process::id() as i32).unwrap();
        let now = std::time::SystemTime::now();
        assert!(started <= now + Duration::from_secs(2));
        assert!(now.duration_since(started).unwrap_or_default() < Duration::from_secs(24 * 3600));
    }

    #[test]
    fn has_children_sees_a_child_and_then_none() {
        // Other tests of this binary may have children of their own running; only the
        // answer with a child of ours is certain.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        assert!(has_children());
        let me = std::process::id() as i32;
        assert!(children_of(me).iter().any(|p| p.pid == child.id() as i32));
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn this_process_runs_and_nonsense_pids_do_not() {
        assert!(pid_running(std::process::id() as i32));
        assert!(!pid_running(0));
        assert!(!pid_running(-1));
    }
}

//! Processes and signals: nothing the run started outlives it (orphans come back to the
//! subreaper and are stopped), except services detached on purpose; every signal ends the
//! run recorded with its lock released; hooks and the rollback are bounded; output is
//! bounded in memory; spawn logs are private.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::support::server::TestServer;
use crate::support::{newest_report, pid_alive, wait_until, Output, Test};

/// Kills a pid when dropped, so a failed test leaves no `sleep 300` behind.
struct KillPid(i32);

impl Drop for KillPid {
    fn drop(&mut self) {
        if self.0 > 1 && pid_alive(self.0) {
            // SAFETY: kill(2) on a pid this test started (through deployer).
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[track_caller]
fn assert_gone(pid: i32, what: &str) {
    assert!(
        wait_until(Duration::from_secs(3), || !pid_alive(pid)),
        "{what} (pid {pid}) outlived the run"
    );
}

#[test]
fn orphans_of_a_backgrounding_exec_and_a_setsid_daemon_are_stopped_at_the_end() {
    let out = Test::new()
        .script(
            r#"exec(["bash", "-c", "sleep 300 & echo $! > orphan.pid"]);
               spawn(["setsid", "-f", "sh", "-c", "echo $$ > daemon.pid; exec sleep 301"]);
               while !fs::exists("daemon.pid") { sleep("20ms"); }
               sleep("100ms");
               print("script done");"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    let orphan = crate::read_pid(&out.path().join("orphan.pid"));
    let daemon = crate::read_pid(&out.path().join("daemon.pid"));
    let _guards = (KillPid(orphan), KillPid(daemon));
    out.assert_code(0)
        .assert_stdout_contains("script done")
        .assert_stderr_contains("stopped 2 leftover processes")
        .assert_stderr_contains(&format!("{orphan} (sleep 300)"))
        .assert_stderr_contains(&format!("{daemon} (sleep 301)"));
    assert_gone(orphan, "the background sleep of exec");
    assert_gone(daemon, "the setsid daemon of spawn");
    let log = std::fs::read_to_string(
        std::fs::read_dir(out.path().join(".deployer/runs"))
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path()
            .join("run.log"),
    )
    .unwrap();
    assert!(log.contains("stopped 2 leftover processes"), "{log}");
}

fn wait_exit(running: crate::support::Running) -> Output {
    running.wait(Duration::from_secs(15))
}

#[test]
fn a_second_ctrl_c_kills_the_running_group_releases_the_lock_and_records_the_run() {
    // The hook's command ignores SIGTERM, so only the hurried second signal (SIGKILL) ends
    // it before the generous hook bound.
    let running = Test::new()
        .script(
            r#"log::info("ready");
               sleep("30s");
               fn on_finish(report) {
                   log::info("hook started");
                   exec(["sh", "-c", "trap '' TERM INT; echo $$ > hook.pid; while true; do sleep 0.2; done"], #{ quiet: true });
               }"#,
        )
        .args(["run", "deploy.rhai"])
        .env("DEPLOYER_HOOK_TIMEOUT", "60s")
        .spawn();
    running.wait_for_stderr("ready", Duration::from_secs(10));
    assert!(running.path().join(".deployer/lock/default").exists());
    running.interrupt();
    running.wait_for_stderr("hook started", Duration::from_secs(10));
    let hook = crate::read_pid(&running.path().join("hook.pid"));
    let _guard = KillPid(hook);
    running.interrupt();
    let out = wait_exit(running);
    out.assert_code(130)
        .assert_stderr_contains("second signal (SIGINT)")
        .assert_stderr_contains("run recorded in");
    assert_gone(hook, "the hook's command group");
    assert!(
        !out.path().join(".deployer/lock/default").exists(),
        "lock left behind"
    );
    let report = newest_report(out.path());
    assert_eq!(report["status"], "interrupted");
    assert_eq!(report["exit_code"], 130);
}

#[test]
fn sighup_and_sigquit_end_the_run_like_ctrl_c_with_the_signal_named() {
    for (sig, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")] {
        let running = Test::new()
            .script(
                r#"log::info("ready");
                   exec(["sh", "-c", "echo $$ > child.pid; exec sleep 30"], #{ quiet: true });"#,
            )
            .args(["run", "deploy.rhai"])
            .spawn();
        running.wait_for_stderr("ready", Duration::from_secs(10));
        let child = crate::read_pid(&running.path().join("child.pid"));
        let _guard = KillPid(child);
        running.signal(sig);
        let out = wait_exit(running);
        out.assert_code(130)
            .assert_stderr_contains(&format!("interrupted ({name})"));
        assert_gone(child, "the running command");
        assert!(
            !out.path().join(".deployer/lock/default").exists(),
            "{name}: lock left behind"
        );
        let report = newest_report(out.path());
        assert_eq!(report["status"], "interrupted", "{name}");
        let msg = report["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(name), "{name}: {msg}");
    }
}

#[test]
fn hooks_after_an_interrupt_are_stopped_at_their_bound() {
    let running = Test::new()
        .script(
            r#"log::info("ready");
               sleep("30s");
               fn on_finish(report) { log::info("hook started"); sleep("30s"); print("hook ended"); }"#,
        )
        .args(["run", "deploy.rhai"])
        .env("DEPLOYER_HOOK_TIMEOUT", "1s")
        .spawn();
    running.wait_for_stderr("ready", Duration::from_secs(10));
    running.interrupt();
    let out = wait_exit(running);
    out.assert_code(130)
        .assert_stderr_contains("hook started")
        .assert_stderr_contains(
            "on_finish hook failed (the verdict stands): the hook was stopped after 1s",
        )
        .assert_stdout_not_contains("hook ended");
    assert_eq!(newest_report(out.path())["status"], "interrupted");
}

const ENDLESS_ROLLBACK: &str = r#"
phase("Deploy", #{ required: true, changes: true }, || { throw "the release is broken"; });
fn rollback(ctx) { log::info("rolling back"); loop { } }
"#;

#[test]
fn a_rollback_that_never_ends_is_stopped_at_its_bound_with_exit_3() {
    let out = Test::new()
        .script(ENDLESS_ROLLBACK)
        .args(["run", "deploy.rhai", "--rollback-timeout", "1s"])
        .run();
    out.assert_code(3)
        .assert_stderr_contains("rolling back")
        .assert_stderr_contains("the rollback timed out after 1s (--rollback-timeout)")
        .assert_stderr_contains("may be half rolled back")
        .assert_stderr_contains("ACTION NEEDED");
    let report = newest_report(out.path());
    assert_eq!(report["rollback"]["status"], "failed");
    assert_eq!(report["exit_code"], 3);
    // The environment variable sets the bound too, and --timeout (which ends the
    // deployment) does not end the rollback early: its own bound does.
    let out = Test::new()
        .script(
            r#"phase("Deploy", #{ required: true, changes: true }, || { sleep("5s"); });
               fn rollback(ctx) { log::info("rolling back"); loop { } }"#,
        )
        .args(["run", "deploy.rhai", "--timeout", "300ms"])
        .env("DEPLOYER_ROLLBACK_TIMEOUT", "1s")
        .run();
    out.assert_code(3)
        .assert_stderr_contains("timed out after 300ms (--timeout)")
        .assert_stderr_contains("rolling back")
        .assert_stderr_contains("the rollback timed out after 1s");
}

/// Runs deployer with `-v` on a script, counting its stderr instead of keeping it;
/// returns (exit code, stdout, bytes of stderr, the last 64 KiB of stderr).
fn run_counting_stderr(dir: &Path, script: &str) -> (i32, String, u64, String) {
    std::fs::write(dir.join("deploy.rhai"), script).unwrap();
    let mut child = crate::support::deployer_command(dir, &["run", "deploy.rhai", "-v"])
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let counter = std::thread::spawn(move || {
        let mut total = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = err.read(&mut buf) {
            total += n as u64;
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 1 << 17 {
                tail.drain(..tail.len() - (1 << 16));
            }
        }
        (total, String::from_utf8_lossy(&tail).into_owned())
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let (total, tail) = counter.join().unwrap();
    (status.code().unwrap_or(-1), stdout, total, tail)
}

#[test]
fn verbose_streaming_of_300_mb_keeps_memory_bounded() {
    let t = Test::new();
    // 200 MB in short lines, then one 100 MB line without a newline; then the peak memory
    // of deployer itself ($PPID of the shell), read from the kernel. Each stream starts
    // with a 3000-byte write and a pause: a first read of an odd size once let the capture
    // buffer double to nearly twice its bound (102 MB peak in CI).
    let (code, stdout, total, tail) = run_counting_stderr(
        t.path(),
        r#"exec(["sh", "-c", "yes 0123456789012345678901234567890123456789 | head -c 3000; sleep 0.2; yes 0123456789012345678901234567890123456789 | head -c 200000000"]);
           exec(["sh", "-c", "head -c 3000 /dev/zero | tr '\\0' x; sleep 0.2; head -c 100000000 /dev/zero | tr '\\0' x"]);
           let s = exec(["sh", "-c", "grep VmHWM /proc/$PPID/status"], #{ quiet: true });
           print(s.stdout);"#,
    );
    assert_eq!(code, 0, "{tail}");
    assert!(total > 200_000_000, "only {total} bytes streamed");
    assert!(
        tail.contains("more bytes of this line not shown]"),
        "the long line was not capped: {}",
        &tail[tail.len().saturating_sub(2000)..]
    );
    let kb: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {stdout:?}"));
    assert!(
        kb < 100 * 1024,
        "peak RSS {kb} kB for 300 MB of streamed output"
    );
    // run.log keeps a bounded part of the streamed output.
    let runs = t.path().join(".deployer/runs");
    let run = std::fs::read_dir(&runs).unwrap().flatten().next().unwrap();
    let log = std::fs::metadata(run.path().join("run.log")).unwrap().len();
    assert!(log < 20_000_000, "run.log is {log} bytes");
}

#[test]
fn output_beyond_16_mib_is_cut_and_says_so() {
    Test::new()
        .script(
            r#"let r = exec(["sh", "-c", "head -c 17000000 /dev/zero | tr '\\0' y"]);
               print(`truncated=${r.truncated} len=${r.stdout.len()}`);
               let s = exec(["echo", "hi"]);
               print(`small=${s.truncated}`);"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("truncated=true len=16777216")
        .assert_stdout_contains("small=false")
        .assert_stderr_contains("the stdout of `sh -c")
        .assert_stderr_contains("was cut: its first 222784 bytes were dropped");
}

#[test]
fn spawn_logs_are_private_and_removed_after_the_run() {
    let t = Test::new();
    let runtime = t.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let t = t
        .script(
            r#"let p = spawn(["sh", "-c", "echo hello; exec sleep 30"]);
               while p.output(1) == "" { sleep("20ms"); }
               let dir = exec(["dirname", p.log], #{ quiet: true }).stdout;
               print(`dir=${dir}`);
               print(`dirmode=${exec(["stat", "-c", "%a", dir], #{ quiet: true }).stdout}`);
               print(`filemode=${exec(["stat", "-c", "%a", p.log], #{ quiet: true }).stdout}`);
               try { spawn(["true"], #{ log: "link.log" }); } catch (e) { print(`refused: ${e.message}`); }"#,
        )
        .file("target.txt", "keep me")
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["run", "deploy.rhai"]);
    std::os::unix::fs::symlink(t.path().join("target.txt"), t.path().join("link.log")).unwrap();
    let out = t.run();
    out.assert_code(0)
        .assert_stdout_contains("dirmode=700")
        .assert_stdout_contains("filemode=600")
        .assert_stdout_contains("refused: cannot run true:")
        .assert_stdout_contains("is a symbolic link");
    let dir = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("dir="))
        .unwrap()
        .to_string();
    assert!(
        dir.starts_with(runtime.to_str().unwrap()),
        "log folder {dir} is not under XDG_RUNTIME_DIR"
    );
    let name = Path::new(&dir).file_name().unwrap().to_string_lossy();
    assert!(name.starts_with("deployer-"), "{dir}");
    assert!(
        name["deployer-".len()..].parse::<u32>().is_err(),
        "predictable name {dir}"
    );
    assert!(!Path::new(&dir).exists(), "{dir} was not removed");
    assert_eq!(
        std::fs::read_to_string(out.path().join("target.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn a_detached_service_survives_the_run_and_is_stopped_by_process_stop() {
    let t = Test::new()
        .script(
            r#"let p = spawn(["sh", "-c", "echo up; exec sleep 300"],
                            #{ detach: true, name: "svc", log: "svc.log", pidfile: "run/svc.pid" });
               print(`alive=${process::alive("run/svc.pid")} same=${process::alive(p.pid)}`);"#,
        )
        .args(["run", "deploy.rhai"]);
    let out = t.run();
    let pid = crate::read_pid(&out.path().join("run/svc.pid"));
    let _guard = KillPid(pid);
    out.assert_code(0)
        .assert_stdout_contains("alive=true same=true")
        .assert_stderr_contains("detached as pid")
        .assert_stderr_not_contains("leftover");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pid_alive(pid),
        "the detached service did not survive the run"
    );
    let report = newest_report(out.path());
    assert_eq!(report["detached"][0]["name"], "svc");
    assert_eq!(report["detached"][0]["pid"], pid);
    assert_eq!(report["detached"][0]["log"], "svc.log");
    assert!(wait_until(Duration::from_secs(3), || {
        std::fs::read_to_string(out.path().join("svc.log")).is_ok_and(|l| l.contains("up"))
    }));
    // The next run finds it by its pid file and stops it.
    let out = t
        .script(
            r#"print(`before=${process::alive("run/svc.pid")}`);
               let r = process::stop("run/svc.pid", "2s");
               print(`how=${r.how} was_running=${r.was_running} pid=${r.pid}`);
               print(`after=${process::alive("run/svc.pid")}`);
               print(`again=${process::stop("run/svc.pid").how}`);
               try { process::stop(1); } catch (e) { print(`refused=${e.message}`); }"#,
        )
        .run();
    out.assert_code(0)
        .assert_stdout_contains("before=true")
        .assert_stdout_contains(&format!("how=term was_running=true pid={pid}"))
        .assert_stdout_contains("after=false")
        .assert_stdout_contains("again=not_running")
        .assert_stdout_contains("refused=process::stop(): 1 is not a process id");
    assert_gone(pid, "the stopped service");
    assert!(
        !out.path().join("run/svc.pid").exists(),
        "stale pid file kept"
    );
}

#[test]
fn wait_healthy_stops_when_the_process_it_waits_for_exits() {
    let server = TestServer::start();
    Test::new()
        .script(&format!(
            r#"let p = spawn(["sh", "-c", "sleep 0.3; echo 'fatal: cannot bind port 8080' >&2; exit 3"]);
               try {{
                   http::wait_healthy("{}", #{{ process: p, attempts: 40, interval: "250ms" }});
                   print("healthy?");
               }} catch (e) {{
                   print(`kind=${{e.kind}} exit=${{e.exit}}`);
                   print(e.message);
               }}"#,
            server.url("/status/503")
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("kind=process_exited exit=exit code 3")
        .assert_stdout_contains("fatal: cannot bind port 8080")
        .assert_stdout_not_contains("healthy?")
        .assert_stderr_not_contains("attempt 20/40");
}

#[test]
fn a_daemon_a_command_leaves_running_on_purpose_survives_and_is_recorded() {
    let out = Test::new()
        .script(
            r#"exec(["sh", "-c", "setsid sh -c 'echo $$ > kept.pid; exec sleep 302' > /dev/null 2>&1 &"],
                    #{ leave_running: true });
               exec(["sh", "-c", "sleep 303 > /dev/null 2>&1 & echo $! > orphan.pid"]);"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    let kept = crate::read_pid(&out.path().join("kept.pid"));
    let orphan = crate::read_pid(&out.path().join("orphan.pid"));
    let _guards = (KillPid(kept), KillPid(orphan));
    out.assert_code(0)
        .assert_stderr_contains("it is left running after the run, as asked (leave_running)")
        .assert_stderr_contains("stopped 1 leftover process");
    assert!(
        pid_alive(kept),
        "the daemon left running on purpose was stopped"
    );
    assert_gone(orphan, "the other command's leftover");
    let report = newest_report(out.path());
    assert_eq!(report["detached"][0]["pid"], kept);
    // The command as seen when the command ended (the daemon may not have exec'd yet).
    let command = report["detached"][0]["command"].as_str().unwrap();
    assert!(command.contains("sleep 302"), "{command}");
}

#[test]
fn a_stale_pid_file_whose_pid_was_reused_stops_nothing() {
    Test::new()
        .script(
            r#"let p = spawn(["sleep", "30"]);
               fs::write("old.pid", `${p.pid}`);
               exec(["touch", "-d", "1 hour ago", "old.pid"], #{ quiet: true });
               print(`alive=${process::alive("old.pid")}`);
               let r = process::stop("old.pid", "1s");
               print(`how=${r.how} still=${p.alive()}`);
               print(r.message);
               print(`pidfile=${fs::exists("old.pid")}`);"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("alive=false")
        .assert_stdout_contains("how=not_running still=true")
        .assert_stdout_contains("stale: pid")
        .assert_stdout_contains("pidfile=false");
}

#[test]
fn orphans_that_exit_during_the_run_are_reaped_before_the_next_command() {
    Test::new()
        .script(
            r#"exec(["sh", "-c", "sleep 0.2 > /dev/null 2>&1 & echo $! > z.pid"]);
               let pid = fs::read("z.pid");
               pid.trim();
               sleep("1200ms");
               print(`zombie=${fs::exists("/proc/" + pid)}`);
               exec(["true"]);
               print(`reaped=${!fs::exists("/proc/" + pid)}`);"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("zombie=true")
        .assert_stdout_contains("reaped=true")
        .assert_stderr_not_contains("leftover");
}

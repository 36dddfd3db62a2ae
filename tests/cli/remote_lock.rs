//! The remote lock: runs from different state folders (as on two CI runners) exclude each
//! other through a lease on the hosts; a killed run's lease expires and is taken over;
//! `deployer unlock` shows and removes it; every ending releases it; a dry run takes none.
//! The hosts are network namespaces with their own sshd (support/sshnet.rs) in 10.232.N.0/24,
//! apart from cli/remote.rs's. Without root the tests print SKIPPED.

use std::path::Path;
use std::time::Duration;

use crate::support::sshnet::{assert_no_masters, killing_on_purpose, SshNet};
use crate::support::{wait_until, Output, Running, Test};

fn net(n: usize) -> Option<SshNet> {
    SshNet::start_in(n, "l", 232)
}

/// deployer.toml for the net with `settings` added to `[env.test]`.
fn toml(net: &SshNet, settings: &str) -> String {
    net.toml("", "")
        .replace("[env.test.ssh]", &format!("{settings}\n[env.test.ssh]"))
}

fn project(toml: &str, script: &str) -> Test {
    Test::new().file("deployer.toml", toml).script(script)
}

/// A run that holds the lock until it is stopped.
fn holder(toml: &str) -> Running {
    let r = project(toml, r#"log::info("holding"); sleep("30s");"#)
        .args(["run", "deploy.rhai"])
        .spawn();
    r.wait_for_stderr("holding", Duration::from_secs(20));
    r
}

/// The run id a run printed ("... (run ID)").
fn run_id(stderr: &str) -> String {
    let start = stderr.find("(run ").expect("no run id printed") + 5;
    stderr[start..]
        .split(')')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The value of `key` in the holder file of the lock folder.
fn holder_field(lock: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(lock).join("holder")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Removes the control-socket folders (/tmp/dpl-PID-N) of a deployer that was SIGKILLed
/// and so could not remove them (cli/remote.rs checks that no other run leaves one).
fn forget_killed(pid: i32) {
    for e in std::fs::read_dir("/tmp").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(&format!("dpl-{pid}-")) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[track_caller]
fn assert_unlocked(net: &SshNet) {
    let lock = net.lock_path();
    assert!(!Path::new(&lock).exists(), "the lock folder {lock} is left");
    assert!(
        !Path::new(&format!("{lock}.guard")).exists(),
        "the guard {lock}.guard is left"
    );
}

#[test]
fn a_second_run_from_another_state_folder_exits_5_naming_the_holder() {
    let Some(net) = net(2) else { return };
    let ips = net.ips();
    let toml = toml(&net, "");
    let first = holder(&toml);
    let id = run_id(&first.stderr_so_far());
    let lock = net.lock_path();
    // The holder's details are on the host.
    assert_eq!(holder_field(&lock, "run_id").as_deref(), Some(id.as_str()));
    assert_eq!(
        holder_field(&lock, "pid").as_deref(),
        Some(first.pid().to_string().as_str())
    );
    assert!(holder_field(&lock, "expires").is_some_and(|e| e.parse::<u64>().unwrap() > now()));
    // Another project folder: another state folder, so only the remote lock can stop it.
    let second = project(&toml, r#"on(hosts(), || sh("touch ran"));"#)
        .args(["run", "deploy.rhai"])
        .run();
    second
        .assert_code(5)
        .assert_stderr_contains(&format!(
            "another deployment holds the remote lock of environment test on host {}",
            ips[0]
        ))
        .assert_stderr_contains(&format!("run {id} ("))
        .assert_stderr_contains(&format!("pid {}", first.pid()))
        .assert_stderr_contains("script deploy.rhai")
        .assert_stderr_contains("deployer unlock --env test")
        .assert_stderr_contains("nothing was run");
    assert!(!second.path().join("ran").exists());
    // deployer rollback takes it too.
    project(&toml, "fn rollback(ctx) { print(\"rolled back\"); }")
        .args(["rollback", "deploy.rhai", "--yes"])
        .run()
        .assert_code(5)
        .assert_stdout_not_contains("rolled back")
        .assert_stderr_contains("holds the remote lock");
    // Ctrl-C ends the holder and releases the lock on every host.
    first.interrupt();
    first.wait(Duration::from_secs(15)).assert_code(130);
    assert_unlocked(&net);
    assert_no_masters(&net);
    project(&toml, r#"on(hosts(), || sh("true"));"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0);
    assert_unlocked(&net);
}

#[test]
fn a_lease_is_renewed_while_the_run_lives_and_taken_over_after_a_kill() {
    let Some(net) = net(1) else { return };
    let ip = &net.ips()[0];
    let toml = toml(&net, "lock_lease = \"3s\"");
    let first = holder(&toml);
    let id = run_id(&first.stderr_so_far());
    let pid = first.pid();
    // Longer than the lease: renewals keep it.
    std::thread::sleep(Duration::from_secs(4));
    let lock = net.lock_path();
    let renewed: u64 = holder_field(&lock, "renewed").unwrap().parse().unwrap();
    assert!(renewed + 2 >= now(), "not renewed lately: {renewed}");
    project(&toml, "print(1);")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(5)
        .assert_stderr_contains(&format!("run {id} ("));
    // A killed run cannot release: its lease stays until it expires.
    killing_on_purpose(pid);
    first.signal(libc::SIGKILL);
    let killed = first.wait(Duration::from_secs(5));
    forget_killed(pid);
    assert_eq!(
        killed.code(),
        128 + libc::SIGKILL,
        "not killed by the signal"
    );
    assert_eq!(holder_field(&lock, "run_id").as_deref(), Some(id.as_str()));
    let expires: u64 = holder_field(&lock, "expires").unwrap().parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(6), || now() > expires),
        "the lease did not expire"
    );
    let out = project(&toml, r#"on(hosts(), || sh("true")); print("deployed");"#)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("deployed")
        .assert_stderr_contains(&format!(
            "took over the expired remote lock of test on {ip} ({lock}): it was held by run {id} ("
        ))
        .assert_stderr_contains(&format!("pid {pid}"))
        .assert_stderr_contains("its lease expired");
    assert_unlocked(&net);
    assert_no_masters(&net);
}

#[test]
fn unlock_shows_the_holders_and_removes_them() {
    let Some(net) = net(2) else { return };
    let ips = net.ips();
    let toml = toml(&net, "");
    let first = holder(&toml);
    let id = run_id(&first.stderr_so_far());
    let pid = first.pid();
    killing_on_purpose(pid);
    first.signal(libc::SIGKILL);
    let killed: Output = first.wait(Duration::from_secs(5));
    forget_killed(pid);
    let config = killed.path().join("deployer.toml");
    let unlock = |extra: &[&str]| {
        Test::new()
            .args(["unlock", "--env", "test", "--config"])
            .arg(&config)
            .args(extra)
            .run()
    };
    // No terminal and no --yes: shown, not removed.
    let out = unlock(&[]);
    out.assert_code(1)
        .assert_stderr_contains("local lock of test (")
        .assert_stderr_contains(&format!("held by run {id} ("))
        .assert_stderr_contains(&format!("pid {pid}, script deploy.rhai"))
        .assert_stderr_not_contains("STILL RUNNING")
        .assert_stderr_contains(&format!("{}: held by run {id} (", ips[0]))
        .assert_stderr_contains(&format!("{}: held by run {id} (", ips[1]))
        .assert_stderr_contains("left)")
        .assert_stderr_contains("pass --yes");
    let lock = net.lock_path();
    assert!(Path::new(&lock).exists(), "removed without confirmation");
    // A new run is still locked out.
    project(&toml, "print(1);")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(5);
    let out = unlock(&["--yes"]);
    out.assert_code(0)
        .assert_stderr_contains(&format!("removed the local lock of test (run {id})"))
        .assert_stderr_contains(&format!(
            "removed the remote lock of test on {} (run {id})",
            ips[0]
        ));
    assert_unlocked(&net);
    assert!(!killed.path().join(".deployer/lock/test").exists());
    unlock(&[])
        .assert_code(0)
        .assert_stderr_contains("test is not locked: nothing to remove");
    project(&toml, r#"on(hosts(), || sh("true"));"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0);
    assert_no_masters(&net);
}

#[test]
fn the_lock_is_held_during_the_run_and_gone_after_every_ending() {
    let Some(net) = net(2) else { return };
    let toml = toml(&net, "");
    let lock = net.lock_path();
    // Held while the script runs, on the host (read through the host's own shell).
    let out = project(
        &toml,
        &format!(
            r#"let r = on(hosts(), || sh("sed -n 's/^run_id=//p' {lock}/holder").stdout);
               for h in hosts() {{ print(`holder on ${{h}}: ${{r[h]}}`); }}"#
        ),
    )
    .args(["run", "deploy.rhai"])
    .run();
    out.assert_code(0);
    let id = run_id(&out.stderr);
    assert_eq!(out.stdout.matches(&id).count(), 2, "{}", out.stdout);
    assert_unlocked(&net);
    // A failed run, with its rollback, releases it after the rollback.
    project(
        &toml,
        &format!(
            r#"phase("Switch", #{{ changes: true }}, || {{ on(hosts(), || sh("exit 3")); }});
               fn rollback(ctx) {{
                   let r = on(hosts(), || sh("test -d {lock} && echo held").stdout);
                   for h in hosts() {{ print(`during rollback: ${{r[h]}}`); }}
               }}"#
        ),
    )
    .args(["run", "deploy.rhai"])
    .run()
    .assert_code(1)
    .assert_stdout_contains("during rollback: held");
    assert_unlocked(&net);
    // A run stopped by --timeout.
    project(&toml, r#"on(hosts(), || sh("sleep 20"));"#)
        .args(["run", "deploy.rhai", "--timeout", "1s"])
        .run()
        .assert_code(1)
        .assert_stderr_contains("timed out");
    assert_unlocked(&net);
    assert_no_masters(&net);
}

#[test]
fn a_dry_run_takes_no_lock_but_warns_of_a_held_one() {
    let Some(net) = net(1) else { return };
    let ip = &net.ips()[0];
    let toml = toml(&net, "");
    let script = r#"on(hosts(), || sh("touch ran"));"#;
    project(&toml, script)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run()
        .assert_code(0)
        .assert_stderr_not_contains("remote lock");
    assert_unlocked(&net);
    let first = holder(&toml);
    let id = run_id(&first.stderr_so_far());
    let out = project(&toml, script)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains(&format!(
            "the remote lock of test is held on {ip}: held by run {id} ("
        ))
        .assert_stderr_contains("a real run would stop now (exit 5)");
    assert!(!out.path().join("ran").exists());
    // The dry run left the holder's lock alone.
    assert_eq!(
        holder_field(&net.lock_path(), "run_id").as_deref(),
        Some(id.as_str())
    );
    first.interrupt();
    first.wait(Duration::from_secs(15)).assert_code(130);
    assert_unlocked(&net);
}

#[test]
fn unreachable_hosts_and_bad_settings() {
    let Some(mut net) = net(2) else { return };
    let ips = net.ips();
    // Every host down: the run fails fast with the connection errors, nothing runs.
    net.stop_sshd(0);
    net.stop_sshd(1);
    let out = project(&toml(&net, ""), r#"print("ran");"#)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains(
            "cannot take the remote lock of environment test: no host could be reached",
        )
        .assert_stderr_contains(&format!("cannot connect to {}: host down", ips[0]))
        .assert_stderr_contains(&format!("cannot connect to {}: host down", ips[1]))
        .assert_stdout_not_contains("ran");
    // One host down: the lock is taken on the other; on(...) counts the down host.
    net.start_sshd(1).unwrap();
    project(
        &toml(&net, ""),
        r#"on(hosts(), #{ max_fail: 1 }, || sh("true")); print("ran");"#,
    )
    .args(["run", "deploy.rhai"])
    .run()
    .assert_code(0)
    .assert_stdout_contains("ran")
    .assert_stderr_contains(&format!(
        "the remote lock of test is not taken on {}, which cannot be reached",
        ips[0]
    ));
    assert_unlocked(&net);
    // A lock folder that is not a lock is refused and left alone.
    let odd = net.file("odd");
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(format!("{odd}/keep"), "x").unwrap();
    project(
        &toml(&net, "").replace(&net.lock_path(), &odd),
        r#"print("ran");"#,
    )
    .args(["run", "deploy.rhai"])
    .run()
    .assert_code(1)
    .assert_stderr_contains(&format!(
        "remote lock on {}: {odd} exists and is not a deployer lock folder",
        ips[1]
    ))
    .assert_stdout_not_contains("ran");
    assert!(Path::new(&format!("{odd}/keep")).exists());
    project(&toml(&net, "lock_lease = \"0s\""), "print(1);")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("[env.test] lock_lease = \"0s\" is too short");
}

#[test]
fn unlock_removes_a_local_lock_and_documents_its_exit_codes() {
    // No hosts, no root needed: the local lock file of a run that died on this machine.
    let t = Test::new()
        .file("deployer.toml", "[env.staging]\n")
        .file(
            ".deployer/lock/staging",
            r#"{"pid": 999999999, "host": "ci-runner-7", "user": "deploy", "started_at": "2026-01-01T00:00:00Z", "script": "deploy.rhai", "run_id": "20260101T000000Z-staging-dead"}"#,
        )
        .script("print(1);");
    // The run is locked out (and writes the project's files).
    let locked = t.args(["run", "deploy.rhai", "--env", "staging"]).run();
    locked.assert_code(5);
    let lock = locked.path().join(".deployer/lock/staging");
    let config = locked.path().join("deployer.toml");
    let unlock = |extra: &[&str]| {
        Test::new()
            .args(["unlock", "--env", "staging", "--config"])
            .arg(&config)
            .args(extra)
            .run()
    };
    unlock(&[])
        .assert_code(1)
        .assert_stderr_contains(
            "held by run 20260101T000000Z-staging-dead (deploy@ci-runner-7, pid 999999999, script deploy.rhai",
        )
        .assert_stderr_contains("pass --yes");
    assert!(lock.exists());
    unlock(&["--yes"]).assert_code(0).assert_stderr_contains(
        "removed the local lock of staging (run 20260101T000000Z-staging-dead)",
    );
    assert!(!lock.exists());
    Test::new()
        .args(["unlock", "--env", "stagign", "--config"])
        .arg(&config)
        .run()
        .assert_code(2)
        .assert_stderr_contains("did you mean \"staging\"?")
        .assert_stderr_contains("nothing was removed");
    Test::new()
        .args(["unlock", "--help"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("Exit codes: 0 removed");
}

#[test]
fn lock_wait_waits_for_the_remote_holder_to_finish() {
    let Some(net) = net(1) else { return };
    let toml = toml(&net, "");
    let done = net.file("first-done");
    let first = project(
        &toml,
        &format!(r#"log::info("holding"); sleep("3s"); fs::write("{done}", "yes");"#),
    )
    .args(["run", "deploy.rhai"])
    .spawn();
    first.wait_for_stderr("holding", Duration::from_secs(20));
    // Its script runs only once the first run has finished and released the lock.
    let second = project(
        &toml,
        &format!(r#"print(`first done: ${{fs::exists("{done}")}}`);"#),
    )
    .args(["run", "deploy.rhai", "--lock-wait", "30s"])
    .run();
    second
        .assert_code(0)
        .assert_stdout_contains("first done: true");
    first.wait(Duration::from_secs(15)).assert_code(0);
    assert_unlocked(&net);
}

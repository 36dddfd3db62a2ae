//! Remote hosts over OpenSSH: each test host is a network namespace with its own sshd
//! (see support/sshnet.rs); where a command ran is proven with `hostname -I` from inside
//! it and with sshd's log of logins. Without root the tests print SKIPPED.

use std::time::{Duration, Instant};

use crate::support::sshnet::{assert_no_masters, processes_with, SshNet};
use crate::support::{deployer_in, pid_alive, wait_until, Output, Test};

fn run(net: &SshNet, toml: &str, script: &str, extra: &[&str]) -> Output {
    let _ = net;
    Test::new()
        .file("deployer.toml", toml)
        .script(script)
        .args(["run", "deploy.rhai"])
        .args(extra)
        .run()
}

#[test]
fn runs_on_three_hosts_in_batches_over_one_connection_each() {
    let Some(net) = SshNet::start(3) else { return };
    let ips = net.ips();
    let toml = net.toml(
        "",
        &format!(
            "[env.test.roles]\nweb = [\"{}\", \"{}\"]\n[env.test.host_vars.\"{}\"]\nname = \"first\"\n",
            ips[0], ips[1], ips[0]
        ),
    );
    let out = run(
        &net,
        &toml,
        r#"let r = on(hosts(), #{ batch: 2 }, || {
               let ip = sh("hostname -I").stdout;
               ip.trim();
               sh("true");
               exec(["true"]);
               `${host()}=${ip} name=${host_var("name", "none")}`
           });
           for h in hosts() { print(r[h]); }
           print(`web=${hosts("web").len()}`);
           let here = on("web", || local(|| sh("hostname -I").stdout));
           print(`local=${here.values()[0].len() > 0}`);"#,
        &[],
    );
    out.assert_code(0)
        .assert_stdout_contains(&format!("{0}={0} name=first", ips[0]))
        .assert_stdout_contains(&format!("{0}={0} name=none", ips[1]))
        .assert_stdout_contains(&format!("{0}={0} name=none", ips[2]))
        .assert_stdout_contains("web=2")
        .assert_stdout_contains("local=true")
        .assert_stderr_contains(&format!("batch 1/2: {}, {}", ips[0], ips[1]))
        .assert_stderr_contains(&format!("batch 2/2: {}", ips[2]))
        .assert_stderr_contains(&format!("$ {} | hostname -I", ips[2]));
    // Three commands per host, one login each: the master connection was reused.
    for i in 0..3 {
        assert_eq!(net.logins(i), 1, "logins on host {i}");
    }
    assert_no_masters(&net);
}

#[test]
fn once_runs_on_the_first_reachable_host() {
    let Some(mut net) = SshNet::start(3) else {
        return;
    };
    net.stop_sshd(0);
    let ips = net.ips();
    let out = run(
        &net,
        &net.toml("", ""),
        r#"let here = sh("pwd").stdout; here.trim();
           let r = on(hosts(), #{ once: true }, || { let ip = sh("hostname -I").stdout; ip.trim(); sh(`touch ${here}/ran-on-${ip}`); ip });
           print(`ran=${r}`);"#,
        &[],
    );
    out.assert_code(0)
        .assert_stdout_contains(&format!("ran={}", ips[1]))
        .assert_stderr_contains(&format!("cannot connect to {}: host down", ips[0]));
    // (The remote lock logs in to every reachable host, so logins cannot tell.)
    assert!(out.path().join(format!("ran-on-{}", ips[1])).exists());
    assert!(
        !out.path().join(format!("ran-on-{}", ips[2])).exists(),
        "once ran on a second host"
    );
    assert_no_masters(&net);
}

#[test]
fn a_host_that_is_down_fails_fast_naming_it() {
    let Some(mut net) = SshNet::start(2) else {
        return;
    };
    net.stop_sshd(1);
    let ips = net.ips();
    let started = Instant::now();
    let out = run(
        &net,
        &net.toml("", ""),
        r#"on(hosts(), || sh("touch ran-$(hostname -I | tr -d ' ')"));"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains(&format!(
            "cannot connect to {}: host down or unreachable",
            ips[1]
        ))
        .assert_stderr_contains("1 of 2 hosts failed, more than the failure budget (max_fail 0)");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_no_masters(&net);
}

#[test]
fn a_failure_budget_takes_failed_hosts_out_and_stops_when_exceeded() {
    let Some(net) = SshNet::start(3) else { return };
    net.cut(1);
    let ips = net.ips();
    let script = |budget: &str| {
        format!(
            r#"let r = on(hosts(), #{{ batch: 1, max_fail: {budget} }}, || sh("hostname -I").stdout);
               print(`done=${{r.keys().len()}}`);"#
        )
    };
    let out = run(&net, &net.toml("", ""), &script("1"), &[]);
    out.assert_code(0)
        .assert_stdout_contains("done=2")
        .assert_stderr_contains(&format!(
            "{} failed and is taken out of the rollout (1 of 1 failures allowed)",
            ips[1]
        ))
        .assert_stderr_contains("failure budget 1 host");
    let out = run(&net, &net.toml("", ""), &script("\"0%\""), &[]);
    out.assert_code(1)
        .assert_stderr_contains(&format!("the rollout stopped before {}", ips[2]));
    assert_no_masters(&net);
}

#[test]
fn a_refused_key_and_an_unknown_host_key_fail_naming_the_host() {
    let Some(net) = SshNet::start(1) else { return };
    let ip = &net.ips()[0];
    let script = r#"on(hosts(), || sh("true"));"#;
    let wrong = format!("identity = \"{}\"\n", net.file("other_key"));
    run(&net, &net.toml(&wrong, ""), script, &[])
        .assert_code(1)
        .assert_stderr_contains(&format!("cannot connect to {ip}: the host refused the key"));
    let empty = net.file("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let unknown = format!("known_hosts = \"{empty}\"\n");
    run(&net, &net.toml(&unknown, ""), script, &[])
        .assert_code(1)
        .assert_stderr_contains(&format!(
            "cannot connect to {ip}: its host key is not in known_hosts"
        ))
        .assert_stderr_contains("host_key_checking = \"accept-new\"");
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "a host key was trusted"
    );
    let accept = format!("known_hosts = \"{empty}\"\nhost_key_checking = \"accept-new\"\n");
    run(&net, &net.toml(&accept, ""), script, &[]).assert_code(0);
    // Debian hashes known_hosts entries: ask ssh-keygen for the host's.
    let found = std::process::Command::new("ssh-keygen")
        .args(["-F", ip.as_str(), "-f", &empty])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "accept-new did not record {ip}'s key"
    );
    assert_no_masters(&net);
}

#[test]
fn a_secret_reaches_the_remote_command_through_stdin_not_any_argv() {
    let Some(net) = SshNet::start(1) else { return };
    let secret = "s3cr3t-remote-token-4711";
    let t = Test::new();
    let dir = t.path().display().to_string();
    let t = t
        .file("deployer.toml", net.toml("", ""))
        .env("DEPLOY_TOKEN", secret)
        .script(&format!(
            r#"let token = secret("DEPLOY_TOKEN");
               on(hosts(), || {{
                   sh("echo \"$DEPLOY_TOKEN\" > got.txt; echo \"token is $DEPLOY_TOKEN\"; sleep 2", #{{ env: #{{ DEPLOY_TOKEN: token }}, cwd: "{dir}" }});
               }});"#
        ))
        .args(["run", "deploy.rhai", "-v"]);
    let running = t.spawn();
    let got = running.path().join("got.txt");
    assert!(
        wait_until(Duration::from_secs(10), || got.exists()),
        "the remote command did not start"
    );
    let seen = processes_with(secret);
    assert!(seen.is_empty(), "the secret is in an argv: {seen:?}");
    let out = running.wait(Duration::from_secs(20));
    out.assert_code(0)
        .assert_stderr_contains("token is ")
        .assert_stderr_not_contains(secret);
    assert_eq!(std::fs::read_to_string(got).unwrap().trim(), secret);
    assert_no_masters(&net);
}

#[test]
fn ctrl_c_stops_the_remote_command_and_closes_the_masters() {
    let Some(net) = SshNet::start(1) else { return };
    let t = Test::new();
    let dir = t.path().display().to_string();
    let running = t
        .file("deployer.toml", net.toml("", ""))
        .script(&format!(
            r#"phase("Switch", #{{ changes: true }}, || {{
                   on(hosts(), || sh("sh -c 'echo $$ > remote.pid; exec sleep 30'", #{{ cwd: "{dir}" }}));
               }});"#
        ))
        .args(["run", "deploy.rhai"])
        .spawn();
    let pidfile = running.path().join("remote.pid");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&pidfile)
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false)
    }));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(pid));
    running.interrupt();
    let out = running.wait(Duration::from_secs(10));
    out.assert_code(130).assert_stderr_contains(&format!(
        "the rollout was interrupted on {0}; hosts changed so far, in order: {0}",
        net.ips()[0]
    ));
    assert!(
        wait_until(Duration::from_secs(3), || !pid_alive(pid)),
        "the remote sleep {pid} outlived Ctrl-C"
    );
    assert_no_masters(&net);
}

#[test]
fn bad_inventory_and_options_are_errors_before_anything_runs() {
    // These need no test hosts: a real run would stop at the remote lock (no host can be
    // reached), so they run as dry runs, which only try to read it.
    let toml = "default_env = \"test\"\n[env.test]\nhosts = [\"10.231.0.11\", \"10.231.0.12\"]\n[env.test.roles]\nweb = [\"10.231.0.11\"]\n[env.test.ssh]\nconnect_timeout = \"1s\"\n";
    let check = |script: &str, expect: &str| {
        Test::new()
            .file("deployer.toml", toml)
            .script(&format!("{script}\nexec([\"touch\", \"ran\"]);"))
            .args(["run", "deploy.rhai", "--dry-run"])
            .run()
            .assert_code(2)
            .assert_stderr_contains(expect);
    };
    check(
        r#"on(hosts(), #{ batch: 0 }, || sh("true"));"#,
        "`batch` must be at least 1",
    );
    check(
        r#"on(hosts(), #{ max_fail: "150%" }, || sh("true"));"#,
        "between 0% and 100%, got \"150%\"",
    );
    check(r#"on([], || sh("true"));"#, "the list of hosts is empty");
    check(
        r#"on("db", || sh("true"));"#,
        "unknown role `db` in environment test: its roles are web",
    );
    check(r#"on(["web9"], || sh("true"));"#, "unknown host `web9`");
    check(r#"host();"#, "host() is only available inside on(...)");
    // A misspelt option is found by the static check: exit 2, nothing ran.
    let out = Test::new()
        .file("deployer.toml", toml)
        .script("exec([\"touch\", \"ran\"]);\non(hosts(), #{ bacth: 2 }, || sh(\"true\"));")
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("unknown option `bacth`; did you mean `batch`?");
    assert!(!out.path().join("ran").exists());
    Test::new()
        .file(
            "deployer.toml",
            "default_env = \"test\"\n[env.test]\nhosts = [\"a\", \"a\"]\n",
        )
        .script("exec([\"touch\", \"ran\"]);")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("[env.test] hosts lists host `a` twice");
}

#[test]
fn upload_and_download_use_the_same_connection() {
    let Some(net) = SshNet::start(2) else { return };
    let t = Test::new();
    let dir = t.path().display().to_string();
    let out = t
        .file("deployer.toml", net.toml("", ""))
        .file("art/app.txt", "release 42\n")
        .script(&format!(
            r#"on(hosts(), || {{
                   upload("art", "{dir}/up-" + host());
                   sh("hostname -I > {dir}/up-" + host() + "/where.txt");
                   download("{dir}/up-" + host() + "/where.txt", "down-" + host() + ".txt");
               }});
               try {{ on(hosts(), || upload("missing", "/tmp/x")); }} catch (e) {{ print(e.message); }}"#
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("upload(): missing does not exist on this machine");
    for (i, ip) in net.ips().iter().enumerate() {
        let up = out.path().join(format!("up-{ip}/app.txt"));
        assert_eq!(std::fs::read_to_string(&up).unwrap(), "release 42\n");
        let down = std::fs::read_to_string(out.path().join(format!("down-{ip}.txt"))).unwrap();
        assert_eq!(down.trim(), ip.as_str(), "downloaded from the wrong host");
        assert_eq!(net.logins(i), 1, "scp opened a second connection to {ip}");
    }
    assert_no_masters(&net);
}

#[test]
fn a_remote_timeout_kills_the_remote_command() {
    let Some(net) = SshNet::start(1) else { return };
    let started = Instant::now();
    let out = run(
        &net,
        &net.toml("", ""),
        r#"on(hosts(), || {
               try { sh("sleep 29.25", #{ timeout: "1s" }); } catch (e) { print(e.message); }
               // The connection is still open: the remote command was stopped by itself.
               sleep("500ms");
               let r = sh("pgrep -f 'sleep 29[.]25' || echo none-left", #{ allow_fail: true });
               print(`after=${r.stdout}`);
               sh("sleep 29.25", #{ timeout: "1s" });
           });"#,
        &[],
    );
    out.assert_code(1)
        .assert_stdout_contains("command timed out after 1s")
        .assert_stdout_contains("after=none-left")
        .assert_stderr_contains("command timed out after 1s");
    // Far below the 29 s of the sleeps (the run also takes and releases the remote lock).
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        wait_until(Duration::from_secs(3), || processes_with("sleep 29.25")
            .is_empty()),
        "the remote sleep outlived its timeout: {:?}",
        processes_with("sleep 29.25")
    );
    assert_no_masters(&net);
}

#[test]
fn per_host_results_go_to_the_report_and_changed_hosts_to_the_rollback() {
    let Some(mut net) = SshNet::start(3) else {
        return;
    };
    net.stop_sshd(1);
    let ips = net.ips();
    let out = run(
        &net,
        &net.toml("", ""),
        r#"phase("Check", || { on(hosts(), #{ max_fail: 1 }, || sh("true")); });
           phase("Switch", #{ changes: true }, || {
               on(hosts(), #{ batch: 2, max_fail: 1 }, || sh("hostname -I"));
           });
           phase("Verify", #{ required: true }, || { throw "verification failed"; });
           fn rollback(ctx) { print(`rollback hosts=${ctx.hosts}`); }"#,
        &[],
    );
    out.assert_code(1)
        .assert_stdout_contains(&format!("rollback hosts=[\"{}\", \"{}\"]", ips[0], ips[2]));
    // One host of three failed within the budget: the phase scores 2/3 of 5.
    out.assert_stderr_contains("phase score 3.3/5");
    let report = crate::support::newest_report(out.path());
    let hosts = report["phases"][1]["hosts"].as_array().unwrap();
    let row = |i: usize, key: &str| hosts[i][key].clone();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    assert_eq!(row(0, "host"), ips[0].as_str());
    assert_eq!(
        (row(0, "status"), row(0, "changed"), row(0, "batch")),
        ("passed".into(), true.into(), 1.into())
    );
    assert_eq!(
        (row(1, "status"), row(1, "changed")),
        ("failed".into(), false.into())
    );
    assert!(row(1, "error").as_str().unwrap().contains("host down"));
    assert_eq!(
        (row(2, "status"), row(2, "changed"), row(2, "batch")),
        ("passed".into(), true.into(), 2.into())
    );
    // The phase before any change: hosts recorded, none changed.
    let before = report["phases"][0]["hosts"].as_array().unwrap();
    assert!(before.iter().all(|h| h["changed"] == false), "{before:?}");
    let runs = out.path().join(".deployer/runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(
        md.contains(&format!("- ✓ host {} (batch 1, ", ips[0])),
        "{md}"
    );
    assert!(md.contains("ms, changed)\n"), "{md}");
    assert!(
        md.contains(&format!("- ✗ host {} (batch 1, ", ips[1])),
        "{md}"
    );
    crate::pipeline::validate(&report);
    assert_no_masters(&net);
}

#[test]
fn a_dry_run_runs_nothing_on_the_hosts() {
    // The hosts do not exist: a dry run runs nothing there; it only tries to read the
    // remote lock (read-only), and says it could not.
    let toml = "default_env = \"test\"\n[env.test]\nhosts = [\"10.231.0.11\", \"10.231.0.12\"]\n[env.test.ssh]\nconnect_timeout = \"1s\"\n";
    Test::new()
        .file("deployer.toml", toml)
        .script(r#"on(hosts(), #{ batch: 1 }, || { sh("systemctl reload app"); upload("a", "/srv/a"); });"#)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run()
        .assert_code(0)
        .assert_stderr_contains("10.231.0.11 | systemctl reload app")
        .assert_stderr_contains("copy a to 10.231.0.12:/srv/a")
        .assert_stderr_contains("dry run: the remote lock on 10.231.0.11 was not checked");
}

#[test]
fn a_secret_in_a_remote_argv_is_warned_about() {
    let Some(net) = SshNet::start(1) else { return };
    Test::new()
        .file("deployer.toml", net.toml("", ""))
        .env("DEPLOY_TOKEN", "s3cr3t-in-argv-0815")
        .script(r#"let t = secret("DEPLOY_TOKEN"); on(hosts(), || exec(["test", "-n", t]));"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stderr_contains("a secret is part of a command's arguments on")
        .assert_stderr_contains("pass it through `env`")
        .assert_stderr_not_contains("s3cr3t-in-argv-0815");
}

#[test]
fn fs_changes_inside_on_act_on_the_host_and_a_dry_run_names_it() {
    // A dry run sends no change: the host need not exist. fs:: inside on() means the host
    // (tests/cli/remote_files.rs runs them for real), local(|| ...) this machine.
    let toml = "default_env = \"test\"\n[env.test]\nhosts = [\"10.231.0.11\"]\n";
    let out = Test::new()
        .file("deployer.toml", toml)
        .script(
            r#"on(hosts(), || { local(|| fs::write("here.txt", "local")); fs::write("there.txt", "x"); });"#,
        )
        .args(["run", "deploy.rhai", "--dry-run"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("would 10.231.0.11 | write: there.txt")
        .assert_stderr_contains("would write: here.txt");
    assert!(!out.path().join("here.txt").exists() && !out.path().join("there.txt").exists());
}

#[test]
fn a_host_cut_off_mid_deploy_stops_the_rollout_and_the_changed_hosts_roll_back() {
    let Some(net) = SshNet::start(3) else { return };
    let ips = net.ips();
    let t = Test::new();
    let dir = t.path().display().to_string();
    let running = t
        .file("deployer.toml", net.toml("", ""))
        .script(&format!(
            r#"phase("Switch", #{{ changes: true }}, || {{
                   on(hosts(), #{{ batch: 1 }}, || {{
                       sh("touch started-$(hostname -I | tr -d ' '); sleep 2", #{{ cwd: "{dir}" }});
                   }});
               }});
               fn rollback(ctx) {{
                   print(`rollback hosts=${{ctx.hosts}}`);
                   on(ctx.hosts, #{{ max_fail: "100%" }}, || sh("touch rolled-$(hostname -I | tr -d ' ')", #{{ cwd: "{dir}" }}));
               }}"#
        ))
        .args(["run", "deploy.rhai"])
        .spawn();
    let started = running.path().join(format!("started-{}", ips[1]));
    assert!(
        wait_until(Duration::from_secs(15), || started.exists()),
        "host 2 never started"
    );
    net.cut(1);
    let out = running.wait(Duration::from_secs(30));
    out.assert_code(1)
        .assert_stdout_contains(&format!("rollback hosts=[\"{}\", \"{}\"]", ips[0], ips[1]))
        .assert_stderr_contains(&format!("the rollout stopped before {}", ips[2]))
        .assert_stderr_contains(&format!("{}: lost the connection to {}", ips[1], ips[1]));
    let dir = out.path();
    assert!(
        !dir.join(format!("started-{}", ips[2])).exists(),
        "the rollout went on to host 3"
    );
    assert!(
        dir.join(format!("rolled-{}", ips[0])).exists(),
        "host 1 was not rolled back"
    );
    assert!(
        !dir.join(format!("rolled-{}", ips[2])).exists(),
        "host 3 never changed"
    );
    assert_no_masters(&net);
    // The cut host's sshd session never sees its client go; the guard must still end it.
    let ns = net.hosts[1].ns.clone();
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &ns])
        .output()
        .unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(!pids.is_empty(), "expected sshd processes in {ns}");
    drop(net);
    assert!(
        wait_until(Duration::from_secs(2), || pids
            .iter()
            .all(|p| !pid_alive(*p))),
        "processes left in {ns} after the guard: {pids:?}"
    );
}

#[test]
fn key_paths_in_deployer_toml_are_relative_to_its_folder() {
    let Some(net) = SshNet::start(1) else { return };
    let key = std::fs::read(net.file("client_key")).unwrap();
    let known = std::fs::read(net.file("known_hosts")).unwrap();
    let toml = net.toml("identity = \"keys/id\"\nknown_hosts = \"keys/known\"\n", "");
    let t = Test::new()
        .file("proj/deployer.toml", toml)
        .file("proj/keys/id", key)
        .file("proj/keys/known", known)
        .file("proj/deploy.rhai", r#"on(hosts(), || sh("true"));"#);
    use std::os::unix::fs::PermissionsExt;
    let id = t.path().join("proj/keys/id");
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Run from the folder above: the paths are not relative to it.
    t.args(["run", "proj/deploy.rhai"]).run().assert_code(0);
    assert_no_masters(&net);
}

#[test]
fn hosts_of_a_batch_run_at_the_same_time() {
    let Some(net) = SshNet::start(3) else { return };
    let ips = net.ips();
    let t = Test::new();
    let dir = t.path().display().to_string();
    let started = Instant::now();
    let out = t
        .file("deployer.toml", net.toml("", ""))
        .script(&format!(
            r#"let r = on(hosts(), #{{ batch: 3 }}, || {{
                   let me = host();
                   sh(`date +%s%N > start-${{me}}; sleep 1; date +%s%N > end-${{me}}`, #{{ cwd: "{dir}" }});
                   me
               }});
               print(`done=${{r.keys().len()}}`);"#
        ))
        .args(["run", "deploy.rhai"])
        .run();
    let took = started.elapsed();
    out.assert_code(0)
        .assert_stdout_contains("done=3")
        .assert_stderr_contains("batch 1/1: ")
        .assert_stderr_contains("of up to 3 at once");
    let read = |name: String| -> u128 {
        std::fs::read_to_string(out.path().join(&name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .trim()
            .parse()
            .unwrap()
    };
    // Every host started before any host ended: the three ran at the same time.
    let last_start = ips
        .iter()
        .map(|ip| read(format!("start-{ip}")))
        .max()
        .unwrap();
    let first_end = ips
        .iter()
        .map(|ip| read(format!("end-{ip}")))
        .min()
        .unwrap();
    assert!(
        last_start < first_end,
        "the hosts of a batch ran one after the other ({took:?})"
    );
    assert_no_masters(&net);
}

#[test]
fn a_failure_beyond_the_budget_stops_the_other_hosts_of_its_batch() {
    let Some(net) = SshNet::start(3) else { return };
    let ips = net.ips();
    let t = Test::new();
    let started = Instant::now();
    let out = t
        .file("deployer.toml", net.toml("", ""))
        .script(&format!(
            r#"phase("Switch", #{{ changes: true }}, || {{
                   on(hosts(), #{{ batch: 3, max_fail: 0 }}, || {{
                       if host() == "{}" {{ sh("sleep 0.5; exit 7"); }}
                       sh("sleep 27");
                   }});
               }});
               fn rollback(ctx) {{ print(`rollback of ${{ctx.hosts.len()}} hosts`); }}"#,
            ips[1]
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stdout_contains("rollback of 3 hosts")
        .assert_stderr_contains("1 of 3 hosts failed, more than the failure budget (max_fail 0)")
        .assert_stderr_contains(&format!(
            "the rollout stopped before {}, {}",
            ips[0], ips[2]
        ));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the other hosts were not stopped: {:?}",
        started.elapsed()
    );
    // Nothing deployer started is left on any host.
    assert!(
        wait_until(Duration::from_secs(5), || processes_with("sleep 27")
            .is_empty()),
        "remote commands left running: {:?}",
        processes_with("sleep 27")
    );
    let report = crate::support::newest_report(out.path());
    let hosts = report["phases"][0]["hosts"].as_array().unwrap();
    let status: Vec<_> = hosts
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            (ips[0].clone(), "stopped".to_string()),
            (ips[1].clone(), "failed".to_string()),
            (ips[2].clone(), "stopped".to_string())
        ]
    );
    assert_no_masters(&net);
}

#[test]
fn a_host_failing_within_the_budget_is_rolled_back_alone_and_deployer_rollback_takes_the_rest_from_the_record(
) {
    let Some(net) = SshNet::start(3) else { return };
    let ips = net.ips();
    let t = Test::new();
    let dir = t.path().display().to_string();
    let out = t
        .file("deployer.toml", net.toml("", ""))
        .script(&format!(
            r#"phase("Switch", #{{ changes: true }}, || {{
                   on(hosts(), #{{ batch: 1, max_fail: 1 }}, || {{
                       sh("touch switched-$(hostname -I | tr -d ' ')", #{{ cwd: "{dir}" }});
                       if host() == "{}" {{ throw "health check failed on this host"; }}
                   }});
               }});
               fn rollback(ctx) {{
                   print(`rollback hosts=${{ctx.hosts}}`);
                   on(ctx.hosts, || sh("touch rolled-$(hostname -I | tr -d ' ')", #{{ cwd: "{dir}" }}));
               }}"#,
            ips[1]
        ))
        .args(["run", "deploy.rhai"])
        .run();
    // The failed host was rolled back on its own, the rollout went on to the third.
    out.assert_code(0)
        .assert_stdout_contains(&format!("rollback hosts=[\"{}\"]", ips[1]))
        .assert_stdout_not_contains(&format!("rollback hosts=[\"{}\"", ips[0]))
        .assert_stderr_contains(&format!("━━ Rollback of {}: ", ips[1]))
        .assert_stderr_contains(&format!("{} rolled back in", ips[1]));
    let d = out.path();
    assert!(
        d.join(format!("switched-{}", ips[2])).exists(),
        "the rollout stopped"
    );
    assert!(d.join(format!("rolled-{}", ips[1])).exists());
    assert!(!d.join(format!("rolled-{}", ips[0])).exists());
    let report = crate::support::newest_report(d);
    let hosts = report["phases"][0]["hosts"].as_array().unwrap();
    assert_eq!(hosts[1]["rollback"], "ok", "{hosts:?}");
    assert_eq!(hosts[0].get("rollback"), None, "{hosts:?}");
    assert_eq!(
        report["changed_hosts"],
        serde_json::json!([ips[0], ips[1], ips[2]])
    );
    // The history line keeps what happened to the hosts.
    let (code, stdout, _) = deployer_in(d, &["history"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("3: 3 changed, 1 failed, 1 rolled back alone"),
        "{stdout}"
    );
    // `deployer rollback` rolls back the hosts the deploy changed and left changed.
    let (code, stdout, stderr) = deployer_in(d, &["rollback", "deploy.rhai", "--yes"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("rollback hosts=[\"{}\", \"{}\"]", ips[0], ips[2])),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("the last deploy of test (run "), "{stderr}");
    assert!(d.join(format!("rolled-{}", ips[0])).exists());
    assert!(d.join(format!("rolled-{}", ips[2])).exists());
    let report = crate::support::newest_report(d);
    assert_eq!(
        report["rollback"]["hosts"],
        serde_json::json!([ips[0], ips[2]])
    );
    assert_no_masters(&net);
}

#[test]
fn a_noisy_remote_shell_is_left_out_of_the_output_and_named_once() {
    let Some(net) = SshNet::start(1) else { return };
    // The key's forced command stands for a ~/.bashrc that prints on every shell.
    let auth = net.file("authorized_keys");
    let key = std::fs::read_to_string(&auth).unwrap();
    std::fs::write(
        &auth,
        format!(
            "command=\"echo 'Welcome to web1!'; echo 'last login: never' >&2; eval \\\"$SSH_ORIGINAL_COMMAND\\\"\" {key}"
        ),
    )
    .unwrap();
    let out = Test::new()
        .file("deployer.toml", net.toml("", ""))
        .file("a.txt", "payload")
        .script(
            r#"on(hosts(), || {
                   let r = sh("echo out; echo err >&2");
                   let o = r.stdout;
                   o.trim();
                   let e = r.stderr;
                   e.trim();
                   print(`stdout=[${o}] stderr=[${e}]`);
                   let r = exec(["printf", "%s", "x"]);
                   print(`exact=[${r.stdout}]`);
                   upload("a.txt", "/tmp/never-there.txt");
               });"#,
        )
        .args(["run", "deploy.rhai", "-v"])
        .run();
    out.assert_stdout_contains("stdout=[out] stderr=[err]")
        .assert_stdout_contains("exact=[x]")
        .assert_stderr_contains(
            "the remote shell prints text before every command (\"Welcome to web1!\")",
        )
        .assert_stderr_contains("~/.bashrc")
        .assert_stderr_not_contains("| Welcome to web1!");
    let warned = out
        .stderr
        .matches("prints text before every command")
        .count();
    assert_eq!(warned, 1, "warned {warned} times");
    // scp/sftp break on such a shell: the error says why.
    out.assert_code(1)
        .assert_stderr_contains("upload() of a.txt")
        .assert_stderr_contains("start-up file");
    assert_no_masters(&net);
}

#[test]
fn copies_use_rsync_when_both_ends_have_it_and_land_where_scp_would() {
    let Some(net) = SshNet::start(1) else { return };
    if !std::path::Path::new("/usr/bin/rsync").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "rsync is missing (apt-get install rsync); CI=true requires it"
        );
        eprintln!("SKIPPED copies_use_rsync_when_both_ends_have_it: rsync is missing");
        return;
    }
    let ip = net.ips()[0].clone();
    // A PATH with ssh and scp but no rsync: the copy falls back to scp.
    let t = Test::new();
    let bin = t.path().join("no-rsync-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["ssh", "scp"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool)).unwrap();
    }
    let dir = t.path().display().to_string();
    let script = format!(
        r#"on(hosts(), || {{
               upload("art", "{dir}/first");
               upload("art", "{dir}/first");
               upload("art/app.txt", "{dir}/one.txt");
               download("{dir}/first", "back");
           }});"#
    );
    let t = t
        .file("deployer.toml", net.toml("", ""))
        .file("art/app.txt", "release 42\n")
        .file("art/sub/x.txt", "x\n")
        .script(&script)
        .args(["run", "deploy.rhai"]);
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_contains(&format!("$ {ip} | rsync art {ip}:{dir}/first"))
        .assert_stderr_not_contains("| scp ");
    let d = out.path();
    let read = |p: &str| std::fs::read_to_string(d.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    // A folder copied to a new path becomes it; copied again, it goes inside (as scp -r).
    assert_eq!(read("first/app.txt"), "release 42\n");
    assert_eq!(read("first/sub/x.txt"), "x\n");
    assert_eq!(read("first/art/app.txt"), "release 42\n");
    assert_eq!(read("one.txt"), "release 42\n");
    assert_eq!(read("back/art/sub/x.txt"), "x\n");
    assert_eq!(net.logins(0), 1, "rsync opened a second connection");
    // Without rsync here, the same script copies with scp, to the same places.
    for p in ["first", "one.txt", "back"] {
        let p = d.join(p);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
    let out = t.env("PATH", bin.display().to_string()).run();
    out.assert_code(0)
        .assert_stderr_contains(&format!("$ {ip} | scp art {ip}:{dir}/first"))
        .assert_stderr_not_contains("| rsync ");
    assert_eq!(read("first/app.txt"), "release 42\n");
    assert_eq!(read("first/art/app.txt"), "release 42\n");
    assert_eq!(read("back/art/sub/x.txt"), "x\n");
    assert_no_masters(&net);
}

#[test]
fn stdin_reaches_a_remote_command_byte_for_byte() {
    let Some(net) = SshNet::start(1) else { return };
    Test::new()
        .file("deployer.toml", net.toml("", ""))
        .script(
            r#"on(hosts(), || {
                   let input = "it's \"quoted\" $HOME `x` %s\n\\ second line\n";
                   let r = exec(["cat"], #{ stdin: input });
                   print(`same=${r.stdout == input}`);
                   let n = sh("wc -l", #{ stdin: "a\nb\nc\n" }).stdout;
                   n.trim();
                   print(`lines=${n}`);
               });"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("same=true")
        .assert_stdout_contains("lines=3");
    assert_no_masters(&net);
}

#[test]
fn a_remote_commands_output_is_bounded_like_a_local_ones_and_fs_read_is_not_cut() {
    // 20 MB from a command on a host: the last 16 MiB are kept, `truncated` says so and a
    // warning says how much was dropped (before, all of it was held in memory). A file
    // operation's answer has its own, larger bound: fs::read of a 20 MB file on the host
    // comes back whole.
    let Some(net) = SshNet::start(1) else { return };
    let t = Test::new();
    let dir = t.path().display().to_string();
    t.file("deployer.toml", net.toml("", ""))
        .script(&format!(
            r#"on(hosts(), || {{
                   let r = sh("head -c 20000000 /dev/zero | tr '\\0' x", #{{ quiet: true }});
                   print(`len=${{r.stdout.len()}} truncated=${{r.truncated}}`);
                   let s = sh("echo small");
                   print(`small=${{s.truncated}}`);
                   sh("head -c 20000000 /dev/zero | tr '\\0' y > big.txt", #{{ cwd: "{dir}" }});
                   print(`read=${{fs::read("{dir}/big.txt").len()}}`);
               }});"#
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains(&format!("len={} truncated=true", 16 * 1024 * 1024))
        .assert_stdout_contains("small=false")
        .assert_stdout_contains("read=20000000")
        // The count includes the line deployer's remote shell prints before the command.
        .assert_stderr_contains("was cut: its first 32228")
        .assert_stderr_contains("bytes were dropped and r.stdout holds only the last 16 MiB");
    assert_no_masters(&net);
}

#[test]
fn spawn_in_local_inside_on_is_refused_before_it_starts_anything() {
    let Some(net) = SshNet::start(1) else { return };
    let out = run(
        &net,
        &net.toml("", ""),
        r#"on(hosts(), || local(|| spawn(["sleep", "23.5"])));"#,
        &[],
    );
    out.assert_stderr_contains("spawn() inside on(...) (in local(...))")
        .assert_stderr_contains("start it before or after on(...)");
    assert_ne!(out.code(), 0);
    assert!(
        processes_with("sleep 23.5").is_empty(),
        "{:?}",
        processes_with("sleep 23.5")
    );
    assert_no_masters(&net);
}

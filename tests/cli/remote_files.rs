//! `fs::*`, std/releases and std/laravel's log scan on remote hosts inside `on(...)`: each
//! test host is a network namespace with its own sshd (support/sshnet.rs, subnet
//! 10.232.N.0/24 so these never meet tests/cli/remote.rs's hosts) and its own deploy root
//! (a host variable). The namespaces share the file system, so the tests read the results
//! from disk and prove the work went over ssh with sshd's log of logins (one per host)
//! and with a host that is down. Without root they print SKIPPED.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::sshnet::{processes_with, SshNet};
use crate::support::{Output, Test};

fn start(n: usize) -> Option<SshNet> {
    SshNet::start_on(n, 232, 'f')
}

/// deployer.toml with a `root` host variable per host: a folder of its own under `base`.
fn toml(net: &SshNet, base: &str) -> String {
    let mut vars = String::new();
    for ip in net.ips() {
        vars.push_str(&format!(
            "[env.test.host_vars.\"{ip}\"]\nroot = \"{base}/{ip}\"\n"
        ));
    }
    net.toml("", &vars)
}

fn run(test: Test, toml: &str, script: &str, extra: &[&str]) -> Output {
    // Each file operation is a round trip over the host's connection: on a machine shared
    // by several builds the releases flow needs more than the default 60 s bound.
    test.timeout(std::time::Duration::from_secs(180))
        .file("deployer.toml", toml)
        .script(script)
        .args(["run", "deploy.rhai"])
        .args(extra)
        .run()
}

fn base(net: &SshNet) -> String {
    let b = net.dir.path().join("roots");
    std::fs::create_dir_all(&b).unwrap();
    b.display().to_string()
}

#[test]
fn releases_are_created_activated_pruned_and_switched_back_on_each_host() {
    let Some(net) = start(2) else { return };
    let base = base(&net);
    let out = run(
        Test::new(),
        &toml(&net, &base),
        r#"import "std/releases" as releases;
           on(hosts(), #{ batch: 1 }, || {
               let root = host_var("root");
               for name in ["r1", "r2", "r3"] {
                   let dir = releases::create(root, name);
                   fs::write(`${dir}/VERSION`, `${name} on ${host()}`);
                   releases::activate(root, name);
               }
               let removed = releases::prune(root, 2);
               let back = releases::switch_back(root);
               print(`${host()}: list=${releases::list(root)} removed=${removed} back=${back} live=${releases::current(root)} bad=${releases::is_bad(root, "r3")} version=${fs::read(root + "/current/VERSION")}`);
           });"#,
        &[],
    );
    out.assert_code(0);
    for (i, ip) in net.ips().iter().enumerate() {
        out.assert_stdout_contains(&format!(
            "{ip}: list=[\"r2\", \"r3\"] removed=[\"r1\"] back=r2 live=r2 bad=true version=r2 on {ip}"
        ));
        let root = format!("{base}/{ip}");
        assert_eq!(
            std::fs::read_link(format!("{root}/current"))
                .unwrap()
                .display()
                .to_string(),
            "releases/r2"
        );
        assert!(!std::path::Path::new(&format!("{root}/releases/r1")).exists());
        assert!(std::path::Path::new(&format!("{root}/releases/r3/.deployer-bad")).exists());
        let journal = std::fs::read_to_string(format!("{root}/releases.json")).unwrap();
        for ev in ["created", "live", "removed", "bad", "rolled_back"] {
            assert!(
                journal.contains(&format!("\"event\": \"{ev}\"")),
                "{journal}"
            );
        }
        // No temp link or temp file left beside `current` or the journal.
        let left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.contains("deployer-"))
            .collect();
        assert!(left.is_empty(), "temp files left in {root}: {left:?}");
        // Every operation went over the one connection of that host.
        assert_eq!(net.logins(i), 1, "logins on {ip}");
    }
}

#[test]
fn fs_functions_act_on_the_host_and_name_it_in_errors() {
    let Some(net) = start(1) else { return };
    let base = base(&net);
    let ips = net.ips();
    let out = run(
        Test::new(),
        &toml(&net, &base),
        &format!(
            r#"on(["{a}"], || {{
                   let root = host_var("root");
                   fs::mkdir(root + "/d/e");
                   fs::write(root + "/d/f.txt", "one\n");
                   fs::append(root + "/d/f.txt", "two\n");
                   print(`list=${{fs::list(root + "/d")}} exists=${{fs::exists(root + "/d/f.txt")}} file=${{fs::is_file(root + "/d/f.txt")}} dir=${{fs::is_dir(root + "/d/e")}} size=${{fs::size(root + "/d/f.txt")}}`);
                   print(`which=${{fs::which("sh") != ()}} none=${{fs::which("no-such-program-here") == ()}} free=${{fs::free_bytes(root) > 0}}`);
                   print(`removed=${{fs::remove(root + "/d/e")}} again=${{fs::remove(root + "/d/e")}}`);
                   try {{ fs::read(root + "/missing.txt"); }} catch (e) {{ print(`read: ${{e.kind}}: ${{e.message}}`); }}
                   try {{ fs::remove("/tmp/.."); }} catch (e) {{ print(`refused: ${{e.kind}}: ${{e.message}}`); }}
                   try {{ fs::remove("/"); }} catch (e) {{ print(`root: ${{e.kind}}`); }}
                   try {{ fs::port_free(8080); }} catch (e) {{ print(`port: ${{e.message}}`); }}
                   try {{ fs::dotenv(root + "/d/f.txt"); }} catch (e) {{ print(`dotenv: ${{e.message}}`); }}
               }});"#,
            a = ips[0],
        ),
        &[],
    );
    let root = format!("{base}/{}", ips[0]);
    out.assert_stdout_contains("list=[\"e\", \"f.txt\"] exists=true file=true dir=true size=8")
        .assert_stdout_contains("which=true none=true free=true")
        .assert_stdout_contains("removed=true again=false")
        .assert_stdout_contains(&format!(
            "read: fs: cannot read {}:{root}/missing.txt: No such file or directory",
            ips[0]
        ))
        .assert_stdout_contains(&format!(
            "refused: usage: cannot remove {}:/tmp/..: refusing to touch the root folder; nothing was changed",
            ips[0]
        ))
        .assert_stdout_contains("root: usage")
        .assert_stdout_contains(&format!(
            "port: fs::port_free(8080) looks at this machine's ports, not at {}'s",
            ips[0]
        ));
    assert_eq!(
        std::fs::read_to_string(format!("{root}/d/f.txt")).unwrap(),
        "one\ntwo\n"
    );
    // `f.txt` is not a dotenv file: the error names the file and line.
    out.assert_code(0)
        .assert_stdout_contains(&format!("dotenv: {root}/d/f.txt line 1"));
    assert_eq!(net.logins(0), 1);
    // The refused paths still exist.
    assert!(std::path::Path::new(&base).exists());
}

#[test]
fn a_host_that_is_down_fails_fs_naming_it() {
    let Some(mut net) = start(1) else { return };
    let base = base(&net);
    net.stop_sshd(0);
    let ip = &net.ips()[0];
    let out = run(
        Test::new(),
        &toml(&net, &base),
        r#"on(hosts(), || fs::mkdir(host_var("root") + "/x"));"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains(&format!("cannot connect to {ip}: host down"));
    assert!(!std::path::Path::new(&format!("{base}/{ip}/x")).exists());
}

#[test]
fn a_dry_run_reads_the_host_and_changes_nothing() {
    let Some(net) = start(1) else { return };
    let base = base(&net);
    let ip = net.ips()[0].clone();
    let root = format!("{base}/{ip}");
    std::fs::create_dir_all(format!("{root}/releases/r1")).unwrap();
    std::os::unix::fs::symlink("releases/r1", format!("{root}/current")).unwrap();
    let out = run(
        Test::new(),
        &toml(&net, &base),
        r#"import "std/releases" as releases;
           on(hosts(), || {
               let root = host_var("root");
               print(`live=${releases::current(root)}`);
               releases::create(root, "r2");
               releases::activate(root, "r2");
               fs::write(root + "/secret.txt", "x");
               fs::remove(root + "/releases/r1");
           });"#,
        &["--dry-run"],
    );
    out.assert_code(0)
        .assert_stdout_contains("live=r1")
        .assert_stderr_contains(&format!("would {ip} | create folder: {root}/releases/r2"))
        .assert_stderr_contains(&format!("would {ip} | link: {root}/current -> releases/r2"))
        .assert_stderr_contains(&format!("would {ip} | remove: {root}/releases/r1"));
    assert!(!std::path::Path::new(&format!("{root}/releases/r2")).exists());
    assert!(!std::path::Path::new(&format!("{root}/secret.txt")).exists());
    assert!(std::path::Path::new(&format!("{root}/releases/r1")).exists());
    assert!(!std::path::Path::new(&format!("{root}/releases.json")).exists());
    assert_eq!(
        std::fs::read_link(format!("{root}/current"))
            .unwrap()
            .display()
            .to_string(),
        "releases/r1"
    );
}

#[test]
fn written_content_never_appears_in_any_argv() {
    let Some(net) = start(1) else { return };
    let base = base(&net);
    let secret = "s3cr3t-fs-payload-7Qx";
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let scanner = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut scans = 0u32;
            while !stop.load(Ordering::SeqCst) && scans < 100_000 {
                scans += 1;
                for (_, cmd) in processes_with(secret) {
                    if !cmd.contains("cargo") && !cmd.contains("deployer-") {
                        seen.lock().unwrap().push(cmd);
                    }
                }
            }
        })
    };
    let out = run(
        Test::new().env("FS_SECRET", secret),
        &toml(&net, &base),
        r#"let s = secret("FS_SECRET");
           on(hosts(), || {
               let root = host_var("root");
               fs::mkdir(root);
               for i in 0..10 {
                   fs::write(root + "/token", s);
                   fs::append(root + "/log", s);
               }
               print(`same=${fs::read(root + "/token") == s}`);
           });"#,
        &[],
    );
    stop.store(true, Ordering::SeqCst);
    scanner.join().unwrap();
    out.assert_code(0).assert_stdout_contains("same=true");
    let ip = &net.ips()[0];
    assert_eq!(
        std::fs::read_to_string(format!("{base}/{ip}/token")).unwrap(),
        secret
    );
    let seen = seen.lock().unwrap();
    assert!(seen.is_empty(), "the secret was in an argv: {seen:?}");
}

#[test]
fn laravel_log_errors_reads_the_log_on_the_host() {
    let Some(net) = start(1) else { return };
    let base = base(&net);
    let ip = net.ips()[0].clone();
    let logs = format!("{base}/{ip}/app/storage/logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        format!("{logs}/laravel.log"),
        "[2026-11-23 19:00:00] production.ERROR: old failure\n[2026-11-23 19:12:05] production.ERROR: SQLSTATE broken after deploy\n[2026-11-23 19:12:06] production.INFO: fine\n",
    )
    .unwrap();
    let out = run(
        Test::new(),
        &toml(&net, &base),
        r#"import "std/laravel" as laravel;
           let r = on(hosts(), || laravel::log_errors(host_var("root") + "/app", "2026-11-23 19:12:00"));
           for h in hosts() { print(`${h}: ${r[h].len()} ${r[h]}`); }"#,
        &[],
    );
    out.assert_code(0).assert_stdout_contains(&format!(
        "{ip}: 1 [\"[2026-11-23 19:12:05] production.ERROR: SQLSTATE broken after deploy\"]"
    ));
    assert_eq!(net.logins(0), 1);
}

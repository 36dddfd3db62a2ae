//! examples/fleet end to end: `hosts.sh up 3` makes three namespace hosts with their own
//! sshd (subnet 10.241.N.0/24, names starting with `ft`), a good release goes to all of
//! them in batches of two, a broken one (`--var break=true`) is stopped after the first
//! host and rolled back there, and `hosts.sh down` removes everything. The apps answer on
//! each host's own address, checked from here. Needs root; SKIPPED otherwise (a failure
//! with `CI=true`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Output, Test};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example's hosts, removed (`hosts.sh down`) on drop, also when the test fails.
struct Fleet {
    env: Vec<(String, String)>,
    dir: PathBuf,
    ips: Vec<String>,
}

impl Fleet {
    fn up(dir: &Path, n: usize) -> Option<Fleet> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/sbin/sshd").exists() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("the fleet example test needs root and openssh-server (CI=true)");
            }
            eprintln!(
                "SKIPPED: the fleet example needs root, network namespaces and openssh-server"
            );
            return None;
        }
        let k = std::process::id() % 250;
        let net = format!("10.241.{k}");
        let fleet = Fleet {
            env: vec![
                ("FLEET_TAG".into(), format!("ft{k}")),
                ("FLEET_NET".into(), net.clone()),
                ("FLEET_DIR".into(), dir.display().to_string()),
            ],
            dir: dir.to_path_buf(),
            ips: (1..=n).map(|i| format!("{net}.{}", 10 + i)).collect(),
        };
        fleet.hosts_sh(&["down"]);
        let out = fleet.hosts_sh(&["up", &n.to_string()]);
        assert!(
            out.status.success(),
            "hosts.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(fleet)
    }

    fn hosts_sh(&self, args: &[&str]) -> std::process::Output {
        Command::new(repo().join("examples/fleet/hosts.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run hosts.sh")
    }

    fn root(&self, i: usize) -> PathBuf {
        self.dir.join(".fleet/hosts").join(&self.ips[i]).join("app")
    }

    fn live(&self, i: usize) -> String {
        std::fs::read_link(self.root(i).join("current"))
            .map(|p| {
                p.display()
                    .to_string()
                    .trim_start_matches("releases/")
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// What the app on host `i` says at /health, fetched from here.
    fn health(&self, i: usize) -> String {
        use std::io::{Read, Write};
        let addr: std::net::SocketAddr = format!("{}:8080", self.ips[i]).parse().unwrap();
        let Ok(mut s) =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.hosts_sh(&["down"]);
    }
}

fn deploy(dir: &Path, extra: &[&str]) -> Output {
    let app = repo().join("examples/quickstart/app");
    let script = std::fs::read_to_string(repo().join("examples/fleet/deploy.rhai")).unwrap();
    // The inventory hosts.sh wrote, its relative paths (keys, known_hosts, run records)
    // made absolute for a run from the test's own folder.
    let toml = std::fs::read_to_string(dir.join("deployer.toml"))
        .unwrap()
        .replace("\".fleet/", &format!("\"{}/.fleet/", dir.display()));
    Test::new()
        .timeout(std::time::Duration::from_secs(240))
        .file("deployer.toml", &toml)
        .file("deploy.rhai", &script)
        .args([
            "run",
            "deploy.rhai",
            "--var",
            &format!("app={}", app.display()),
        ])
        .args(extra)
        .run()
}

#[test]
fn fleet_example_deploys_in_batches_then_stops_and_rolls_back_a_broken_release() {
    let dir = crate::support::TempDir::new();
    let Some(fleet) = Fleet::up(dir.path(), 3) else {
        return;
    };
    let ips = fleet.ips.clone();
    let good = deploy(dir.path(), &[]);
    good.assert_code(0)
        .assert_stderr_contains(&format!("batch 1/2: {}, {}", ips[0], ips[1]))
        .assert_stderr_contains(&format!("batch 2/2: {}", ips[2]));
    let release = fleet.live(0);
    assert!(!release.is_empty(), "no release live on {}", ips[0]);
    for (i, ip) in ips.iter().enumerate() {
        good.assert_stdout_contains(&format!("{ip}: live release {release}"));
        assert_eq!(fleet.live(i), release, "host {i}");
        assert!(
            fleet.health(i).contains(&release),
            "host {i}: {}",
            fleet.health(i)
        );
    }

    // The hosts of a batch run at once: the broken release reaches both hosts of the first
    // batch (the first failure stops the other, or finds it changed already), never the
    // third, and the rollback gets exactly the hosts that changed.
    let bad = deploy(dir.path(), &["--var", "break=true"]);
    bad.assert_code(1)
        .assert_stderr_contains(
            "more than the failure budget (max_fail 0); the rollout stopped before ",
        )
        .assert_stderr_contains("rollback succeeded");
    let stopped = bad
        .stderr
        .lines()
        .find(|l| l.contains("the rollout stopped before "))
        .unwrap_or_default();
    assert!(stopped.contains(ips[2].as_str()), "{stopped}");
    let rolled = bad
        .stderr
        .lines()
        .find(|l| l.starts_with("rolling back "))
        .unwrap_or_default()
        .to_string();
    assert!(
        !rolled.contains(ips[2].as_str()),
        "the third host changed: {rolled}"
    );
    let changed: Vec<usize> = (0..2)
        .filter(|i| rolled.contains(ips[*i].as_str()))
        .collect();
    assert!(!changed.is_empty(), "no host rolled back: {rolled}");
    for i in &changed {
        bad.assert_stdout_contains(&format!("{}: rolled back, live release {release}", ips[*i]));
    }
    for i in 0..3 {
        assert_eq!(fleet.live(i), release, "host {i} after the rollback");
        assert!(
            fleet.health(i).contains(&release),
            "host {i}: {}",
            fleet.health(i)
        );
    }
    // The broken release is marked bad where it went, and never reached the third host.
    let releases = |i: usize| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(fleet.root(i).join("releases"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    for i in &changed {
        let got = releases(*i);
        assert_eq!(got.len(), 2, "host {i}: {got:?}");
        assert!(fleet
            .root(*i)
            .join("releases")
            .join(&got[1])
            .join(".deployer-bad")
            .exists());
    }
    assert_eq!(releases(2), std::slice::from_ref(&release));

    // down removes the hosts and the apps they ran.
    let out = fleet.hosts_sh(&["down"]);
    assert!(out.status.success());
    assert!(!dir.path().join(".fleet").exists());
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let tag = &fleet.env[0].1;
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&format!("{tag}-h")),
        "namespaces left"
    );
    // No app is left running on any of the hosts (the namespaces share the process table;
    // a connection attempt proves nothing here: this machine's network may accept any).
    for ip in &ips {
        let left = crate::support::sshnet::processes_with(&format!("--listen {ip} "));
        assert!(left.is_empty(), "apps left on {ip} after down: {left:?}");
    }
}

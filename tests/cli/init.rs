//! `deployer init`: every template writes a script and a deployer.toml that pass `deployer
//! check` and a `--dry-run` at once, running no tool (each is a fake on PATH that fails the
//! test when called); files are never overwritten without --force.

use std::path::Path;

use crate::support::fake::{self, Fake};
use crate::support::{deployer_in, TempDir};

const TEMPLATES: [&str; 5] = [
    "systemd",
    "laravel",
    "docker-compose",
    "cloudflare",
    "static-ssh",
];

/// Tools a template's real run would call: in a dry run none may run. Each fake records its
/// call and exits 97.
const TOOLS: [&str; 16] = [
    "wrangler",
    "php",
    "composer",
    "npm",
    "node",
    "pm2",
    "docker",
    "docker-compose",
    "ssh",
    "scp",
    "rsync",
    "systemctl",
    "journalctl",
    "git",
    "cargo",
    "curl",
];

/// Installs the failing fakes in `root/bin` and returns the PATH that puts them first.
fn fakes(root: &Path) -> String {
    let bin = fake::bin_dir(root);
    for tool in TOOLS {
        Fake::new(tool)
            .then(&format!(
                "echo '{tool} was called, and a dry run must run nothing' >&2; exit 97"
            ))
            .install(&bin);
    }
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn init_every_template_passes_check_and_a_dry_run_that_runs_nothing() {
    for name in TEMPLATES {
        let tmp = TempDir::new();
        let root = tmp.path();
        let path = fakes(root);
        let env = [("PATH", path.as_str())];
        let (code, stdout, stderr) = deployer_in(root, &["init", "--template", name, "proj"], &env);
        assert_eq!(code, 0, "{name}: init\n{stdout}\n{stderr}");
        assert!(root.join("proj/deploy.rhai").is_file(), "{name}");
        assert!(root.join("proj/deployer.toml").is_file(), "{name}");
        assert!(
            stdout.contains("Next:")
                && stdout.contains(
                    "deployer check proj/deploy.rhai && deployer run proj/deploy.rhai --dry-run"
                ),
            "{name}: init says what to edit next\n{stdout}"
        );
        let script = std::fs::read_to_string(root.join("proj/deploy.rhai")).unwrap();
        assert!(
            script.lines().count() <= 150,
            "{name}: longer than 150 lines"
        );
        let toml = std::fs::read_to_string(root.join("proj/deployer.toml")).unwrap();
        for url in toml.split(['"', ' ']).filter(|w| w.contains("://")) {
            assert!(
                url.starts_with("http://127.0.0.1:"),
                "{name}: deployer.toml points at {url}, not 127.0.0.1"
            );
        }

        let (code, stdout, stderr) = deployer_in(root, &["check", "proj/deploy.rhai"], &env);
        assert_eq!(code, 0, "{name}: check\n{stdout}\n{stderr}");

        let (code, stdout, stderr) =
            deployer_in(root, &["run", "proj/deploy.rhai", "--dry-run"], &env);
        let calls = fake::calls(root);
        // With hosts (static-ssh), a dry run connects to read the remote lock (the fake
        // refuses, so the run says the lock was not checked): connections that run no
        // remote command (`-N`, `-O check`) are the only calls allowed.
        let connects = |c: &&String| {
            c.starts_with("ssh ") && (c.contains(" -N -- ") || c.contains(" -O check "))
        };
        let other: Vec<&String> = calls.iter().filter(|c| !connects(c)).collect();
        if calls.iter().any(|c| connects(&c)) {
            assert!(
                stderr.contains("dry run: the remote lock on 127.0.0.1 was not checked"),
                "{name}: {stderr}"
            );
        }
        assert!(
            other.is_empty(),
            "{name}: the dry run ran {other:?}\n{stdout}\n{stderr}"
        );
        assert_eq!(code, 0, "{name}: dry run\n{stdout}\n{stderr}");
        assert!(
            stderr.contains("would "),
            "{name}: the dry run says what it would do\n{stderr}"
        );
        assert!(
            !stderr.contains("FAIL"),
            "{name}: the dry run failed a check\n{stderr}"
        );
    }
}

#[test]
fn init_refuses_to_overwrite_and_force_overwrites() {
    let tmp = TempDir::new();
    let root = tmp.path();
    std::fs::write(root.join("deployer.toml"), "# mine\n").unwrap();
    let (code, stdout, stderr) = deployer_in(root, &["init", "--template", "laravel"], &[]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("./deployer.toml exists already; nothing was written. Use --force"),
        "{stderr}"
    );
    assert!(!root.join("deploy.rhai").exists(), "nothing is written");
    assert_eq!(
        std::fs::read_to_string(root.join("deployer.toml")).unwrap(),
        "# mine\n"
    );

    let (code, stdout, stderr) =
        deployer_in(root, &["init", "--template", "laravel", "--force"], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let toml = std::fs::read_to_string(root.join("deployer.toml")).unwrap();
    assert!(toml.contains("deployer init --template laravel"), "{toml}");
    assert!(root.join("deploy.rhai").is_file());

    // Both exist now: the error names both.
    let (code, _, stderr) = deployer_in(root, &["init", "--template", "systemd"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("./deploy.rhai and ./deployer.toml exist already"),
        "{stderr}"
    );
}

#[test]
fn init_unknown_template_lists_the_known_ones() {
    let tmp = TempDir::new();
    let (code, stdout, stderr) = deployer_in(tmp.path(), &["init", "--template", "laravell"], &[]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("unknown template `laravell`"), "{stderr}");
    assert!(stderr.contains("did you mean `laravel`?"), "{stderr}");
    for name in TEMPLATES {
        assert!(stderr.contains(name), "{name} missing from\n{stderr}");
    }
    assert!(!tmp.path().join("deploy.rhai").exists());

    let (code, stdout, _) = deployer_in(tmp.path(), &["init", "--list"], &[]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), TEMPLATES.len(), "{stdout}");
    for (line, name) in stdout.lines().zip(TEMPLATES) {
        assert!(line.starts_with(name), "{line}");
    }
}

/// The systemd template for real, on this machine: a release goes live (the build copied
/// with fs::copy, the shared .env linked, the unit restarted through a fake systemctl, the
/// health URL of a real server checked); a second release that fails its health check is
/// rolled back to the first.
#[test]
fn init_systemd_template_deploys_and_rolls_back_for_real() {
    use crate::support::server::{Behaviour, TestServer};
    let tmp = TempDir::new();
    let root = tmp.path();
    let bin = fake::bin_dir(root);
    Fake::new("systemctl")
        .then(r#"case "$1" in is-active) echo active ;; esac"#)
        .install(&bin);
    Fake::new("journalctl").install(&bin);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path.as_str())];
    let (code, _, stderr) = deployer_in(root, &["init", "--template", "systemd"], &env);
    assert_eq!(code, 0, "{stderr}");
    let srv = root.join("srv");
    std::fs::create_dir_all(srv.join("shared")).unwrap();
    std::fs::write(srv.join("shared/.env"), "PORT=3000\n").unwrap();
    std::fs::create_dir_all(root.join("dist")).unwrap();
    std::fs::write(root.join("dist/app.js"), "v1\n").unwrap();
    let server = TestServer::start();
    let vars = |health: &str| {
        vec![
            "--var".to_string(),
            format!("root={}", srv.display()),
            "--var".to_string(),
            "build=true".to_string(),
            "--var".to_string(),
            format!("health_url={health}"),
            "--var".to_string(),
            "health_attempts=1".to_string(),
        ]
    };
    let run = |health: &str| {
        let mut args = vec!["run".to_string(), "deploy.rhai".to_string()];
        args.extend(vars(health));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        deployer_in(root, &args, &env)
    };
    let live = || {
        std::fs::read_link(srv.join("current"))
            .unwrap()
            .display()
            .to_string()
    };

    let (code, stdout, stderr) = run(&server.url("/health"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let first = live();
    assert!(first.starts_with("releases/"), "{first}");
    assert_eq!(
        std::fs::read_to_string(srv.join("current/app/app.js")).unwrap(),
        "v1\n"
    );
    assert_eq!(
        std::fs::read_to_string(srv.join("current/.env")).unwrap(),
        "PORT=3000\n"
    );
    assert!(fake::calls(root).contains(&"systemctl restart app.service".to_string()));

    // The second release fails its health check once; the rollback's check passes.
    std::fs::write(root.join("dist/app.js"), "v2\n").unwrap();
    server.set("/health", Behaviour::Sequence(vec![503, 200]));
    let (code, stdout, stderr) = run(&server.url("/health"));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert_eq!(live(), first, "rolled back to the first release\n{stderr}");
    let releases: Vec<String> = std::fs::read_dir(srv.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(releases.len(), 2, "{releases:?}");
    let second = releases
        .iter()
        .find(|r| format!("releases/{r}") != first)
        .unwrap();
    assert!(
        srv.join("releases")
            .join(second)
            .join(".deployer-bad")
            .exists(),
        "the release left is marked bad"
    );
    assert_eq!(
        std::fs::read_to_string(srv.join("current/app/app.js")).unwrap(),
        "v1\n"
    );
}

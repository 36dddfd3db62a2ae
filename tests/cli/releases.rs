//! std/releases through the real binary: a release store that knows its history (the
//! journal), rollbacks to what was live, pruning that keeps the last good release, shared
//! files, and what the history says about each run.

use std::path::Path;
use std::time::Duration;

use crate::support::{Output, Test};

/// A deploy script over `app/`: each run creates release `--var release=NAME` (with the
/// shared `.env` and `storage/`), may fail its trial (`trial_fails`), goes live, prunes to
/// one good release, and may fail its health phase (`broken`). `fn rollback` switches back
/// and checks the release it went to (a `cannot-start` file in it makes it fail).
const DEPLOY: &str = r#"import "std/releases" as releases;
let root = "app";
let name = var("release", "");
phase("Build & deploy", #{ required: true, changes: true }, || {
    let dir = releases::create(root, name, #{ linked_files: [".env"], linked_dirs: ["storage"] });
    fs::write(dir + "/version", name);
    if var("trial_fails", false) {
        releases::mark_failed(root, name, "did not start on its trial port");
        throw `release ${name} failed its trial`;
    }
    releases::activate(root, name);
    print(`pruned ${releases::prune(root, 1)}`);
    if var("hang", false) { sleep("30s"); }
});
phase("Health", #{ required: true }, || {
    check("the release works", || !var("broken", false));
});
fn rollback(ctx) {
    let live = releases::current("app");
    if ctx.phase != () && live != var("release", "") {
        print(`nothing to undo: ${live} is still live`);
        return;
    }
    let target = releases::switch_back("app", |t| {
        if fs::exists(`app/releases/${t}/cannot-start`) { throw `release ${t} cannot start`; }
    });
    print(`rolled back to ${target}; phase ${ctx.phase ?? "none"}`);
}
"#;

/// A test folder holding the deploy script and the shared `.env`.
fn project() -> Test {
    Test::new()
        .script(DEPLOY)
        .file("app/shared/.env", "APP_KEY=base64:abc\n")
}

/// Runs `deployer ARGS` in the project folder `dir` (kept across runs).
fn deployer(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(crate::support::BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn deploy(dir: &Path, release: &str, extra: &[&str]) -> (i32, String, String) {
    let var = format!("release={release}");
    let mut args = vec!["run", "deploy.rhai", "--var", var.as_str()];
    args.extend_from_slice(extra);
    deployer(dir, &args)
}

fn live(dir: &Path) -> String {
    std::fs::read_link(dir.join("app/current"))
        .unwrap()
        .display()
        .to_string()
}

fn releases_on_disk(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("app/releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn journal(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("app/releases.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    j["events"].as_array().unwrap().clone()
}

#[track_caller]
fn ok(r: &(i32, String, String), code: i32) {
    assert_eq!(r.0, code, "stdout:\n{}\nstderr:\n{}", r.1, r.2);
}

#[test]
fn a_rollback_returns_to_the_release_that_was_live_not_a_failed_trial_and_prune_keeps_it() {
    let t = project();
    let dir = t.path();
    ok(&deploy(dir, "r1", &[]), 0);
    assert_eq!(live(dir), "releases/r1");
    // The shared files are links into app/shared, the same for every release.
    assert_eq!(
        std::fs::read_to_string(dir.join("app/releases/r1/.env")).unwrap(),
        "APP_KEY=base64:abc\n"
    );
    std::fs::write(dir.join("app/releases/r1/storage/upload.txt"), "kept").unwrap();

    // r2's trial fails: it never goes live; the rollback has nothing to undo.
    let r = deploy(dir, "r2", &["--var", "trial_fails=true"]);
    ok(&r, 1);
    assert!(r.1.contains("nothing to undo: r1 is still live"), "{}", r.1);
    assert_eq!(live(dir), "releases/r1");

    // r3 goes live and fails its health phase: back to r1 (live before), not r2 (newer name).
    let r = deploy(dir, "r3", &["--var", "broken=true"]);
    ok(&r, 1);
    assert!(r.1.contains("rolled back to r1; phase Health"), "{}", r.1);
    assert!(
        r.2.contains("rolled back from r3 to r1; r3 is marked bad"),
        "{}",
        r.2
    );
    // `fn rollback(ctx)` no longer shares its name with a std/releases function.
    assert!(!r.2.contains("is defined in"), "{}", r.2);
    assert_eq!(live(dir), "releases/r1");
    // Pruning at r3's activation removed the failed trial r2, never r1 (r3's rollback target).
    assert!(r.1.contains(r#"pruned ["r2"]"#), "{}", r.1);
    assert!(dir.join("app/releases/r3/.deployer-bad").is_file());

    // r4 goes live: prune(1) keeps r4 and r1 (the release a rollback would go to); the bad
    // r3 does not count toward keep and goes.
    let r = deploy(dir, "r4", &[]);
    ok(&r, 0);
    assert!(r.1.contains(r#"pruned ["r3"]"#), "{}", r.1);
    assert_eq!(releases_on_disk(dir), ["r1", "r4"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("app/releases/r4/storage/upload.txt")).unwrap(),
        "kept"
    );

    // `deployer rollback`: ctx.phase is (), and it goes back to r1.
    let r = deployer(dir, &["rollback", "deploy.rhai", "--yes"]);
    ok(&r, 0);
    assert!(r.1.contains("rolled back to r1; phase none"), "{}", r.1);
    assert_eq!(live(dir), "releases/r1");
    // Every release live before r1 is bad or removed: a further rollback says so and
    // changes nothing.
    let r = deployer(dir, &["rollback", "deploy.rhai", "--yes"]);
    ok(&r, 3);
    assert!(
        r.2.contains("cannot roll back from release r1 in app/releases: every release live before r1 is excluded (marked bad: r4; removed: r3)"),
        "{}",
        r.2
    );
    assert_eq!(live(dir), "releases/r1");

    let events: Vec<String> = journal(dir)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["release"].as_str().unwrap(),
                e["event"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "r2 failed",
        "r3 rolled_back",
        "r2 removed",
        "r4 bad",
        "r4 rolled_back",
    ] {
        assert!(
            events.contains(&want.to_string()),
            "{want} not in {events:?}"
        );
    }
    assert!(!events.contains(&"r2 live".to_string()), "{events:?}");

    // The history says which runs deployed and which rolled back, and what went live.
    let (code, stdout, _) = deployer(dir, &["history", "--script", "deploy"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("mode") && lines[0].contains("release"),
        "{stdout}"
    );
    let row = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    // Newest first: the failed rollback, the manual rollback, r4, r3, r2, r1.
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(row(1).contains(&"rollback"), "{stdout}");
    assert!(
        lines[2].contains("rollback") && lines[2].contains("r4 -> r1"),
        "{stdout}"
    );
    assert!(
        lines[3].contains("deploy") && lines[3].contains(" r4 "),
        "{stdout}"
    );
    assert!(
        lines[4].contains("FAILED") && lines[4].contains("r3 -> r1"),
        "{stdout}"
    );
    assert!(
        lines[6].contains("PASS") && lines[6].contains(" r1 "),
        "{stdout}"
    );
    let (_, stdout, _) = deployer(dir, &["history", "--script", "other.rhai"]);
    assert!(
        stdout.contains("no runs recorded for script other.rhai"),
        "{stdout}"
    );
    // The --vars of each run are recorded.
    let (_, json, _) = deployer(dir, &["history", "--json", "-n", "10"]);
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(entries[3]["vars"]["broken"], "true");
    assert_eq!(entries[3]["recorded"]["rolled_back_from"], "r3");
    assert_eq!(entries[2]["mode"], "deploy");
    assert_eq!(entries[1]["mode"], "rollback");
}

#[test]
fn a_rollback_whose_switch_fails_leaves_an_accurate_state() {
    let t = project();
    let dir = t.path();
    ok(&deploy(dir, "r1", &[]), 0);
    // r1 can no longer start (its binary broke on disk, say): the switch back fails.
    std::fs::write(dir.join("app/releases/r1/cannot-start"), "").unwrap();
    let r = deploy(dir, "r2", &["--var", "broken=true"]);
    ok(&r, 3);
    assert!(
        r.2.contains("rolled back from r2 to r1, but r1 failed its check: release r1 cannot start; app/current points at r1; r2 is not marked bad"),
        "{}",
        r.2
    );
    // Exactly that: current points at r1, r2 is not marked bad, and the journal says so.
    assert_eq!(live(dir), "releases/r1");
    assert!(!dir.join("app/releases/r2/.deployer-bad").exists());
    let last = journal(dir).last().unwrap().clone();
    assert_eq!(last["release"], "r2");
    assert_eq!(last["event"], "rollback_failed");
    assert_eq!(last["to"], "r1");
    assert!(
        last["note"]
            .as_str()
            .unwrap()
            .contains("release r1 cannot start"),
        "{last}"
    );
}

#[test]
fn releases_need_their_shared_files_and_a_run_interrupted_after_cutover_says_what_is_live() {
    // A linked file missing from shared/ stops the release before anything links to it.
    let out: Output = Test::new()
        .script(DEPLOY)
        .args(["run", "deploy.rhai", "--var", "release=r1"])
        .run();
    out.assert_code(1).assert_stderr_contains(
        "cannot link .env into release r1: app/shared/.env does not exist; create it there first",
    );

    // Interrupted after the switch: the new release is live, and the run says so.
    let t = project().args([
        "run",
        "deploy.rhai",
        "--var",
        "release=r1",
        "--var",
        "hang=true",
    ]);
    let running = t.spawn();
    running.wait_for_stderr("release r1 is live", Duration::from_secs(10));
    running.signal(libc::SIGTERM);
    let out = running.wait(Duration::from_secs(10));
    out.assert_code(130).assert_stderr_contains(
        "release r1 went live before the interrupt and is live now; if it must go back, run `deployer rollback deploy.rhai --env default`",
    );
    let r = crate::support::newest_report(out.path());
    assert_eq!(r["rollback"]["status"], "not_run");
    assert_eq!(r["recorded"]["release"], "r1");
    assert_eq!(r["schema"], "deployer/report/v3");
}

// ---------------------------------------------------------------- std/service

/// Installs recording fakes of `systemctl` and `journalctl` in `DIR/bin`: each call is
/// appended to `DIR/calls.log`; `bad.service` fails to restart, `flaky.service` restarts
/// but is not active afterwards.
fn fake_systemd(t: &Test) -> std::path::PathBuf {
    let bin = crate::support::fake::bin_dir(t.path());
    let log = t.path().join("calls.log");
    crate::support::write_executable(
        &bin,
        "systemctl",
        &format!(
            r#"echo "systemctl $*" >> '{log}'
for last; do :; done
case "$*" in
  *"is-active "*)
    case "$last" in
      flaky.service) echo failed; exit 3 ;;
      *) echo active; exit 0 ;;
    esac ;;
  *"status "*) echo "● $2 - demo"; echo "   Active: active (running)"; exit 0 ;;
esac
if [ "$last" = bad.service ]; then
  echo "Job for bad.service failed because the control process exited with error code." >&2
  exit 1
fi
exit 0
"#,
            log = log.display()
        ),
    );
    crate::support::write_executable(
        &bin,
        "journalctl",
        &format!(
            r#"echo "journalctl $*" >> '{log}'
echo "Dec 02 07:00:01 host app[42]: starting"
echo "Dec 02 07:00:02 host app[42]: error: address 127.0.0.1:8080 already in use"
"#,
            log = log.display()
        ),
    );
    bin
}

#[test]
fn service_drives_systemctl_and_shows_the_journal_when_a_unit_fails() {
    let t = Test::new();
    let bin = fake_systemd(&t);
    let script = r#"import "std/service" as service;
service::restart("app.service");
service::reload("nginx.service", #{ user: true });
service::stop("app.service");
print(`active=${service::is_active("app.service")} flaky=${service::is_active("flaky.service")}`);
print(service::status("app.service"));
try { service::restart("flaky.service"); } catch (e) { print(`flaky: ${e.kind}: ${e.message}`); }
try { service::start("app.service", #{ lnes: 5 }); } catch (e) { print(`typo: ${e.message}`); }
service::restart("bad.service", #{ lines: 5 });
"#;
    let out = t
        .script(script)
        .path_prepend(bin)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stdout_contains("active=true flaky=false")
        .assert_stdout_contains("Active: active (running)")
        .assert_stdout_contains("flaky: service: flaky.service is failed after systemctl restart; last journal lines:\nDec 02 07:00:01 host app[42]: starting")
        .assert_stdout_contains("typo: service::start(): unknown option `lnes`; did you mean `lines`?")
        .assert_stderr_contains("systemctl restart bad.service failed (exit 1): Job for bad.service failed because the control process exited with error code.; last journal lines:")
        .assert_stderr_contains("error: address 127.0.0.1:8080 already in use");
    let calls = std::fs::read_to_string(out.path().join("calls.log")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            "systemctl restart app.service",
            "systemctl is-active app.service",
            "systemctl --user reload nginx.service",
            "systemctl --user is-active nginx.service",
            "systemctl stop app.service",
            "systemctl is-active app.service",
            "systemctl is-active flaky.service",
            "systemctl status app.service --no-pager",
            "systemctl restart flaky.service",
            "systemctl is-active flaky.service",
            "journalctl -u flaky.service -n 20 --no-pager",
            "systemctl restart bad.service",
            "journalctl -u bad.service -n 5 --no-pager",
        ]
    );
}

#[test]
fn service_changes_nothing_in_a_dry_run() {
    let t = Test::new();
    let bin = fake_systemd(&t);
    let out = t
        .script(
            r#"import "std/service" as service;
service::restart("app.service");
print(`active=${service::is_active("app.service")}`);
"#,
        )
        .path_prepend(bin)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("would run: systemctl restart app.service")
        .assert_stdout_contains("active=true");
    let calls = std::fs::read_to_string(out.path().join("calls.log")).unwrap();
    assert_eq!(calls, "systemctl is-active app.service\n");
}

// ---------------------------------------------------------------- backups retention

#[test]
fn backups_are_pruned_by_age_and_count_but_never_the_newest_verified_one() {
    let t = Test::new()
        .script(r#"print(`pruned: ${backups::prune("backups", #{ keep: 2, suffix: ".dump" })}`);"#)
        .args(["run", "deploy.rhai", "--dry-run"]);
    let dir = t.path().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    // (name, age in days, verified)
    let files = [
        ("a-40d.dump", 40, true),
        ("b-20d.dump", 20, false),
        ("c-3d.dump", 3, false),
        ("d-2d.dump", 2, false),
        ("e-1d.dump", 1, false),
        ("notes.txt", 90, false),
    ];
    for (name, age, verified) in files {
        let path = dir.join(name);
        std::fs::write(&path, "dump").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(now - day * age).unwrap();
        if verified {
            std::fs::write(dir.join(format!("{name}.verified")), "size").unwrap();
        }
    }
    let out = t.run();
    // Only what it would do: a-40d is old but the newest verified backup; c-3d is beyond keep 2.
    out.assert_code(0)
        .assert_stdout_contains(r#"pruned: ["b-20d.dump", "c-3d.dump"]"#)
        .assert_stderr_contains("would remove: backups/b-20d.dump");
    assert!(dir.join("b-20d.dump").exists());

    let (code, stdout, stderr) = deployer(t.path(), &["run", "deploy.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(r#"pruned: ["b-20d.dump", "c-3d.dump"]"#),
        "{stdout}"
    );
    assert!(
        stderr.contains("removed 2 old backup(s) from backups (keep_days 14, keep 2)"),
        "{stderr}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "a-40d.dump",
            "a-40d.dump.verified",
            "d-2d.dump",
            "e-1d.dump",
            "notes.txt"
        ]
    );

    // A bad option is an error naming it.
    let t2 = Test::new().file("backups/x.dump", "x");
    t2.script(r#"backups::prune("backups", #{ keep_day: 3 });"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stderr_contains(
            "backups::prune(): unknown option `keep_day`; did you mean `keep_days`?",
        );
}

// ---------------------------------------------------------------- history and trends

#[test]
fn trends_compare_like_with_like_same_script_real_runs_only() {
    let good = r#"phase("Deploy", || { check("ok", || true); });"#;
    let half = r#"phase("Deploy", || { check("ok", || true); check("bad", || false); });"#;
    let t = Test::new().file("a.rhai", good).file("b.rhai", half);
    let dir = t.path();
    let report_of = |stderr: &str| -> serde_json::Value {
        let run_dir = stderr
            .lines()
            .find_map(|l| l.strip_prefix("run recorded in "))
            .unwrap_or_else(|| panic!("no run folder in\n{stderr}"));
        let text = std::fs::read_to_string(dir.join(run_dir).join("report.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let (code, _, first) = deployer(dir, &["run", "a.rhai"]);
    assert_eq!(code, 0, "{first}");
    let first_id = report_of(&first)["run_id"].clone();
    // Another script of the same environment: not compared with a.rhai.
    let (_, _, err) = deployer(dir, &["run", "b.rhai"]);
    let b = report_of(&err);
    assert!(b.get("comparison").is_none(), "{b}");
    assert_eq!(b["trend"], serde_json::json!([50.0]));
    // A dry run of a.rhai: compared, but not part of the trend of later runs.
    let (code, _, err) = deployer(dir, &["run", "a.rhai", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let (_, _, err) = deployer(dir, &["run", "a.rhai"]);
    let a2 = report_of(&err);
    assert_eq!(a2["comparison"]["previous_run_id"], first_id);
    assert_eq!(a2["trend"], serde_json::json!([100.0, 100.0]));
    assert_eq!(a2["mode"], "deploy");
    let (_, stdout, _) = deployer(dir, &["history", "--script", "b"]);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let (_, stdout, _) = deployer(dir, &["history", "--script", "a.rhai"]);
    assert!(stdout.contains("dry-run"), "{stdout}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}

// ---------------------------------------------------------------- the quickstart's app

#[test]
fn quickstart_a_failed_trial_then_a_broken_release_rolls_back_to_the_good_one() {
    use crate::scripts::{copy_quickstart, deployer_in};
    let t = Test::new();
    copy_quickstart(t.path());
    let script = "examples/quickstart/deploy.rhai";
    let state = t.path().join("examples/quickstart/.deploy");
    let fast = ["--var", "monitor=1s", "--var", "interval=200ms"];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", script];
        args.extend_from_slice(&fast);
        args.extend_from_slice(extra);
        deployer_in(t.path(), &args)
    };
    let deploying = || std::fs::read_to_string(state.join("deploying")).unwrap();

    // 1. A good release goes live.
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, 0, "{stderr}");
    let good = deploying();

    // 2. A build whose program cannot start: its trial fails, it never goes live.
    let main_rs = t.path().join("examples/quickstart/app/src/main.rs");
    let source = std::fs::read_to_string(&main_rs).unwrap();
    std::fs::write(
        &main_rs,
        source.replacen(
            "fn main() {",
            "fn main() {\n    if std::env::args().count() > 0 {\n        eprintln!(\"cannot start\");\n        std::process::exit(1);\n    }",
            1,
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, 1, "{stderr}");
    let trial = deploying();
    assert_ne!(trial, good);
    assert!(
        stderr.contains(&format!("release {trial} failed its trial")),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("live release {good}")), "{stdout}");

    // 3. A release that goes live and breaks under monitoring: back to the good one, not to
    //    the newer failed trial.
    std::fs::write(&main_rs, &source).unwrap();
    let (code, stdout, stderr) = run(&["--var", "break=true", "--var", "monitor=10s"]);
    assert_eq!(code, 1, "{stderr}");
    let bad = deploying();
    assert!(
        stderr.contains(&format!("rolled back from {bad} to {good}")),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("live release {good}")), "{stdout}");
    assert_eq!(
        std::fs::read_link(state.join("current")).unwrap(),
        Path::new("releases").join(&good)
    );
    let text = std::fs::read_to_string(state.join("releases.json")).unwrap();
    let journal: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events: Vec<String> = journal["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["release"].as_str().unwrap(),
                e["event"].as_str().unwrap()
            )
        })
        .collect();
    assert!(events.contains(&format!("{trial} failed")), "{events:?}");
    assert!(!events.contains(&format!("{trial} live")), "{events:?}");
    assert!(events.contains(&format!("{bad} rolled_back")), "{events:?}");

    // The history: three deploys, the last rolled back from the bad release to the good one.
    let (code, stdout, _) = deployer_in(t.path(), &["history"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].contains(&format!("{bad} -> {good}")), "{stdout}");
    assert!(lines[2].contains(&format!(" {good} ")), "{stdout}");
}

#[test]
fn the_vars_of_a_run_are_recorded_masked() {
    let out = Test::new()
        .script(
            r#"let key = secret("API_KEY");
let token = var("token", "");
let region = var("region", "eu");
phase("Deploy", || { check("token given", || token != ""); });
"#,
        )
        .env("API_KEY", "s3cr3t-value-123")
        .args([
            "run",
            "deploy.rhai",
            "--var",
            "token=s3cr3t-value-123",
            "--var",
            "region=us",
        ])
        .run();
    out.assert_code(0);
    let r = crate::support::newest_report(out.path());
    assert_eq!(r["vars"]["token"], "***");
    assert_eq!(r["vars"]["region"], "us");
    let history = std::fs::read_to_string(out.path().join(".deployer/history.jsonl")).unwrap();
    assert!(!history.contains("s3cr3t"), "{history}");
    assert!(
        history.contains(r#""vars":{"region":"us","token":"***"}"#),
        "{history}"
    );
}

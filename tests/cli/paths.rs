//! Paths, state files, input limits and lost records, through the real binary: `fs::remove`
//! refuses the folders a script never means to delete, state files never follow planted
//! symlinks, scripts are read with bounds, and a run whose record is lost says so (exit 6).

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::{newest_report, walk, Test};

/// Every file and folder under `dir` (relative paths, sorted), to prove nothing was deleted.
fn tree(dir: &Path) -> Vec<String> {
    assert!(dir.is_dir(), "{} is gone", dir.display());
    walk(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

// ------------------------------------------------------------------ fs::remove

#[test]
fn remove_of_sub_dotdot_is_refused_and_deletes_nothing() {
    let t = Test::new()
        .file("sub/keep.txt", "x")
        .file("app/index.html", "x")
        .script(r#"fs::remove("sub/..");"#);
    let before = tree(t.path());
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(1)
        .assert_stderr_contains(r#"fs::remove(): refusing to touch "sub/..""#)
        .assert_stderr_contains("the current folder")
        .assert_stderr_contains("nothing was changed")
        .assert_stderr_contains("--> deploy.rhai:1:");
    let after: Vec<String> = tree(out.path())
        .into_iter()
        .filter(|p| !p.starts_with(".deployer"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn remove_of_every_spelling_of_the_root_is_refused() {
    // A dry run: even a broken guard would only print "would remove". A refused path is
    // a fault of the script, which a dry run reports with exit 2.
    for path in ["/", "/.", "/..", "/tmp/..", "//.", "/tmp/../."] {
        Test::new()
            .script(&format!("fs::remove({path:?});"))
            .args(["run", "deploy.rhai", "--dry-run"])
            .run()
            .assert_code(2)
            .assert_stderr_contains("refusing to touch")
            .assert_stderr_not_contains("would remove");
    }
    Test::new()
        .script(r#"fs::remove("/tmp/..");"#)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run()
        .assert_stderr_contains("resolves to /, the root folder");
}

#[test]
fn remove_of_the_project_folder_and_the_folders_above_it_is_refused() {
    let t = Test::new()
        .file("a/b/deployer.toml", "")
        .file("a/b/releases/old/x", "x")
        .file(
            "a/b/deploy.rhai",
            r#"for p in ["a/b", "a", "a/b/releases/..", "a/./b/"] {
                   try { fs::remove(p); print(`removed ${p}`); }
                   catch (e) { print(`refused ${p}: ${e.message}`); }
               }
               print(`removed old: ${fs::remove("a/b/releases/old")}`);"#,
        );
    let out = t.args(["run", "a/b/deploy.rhai"]).run();
    out.assert_code(0)
        .assert_stdout_contains("refused a/b: fs::remove(): refusing to touch \"a/b\"")
        .assert_stdout_contains("the project folder (where deployer.toml or the script is)")
        .assert_stdout_contains("refused a: ")
        .assert_stdout_contains("a folder above the project folder")
        .assert_stdout_contains("refused a/b/releases/..: ")
        .assert_stdout_contains("refused a/./b/: ")
        .assert_stdout_not_contains("removed a")
        .assert_stdout_contains("removed old: true");
    assert!(out.path().join("a/b/deploy.rhai").exists());
    assert!(out.path().join("a/b/releases").is_dir());
    assert!(!out.path().join("a/b/releases/old").exists());
}

#[test]
fn remove_through_a_symlink_removes_the_link_and_refuses_its_target() {
    let t = Test::new().file("data/keep.txt", "x").script(
        r#"try { fs::remove("up/."); } catch (e) { print(`refused: ${e.message}`); }
           print(`link removed: ${fs::remove("up")}`);"#,
    );
    std::os::unix::fs::symlink("..", t.path().join("data/up")).unwrap();
    std::os::unix::fs::symlink(t.path(), t.path().join("up")).unwrap();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(0)
        .assert_stdout_contains("refused: fs::remove(): refusing to touch \"up/.\"")
        .assert_stdout_contains("link removed: true");
    assert!(out.path().join("data/keep.txt").exists());
    assert!(!out.path().join("up").exists());
}

#[test]
fn write_over_the_current_folder_is_refused() {
    Test::new()
        .file("sub/keep.txt", "x")
        .script(r#"fs::write("sub/..", "x");"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stderr_contains(r#"fs::write(): refusing to touch "sub/..""#);
}

// ------------------------------------------------------------------ state files

#[test]
fn planted_history_symlink_is_refused_and_its_target_untouched() {
    let t = Test::new()
        .file("victim.txt", "precious\n")
        .script(r#"print("deployed");"#);
    std::fs::create_dir_all(t.path().join(".deployer")).unwrap();
    std::os::unix::fs::symlink(
        t.path().join("victim.txt"),
        t.path().join(".deployer/history.jsonl"),
    )
    .unwrap();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(6)
        .assert_stdout_contains("deployed")
        .assert_stderr_contains("the run's record could not be written")
        .assert_stderr_contains("history.jsonl is a symbolic link")
        .assert_stderr_contains("does not follow symlinks");
    let victim = std::fs::read_to_string(out.path().join("victim.txt")).unwrap();
    assert_eq!(victim, "precious\n");
}

#[test]
fn planted_runs_and_state_folder_symlinks_are_refused() {
    for (link, from) in [(".deployer/runs", "elsewhere"), (".deployer", "elsewhere")] {
        let t = Test::new().script(r#"print("deployed");"#);
        std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
        std::fs::create_dir_all(t.path().join(".deployer")).unwrap();
        if link == ".deployer" {
            std::fs::remove_dir(t.path().join(".deployer")).unwrap();
        }
        std::os::unix::fs::symlink(t.path().join(from), t.path().join(link)).unwrap();
        let out = t.args(["run", "deploy.rhai"]).run();
        // The state folder is checked when the lock is taken, runs/ when the record is written.
        let code = if link == ".deployer" { 2 } else { 6 };
        out.assert_code(code)
            .assert_stderr_contains("is a symbolic link");
        assert!(
            tree(&out.path().join("elsewhere")).is_empty(),
            "{link}: {:?}",
            tree(&out.path().join("elsewhere"))
        );
    }
}

#[test]
fn planted_lock_symlinks_are_refused_and_their_targets_untouched() {
    // lock/ itself a link to another folder.
    let t = Test::new().script(r#"print("deployed");"#);
    std::fs::create_dir_all(t.path().join(".deployer")).unwrap();
    std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(t.path().join("elsewhere"), t.path().join(".deployer/lock"))
        .unwrap();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(2)
        .assert_stderr_contains("lock is a symbolic link")
        .assert_stderr_contains("nothing was run")
        .assert_stdout_not_contains("deployed");
    assert!(tree(&out.path().join("elsewhere")).is_empty());

    // The lock file a link to a file.
    let t = Test::new()
        .file("victim.txt", "precious\n")
        .script(r#"print("deployed");"#);
    std::fs::create_dir_all(t.path().join(".deployer/lock")).unwrap();
    std::os::unix::fs::symlink(
        t.path().join("victim.txt"),
        t.path().join(".deployer/lock/default"),
    )
    .unwrap();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(2)
        .assert_stderr_contains("default is a symbolic link")
        .assert_stdout_not_contains("deployed");
    let victim = std::fs::read_to_string(out.path().join("victim.txt")).unwrap();
    assert_eq!(victim, "precious\n");
}

// ------------------------------------------------------------------ lost records

#[test]
fn history_that_is_a_folder_exits_6_and_says_the_record_is_lost() {
    let t = Test::new().script(r#"print("deployed");"#);
    std::fs::create_dir_all(t.path().join(".deployer/history.jsonl")).unwrap();
    let out = t.args(["run", "deploy.rhai", "--json"]).run();
    out.assert_code(6)
        .assert_stderr_contains("error: the run's record could not be written")
        .assert_stderr_contains("history.jsonl: it is a folder, not a file; move it away")
        .assert_stdout_contains("\"exit_code\": 6");
    // The run folder that lacks its history line is marked.
    let runs: Vec<_> = std::fs::read_dir(out.path().join(".deployer/runs"))
        .unwrap()
        .flatten()
        .collect();
    // The run folder, and the pointer the next run finds it by.
    assert_eq!(runs.len(), 2, "{runs:?}");
    let dir = runs.iter().find(|e| e.path().is_dir()).unwrap().path();
    assert!(dir.join("INCOMPLETE").is_file());
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert!(out
        .path()
        .join(format!(".deployer/runs/.{id}.incomplete"))
        .is_file());
}

#[test]
fn a_failed_run_whose_record_is_lost_keeps_its_own_code() {
    let t = Test::new().script(r#"throw "broken";"#);
    std::fs::create_dir_all(t.path().join(".deployer/history.jsonl")).unwrap();
    t.args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stderr_contains("the run's record could not be written");
}

#[test]
fn a_recorded_run_leaves_no_marker() {
    let out = Test::new()
        .script(r#"print("deployed");"#)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0);
    let report = newest_report(out.path());
    let dir = out
        .path()
        .join(".deployer/runs")
        .join(report["run_id"].as_str().unwrap());
    assert!(dir.join("report.json").is_file());
    assert!(!dir.join("INCOMPLETE").exists());
    let left: Vec<_> = std::fs::read_dir(out.path().join(".deployer/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn temp_files_of_killed_runs_are_cleaned_up_on_the_next_run() {
    // Names as deployer's atomic writes make them, with a pid above the kernel's maximum.
    let dead = ".report.json.tmp.2147483646.0";
    let t = Test::new()
        .file(
            ".deployer/runs/20261101T000000Z-default-0000/INCOMPLETE",
            "",
        )
        .file(
            ".deployer/runs/.20261101T000000Z-default-0000.incomplete",
            "",
        )
        .file(
            ".deployer/runs/20261101T000000Z-default-0000/run.log",
            "half",
        )
        .file(
            format!(".deployer/runs/20261101T000000Z-default-0000/{dead}"),
            "{",
        )
        .file(".deployer/lock/.default.tmp.2147483646.3", "{")
        .file(".deployer/.history.jsonl.tmp.2147483646.1", "")
        .file(
            ".deployer/runs/20261101T000000Z-default-0000/.keep.tmp.1.x",
            "",
        )
        .script(r#"print("deployed");"#);
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(0);
    let old = out
        .path()
        .join(".deployer/runs/20261101T000000Z-default-0000");
    assert!(!old.join(dead).exists(), "{:?}", tree(&old));
    assert!(!out
        .path()
        .join(".deployer/lock/.default.tmp.2147483646.3")
        .exists());
    assert!(!out
        .path()
        .join(".deployer/.history.jsonl.tmp.2147483646.1")
        .exists());
    // The cut-off record stays marked; files that are not our temp names stay.
    assert!(old.join("INCOMPLETE").exists() && old.join("run.log").exists());
    assert!(old.join(".keep.tmp.1.x").exists());
}

#[test]
fn taking_over_a_damaged_lock_warns_like_a_stale_one() {
    let t = Test::new()
        .file(".deployer/lock/default", "{ not json")
        .script(r#"print("deployed");"#);
    let lock = std::fs::File::options()
        .write(true)
        .open(t.path().join(".deployer/lock/default"))
        .unwrap();
    lock.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    drop(lock);
    t.args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("deployed")
        .assert_stderr_contains("took over a stale lock of default: the lock file")
        .assert_stderr_contains("could not be read (damaged, last written 6");
}

// ------------------------------------------------------------------ input limits

#[test]
fn a_device_as_script_is_refused_at_once() {
    let started = std::time::Instant::now();
    Test::new()
        .args(["run", "/dev/zero"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("/dev/zero: it is not a regular file")
        .assert_stderr_contains("nothing was run");
    assert!(started.elapsed() < Duration::from_secs(10));
    Test::new()
        .args(["check", "/dev/zero"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("not a regular file");
}

#[test]
fn a_script_over_4_mib_is_refused_with_the_limit() {
    let mut big = b"print(1);\n".to_vec();
    big.resize(4 * 1024 * 1024 + 1, b' ');
    Test::new()
        .file("deploy.rhai", &big)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("larger than 4 MiB, the limit for a script")
        .assert_stdout_not_contains("1");
}

#[test]
fn an_imported_module_over_the_limit_is_refused_too() {
    let mut big = b"fn f() { 1 }\n".to_vec();
    big.resize(4 * 1024 * 1024 + 1, b' ');
    Test::new()
        .file("big.rhai", &big)
        .script(r#"import "big" as b; print(b::f());"#)
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("larger than 4 MiB");
}

#[test]
fn a_script_with_a_byte_order_mark_runs() {
    Test::new()
        .file("deploy.rhai", "\u{feff}print(\"bom ok\");\n")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("bom ok");
    Test::new()
        .file("lib.rhai", "\u{feff}fn hi() { \"module bom ok\" }\n")
        .file(
            "deploy.rhai",
            "\u{feff}import \"lib\" as l; print(l::hi());\n",
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("module bom ok");
}

#[test]
fn a_one_megabyte_line_is_clipped_in_a_diagnostic() {
    let line = format!(
        "let a = \"{}\"; let b = 1 +; // {}\n",
        "x".repeat(300),
        "y".repeat(1_000_000)
    );
    let out = Test::new()
        .file("deploy.rhai", line)
        .args(["check", "deploy.rhai"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("--> deploy.rhai:1:")
        .assert_stderr_contains("…");
    assert!(
        out.stderr.len() < 4_000,
        "{} bytes of stderr",
        out.stderr.len()
    );
    let source_line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(" 1 | "))
        .expect("the source line");
    assert!(source_line.contains("let b = 1 +"), "{source_line}");
}

#[test]
fn a_200k_line_script_is_checked() {
    // Linear in lines: 200,000 lines of calls.
    let text: String = (0..200_000).map(|i| format!("print({i});\n")).collect();
    Test::new()
        .file("deploy.rhai", text)
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stderr_contains("deploy.rhai");
    // Rhai's parser is quadratic in declared variables: too many is an error, at once.
    let text: String = (0..200_000).map(|i| format!("let v{i}=1;\n")).collect();
    Test::new()
        .file("deploy.rhai", text)
        .args(["check", "deploy.rhai"])
        .timeout(Duration::from_secs(30))
        .run()
        .assert_code(2)
        .assert_stderr_contains(
            "deploy.rhai declares 200000 variables (let/const); the limit is 5000",
        )
        .assert_stderr_contains("--> deploy.rhai:5001:1");
}

#[test]
fn a_huge_map_of_strings_ends_with_a_clear_error_not_an_abort() {
    let out = Test::new()
        .env("DEPLOYER_MAX_MEMORY", "128MiB")
        .script(
            r#"let s = "0123456789";
               while s.len() < 4_000_000 { s += s; }
               let m = #{};
               for i in 0..1000 { m[`k${i}`] = s + i; }
               print("built");"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("more than 128 MiB of memory")
        .assert_stderr_contains("DEPLOYER_MAX_MEMORY")
        .assert_stderr_contains("--> deploy.rhai:4:")
        .assert_stdout_not_contains("built");
    // The run is recorded like any failure.
    assert_eq!(newest_report(out.path())["exit_code"], 1);
}

#[test]
fn temp_files_a_killed_run_left_beside_script_files_are_cleaned_up() {
    let t = Test::new()
        .file("app/.REVISION.tmp.2147483646.0", "half")
        .file("app/releases/r1/index.html", "x")
        .file("app/.keep.tmp.notapid.0", "")
        .script(
            r#"fs::write("app/REVISION", "r1");
               fs::symlink_swap("releases/r1", "app/current");"#,
        );
    std::os::unix::fs::symlink(
        "releases/r1",
        t.path().join("app/.current.link.2147483646.4"),
    )
    .unwrap();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(0);
    let app = tree(&out.path().join("app"));
    assert!(!app.iter().any(|p| p.contains("2147483646")), "{app:?}");
    assert!(app.contains(&".keep.tmp.notapid.0".to_string()), "{app:?}");
    assert!(app.contains(&"REVISION".to_string()) && app.contains(&"current".to_string()));
}

#[test]
fn fs_read_of_an_endless_device_is_refused_not_read_forever() {
    Test::new()
        .script(
            r#"try { fs::read("/dev/zero"); } catch (e) { print(`${e.kind}: ${e.message}`); }
               try { fs::dotenv("/dev/zero"); } catch (e) { print(`${e.kind}: ${e.message}`); }
               print(fs::log_errors("/dev/zero", 0).len());"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("fs: cannot read /dev/zero: it is larger than 64 MiB")
        .assert_stdout_contains("\n0\n");
}

#[test]
fn a_module_with_too_many_declarations_is_refused_by_the_check() {
    let text: String = (0..6_000).map(|i| format!("let v{i}=1;\n")).collect();
    Test::new()
        .file("lib/big.rhai", text)
        .script(r#"import "lib/big" as big; print("ran");"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("lib/big.rhai declares 6000 variables")
        .assert_stderr_contains("--> lib/big.rhai:5001:1")
        .assert_stdout_not_contains("ran");
}

#[test]
fn a_one_megabyte_name_in_an_error_message_is_clipped() {
    let out = Test::new()
        .file(
            "deploy.rhai",
            format!("print({});\n", "v".repeat(1_000_000)),
        )
        .args(["check", "deploy.rhai"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("Undefined variable: vvv")
        .assert_stderr_contains("…");
    assert!(
        out.stderr.len() < 4_000,
        "{} bytes of stderr",
        out.stderr.len()
    );
}

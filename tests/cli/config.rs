//! deployer.toml (settings apart from variables, trust), typos that stop the run before
//! anything happens (settings, `--var`, `--env`, option maps), import cycles, and the same
//! configuration whatever the spelling of the script's path.

use std::path::Path;

use crate::support::Test;

/// A script that leaves a file behind when it runs at all.
const TOUCH: &str = r#"exec(["touch", "ran"]);"#;

#[test]
fn a_misspelt_setting_is_an_error_with_the_nearest_key_and_nothing_runs() {
    let out = Test::new()
        .file("deployer.toml", "[env.production]\nconfrim = true\n")
        .script(TOUCH)
        .args(["run", "deploy.rhai", "--env", "production", "--yes"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains(
            "deployer.toml:2:1: unknown setting `confrim` in [env.production]; did you mean `confirm`?",
        )
        .assert_stderr_contains("nothing was run");
    assert!(!out.path().join("ran").exists());
    // The same at the top level and in [score].
    for (toml, needle) in [
        ("defualt_env = \"a\"\n", "deployer.toml:1:1: unknown setting `defualt_env` in the top level; did you mean `default_env`?"),
        ("[score]\npas = 90\n", "deployer.toml:2:1: unknown setting `pas` in [score]; did you mean `pass`?"),
        ("[env.a]\nrollback = \"nevr\"\n", "deployer.toml:2:1: [env.a] rollback = \"nevr\": did you mean \"never\"?"),
    ] {
        let out = Test::new()
            .file("deployer.toml", toml)
            .script(TOUCH)
            .args(["run", "deploy.rhai"])
            .run();
        out.assert_code(2).assert_stderr_contains(needle);
        assert!(!out.path().join("ran").exists(), "{toml}");
    }
}

#[test]
fn variables_in_the_old_place_say_how_to_migrate() {
    Test::new()
        .file(
            "deployer.toml",
            "[env.staging]\nrollback = \"auto\"\nbase_url = \"http://stage\"\n",
        )
        .script(TOUCH)
        .args(["run", "deploy.rhai", "--env", "staging"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("deployer.toml:3:1: unknown setting `base_url` in [env.staging]")
        .assert_stderr_contains("move `base_url = \"http://stage\"` to [env.staging.vars]");
}

#[test]
fn variables_come_from_the_most_specific_table() {
    let config = r#"default_env = "staging"
[vars]
a = "vars"
b = "vars"
c = "vars"
d = "vars"
unread = "not an error: one file serves several scripts"
[scripts.deploy]
b = "scripts.deploy"
c = "scripts.deploy"
d = "scripts.deploy"
[scripts.other]
a = "scripts.other"
[env.staging]
[env.staging.vars]
c = "env.staging.vars"
d = "env.staging.vars"
[env.production.vars]
a = "env.production.vars"
"#;
    Test::new()
        .file("deployer.toml", config)
        .script(r#"print(`a=${var("a")} b=${var("b")} c=${var("c")} d=${var("d")} e=${var("e", "default")}`);"#)
        .args(["run", "deploy.rhai", "--var", "d=cli"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("a=vars b=scripts.deploy c=env.staging.vars d=cli e=default");
}

#[test]
fn remote_settings_are_accepted_and_checked_for_shape() {
    let good = r#"[env.production]
confirm = false
hosts = ["web1", "web2"]
lock_lease = "90s"
lock_path = "/var/tmp/deployer-production.lock"
[env.production.roles]
web = ["web1", "web2"]
[env.production.ssh]
identity = "~/.ssh/deploy_ed25519"
known_hosts = "ops/known_hosts"
connect_timeout = "10s"
[env.production.host_vars.web1]
url = "http://web1:8080"
"#;
    Test::new()
        .file("deployer.toml", good)
        .script(TOUCH)
        // A dry run: a real one stops at the remote lock, since these hosts do not exist.
        .args(["run", "deploy.rhai", "--env", "production", "--dry-run"])
        .run()
        .assert_code(0);
    for (toml, needle) in [
        (
            "[env.p]\nhosts = \"web1\"\n",
            "[env.p] hosts must be an array of strings, got \"web1\"",
        ),
        (
            "[env.p.ssh]\nidentiy = \"k\"\n",
            "unknown setting `identiy` in [env.p.ssh]; did you mean `identity`?",
        ),
        (
            "[env.p.roles]\nweb = [1]\n",
            "[env.p.roles] web must be an array of strings",
        ),
    ] {
        Test::new()
            .file("deployer.toml", toml)
            .script(TOUCH)
            .args(["run", "deploy.rhai", "--env", "p"])
            .run()
            .assert_code(2)
            .assert_stderr_contains(needle);
    }
}

#[test]
fn a_var_that_nothing_reads_is_an_error_with_the_nearest_name() {
    let out = Test::new()
        .file("lib/region.rhai", "fn region() { var(\"region\", \"eu\") }\n")
        .script("import \"lib/region\" as r;\nexec([\"touch\", \"ran\"]);\nif var(\"break\", false) { print(r::region()); }\n")
        .args(["run", "deploy.rhai", "--var", "brake=true"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains(
            "--var brake=...: no var(\"brake\") in the script or its modules reads it",
        )
        .assert_stderr_contains("did you mean `break`? (read at deploy.rhai:3:")
        .assert_stderr_contains("nothing was run");
    assert!(!out.path().join("ran").exists());
    // A name read only inside an imported module counts as read.
    Test::new()
        .file(
            "lib/region.rhai",
            "fn region() { var(\"region\", \"eu\") }\n",
        )
        .script("import \"lib/region\" as r;\nprint(`region=${r::region()}`);\n")
        .args(["run", "deploy.rhai", "--var", "region=us"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("region=us");
}

#[test]
fn a_var_name_computed_at_run_time_makes_unread_vars_a_warning() {
    Test::new()
        .script("let name = \"col\" + \"our\";\nprint(`colour=${var(name, \"none\")}`);\n")
        .args([
            "run",
            "deploy.rhai",
            "--var",
            "colour=red",
            "--var",
            "size=9",
        ])
        .run()
        .assert_code(0)
        .assert_stdout_contains("colour=red")
        .assert_stderr_contains(
            "warning: --var colour=...: no var(\"colour\") with that literal name",
        )
        .assert_stderr_contains("computed at run time (deploy.rhai:2:")
        .assert_stderr_contains("warning: --var size=...");
}

#[test]
fn an_unknown_environment_is_an_error_unless_none_are_defined() {
    let out = Test::new()
        .file(
            "deployer.toml",
            "[env.staging]\n[env.production]\nconfirm = true\n",
        )
        .script(TOUCH)
        .args(["run", "deploy.rhai", "--env", "prodution"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("unknown environment \"prodution\": did you mean \"production\"?");
    assert!(!out.path().join("ran").exists());
    // No deployer.toml at all: any name, with a warning.
    let out = Test::new()
        .script(TOUCH)
        .args(["run", "deploy.rhai", "--env", "anything"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("warning: no deployer.toml found, so no environments are defined: \"anything\" is used as given");
    assert!(out.path().join("ran").exists());
}

#[test]
fn option_typos_are_found_before_running_even_in_fn_bodies() {
    let script = r#"exec(["touch", "ran"]);
let t = "5s";
phase("Deploy", #{ requird: true }, || { exec(["true"]); });
fn rollback(ctx) {
    exec(["x"], #{ timout: "5s" });
    retry(#{ atempts: 3 }, || sh("true", #{ quiet: true, cdw: "." }));
    sh("true", #{ timeout: ctx.limit, cwdd: "." });
}
http::wait_healthy("http://127.0.0.1:9/", #{ attempts: 1, expect: #{ stauts: 200 } });
"#;
    let out = Test::new()
        .script(script)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("phase(): unknown option `requird`; did you mean `required`?")
        .assert_stderr_contains("--> deploy.rhai:3:20")
        .assert_stderr_contains("exec(): unknown option `timout`; did you mean `timeout`?")
        .assert_stderr_contains("--> deploy.rhai:5:20")
        .assert_stderr_contains("retry(): unknown option `atempts`; did you mean `attempts`?")
        .assert_stderr_contains("sh(): unknown option `cdw`; did you mean `cwd`?")
        .assert_stderr_contains("sh(): unknown option `cwdd`; did you mean `cwd`?")
        .assert_stderr_contains("--> deploy.rhai:7:39")
        .assert_stderr_contains(
            "expect: http::wait_healthy(): unknown option `stauts`; did you mean `status`?",
        )
        .assert_stderr_contains("--> deploy.rhai:9:")
        .assert_stderr_contains("6 problems in deploy.rhai; nothing was run");
    assert!(!out.path().join("ran").exists());
    // `deployer check` finds the same, and spawn (custom syntax) too.
    Test::new()
        .script("let p = spawn([\"sleep\", \"1\"], #{ lgo: \"x.log\" });\n")
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("spawn(): unknown option `lgo`; did you mean `log`?")
        .assert_stderr_contains("--> deploy.rhai:1:34");
    // Standard-library functions that check their options with a literal list: the same
    // list serves the check before the run (payload maps are data, never checked).
    Test::new()
        .script("import \"std/cloudflare\" as cf;\nimport \"std/notify\" as notify;\nfn rollback(ctx) {\n    cf::deploy_worker(#{ cwd: \"apps/worker\", envv: \"production\" });\n    notify::webhook(\"http://127.0.0.1:9/\", #{ anything: 1 }, #{ attempts: 1 });\n}\n")
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("cloudflare::deploy_worker(): unknown option `envv`; did you mean `env`?")
        .assert_stderr_contains("--> deploy.rhai:4:46")
        .assert_stderr_contains("1 problem found");
    // A script function of the same name takes whatever it likes.
    Test::new()
        .script("fn sample(url, o) { o.anything }\nprint(sample(\"x\", #{ anything: 1 }));\n")
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(0);
}

#[test]
fn import_cycles_are_errors_naming_the_chain() {
    let t = Test::new()
        .file("b.rhai", "import \"c\" as c;\nfn fb() { 1 }\n")
        .file("c.rhai", "import \"deploy\" as d;\nfn fc() { 2 }\n")
        .script("import \"b\" as b;\nexec([\"touch\", \"ran\"]);\n");
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(2)
        .assert_stderr_contains("import cycle: deploy.rhai → b.rhai → c.rhai → deploy.rhai")
        .assert_stderr_contains("--> c.rhai:1:1");
    assert!(!out.path().join("ran").exists());
    Test::new()
        .file("b.rhai", "import \"c\" as c;\nfn fb() { 1 }\n")
        .file("c.rhai", "import \"deploy\" as d;\nfn fc() { 2 }\n")
        .script("import \"b\" as b;\n")
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("import cycle: deploy.rhai → b.rhai → c.rhai → deploy.rhai");
    // A module importing itself.
    Test::new()
        .file("self.rhai", "import \"self\" as me;\nfn f() { 1 }\n")
        .script("import \"self\" as s;\n")
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("import cycle: self.rhai → self.rhai");
    // The REPL, which loads modules as they are imported.
    Test::new()
        .file("a.rhai", "import \"b\" as b;\nfn fa() { 1 }\n")
        .file("b.rhai", "import \"a\" as a;\nfn fb() { 2 }\n")
        .args(["repl"])
        .stdin("import \"a\" as a;\nprint(\"still here\");\n")
        .run()
        .assert_stderr_contains("import cycle: a.rhai → b.rhai → a.rhai")
        .assert_stdout_contains("still here");
}

/// Runs the binary in `dir` (tests/support's builder always runs in its own temp dir's
/// root), with no trusted folders unless `env` names some.
fn deployer_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut env = env.to_vec();
    env.insert(0, ("DEPLOYER_TRUSTED_DIRS", ""));
    crate::support::deployer_in(dir, args, &env)
}

#[test]
fn the_same_deployer_toml_whatever_the_spelling_of_the_path() {
    let t = Test::new()
        .file(
            "deployer.toml",
            "[env.production]\n[env.production.vars]\nbase_url = \"http://prod\"\n",
        )
        .file(
            "scripts/deploy.rhai",
            r#"print(`url=${var("base_url", "none")}`);"#,
        );
    let root = t.path();
    let (code, stdout, stderr) = deployer_in(
        root,
        &["run", "scripts/deploy.rhai", "--env", "production"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("url=http://prod"), "{stdout}");
    let scripts = root.join("scripts");
    for path in ["deploy.rhai", "./deploy.rhai", "../scripts/deploy.rhai"] {
        let (code, stdout, stderr) =
            deployer_in(&scripts, &["run", path, "--env", "production"], &[]);
        assert_eq!(code, 0, "{path}: {stderr}");
        assert!(stdout.contains("url=http://prod"), "{path}: {stdout}");
    }
    // One history, beside deployer.toml; none under scripts/.
    let history = std::fs::read_to_string(root.join(".deployer/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");
    assert!(!scripts.join(".deployer").exists());
    // `deployer history` from scripts/ reads the same history.
    let (code, stdout, stderr) = deployer_in(&scripts, &["history", "--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.matches("\"run_id\"").count(), 4, "{stdout}");
}

#[cfg(unix)]
#[test]
fn a_deployer_toml_someone_else_could_have_written_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new()
        .file("deployer.toml", "[env.production]\nrollback = \"never\"\n")
        .script(TOUCH);
    let dir = t.path();
    let toml = dir.join("deployer.toml");
    let run = ["run", "deploy.rhai", "--env", "production"];
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, stderr) = deployer_in(dir, &run, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refusing deployer.toml"), "{stderr}");
    assert!(
        stderr.contains("it is world-writable (mode 666)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("DEPLOYER_TRUSTED_DIRS={}", dir.display())),
        "{stderr}"
    );
    assert!(!dir.join("ran").exists());
    // Trusted explicitly: it runs.
    let trusted = format!("/nowhere:{}", dir.display());
    let (code, _, stderr) = deployer_in(dir, &run, &[("DEPLOYER_TRUSTED_DIRS", &trusted)]);
    assert_eq!(code, 0, "{stderr}");
    // Group-writable is fine.
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (code, _, stderr) = deployer_in(dir, &run, &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_deployer_toml_or_state_folder_owned_by_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::support::is_root() {
        crate::support::skip(
            "a_deployer_toml_or_state_folder_owned_by_another_user_is_refused",
            "changing a file's owner needs root",
        );
        return;
    }
    let t = Test::new()
        .file("deployer.toml", "[env.production]\n")
        .script(TOUCH);
    let dir = t.path();
    std::os::unix::fs::chown(dir.join("deployer.toml"), Some(65534), None).unwrap();
    let run = ["run", "deploy.rhai", "--env", "production"];
    let (code, _, stderr) = deployer_in(dir, &run, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("it is owned by uid 65534, not by you (uid 0) or root"),
        "{stderr}"
    );
    assert!(!dir.join("ran").exists());
    // `deployer check` says the same.
    let (code, _, stderr) = deployer_in(dir, &["check", "deploy.rhai"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refusing deployer.toml"), "{stderr}");
    let (code, _, stderr) = deployer_in(dir, &run, &[("DEPLOYER_TRUSTED_DIRS", "*")]);
    assert_eq!(code, 0, "{stderr}");
    // A symbolic link someone else planted, even to a file of ours.
    let t = Test::new()
        .file("ours.toml", "[env.production]\n")
        .script(TOUCH);
    let dir = t.path();
    std::os::unix::fs::symlink("ours.toml", dir.join("deployer.toml")).unwrap();
    std::os::unix::fs::lchown(dir.join("deployer.toml"), Some(65534), None).unwrap();
    let (code, _, stderr) = deployer_in(dir, &run, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("it is a symbolic link owned by uid 65534"),
        "{stderr}"
    );
    // The state folder.
    let t = Test::new().script(TOUCH);
    let state = t.path().join(".deployer");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(2)
        .assert_stderr_contains("refusing state folder")
        .assert_stderr_contains("world-writable");
    assert!(!out.path().join("ran").exists());
}

//! The embedded standard library through the real binary: checks, preflight, git,
//! releases, cloudflare, laravel and notify, with real files, symlinks, git repositories
//! and HTTP servers; wrangler, php and pm2 replaced by recording executables on PATH.

use std::path::{Path, PathBuf};

use crate::support::fake::Fake;
use crate::support::server::{Behaviour, TestServer};
use crate::support::{git, write_executable, Output, Test};

/// Runs `script` as deploy.rhai in `t`'s folder.
fn run_in(t: Test, script: &str, extra: &[&str]) -> Output {
    t.script(script)
        .args(["run", "deploy.rhai"])
        .args(extra)
        .run()
}

/// Creates `DIR/bin` and returns it.
fn bin_dir(t: &Test) -> PathBuf {
    crate::support::fake::bin_dir(t.path())
}

/// Installs a fake `name` in `bin` that appends `name ARGS (in FOLDER)` to `calls.log`
/// beside `bin`, fails its first `fail_first` calls (exit 1), then prints `stdout`.
fn recorder(bin: &Path, name: &str, fail_first: usize, stdout: &str) {
    Fake::new(name)
        .in_folder()
        .fail_first(fail_first)
        .prints(stdout)
        .install(bin);
}

/// The commands the recorders saw, in order.
fn calls(dir: &Path) -> Vec<String> {
    crate::support::fake::calls(dir)
}

/// A repository in `dir` on branch main with commits tagged v1 and v2, and one more commit.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    git(dir, &["config", "user.name", "Deployer Test"]);
    git(dir, &["config", "user.email", "test@example.com"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
    git(dir, &["config", "tag.gpgsign", "false"]);
    for (i, tag) in [Some("v1"), Some("v2"), None].iter().enumerate() {
        std::fs::write(dir.join("app.txt"), format!("version {i}\n")).unwrap();
        git(dir, &["add", "app.txt"]);
        git(dir, &["commit", "-q", "-m", &format!("commit {i}")]);
        if let Some(tag) = tag {
            git(dir, &["tag", tag]);
        }
    }
}

// ---------------------------------------------------------------- std/checks

#[test]
fn checks_readiness_and_pages_available() {
    let server = TestServer::start();
    server.set(
        "/ready-down",
        Behaviour::Json(200, r#"{"database":"disconnected"}"#.into()),
    );
    server.set("/a", Behaviour::Status(200));
    server.set("/b", Behaviour::Status(204));
    server.set("/broken", Behaviour::Status(500));
    let script = format!(
        r#"import "std/checks" as checks;
let base = "{base}";
let r = checks::readiness(base + "/ready");
print(`ready=${{r.status}}`);
try {{ checks::readiness(base + "/ready-down"); }} catch (e) {{ print(`down: ${{e.kind}}: ${{e.message}}`); }}
try {{ checks::readiness(base + "/health"); }} catch (e) {{ print(`nodb: ${{e.message}}`); }}
try {{ checks::json_health(base + "/ready"); }} catch (e) {{ print(`no status: ${{e.kind}}: ${{e.message}}`); }}
let pages = checks::pages_available(base + "/", ["/a", "b"]);
print(`pages=${{pages.len()}} ${{pages[0].path}}=${{pages[0].status}} ${{pages[1].url}}=${{pages[1].status}}`);
try {{
    checks::pages_available(base, ["/missing", "/a", "/broken", "/redirect"]);
}} catch (e) {{
    print(`kind=${{e.kind}} failing=${{e.failing}}`);
    print(e.message);
}}
"#,
        base = server.url("").trim_end_matches('/')
    );
    let out = run_in(Test::new(), &script, &[]);
    out.assert_code(0)
        .assert_stdout_contains("ready=200")
        .assert_stdout_contains(r#"down: health: "#)
        .assert_stdout_contains(r#"says database disconnected, expected "connected""#)
        .assert_stdout_contains("nodb: ")
        .assert_stdout_contains("database (missing)")
        .assert_stdout_contains(r#"no status: health: "#)
        .assert_stdout_contains(r#"/ready says status (missing), expected "healthy""#)
        .assert_stdout_contains(&format!("pages=2 /a=200 {}=204", server.url("/b")))
        .assert_stdout_contains(r#"kind=pages failing=["/missing", "/broken", "/redirect"]"#)
        .assert_stdout_contains("3 of 4 pages of")
        .assert_stdout_contains("/missing: status 404")
        .assert_stdout_contains("/broken: status 500")
        .assert_stdout_contains("/redirect: status 302");
    // Every page was tried, not only up to the first failure.
    assert_eq!(server.hits("/redirect"), 1);
}

#[test]
fn checks_pages_available_reports_connection_errors_per_page() {
    let port = crate::support::free_port();
    let script = format!(
        r#"import "std/checks" as checks;
checks::pages_available("http://127.0.0.1:{port}", ["/", "/login"], #{{ timeout: "2s" }});"#
    );
    run_in(Test::new(), &script, &[])
        .assert_code(1)
        .assert_stderr_contains("2 of 2 pages of http://127.0.0.1:")
        .assert_stderr_contains("/login: connect error");
}

const LARAVEL_LOG: &str = "\
[2026-11-23 19:00:00] production.ERROR: old failure
[2026-11-23 19:12:00] production.INFO: deployed
[2026-11-23 19:12:30] production.ERROR: SQLSTATE[HY000] connection refused
#0 /srv/app/vendor/laravel/framework/src/Database/Connection.php(12): ERROR in trace
[2026-11-23 19:13:00] production.WARNING: slow query
2026-11-23T19:14:00.250Z CRITICAL queue worker died
[2026-11-23 19:15:00] production.EMERGENCY: disk full
";

#[test]
fn checks_log_errors_since_and_no_log_errors() {
    let t = Test::new().file("storage/logs/laravel.log", LARAVEL_LOG);
    let script = r#"import "std/checks" as checks;
let lines = checks::log_errors_since("storage/logs/laravel.log", "2026-11-23T19:12:00Z");
print(`count=${lines.len()}`);
for l in lines { print(`line: ${l}`); }
print(`later=${checks::log_errors_since("storage/logs/laravel.log", "2026-11-23 19:14:30").len()}`);
print(`clean=${checks::no_log_errors("storage/logs/laravel.log", "2026-11-23T20:00:00+00:00")}`);
try { checks::log_errors_since("storage/logs/laravel.log", "yesterday"); } catch (e) { print(`bad since: ${e.kind}: ${e.message}`); }
try { checks::log_errors_since("storage/logs/missing.log", now()); } catch (e) { print(`missing: ${e.kind}: ${e.message}`); }
checks::no_log_errors("storage/logs/laravel.log", "2026-11-23T19:12:00Z");
"#;
    let out = run_in(t, script, &[]);
    out.assert_code(1)
        .assert_stdout_contains("count=3\n")
        .assert_stdout_contains("line: [2026-11-23 19:12:30] production.ERROR: SQLSTATE")
        .assert_stdout_contains("line: 2026-11-23T19:14:00.250Z CRITICAL queue worker died")
        .assert_stdout_contains("line: [2026-11-23 19:15:00] production.EMERGENCY: disk full")
        .assert_stdout_not_contains("old failure")
        .assert_stdout_not_contains("line: #0")
        .assert_stdout_contains("later=1")
        .assert_stdout_contains("clean=true")
        .assert_stdout_contains("bad since: usage: ")
        .assert_stdout_contains(r#"bad time "yesterday""#)
        .assert_stdout_contains("missing: fs: cannot read the log storage/logs/missing.log")
        .assert_stderr_contains(
            "storage/logs/laravel.log has 3 error line(s) since 2026-11-23T19:12:00Z",
        )
        .assert_stderr_contains("production.EMERGENCY: disk full");
}

// ---------------------------------------------------------------- std/preflight

#[test]
fn preflight_checks_each_return_a_result_and_never_throw() {
    let t = Test::new()
        .file("dist/index.html", "<html></html>")
        .file("empty.txt", "")
        .file(
            ".env",
            "APP_KEY=base64:abc\nDB_HOST=127.0.0.1\nDB_PASSWORD=\n# MAIL_HOST=x\n",
        )
        .file("broken.env", "APP_KEY=1\nthis is not a pair\n");
    let bin = bin_dir(&t);
    write_executable(
        &bin,
        "fake-tool",
        "echo 'fake-tool 1.2.3 (build 7)'; echo more\n",
    );
    write_executable(&bin, "stderr-tool", "echo 'stderr-tool version 9' >&2\n");
    write_executable(&bin, "broken-tool", "echo 'cannot start' >&2; exit 2\n");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let script = format!(
        r#"import "std/preflight" as preflight;
fn show(r) {{ print(`${{r.name}} | ${{r.ok}} | ${{r.detail}}`); }}
show(preflight::disk_free(".", 0));
show(preflight::disk_free(".", 1000000000));
show(preflight::disk_free("no/such/dir", 1));
show(preflight::tool("fake-tool"));
show(preflight::tool("stderr-tool", ["-V"]));
show(preflight::tool("broken-tool"));
show(preflight::tool("no-such-tool-xyz"));
show(preflight::port_free({busy_port}));
show(preflight::port_free(free_port()));
show(preflight::port_free(70000));
show(preflight::file_nonempty("dist/index.html"));
show(preflight::file_nonempty("empty.txt"));
show(preflight::file_nonempty("missing.txt"));
show(preflight::file_nonempty("dist"));
show(preflight::env_set(["PF_SET_ONE", "PF_SET_TWO"]));
show(preflight::env_set(["PF_SET_ONE", "PF_MISSING", "PF_EMPTY"]));
show(preflight::env_file_has(".env", ["APP_KEY", "DB_HOST"]));
show(preflight::env_file_has(".env", ["APP_KEY", "DB_PASSWORD", "MAIL_HOST"]));
show(preflight::env_file_has("missing.env", ["APP_KEY"]));
show(preflight::env_file_has("broken.env", ["APP_KEY"]));
"#
    );
    let out = run_in(
        t.path_prepend(&bin)
            .env("PF_SET_ONE", "secret-value-one")
            .env("PF_SET_TWO", "2")
            .env("PF_EMPTY", "")
            .env_remove("PF_MISSING"),
        &script,
        &[],
    );
    drop(busy);
    out.assert_code(0)
        .assert_stdout_contains("disk space on . | true | ")
        .assert_stdout_contains("GB free (need 0 GB)")
        .assert_stdout_contains("disk space on . | false | only ")
        .assert_stdout_contains("need 1000000000 GB: free some space or lower the minimum")
        .assert_stdout_contains("disk space on no/such/dir | false | cannot read the free space of no/such/dir")
        .assert_stdout_contains("fake-tool | true | fake-tool 1.2.3 (build 7)\n")
        .assert_stdout_contains("stderr-tool | true | stderr-tool version 9")
        .assert_stdout_contains("broken-tool | false | broken-tool --version exited with code 2: cannot start")
        .assert_stdout_contains("no-such-tool-xyz | false | no-such-tool-xyz is not on PATH")
        .assert_stdout_contains(&format!(
            "port {busy_port} free | false | something listens on 127.0.0.1:{busy_port}"
        ))
        .assert_stdout_contains("free | true | nothing listens on 127.0.0.1:")
        .assert_stdout_contains("port 70000 free | false | fs::port_free(): the port must be between 1 and 65535, got 70000")
        .assert_stdout_contains("dist/index.html | true | 13 bytes")
        .assert_stdout_contains("empty.txt | false | empty.txt is empty")
        .assert_stdout_contains("missing.txt | false | missing.txt does not exist")
        .assert_stdout_contains("dist | false | dist is a folder, not a file")
        .assert_stdout_contains("environment: PF_SET_ONE, PF_SET_TWO | true | all set")
        .assert_stdout_contains(
            "environment: PF_SET_ONE, PF_MISSING, PF_EMPTY | false | not set: PF_MISSING, PF_EMPTY",
        )
        .assert_stdout_contains(".env | true | defines APP_KEY, DB_HOST")
        .assert_stdout_contains(".env | false | missing: MAIL_HOST; empty: DB_PASSWORD")
        .assert_stdout_contains("missing.env | false | cannot read missing.env")
        .assert_stdout_contains("broken.env | false | broken.env line 2: expected KEY=VALUE")
        .assert_stdout_not_contains("secret-value-one")
        .assert_stdout_not_contains("base64:abc");
}

#[test]
fn preflight_run_runs_every_check_and_fails_once_listing_the_failures() {
    let t = Test::new().file("present.txt", "x");
    let script = r#"import "std/preflight" as preflight;
try {
    preflight::run([
        preflight::file_nonempty("present.txt"),
        || preflight::file_nonempty("absent.txt"),
        || { throw #{ kind: "custom", message: "the API said no" }; },
        #{ name: "migrations reviewed", check: || false },
        #{ name: "last one", check: || { fs::write("last-ran.txt", "yes"); true } },
        || 42,
    ]);
} catch (e) {
    print(`kind=${e.kind} failed=${e.failed.len()} results=${e.results.len()}`);
    print(e.message);
}
let ok = preflight::run([preflight::file_nonempty("present.txt"), || true]);
print(`all ok: ${ok.len()}`);
preflight::run([|| false]);
print("not reached");
"#;
    let out = run_in(t, script, &[]);
    out.assert_code(1)
        .assert_stderr_contains("✓ present.txt: 1 bytes")
        .assert_stderr_contains("✗ absent.txt: absent.txt does not exist")
        .assert_stderr_contains("✗ check 3: the API said no")
        .assert_stderr_contains("✗ migrations reviewed")
        .assert_stderr_contains("✓ last one")
        .assert_stderr_contains("✓ check 6: 42")
        .assert_stderr_contains("3 passed, 3 failed")
        .assert_stdout_contains("kind=preflight failed=3 results=6")
        .assert_stdout_contains("3 of 6 preflight checks failed:\n  ✗ absent.txt: absent.txt does not exist\n  ✗ check 3: the API said no\n  ✗ migrations reviewed\n")
        .assert_stdout_contains("all ok: 2")
        .assert_stderr_contains("1 of 1 preflight checks failed")
        .assert_stdout_not_contains("not reached");
    assert_eq!(
        std::fs::read_to_string(out.path().join("last-ran.txt")).unwrap(),
        "yes",
        "the checks after a failure still ran"
    );
}

// ---------------------------------------------------------------- std/git

#[test]
fn git_reads_branch_cleanliness_tags_and_commits() {
    let t = Test::new();
    let dir = t.path().join("repo");
    repo(&dir);
    let head = git(&dir, &["rev-parse", "HEAD"]);
    let script = r#"import "std/git" as git;
print(`branch=${git::branch("repo")}`);
print(`clean=${git::is_clean("repo")}`);
print(`required=${git::require_clean("repo")}`);
print(`v1=${git::tag_exists("v1", "repo")} v9=${git::tag_exists("v9", "repo")}`);
print(`commit=${git::current_commit("repo")}`);
print(`latest=${git::latest_tag("repo")} previous=${git::previous_tag("repo")}`);
fs::write("repo/new-file.txt", "x");
fs::write("repo/app.txt", "changed");
print(`dirty clean=${git::is_clean("repo")}`);
git::require_clean("repo");
"#;
    let out = run_in(t, script, &[]);
    out.assert_code(1)
        .assert_stdout_contains("branch=main\n")
        .assert_stdout_contains("clean=true\n")
        .assert_stdout_contains("required=true\n")
        .assert_stdout_contains("v1=true v9=false\n")
        .assert_stdout_contains(&format!("commit={head}\n"))
        .assert_stdout_contains("latest=v2 previous=v1\n")
        .assert_stdout_contains("dirty clean=false\n")
        .assert_stderr_contains(
            "the working tree in repo has 2 uncommitted change(s): commit or stash them",
        )
        .assert_stderr_contains(" M app.txt")
        .assert_stderr_contains("?? new-file.txt");
}

#[test]
fn git_without_cwd_uses_the_current_folder_and_handles_edge_cases() {
    let t = Test::new();
    let dir = t.path().to_path_buf();
    repo(&dir);
    // deploy.rhai and the run records would make the tree dirty: ignore them.
    std::fs::write(
        dir.join(".gitignore"),
        "deploy.rhai\n.deployer/\n.gitignore\n",
    )
    .unwrap();
    let script = r#"import "std/git" as git;
print(`branch=${git::branch()} clean=${git::is_clean()} required=${git::require_clean()}`);
print(`commit=${git::current_commit().len()} v2=${git::tag_exists("v2")}`);
print(`latest=${git::latest_tag()} previous=${git::previous_tag()}`);
exec(["git", "checkout", "-q", "v1"], #{ quiet: true });
print(`detached=${git::branch()} latest=${git::latest_tag()} previous=${git::previous_tag()}`);
exec(["git", "tag", "-d", "v1", "v2"], #{ quiet: true });
print(`untagged latest=${git::latest_tag()} previous=${git::previous_tag()}`);
try { git::current_commit("/"); } catch (e) { print(`outside: ${e.kind}: ${e.message}`); }
"#;
    run_in(t, script, &[])
        .assert_code(0)
        .assert_stdout_contains("branch=main clean=true required=true")
        .assert_stdout_contains("commit=40 v2=true")
        .assert_stdout_contains("latest=v2 previous=v1")
        .assert_stdout_contains("detached=HEAD latest=v1 previous=\n")
        .assert_stdout_contains("untagged latest= previous=\n")
        .assert_stdout_contains(
            "outside: git: cannot read the current commit in /: git exited with code 128",
        );
}

// ---------------------------------------------------------------- std/releases

#[test]
fn releases_create_activate_list_prune_and_roll_back() {
    let t = Test::new();
    let script = r#"import "std/releases" as releases;
let root = "app";
print(`none=${releases::current(root)} list=${releases::list(root)}`);
for name in ["20261101", "20261102", "20261103", "20261104"] {
    let dir = releases::create(root, name);
    fs::write(dir + "/index.html", name);
    releases::activate(root, name);
}
print(`current=${releases::current(root)} list=${releases::list(root)}`);
print(`served=${fs::read(root + "/current/index.html")}`);
try { releases::create(root, "20261104"); } catch (e) { print(`again: ${e.kind}: ${e.message}`); }
try { releases::activate(root, "nope"); } catch (e) { print(`missing: ${e.message}`); }
try { releases::create(root, "../escape"); } catch (e) { print(`bad name: ${e.kind}`); }
releases::mark_bad(root, "20261103");
print(`bad=${releases::is_bad(root, "20261103")} good=${releases::is_bad(root, "20261102")}`);
print(`rolled back to ${releases::switch_back(root)}`);
print(`served=${fs::read(root + "/current/index.html")}`);
print(`pruned=${releases::prune(root, 1)}`);
print(`left=${releases::list(root)} current=${releases::current(root)}`);
print(`again to ${releases::switch_back(root)}`);
releases::switch_back(root);
"#;
    let out = run_in(t, script, &[]);
    out.assert_code(1)
        .assert_stdout_contains("none= list=[]")
        .assert_stdout_contains(
            r#"current=20261104 list=["20261101", "20261102", "20261103", "20261104"]"#,
        )
        .assert_stdout_contains("served=20261104")
        .assert_stdout_contains("again: releases: release 20261104 exists already in app/releases")
        .assert_stdout_contains(
            "missing: cannot activate release nope: app/releases/nope does not exist",
        )
        .assert_stdout_contains("bad name: usage")
        .assert_stdout_contains("bad=true good=false")
        .assert_stdout_contains("rolled back to 20261102\nserved=20261102")
        // 20261104 was marked bad by the switch back; 20261101 is the next rollback target.
        .assert_stdout_contains(r#"pruned=["20261103", "20261104"]"#)
        .assert_stdout_contains(r#"left=["20261101", "20261102"] current=20261102"#)
        .assert_stdout_contains("again to 20261101")
        .assert_stderr_contains("release 20261104 is live: app/current -> releases/20261104")
        .assert_stderr_contains(
            "cannot roll back from release 20261101 in app/releases: every release live before 20261101 is excluded (marked bad: 20261102; removed: 20261104, 20261103)",
        );
    let root = out.path().join("app");
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap(),
        Path::new("releases/20261101")
    );
    // No temp links left beside `current`.
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["current", "releases", "releases.json"]);
}

#[test]
fn releases_skip_bad_ones_and_refuse_a_real_current_folder() {
    let t = Test::new()
        .file("a/releases/r1/x", "1")
        .file("a/releases/r2/x", "2")
        .file("a/releases/r3/x", "3")
        .file("b/releases/r1/x", "1")
        .file("b/current/index.html", "a real folder");
    let script = r#"import "std/releases" as releases;
for r in ["r1", "r2", "r3"] { releases::activate("a", r); }
releases::mark_bad("a", "r1");
releases::mark_bad("a", "r2", "corrupts uploads");
try { releases::switch_back("a"); } catch (e) { print(`${e.kind}: ${e.message}`); }
try { releases::switch_back("b"); } catch (e) { print(`${e.kind}: ${e.message}`); }
try { releases::switch_back("a", "check"); } catch (e) { print(`${e.kind}: ${e.message}`); }
try { releases::prune("a", 0); } catch (e) { print(`${e.kind}: ${e.message}`); }
releases::activate("b", "r1");
"#;
    let out = run_in(t, script, &[]);
    out.assert_code(1)
        .assert_stdout_contains("rollback: cannot roll back from release r3 in a/releases: every release live before r3 is excluded (marked bad: r2, r1)")
        .assert_stdout_contains("rollback: cannot roll back: b/current is not a symlink to a release")
        .assert_stdout_contains("usage: releases::switch_back(): the check must be a closure such as |release| { ... }, got string")
        .assert_stdout_contains("usage: releases::prune(): keep must be a whole number of at least 1, got 0")
        .assert_stderr_contains("cannot replace b/current with a symlink: it is a real folder, not a symlink; move it away first");
    assert!(out.path().join("b/current/index.html").is_file());
}

#[test]
fn releases_and_fs_changes_are_only_described_in_a_dry_run() {
    let t = Test::new().file("keep.txt", "original");
    let script = r#"import "std/releases" as releases;
releases::create("app", "r1");
releases::activate("app", "r1");
fs::write("keep.txt", "changed");
fs::append("log.txt", "line");
print(`removed=${fs::remove("keep.txt")}`);
print(`read=${fs::read("keep.txt")}`);
"#;
    let out = run_in(t, script, &["--dry-run"]);
    out.assert_code(0)
        .assert_stderr_contains("would create folder: app/releases/r1")
        .assert_stderr_contains("would link: app/current -> releases/r1")
        .assert_stderr_contains("would write: keep.txt")
        .assert_stderr_contains("would append: log.txt")
        .assert_stderr_contains("would remove: keep.txt")
        .assert_stdout_contains("removed=true")
        .assert_stdout_contains("read=original");
    assert!(!out.path().join("app").exists());
    assert!(!out.path().join("log.txt").exists());
}

// ---------------------------------------------------------------- fs

#[test]
fn fs_reads_writes_lists_and_links_real_files() {
    let t = Test::new()
        .file("data/b.txt", "bee")
        .file("data/a.txt", "a");
    let script = r#"
fs::write("data/c.txt", "sea");
fs::append("data/c.txt", "+more");
fs::append("data/new.log", "one\n");
print(`c=${fs::read("data/c.txt")} log=${fs::read("data/new.log").len()}`);
print(`list=${fs::list("data")}`);
print(`exists=${fs::exists("data/a.txt")} ${fs::exists("nope")} dir=${fs::is_dir("data")} file=${fs::is_file("data")}`);
print(`size=${fs::size("data/b.txt")}`);
fs::mkdir("deep/er/folder");
print(`mkdir=${fs::is_dir("deep/er/folder")}`);
fs::symlink_swap("data/a.txt", "link");
fs::symlink_swap("data/b.txt", "link");
print(`link=${fs::is_link("link")} -> ${fs::read_link("link")} = ${fs::read("link")}`);
print(`removed=${fs::remove("deep")} again=${fs::remove("deep")} link=${fs::remove("link")} target=${fs::exists("data/b.txt")}`);
print(`free=${fs::free_bytes(".") > 0}`);
print(`which=${fs::which("sh") != ()} none=${fs::which("no-such-program-xyz")}`);
let env = fs::dotenv("app.env");
print(`dotenv=${env.A} ${env.B}`);
try { fs::read("missing.txt"); } catch (e) { print(`${e.kind}: ${e.message}`); }
try { fs::symlink_swap("nowhere", "link2"); } catch (e) { print(`${e.kind}: ${e.message}`); }
try { fs::remove("/"); } catch (e) { print(`${e.kind}: ${e.message}`); }
fs::write("no/such/folder/x.txt", "x");
"#;
    let out = run_in(t.file("app.env", "A=1\nB=\"two words\"\n"), script, &[]);
    out.assert_code(1)
        .assert_stdout_contains("c=sea+more log=4")
        .assert_stdout_contains(r#"list=["a.txt", "b.txt", "c.txt", "new.log"]"#)
        .assert_stdout_contains("exists=true false dir=true file=false")
        .assert_stdout_contains("size=3")
        .assert_stdout_contains("mkdir=true")
        .assert_stdout_contains("link=true -> data/b.txt = bee")
        .assert_stdout_contains("removed=true again=false link=true target=true")
        .assert_stdout_contains("free=true")
        .assert_stdout_contains("which=true none=\n")
        .assert_stdout_contains("dotenv=1 two words")
        .assert_stdout_contains(
            "fs: cannot read missing.txt: No such file or directory (os error 2); check the path",
        )
        .assert_stdout_contains("fs: cannot point link2 at nowhere: nowhere does not exist")
        .assert_stdout_contains("usage: fs::remove(): refusing to touch \"/\"")
        .assert_stderr_contains("cannot write no/such/folder/x.txt")
        .assert_stderr_contains("--> deploy.rhai:22:");
}

// ---------------------------------------------------------------- std/cloudflare

const WRANGLER_DEPLOY_OUT: &str = "Uploaded my-worker (1.20 sec)
Deployed my-worker triggers (0.30 sec)
  https://my-worker.example.workers.dev
Current Version ID: 6f1c2a7e-0000-4000-8000-000000000001";

#[test]
fn cloudflare_deploy_worker_retries_on_the_schedule_and_reads_the_output() {
    let t = Test::new().file("apps/worker/wrangler.toml", "name = \"my-worker\"\n");
    let bin = bin_dir(&t);
    recorder(&bin, "wrangler", 2, WRANGLER_DEPLOY_OUT);
    let script = r#"import "std/cloudflare" as cf;
let r = cf::deploy_worker(#{ cwd: "apps/worker", env: "staging", backoff: ["0s", "10ms", "10ms"] });
print(`url=${r.url} version=${r.version_id} ok=${r.ok}`);
"#;
    let out = run_in(t.path_prepend(&bin), script, &[]);
    out.assert_code(0)
        .assert_stdout_contains(
            "url=https://my-worker.example.workers.dev version=6f1c2a7e-0000-4000-8000-000000000001 ok=true",
        )
        .assert_stderr_contains("wrangler deploy: attempt 1/3 failed: command failed with exit code 1: wrangler deploy --env staging")
        .assert_stderr_contains("wrangler deploy: succeeded on attempt 3/3");
    assert_eq!(
        calls(out.path()),
        vec!["wrangler deploy --env staging (in worker)"; 3]
    );
}

#[test]
fn cloudflare_deploy_gives_up_after_three_attempts_with_every_error() {
    let t = Test::new();
    let bin = bin_dir(&t);
    recorder(&bin, "wrangler", 10, "");
    let script = r#"import "std/cloudflare" as cf;
cf::deploy_worker(#{ name: "api", args: ["--minify"], backoff: ["0s", "10ms", "10ms"] });
"#;
    let out = run_in(t.path_prepend(&bin), script, &[]);
    out.assert_code(1)
        .assert_stderr_contains("wrangler deploy: all 3 attempts failed:")
        .assert_stderr_contains("wrangler: simulated failure 3");
    assert_eq!(
        calls(out.path()),
        vec![
            format!(
                "wrangler deploy --name api --minify (in {})",
                out.path().file_name().unwrap().to_string_lossy()
            );
            3
        ]
    );
}

#[test]
fn cloudflare_default_schedule_waits_30s_and_options_are_checked() {
    let t = Test::new();
    let bin = bin_dir(&t);
    recorder(&bin, "wrangler", 1, "");
    // The first attempt fails; the default schedule then waits 30 s: stop the run there.
    // (Options in a variable: a literal map with a typo is refused before the run.)
    let script = r#"import "std/cloudflare" as cf;
let opts = #{ retries: 3 };
try { cf::deploy_worker(opts); } catch (e) { print(`${e.kind}: ${e.message}`); }
cf::deploy_worker(#{});
"#;
    let out = run_in(t.path_prepend(&bin), script, &["--timeout", "2s"]);
    out.assert_stdout_contains("usage: cloudflare::deploy_worker(): unknown option `retries`")
        .assert_stderr_contains("wrangler deploy: attempt 1/3 failed: command failed with exit code 1: wrangler deploy; waiting 30s");
    assert_eq!(calls(out.path()).len(), 1);
}

#[test]
fn cloudflare_pages_deployments_and_rollbacks() {
    let t = Test::new().file("site/dist/index.html", "<h1>hi</h1>");
    let bin = bin_dir(&t);
    let dir = t.path().display().to_string();
    write_executable(
        &bin,
        "wrangler",
        &format!(
            r#"echo "wrangler $* (in $(basename "$PWD"))" >> '{dir}/calls.log'
case "$1 $2" in
  "pages deploy") echo "✨ Deployment complete! Take a peek over at https://abc123.my-site.pages.dev" ;;
  "pages deployment") echo '[{{"id": "d2", "environment": "Production"}}, {{"id": "d1", "environment": "Production"}}]' ;;
  "deployments list") echo 'Deployment ID: 1111 (created a while ago)' ;;
  "rollback "*|"rollback") echo 'Worker Version 0000 has been deployed to 100% of traffic.' ;;
esac
"#
        ),
    );
    let script = r#"import "std/cloudflare" as cf;
let r = cf::deploy_pages("my-site", "dist", #{ cwd: "site", branch: "main", commit_dirty: true });
print(`pages url=${r.url}`);
cf::deploy_pages("my-site", "site/dist");
let list = cf::deployments("my-site", #{ pages: true, environment: "production" });
print(`pages deployments: ${type_of(list)} ${list.len()} first=${list[0].id}`);
let text = cf::deployments("my-worker");
print(`worker deployments: ${type_of(text)} ${text}`);
cf::rollback_worker(#{ version: "0000", message: "health checks failed", name: "my-worker", env: "production" });
cf::rollback_worker();
let r = cf::deploy_worker();
print(`plain deploy url=[${r.url}]`);
try { cf::rollback_pages("my-site", "d1"); } catch (e) { print(`${e.kind}: ${e.message}`); }
"#;
    let out = run_in(
        t.path_prepend(&bin).env_remove("CLOUDFLARE_ACCOUNT_ID"),
        script,
        &[],
    );
    let here = out
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    out.assert_code(0)
        .assert_stdout_contains("plain deploy url=[]")
        .assert_stdout_contains(
            "usage: cloudflare::rollback_pages(): no account: export CLOUDFLARE_ACCOUNT_ID",
        )
        .assert_stdout_contains("pages url=https://abc123.my-site.pages.dev\n")
        .assert_stdout_contains("pages deployments: array 2 first=d2")
        .assert_stdout_contains(
            "worker deployments: string Deployment ID: 1111 (created a while ago)",
        );
    assert_eq!(
        calls(out.path()),
        vec![
            "wrangler pages deploy dist --project-name my-site --branch main --commit-dirty=true (in site)".to_string(),
            format!("wrangler pages deploy site/dist --project-name my-site (in {here})"),
            format!("wrangler pages deployment list --project-name my-site --environment production --json (in {here})"),
            format!("wrangler deployments list --name my-worker --json (in {here})"),
            format!("wrangler rollback 0000 --message health checks failed --name my-worker --env production --yes (in {here})"),
            format!("wrangler rollback --message rollback by deployer --yes (in {here})"),
            format!("wrangler deploy (in {here})"),
        ]
    );
}

#[test]
fn cloudflare_rollback_pages_calls_the_api_with_the_secret_token() {
    let server = TestServer::start();
    let ok_path = "/client/v4/accounts/acc-1/pages/projects/my-site/deployments/d1/rollback";
    let denied_path = "/client/v4/accounts/acc-1/pages/projects/my-site/deployments/d9/rollback";
    let flaky_path = "/client/v4/accounts/acc-1/pages/projects/my-site/deployments/d5/rollback";
    server.set(
        ok_path,
        Behaviour::Json(
            200,
            r#"{"success":true,"errors":[],"result":{"id":"d1","environment":"production"}}"#
                .into(),
        ),
    );
    server.set(
        denied_path,
        Behaviour::Json(
            403,
            r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#
                .into(),
        ),
    );
    server.set(flaky_path, Behaviour::Status(502));
    let script = format!(
        r#"import "std/cloudflare" as cf;
let api = "{api}";
let fast = #{{ api: api, backoff: ["0s", "10ms", "10ms"] }};
let r = cf::rollback_pages("my-site", "d1", fast);
print(`rolled back to ${{r.id}}`);
try {{ cf::rollback_pages("my-site", "d9", fast); }} catch (e) {{ print(`${{e.kind}}: ${{e.message}}`); }}
try {{ cf::rollback_pages("my-site", "d5", fast); }} catch (e) {{ print(`flaky: ${{e.kind}}: ${{e.message}}`); }}
try {{ cf::rollback_pages("my-site", "d1", #{{ api: api, account_id: "" }}); }} catch (e) {{ print(`${{e.kind}}: ${{e.message}}`); }}
"#,
        api = server.url("/client/v4")
    );
    let token = "cf-token-0123456789abcdef";
    let out = run_in(
        Test::new()
            .env("CLOUDFLARE_API_TOKEN", token)
            .env("CLOUDFLARE_ACCOUNT_ID", "acc-1"),
        &script,
        &[],
    );
    out.assert_code(0)
        .assert_stdout_contains("rolled back to d1")
        .assert_stdout_contains("cloudflare: the Cloudflare API refused the rollback of Pages project my-site to d9: status 403: Authentication error")
        .assert_stdout_contains("flaky: cloudflare: ")
        .assert_stdout_contains("usage: cloudflare::rollback_pages(): no account")
        .assert_stderr_not_contains(token)
        .assert_stdout_not_contains(token);
    let posts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == ok_path)
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].method, "POST");
    assert_eq!(
        posts[0].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    // A 403 is not retried; a 502 is, three times.
    assert_eq!(server.hits(denied_path), 1);
    assert_eq!(server.hits(flaky_path), 3);
}

// ---------------------------------------------------------------- std/laravel

#[test]
fn laravel_artisan_steps_run_in_the_app_folder() {
    let t = Test::new().file("app/artisan", "<?php\n");
    let bin = bin_dir(&t);
    recorder(&bin, "php", 0, "ok");
    let script = r#"import "std/laravel" as laravel;
let app = #{ cwd: "app" };
laravel::down(#{ cwd: "app", secret: "bypass-token" });
laravel::migrate(app);
laravel::migrate(#{ cwd: "app", seed: true, timeout: "5m" });
print(`cleared=${laravel::clear_caches(app)}`);
laravel::queue_restart(app);
laravel::up(app);
laravel::up(#{ cwd: "app", php: "php", args: ["--no-ansi"] });
try { laravel::migrate(#{ cwd: "app", forse: true }); } catch (e) { print(`${e.kind}: ${e.message}`); }
"#;
    let out = run_in(t.path_prepend(&bin), script, &[]);
    out.assert_code(0)
        .assert_stdout_contains(
            r#"cleared=["cache:clear", "config:clear", "route:clear", "view:clear"]"#,
        )
        .assert_stdout_contains("usage: laravel::migrate(): unknown option `forse`")
        .assert_stderr_contains("$ php artisan migrate --force");
    assert_eq!(
        calls(out.path()),
        vec![
            "php artisan down --secret=bypass-token (in app)",
            "php artisan migrate --force (in app)",
            "php artisan migrate --force --seed (in app)",
            "php artisan cache:clear (in app)",
            "php artisan config:clear (in app)",
            "php artisan route:clear (in app)",
            "php artisan view:clear (in app)",
            "php artisan queue:restart (in app)",
            "php artisan up (in app)",
            "php artisan up --no-ansi (in app)",
        ]
    );
}

#[test]
fn laravel_steps_without_options_run_in_the_current_folder() {
    let t = Test::new();
    let bin = bin_dir(&t);
    recorder(&bin, "php", 0, "");
    let script = r#"import "std/laravel" as laravel;
laravel::down();
laravel::migrate();
laravel::clear_caches();
laravel::queue_restart();
laravel::up();
"#;
    let out = run_in(t.path_prepend(&bin), script, &[]);
    out.assert_code(0);
    let here = out
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let expected: Vec<String> = [
        "down",
        "migrate --force",
        "cache:clear",
        "config:clear",
        "route:clear",
        "view:clear",
        "queue:restart",
        "up",
    ]
    .iter()
    .map(|c| format!("php artisan {c} (in {here})"))
    .collect();
    assert_eq!(calls(out.path()), expected);
}

#[test]
fn laravel_clear_caches_runs_all_four_and_names_the_failures() {
    let t = Test::new().file("app/artisan", "<?php\n");
    let bin = bin_dir(&t);
    let dir = t.path().display().to_string();
    write_executable(
        &bin,
        "php",
        &format!(
            r#"echo "php $*" >> '{dir}/calls.log'
if [ "$2" = "config:clear" ]; then echo "Redis connection refused" >&2; exit 1; fi
"#
        ),
    );
    let script = r#"import "std/laravel" as laravel;
laravel::clear_caches(#{ cwd: "app" });
"#;
    let out = run_in(t.path_prepend(&bin), script, &[]);
    out.assert_code(1)
        .assert_stderr_contains("1 of 4 cache clears failed:")
        .assert_stderr_contains(
            "config:clear: command failed with exit code 1: php artisan config:clear",
        )
        .assert_stderr_contains("Redis connection refused");
    assert_eq!(calls(out.path()).len(), 4, "every clear ran");
}

#[test]
fn laravel_pm2_reload_and_artisan_retry_when_asked() {
    let t = Test::new();
    let bin = bin_dir(&t);
    recorder(
        &bin,
        "pm2",
        2,
        "[PM2] Applying action reloadProcessId on app [app-ssr]",
    );
    recorder(&bin, "php", 1, "");
    let script = r#"import "std/laravel" as laravel;
laravel::pm2_reload("app-ssr", #{ update_env: true, attempts: 3, backoff: ["0s", "10ms"] });
laravel::queue_restart(#{ attempts: 2, backoff: ["0s", "10ms"] });
laravel::pm2_reload("app-ssr");
"#;
    let out = run_in(t.path_prepend(&bin), script, &[]);
    let here = out
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    out.assert_code(0)
        .assert_stderr_contains("pm2 reload app-ssr: succeeded on attempt 3/3")
        .assert_stderr_contains("php artisan queue:restart: succeeded on attempt 2/2");
    assert_eq!(
        calls(out.path()),
        vec![
            format!("pm2 reload app-ssr --update-env (in {here})"),
            format!("pm2 reload app-ssr --update-env (in {here})"),
            format!("pm2 reload app-ssr --update-env (in {here})"),
            format!("php artisan queue:restart (in {here})"),
            format!("php artisan queue:restart (in {here})"),
            format!("pm2 reload app-ssr (in {here})"),
        ]
    );
}

#[test]
fn laravel_pm2_reload_without_retries_fails_at_once() {
    let t = Test::new();
    let bin = bin_dir(&t);
    recorder(&bin, "pm2", 1, "");
    let out = run_in(
        t.path_prepend(&bin),
        r#"import "std/laravel" as laravel; laravel::pm2_reload("app");"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("command failed with exit code 1: pm2 reload app")
        .assert_stderr_contains("pm2: simulated failure 1");
    assert_eq!(calls(out.path()).len(), 1);
}

#[test]
fn laravel_log_errors_reads_the_app_logs() {
    let t = Test::new()
        .file("app/storage/logs/laravel.log", LARAVEL_LOG)
        .file(
            "daily/storage/logs/laravel-2026-11-22.log",
            "[2026-11-22 23:59:59] production.ERROR: before midnight\n",
        )
        .file(
            "daily/storage/logs/laravel-2026-11-23.log",
            "[2026-11-23 00:00:05] production.CRITICAL: after midnight\n",
        )
        .file(
            "daily/storage/logs/laravel-2026-11-01.log",
            "[2026-11-23 00:00:05] production.ERROR: too old a file\n",
        )
        .file("fresh/storage/logs/.gitignore", "*\n")
        .file("notlaravel/readme.txt", "x");
    let script = r#"import "std/laravel" as laravel;
print(`app=${laravel::log_errors("app", "2026-11-23T19:12:00Z").len()}`);
print(`file=${laravel::log_errors("app/storage/logs/laravel.log", "2026-11-23T19:14:30Z")}`);
print(`daily=${laravel::log_errors("daily/", "2026-11-22T23:59:00Z")}`);
print(`fresh=${laravel::log_errors("fresh", now())}`);
try { laravel::log_errors("notlaravel", now()); } catch (e) { print(`${e.kind}: ${e.message}`); }
try { laravel::log_errors("nowhere", now()); } catch (e) { print(`${e.kind}: ${e.message}`); }
"#;
    run_in(t, script, &[])
        .assert_code(0)
        .assert_stdout_contains("app=3\n")
        .assert_stdout_contains(r#"file=["[2026-11-23 19:15:00] production.EMERGENCY: disk full"]"#)
        .assert_stdout_contains(r#"daily=["[2026-11-22 23:59:59] production.ERROR: before midnight", "[2026-11-23 00:00:05] production.CRITICAL: after midnight"]"#)
        .assert_stdout_contains("fresh=[]")
        .assert_stdout_contains("laravel: notlaravel has no storage/logs folder")
        .assert_stdout_contains("laravel: nowhere does not exist");
}

// ---------------------------------------------------------------- std/notify

#[test]
fn notify_slack_posts_text_as_json_retries_and_never_shows_the_url() {
    let server = TestServer::start();
    let hook = "/services/T0SECRET/B0SECRET/xyzSECRETxyz";
    server.set(hook, Behaviour::Sequence(vec![500, 200]));
    let script = r#"import "std/notify" as notify;
let sent = notify::slack(secret("SLACK_WEBHOOK_URL"), "deployed staging", #{ backoff: ["0s", "10ms", "10ms"], username: "deployer" });
print(`sent=${sent}`);
"#;
    let out = run_in(
        Test::new().env("SLACK_WEBHOOK_URL", server.url(hook)),
        script,
        &[],
    );
    out.assert_code(0)
        .assert_stdout_contains("sent=true")
        .assert_stderr_contains(
            "slack notification: attempt 1/3 failed: the webhook answered status 500",
        )
        .assert_stderr_not_contains("SECRET")
        .assert_stdout_not_contains("SECRET");
    let posts = server.requests();
    assert_eq!(posts.len(), 2);
    for p in &posts {
        assert_eq!(p.method, "POST");
        assert_eq!(p.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"text": "deployed staging", "username": "deployer"})
        );
    }
}

#[test]
fn notify_failures_warn_and_never_fail_the_deployment() {
    let server = TestServer::start();
    let hook = "/hooks/PLAINhookPATH";
    server.set(hook, Behaviour::Status(503));
    let closed = crate::support::free_port();
    // Plain strings, not secrets: the module must still never print them.
    let script = format!(
        r#"import "std/notify" as notify;
let fast = #{{ backoff: ["0s", "10ms", "10ms"] }};
print(`status=${{notify::slack("{url}", "hi", fast)}}`);
print(`connect=${{notify::webhook("http://127.0.0.1:{closed}/PLAINclosed", #{{ event: "deployed" }}, fast)}}`);
print(`bad url=${{notify::webhook("not a PLAINurl", #{{}}, fast)}}`);
print("still deploying");
"#,
        url = server.url(hook)
    );
    let out = run_in(Test::new(), &script, &[]);
    out.assert_code(0)
        .assert_stdout_contains("status=false")
        .assert_stdout_contains("connect=false")
        .assert_stdout_contains("bad url=false")
        .assert_stdout_contains("still deploying")
        .assert_stderr_contains("warning: slack notification not sent (the deployment goes on): slack notification: all 3 attempts failed:")
        .assert_stderr_contains("the webhook answered status 503")
        .assert_stderr_contains("webhook notification: attempt 1/3 failed: connect error")
        .assert_stderr_contains("the webhook URL is not a valid http(s) URL (not shown)")
        .assert_stderr_not_contains("PLAIN");
    assert_eq!(server.hits(hook), 3);
}

#[test]
fn notify_webhook_posts_the_payload_with_headers_and_dry_run_sends_nothing() {
    let server = TestServer::start();
    server.set("/hook", Behaviour::Status(204));
    server.set("/plain", Behaviour::Status(200));
    let script = format!(
        r#"import "std/notify" as notify;
let ok = notify::webhook("{url}", #{{ event: "deployed", env: "staging", score: 95 }}, #{{ headers: #{{ "x-token": "abc" }} }});
print(`ok=${{ok}}`);
print(`plain=${{notify::webhook("{plain}", #{{ n: 1 }})}} slack=${{notify::slack("{plain}", "two args")}}`);
"#,
        url = server.url("/hook"),
        plain = server.url("/plain")
    );
    let t = Test::new();
    run_in(t, &script, &[])
        .assert_code(0)
        .assert_stdout_contains("ok=true")
        .assert_stdout_contains("plain=true slack=true");
    let plain: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/plain")
        .map(|r| r.body)
        .collect();
    assert_eq!(plain, [r#"{"n":1}"#, r#"{"text":"two args"}"#]);
    let posts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/hook")
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].header("x-token"), Some("abc"));
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"event": "deployed", "env": "staging", "score": 95})
    );

    let out = run_in(Test::new(), &script, &["--dry-run"]);
    out.assert_code(0)
        .assert_stdout_contains("ok=true")
        .assert_stderr_contains("would send the webhook notification (")
        .assert_stderr_not_contains("/hook");
    assert_eq!(server.requests().len(), 3, "a dry run sends nothing");
}

// ---------------------------------------------------------------- vars, text, history

#[test]
fn vars_gives_typed_values_with_the_precedence_of_var_and_check_knows_the_names() {
    let t = Test::new().file(
        "deployer.toml",
        "[vars]\nattempts = 7\n[scripts.deploy]\nurl = \"http://from-toml\"\n",
    );
    let script = r#"let s = vars(#{ url: "http://default", attempts: 3, strict: false, paths: ["/"], rate: 0.5, token: () });
        print(`url=${s.url} attempts=${s.attempts + 1} strict=${!s.strict} paths=${s.paths.len()}:${s.paths} rate=${s.rate * 2.0} token=${s.token}`);"#;
    run_in(
        t,
        script,
        &[
            "--var",
            "strict=yes",
            "--var",
            "paths=/a, /b,",
            "--var",
            "token=t",
        ],
    )
    .assert_code(0)
    .assert_stdout_contains(
        r#"url=http://from-toml attempts=8 strict=false paths=2:["/a", "/b"] rate=1.0 token=t"#,
    );
    // A required one (default ()) that is missing, a value of the wrong type (both at the
    // call, like var()), a misspelt name (before the run): each names the variable.
    run_in(Test::new(), script, &[])
        .assert_code(1)
        .assert_stderr_contains("variable `token` is not set: pass --var token=VALUE");
    run_in(
        Test::new(),
        script,
        &["--var", "token=t", "--var", "attempts=many"],
    )
    .assert_code(1)
    .assert_stderr_contains("--var attempts=many: expected a whole number");
    run_in(
        Test::new(),
        script,
        &["--var", "token=t", "--var", "atempts=4"],
    )
    .assert_code(2)
    .assert_stderr_contains("did you mean `attempts`?");
}

#[test]
fn text_natives_join_split_trim_and_parse() {
    let script = r#"
        print(`join=${join(["a", 1, true], ", ")}|${["x", "y"].join("-")}`);
        print(`list=${list(" a, b ,,c,")}|${list(["k"])}`);
        print(`lines=${lines("one\n\n  two \r\n")}`);
        print(`trimmed=[${trimmed("  v1.2.3\n")}]`);
        try { abort("stop here"); } catch (e) { print(`map=${error_message(e)}`); }
        try { throw "plain"; } catch (e) { print(`string=${error_message(e)}`); }
        let c = parse_postgres_url("postgresql://app:p%40ss@db.local:6432/my%20db?sslmode=require");
        print(`pg=${c.user}|${c.password}|${c.host}|${c.port}|${c.database}|${c.sslmode}`);
        print(`bare=${parse_postgres_url("postgres:///app")}`);
        try { parse_postgres_url("mysql://root:hunter22@x/db"); } catch (e) { print(`bad=${e.message}`); }
    "#;
    let out = run_in(Test::new(), script, &[]);
    out.assert_code(0)
        .assert_stdout_contains("join=a, 1, true|x-y")
        .assert_stdout_contains(r#"list=["a", "b", "c"]|["k"]"#)
        .assert_stdout_contains(r#"lines=["one", "two"]"#)
        .assert_stdout_contains("trimmed=[v1.2.3]")
        .assert_stdout_contains("map=aborted: stop here")
        .assert_stdout_contains("string=plain")
        .assert_stdout_contains("pg=app|p@ss|db.local|6432|my db|require")
        .assert_stdout_contains(r#"bare=#{"database": "app"}"#)
        .assert_stdout_contains("bad=pg: the connection URL must start with postgres://");
    assert!(!out.stdout.contains("hunter22"), "{}", out.stdout);
}

#[test]
fn history_runs_and_reports_come_from_the_run_records() {
    let t = Test::new()
        .file(
            "first.rhai",
            r#"phase("Only", || check("works", || true));"#,
        )
        .file(
            "reader.rhai",
            r#"let runs = history::runs(#{ limit: 5 });
               print(`staging=${runs.len()} ${runs[0].env} ${runs[0].verdict} ${runs[0].script}`);
               let r = history::report(runs[0]);
               print(`report=${r.phases[0].name} ${r.phases[0].checks[0].name} ${r.score}`);
               print(`same=${history::report(runs[0].run_id).run_id == runs[0].run_id}`);
               print(`all=${history::runs(#{ env: "", dry_runs: true }).len()}`);
               print(`prod=${history::runs(#{ env: "production", script: "first" }).len()}`);
               print(`none=${history::runs(#{ script: "other.rhai" }).len()}`);
               let typo = #{ limt: 1 };
               try { history::runs(typo); } catch (e) { print(`typo=${e.message}`); }
               try { history::report("../x"); } catch (e) { print(`bad=${e.message}`); }"#,
        );
    // Runs of two environments and a dry run, recorded by deployer itself.
    for args in [
        &["--env", "staging"][..],
        &["--env", "production"],
        &["--env", "staging", "--dry-run"],
    ] {
        t.clone()
            .args(["run", "first.rhai"])
            .args(args)
            .run()
            .assert_code(0);
    }
    // A damaged line is skipped with a warning, never fatal.
    let history = t.path().join(".deployer/history.jsonl");
    let mut text = std::fs::read_to_string(&history).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&history, text).unwrap();
    let out = t
        .clone()
        .args(["run", "reader.rhai", "--env", "staging"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("staging=1 staging PASS first.rhai")
        .assert_stdout_contains("report=Only works 100")
        .assert_stdout_contains("same=true")
        .assert_stdout_contains("all=3")
        .assert_stdout_contains("prod=1")
        .assert_stdout_contains("none=0")
        .assert_stdout_contains("typo=history::runs(): unknown option")
        .assert_stdout_contains("bad=history::report(): `../x` is not a run id")
        .assert_stderr_contains("history.jsonl line 4 is damaged and was skipped");
    // A literal option map is checked before the run.
    t.clone()
        .file("typo.rhai", "history::runs(#{ limt: 1 });")
        .args(["check", "typo.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("unknown option `limt`; did you mean `limit`?");
}

//! `fs::copy` (files and folders, dry runs, errors) and release ids from
//! `releases::new_id()`: two releases made in one second, sorted among older names.

use crate::support::Test;

#[test]
fn fs_copy_copies_files_and_folders_and_a_dry_run_copies_nothing() {
    let t = Test::new()
        .file("site/index.html", "<h1>hi</h1>\n")
        .file("site/css/app.css", "body{}\n")
        .file("notes.txt", "v1\n")
        .script(
            r#"fs::copy("site", "out/site-copy");
fs::copy("notes.txt", "out/notes.txt");
fs::copy("notes.txt", "out");          // into a folder: out/notes.txt again
fs::mkdir("into");
fs::copy("site", "into");              // into a folder: into/site
print(fs::read("out/site-copy/css/app.css"));
try { fs::copy("missing.txt", "out/x"); } catch (e) { print(`E1 ${e.kind}: ${e.message}`); }
try { fs::copy("notes.txt", "clash"); } catch (e) { print(`E2 ${e.kind}: ${e.message}`); }
try { fs::copy("site", "site/inner"); } catch (e) { print(`E3 ${e.kind}: ${e.message}`); }
"#,
        );
    std::fs::create_dir_all(t.path().join("out")).unwrap();
    std::fs::create_dir_all(t.path().join("clash/notes.txt")).unwrap();
    std::os::unix::fs::symlink("index.html", t.path().join("site/home.html")).unwrap();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(0)
        .assert_stdout_contains("body{}")
        .assert_stdout_contains("E1 fs: cannot copy missing.txt: No such file or directory")
        .assert_stdout_contains("E2 fs: cannot copy notes.txt to clash/notes.txt: it is a folder; give the path of the copy")
        .assert_stdout_contains("E3 usage: cannot copy folder site into itself (site/inner)");
    let p = out.path();
    assert_eq!(
        std::fs::read_to_string(p.join("out/notes.txt")).unwrap(),
        "v1\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.join("into/site/index.html")).unwrap(),
        "<h1>hi</h1>\n"
    );
    let link = p.join("out/site-copy/home.html");
    assert_eq!(
        std::fs::read_link(&link).unwrap().to_str(),
        Some("index.html"),
        "symlinks stay symlinks"
    );
    assert!(!p.join("site/inner").exists());

    let dry = Test::new()
        .file("notes.txt", "v1\n")
        .script(r#"fs::copy("notes.txt", "copy.txt");"#)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run();
    dry.assert_code(0)
        .assert_stderr_contains("would copy: notes.txt -> copy.txt");
    assert!(!dry.path().join("copy.txt").exists());
}

#[test]
fn fs_copy_refuses_protected_folders() {
    let out = Test::new()
        .file("a.txt", "x")
        .script(r#"fs::copy("a.txt", "sub/..");"#)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1).assert_stderr_contains("fs::copy");
}

#[test]
fn releases_made_in_one_second_never_collide_and_sort_after_older_names() {
    let out = Test::new()
        .file("app/releases/20251231235959/keep", "")
        .file("app/releases/20261123191200123/keep", "")
        .script(
            r#"import "std/releases" as releases;
let made = [];
for i in 0..5 {
    let id = releases::new_id();
    releases::create("app", id);
    made.push(id);
}
let all = releases::list("app");
print(`made ${made}`);
print(`list ${all}`);
if all.len() != 7 { throw `expected 7 releases, got ${all}`; }
if all[0] != "20251231235959" || all[1] != "20261123191200123" { throw `old names first: ${all}`; }
for i in 0..5 { if all[i + 2] != made[i] { throw `out of order: ${all} vs ${made}`; } }
releases::activate("app", made[4]);
print(`pruned ${releases::prune("app", 2)}`);
print(`left ${releases::list("app")}`);
"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("pruned [\"20251231235959\", \"20261123191200123\", ")
        .assert_stdout_contains("left [");
    let stdout = &out.stdout;
    let made = stdout.lines().find(|l| l.starts_with("made ")).unwrap();
    let ids: Vec<&str> = made.split('"').filter(|s| s.contains('T')).collect();
    assert_eq!(ids.len(), 5, "{made}");
    // All five within (about) one second: they differ anyway.
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{made}");
    // Made within milliseconds of each other: some share their second.
    assert!(
        ids.windows(2).any(|w| w[0][..15] == w[1][..15]),
        "two made in one second: {made}"
    );
    let re = regex::Regex::new(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}$").unwrap();
    assert!(ids.iter().all(|id| re.is_match(id)), "{made}");
}

#[test]
fn fs_copy_on_a_host_copies_there() {
    let Some(net) = crate::support::sshnet::SshNet::start_on(1, 233, 'c') else {
        return;
    };
    let ip = net.ips()[0].clone();
    let root = net.dir.path().join("root");
    std::fs::create_dir_all(root.join("site/css")).unwrap();
    std::fs::write(root.join("site/index.html"), "<h1>on the host</h1>\n").unwrap();
    std::fs::write(root.join("site/css/app.css"), "body{}\n").unwrap();
    std::os::unix::fs::symlink("index.html", root.join("site/home.html")).unwrap();
    std::fs::write(root.join("notes.txt"), "v1\n").unwrap();
    let toml = net.toml(
        "",
        &format!(
            "[env.test.host_vars.\"{ip}\"]\nroot = \"{}\"\n",
            root.display()
        ),
    );
    let out = Test::new()
        .timeout(std::time::Duration::from_secs(120))
        .file("deployer.toml", toml)
        .script(
            r#"on(hosts(), || {
    let r = host_var("root");
    fs::copy(`${r}/site`, `${r}/copy`);
    fs::copy(`${r}/notes.txt`, `${r}/copy`);
    fs::copy(`${r}/notes.txt`, `${r}/notes-2.txt`);
    try { fs::copy(`${r}/missing`, `${r}/x`); } catch (e) { print(`E1 ${e.kind}: ${e.message}`); }
    print(`${host()}: ${fs::list(r + "/copy")}`);
});"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains(&format!(
            "{ip}: [\"css\", \"home.html\", \"index.html\", \"notes.txt\"]"
        ))
        .assert_stdout_contains(&format!(
            "E1 fs: cannot copy {r}/missing to {ip}:{r}/x: ",
            r = root.display()
        ));
    assert_eq!(
        std::fs::read_to_string(root.join("copy/css/app.css")).unwrap(),
        "body{}\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("notes-2.txt")).unwrap(),
        "v1\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("copy/home.html"))
            .unwrap()
            .to_str(),
        Some("index.html")
    );
}

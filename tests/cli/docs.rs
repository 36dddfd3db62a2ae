//! `deployer docs` (the REPL's `:doc` outside the REPL, and docs/api.md), `deployer
//! completions` (completing in a real bash) and `deployer man` (rendered by `man -l`).

use std::process::Command;

use crate::support::{ci, deployer_in, skip, TempDir};

#[test]
fn docs_prints_what_the_repl_doc_prints() {
    let tmp = TempDir::new();
    for name in ["exec", "http::wait_healthy", "spawn", "split"] {
        let (code, docs, stderr) = deployer_in(tmp.path(), &["docs", name], &[]);
        assert_eq!(code, 0, "{name}: {stderr}");
        let mut repl = crate::support::deployer_command(tmp.path(), &["repl"]);
        repl.stdin(std::process::Stdio::piped());
        let mut child = repl.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, ":doc {name}").unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: repl\n{shown}");
        assert_eq!(
            shown.trim_end(),
            docs.trim_end(),
            "{name}: deployer docs and :doc differ"
        );
        assert!(docs.lines().count() > 1, "{name}: {docs}");
    }
    let (_, exec, _) = deployer_in(tmp.path(), &["docs", "exec"], &[]);
    assert!(
        exec.contains("Example:\n      let r = exec([\"git\", \"rev-parse\", \"HEAD\"]);"),
        "{exec}"
    );
}

#[test]
fn docs_unknown_name_suggests_the_nearest_and_lists_without_a_name() {
    let tmp = TempDir::new();
    let (code, stdout, stderr) = deployer_in(tmp.path(), &["docs", "wait_healty"], &[]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "no function `wait_healty`; did you mean `http::wait_healthy` or `docker::wait_healthy`?"
        ),
        "{stderr}"
    );
    let (code, stdout, _) = deployer_in(tmp.path(), &["docs"], &[]);
    assert_eq!(code, 0);
    for line in [
        "Global functions",
        "  exec(command: Array) -> Map",
        "http::",
        "  http::get(url: String) -> Map",
        "  fs::copy(from: String, to: String)",
        "  release_journal::new_id() -> String",
        "std/releases",
        "  releases::new_id()",
    ] {
        assert!(stdout.contains(line), "{line} missing from\n{stdout}");
    }
}

#[test]
fn docs_api_md_is_up_to_date() {
    let tmp = TempDir::new();
    let (code, generated, stderr) = deployer_in(tmp.path(), &["docs", "--markdown"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api.md is out of date with the doc comments of src/api/: regenerate it with\n    cargo run -- docs --markdown > docs/api.md\nand commit it"
    );
    assert!(generated.contains("### `exec`"), "{generated}");
    assert!(
        generated
            .contains("## std/releases\n\n```rhai\nimport \"std/releases\" as releases;\n```\n"),
        "the standard library's modules are in it"
    );
    assert!(generated.contains("```rhai\n"), "examples are kept");
}

#[test]
fn completions_complete_dash_dash_e_to_env_in_bash() {
    let tmp = TempDir::new();
    let (code, script, stderr) = deployer_in(tmp.path(), &["completions", "bash"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let file = tmp.path().join("deployer.bash");
    std::fs::write(&file, &script).unwrap();
    // What bash does on `deployer run --e<TAB>`: the function `complete -F` names, called
    // with the command, the word and the word before it.
    let probe = format!(
        r#"source '{}'
f=$(complete -p deployer | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_WORDS=(deployer run --e); COMP_CWORD=2
COMP_LINE='deployer run --e'; COMP_POINT=${{#COMP_LINE}}
"$f" deployer --e run
printf '%s\n' "${{COMPREPLY[@]}}""#,
        file.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{replies}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        replies.split_whitespace().collect::<Vec<_>>(),
        ["--env"],
        "deployer run --e<TAB>"
    );

    for (shell, env) in [("zsh", "--env"), ("fish", "-l env")] {
        let (code, script, stderr) = deployer_in(tmp.path(), &["completions", shell], &[]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(script.contains(env) && script.contains("init"), "{shell}");
    }
    let (code, _, stderr) = deployer_in(tmp.path(), &["completions", "tcsh"], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("[possible values: bash, zsh, fish]"),
        "{stderr}"
    );
}

#[test]
fn man_page_renders_with_man() {
    let tmp = TempDir::new();
    let (code, page, stderr) = deployer_in(tmp.path(), &["man"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH deployer"),
        "{page}"
    );
    let (code, _, stderr) = deployer_in(tmp.path(), &["man", "--dir", "man1"], &[]);
    assert_eq!(code, 0, "{stderr}");
    for p in [
        "deployer.1",
        "deployer-run.1",
        "deployer-init.1",
        "deployer-docs.1",
    ] {
        assert!(tmp.path().join("man1").join(p).is_file(), "{p}");
    }
    assert!(!tmp.path().join("man1/deployer-demo-server.1").exists());
    let has_man = Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_man {
        return skip(
            "man_page_renders_with_man",
            "no `man` (Debian: man-db, groff-base)",
        );
    }
    std::fs::write(tmp.path().join("deployer.1"), &page).unwrap();
    for (file, wanted) in [
        (
            "deployer.1",
            ["deployer", "SUBCOMMANDS", "init", "completions"],
        ),
        (
            "man1/deployer-run.1",
            ["deployer run", "--dry-run", "--env", "OPTIONS"],
        ),
    ] {
        let out = Command::new("man")
            .args(["-l", file])
            .current_dir(tmp.path())
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man -l {file}: {err}");
        for w in wanted {
            assert!(
                text.contains(w),
                "man -l {file}: no {w:?} in\n{text}\n{err}"
            );
        }
        assert!(
            !err.contains("warning"),
            "man -l {file} warns (ci: {}): {err}",
            ci()
        );
    }
}

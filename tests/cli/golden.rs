//! Golden-output tests: whole runs of the real binary compared with committed expected
//! output (hurl's `integration/` folder is the model).
//!
//! Each folder `tests/golden/<case>/` holds a `case.toml` (the command line and the exit
//! code), the files the run needs (the script, a deployer.toml) and the expected `stdout`,
//! `stderr` and, when the run is recorded, `summary.md` of its record. Expected files may
//! hold wildcards (`[..]`, `[DUR]`, `[ID]`, `[TIME]`, `[HASH]`, `[N]`; see
//! `support/golden.rs`); the test folder reads `[ROOT]`, the local server `[URL]`, the
//! escape byte of styling `␛`.
//!
//! `DEPLOYER_BLESS=1 cargo test --test cli golden` rewrites the expected files from what the
//! binary prints now, keeping the wildcards of lines that still match; review the change
//! with `git diff tests/golden` before committing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::support::golden::{bless, blessing, diff, matches, redact};
use crate::support::server::TestServer;
use crate::support::Test;

/// The files of a case folder that describe the case rather than go into the run's folder.
const CASE_FILES: [&str; 4] = ["case.toml", "stdout", "stderr", "summary.md"];

/// `case.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// The command line after `deployer`; `[URL]` in an argument is the local server's
    /// base URL (`http://127.0.0.1:PORT`).
    args: Vec<String>,
    /// The expected exit code.
    code: i32,
    /// Environment variables for the run: `NO_COLOR=1` is set and the caller's `DEPLOYER_*`
    /// variables are removed, unless given here ("" removes a variable).
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    /// Sends SIGINT to the binary once its stderr shows this text.
    #[serde(default)]
    interrupt_on: Option<String>,
}

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Runs the case in `tests/golden/<name>/` and compares (or, blessing, rewrites) its outputs.
#[track_caller]
fn case(name: &str) {
    let dir = folder(name);
    let toml_path = dir.join("case.toml");
    let text = std::fs::read_to_string(&toml_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", toml_path.display()));
    let case: Case =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", toml_path.display()));

    let server = TestServer::start();
    let url = server.url("");
    let url = url.trim_end_matches('/').to_string();
    let mut test = Test::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if !CASE_FILES.contains(&file.as_str()) {
            test = test.file(&file, std::fs::read(entry.path()).unwrap());
        }
    }
    test = test.args(case.args.iter().map(|a| a.replace("[URL]", &url)));
    // The caller's DEPLOYER_LOG, timeouts or trusted folders must not change the output.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DEPLOYER_") {
            test = test.env_remove(k);
        }
    }
    for (k, v) in &case.env {
        test = if v.is_empty() {
            test.env_remove(k)
        } else {
            test.env(k, v)
        };
    }
    let out = match &case.interrupt_on {
        None => test.run(),
        Some(text) => {
            let running = test.spawn();
            running.wait_for_stderr(text, Duration::from_secs(20));
            running.interrupt();
            running.wait(Duration::from_secs(20))
        }
    };

    let root = out.path().to_path_buf();
    let mut outputs = vec![
        ("stdout", Some(redact(&out.stdout, &root, Some(&url)))),
        ("stderr", Some(redact(&out.stderr, &root, Some(&url)))),
    ];
    let summary = newest_summary(&root).map(|s| redact(&s, &root, Some(&url)));
    outputs.push(("summary.md", summary));

    let mut failures = Vec::new();
    if out.code() != case.code {
        failures.push(format!(
            "exit code {} (case.toml says {})",
            out.code(),
            case.code
        ));
    }
    for (file, actual) in outputs {
        let path = dir.join(file);
        let expected = std::fs::read_to_string(&path).ok();
        match (expected, actual) {
            (None, None) => {}
            (Some(_), None) if blessing() => std::fs::remove_file(&path).unwrap(),
            (Some(_), None) => failures.push(format!(
                "{file}: expected, but the run wrote no record ({})",
                path.display()
            )),
            (expected, Some(actual)) => {
                let expected = expected.unwrap_or_default();
                if matches(&expected, &actual) {
                    continue;
                }
                if blessing() {
                    std::fs::write(&path, bless(&expected, &actual))
                        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
                    eprintln!("blessed {}", path.display());
                } else {
                    failures.push(format!(
                        "{file} differs from {} (- expected, + actual):\n{}",
                        path.display(),
                        diff(&expected, &actual)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden case {name}:\n{}\nIf the new output is right, run `DEPLOYER_BLESS=1 cargo test --test cli golden` and review `git diff tests/golden`.",
        failures.join("\n")
    );
    drop(server);
}

/// The `summary.md` of the newest run recorded in `root`, if any.
fn newest_summary(root: &Path) -> Option<String> {
    let runs = std::fs::read_dir(root.join(".deployer/runs")).ok()?;
    let newest = runs.flatten().map(|e| e.path()).max()?;
    std::fs::read_to_string(newest.join("summary.md")).ok()
}

/// One `#[test]` per case folder, named after it.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                case(stringify!($name));
            }
        )*

        /// Every folder in tests/golden is a case that runs (none is forgotten).
        #[test]
        fn every_case_folder_has_a_test() {
            let mut listed = vec![$(stringify!($name)),*];
            listed.sort_unstable();
            let mut folders: Vec<String> = std::fs::read_dir(folder(""))
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            folders.sort_unstable();
            assert_eq!(folders, listed, "add each folder of tests/golden to cases! in tests/cli/golden.rs");
        }
    };
}

cases!(
    pass,
    warning,
    failed_rollback,
    rollback_failed,
    interrupted,
    dry_run,
    check_errors,
    check_syntax_error,
    color_always,
    color_never,
);

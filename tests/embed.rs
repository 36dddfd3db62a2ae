//! The embedding API: `examples/embed.rs` built and run, and whole runs in-process with the
//! output going to a writer the test holds.
#![allow(clippy::unwrap_used)] // test code: panicking is the error report

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use deployer::rhai::{Module, NativeCallContext};
use deployer::{Captured, Deployer, Event, PhaseStatus, Verdict};
use support::TempDir;

/// `target/debug/examples/embed`, which `cargo test` builds with the tests.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/embed-HASH -> target/debug/examples/NAME
    let debug = exe.parent().and_then(|d| d.parent()).unwrap();
    debug.join("examples").join(name)
}

fn myapp() -> Module {
    let mut m = Module::new();
    m.set_native_fn("version", |_: NativeCallContext| Ok("1.4.2".to_string()));
    m
}

#[test]
fn the_embed_example_runs_a_pipeline_with_its_own_function() {
    let bin = example("embed");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        bin.display()
    );
    let out = Command::new(&bin).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("event: phase Build ended Passed")
            && stdout.contains("outcome: PASS, score 100, 2 phases, exit code 0"),
        "stdout:\n{stdout}"
    );
    assert!(stderr.contains("building myapp 1.4.2"), "stderr:\n{stderr}");
}

#[test]
fn a_whole_run_in_process_writes_to_the_given_writer_and_emits_events() {
    let dir = TempDir::new();
    let script = dir.path().join("deploy.rhai");
    std::fs::write(
        &script,
        r#"
phase("Build", || {
    check("version", || myapp::version() == "1.4.2");
});
phase("Switch", #{ required: true, changes: true }, || {
    check("health", || false);
});
phase("Monitor", || { check("never runs", || true); });
fn rollback(ctx) { log::info("rolling back: " + ctx.reason); }
"#,
    )
    .unwrap();
    let output = Captured::default();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let deployer = Deployer::builder()
        .module("myapp", myapp())
        .output(output.clone())
        .on_event(move |e| {
            let what = match e {
                Event::PhaseStarted { record, .. } => format!("started {}", record.name),
                Event::PhaseSkipped { record } => format!("skipped {}", record.name),
                Event::PhaseEnded { record, stopped } => {
                    format!(
                        "ended {} {:?} stopped={stopped}",
                        record.name, record.status
                    )
                }
                Event::CheckResult { check } => format!("check {} {:?}", check.name, check.status),
                other => format!("{other:?}"),
            };
            seen.lock().unwrap().push(what);
        })
        .build();
    let outcome = deployer.run_file(&script).unwrap();
    let text = output.text();
    assert_eq!(outcome.exit_code, 1, "{text}");
    assert_eq!(outcome.verdict, Some(Verdict::Failed), "{text}");
    let statuses: Vec<PhaseStatus> = outcome.phases.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses,
        [
            PhaseStatus::Passed,
            PhaseStatus::Failed,
            PhaseStatus::Skipped
        ],
        "{text}"
    );
    assert_eq!(
        outcome.report["rollback"]["status"], "ok",
        "{}",
        outcome.report
    );
    for line in [
        "━━ [1/3] Build",
        "━━ [2/3] Switch (required)",
        "rolling back: required phase \"Switch\" failed",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("\x1b["),
        "plain output has no styling:\n{text}"
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            "started Build",
            "check version Passed",
            "ended Build Passed stopped=false",
            "started Switch",
            "check health Failed",
            "ended Switch Failed stopped=true",
        ]
    );
    assert!(dir.path().join(".deployer/history.jsonl").exists());
}

#[test]
fn a_run_in_process_leaves_the_embedders_own_children_alone() {
    let dir = TempDir::new();
    let script = dir.path().join("deploy.rhai");
    std::fs::write(&script, "phase(\"A\", || check(\"ok\", || true));").unwrap();
    let mut own = Command::new("sleep").arg("30").spawn().unwrap();
    let outcome = Deployer::builder()
        .output(Captured::default())
        .build()
        .run_file(&script)
        .unwrap();
    assert_eq!(outcome.exit_code, 0);
    let still_running = matches!(own.try_wait(), Ok(None));
    let _ = own.kill();
    let _ = own.wait();
    assert!(
        still_running,
        "the run stopped a child process of the embedding program"
    );
}

#[test]
fn check_knows_the_embedders_functions_and_places_problems() {
    let deployer = Deployer::builder()
        .module("myapp", myapp())
        .output(Captured::default())
        .build();
    deployer
        .check("deploy.rhai", "let v = myapp::version();")
        .unwrap();
    let err = deployer
        .check("deploy.rhai", "let v = myapp::verson();")
        .unwrap_err();
    assert_eq!(err.code(), 2);
    let text = err.to_string();
    assert!(text.contains("deploy.rhai:1:"), "{text}");
    assert!(
        text.contains("version"),
        "the nearest name is suggested: {text}"
    );
}

#[test]
fn a_run_that_cannot_start_is_a_typed_error_with_its_exit_code() {
    let dir = TempDir::new();
    let script = dir.path().join("deploy.rhai");
    std::fs::write(&script, "phase(\"A\", || true);").unwrap();
    std::fs::write(dir.path().join("deployer.toml"), "[env.staging]\n").unwrap();
    let output = Captured::default();
    let deployer = Deployer::builder()
        .environment("nowhere")
        .output(output.clone())
        .build();
    let err = deployer.run_file(&script).unwrap_err();
    assert_eq!(err.code(), 2, "{}", output.text());
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert!(!dir.path().join(".deployer/history.jsonl").exists());
}

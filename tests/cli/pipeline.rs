//! The deployment pipeline: phases, scores, verdicts, rollback, environments, the lock,
//! run records and history, through the real binary.

use std::path::Path;
use std::time::Duration;

use crate::support::server::TestServer;
use crate::support::{wait_until, Output, Test};

/// A five-phase deployment against `url`; `deploy` is the body of the deploy step,
/// `extra` is appended (hooks, rollback).
fn pipeline(url: &str, deploy: &str, extra: &str) -> String {
    format!(
        r#"
let url = "{url}";
phase("Pre-deployment validation", #{{ required: true }}, || {{
    check("Tools present", || exec(["true"]));
    check("Config valid", || sh("test 1 -eq 1"));
}});
phase("Build & deploy", #{{ required: true, changes: true }}, || {{
    {deploy}
}});
phase("Health validation", || {{
    check("Health endpoint", || http::wait_healthy(url + "/health", #{{ attempts: 3, interval: "10ms" }}));
}});
phase("E2E", #{{ skippable: true }}, || {{
    check("Home page", || http::get(url + "/health").ok);
}});
phase("Monitoring", || {{
    check("Still healthy", || http::get(url + "/health").status == 200);
}});
fn rollback(ctx) {{
    exec(["sh", "-c", "printf '%s' \"$1\" > rolled-back.txt", "sh", `${{ctx.reason}}|${{ctx.phase}}`]);
}}
{extra}
"#
    )
}

fn report(out: &Output) -> serde_json::Value {
    crate::support::newest_report(out.path())
}

fn history_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(".deployer/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub(crate) fn validate(report: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/report.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report.json does not match the schema: {errors:#?}\n{report:#}"
    );
}

#[test]
fn a_passing_pipeline_scores_100_and_is_recorded() {
    let s = TestServer::start();
    let out = Test::new()
        .script(&pipeline(
            &s.url(""),
            r#"exec(["sh", "-c", "echo v2 > deployed.txt"]);"#,
            "",
        ))
        .args(["run", "deploy.rhai", "--env", "staging"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("━━ [1/5] Pre-deployment validation (required)")
        .assert_stderr_contains("✓ Tools present")
        .assert_stderr_contains("Total")
        .assert_stderr_contains("100/100  PASS");
    let r = report(&out);
    validate(&r);
    assert_eq!(r["score"], 100.0);
    assert_eq!(r["verdict"], "PASS");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["rollback"]["status"], "not_needed");
    assert_eq!(r["phases"].as_array().unwrap().len(), 5);
    assert_eq!(r["env"], "staging");
    assert!(!out.path().join("rolled-back.txt").exists());
    let run_dir = out
        .path()
        .join(".deployer/runs")
        .join(r["run_id"].as_str().unwrap());
    let summary = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("| 2 | Build & deploy | 5.0/5 | passed |"),
        "{summary}"
    );
    assert!(std::fs::read_to_string(run_dir.join("run.log"))
        .unwrap()
        .contains("Tools present"));
    let h = history_lines(out.path());
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["verdict"], "PASS");
}

#[test]
fn a_deploy_step_that_succeeds_on_attempt_2_is_counted() {
    let s = TestServer::start();
    let deploy = format!(
        r#"check("Deploy worker", || retry(#{{ attempts: 3, backoff: ["0s", "20ms"] }}, || {{
            let r = http::get("{}"); if !r.ok {{ throw `status ${{r.status}}`; }} }}));"#,
        s.url("/flaky/1")
    );
    let out = Test::new()
        .script(&pipeline(&s.url(""), &deploy, ""))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("attempt 1/3 failed: status 503; waiting 20ms")
        .assert_stderr_contains("✓ Deploy worker (");
    let r = report(&out);
    validate(&r);
    let check = &r["phases"][1]["checks"][0];
    assert_eq!(check["attempts"], 2);
    assert_eq!(r["retries"][0]["error"], "status 503");
}

#[test]
fn a_failing_required_phase_stops_the_pipeline_and_rolls_back() {
    let s = TestServer::start();
    let out = Test::new()
        .script(&pipeline(
            &s.url(""),
            r#"exec(["sh", "-c", "echo 'upload failed' >&2; exit 2"]);"#,
            "",
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("command failed with exit code 2")
        .assert_stderr_contains("━━ Rollback: required phase \"Build & deploy\" failed")
        .assert_stderr_contains("skipped because Build & deploy failed")
        .assert_stderr_contains("rollback succeeded")
        .assert_stderr_contains("FAILED");
    let marker = std::fs::read_to_string(out.path().join("rolled-back.txt")).unwrap();
    assert_eq!(
        marker.trim(),
        "required phase \"Build & deploy\" failed|Build & deploy"
    );
    let r = report(&out);
    validate(&r);
    assert_eq!(r["verdict"], "FAILED");
    assert_eq!(r["rollback"]["status"], "ok");
    assert_eq!(r["phases"][2]["status"], "skipped");
    assert_eq!(
        r["phases"][4]["reason"],
        "skipped because Build & deploy failed"
    );
    assert_eq!(r["phases"][1]["score"], 0.0);
    // 5 + 0 + 0 + 0 + 0 out of 25.
    assert_eq!(r["score"], 20.0);
}

#[test]
fn a_failure_before_changes_began_does_not_roll_back() {
    let out = Test::new()
        .script(
            r#"phase("Validation", #{ required: true }, || { check("Tests", || exec(["false"])); });
               phase("Deploy", #{ changes: true }, || { exec(["true"]); });
               fn rollback(ctx) { exec(["touch", "rolled-back.txt"]); }"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("✗ Tests")
        .assert_stderr_contains("skipped because Validation failed");
    assert!(!out.path().join("rolled-back.txt").exists());
    assert_eq!(report(&out)["rollback"]["status"], "not_needed");
}

#[test]
fn warning_band_exits_0_or_4_with_strict() {
    // Phases 5, 5, 2.5, 5 → 87.5 ... make it 70: scores 5, 5, 2.5, 2.5, 2.5 = 17.5 → 70.
    let script = r#"
        phase("A", || { check("a", || true); });
        phase("B", || { check("b", || true); });
        phase("C", || { check("c1", || true); check("c2", || false); });
        phase("D", || { check("d1", || true); check("d2", || false); });
        phase("E", || { check("e1", || true); check("e2", || false); });
    "#;
    let out = Test::new()
        .script(script)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0).assert_stderr_contains("70/100  WARNING");
    Test::new()
        .script(script)
        .args(["run", "deploy.rhai", "--strict"])
        .run()
        .assert_code(4);
}

#[test]
fn a_failing_rollback_exits_3_and_says_what_to_do() {
    let out = Test::new()
        .script(
            r#"phase("Deploy", #{ required: true, changes: true }, || { exec(["false"]); });
               fn rollback(ctx) { exec(["sh", "-c", "echo 'previous release missing' >&2; exit 1"]); }"#,
        )
        .args(["run", "deploy.rhai", "--env", "prod"])
        .run();
    out.assert_code(3)
        .assert_stderr_contains("previous release missing")
        .assert_stderr_contains(
            "ACTION NEEDED: the deployment of prod failed and was not rolled back (failed)",
        )
        .assert_stderr_contains("deployer rollback deploy.rhai --env prod");
    let r = report(&out);
    validate(&r);
    assert_eq!(r["rollback"]["status"], "failed");
    assert_eq!(r["exit_code"], 3);
}

#[test]
fn rollback_policies_never_and_confirm_without_a_terminal() {
    let script = r#"phase("Deploy", #{ required: true, changes: true }, || { exec(["false"]); });
                    fn rollback(ctx) { exec(["touch", "rolled-back.txt"]); }"#;
    let config = "[env.prod]\nrollback = \"never\"\n[env.stage]\nrollback = \"confirm\"\n";
    let out = Test::new()
        .file("deployer.toml", config)
        .script(script)
        .args(["run", "deploy.rhai", "--env", "prod"])
        .run();
    out.assert_code(3)
        .assert_stderr_contains("rollback = \"never\"");
    assert!(!out.path().join("rolled-back.txt").exists());
    let out = Test::new()
        .file("deployer.toml", config)
        .script(script)
        .args(["run", "deploy.rhai", "--env", "stage"])
        .run();
    out.assert_code(3)
        .assert_stderr_contains("no terminal to ask on")
        .assert_stderr_contains("(declined)");
    assert!(!out.path().join("rolled-back.txt").exists());
    // --yes answers the confirmation.
    let out = Test::new()
        .file("deployer.toml", config)
        .script(script)
        .args(["run", "deploy.rhai", "--env", "stage", "--yes"])
        .run();
    out.assert_code(1);
    assert!(out.path().join("rolled-back.txt").exists());
}

#[test]
fn a_missing_rollback_function_exits_3() {
    Test::new()
        .script(r#"phase("Deploy", #{ required: true, changes: true }, || { exec(["false"]); });"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(3)
        .assert_stderr_contains("defines no fn rollback(ctx)");
}

#[test]
fn score_below_the_fail_threshold_rolls_back() {
    let out = Test::new()
        .file("deployer.toml", "[score]\npass = 90\nwarn = 75\n")
        .script(
            r#"phase("Deploy", #{ changes: true }, || { check("up", || true); });
               phase("Health", || { check("a", || false); check("b", || false); });
               fn rollback(ctx) { exec(["sh", "-c", "printf '%s' \"$1\" > rolled-back.txt", "sh", `${ctx.reason} ${ctx.score}`]); }"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1).assert_stderr_contains("50/100  FAILED");
    let marker = std::fs::read_to_string(out.path().join("rolled-back.txt")).unwrap();
    assert_eq!(
        marker.trim(),
        "the deployment score is below the fail threshold 50.0"
    );
    assert_eq!(report(&out)["thresholds"]["pass"], 90.0);
}

#[test]
fn trigger_rollback_stops_and_rolls_back_with_the_reason() {
    let out = Test::new()
        .script(
            r#"phase("Deploy", #{ changes: true }, || { exec(["true"]); });
               phase("Monitoring", || { check("errors", || trigger_rollback("error rate 12%")); });
               phase("Later", || { exec(["touch", "later.txt"]); });
               fn rollback(ctx) { exec(["sh", "-c", "printf '%s' \"$1\" > rolled-back.txt", "sh", `${ctx.reason}|${ctx.phase}`]); }"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("skipped because Monitoring failed");
    assert_eq!(
        std::fs::read_to_string(out.path().join("rolled-back.txt"))
            .unwrap()
            .trim(),
        "error rate 12%|Monitoring"
    );
    assert!(!out.path().join("later.txt").exists());
}

#[test]
fn hooks_see_the_report_and_a_failing_hook_changes_nothing() {
    let out = Test::new()
        .script(
            r#"import "lib/notify" as n;
               phase("Deploy", || { check("ok", || true); });
               fn on_finish(report) { n::send(`${report.verdict} ${report.score}`); throw "webhook down"; }"#,
        )
        .file("lib/notify.rhai", "fn send(text) { exec([\"sh\", \"-c\", `echo ${text} > notified.txt`]); }\n")
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("on_finish hook failed (the verdict stands): webhook down");
    assert_eq!(
        std::fs::read_to_string(out.path().join("notified.txt"))
            .unwrap()
            .trim(),
        "PASS 100.0"
    );
}

#[test]
fn environments_come_from_deployer_toml_upward() {
    let t = Test::new()
        .file(
            "deployer.toml",
            "default_env = \"staging\"\n[env.staging.vars]\nbase_url = \"http://stage\"\n[env.production]\nconfirm = true\n[env.production.vars]\nbase_url = \"http://prod\"\n",
        )
        .file("deploy/app.rhai", r#"print(`${env()} ${var("base_url")}`);"#);
    t.args(["run", "deploy/app.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("staging http://stage");
    let t = Test::new()
        .file(
            "deployer.toml",
            "[env.staging.vars]\nbase_url = \"http://stage\"\n[env.production]\nconfirm = true\n",
        )
        .file("app.rhai", r#"exec(["touch", "deployed.txt"]);"#);
    let out = t.args(["run", "app.rhai", "--env", "prod"]).run();
    out.assert_code(2)
        .assert_stderr_contains("unknown environment \"prod\": did you mean \"production\"?")
        .assert_stderr_contains("production, staging");
    // confirm = true without a terminal: not deployed, recorded, exit 1.
    let t = Test::new()
        .file("deployer.toml", "[env.production]\nconfirm = true\n")
        .file("app.rhai", r#"exec(["touch", "deployed.txt"]);"#);
    let out = t.args(["run", "app.rhai", "--env", "production"]).run();
    out.assert_code(1)
        .assert_stderr_contains("asks for confirmation (confirm = true)");
    assert!(!out.path().join("deployed.txt").exists());
    assert_eq!(history_lines(out.path())[0]["verdict"], "FAILED");
}

#[test]
fn bad_toml_is_an_error_with_line_and_column() {
    Test::new()
        .file(
            "deployer.toml",
            "default_env = \"a\"\n[env.a.vars]\nbase_url = \n",
        )
        .script("print(1);")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("deployer.toml:3:");
}

#[test]
fn skip_flags() {
    let s = TestServer::start();
    let script = pipeline(&s.url(""), "exec([\"true\"]);", "");
    let out = Test::new()
        .script(&script)
        .args(["run", "deploy.rhai", "--skip", "E2E"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("E2E: skipped with --skip");
    let r = report(&out);
    assert_eq!(r["phases"][3]["score"], 4.0);
    assert_eq!(r["score"], 96.0);
    Test::new()
        .script(&script)
        .args(["run", "deploy.rhai", "--skip-e2e"])
        .run()
        .assert_code(0)
        .assert_stderr_contains("skipped with --skip-e2e");
    Test::new()
        .script(&script)
        .args(["run", "deploy.rhai", "--skip", "Build & deploy"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("is required and cannot be skipped");
    Test::new()
        .script(&script)
        .args(["run", "deploy.rhai", "--skip", "Smoke"])
        .run()
        .assert_code(2)
        .assert_stderr_contains(
            "no phase of that name; its phases are: Pre-deployment validation, Build & deploy",
        );
}

#[test]
fn two_runs_of_one_environment_cannot_overlap() {
    let t = Test::new().script(r#"phase("Deploy", || { log::info("holding"); sleep("3s"); });"#);
    let first = t.args(["run", "deploy.rhai", "--env", "staging"]).spawn();
    first.wait_for_stderr("holding", Duration::from_secs(10));
    let second = Test::new()
        .script("print(1);")
        .args(["run", "deploy.rhai", "--env", "staging"]);
    // Same folder: copy the lock dir's view by running in the first test's folder.
    let out = std::process::Command::new(crate::support::BIN)
        .args(["run", "deploy.rhai", "--env", "staging"])
        .current_dir(first.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    drop(second);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    // Another environment is not blocked.
    let other = std::process::Command::new(crate::support::BIN)
        .args([
            "run",
            "deploy.rhai",
            "--env",
            "production",
            "--skip",
            "Deploy",
        ])
        .current_dir(first.path())
        .output()
        .unwrap();
    assert_ne!(other.status.code(), Some(5));
    // --lock-wait waits for the holder to finish.
    let waited = std::process::Command::new(crate::support::BIN)
        .args([
            "run",
            "deploy.rhai",
            "--env",
            "staging",
            "--lock-wait",
            "10s",
        ])
        .current_dir(first.path())
        .output()
        .unwrap();
    assert_eq!(
        waited.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    first.wait(Duration::from_secs(10)).assert_code(0);
}

#[test]
fn a_stale_lock_from_a_dead_process_is_taken_over() {
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let lock = format!(
        r#"{{"pid":{pid},"host":"{host}","user":"ci","started_at":"2026-01-01T00:00:00.000Z","script":"deploy.rhai","run_id":"old"}}"#
    );
    Test::new()
        .file(".deployer/lock/staging", lock)
        .script("print(\"deployed\");")
        .args(["run", "deploy.rhai", "--env", "staging"])
        .run()
        .assert_code(0)
        .assert_stderr_contains(&format!("took over a stale lock of staging: pid {pid}"));
}

#[test]
fn ctrl_c_mid_phase_releases_the_lock_and_records_an_interrupted_run() {
    let running = Test::new()
        .script(
            r#"phase("Deploy", #{ changes: true }, || { log::info("deploying"); sleep("30s"); });
               fn rollback(ctx) { exec(["touch", "rolled-back.txt"]); }"#,
        )
        .args(["run", "deploy.rhai", "--env", "staging"])
        .spawn();
    running.wait_for_stderr("deploying", Duration::from_secs(10));
    assert!(running.path().join(".deployer/lock/staging").exists());
    running.interrupt();
    let out = running.wait(Duration::from_secs(5));
    out.assert_code(130)
        .assert_stderr_contains("may be partial: changes had begun")
        .assert_stderr_contains("deployer rollback deploy.rhai --env staging");
    assert!(
        !out.path().join(".deployer/lock/staging").exists(),
        "lock left behind"
    );
    assert!(!out.path().join("rolled-back.txt").exists());
    let r = report(&out);
    validate(&r);
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["exit_code"], 130);
    assert_eq!(history_lines(out.path())[0]["interrupted"], true);
}

#[test]
fn damaged_history_is_skipped_with_a_warning_and_nothing_is_lost() {
    let good = r#"{"run_id":"20260101T000000Z-staging-0001","started_at":"2026-01-01T00:00:00.000Z","finished_at":"2026-01-01T00:00:01.000Z","env":"staging","script":"deploy.rhai","verdict":"PASS","score":80.0,"duration_ms":1000,"exit_code":0,"report":"x"}"#;
    let out = Test::new()
        .file(".deployer/history.jsonl", format!("{good}\n{{not json\n"))
        .script(r#"phase("Deploy", || { check("ok", || true); });"#)
        .args(["run", "deploy.rhai", "--env", "staging"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("history.jsonl line 2 is damaged and was skipped")
        .assert_stderr_contains("compared with 20260101T000000Z-staging-0001: +20 (was 80 PASS)");
    let r = report(&out);
    assert_eq!(r["comparison"]["score_delta"], 20.0);
    assert_eq!(r["trend"], serde_json::json!([80.0, 100.0]));
    let text = std::fs::read_to_string(out.path().join(".deployer/history.jsonl")).unwrap();
    assert!(text.starts_with(good), "the old entry was lost");
    assert!(text.contains("{not json"), "the damaged line was removed");
    assert_eq!(text.lines().count(), 3);
    let hist = Test::new();
    let _ = hist;
    let listing = std::process::Command::new(crate::support::BIN)
        .args(["history", "--env", "staging"])
        .current_dir(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(listing.status.code(), Some(0));
    assert!(
        stdout.contains("PASS") && stdout.contains("100"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&listing.stderr).contains("line 2 is damaged"));
}

#[test]
fn dry_runs_are_recorded_as_such_and_take_no_lock() {
    let out = Test::new()
        .file(".deployer/lock/default", r#"{"pid":1,"host":"elsewhere","user":"x","started_at":"2026-01-01T00:00:00.000Z","script":"x","run_id":"x"}"#)
        .script(r#"phase("Deploy", #{ changes: true }, || { exec(["touch", "deployed.txt"]); });"#)
        .args(["run", "deploy.rhai", "--dry-run", "--json"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("would run: touch deployed.txt");
    assert!(!out.path().join("deployed.txt").exists());
    let printed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(printed["dry_run"], true);
    validate(&printed);
    assert_eq!(history_lines(out.path())[0]["dry_run"], true);
}

#[test]
fn deployer_rollback_runs_only_the_rollback() {
    let script = r#"exec(["touch", "deployed.txt"]);
                    fn rollback(ctx) { exec(["sh", "-c", "printf '%s' \"$1\" > rolled-back.txt", "sh", ctx.reason]); }"#;
    let out = Test::new()
        .script(script)
        .args(["rollback", "deploy.rhai", "--yes"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("rollback succeeded");
    assert!(!out.path().join("deployed.txt").exists());
    assert_eq!(
        std::fs::read_to_string(out.path().join("rolled-back.txt"))
            .unwrap()
            .trim(),
        "requested with deployer rollback"
    );
    assert_eq!(report(&out)["mode"], "rollback");
    let out = Test::new()
        .script(script)
        .args(["rollback", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("rollback not run: it was not confirmed");
    assert!(!out.path().join("rolled-back.txt").exists());
    Test::new()
        .script("print(1);")
        .args(["rollback", "deploy.rhai", "--yes"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("defines no fn rollback(ctx)");
}

#[test]
fn secrets_never_reach_the_records() {
    let out = Test::new()
        .env("DEPLOY_TOKEN", "tok-very-secret-42")
        .script(
            r#"phase("Deploy", #{ required: true }, || {
                   let t = secret("DEPLOY_TOKEN");
                   log::info(`using ${t}`);
                   exec(["sh", "-c", `echo denied for ${t} >&2; exit 1`]);
               });"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_not_contains("tok-very-secret-42");
    let runs = out.path().join(".deployer");
    let mut stack = vec![runs];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                let text = std::fs::read_to_string(e.path()).unwrap();
                assert!(
                    !text.contains("tok-very-secret-42"),
                    "secret in {}",
                    e.path().display()
                );
            }
        }
    }
    assert!(files >= 4);
    assert!(wait_until(Duration::from_secs(1), || true));
}

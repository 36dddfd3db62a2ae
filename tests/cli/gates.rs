//! Gates that fail closed (issue 10): a phase's value is never read as a pass by accident,
//! dry runs read as plans, and labels agree with each other. Through the real binary.

use crate::support::server::TestServer;
use crate::support::{newest_report, Test};

use crate::run;

// ------------------------------------------------------------- phase values

#[test]
fn a_phase_returning_false_fails() {
    let out = run(r#"phase("Gate", #{}, || { 1 > 2 });"#, &[]);
    out.assert_code(1)
        .assert_stderr_contains("phase score 0.0/5 (FAILED")
        .assert_stderr_contains("FAILED");
    let r = newest_report(out.path());
    assert_eq!(r["phases"][0]["status"], "failed");
    assert_eq!(r["phases"][0]["error"], "the phase returned false");
    assert_eq!(r["verdict"], "FAILED");
}

#[test]
fn a_phase_returning_a_value_outside_the_rule_fails_and_names_the_phase_and_value() {
    // Computed at run time, so the static check cannot see them.
    for (value, shown) in [
        (r#"parse_int("-1")"#, "returned -1"),
        (r#"parse_int("7")"#, "returned 7"),
        (r#"parse_float("NaN")"#, "returned NaN"),
        (
            r#"sh("printf fine").stdout"#,
            r#"returned "fine" (a string)"#,
        ),
        (
            "score::weighted(#{ availability: 100, performance: 80, stability: 90 })",
            "divides by 20",
        ),
        ("#{ phase_score: 80 }", "phase_score 80 is outside"),
        ("#{ ok: false, status: 503 }", "a result with ok: false"),
    ] {
        let out = run(&format!("phase(\"Gate\", #{{}}, || {{ {value} }});"), &[]);
        out.assert_code(1)
            .assert_stderr_contains("phase \"Gate\"")
            .assert_stderr_contains(shown);
        let r = newest_report(out.path());
        assert_eq!(r["phases"][0]["status"], "failed", "{value}");
        assert_eq!(r["verdict"], "FAILED", "{value}");
    }
}

#[test]
fn a_phase_returning_a_literal_outside_the_rule_is_found_before_anything_runs() {
    for (value, shown) in [
        ("-1", "returned -1"),
        ("7", "returned 7"),
        (r#""fine""#, r#"returned "fine" (a string)"#),
        ("86.0", "divides by 20"),
    ] {
        let out = run(
            &format!("exec([\"touch\", \"ran\"]);\nphase(\"Gate\", #{{}}, || {{ check(\"x\", || \"ok\"); {value} }});"),
            &[],
        );
        out.assert_code(2)
            .assert_stderr_contains("phase \"Gate\"")
            .assert_stderr_contains(shown)
            .assert_stderr_contains("--> deploy.rhai:2:")
            .assert_stderr_contains("nothing was run");
        assert!(!out.path().join("ran").exists());
    }
    // A literal inside a nested closure is the check's value, not the phase's.
    run(r#"phase("Gate", #{}, || { check("x", || true) });"#, &[]).assert_code(0);
}

#[test]
fn a_phase_value_in_range_scores_and_true_passes() {
    let out = run(
        r#"phase("A", #{}, || { 3 }); phase("B", #{}, || { true }); phase("C", #{}, || { 2.5 });"#,
        &[],
    );
    let r = newest_report(out.path());
    assert_eq!(r["phases"][0]["score"], 3.0);
    assert_eq!(r["phases"][1]["score"], 5.0);
    assert_eq!(r["phases"][1]["status"], "passed");
    assert_eq!(r["phases"][2]["score"], 2.5);
    // A passed phase with a low score is labelled in the verdict's words, never "passed".
    out.assert_stderr_contains("phase score 2.5/5 (WARNING (under 4.0/5)");
}

#[test]
fn a_returned_value_never_lifts_a_phase_over_a_failed_check() {
    let out = run(
        r#"phase("Gate", #{}, || {
               check("ok", || true);
               check("broken", || false);
               5
           });"#,
        &[],
    );
    out.assert_code(1);
    let r = newest_report(out.path());
    assert_eq!(r["phases"][0]["status"], "failed");
    assert_eq!(r["phases"][0]["score"], 2.5);
    let out = run(
        r#"phase("Gate", #{}, || { check("broken", || false); true });"#,
        &[],
    );
    out.assert_code(1);
    assert_eq!(newest_report(out.path())["phases"][0]["status"], "failed");
}

#[test]
fn a_check_returning_a_figure_instead_of_a_comparison_fails() {
    let out = run(
        r#"phase("Gate", #{}, || { check("p95 under 500", || 734.2); });"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("the check returned 734.2, which is not a score from 0 to 5");
}

// ------------------------------------------------------------- labels

#[test]
fn a_forced_failed_verdict_says_why_beside_the_score() {
    let out = run(
        r#"phase("Deploy", #{ changes: true }, || { check("ok", || true); });
           phase("Canary", #{}, || { trigger_rollback("canary errors"); });
           phase("A", #{}, || {}); phase("B", #{}, || {}); phase("C", #{}, || {});
           fn rollback(ctx) { print("rolling back"); }"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("FAILED: rolled back");
    let r = newest_report(out.path());
    assert_eq!(r["verdict"], "FAILED");
    assert_eq!(r["verdict_reason"], "rolled back");
    let md = std::fs::read_to_string(
        out.path()
            .join(".deployer/runs")
            .join(r["run_id"].as_str().unwrap())
            .join("summary.md"),
    )
    .unwrap();
    assert!(md.contains("FAILED: rolled back"), "{md}");
}

// ------------------------------------------------------------- dry runs

/// A deploy whose probes hit a service that is down and whose commands must not run.
fn plan_script(url: &str) -> String {
    format!(
        r#"
phase("Pre-flight", #{{ required: true }}, || {{
    check("service answers", || http::get("{url}/status/503").status == 200);
    check("tools", || exec(["sh", "-c", "touch ran-preflight"]));
}});
phase("Deploy", #{{ required: true, changes: true }}, || {{
    retry(#{{ attempts: 5, backoff: ["3s", "3s", "3s", "3s"] }}, || {{
        if http::get("{url}/status/500").status != 200 {{ throw "not yet"; }}
    }});
    exec(["sh", "-c", "touch ran-deploy"]);
}});
phase("Health", #{{}}, || {{
    check("healthy", || http::wait_healthy("{url}/status/503", #{{ attempts: 20, interval: "2s" }}));
}});
fn rollback(ctx) {{ exec(["sh", "-c", "touch ran-rollback"]); }}
"#
    )
}

#[test]
fn a_dry_run_reads_as_a_plan_and_exits_0_against_an_unchanged_service() {
    let server = TestServer::start();
    let out = run(
        &plan_script(&format!("http://127.0.0.1:{}", server.port())),
        &["--dry-run"],
    );
    // No retries or health polls waited out (5 × 3 s and 20 × 2 s otherwise).
    out.assert_code(0)
        .assert_stderr_not_contains("; waiting ")
        .assert_stderr_not_contains("; next in ")
        .assert_stderr_contains("Dry run plan")
        .assert_stderr_contains("would run: sh -c 'touch ran-preflight'")
        .assert_stderr_contains("the rest of phase \"Deploy\" is not planned")
        .assert_stderr_contains("· tools (would run)")
        .assert_stderr_contains("? service answers (would fail")
        .assert_stderr_contains("read-only: GET")
        .assert_stderr_contains("dry run: one attempt instead of 5")
        .assert_stderr_contains("dry run: one health probe instead of up to 20")
        .assert_stderr_contains("would call fn rollback(ctx) (deploy.rhai:")
        .assert_stderr_contains("no verdict: dry run")
        .assert_stderr_not_contains("FAILED")
        .assert_stderr_not_contains("✓ tools");
    for f in ["ran-preflight", "ran-deploy", "ran-rollback"] {
        assert!(!out.path().join(f).exists(), "{f} ran in a dry run");
    }
    let r = newest_report(out.path());
    assert!(r["verdict"].is_null(), "{r}");
    assert!(r["score"].is_null(), "{r}");
    assert_eq!(r["rollback"]["status"], "not_needed");
    assert_eq!(r["phases"][0]["checks"][1]["status"], "would_run");
    assert_eq!(r["phases"][0]["checks"][0]["status"], "would_fail");
}

#[test]
fn a_dry_run_of_a_broken_script_exits_2() {
    let out = run(
        r#"phase("Gate", #{}, || { check("bad arithmetic", || "a" - 1); });"#,
        &["--dry-run"],
    );
    out.assert_code(2)
        .assert_stderr_contains("found a fault in the script itself");
}

#[test]
fn a_dry_run_writes_no_score_into_the_trend() {
    let dry = Test::new()
        .script(r#"phase("A", #{}, || { check("ok", || true); });"#)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run();
    dry.assert_code(0);
    let line = std::fs::read_to_string(dry.path().join(".deployer/history.jsonl")).unwrap();
    let h: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert!(h["score"].is_null(), "{h}");
    assert!(h["verdict"].is_null(), "{h}");
}

#[test]
fn a_failed_checks_long_error_keeps_its_end_on_the_console_and_all_of_it_in_the_record() {
    let out = run(
        r#"phase("Build", #{}, || {
               check("compile", || {
                   let lines = [];
                   for i in 1..=40 { lines.push(`noise ${i}`); }
                   lines.push("error: the real cause");
                   throw lines.reduce(|sum, l| if sum == () { l } else { sum + "\n" + l });
               });
           });"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("error: the real cause")
        .assert_stderr_contains("more lines (the whole message is in run.log and report.json)")
        .assert_stderr_not_contains("noise 20\n");
    let r = newest_report(out.path());
    let dir = out
        .path()
        .join(".deployer/runs")
        .join(r["run_id"].as_str().unwrap());
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(
        log.contains("noise 20") && log.contains("error: the real cause"),
        "{log}"
    );
    let error = r["phases"][0]["checks"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("noise 20") && error.contains("the real cause"),
        "{error}"
    );
}

// ------------------------------------------------------------- interrupts

#[test]
fn an_environment_may_choose_to_roll_back_on_interrupt() {
    let script = r#"
phase("Deploy", #{ changes: true }, || {
    fs::write("deployed.txt", "v2");
    log::info("deployed");
    sleep("30s");
});
fn rollback(ctx) { fs::write("rolled-back.txt", ctx.reason); }
"#;
    for (policy, rolls_back) in [("rollback", true), ("stop", false)] {
        let running = Test::new()
            .file(
                "deployer.toml",
                format!("[env.staging]\non_interrupt = \"{policy}\"\n"),
            )
            .script(script)
            .args(["run", "deploy.rhai", "--env", "staging"])
            .spawn();
        running.wait_for_stderr("deployed", std::time::Duration::from_secs(10));
        running.interrupt();
        let out = running.wait(std::time::Duration::from_secs(20));
        out.assert_code(130);
        let r = newest_report(out.path());
        assert_eq!(r["status"], "interrupted");
        if rolls_back {
            out.assert_stderr_contains("on_interrupt = \"rollback\"")
                .assert_stderr_contains("the rollback (on_interrupt = \"rollback\") succeeded");
            assert_eq!(r["rollback"]["status"], "ok");
            let why = std::fs::read_to_string(out.path().join("rolled-back.txt")).unwrap();
            assert!(why.contains("interrupted"), "{why}");
        } else {
            out.assert_stderr_contains("deployer rollback deploy.rhai --env staging");
            assert!(!out.path().join("rolled-back.txt").exists());
            assert_eq!(r["rollback"]["status"], "not_run");
        }
    }
    // A typo in the policy is found before anything runs.
    Test::new()
        .file(
            "deployer.toml",
            "[env.staging]\non_interrupt = \"rolback\"\n",
        )
        .script(script)
        .args(["run", "deploy.rhai", "--env", "staging"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("on_interrupt");
}

// ------------------------------------------------------------- records

#[test]
fn keep_runs_removes_the_oldest_run_folders_of_the_environment_only() {
    let t = Test::new()
        .file(
            "deployer.toml",
            "keep_runs = 2\n[env.staging]\n[env.other]\n",
        )
        .script(r#"phase("A", #{}, || { check("ok", || true); });"#);
    let dir = t.path().to_path_buf();
    let deploy = |env: &str| {
        let (code, _, err) =
            crate::support::deployer_in(&dir, &["run", "deploy.rhai", "--env", env], &[]);
        assert_eq!(code, 0, "{err}");
        err
    };
    deploy("other");
    for _ in 0..3 {
        deploy("staging");
    }
    let last = deploy("staging");
    assert!(
        last.contains("removed 1 older run folder(s) of staging (keep_runs = 2)"),
        "{last}"
    );
    let mut runs: Vec<String> = std::fs::read_dir(dir.join(".deployer/runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    assert_eq!(
        runs.iter().filter(|r| r.contains("-staging-")).count(),
        2,
        "{runs:?}"
    );
    assert_eq!(
        runs.iter().filter(|r| r.contains("-other-")).count(),
        1,
        "{runs:?}"
    );
    // The history keeps every run.
    let history = std::fs::read_to_string(dir.join(".deployer/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 5);
}

#[test]
fn an_action_a_script_module_skips_in_a_dry_run_shows_as_would_run() {
    let out = run(
        r#"fn restart() { if dry_run() { log::would("restart the queue workers"); return; } exec(["true"]); }
           phase("Deploy", #{}, || { check("restart workers", || restart()); });"#,
        &["--dry-run"],
    );
    out.assert_code(0)
        .assert_stderr_contains("would restart the queue workers")
        .assert_stderr_contains("· restart workers (would run)")
        .assert_stderr_not_contains("✓ restart workers");
    assert_eq!(
        newest_report(out.path())["phases"][0]["checks"][0]["status"],
        "would_run"
    );
}

//! CI output through the real binary: `--junit` (validated against the committed
//! Jenkins/Ant JUnit XSD with xmllint), `--json` purity, and the GitHub Actions forms
//! (`::group::`, `::error file=..` annotations, `$GITHUB_STEP_SUMMARY`, `$GITHUB_OUTPUT`),
//! with a secret that must appear in none of them.

use std::path::Path;
use std::time::Duration;

use crate::support::server::TestServer;
use crate::support::{skip, Output, Test};

const SECRET: &str = "tok-s3cr3t-ci-42";

/// Three phases: one that passes (a check retried twice), one with a failing check and a
/// warning, and a skippable E2E phase. The failing check's name and error carry a secret.
fn script(url: &str) -> String {
    format!(
        r#"let url = "{url}";
print("printed by the script");
phase("Build", #{{ required: true }}, || {{
    check("compiles", || exec(["true"]));
    check("warmed up", || retry(#{{ attempts: 3, backoff: ["0s", "10ms", "10ms"] }}, || {{
        let r = http::get(url + "/flaky/2");
        if !r.ok {{ throw `status ${{r.status}}`; }}
        r
    }}));
}});
phase("Health", || {{
    let token = secret("CI_TOKEN");
    check("health with " + token, || {{ throw "token " + token + " refused: 50% down, a:b"; }});
    check("latency", || #{{ warning: "p95 is 900 ms" }});
}});
phase("E2E", #{{ skippable: true, e2e: true }}, || {{
    check("pages", || true);
}});
"#
    )
}

/// `file:line:col` of the first `check(` on the line holding `needle`, 1-based.
fn place_of(text: &str, needle: &str) -> (usize, usize) {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap();
    (i + 1, line.find("check(").unwrap() + 1)
}

fn ci_test(url: &str) -> Test {
    Test::new()
        .script(&script(url))
        .env("CI_TOKEN", SECRET)
        .timeout(Duration::from_secs(60))
}

/// Validates `xml` against tests/junit-10.xsd with xmllint (SKIPPED locally without it,
/// a failure under CI=true).
fn assert_valid_junit(test: &str, xml: &Path) -> bool {
    if std::process::Command::new("xmllint")
        .arg("--version")
        .output()
        .is_err()
    {
        skip(test, "xmllint is not installed (Debian: libxml2-utils)");
        return false;
    }
    let xsd = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/junit-10.xsd");
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", xsd])
        .arg(xml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not match the JUnit XSD:\n{}\n{}",
        xml.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(xml).unwrap_or_default()
    );
    true
}

fn assert_no_secret(place: &str, text: &str) {
    assert!(!text.contains(SECRET), "{place} holds the secret:\n{text}");
    assert!(
        !text.contains("s3cr3t"),
        "{place} holds part of the secret:\n{text}"
    );
}

/// stdout must be one JSON document and nothing else; returns it, checked against the schema.
fn only_json(out: &Output) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\n--- stderr ---\n{}",
            out.stdout, out.stderr
        )
    });
    crate::pipeline::validate(&report);
    report
}

#[test]
fn junit_is_valid_per_the_xsd_with_a_suite_per_phase_and_a_case_per_check() {
    let s = TestServer::start();
    let t = ci_test(&s.url("")).file("out/.keep", "");
    let out = t
        .clone()
        .args([
            "run",
            "deploy.rhai",
            "--skip-e2e",
            "--junit",
            "out/junit.xml",
        ])
        .run();
    let report = crate::support::newest_report(out.path());
    assert_eq!(report["exit_code"], out.code(), "{}", out.stderr);
    let path = out.path().join("out/junit.xml");
    let xml =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("no junit: {e}\n{}", out.stderr));
    assert_valid_junit("junit_is_valid_per_the_xsd", &path);
    assert_no_secret("junit.xml", &xml);

    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    assert!(
        xml.contains(r#"<testsuite name="1. Build" tests="2" failures="0" errors="0" skipped="0""#),
        "{xml}"
    );
    assert!(
        xml.contains(
            r#"<testsuite name="2. Health" tests="2" failures="1" errors="0" skipped="0""#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testsuite name="3. E2E" tests="1" failures="0" errors="0" skipped="1""#),
        "{xml}"
    );
    assert!(
        xml.contains("<skipped message=\"skipped with --skip-e2e"),
        "{xml}"
    );
    // The retried check: its attempts, from the report.
    assert_eq!(
        report["phases"][0]["checks"][1]["attempts"], 3,
        "{report:#}"
    );
    assert!(
        xml.contains("<testcase name=\"warmed up\" classname=\"deployer.default.1. Build\""),
        "{xml}"
    );
    assert!(
        xml.contains("<system-out>attempts: 3\nlocation: deploy.rhai:"),
        "{xml}"
    );
    // The failure: the masked message with the script's file:line:col.
    let (line, col) = place_of(&script(""), "check(\"health with");
    let at = format!("deploy.rhai:{line}:{col}");
    assert_eq!(
        report["phases"][1]["checks"][0]["location"],
        at.as_str(),
        "{report:#}"
    );
    assert!(
        xml.contains(&format!(
            "<failure message=\"check &quot;health with ***&quot; failed at {at} after 1 attempt: token *** refused: 50% down, a:b\" type=\"check\">"
        )),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<property name="env" value="default"/>"#),
        "{xml}"
    );

    // `deployer rollback --junit`: the rollback as its own suite.
    let out = t
        .clone()
        .file("deploy.rhai", "phase(\"Deploy\", #{ changes: true }, || { check(\"up\", || true); });\nfn rollback(ctx) { log::info(\"going back\"); }\n")
        .args(["rollback", "deploy.rhai", "--yes", "--json", "--junit", "out/rollback.xml"])
        .run();
    out.assert_code(0);
    // `deployer rollback --json`: the report alone on stdout too.
    assert_eq!(only_json(&out)["mode"], "rollback");
    let path = out.path().join("out/rollback.xml");
    let xml = std::fs::read_to_string(&path).unwrap();
    assert_valid_junit("junit_rollback", &path);
    assert!(
        xml.contains(r#"<testsuite name="Rollback" tests="1" failures="0" errors="0" skipped="0""#),
        "{xml}"
    );
    assert!(xml.contains("<testcase name=\"fn rollback(ctx)\""), "{xml}");
}

#[test]
fn junit_is_written_for_an_interrupted_run_and_a_bad_path_is_refused_before_running() {
    let t = Test::new().script(
        "phase(\"Build\", || { check(\"fast\", || true); });\nphase(\"Wait\", || { log::info(\"ready\"); sleep(\"30s\"); });\n",
    );
    let running = t
        .clone()
        .args(["run", "deploy.rhai", "--junit", "junit.xml"])
        .spawn();
    running.wait_for_stderr("ready", Duration::from_secs(10));
    running.interrupt();
    let out = running.wait(Duration::from_secs(10));
    out.assert_code(130);
    let path = out.path().join("junit.xml");
    let xml =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("no junit: {e}\n{}", out.stderr));
    assert_valid_junit("junit_interrupted", &path);
    assert!(
        xml.contains(r#"<testsuite name="Run" tests="1" failures="0" errors="1""#),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase name=\"the run was interrupted\""),
        "{xml}"
    );
    assert!(xml.contains("interrupted (Ctrl-C)"), "{xml}");

    let out = t
        .clone()
        .args(["run", "deploy.rhai", "--junit", "no/such/dir/junit.xml"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("--junit no/such/dir/junit.xml: the folder no/such/dir does not exist; create it first; nothing was run");
}

#[test]
fn json_stdout_is_the_report_alone_when_the_script_prints() {
    let s = TestServer::start();
    let out = ci_test(&s.url(""))
        .args(["run", "deploy.rhai", "--json", "-v"])
        .run();
    let report = only_json(&out);
    assert_eq!(report["exit_code"], out.code());
    out.assert_stderr_contains("printed by the script")
        .assert_stderr_contains("$ true");
    assert_no_secret("stdout", &out.stdout);
    assert_no_secret("stderr", &out.stderr);
}

#[test]
fn github_actions_groups_annotations_summary_and_outputs() {
    let s = TestServer::start();
    let t = ci_test(&s.url(""))
        .file("summary.md", "# an earlier step\n")
        .file("outputs.txt", "earlier=1\n");
    let summary = t.path().join("summary.md");
    let outputs = t.path().join("outputs.txt");
    let out = t
        .clone()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", t.path().parent().unwrap())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .args(["run", "deploy.rhai", "--skip-e2e"])
        .run();
    let report = crate::support::newest_report(out.path());
    let err = &out.stderr;
    assert_no_secret("stderr", err);
    assert_no_secret("stdout", &out.stdout);
    out.assert_stdout_contains("printed by the script");
    assert!(
        !out.stdout.contains("::"),
        "workflow commands on stdout:\n{}",
        out.stdout
    );
    // Each phase in a group, closed before the next opens.
    let groups: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("::group::") || *l == "::endgroup::")
        .collect();
    assert_eq!(
        groups,
        [
            "::group::[1/3] Build (required)",
            "::endgroup::",
            "::group::[2/3] Health",
            "::endgroup::",
            "::group::[3/3] E2E: skipped with --skip-e2e",
            "::endgroup::",
        ],
        "{err}"
    );
    // The failed check at its script line, relative to the workspace, escaped and masked.
    let dir = t.path().file_name().unwrap().to_str().unwrap();
    let (line, col) = place_of(&script(""), "check(\"health with");
    let error = format!(
        "::error file={dir}/deploy.rhai,line={line},col={col},title=Health%3A check \"health with ***\" failed::check \"health with ***\" failed: token *** refused: 50%25 down, a:b"
    );
    assert!(err.lines().any(|l| l == error), "{error}\nnot in\n{err}");
    let (line, col) = place_of(&script(""), "check(\"latency");
    let warning = format!(
        "::warning file={dir}/deploy.rhai,line={line},col={col},title=Health%3A check \"latency\" warned::check \"latency\": p95 is 900 ms"
    );
    assert!(
        err.lines().any(|l| l == warning),
        "{warning}\nnot in\n{err}"
    );

    // This run scores a WARNING: said as a warning annotation too.
    assert_eq!(report["verdict"], "WARNING", "{report:#}");
    assert!(
        err.lines().any(|l| l.starts_with(
            "::warning title=deployment verdict WARNING::deploy.rhai to default scored "
        )),
        "{err}"
    );
    // The summary is appended after the earlier step's, masked.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("# an earlier step\n# Deployment default: "),
        "{md}"
    );
    assert!(md.contains("| 2 | Health |"), "{md}");
    assert_no_secret("summary", &md);
    // The outputs: the run folder (to upload as an artifact), verdict, score, exit code.
    let text = std::fs::read_to_string(&outputs).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "earlier=1", "{text}");
    let run_dir = lines[1].strip_prefix("run_dir=").unwrap();
    assert!(Path::new(run_dir).join("report.json").is_file(), "{text}");
    assert!(
        run_dir.ends_with(report["run_id"].as_str().unwrap()),
        "{text}"
    );
    assert_eq!(
        &lines[2..],
        [
            format!("run_id={}", report["run_id"].as_str().unwrap()),
            format!("verdict={}", report["verdict"].as_str().unwrap()),
            format!("score={:.0}", report["score"].as_f64().unwrap()),
            format!("exit_code={}", out.code()),
        ],
        "{text}"
    );
}

#[test]
fn json_and_github_actions_together_keep_stdout_for_the_report() {
    let s = TestServer::start();
    let t = ci_test(&s.url(""));
    let out = t
        .clone()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", t.path().join("summary.md"))
        .args(["run", "deploy.rhai", "--json", "--skip-e2e"])
        .run();
    only_json(&out);
    out.assert_stderr_contains("printed by the script")
        .assert_stderr_contains("::group::[2/3] Health")
        .assert_stderr_contains("::error file=deploy.rhai,line=");
    assert_no_secret("stderr", &out.stderr);
    let md = std::fs::read_to_string(t.path().join("summary.md")).unwrap();
    assert!(md.starts_with("# Deployment default: "), "{md}");
}

#[test]
fn a_failed_check_is_listed_once_with_its_attempts() {
    // Outside a phase a failed check ends the script: its error is shown once, with the
    // script's place, after the check's line with its attempts.
    let out = Test::new()
        .script(
            "check(\"migrate\", || retry(#{ attempts: 2, backoff: [\"0s\", \"10ms\"] }, || exec([\"sh\", \"-c\", \"echo 'table locked' >&2; exit 3\"])));\n",
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("  ✗ migrate (")
        .assert_stderr_contains(", 2 attempts)")
        .assert_stderr_contains("--> deploy.rhai:1:1");
    assert_eq!(
        out.stderr.matches("all 2 attempts failed").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn quickstart_json_is_one_document_with_the_scripts_print_on_stderr() {
    use crate::scripts::{copy_quickstart, deployer_in};
    let t = Test::new();
    copy_quickstart(t.path());
    let (code, stdout, stderr) = deployer_in(
        t.path(),
        &[
            "run",
            "examples/quickstart/deploy.rhai",
            "--json",
            "--var",
            "monitor=1s",
            "--var",
            "interval=200ms",
        ],
    );
    // The live app is detached: stop it whatever the outcome.
    let pid: i32 = std::fs::read_to_string(t.path().join("examples/quickstart/.deploy/app.pid"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    if pid > 1 {
        // SAFETY: kill(2) on the app this test deployed.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    crate::pipeline::validate(&report);
    assert_eq!(report["verdict"], "PASS", "{report:#}");
    // on_finish's print() went to stderr.
    assert!(
        stderr.contains("quickstart: score 100/100 PASS"),
        "{stderr}"
    );
}

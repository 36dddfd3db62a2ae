//! `--junit PATH`: a run's record as JUnit XML, the format CI systems (Jenkins, GitLab,
//! GitHub test reporters) read. One `<testsuite>` per phase and one `<testcase>` per check,
//! a skipped phase as `<skipped/>`, the rollback as a suite of its own, and a script error
//! outside any phase as an `<error>`. It follows the Jenkins/Ant JUnit schema
//! (`tests/junit-10.xsd`, checked with xmllint in the tests).
//!
//! Pure: [`render`] turns a [`Report`] into text; every string from the script, its
//! commands or its variables goes through `mask` first, then is escaped.

use std::io;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use super::model::{Report, RollbackStatus, RunStatus};
use crate::pipeline::{CheckRecord, CheckStatus, PhaseRecord, PhaseStatus};

/// JUnit's `time`: seconds with three decimals (the schema's `SUREFIRE_TIME`).
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Replaces what XML 1.0 cannot hold even escaped (control characters such as the ESC of
/// a command's colours) with U+FFFD, so a command's output never makes the file invalid.
fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// The first line of a message, for a `message` attribute (attributes lose their line
/// breaks; the whole text goes in the element's body).
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// One `<testcase>` as rendered: its name, time, and what went wrong or was skipped.
struct Case {
    name: String,
    ms: u64,
    outcome: Outcome,
    /// Lines for `<system-out>`: attempts, location, warnings.
    out: Vec<String>,
}

enum Outcome {
    Passed,
    Failure { message: String, body: String },
    Error { message: String, body: String },
    Skipped { message: String },
}

/// Counts of a suite, as JUnit wants them on `<testsuite>`.
#[derive(Default, Clone, Copy)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Counts {
    fn of(cases: &[Case]) -> Counts {
        let mut c = Counts {
            tests: cases.len(),
            ..Counts::default()
        };
        for case in cases {
            match case.outcome {
                Outcome::Passed => {}
                Outcome::Failure { .. } => c.failures += 1,
                Outcome::Error { .. } => c.errors += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
            }
        }
        c
    }

    fn add(&mut self, o: Counts) {
        self.tests += o.tests;
        self.failures += o.failures;
        self.errors += o.errors;
        self.skipped += o.skipped;
    }
}

fn attempts_text(attempts: u32) -> String {
    if attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    }
}

fn check_case(c: &CheckRecord, mask: &dyn Fn(&str) -> String) -> Case {
    let at = c
        .location
        .as_ref()
        .map(|l| format!(" at {}", mask(l)))
        .unwrap_or_default();
    let mut out = vec![format!("attempts: {}", c.attempts)];
    if let Some(l) = &c.location {
        out.push(format!("location: {}", mask(l)));
    }
    if let Some(s) = c.score {
        out.push(format!("score: {s:.1}/5"));
    }
    let error = c.error.as_deref().map(mask).unwrap_or_default();
    let outcome = match c.status {
        CheckStatus::Passed => Outcome::Passed,
        CheckStatus::Warning => {
            if let Some(w) = &c.warning {
                out.push(format!("warning: {}", mask(w)));
            }
            Outcome::Passed
        }
        CheckStatus::Failed => Outcome::Failure {
            message: format!(
                "check \"{}\" failed{at} after {}: {}",
                mask(&c.name),
                attempts_text(c.attempts),
                first_line(&error)
            ),
            body: format!(
                "{error}\n--> {}\n({})",
                c.location
                    .as_deref()
                    .map(mask)
                    .unwrap_or_else(|| "?".into()),
                attempts_text(c.attempts)
            ),
        },
        CheckStatus::WouldRun => Outcome::Skipped {
            message: "dry run: the check would run commands or requests that were not performed"
                .into(),
        },
        CheckStatus::WouldFail => Outcome::Skipped {
            message: format!(
                "dry run: a read-only probe of the unchanged service would fail{at}: {}",
                first_line(&error)
            ),
        },
    };
    Case {
        name: mask(&c.name),
        ms: c.duration_ms,
        outcome,
        out,
    }
}

/// A phase's cases: its checks; a skipped phase, a phase with no check, or a failure
/// outside any check as one case named after the phase.
fn phase_cases(p: &PhaseRecord, mask: &dyn Fn(&str) -> String) -> Vec<Case> {
    let name = mask(&p.name);
    if p.status == PhaseStatus::Skipped {
        return vec![Case {
            name,
            ms: 0,
            outcome: Outcome::Skipped {
                message: p
                    .reason
                    .as_deref()
                    .map(mask)
                    .unwrap_or_else(|| "skipped".into()),
            },
            out: Vec::new(),
        }];
    }
    let mut cases: Vec<Case> = p.checks.iter().map(|c| check_case(c, mask)).collect();
    let check_failed = p.checks.iter().any(|c| c.status == CheckStatus::Failed);
    let own_error = match (&p.status, &p.error) {
        // A failed phase whose checks do not say why: the error is the phase's own.
        (PhaseStatus::Failed | PhaseStatus::Running, Some(e)) if !check_failed => Some(mask(e)),
        (PhaseStatus::Running, None) => Some("the phase did not end (the run stopped)".into()),
        _ => None,
    };
    if let Some(e) = own_error {
        cases.push(Case {
            name: format!("phase \"{name}\""),
            ms: p.duration_ms,
            outcome: Outcome::Error {
                message: first_line(&e).to_string(),
                body: e,
            },
            out: Vec::new(),
        });
    } else if cases.is_empty() {
        cases.push(Case {
            name: format!("phase \"{name}\""),
            ms: p.duration_ms,
            outcome: Outcome::Passed,
            out: Vec::new(),
        });
    }
    cases
}

fn rollback_cases(r: &Report, mask: &dyn Fn(&str) -> String) -> Option<Vec<Case>> {
    let rb = &r.rollback;
    if rb.status == RollbackStatus::NotNeeded {
        return None;
    }
    let mut out = Vec::new();
    if let Some(why) = &rb.reason {
        out.push(format!("reason: {}", mask(why)));
    }
    if !rb.hosts.is_empty() {
        out.push(format!("hosts: {}", mask(&rb.hosts.join(", "))));
    }
    let outcome = match rb.status {
        RollbackStatus::Ok | RollbackStatus::NotNeeded => Outcome::Passed,
        RollbackStatus::Failed => {
            let e = rb.error.as_deref().map(mask).unwrap_or_default();
            Outcome::Failure {
                message: format!("the rollback failed: {}", first_line(&e)),
                body: e,
            }
        }
        other => {
            let text = format!(
                "a rollback was needed and did not run ({}): a person must check the deployment",
                other.as_str()
            );
            Outcome::Failure {
                message: text.clone(),
                body: text,
            }
        }
    };
    Some(vec![Case {
        name: "fn rollback(ctx)".into(),
        ms: rb.duration_ms,
        outcome,
        out,
    }])
}

/// The script's error when it is not a check's or a phase's: a failure outside any
/// phase, an interrupt, a declined confirmation.
fn run_cases(r: &Report, mask: &dyn Fn(&str) -> String) -> Option<Vec<Case>> {
    let e = r.error.as_ref()?;
    if r.status == RunStatus::Completed {
        return None;
    }
    let msg = mask(&e.message);
    let at = e
        .location
        .as_deref()
        .map(|l| format!("\n--> {}", mask(l)))
        .unwrap_or_default();
    let name = match r.status {
        RunStatus::Interrupted => "the run was interrupted",
        RunStatus::Declined => "the run was declined",
        _ => "the script",
    };
    Some(vec![Case {
        name: name.into(),
        ms: 0,
        outcome: Outcome::Error {
            message: first_line(&msg).to_string(),
            body: format!("{msg}{at}"),
        },
        out: Vec::new(),
    }])
}

struct Suite {
    name: String,
    ms: u64,
    timestamp: Option<String>,
    cases: Vec<Case>,
}

/// Renders the report as JUnit XML. `mask` hides secrets in every string taken from the
/// run. Writing to memory does not fail; the `Result` is quick-xml's.
pub fn render(r: &Report, mask: &dyn Fn(&str) -> String) -> io::Result<String> {
    let classname = format!("deployer.{}", mask(&r.env));
    let mut suites: Vec<Suite> = r
        .phases
        .iter()
        .map(|p| Suite {
            name: format!("{}. {}", p.index, mask(&p.name)),
            ms: p.duration_ms,
            timestamp: p.started_at.clone(),
            cases: phase_cases(p, mask),
        })
        .collect();
    if let Some(cases) = run_cases(r, mask) {
        suites.push(Suite {
            name: "Run".into(),
            ms: 0,
            timestamp: None,
            cases,
        });
    }
    if let Some(cases) = rollback_cases(r, mask) {
        suites.push(Suite {
            name: "Rollback".into(),
            ms: r.rollback.duration_ms,
            timestamp: None,
            cases,
        });
    }
    let mut total = Counts::default();
    for s in &suites {
        total.add(Counts::of(&s.cases));
    }
    let properties: Vec<(&str, String)> = [
        ("run_id", Some(r.run_id.clone())),
        ("mode", Some(r.mode.to_string())),
        ("env", Some(mask(&r.env))),
        ("script", Some(mask(&r.script))),
        ("dry_run", Some(r.dry_run.to_string())),
        ("verdict", r.verdict.map(|v| v.to_string())),
        ("score", r.score.map(|s| format!("{s:.0}"))),
        ("exit_code", Some(r.exit_code.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();

    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let title = xml_safe(&format!(
        "deployer {} {} ({})",
        r.mode,
        mask(&r.script),
        mask(&r.env)
    ));
    w.create_element("testsuites")
        .with_attribute(("name", title.as_str()))
        .with_attribute(("tests", total.tests.to_string().as_str()))
        .with_attribute(("failures", total.failures.to_string().as_str()))
        .with_attribute(("errors", total.errors.to_string().as_str()))
        .with_attribute(("time", seconds(r.duration_ms).as_str()))
        .write_inner_content(|w| {
            let context = SuiteContext {
                classname: &classname,
                script: &xml_safe(&mask(&r.script)),
                host: &xml_safe(&mask(&r.host)),
                properties: &properties,
            };
            for s in &suites {
                write_suite(w, s, &context)?;
            }
            Ok(())
        })?;
    let mut text = String::from_utf8(w.into_inner()).map_err(io::Error::other)?;
    text.push('\n');
    Ok(text)
}

/// Writes the JUnit XML of `r` to `path` (replacing the file atomically). The error says
/// which file and why, for the run to print.
pub fn write(
    path: &std::path::Path,
    r: &Report,
    mask: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| {
        format!(
            "cannot write the JUnit report --junit {}: {e}; check that its folder exists and is writable",
            path.display()
        )
    };
    let text = render(r, mask).map_err(|e| fail(&e))?;
    crate::store::atomic::write_atomic(path, text.as_bytes()).map_err(|e| fail(&e))
}

/// What every suite of a run shares (masked and XML-safe).
struct SuiteContext<'a> {
    classname: &'a str,
    script: &'a str,
    host: &'a str,
    properties: &'a [(&'a str, String)],
}

fn write_suite(w: &mut Writer<Vec<u8>>, s: &Suite, cx: &SuiteContext) -> io::Result<()> {
    let c = Counts::of(&s.cases);
    let name = xml_safe(&s.name);
    let mut el = w
        .create_element("testsuite")
        .with_attribute(("name", name.as_str()))
        .with_attribute(("tests", c.tests.to_string().as_str()))
        .with_attribute(("failures", c.failures.to_string().as_str()))
        .with_attribute(("errors", c.errors.to_string().as_str()))
        .with_attribute(("skipped", c.skipped.to_string().as_str()))
        .with_attribute(("time", seconds(s.ms).as_str()))
        .with_attribute(("hostname", cx.host))
        .with_attribute(("file", cx.script));
    if let Some(t) = &s.timestamp {
        el = el.with_attribute(("timestamp", t.as_str()));
    }
    el.write_inner_content(|w| {
        w.create_element("properties").write_inner_content(|w| {
            for (k, v) in cx.properties {
                let v = xml_safe(v);
                w.create_element("property")
                    .with_attribute(("name", *k))
                    .with_attribute(("value", v.as_str()))
                    .write_empty()?;
            }
            Ok(())
        })?;
        for case in &s.cases {
            write_case(w, case, &format!("{}.{name}", cx.classname))?;
        }
        Ok(())
    })?;
    Ok(())
}

fn write_case(w: &mut Writer<Vec<u8>>, case: &Case, classname: &str) -> io::Result<()> {
    let name = xml_safe(&case.name);
    let classname = xml_safe(classname);
    let el = w
        .create_element("testcase")
        .with_attribute(("name", name.as_str()))
        .with_attribute(("classname", classname.as_str()))
        .with_attribute(("time", seconds(case.ms).as_str()));
    if matches!(case.outcome, Outcome::Passed) && case.out.is_empty() {
        el.write_empty()?;
        return Ok(());
    }
    el.write_inner_content(|w| {
        match &case.outcome {
            Outcome::Passed => {}
            Outcome::Failure { message, body } | Outcome::Error { message, body } => {
                let tag = if matches!(case.outcome, Outcome::Failure { .. }) {
                    "failure"
                } else {
                    "error"
                };
                let message = xml_safe(message);
                let body = xml_safe(body);
                w.create_element(tag)
                    .with_attribute(("message", message.as_str()))
                    .with_attribute(("type", if tag == "failure" { "check" } else { "error" }))
                    .write_text_content(BytesText::new(&body))?;
            }
            Outcome::Skipped { message } => {
                let message = xml_safe(message);
                w.create_element("skipped")
                    .with_attribute(("message", message.as_str()))
                    .write_empty()?;
            }
        }
        if !case.out.is_empty() {
            let out = xml_safe(&case.out.join("\n"));
            w.create_element("system-out")
                .write_text_content(BytesText::new(&out))?;
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::report::model::{ErrorRecord, RollbackRecord};

    pub(crate) fn check(name: &str, status: CheckStatus) -> CheckRecord {
        CheckRecord {
            name: name.into(),
            status,
            duration_ms: 1234,
            attempts: 1,
            error: None,
            warning: None,
            score: None,
            location: Some("deploy.rhai:7:5".into()),
        }
    }

    pub(crate) fn phase(
        index: usize,
        name: &str,
        status: PhaseStatus,
        checks: Vec<CheckRecord>,
    ) -> PhaseRecord {
        PhaseRecord {
            index,
            name: name.into(),
            required: false,
            skippable: false,
            status,
            score: 5.0,
            checks,
            duration_ms: 2000,
            started_at: Some("2026-01-02T03:04:05.000Z".into()),
            error: None,
            reason: None,
            metrics: None,
            hosts: Vec::new(),
        }
    }

    pub(crate) fn report(phases: Vec<PhaseRecord>) -> Report {
        crate::report::model::sample(phases)
    }

    fn plain(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn one_suite_per_phase_one_case_per_check_with_failure_location_and_attempts() {
        let mut failed = check("health <ok> & \"up\"", CheckStatus::Failed);
        failed.attempts = 3;
        failed.error = Some("HTTP 503 from http://127.0.0.1:1/health\nsecond line".into());
        let mut skipped = phase(3, "E2E", PhaseStatus::Skipped, vec![]);
        skipped.reason = Some("--skip-e2e".into());
        let r = report(vec![
            phase(
                1,
                "Build",
                PhaseStatus::Passed,
                vec![check("compiles", CheckStatus::Passed)],
            ),
            phase(2, "Health", PhaseStatus::Failed, vec![failed]),
            skipped,
        ]);
        let xml = render(&r, &plain).unwrap();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
        assert!(xml.contains(r#"<testsuites name="deployer deploy deploy.rhai (staging)" tests="3" failures="1" errors="0" time="4.000">"#), "{xml}");
        assert!(
            xml.contains(
                r#"name="2. Health" tests="1" failures="1" errors="0" skipped="0" time="2.000""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testcase name=\"compiles\" classname=\"deployer.staging.1. Build\" time=\"1.234\">\n      <system-out>attempts: 1\nlocation: deploy.rhai:7:5</system-out>"
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="check &quot;health &lt;ok&gt; &amp; &quot;up&quot;&quot; failed at deploy.rhai:7:5 after 3 attempts: HTTP 503 from http://127.0.0.1:1/health" type="check">"#),
            "{xml}"
        );
        assert!(
            xml.contains("second line\n--&gt; deploy.rhai:7:5\n(3 attempts)</failure>"),
            "{xml}"
        );
        assert!(
            xml.contains("<system-out>attempts: 3\nlocation: deploy.rhai:7:5</system-out>"),
            "{xml}"
        );
        assert!(xml.contains(r#"<skipped message="--skip-e2e"/>"#), "{xml}");
        assert!(
            xml.contains(r#"<property name="exit_code" value="1"/>"#),
            "{xml}"
        );
    }

    #[test]
    fn secrets_are_masked_before_escaping_and_control_characters_replaced() {
        let mut c = check("uses s3cr&t", CheckStatus::Failed);
        c.error = Some("token s3cr&t refused \u{1b}[31mred\u{1b}[0m".into());
        let r = report(vec![phase(1, "P", PhaseStatus::Failed, vec![c])]);
        let mask = |s: &str| s.replace("s3cr&t", "***");
        let xml = render(&r, &mask).unwrap();
        assert!(!xml.contains("s3cr"), "{xml}");
        assert!(xml.contains("token *** refused \u{fffd}[31mred"), "{xml}");
        assert!(!xml.contains('\u{1b}'));
    }

    #[test]
    fn rollback_run_error_dry_run_and_a_phase_error_outside_checks() {
        let mut p = phase(1, "Deploy", PhaseStatus::Failed, vec![]);
        p.error = Some("phase \"Deploy\" returned false".into());
        let mut r = report(vec![p]);
        r.rollback = RollbackRecord {
            status: RollbackStatus::Failed,
            reason: Some("required phase \"Deploy\" failed".into()),
            phase: None,
            error: Some("switch_back: no previous release".into()),
            duration_ms: 1500,
            hosts: Vec::new(),
        };
        r.error = Some(ErrorRecord {
            message: "boom".into(),
            location: Some("deploy.rhai:3:1".into()),
        });
        let xml = render(&r, &plain).unwrap();
        assert!(
            xml.contains(r#"<testcase name="phase &quot;Deploy&quot;""#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<error message="phase &quot;Deploy&quot; returned false" type="error">"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testsuite name="Rollback" tests="1" failures="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<failure message="the rollback failed: switch_back: no previous release""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testsuite name="Run" tests="1" failures="0" errors="1""#),
            "{xml}"
        );
        assert!(
            xml.contains("boom\n--&gt; deploy.rhai:3:1</error>"),
            "{xml}"
        );

        let mut dry = report(vec![phase(
            1,
            "Deploy",
            PhaseStatus::Passed,
            vec![check("would", CheckStatus::WouldRun)],
        )]);
        dry.dry_run = true;
        dry.status = RunStatus::Completed;
        let xml = render(&dry, &plain).unwrap();
        assert!(
            xml.contains("<skipped message=\"dry run: the check would run"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"tests="1" failures="0" errors="0" skipped="1""#),
            "{xml}"
        );
    }

    #[test]
    fn times_have_three_decimals() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(1234), "1.234");
        assert_eq!(seconds(61_005), "61.005");
    }
}

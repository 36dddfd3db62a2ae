//! `browser::visit` and `browser::check` (issue 16): the system's headless Chromium against
//! real pages served on 127.0.0.1. Without Chromium these print SKIPPED, and fail with CI=true.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::server::TestServer;
use crate::support::{newest_report, pid_alive, wait_until, Output, Test};

/// Whether the system's Chromium is there; otherwise says the test was skipped.
fn chromium(test: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|d| d.join("chromium").is_file());
    if !found {
        crate::support::skip(
            test,
            "no `chromium` on PATH (Debian: apt-get install chromium)",
        );
    }
    found
}

fn run(script: &str, extra: &[&str]) -> Output {
    Test::new()
        .script(script)
        .args(["run", "deploy.rhai"])
        .args(extra)
        .timeout(Duration::from_secs(90))
        .run()
}

/// The run folder of the newest report.
fn run_dir(out: &Output) -> PathBuf {
    let r = newest_report(out.path());
    out.path()
        .join(".deployer/runs")
        .join(r["run_id"].as_str().unwrap())
}

/// Decodes a PNG: (width, height, number of distinct pixels seen, up to 3).
fn png_facts(file: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let mut seen: Vec<&[u8]> = Vec::new();
    for p in bytes.chunks(px) {
        if !seen.contains(&p) {
            seen.push(p);
            if seen.len() >= 3 {
                break;
            }
        }
    }
    (info.width, info.height, seen.len())
}

#[test]
fn a_good_page_gives_its_status_title_and_a_screenshot_of_the_asked_viewport() {
    if !chromium("browser good page") {
        return;
    }
    let s = TestServer::start();
    let url = s.url("/page/good");
    let out = run(
        &format!(
            r#"let p = browser::visit("{url}", #{{ viewport: "390x844" }});
               print(`status=${{p.status}} title=${{p.title}} ok=${{p.ok}} errors=${{p.console_errors.len()}} load=${{p.load_ms >= 0}}`);
               let q = browser::check("{url}", #{{ wait_for: "form#login", expect_text: "Sign in", max_load_ms: 20000 }});
               print(`checked=${{q.ok}} shot=${{q.screenshot}}`);"#
        ),
        &[],
    );
    out.assert_code(0)
        .assert_stdout_contains("status=200 title=Good page ok=true errors=0 load=true")
        .assert_stdout_contains("checked=true");
    // One browser for both visits.
    assert_eq!(
        out.stderr.matches("for browser checks").count(),
        1,
        "{}",
        out.stderr
    );
    let dir = run_dir(&out);
    let name = format!("01-127-0-0-1-{}-page-good.png", s.port());
    let phone = dir.join("screenshots").join(&name);
    let meta = std::fs::metadata(&phone).unwrap();
    assert!(
        meta.len() > 1000,
        "{} is {} bytes",
        phone.display(),
        meta.len()
    );
    let (w, h, colours) = png_facts(&phone);
    assert_eq!((w, h), (390, 844));
    assert!(colours > 1, "the screenshot is one colour");
    let desktop = dir
        .join("screenshots")
        .join(format!("02-127-0-0-1-{}-page-good.png", s.port()));
    assert_eq!(png_facts(&desktop).0, 1280);
    let r = newest_report(out.path());
    crate::pipeline::validate(&r);
    assert_eq!(r["schema"], "deployer/report/v3");
    assert_eq!(r["screenshots"][0]["path"], format!("screenshots/{name}"));
    assert_eq!(r["screenshots"][0]["viewport"], "390x844");
    assert_eq!(r["screenshots"][1]["ok"], true);
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("## Screenshots"), "{summary}");
    assert!(
        summary.contains(&format!("screenshots/{name}")),
        "{summary}"
    );
    // The HTML report shows them, embedded, so the page stays one file.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        2,
        "two screenshots"
    );
    assert!(html.contains(&format!("screenshots/{name}")));
}

#[test]
fn console_errors_and_unhandled_rejections_fail_the_check_with_the_screenshot_path() {
    if !chromium("browser console errors") {
        return;
    }
    let s = TestServer::start();
    let out = run(
        &format!(
            r#"try {{ browser::check("{rej}"); }} catch (e) {{ print(`kind=${{e.kind}} errors=${{e.console_errors}}`); }}
               let allowed = browser::check("{err}", #{{ allow_errors: ["boom"] }});
               print(`allowed=${{allowed.ok}}`);
               browser::check("{err}");"#,
            rej = s.url("/page/rejection"),
            err = s.url("/page/console-error"),
        ),
        &[],
    );
    out.assert_code(1)
        .assert_stdout_contains("kind=browser_check")
        .assert_stdout_contains("nobody caught me")
        .assert_stdout_contains("allowed=true")
        .assert_stderr_contains(&format!(
            "browser check of {} failed: 1 console error(s): \"boom from the page\"",
            s.url("/page/console-error")
        ))
        .assert_stderr_contains("screenshot: ")
        .assert_stderr_contains("03-127-0-0-1-")
        .assert_stderr_contains("--> deploy.rhai:4:");
    let shot = run_dir(&out)
        .join("screenshots")
        .join(format!("03-127-0-0-1-{}-page-console-error.png", s.port()));
    assert!(shot.is_file(), "{} missing", shot.display());
    let r = newest_report(out.path());
    assert_eq!(r["screenshots"][2]["ok"], false);
}

#[test]
fn a_script_request_that_404s_is_a_failed_request() {
    if !chromium("browser failed request") {
        return;
    }
    let s = TestServer::start();
    let out = run(
        &format!(
            r#"let v = browser::visit("{u}");
               print(`ok=${{v.ok}} failed=${{v.failed_requests}}`);
               browser::check("{u}");"#,
            u = s.url("/page/missing-script")
        ),
        &[],
    );
    out.assert_code(1)
        .assert_stdout_contains("ok=false")
        .assert_stdout_contains(&format!("GET {}: 404", s.url("/page/missing.js")))
        .assert_stderr_contains("1 failed request(s)");
}

#[test]
fn a_slow_page_over_max_load_ms_fails() {
    if !chromium("browser slow page") {
        return;
    }
    let s = TestServer::start();
    run(
        &format!(
            r#"browser::check("{}", #{{ max_load_ms: 200 }});"#,
            s.url("/page/slow/700")
        ),
        &[],
    )
    .assert_code(1)
    .assert_stderr_contains("over max_load_ms 200");
}

#[test]
fn a_missing_wait_for_selector_fails_in_time_and_a_late_one_is_found() {
    if !chromium("browser wait_for") {
        return;
    }
    let s = TestServer::start();
    let out = run(
        &format!(
            r##"let late = browser::check("{late}", #{{ wait_for: "#late", timeout: "10s" }});
               print(`late=${{late.ok}}`);
               browser::check("{good}", #{{ wait_for: "#nope", timeout: "1s" }});"##,
            late = s.url("/page/late-form"),
            good = s.url("/page/good"),
        ),
        &[],
    );
    out.assert_code(1)
        .assert_stdout_contains("late=true")
        .assert_stderr_contains("`#nope` did not appear within 1s");
}

#[test]
fn bad_input_is_a_clear_error() {
    if !chromium("browser bad input") {
        return;
    }
    let s = TestServer::start();
    let good = s.url("/page/good");
    for (call, shown) in [
        (
            r#"browser::visit("127.0.0.1/login")"#.to_string(),
            "bad URL \"127.0.0.1/login\"",
        ),
        (
            format!(r#"browser::visit("{good}", #{{ viewport: "wide" }})"#),
            "bad viewport \"wide\"",
        ),
        (
            format!(r#"browser::check("{good}", #{{ wait_for: "div[" }})"#),
            "\"div[\" is not a CSS selector",
        ),
        (
            format!(r#"browser::check("{good}", #{{ allow_errors: ["("] }})"#),
            "bad pattern in `allow_errors`",
        ),
        (
            format!(r#"browser::visit("{good}", #{{ viewpor: "1x1" }})"#),
            "did you mean `viewport`?",
        ),
    ] {
        let out = run(&format!("log::info(\"go\");\n{call};"), &[]);
        assert_ne!(out.code(), 0, "{call}");
        out.assert_stderr_contains(shown);
    }
}

#[test]
fn a_dry_run_blocks_and_lists_the_pages_own_post_and_masks_secrets() {
    if !chromium("browser dry run") {
        return;
    }
    let s = TestServer::start();
    let out = Test::new()
        .script(&format!(
            r#"let v = browser::visit("{}?token=" + secret("PAGE_TOKEN"));
               print(`blocked=${{v.blocked_requests}} url=${{v.url}}`);"#,
            s.url("/page/posts")
        ))
        .env("PAGE_TOKEN", "s3cr3t-t0ken")
        .args(["run", "deploy.rhai", "--dry-run"])
        .timeout(Duration::from_secs(90))
        .run();
    out.assert_code(0)
        .assert_stdout_contains(&format!("blocked=[\"POST {}\"]", s.url("/echo")))
        .assert_stderr_contains("would send POST")
        .assert_stdout_not_contains("s3cr3t-t0ken")
        .assert_stderr_not_contains("s3cr3t-t0ken");
    assert!(
        s.requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        s.requests()
    );
    let dir = run_dir(&out);
    let names: Vec<String> = std::fs::read_dir(dir.join("screenshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [format!("01-127-0-0-1-{}-page-posts.png", s.port())]);
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(!report.contains("s3cr3t-t0ken"), "{report}");
}

/// Every process descending from `root` (found by walking /proc).
fn descendants(root: i32) -> Vec<(i32, String)> {
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: i32 = rest
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        parent.insert(pid, (ppid, cmd));
    }
    let mut out = Vec::new();
    for (pid, (_, cmd)) in &parent {
        let mut p = *pid;
        for _ in 0..64 {
            match parent.get(&p) {
                Some((pp, _)) if *pp == root => {
                    out.push((*pid, cmd.clone()));
                    break;
                }
                Some((pp, _)) if *pp > 1 => p = *pp,
                _ => break,
            }
        }
    }
    out
}

#[test]
fn ctrl_c_during_a_visit_leaves_no_browser() {
    if !chromium("browser ctrl-c") {
        return;
    }
    let s = TestServer::start();
    let running = Test::new()
        .script(&format!(
            "log::info(\"ready\");\nbrowser::visit(\"{}\", #{{ timeout: \"60s\" }});\nprint(\"not reached\");",
            s.url("/page/slow/30000")
        ))
        .args(["run", "deploy.rhai"])
        .spawn();
    running.wait_for_stderr("for browser checks", Duration::from_secs(30));
    let deployer = running.pid();
    let mut browser = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            browser = descendants(deployer)
                .into_iter()
                .filter(|(_, c)| c.contains("chromium"))
                .collect();
            // The page's request reached the server: the visit is under way.
            browser.len() > 1 && s.hits("/page/slow") > 0
        }),
        "no chromium under deployer: {:?}",
        descendants(deployer)
    );
    let profile = browser
        .iter()
        .find_map(|(_, c)| {
            c.split(' ')
                .find_map(|a| a.strip_prefix("--user-data-dir="))
                .map(PathBuf::from)
        })
        .unwrap();
    assert!(profile.is_dir());
    running.interrupt();
    let out = running.wait(Duration::from_secs(10));
    out.assert_code(130)
        .assert_stderr_contains("--> deploy.rhai:2:")
        .assert_stdout_not_contains("not reached");
    for (pid, cmd) in &browser {
        assert!(
            wait_until(Duration::from_secs(2), || !pid_alive(*pid)),
            "chromium process {pid} outlived the run: {cmd}"
        );
    }
    assert!(!profile.exists(), "{} left behind", profile.display());
}

#[test]
fn a_phase_failing_on_a_broken_page_rolls_back() {
    if !chromium("browser rollback") {
        return;
    }
    let s = TestServer::start();
    let out = run(
        &format!(
            r#"phase("Deploy", #{{ required: true, changes: true }}, || {{
                   check("Home page works", || browser::check("{}"));
               }});
               fn rollback(ctx) {{ log::info(`rolling back: ${{ctx.reason}}`); }}"#,
            s.url("/page/broken")
        ),
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("rolling back")
        .assert_stderr_contains("status 500, expected 2xx or 3xx");
    let r = newest_report(out.path());
    let error = r["phases"][0]["checks"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("Uncaught Error: the app is broken"),
        "{error}"
    );
    assert!(error.contains("screenshot: "), "{error}");
    assert_eq!(r["rollback"]["status"], "ok");
    assert_eq!(r["phases"][0]["status"], "failed");
    assert_eq!(r["screenshots"][0]["ok"], false);
}

#[test]
fn without_chromium_the_call_names_what_to_install_and_check_warns() {
    // Runs everywhere: it needs no browser.
    let script = "log::info(\"go\");\nbrowser::visit(\"http://127.0.0.1:9/\");\n";
    let empty = crate::support::TempDir::new();
    Test::new()
        .script(script)
        .env("PATH", empty.path())
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stderr_contains("warning: this script uses browser:: but no Chromium found")
        .assert_stderr_contains("apt-get install chromium");
    Test::new()
        .script(script)
        .env("PATH", empty.path())
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stderr_contains("apt-get install chromium")
        .assert_stderr_contains("DEPLOYER_CHROMIUM")
        .assert_stderr_contains("--> deploy.rhai:2:");
    Test::new()
        .script(script)
        .env("DEPLOYER_CHROMIUM", "/nonexistent/chromium")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stderr_contains(
            "DEPLOYER_CHROMIUM=/nonexistent/chromium is not an executable file",
        );
}

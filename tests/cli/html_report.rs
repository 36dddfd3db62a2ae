//! The HTML report (`report.html`, `--html PATH`) in a real browser, and the pruning of old
//! run folders (`keep_runs`). A real run monitors a local server whose answers per tick are
//! known; headless Chromium (Debian `chromium`) renders the page to screenshots at laptop
//! and phone sizes and dumps its DOM, where the charts' points are checked against
//! report.json. Without chromium the browser test is SKIPPED, and fails with `CI=true`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::server::{Behaviour, TestServer};
use crate::support::{skip, wait_until, TempDir, Test};

/// The chromium executable on PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// The live (not zombie) processes of /proc that `keep` selects by pid and the text of
/// their `stat` after the name (state, ppid, pgrp, ...).
fn live_processes(keep: impl Fn(i32, &[&str]) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
                    Some(rest.first() != Some(&"Z") && keep(*pid, &rest))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The live processes in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    // After the name: state, ppid, pgrp.
    live_processes(|_, rest| rest.get(2).and_then(|g| g.parse().ok()) == Some(pgid))
}

/// The live processes whose environment holds `marker` (`NAME=VALUE`): what a browser
/// started, even the helpers that leave its process group and session (chromium's
/// crashpad handlers call setsid).
fn marked(marker: &str) -> Vec<i32> {
    let needle = format!("{marker}\0");
    live_processes(|pid, _| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .map(|env| String::from_utf8_lossy(&env).contains(&needle))
            .unwrap_or(false)
    })
}

/// The environment variable that marks every process a [`Browser`] starts (its value: the
/// profile folder, unique to the test).
const MARK: &str = "DEPLOYER_TEST_BROWSER";

/// Headless Chromium with a private profile in a temp dir, kept off the network: every
/// host name resolves to nothing, so a page that referred to anything outside would show
/// it in the DOM checks rather than fetch it.
struct Browser {
    bin: PathBuf,
    profile: TempDir,
}

impl Browser {
    /// Runs chromium with `args` after the common flags, in its own process group; waits
    /// up to 60 s, kills the whole group at the end (chromium's helpers included) and
    /// checks that nothing of it is left. Returns stdout.
    fn run(&self, args: &[String]) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .args(args)
        .env(MARK, self.profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
        let mut child = cmd.spawn().expect("chromium starts");
        let pgid = child.id() as i32;
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
            s
        });
        let started = Instant::now();
        let finished = wait_until(Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        // The whole group goes, finished or not: no chromium helper outlives the test.
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let status = child.wait().expect("wait for chromium");
        assert!(
            wait_until(Duration::from_secs(5), || group_members(pgid).is_empty()),
            "chromium processes outlived the test: {:?}",
            group_members(pgid)
        );
        // Helpers that left the group (crashpad handlers start their own session) end
        // with the browser; any still alive is killed, and the test fails.
        let marker = format!("{MARK}={}", self.profile.path().display());
        if !wait_until(Duration::from_secs(5), || marked(&marker).is_empty()) {
            let left = marked(&marker);
            for pid in &left {
                // SAFETY: kill(2) on a process this browser started (found by its marker).
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            panic!("chromium helpers outlived the browser: {left:?}");
        }
        let out = reader.join().expect("stdout reader");
        assert!(
            finished,
            "chromium {args:?} did not finish in {:?}",
            started.elapsed()
        );
        assert!(status.success(), "chromium {args:?} failed: {status}");
        out
    }

    /// Takes a screenshot of `page` at `width`×`height` and returns the PNG's path.
    fn screenshot(&self, page: &Path, width: u32, height: u32) -> PathBuf {
        let png = self
            .profile
            .path()
            .join(format!("shot-{width}x{height}.png"));
        self.run(&[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
            format!("file://{}", page.display()),
        ]);
        png
    }

    /// The DOM of `page` after rendering.
    fn dom(&self, page: &Path) -> String {
        self.run(&[
            "--dump-dom".into(),
            "--window-size=390,844".into(),
            format!("file://{}", page.display()),
        ])
    }
}

/// Decodes a PNG and checks its size and that it is not blank: many colours, and no one
/// colour covers (nearly) every pixel.
fn assert_not_blank(png: &Path, width: u32, height: u32) {
    let file = std::fs::File::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!(
        (info.width, info.height),
        (width, height),
        "{}",
        png.display()
    );
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for px in pixels.chunks(channels) {
        *counts.entry(px).or_default() += 1;
    }
    let total = (width * height) as usize;
    let top = counts.values().copied().max().unwrap_or(0);
    assert!(
        counts.len() > 20 && top < total * 97 / 100,
        "{} looks blank: {} colours, the commonest on {top} of {total} pixels",
        png.display(),
        counts.len()
    );
}

/// The `points` of every polyline of `series` in the chart `chart` of `dom`, as (x, y).
fn plotted(dom: &str, chart: &str, series: &str) -> Vec<Vec<(f64, f64)>> {
    let svg_re = regex::Regex::new(&format!(
        r#"(?s)<svg[^>]*data-chart="{chart}"[^>]*>(.*?)</svg>"#
    ))
    .unwrap();
    let line_re = regex::Regex::new(&format!(
        r#"<polyline[^>]*data-series="{}"[^>]*points="([^"]*)""#,
        regex::escape(series)
    ))
    .unwrap();
    let mut out = Vec::new();
    for svg in svg_re.captures_iter(dom) {
        for line in line_re.captures_iter(&svg[1]) {
            out.push(
                line[1]
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect(),
            );
        }
    }
    out
}

const SCRIPT: &str = r#"
phase("Deploy", #{ changes: true }, || {
    check("<script>alert(1)</script>", || true);
    check(`token ${secret("HTML_TOKEN")}`, || true);
});
phase("Verify", #{}, || {
    monitor("URL", #{ duration: "800ms", interval: "200ms", requests: 2,
        thresholds: #{ p95_ms: 1000, error_rate: 0.25 },
        critical: #{ error_rate: 0.9 }, rollback_on_critical: false });
});
fn rollback(ctx) { log::info("rolling back"); }
"#;

/// A real run with a monitor of four known ticks (the third answers 500 to both of its
/// requests), its report.html and --html copy, rendered by headless Chromium.
#[test]
fn the_html_report_renders_in_a_real_browser_with_its_charts() {
    let Some(bin) = chromium() else {
        skip(
            "the_html_report_renders_in_a_real_browser_with_its_charts",
            "chromium is not installed (apt-get install chromium)",
        );
        return;
    };
    let secret = "html-s3cret-value";
    let s = TestServer::start();
    s.set(
        "/app",
        Behaviour::Sequence(vec![200, 200, 200, 200, 500, 500, 200, 200]),
    );
    let out = Test::new()
        .file("out/.keep", "")
        .env("HTML_TOKEN", secret)
        .script(&SCRIPT.replace("URL", &s.url("/app")))
        .args(["run", "deploy.rhai", "--html", "out/copy.html"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("HTML report written to out/copy.html");
    let report = crate::support::newest_report(out.path());
    crate::pipeline::validate(&report);
    let monitor = &report["phases"][1]["metrics"]["monitor"];
    let ticks = monitor["ticks"].as_array().unwrap();
    let rates: Vec<f64> = ticks
        .iter()
        .map(|t| t["error_rate"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [0.0, 0.0, 1.0, 0.0], "{monitor:#}");
    assert_eq!(ticks[0]["warning"]["p95_ms"], 1000.0);
    assert_eq!(ticks[0]["critical"]["error_rate"], 0.9);

    // The run folder's report.html and the --html copy are the same page.
    let history = std::fs::read_to_string(out.path().join(".deployer/history.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    let run_dir = Path::new(entry["report"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let page = run_dir.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html,
        std::fs::read_to_string(out.path().join("out/copy.html")).unwrap()
    );
    assert!(!html.contains(secret), "the secret is in report.html");
    assert!(html.contains("token ***"));

    let browser = Browser {
        bin,
        profile: TempDir::new(),
    };
    for (w, h) in [(1280, 900), (390, 844)] {
        let png = browser.screenshot(&page, w, h);
        assert_not_blank(&png, w, h);
    }
    let dom = browser.dom(&page);
    assert!(dom.contains("data-chart=\"latency\""), "{dom}");

    // Nothing outside the page: no script, no link, nothing loaded from anywhere.
    assert!(!dom.contains("<script"), "a script in the DOM");
    assert!(!dom.contains("<link"), "a link element in the DOM");
    let external =
        regex::Regex::new(r#"(?i)(src|href|xlink:href)\s*=\s*["']?\s*(https?:|//)"#).unwrap();
    assert!(
        !external.is_match(&dom),
        "external reference: {:?}",
        external.find(&dom)
    );
    assert!(!dom.contains("url("), "a CSS url() in the DOM");
    // The check named like markup is text.
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!dom.contains(secret));

    // The charts are there with one point per tick, where report.json puts them.
    for chart in ["latency", "errors", "levels", "trend"] {
        assert!(
            dom.contains(&format!("data-chart=\"{chart}\"")),
            "no {chart} chart"
        );
    }
    let errors = plotted(&dom, "errors", "error rate");
    assert_eq!(errors.len(), 1, "one unbroken error line: {errors:?}");
    let e = &errors[0];
    assert_eq!(e.len(), ticks.len(), "one point per tick: {e:?}");
    assert!(e.windows(2).all(|p| p[0].0 < p[1].0), "x grows with time");
    // 0 %, 0 %, 100 %, 0 %: the third point at the top, the others on the axis.
    assert!(e[2].1 < e[0].1, "{e:?}");
    assert_eq!((e[0].1, e[1].1, e[3].1), (e[0].1, e[0].1, e[0].1), "{e:?}");
    // The error-rate limits are drawn: warning 25 % below critical 90 %, above 0.
    let warn = plotted(&dom, "errors", "warning error_rate");
    let crit = plotted(&dom, "errors", "critical error_rate");
    assert_eq!((warn.len(), crit.len()), (1, 1), "threshold lines");
    let (wy, cy) = (warn[0][0].1, crit[0][0].1);
    assert!(e[2].1 < cy && cy < wy && wy < e[0].1, "{e:?} {wy} {cy}");
    // Latency: the tick with no successful answer breaks the line; every known P95 is a point.
    let known = ticks.iter().filter(|t| t["p95_ms"].is_number()).count();
    assert_eq!(known, 3, "{monitor:#}");
    let p95: usize = plotted(&dom, "latency", "P95").iter().map(Vec::len).sum();
    assert_eq!(p95, known);
    assert_eq!(plotted(&dom, "latency", "warning p95_ms").len(), 1);
    // Levels: one step up at the failing tick, back down after.
    let levels = plotted(&dom, "levels", "level");
    assert_eq!(levels.len(), 1);
    let ys: Vec<f64> = levels[0].iter().map(|p| p.1).collect();
    assert_eq!(ys.iter().filter(|y| **y < ys[0]).count(), 2, "{ys:?}");
    // Trend: one run so far, one point.
    assert_eq!(plotted(&dom, "trend", "score")[0].len(), 1);
}

/// `--html` into a folder that does not exist, or naming a folder, is refused before
/// anything runs.
#[test]
fn html_to_a_missing_folder_is_refused_before_the_run() {
    let out = Test::new()
        .script(r#"exec(["sh", "-c", "touch ran"]);"#)
        .args(["run", "deploy.rhai", "--html", "no/such/dir/r.html"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("--html no/such/dir/r.html: the folder no/such/dir does not exist");
    assert!(!out.path().join("ran").exists());
    let out = Test::new()
        .file("reports/.keep", "")
        .script(r#"exec(["sh", "-c", "touch ran"]);"#)
        .args(["run", "deploy.rhai", "--html", "reports"])
        .run();
    out.assert_code(2).assert_stderr_contains(
        "--html reports is a folder: give a file name, such as reports/report.html",
    );
    assert!(!out.path().join("ran").exists());
}

/// `deployer rollback` writes its report.html, and its --html copy, like a run.
#[test]
fn a_rollback_writes_its_html_report_too() {
    let out = Test::new()
        .script(
            r#"phase("Deploy", #{ changes: true }, || { check("ok", || true); });
               fn rollback(ctx) { log::info(`rolling back: ${ctx.reason}`); }"#,
        )
        .args(["rollback", "deploy.rhai", "--yes", "--html", "rb.html"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("HTML report written to rb.html");
    let html = std::fs::read_to_string(out.path().join("rb.html")).unwrap();
    assert!(html.contains("deploy.rhai (rollback)"), "{html}");
    assert!(html.contains("data-rollback=\"ok\""), "{html}");
    let report = crate::support::newest_report(out.path());
    assert_eq!(report["mode"], "rollback");
}

/// keep_runs removes old run folders with everything in them (screenshots, report.html);
/// `deployer history` still lists every run, marking those whose folder is gone.
#[test]
fn pruned_run_folders_go_whole_and_stay_in_history() {
    let t = Test::new()
        .file("deployer.toml", "keep_runs = 2\n")
        .script(r#"phase("A", #{}, || { check("ok", || true); });"#);
    let dir = t.path().to_path_buf();
    let deploy = || {
        let (code, _, err) = crate::support::deployer_in(&dir, &["run", "deploy.rhai"], &[]);
        assert_eq!(code, 0, "{err}");
        err
    };
    deploy();
    let runs = dir.join(".deployer/runs");
    let first = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    assert!(first.join("report.html").is_file());
    std::fs::create_dir(first.join("screenshots")).unwrap();
    std::fs::write(first.join("screenshots/home.png"), b"png").unwrap();
    for _ in 0..3 {
        deploy();
    }
    assert!(!first.exists(), "the oldest run folder stays");
    let left: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|d| d.join("report.html").is_file()));

    let (code, json, err) =
        crate::support::deployer_in(&dir, &["history", "--json", "-n", "10"], &[]);
    assert_eq!(code, 0, "{err}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(entries.len(), 4, "{json}");
    let (code, text, err) = crate::support::deployer_in(&dir, &["history"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(text.matches("(folder removed)").count(), 2, "{text}");
    let first_id = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text.contains(&format!("{first_id} (folder removed)")),
        "{text}"
    );
}

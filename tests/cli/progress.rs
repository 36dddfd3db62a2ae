//! Live progress (issue 15): on a terminal (a tmux pane) a running command shows a spinner
//! with its elapsed time and last output line, `wait_healthy` and `retry` update one line,
//! a monitor counts down to its next tick; the spinners clear when a step ends, fails or is
//! interrupted, and the screen then reads like the plain log. Off a terminal nothing of it
//! shows: no control characters at all. The REPL previews probe bodies and shows a
//! `sample()` once.

use std::path::Path;
use std::time::Duration;

use crate::support::server::{Behaviour, TestServer};
use crate::support::tmux::Tmux;
use crate::support::{wait_until, Test};

/// The frames of the spinner (indicatif's, as `host::progress` sets them).
const FRAMES: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn has_frame(line: &str) -> bool {
    line.chars().any(|c| FRAMES.contains(&c))
}

/// Lines of `screen` that show a spinner.
fn spinner_lines(screen: &str) -> Vec<&str> {
    screen.lines().filter(|l| has_frame(l)).collect()
}

/// The text of the only run.log under `dir`.
fn run_log(dir: &Path) -> String {
    let runs = dir.join(".deployer/runs");
    let entries: Vec<_> = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::read_to_string(entries[0].join("run.log")).unwrap()
}

/// Waits for the pane's program to exit and returns the final screen.
#[track_caller]
fn final_screen(t: &Tmux, code: i32) -> String {
    t.wait_screen(&format!("[exit {code}]"), |s| {
        s.contains(&format!("[exit {code}]"))
    })
}

#[test]
fn a_slow_command_shows_a_spinner_with_elapsed_time_and_its_last_output_line() {
    // The output's words are not in the command line (which the spinner shows too). The
    // secret is in both, and masked in both.
    let script = r#"let token = secret("PROGRESS_TOKEN");
exec(["sh", "-c", "printf 'compiling-%s\n' one; sleep 1; printf 'compiling-%s %s\n' two $0; sleep 4; printf 'last-%s\n' words", token]);
log::info("after the command");
"#;
    let Some(t) = Tmux::start_with(
        "a_slow_command_shows_a_spinner_with_elapsed_time_and_its_last_output_line",
        &[("deploy.rhai", script)],
        &[("PROGRESS_TOKEN", "tok-s3cr3t-991")],
        "run deploy.rhai",
        true,
    ) else {
        return;
    };
    // While it runs: the command line as today, and below it one spinner line with the
    // elapsed time and the command's latest output line.
    let mid = t.wait_screen("a spinner showing compiling-two after 2s", |s| {
        spinner_lines(s)
            .iter()
            .any(|l| l.contains("compiling-two") && (l.contains(" 2s") || l.contains(" 3s")))
    });
    assert!(mid.contains("$ sh -c"), "{mid}");
    let spinners = spinner_lines(&mid);
    assert_eq!(spinners.len(), 1, "{mid}");
    assert!(
        spinners[0].contains("sh -c"),
        "the spinner names the command: {mid}"
    );
    assert!(!spinners[0].contains("compiling-one"), "{mid}");
    assert!(spinners[0].contains("compiling-two ***"), "{mid}");
    assert!(!mid.contains("s3cr3t"), "{mid}");
    // After it: the plain lines only; the spinner and the output it showed are gone.
    let end = final_screen(&t, 0);
    assert!(spinner_lines(&end).is_empty(), "{end}");
    assert!(end.contains("after the command"), "{end}");
    assert!(!end.contains("compiling-two"), "{end}");
    assert!(!end.contains("last-words"), "{end}");
    let log = run_log(t.path());
    assert!(log.contains("$ sh -c"), "{log}");
    assert!(!log.chars().any(|c| FRAMES.contains(&c)), "{log}");
    assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");
}

#[test]
fn wait_healthy_updates_one_line_instead_of_printing_each_attempt() {
    let s = TestServer::start();
    let mut codes = vec![503; 7];
    codes.push(200);
    s.set("/health", Behaviour::Sequence(codes));
    let script = format!(
        "http::wait_healthy(\"{}\", #{{ attempts: 10, interval: \"500ms\" }});\nlog::info(\"healthy now\");\n",
        s.url("/health")
    );
    let Some(t) = Tmux::start_with(
        "wait_healthy_updates_one_line_instead_of_printing_each_attempt",
        &[("deploy.rhai", &script)],
        &[],
        "run deploy.rhai",
        true,
    ) else {
        return;
    };
    // Between the countdown and the answer the line is only "attempt 3/10" (the request is
    // in flight): wait for the countdown that follows the third failure.
    let mid = t.wait_screen("the third attempt's line", |s| {
        s.contains("attempt 3/10 failed")
    });
    let attempt_lines: Vec<&str> = mid.lines().filter(|l| l.contains("attempt ")).collect();
    assert_eq!(
        attempt_lines.len(),
        1,
        "one updating line, not one per attempt:\n{mid}"
    );
    let line = attempt_lines[0];
    assert!(has_frame(line), "{mid}");
    assert!(
        line.contains(&format!("waiting for {}", s.url("/health"))),
        "{mid}"
    );
    assert!(line.contains("failed, next in "), "{mid}");
    assert!(line.contains(": status 503"), "{mid}");
    let end = final_screen(&t, 0);
    assert!(spinner_lines(&end).is_empty(), "{end}");
    assert!(end.contains("is healthy (attempt 8/10)"), "{end}");
    assert!(end.contains("healthy now"), "{end}");
    assert_eq!(end.matches("attempt ").count(), 1, "{end}");
    // The run log keeps every attempt, as a run off a terminal prints them.
    let log = run_log(t.path());
    for n in 1..=7 {
        assert!(
            log.contains(&format!("attempt {n}/10: ")),
            "attempt {n}:\n{log}"
        );
    }
    assert!(!log.chars().any(|c| FRAMES.contains(&c)), "{log}");
}

#[test]
fn retry_updates_one_line_and_says_which_attempt_succeeded() {
    let script = r#"retry(#{ attempts: 4, backoff: ["0s", "1500ms", "1500ms", "1500ms"], name: "flaky step" }, || {
    print("body ran");
    exec(["sh", "-c", "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; test $n -ge 3"], #{ quiet: true });
});
log::info("retried");
"#;
    let Some(t) = Tmux::start_with(
        "retry_updates_one_line_and_says_which_attempt_succeeded",
        &[("deploy.rhai", script)],
        &[],
        "run deploy.rhai",
        true,
    ) else {
        return;
    };
    let mid = t.wait_screen("the second attempt's countdown", |s| {
        s.contains("attempt 2/4 failed, next in ")
    });
    let lines: Vec<&str> = mid.lines().filter(|l| l.contains("attempt ")).collect();
    assert_eq!(lines.len(), 1, "{mid}");
    assert!(
        has_frame(lines[0]) && lines[0].contains("retry flaky step"),
        "{mid}"
    );
    assert!(
        lines[0].contains(": command failed with exit code 1"),
        "{mid}"
    );
    let end = final_screen(&t, 0);
    assert!(spinner_lines(&end).is_empty(), "{end}");
    assert!(
        end.contains("flaky step: succeeded on attempt 3/4"),
        "{end}"
    );
    assert!(!end.contains("failed"), "{end}");
    // print() while the retry's line is drawn: whole lines, nothing of the spinner in them.
    assert_eq!(end.lines().filter(|l| *l == "body ran").count(), 3, "{end}");
    let log = run_log(t.path());
    assert!(
        log.contains("warning: flaky step: attempt 1/4 failed"),
        "{log}"
    );
    assert!(
        log.contains("warning: flaky step: attempt 2/4 failed"),
        "{log}"
    );
}

#[test]
fn a_monitor_counts_down_to_its_next_tick_and_shows_the_level() {
    let s = TestServer::start();
    let script = format!(
        "monitor(\"{}\", #{{ duration: \"6s\", interval: \"3s\", requests: 2 }});\n",
        s.url("/health")
    );
    let Some(t) = Tmux::start_with(
        "a_monitor_counts_down_to_its_next_tick_and_shows_the_level",
        &[("deploy.rhai", &script)],
        &[],
        "run deploy.rhai",
        true,
    ) else {
        return;
    };
    let mid = t.wait_screen("the countdown to tick 2", |s| {
        spinner_lines(s).iter().any(|l| l.contains("tick 2/2 in "))
    });
    let line = spinner_lines(&mid)[0].to_string();
    assert!(
        line.contains(&format!("monitor {}", s.url("/health"))),
        "{mid}"
    );
    assert!(line.contains("· level ok"), "{mid}");
    assert!(
        mid.contains("tick 1/2"),
        "the first tick's line is printed: {mid}"
    );
    // The countdown changes as seconds pass.
    let shown = |s: &str| {
        spinner_lines(s)
            .first()
            .and_then(|l| l.split("tick 2/2 in ").nth(1))
            .map(|r| r.split(' ').next().unwrap_or_default().to_string())
    };
    let first = shown(&mid);
    assert!(
        wait_until(Duration::from_secs(3), || {
            let now = shown(&t.screen());
            now.is_some() && now != first
        }),
        "the countdown did not move from {first:?}:\n{}",
        t.screen()
    );
    let end = final_screen(&t, 0);
    assert!(spinner_lines(&end).is_empty(), "{end}");
    assert!(end.contains("tick 2/2"), "{end}");
}

#[test]
fn ctrl_c_clears_the_spinner_and_leaves_no_half_line() {
    let script = "exec([\"sh\", \"-c\", \"printf 'started-%s\\\\n' sleeping; sleep 30\"]);\n";
    let Some(t) = Tmux::start_with(
        "ctrl_c_clears_the_spinner_and_leaves_no_half_line",
        &[("deploy.rhai", script)],
        &[],
        "run deploy.rhai",
        true,
    ) else {
        return;
    };
    t.wait_screen("the spinner", |s| {
        spinner_lines(s)
            .iter()
            .any(|l| l.contains("started-sleeping"))
    });
    t.keys(&["C-c"]);
    let end = final_screen(&t, 130);
    assert!(spinner_lines(&end).is_empty(), "{end}");
    assert!(!end.contains("started-sleeping"), "{end}");
    assert!(end.contains("interrupted (Ctrl-C)"), "{end}");
    // The line after the command's is the error: no spinner, half line or echoed ^C
    // left between them.
    let lines: Vec<&str> = end.lines().collect();
    let command = lines
        .iter()
        .position(|l| l.starts_with("$ sh -c"))
        .unwrap_or_else(|| panic!("{end}"));
    assert_eq!(lines[command + 1], "error: interrupted (Ctrl-C)", "{end}");
}

#[test]
fn off_a_terminal_the_output_is_plain_lines_with_no_control_characters() {
    let s = TestServer::start();
    s.set("/health", Behaviour::Sequence(vec![503, 503, 200]));
    let script = format!(
        r#"exec(["sh", "-c", "echo building; sleep 0.3; echo built"]);
http::wait_healthy("{h}", #{{ attempts: 5, interval: "200ms" }});
retry(#{{ attempts: 3, backoff: ["0s", "200ms", "200ms"] }}, || {{
    exec(["sh", "-c", "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; test $n -ge 2"], #{{ quiet: true }});
}});
monitor("{m}", #{{ duration: "600ms", interval: "300ms", requests: 2 }});
"#,
        h = s.url("/health"),
        m = s.url("/ready")
    );
    // As a person's shell would run it into a pipe: a TERM, no CI, colours not refused.
    let out = Test::new()
        .script(&script)
        .env("TERM", "xterm-256color")
        .env_remove("CI")
        .env_remove("NO_COLOR")
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains(&format!(
            "waiting for {}: attempt 1/5: status 503",
            s.url("/health")
        ))
        .assert_stderr_contains("attempt 2/5: status 503")
        .assert_stderr_contains("is healthy (attempt 3/5)")
        .assert_stderr_contains("warning: attempt 1/3 failed: command failed with exit code 1")
        .assert_stderr_contains("succeeded on attempt 2/3")
        .assert_stderr_contains("tick 2/2");
    let err = &out.stderr;
    assert!(!err.contains('\u{1b}'), "an escape sequence in {err:?}");
    assert!(!err.contains('\r'), "a carriage return in {err:?}");
    assert!(!err.chars().any(|c| FRAMES.contains(&c)), "{err}");
    assert!(!out.stdout.contains('\u{1b}'));
}

// ---------------------------------------------------------------- the REPL

#[test]
fn repl_previews_a_probe_body_on_one_line_with_its_size() {
    let s = TestServer::start();
    // A page of 200 items, each on its own line, as a big JSON or HTML page would be.
    let items: Vec<String> = (0..200).map(|i| format!("\"item-{i:03}\"")).collect();
    let page = format!("[\n{}\n]", items.join(",\n"));
    s.set("/page", Behaviour::Json(200, page.clone()));
    let out = Test::new()
        .args(["repl"])
        .stdin(format!(
            "http::get(\"{page}\")\nlet r = http::get(\"{health}\");\nr\nr.body.len()\n",
            page = s.url("/page"),
            health = s.url("/health")
        ))
        .run();
    out.assert_code(0);
    let stdout = &out.stdout;
    assert!(
        !stdout.contains("item-199"),
        "the whole body was printed: {stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("status 200 · ") && l.ends_with(" ms · application/json"))
        .unwrap_or_else(|| panic!("no status line in {stdout}"));
    let body = lines[head + 1];
    let one_line = page.split_whitespace().collect::<Vec<_>>().join(" ");
    let first: String = one_line.chars().take(200).collect();
    assert_eq!(
        body,
        format!("body: {}… ({} bytes)", first.trim_end(), page.len()),
        "{stdout}"
    );
    assert_eq!(
        lines[head + 2],
        "(.body, .json and .headers hold the whole response)"
    );
    // A short JSON body is shown whole; the value still holds everything.
    assert!(
        stdout.contains("body: {\"status\":\"healthy\"}\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\n20\n"), "{stdout}");
}

#[test]
fn repl_shows_a_sample_result_once() {
    let s = TestServer::start();
    let url = s.url("/health");
    let out = Test::new()
        .args(["repl"])
        .stdin(format!(
            "sample(\"{url}\", #{{ requests: 5 }})\nlet m = sample(\"{url}\", #{{ requests: 3 }});\nfn twice(u) {{ sample(u, #{{ requests: 2 }}); sample(u, #{{ requests: 4 }}) }}\ntwice(\"{url}\")\n"
        ))
        .run();
    out.assert_code(0);
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    // The input's own sample(): its table on stdout, no summary line on stderr.
    assert_eq!(
        stdout.matches("sample of 5 requests").count(),
        1,
        "{stdout}"
    );
    assert!(
        !stderr.contains(&format!("sample {url}: 5 req,")),
        "{stderr}"
    );
    // Assigned: no table, so the summary line says what it measured.
    assert!(
        stderr.contains(&format!("sample {url}: 3 req,")),
        "{stderr}"
    );
    assert!(!stdout.contains("sample of 3 requests"), "{stdout}");
    // Inside a function: each call's line as in a run, and the value's table.
    assert!(
        stderr.contains(&format!("sample {url}: 2 req,")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("sample {url}: 4 req,")),
        "{stderr}"
    );
    assert!(stdout.contains("sample of 4 requests"), "{stdout}");
}

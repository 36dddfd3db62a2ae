//! Integration tests: the real `deployer` binary against real local servers and processes.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::server::{Behaviour, TestServer};
use support::{pid_alive, wait_until, Output, Test};

/// Runs `script` as deploy.rhai with extra arguments.
pub(crate) fn run(script: &str, extra: &[&str]) -> Output {
    Test::new()
        .script(script)
        .args(["run", "deploy.rhai"])
        .args(extra)
        .run()
}

pub(crate) fn read_pid(path: &std::path::Path) -> i32 {
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(path)
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false)),
        "no pid file at {}",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------- exec and sh

#[test]
fn exec_returns_code_stdout_stderr_and_duration() {
    run(
        r#"let r = exec(["sh", "-c", "echo out; echo err >&2"]);
           print(`code=${r.code} ok=${r.ok} out=${r.stdout} err=${r.stderr} ms=${type_of(r.duration_ms)}`);"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("code=0 ok=true out=out err=err ms=i64")
    .assert_stderr_contains("$ sh -c 'echo out; echo err >&2'");
}

#[test]
fn exec_non_zero_exit_names_command_code_and_stderr_tail() {
    run(
        r#"exec(["sh", "-c", "echo building; echo 'error: disk full' >&2; exit 3"]);
           print("not reached");"#,
        &[],
    )
    .assert_code(1)
    .assert_stderr_contains("command failed with exit code 3: sh -c")
    .assert_stderr_contains("error: disk full")
    .assert_stderr_contains("--> deploy.rhai:1:1")
    .assert_stdout_not_contains("not reached");
}

#[test]
fn exec_allow_fail_returns_the_code() {
    run(
        r#"let r = exec(["sh", "-c", "exit 7"], #{ allow_fail: true }); print(`code=${r.code} ok=${r.ok}`);"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("code=7 ok=false");
}

#[test]
fn exec_failure_can_be_caught_with_its_kind_and_code() {
    run(
        r#"try { exec(["false"]); } catch (e) { print(`kind=${e.kind} code=${e.code}`); }"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("kind=exit code=1");
}

#[test]
fn exec_missing_program_says_command_not_found() {
    run(r#"exec(["no-such-program-xyz", "--version"]);"#, &[])
        .assert_code(1)
        .assert_stderr_contains("command not found: no-such-program-xyz");
}

#[test]
fn exec_bad_working_directory_is_named() {
    run(r#"exec(["true"], #{ cwd: "missing/dir" });"#, &[])
        .assert_code(1)
        .assert_stderr_contains("working directory does not exist: missing/dir");
}

#[test]
fn exec_options_cwd_env_stdin() {
    Test::new()
        .file("sub/marker.txt", "here")
        .script(
            r#"let r = exec(["sh", "-c", "cat marker.txt; echo \" $GREETING\"; cat"],
                           #{ cwd: "sub", env: #{ GREETING: "hi" }, stdin: "from stdin" });
               print(r.stdout);"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("here hi\nfrom stdin");
}

#[test]
fn exec_unknown_option_suggests_the_right_one() {
    run(r#"exec(["true"], #{ timout: "5s" });"#, &[])
        .assert_code(2)
        .assert_stderr_contains("unknown option `timout`; did you mean `timeout`?");
}

#[test]
fn exec_timeout_kills_the_whole_process_group() {
    let t = Test::new().script(
        r#"exec(["sh", "-c", "sleep 30 & echo $! > child.pid; wait"], #{ timeout: "500ms" });"#,
    );
    let started = Instant::now();
    let out = t.args(["run", "deploy.rhai"]).run();
    out.assert_code(1)
        .assert_stderr_contains("command timed out after 500ms");
    assert!(started.elapsed() < Duration::from_secs(10));
    let child = read_pid(&out.path().join("child.pid"));
    assert!(
        wait_until(Duration::from_secs(3), || !pid_alive(child)),
        "the grandchild {child} outlived the timeout"
    );
}

#[test]
fn exec_output_that_is_not_utf8_is_decoded_lossily() {
    run(
        r#"let r = exec(["printf", "a\\377b"]); print(`len=${r.stdout.len()} ${r.stdout}`);"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("len=3 a\u{fffd}b");
}

#[test]
fn verbose_streams_command_output_prefixed() {
    run(
        r#"exec(["sh", "-c", "echo line-one; echo line-two >&2"]);"#,
        &["-v"],
    )
    .assert_code(0)
    .assert_stderr_contains("  | line-one")
    .assert_stderr_contains("  ! line-two");
}

#[test]
fn quiet_hides_commands_but_not_errors() {
    run(
        r#"exec(["true"]); log::info("hidden"); log::warn("shown");"#,
        &["-q"],
    )
    .assert_code(0)
    .assert_stderr_not_contains("$ true")
    .assert_stderr_not_contains("hidden")
    .assert_stderr_contains("warning: shown");
}

#[test]
fn sh_runs_pipelines() {
    run(
        r#"let r = sh("printf 'b\na\n' | sort | tr '\n' ,"); print(r.stdout);"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("a,b,");
}

// ---------------------------------------------------------------- spawn

#[test]
fn spawn_gives_a_handle_with_pid_log_alive_and_stop() {
    run(
        r#"let p = spawn(["sh", "-c", "echo started; exec sleep 30"]);
           sleep("300ms");
           print(`alive=${p.alive()} pid=${p.pid > 0}`);
           print(`log=${p.output(5)}`);
           let how = p.stop();
           print(`after=${p.alive()} how=${how}`);"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("alive=true pid=true")
    .assert_stdout_contains("log=started")
    .assert_stdout_contains("after=false how=signal 15");
}

#[test]
fn spawned_processes_are_stopped_when_the_run_fails() {
    let out = run(
        r#"let p = spawn(["sh", "-c", "echo $$ > server.pid; exec sleep 30"]);
           sleep("200ms");
           throw "deploy step failed";"#,
        &[],
    );
    out.assert_code(1)
        .assert_stderr_contains("deploy step failed")
        .assert_stderr_contains("stopped background process");
    let pid = read_pid(&out.path().join("server.pid"));
    assert!(wait_until(Duration::from_secs(2), || !pid_alive(pid)));
}

// ---------------------------------------------------------------- http

#[test]
fn http_get_returns_status_json_headers_and_latency() {
    let s = TestServer::start();
    run(
        &format!(
            r#"let r = http::get("{}");
               print(`status=${{r.status}} ok=${{r.ok}} health=${{r.json.status}} type=${{r.headers["content-type"]}} lat=${{r.latency_ms >= 0.0}}`);"#,
            s.url("/health")
        ),
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("status=200 ok=true health=healthy type=application/json lat=true");
}

#[test]
fn http_post_sends_json_and_headers() {
    let s = TestServer::start();
    run(
        &format!(
            r#"let r = http::post("{}", #{{ json: #{{ text: "deployed", n: 2 }}, headers: #{{ "x-run": "42" }} }});
               print(`method=${{r.json.method}} body=${{r.json.body}}`);"#,
            s.url("/echo")
        ),
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("method=POST");
    let req = s
        .requests()
        .into_iter()
        .find(|r| r.path == "/echo")
        .unwrap();
    assert_eq!(req.header("x-run"), Some("42"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["text"], "deployed");
}

#[test]
fn http_other_methods_and_head() {
    let s = TestServer::start();
    run(
        &format!(
            r#"for m in ["put", "patch", "delete"] {{ }}
               http::put("{u}"); http::patch("{u}"); http::delete("{u}");
               let h = http::head("{h}"); print(`head=${{h.status}} body=${{h.body.len()}}`);"#,
            u = s.url("/echo"),
            h = s.url("/health")
        ),
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("head=200 body=0");
    let methods: Vec<String> = s.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["PUT", "PATCH", "DELETE", "HEAD"]);
}

#[test]
fn http_redirects_are_followed_only_when_asked() {
    let s = TestServer::start();
    run(
        &format!(
            r#"let a = http::get("{u}"); let b = http::get("{u}", #{{ follow_redirects: true }});
               print(`a=${{a.status}} loc=${{a.headers.location}} b=${{b.status}}`);"#,
            u = s.url("/redirect")
        ),
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("a=302 loc=/health b=200");
}

#[test]
fn http_huge_body_is_cut_with_a_clear_error() {
    let s = TestServer::start();
    run(
        &format!(
            r#"try {{ http::get("{}"); }} catch (e) {{ print(`kind=${{e.kind}}`); throw e; }}"#,
            s.url("/huge")
        ),
        &[],
    )
    .assert_code(1)
    .assert_stdout_contains("kind=body")
    .assert_stderr_contains("larger than the 10 MiB limit");
}

#[test]
fn http_transport_errors_have_kinds() {
    let s = TestServer::start();
    // Below the ephemeral range: no server of a parallel test can be given it.
    let closed_port = support::free_port();
    let out = run(
        &format!(
            r#"fn kind(url, opts) {{ try {{ http::get(url, opts); return "none"; }} catch (e) {{ return e.kind; }} }}
               print(`closed=${{kind("http://127.0.0.1:{closed_port}/", #{{}})}}`);
               print(`reset=${{kind("{reset}", #{{}})}}`);
               print(`slow=${{kind("{slow}", #{{ timeout: "200ms" }})}}`);
               print(`url=${{kind("htp:/nowhere", #{{}})}}`);
               http::get("{slow}", #{{ timeout: "200ms" }});"#,
            reset = s.url("/reset"),
            slow = s.url("/slow/3000"),
        ),
        &[],
    );
    out.assert_code(1)
        .assert_stdout_contains("closed=connect")
        .assert_stdout_contains("reset=reset") // the request was sent: not `connect`
        .assert_stdout_contains("slow=timeout")
        .assert_stdout_contains("url=url")
        .assert_stderr_contains("timed out after 200ms")
        .assert_stderr_contains("--> deploy.rhai:6:");
}

#[test]
fn http_bad_json_gives_unit_json() {
    let s = TestServer::start();
    run(
        &format!(
            r#"let r = http::get("{}"); print(`json=${{r.json == ()}} body=${{r.body}}`);"#,
            s.url("/badjson")
        ),
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("json=true body={\"status\": \"healthy\",");
}

#[test]
fn wait_healthy_polls_until_healthy() {
    let s = TestServer::start();
    run(
        &format!(
            r#"let r = http::wait_healthy("{}", #{{ attempts: 5, interval: "50ms", expect: #{{ status: 200, json: #{{ status: "healthy" }} }} }});
               print(`attempts=${{r.attempts}}`);"#,
            s.url("/flaky/2")
        ),
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("attempts=3")
    .assert_stderr_contains("attempt 1/5: status 503, expected 200");
}

#[test]
fn wait_healthy_failure_lists_every_attempt() {
    let s = TestServer::start();
    s.set(
        "/starting",
        Behaviour::Json(200, r#"{"status":"starting"}"#.into()),
    );
    run(
        &format!(
            r#"http::wait_healthy("{}", #{{ attempts: 3, interval: "20ms", expect: #{{ json: #{{ status: "healthy" }} }} }});"#,
            s.url("/starting")
        ),
        &[],
    )
    .assert_code(1)
    .assert_stderr_contains("did not become healthy after 3 attempts")
    .assert_stderr_contains(
        "attempts 1-3: status 200, status is \"starting\", expected \"healthy\"",
    );
}

#[test]
fn wait_healthy_checks_body_headers_and_reports_connect_errors() {
    let s = TestServer::start();
    run(
        &format!(
            r#"http::wait_healthy("{secure}", #{{ attempts: 1, expect: #{{ headers: ["x-frame-options"], body_contains: "" }} }});
               try {{
                 http::wait_healthy("{insecure}", #{{ attempts: 2, interval: "10ms", expect: #{{ headers: #{{ "x-frame-options": "DENY" }} }} }});
               }} catch (e) {{ print(e.message); }}
               http::wait_healthy("http://127.0.0.1:1/", #{{ attempts: 2, interval: "10ms", timeout: "1s" }});"#,
            secure = s.url("/secure"),
            insecure = s.url("/insecure"),
        ),
        &[],
    )
    .assert_code(1)
    .assert_stdout_contains("header `x-frame-options` missing")
    .assert_stderr_contains("attempts 1-2: connect error: could not connect (nothing was sent)");
}

// ---------------------------------------------------------------- retry, sleep, durations

#[test]
fn retry_fixed_schedule_succeeds_on_a_later_attempt() {
    let s = TestServer::start();
    run(
        &format!(
            r#"let r = retry(#{{ attempts: 3, backoff: ["0s", "50ms", "50ms"] }}, || {{
                   let res = http::get("{}");
                   if !res.ok {{ throw `status ${{res.status}}`; }}
                   res.status
               }});
               print(`result=${{r}}`);"#,
            s.url("/flaky/2")
        ),
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("result=200")
    .assert_stderr_contains("attempt 1/3 failed: status 503; waiting 50ms")
    .assert_stderr_contains("attempt 2/3 failed: status 503; waiting 50ms")
    .assert_stderr_contains("succeeded on attempt 3/3");
}

#[test]
fn retry_final_error_lists_every_attempt() {
    run(
        r#"let n = 0;
           retry(#{ attempts: 3, base: "10ms", factor: 2 }, || { exec(["sh", "-c", "echo nope >&2; exit 4"]); });"#,
        &[],
    )
    .assert_code(1)
    .assert_stderr_contains("all 3 attempts failed:")
    .assert_stderr_contains("attempts 1-3: command failed with exit code 4");
}

#[test]
fn retry_does_not_retry_abort_or_what_when_refuses() {
    run(
        r#"let calls = [];
           try { retry(#{ attempts: 5, backoff: ["0s"] }, || { calls.push(1); abort("stop now"); }); } catch (e) { print(`abort=${e.kind} calls=${calls.len()}`); }
           let c2 = [];
           try { retry(#{ attempts: 5, backoff: ["0s"], when: |e| e.kind != "exit" }, || { c2.push(1); exec(["false"]); }); } catch (e) { print(`when=${e.kind} calls=${c2.len()}`); }"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("abort=abort calls=1")
    .assert_stdout_contains("when=exit calls=1");
}

#[test]
fn bad_durations_are_errors_quoting_the_value_and_place() {
    run(
        r#"log::info("start");
sleep("5 minutes");"#,
        &[],
    )
    .assert_code(1)
    .assert_stderr_contains("bad duration \"5 minutes\"")
    .assert_stderr_contains("--> deploy.rhai:2:1");
    run(r#"sleep(-1);"#, &[])
        .assert_code(1)
        .assert_stderr_contains("it must be zero or more seconds");
    run(r#"retry(#{ backoff: ["1x"] }, || 1);"#, &[])
        .assert_code(1)
        .assert_stderr_contains("unknown unit \"x\"");
}

// ---------------------------------------------------------------- environment, secrets, safety

#[test]
fn env_and_vars_with_typed_defaults() {
    run(
        r#"print(`env=${env()} url=${var("base_url")} b=${var("break", false)} n=${var("rounds", 3) + 1} d=${var("absent", "dflt")}`);
           print(`home=${env_var("HOME") != ""} miss=${env_var("NO_SUCH_VAR_XYZ", "fallback")}`);"#,
        &["--env", "staging", "--var", "base_url=http://x", "--var", "break=true", "--var", "rounds=4"],
    )
    .assert_code(0)
    .assert_stdout_contains("env=staging url=http://x b=true n=5 d=dflt")
    .assert_stdout_contains("home=true miss=fallback");
    run(r#"var("a"); var("missing");"#, &["--var", "a=1"])
        .assert_code(1)
        .assert_stderr_contains("variable `missing` is not set: pass --var missing=VALUE (set: a)");
    run(r#"var("n", 1);"#, &["--var", "n=many"])
        .assert_code(1)
        .assert_stderr_contains("--var n=many: expected a whole number");
}

#[test]
fn secrets_are_masked_in_output_logs_and_errors() {
    Test::new()
        .env("API_TOKEN", "s3cr3t-value-123")
        .script(
            r#"let t = secret("API_TOKEN");
               print(`token is ${t}`);
               log::info("header: Bearer " + t);
               exec(["echo", t], #{});
               exec(["sh", "-c", "echo bad $0 >&2; exit 1", t]);"#,
        )
        .args(["run", "deploy.rhai", "-v"])
        .run()
        .assert_code(1)
        .assert_stdout_contains("token is ***")
        .assert_stdout_not_contains("s3cr3t")
        .assert_stderr_contains("header: Bearer ***")
        .assert_stderr_contains("bad ***")
        .assert_stderr_not_contains("s3cr3t");
}

#[test]
fn missing_secret_is_a_clear_error() {
    Test::new()
        .env_remove("NOT_SET_TOKEN")
        .script(r#"secret("NOT_SET_TOKEN");"#)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stderr_contains("secret NOT_SET_TOKEN is not set");
}

#[test]
fn dry_run_runs_no_command_and_no_mutating_request() {
    let s = TestServer::start();
    let out = run(
        &format!(
            r#"let r = exec(["touch", "made-by-exec"]);
               print(`dry=${{r.dry_run}} code=${{r.code}} is=${{dry_run()}}`);
               sh("touch made-by-sh");
               let p = spawn(["sh", "-c", "touch made-by-spawn"]);
               let post = http::post("{echo}", #{{ json: #{{ a: 1 }} }});
               print(`post=${{post.dry_run}}`);
               http::delete("{echo}");
               let g = http::get("{health}");
               print(`get=${{g.status}}`);
               let ro = exec(["echo", "read-only"], #{{ read_only: true }});
               print(`ro=${{ro.stdout}}`);"#,
            echo = s.url("/echo"),
            health = s.url("/health")
        ),
        &["--dry-run"],
    );
    out.assert_code(0)
        .assert_stdout_contains("dry=true code=0 is=true")
        .assert_stdout_contains("post=true")
        .assert_stdout_contains("get=200")
        .assert_stdout_contains("ro=read-only")
        .assert_stderr_contains("would run: touch made-by-exec")
        .assert_stderr_contains("would run: touch made-by-sh")
        .assert_stderr_contains("would start: sh -c 'touch made-by-spawn'")
        .assert_stderr_contains("would send: POST");
    std::thread::sleep(Duration::from_millis(200));
    for f in ["made-by-exec", "made-by-sh", "made-by-spawn"] {
        assert!(!out.path().join(f).exists(), "{f} exists in a dry run");
    }
    let methods: Vec<String> = s.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET"]);
}

#[test]
fn confirm_without_terminal_answers_no_and_says_why() {
    run(
        r#"print(`answer=${confirm("Deploy to production?")}`);"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("answer=false")
    .assert_stderr_contains("no terminal to ask on and --yes was not given; answering no");
    run(
        r#"print(`answer=${confirm("Deploy to production?")}`);"#,
        &["--yes"],
    )
    .assert_code(0)
    .assert_stdout_contains("answer=true");
}

#[test]
fn abort_stops_the_run_with_its_message() {
    run(
        r#"abort("cancelled by operator"); print("not reached");"#,
        &[],
    )
    .assert_code(1)
    .assert_stderr_contains("aborted: cancelled by operator")
    .assert_stdout_not_contains("not reached");
}

#[test]
fn time_functions() {
    run(
        r#"let n = now(); print(`now=${n.len()} z=${n.ends_with("Z")} ts=${timestamp() > 1700000000}`);"#,
        &[],
    )
    .assert_code(0)
    .assert_stdout_contains("now=24 z=true ts=true");
}

// ---------------------------------------------------------------- script errors

#[test]
fn parse_errors_exit_2_with_a_caret_and_run_nothing() {
    let out = run("exec([\"touch\", \"ran\"]);\nlet x = ;\n", &[]);
    out.assert_code(2)
        .assert_stderr_contains("--> deploy.rhai:2:9")
        .assert_stderr_contains(" 2 | let x = ;")
        .assert_stderr_contains("nothing was run");
    assert!(!out.path().join("ran").exists());
}

#[test]
fn unknown_functions_are_found_before_running_with_a_suggestion() {
    let out = run(
        "exec([\"touch\", \"ran\"]);\nfn deploy() { exce([\"x\"]); }\nhttp::gett(\"x\");\nretry(1);\n",
        &[],
    );
    out.assert_code(2)
        .assert_stderr_contains("unknown function `exce`")
        .assert_stderr_contains("did you mean `exec`?")
        .assert_stderr_contains("unknown function `http::gett`")
        .assert_stderr_contains("did you mean `http::get`?")
        .assert_stderr_contains("`retry` takes 2 arguments, but this call gives 1")
        .assert_stderr_contains("3 problems in deploy.rhai; nothing was run");
    assert!(!out.path().join("ran").exists());
}

#[test]
fn unknown_variables_and_properties_are_reported() {
    run("print(undefined_thing);", &[])
        .assert_code(2)
        .assert_stderr_contains("undefined_thing");
    run(r#"let r = exec(["true"]); print(r.stdot);"#, &[])
        .assert_code(1)
        .assert_stderr_contains("the map has no property `stdot`");
}

#[test]
fn errors_in_imported_modules_point_into_the_module_and_the_call_site() {
    Test::new()
        .file(
            "lib/helpers.rhai",
            "fn deploy_worker(name) {\n    exec([\"sh\", \"-c\", \"exit 9\"]);\n}\n",
        )
        .script("import \"lib/helpers\" as h;\nlog::info(\"go\");\nh::deploy_worker(\"api\");\n")
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stderr_contains("command failed with exit code 9")
        .assert_stderr_contains("--> lib/helpers.rhai:2:5")
        .assert_stderr_contains("::: deploy.rhai:3:")
        .assert_stderr_contains("h::deploy_worker(\"api\");");
}

#[test]
fn imports_are_resolved_before_running() {
    let out = Test::new()
        .file("lib/bad.rhai", "fn f() { nope_fn(); }\n")
        .script("exec([\"touch\", \"ran\"]);\nimport \"lib/missing\" as m;\nimport \"lib/bad\" as b;\nimport \"std/nothing\" as n;\nb::g();\n")
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(2)
        .assert_stderr_contains("module \"lib/missing\" not found: looked for lib/missing.rhai")
        .assert_stderr_contains("--> lib/bad.rhai:1:10")
        .assert_stderr_contains("unknown function `nope_fn`")
        .assert_stderr_contains("no standard module \"std/nothing\"")
        .assert_stderr_contains("the module imported as `b` has no public function `g`");
    assert!(!out.path().join("ran").exists());
}

#[test]
fn stdlib_checks_module_works_against_a_real_server() {
    let s = TestServer::start();
    run(
        &format!(
            r#"import "std/checks" as checks;
               checks::json_health("{h}");
               print(`found=${{checks::security_headers("{sec}").len()}}`);
               checks::security_headers("{insec}");"#,
            h = s.url("/health"),
            sec = s.url("/secure"),
            insec = s.url("/insecure")
        ),
        &[],
    )
    .assert_code(1)
    .assert_stdout_contains("found=5")
    .assert_stderr_contains("is missing security headers")
    .assert_stderr_contains("--> std/checks:");
}

// ---------------------------------------------------------------- cancellation

fn interrupt_after(script: &str, ready: &str) -> (Output, Duration) {
    let running = Test::new()
        .script(script)
        .args(["run", "deploy.rhai"])
        .spawn();
    running.wait_for_stderr(ready, Duration::from_secs(10));
    // A script may name a file that must exist before the interrupt (a child's pid).
    let marker = running.path().join("child.pid");
    if script.contains("child.pid") {
        assert!(wait_until(Duration::from_secs(5), || marker.exists()));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    running.interrupt();
    let out = running.wait(Duration::from_secs(5));
    (out, t0.elapsed())
}

#[test]
fn ctrl_c_during_sleep_stops_within_a_second_and_says_where() {
    let (out, took) = interrupt_after(
        "log::info(\"ready\");\nsleep(\"30s\");\nprint(\"not reached\");",
        "ready",
    );
    out.assert_code(130)
        .assert_stderr_contains("interrupted (Ctrl-C)")
        .assert_stderr_contains("--> deploy.rhai:2:1")
        .assert_stdout_not_contains("not reached");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn ctrl_c_during_a_child_process_kills_its_group() {
    let (out, took) = interrupt_after(
        r#"log::info("ready"); exec(["sh", "-c", "sleep 30 & echo $! > child.pid; wait"], #{ quiet: true });"#,
        "ready",
    );
    let _ = took;
    out.assert_code(130).assert_stderr_contains("interrupted");
    let child = read_pid(&out.path().join("child.pid"));
    assert!(
        wait_until(Duration::from_secs(2), || !pid_alive(child)),
        "child {child} still alive"
    );
}

#[test]
fn ctrl_c_and_timeout_end_a_runaway_loop() {
    let (out, took) = interrupt_after(
        "log::info(\"ready\");\nlet i = 0;\nloop { i += 1; }",
        "ready",
    );
    out.assert_code(130).assert_stderr_contains("interrupted");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    run("let i = 0;\nloop { i += 1; }", &["--timeout", "300ms"])
        .assert_code(1)
        .assert_stderr_contains("timed out after 300ms (--timeout)");
}

#[test]
fn ctrl_c_during_an_http_probe() {
    let s = TestServer::start();
    let (out, took) = interrupt_after(
        &format!(
            "log::info(\"ready\");\nhttp::get(\"{}\", #{{ timeout: \"30s\" }});",
            s.url("/slow/20000")
        ),
        "ready",
    );
    out.assert_code(130)
        .assert_stderr_contains("--> deploy.rhai:2:");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

// ---------------------------------------------------------------- command line

#[test]
fn same_named_functions_in_two_modules_are_warned_about() {
    // Rhai 1.27 may call one module's function from inside another when both define the
    // same name and arity; deployer says so before running.
    Test::new()
        .file(
            "a.rhai",
            "private fn helper(x) { `a:${x}` }\nfn fa(x) { helper(x) }\n",
        )
        .file(
            "b.rhai",
            "private fn helper(x) { `b:${x}` }\nfn fb(x) { helper(x) }\n",
        )
        .script("import \"a\" as a;\nimport \"b\" as b;\nprint(a::fa(1) + b::fb(1));\n")
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stderr_contains(
            "warning: `helper` with 1 parameter is defined in a.rhai and b.rhai",
        );
}

#[test]
fn the_standard_library_has_no_clashing_function_names() {
    let imports: String = [
        "checks",
        "preflight",
        "git",
        "cloudflare",
        "laravel",
        "releases",
        "notify",
        "docker",
        "postgres",
    ]
    .iter()
    .map(|m| format!("import \"std/{m}\" as {m};\n"))
    .collect();
    Test::new()
        .script(&imports)
        .args(["check", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stderr_not_contains("warning");
}

#[test]
fn check_reports_every_problem_in_every_file() {
    Test::new()
        .file("a.rhai", "let x = ;\n")
        .file("b.rhai", "exce([]);\n")
        .file("c.rhai", "print(1);\n")
        .args(["check", "a.rhai", "b.rhai", "c.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("--> a.rhai:1:9")
        .assert_stderr_contains("--> b.rhai:1:1")
        .assert_stderr_contains("✓ c.rhai")
        .assert_stderr_contains("2 problems found");
}

#[test]
fn every_shipped_script_passes_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<_> = ["examples", "scripts", "stdlib"]
        .iter()
        .flat_map(|dir| support::walk(&root.join(dir)))
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .collect();
    assert!(files.len() >= 2, "found only {files:?}");
    // The checkout may belong to another user than the one running the tests (CI).
    let out = Test::new()
        .env("DEPLOYER_TRUSTED_DIRS", root)
        .arg("check")
        .args(&files)
        .run();
    out.assert_code(0);
}

#[test]
fn hello_example_runs_offline() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let hello = std::fs::read_to_string(root.join("examples/hello.rhai")).unwrap();
    Test::new()
        .file("hello.rhai", hello)
        .args(["run", "hello.rhai"])
        .run()
        .assert_code(0)
        .assert_stderr_contains("succeeded on attempt 3/3")
        .assert_stderr_contains("hello.rhai finished");
}

#[test]
fn help_version_and_bad_arguments() {
    for sub in [&["--help"][..], &["run", "--help"], &["check", "--help"]] {
        Test::new()
            .args(sub)
            .run()
            .assert_code(0)
            .assert_stdout_contains("Examples:");
    }
    Test::new()
        .arg("--version")
        .run()
        .assert_code(0)
        .assert_stdout_contains("deployer 0.");
    run("print(1);", &["--var", "novalue"])
        .assert_code(2)
        .assert_stderr_contains("expected KEY=VALUE");
    run("print(1);", &["--timeout", "soon"])
        .assert_code(2)
        .assert_stderr_contains("bad duration \"soon\"");
    Test::new()
        .args(["run", "missing.rhai"])
        .run()
        .assert_code(2)
        .assert_stderr_contains("cannot read script missing.rhai");
}

#[path = "cli/pipeline.rs"]
mod pipeline;

#[path = "cli/metrics.rs"]
mod metrics;

#[path = "cli/stdlib.rs"]
mod stdlib;

#[path = "cli/docker.rs"]
mod docker;

#[path = "cli/repl.rs"]
mod repl;

#[path = "cli/scripts.rs"]
mod scripts;

#[path = "cli/gates.rs"]
mod gates;

#[path = "cli/golden.rs"]
mod golden;

#[path = "cli/config.rs"]
mod config;

#[path = "cli/secrets.rs"]
mod secrets;

#[path = "cli/paths.rs"]
mod paths;

#[path = "cli/releases.rs"]
mod releases;

#[path = "cli/process.rs"]
mod process;

#[path = "cli/remote.rs"]
mod remote;

#[path = "cli/remote_files.rs"]
mod remote_files;
#[path = "cli/remote_lock.rs"]
mod remote_lock;

#[path = "cli/fleet_example.rs"]
mod fleet_example;

#[path = "cli/ci_output.rs"]
mod ci_output;
#[path = "cli/html_report.rs"]
mod html_report;
#[path = "cli/init.rs"]
mod init;

#[path = "cli/docs.rs"]
mod docs;

#[path = "cli/browser.rs"]
mod browser;
#[path = "cli/fs_copy.rs"]
mod fs_copy;
#[path = "cli/progress.rs"]
mod progress;

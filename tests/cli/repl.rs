//! `deployer repl` and hot reload through the real binary: the REPL through a pipe (state
//! across inputs, multi-line input, commands, errors, exit codes, Ctrl-C), through a
//! pseudo-terminal in tmux (completion, hints, Ctrl-C, history), and `run --watch` with real
//! file edits (in place, temp file and rename, an imported module, a broken edit).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::server::TestServer;
use crate::support::{pid_alive, wait_until, TempDir, Test, BIN};

/// How long a test waits for something that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `deployer repl ARGS` with `input` on stdin (a pipe).
fn repl(input: &str, args: &[&str]) -> crate::support::Output {
    Test::new().args(["repl"]).args(args).stdin(input).run()
}

// ---------------------------------------------------------------- through a pipe

#[test]
fn repl_keeps_variables_functions_and_imports_between_inputs() {
    Test::new()
        .file("lib/helpers.rhai", "fn twice(x) { x * 2 }")
        .args(["repl"])
        .stdin(
            r#"let x = 40;
x + 2
fn add(a,
       b) {
    a + b
}
add(x, 2)
let m = #{
    name: "web",
    ports: [80, 443],
};
m.ports[1]
import "lib/helpers" as h;
h::twice(x)
let x = 1;
x
"#,
        )
        .run()
        .assert_code(0)
        .assert_stdout_contains("42\n42\n443\n80\n1\n");
}

#[test]
fn repl_prints_maps_arrays_and_sample_results_readably() {
    let out = repl(
        r#"#{ b: [1, 2], a: "x" }
#{ stdout: "a fairly long line of output", stderr: "another long line of text", code: 0 }
#{ p50_ms: 12.0, p95_ms: 40.5, p99_ms: 95, error_rate: 0.005, rps: 48.0, requests: 200 }
print("plain text")
"#,
        &[],
    );
    out.assert_code(0)
        .assert_stdout_contains("{ \"a\": \"x\", \"b\": [1, 2] }\n")
        .assert_stdout_contains(
            "{\n  \"code\": 0,\n  \"stderr\": \"another long line of text\",\n  \"stdout\": \"a fairly long line of output\"\n}\n",
        )
        .assert_stdout_contains("sample of 200 requests\n  p50 ms  p95 ms  p99 ms  errors   rps\n    12.0    40.5    95.0   0.5 %  48.0\n")
        .assert_stdout_contains("plain text\n")
        .assert_stdout_not_contains("\"plain text\"");
}

#[test]
fn repl_commands() {
    let out = Test::new()
        .file("lib.rhai", "fn greet(n) { `hello ${n}` }")
        .args(["repl"])
        .stdin(
            r#":help
:functions
:functions upper
:doc exec
:doc spawn
:doc http::wait_healthy
let x = 42;
:scope
:env
:dry-run on
exec(["touch", "made-in-dry-run"])
:dry-run off
:load lib.rhai
greet("ops")
:clear
:scope
let bg = spawn(["sleep", "30"]);
:quit
print("after quit")
"#,
        )
        .run();
    out.assert_code(0)
        .assert_stdout_contains(":functions [FILTER]")
        .assert_stdout_contains(":dry-run on|off")
        .assert_stdout_contains("  exec(command: Array) -> Map\n")
        .assert_stdout_contains("  http::get(url: String) -> Map\n")
        .assert_stdout_contains("Rhai's standard library:\n")
        .assert_stdout_contains("to_upper(string: String) -> String")
        .assert_stdout_contains("Runs a program (no shell)")
        .assert_stdout_contains("Example:\n      let r = exec([\"git\", \"rev-parse\", \"HEAD\"]);")
        .assert_stdout_contains("spawn(command: Array, options: Map) -> Process")
        .assert_stdout_contains("http::wait_healthy(url: String, options: Map) -> Map")
        .assert_stdout_contains("let x = 42\n")
        .assert_stdout_contains("environment: default")
        .assert_stderr_contains("dry run: on")
        .assert_stderr_contains("would run: touch made-in-dry-run")
        .assert_stderr_contains("loaded lib.rhai: fn greet")
        .assert_stdout_contains("\"hello ops\"\n")
        .assert_stderr_contains("cleared")
        .assert_stdout_contains("(no variables)")
        .assert_stdout_not_contains("after quit")
        .assert_stderr_contains("stopped background process `sleep 30`");
    assert!(!out.path().join("made-in-dry-run").exists());
}

#[test]
fn repl_errors_point_at_the_input_and_exit_2() {
    let out = repl(
        r#"fn risky(m) {
    m.missing
}
let s = "unclosed
risky(#{})
1 +* 2
:fucntions
:doc exce
exec(["sh", "-c", "exit 3"])
risky(1, 2)
print("still running")
"#,
        &[],
    );
    out.assert_code(2)
        .assert_stderr_contains("error: syntax error: Open string is not terminated\n  --> <input 2>:1:9\n   |\n 1 | let s = \"unclosed\n   |         ^\n")
        .assert_stderr_contains("error: the map has no property `missing`\n  --> <input 1>:2:7\n   |\n 2 |     m.missing\n")
        .assert_stderr_contains("  ::: <input 3>:1:1 (in `risky`, called here)")
        .assert_stderr_contains("--> <input 4>:1:")
        .assert_stderr_contains("unknown command `:fucntions`; did you mean `:functions`?")
        .assert_stderr_contains("no function `exce`; did you mean `exec`?")
        .assert_stderr_contains("command failed with exit code 3")
        .assert_stderr_contains("`risky` is called as: risky(m)")
        .assert_stdout_contains("still running");
    repl("1 + 1\n:help\n", &[]).assert_code(0);
    // An input still open at the end of the input is run (and fails) rather than dropped.
    repl("fn f() {\n", &[]).assert_code(2);
}

#[test]
fn repl_uses_environments_vars_and_masks_secrets() {
    let t = Test::new().file(
        "deployer.toml",
        r#"default_env = "staging"
[env.staging.vars]
base_url = "http://staging.test"
[env.production]
confirm = true
[env.production.vars]
base_url = "http://prod.test"
"#,
    );
    t.args(["repl", "--var", "extra=1"])
        .env("API_TOKEN", "s3cret-value-123")
        .stdin(
            r#"env() + " " + var("base_url") + " " + var("extra")
:env production
env() + " " + var("base_url")
:env prod
let t = secret("API_TOKEN");
"token=" + t
print(`printed ${t}`)
confirm("really?")
"#,
        )
        .run()
        .assert_code(2)
        .assert_stdout_contains("\"staging http://staging.test 1\"")
        .assert_stdout_contains("\"production http://prod.test\"")
        .assert_stderr_contains("did you mean \"production\"?")
        .assert_stdout_contains("\"token=***\"")
        .assert_stdout_contains("printed ***")
        .assert_stdout_contains("false")
        .assert_stdout_not_contains("s3cret");
    Test::new()
        .file("deployer.toml", "[env.staging.vars]\nx = \"1\"\n")
        .args(["repl", "--env", "nope"])
        .stdin("1\n")
        .run()
        .assert_code(2)
        .assert_stderr_contains("unknown environment \"nope\"");
}

#[test]
fn repl_load_reload_and_file_argument() {
    let t = Test::new()
        .file(
            "tools.rhai",
            "import \"lib/x\" as x;\nprint(\"tools ran\");\nfn triple(n) { x::twice(n) + n }\nlet loaded_var = 7;\n",
        )
        .file("lib/x.rhai", "fn twice(n) { n * 2 }\n")
        .file("broken.rhai", "fn nope( {\n");
    t.args(["repl", "tools.rhai"])
        .stdin(":load broken.rhai\ntriple(loaded_var)\nx::twice(5)\n:reload\n:load missing.rhai\n")
        .run()
        .assert_code(2)
        .assert_stderr_contains("loaded tools.rhai: fn triple")
        .assert_stderr_contains("--> broken.rhai:1:")
        .assert_stderr_contains("problem in broken.rhai; nothing was run")
        .assert_stdout_contains("21\n10\n")
        .assert_stderr_contains("cannot read missing.rhai");
    let out = Test::new()
        .file("tools.rhai", "print(\"tools ran\");\n")
        .args(["repl", "tools.rhai"])
        .stdin(":reload\n")
        .run();
    out.assert_code(0);
    assert_eq!(out.stdout.matches("tools ran").count(), 2, "{}", out.stdout);
}

// ---------------------------------------------------------------- live processes

/// A running `deployer` whose stdin is a pipe and whose output is read while it runs.
struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

impl Live {
    fn start(dir: &Path, args: &[&str]) -> Live {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("XDG_DATA_HOME", dir.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Live {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `text` has appeared `times` times on stdout or stderr.
    #[track_caller]
    fn wait_for(&self, stream: &str, text: &str, times: usize) {
        let read = || match stream {
            "stdout" => self.stdout(),
            _ => self.stderr(),
        };
        if !wait_until(PATIENCE, || read().matches(text).count() >= times) {
            panic!(
                "waited {PATIENCE:?} for {text:?} x{times} on {stream}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout(),
                self.stderr()
            );
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Closes stdin and waits for the exit code.
    #[track_caller]
    fn finish(mut self) -> (i32, String, String) {
        self.stdin.take();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (status.code().unwrap_or(-1), self.stdout(), self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "did not exit\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves the way many editors do: write a temporary file, then rename it over the original.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.swp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn repl_ctrl_c_cancels_the_evaluation_and_the_session_goes_on() {
    let server = TestServer::start();
    let dir = TempDir::new();
    let mut repl = Live::start(dir.path(), &["repl"]);
    repl.send("let n = 5;");
    repl.send(&format!("http::get(\"{}\")", server.url("/slow/30000")));
    assert!(wait_until(PATIENCE, || server.hits("/slow") == 1));
    let asked = Instant::now();
    repl.signal(libc::SIGINT);
    repl.wait_for("stderr", "interrupted (Ctrl-C)", 1);
    assert!(asked.elapsed() < PATIENCE);
    repl.send(r#"exec(["sh", "-c", "echo $$ > child.pid; exec sleep 30"])"#);
    let pid_file = dir.path().join("child.pid");
    assert!(wait_until(PATIENCE, || std::fs::read_to_string(&pid_file)
        .map(|s| s.ends_with('\n'))
        .unwrap_or(false)));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    repl.signal(libc::SIGINT);
    repl.wait_for("stderr", "interrupted (Ctrl-C)", 2);
    assert!(
        wait_until(PATIENCE, || !pid_alive(pid)),
        "the child survived"
    );
    repl.send("n + 1");
    repl.wait_for("stdout", "6\n", 1);
    let (code, _, _) = repl.finish();
    assert_eq!(code, 2, "the interrupted inputs count as failed");
}

#[test]
fn repl_reloads_a_loaded_file_and_its_modules_when_they_change() {
    let dir = TempDir::new();
    let lib = dir.path().join("lib.rhai");
    let module = dir.path().join("mod").join("m.rhai");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::write(&module, "fn tag() { \"m1\" }\n").unwrap();
    std::fs::write(
        &lib,
        "import \"mod/m\" as m;\nfn greet() { \"v1 \" + m::tag() }\n",
    )
    .unwrap();
    let mut repl = Live::start(dir.path(), &["repl", "lib.rhai"]);
    repl.send("greet()");
    repl.wait_for("stdout", "\"v1 m1\"", 1);

    // In place.
    std::fs::write(
        &lib,
        "import \"mod/m\" as m;\nfn greet() { \"v2 \" + m::tag() }\n",
    )
    .unwrap();
    repl.wait_for("stderr", "reloaded lib.rhai", 1);
    repl.send("greet()");
    repl.wait_for("stdout", "\"v2 m1\"", 1);

    // A broken edit keeps the last good version; its error says where.
    std::fs::write(&lib, "fn greet() { \"v3\" \n\nfn other( {\n").unwrap();
    repl.wait_for("stderr", "keeping the previous version", 1);
    assert!(repl.stderr().contains("--> lib.rhai:"), "{}", repl.stderr());
    repl.send("greet()");
    repl.wait_for("stdout", "\"v2 m1\"", 2);

    // Temp file and rename.
    save_by_rename(
        &lib,
        "import \"mod/m\" as m;\nfn greet() { \"v4 \" + m::tag() }\n",
    );
    repl.wait_for("stderr", "reloaded lib.rhai", 2);
    repl.send("greet()");
    repl.wait_for("stdout", "\"v4 m1\"", 1);

    // The imported module.
    std::fs::write(&module, "fn tag() { \"m2\" }\n").unwrap();
    repl.wait_for("stderr", "reloaded mod/m.rhai", 1);
    repl.send("greet()");
    repl.wait_for("stdout", "\"v4 m2\"", 1);
    let (code, _, _) = repl.finish();
    assert_eq!(code, 0);
}

#[test]
fn watch_reruns_on_each_save_of_the_script_or_its_modules() {
    let dir = TempDir::new();
    let script = dir.path().join("deploy.rhai");
    let module = dir.path().join("lib").join("h.rhai");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::write(&module, "fn tag() { \"m1\" }\n").unwrap();
    let version = |v: &str| format!("import \"lib/h\" as h;\nprint(\"run {v} \" + h::tag());\n");
    std::fs::write(&script, version("v1")).unwrap();
    let w = Live::start(dir.path(), &["run", "--watch", "deploy.rhai"]);
    w.wait_for("stdout", "run v1 m1", 1);
    w.wait_for("stderr", "watching deploy.rhai", 1);

    std::fs::write(&script, version("v2")).unwrap();
    w.wait_for("stdout", "run v2 m1", 1);

    save_by_rename(&script, &version("v3"));
    w.wait_for("stdout", "run v3 m1", 1);

    std::fs::write(&module, "fn tag() { \"m2\" }\n").unwrap();
    w.wait_for("stdout", "run v3 m2", 1);

    std::fs::write(
        &script,
        "import \"lib/h\" as h;\nprint(\"run v4\" + h::tag(;\n",
    )
    .unwrap();
    w.wait_for("stderr", "--> deploy.rhai:2:", 1);
    w.wait_for("stderr", "not running it", 1);

    std::fs::write(&script, version("v5")).unwrap();
    w.wait_for("stdout", "run v5 m2", 1);
    assert!(!w.stdout().contains("run v4"));
    assert_eq!(
        w.stderr().matches("running it again").count(),
        4,
        "{}",
        w.stderr()
    );

    w.signal(libc::SIGINT);
    let (code, _, _) = w.finish();
    assert_eq!(code, 0);
}

#[test]
fn watch_lets_a_run_finish_before_running_the_new_version() {
    let dir = TempDir::new();
    let script = dir.path().join("deploy.rhai");
    std::fs::write(
        &script,
        "print(\"start A\");\nsleep(\"1500ms\");\nprint(\"end A\");\n",
    )
    .unwrap();
    let w = Live::start(dir.path(), &["run", "--watch", "deploy.rhai"]);
    w.wait_for("stdout", "start A", 1);
    std::fs::write(&script, "print(\"start B\");\n").unwrap();
    w.wait_for(
        "stderr",
        "the new version compiles; hooks use it from now on",
        1,
    );
    w.wait_for("stdout", "start B", 1);
    let out = w.stdout();
    assert!(
        out.find("end A") < out.find("start B") && out.contains("end A"),
        "{out}"
    );
    // Ctrl-C during a run interrupts it and ends the watch.
    std::fs::write(&script, "print(\"start C\");\nsleep(\"30s\");\n").unwrap();
    w.wait_for("stdout", "start C", 1);
    w.signal(libc::SIGINT);
    let (code, _, err) = w.finish();
    assert_eq!(code, 130, "{err}");
}

#[test]
fn watch_waits_for_a_version_that_compiles() {
    let dir = TempDir::new();
    let script = dir.path().join("deploy.rhai");
    std::fs::write(&script, "print(\"broken\";\n").unwrap();
    let w = Live::start(dir.path(), &["run", "--watch", "deploy.rhai"]);
    w.wait_for("stderr", "--> deploy.rhai:1:", 1);
    w.wait_for("stderr", "watching deploy.rhai", 1);
    std::fs::write(&script, "print(\"fixed\");\n").unwrap();
    w.wait_for("stdout", "fixed", 1);
    w.signal(libc::SIGINT);
    let (code, out, _) = w.finish();
    assert_eq!(code, 0);
    assert!(!out.contains("broken"), "{out}");
}

// ---------------------------------------------------------------- a real terminal (tmux)

use crate::support::tmux::Tmux;

#[test]
fn terminal_completion_hints_multi_line_and_history() {
    let Some(t) = Tmux::start("terminal_completion_hints_multi_line_and_history", "repl") else {
        return;
    };
    t.wait_for("deployer>");
    t.type_text("http::wai");
    t.keys(&["Tab"]);
    t.wait_for("deployer> http::wait_healthy");
    // The hint shows the signature of the function being called.
    t.type_text("(");
    t.wait_for("http::wait_healthy(url: String) -> Map  |  (url: String, options: Map) -> Map");
    // Ctrl-C at the prompt clears the line.
    t.keys(&["C-c"]);
    t.wait_count("deployer>", 2);
    t.type_text("exec(");
    t.wait_for("exec(command: Array) -> Map");
    t.keys(&["C-u"]);
    // Open brackets continue on the next line.
    t.type_text("fn add(a, b) {");
    t.keys(&["Enter"]);
    t.type_text("a + b");
    t.keys(&["Enter"]);
    t.submit("}");
    t.submit("add(40, 2)");
    t.wait_for("\n42\n");
    t.submit("let total = 1;");
    t.type_text("tot");
    t.keys(&["Tab"]);
    t.wait_for("deployer> total");
    t.keys(&["C-u"]);
    // Modules imported in the session complete too.
    t.submit("import \"std/checks\" as checks;");
    t.type_text("checks::json_h");
    t.keys(&["Tab"]);
    t.wait_for("deployer> checks::json_health");
    t.keys(&["C-u", "C-d"]);
    assert!(wait_until(PATIENCE, || !t.alive()), "Ctrl-D did not exit");
    let history = std::fs::read_to_string(t.dir.join("data/deployer/history")).unwrap();
    assert!(history.contains("add(40, 2)"), "{history}");
    assert!(history.contains("fn add(a, b) {"), "{history}");
    assert!(!t.dir.join(".deployer_history").exists());
}

#[test]
fn terminal_ctrl_c_cancels_a_running_sleep() {
    let Some(t) = Tmux::start("terminal_ctrl_c_cancels_a_running_sleep", "repl") else {
        return;
    };
    t.wait_for("deployer>");
    t.type_text("sleep(\"30s\")");
    t.keys(&["Enter"]);
    // Give the evaluation a moment to start (a Ctrl-C before it would only clear a line).
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    t.keys(&["C-c"]);
    t.wait_for("interrupted (Ctrl-C)");
    t.wait_count("deployer>", 2);
    let took = asked.elapsed();
    eprintln!("Ctrl-C to prompt: {took:?}");
    t.submit("1 + 1");
    t.wait_for("\n2\n");
}

#[test]
fn a_running_monitor_takes_new_thresholds_and_hooks_at_the_next_tick() {
    let s = crate::support::server::TestServer::start();
    let dir = TempDir::new();
    let script = dir.path().join("deploy.rhai");
    let version = |limit: &str, tag: &str| {
        format!(
            "fn thresholds() {{ #{{ p50_ms: {limit} }} }}\n\
             fn on_alert(level, info) {{ print(`{tag} alert ${{level}}`); }}\n\
             monitor(\"{}\", #{{ duration: \"20s\", interval: \"100ms\", requests: 2, rollback_on_critical: false }});\n",
            s.url("/health")
        )
    };
    std::fs::write(&script, version("100000", "v1")).unwrap();
    let w = Live::start(dir.path(), &["run", "--watch", "deploy.rhai"]);
    w.wait_for("stderr", "tick 2/", 1);
    // Any latency breaches a 0 ms limit: the next tick raises level 1, and the new
    // version's on_alert reports it. The alert level survives the edit.
    std::fs::write(&script, version("0", "v2")).unwrap();
    w.wait_for("stdout", "v2 alert 1", 1);
    w.wait_for("stdout", "v2 alert 2", 1);
    assert!(!w.stdout().contains("v1 alert"), "{}", w.stdout());
    w.signal(libc::SIGINT);
    let (code, _, err) = w.finish();
    assert_eq!(code, 130, "{err}");
}

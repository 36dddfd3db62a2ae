//! Sampling, monitoring, alert escalation and Prometheus, through the real binary against
//! real local servers (and a real Prometheus when it is installed; required with CI=true).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::server::{Behaviour, TestServer};
use crate::support::{free_port, wait_until, Test};

#[test]
fn sample_measures_a_healthy_target() {
    let s = TestServer::start();
    Test::new()
        .script(&format!(
            r#"let m = sample("{}", #{{ requests: 40, concurrency: 4 }});
               print(`count=${{m.count}} ok=${{m.ok}} err=${{m.error_rate}} p50=${{m.p50_ms > 0.0}} p99=${{m.p99_ms >= m.p50_ms}} s200=${{m.status_counts["200"]}} rps=${{m.rps > 0.0}}`);"#,
            s.url("/health")
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("count=40 ok=40 err=0.0 p50=true p99=true s200=40 rps=true");
}

#[test]
fn a_target_that_is_down_gives_errors_by_kind_not_an_exception() {
    let s = TestServer::start();
    Test::new()
        .script(&format!(
            r#"let m = sample("http://127.0.0.1:{}/", #{{ requests: 5 }});
               print(`errors=${{m.errors}} connect=${{m.error_kinds.connect}} rate=${{m.error_rate}}`);
               let t = sample("{}", #{{ requests: 2, timeout: "100ms" }});
               print(`timeouts=${{t.error_kinds.timeout}}`);"#,
            free_port(),
            s.url("/slow/2000")
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("errors=5 connect=5 rate=1.0")
        .assert_stdout_contains("timeouts=2");
}

#[test]
fn bad_sample_and_monitor_input_is_refused_clearly() {
    for (script, needle) in [
        (
            r#"sample("http://127.0.0.1:1/", #{ requests: 0 });"#,
            "requests must be at least 1, got 0",
        ),
        (
            r#"sample("http://127.0.0.1:1/", #{ duration: "0s" });"#,
            "duration must be more than 0s",
        ),
        (
            r#"sample("http://127.0.0.1:1/", #{ concurrency: -2 });"#,
            "concurrency must be at least 1, got -2",
        ),
        (
            r#"sample("http://127.0.0.1:1/", #{ rate: -5 });"#,
            "rate must be more than 0",
        ),
        (r#"sample("notaurl", #{ requests: 1 });"#, "invalid"),
        (
            r#"monitor("http://127.0.0.1:1/", #{ duration: "1s", thresholds: #{ p95: 100 } });"#,
            "p95_ms",
        ),
        (
            r#"monitor("http://127.0.0.1:1/", #{ interval: "0s" });"#,
            "must be more than 0s",
        ),
    ] {
        Test::new()
            .script(script)
            .args(["run", "deploy.rhai"])
            .run()
            .assert_code(1)
            .assert_stderr_contains(needle);
    }
}

#[test]
fn an_unreachable_open_loop_rate_is_reported() {
    let s = TestServer::start();
    s.set(
        "/slowish",
        Behaviour::Delay(Duration::from_millis(200), 200),
    );
    Test::new()
        .script(&format!(
            r#"let m = sample("{}", #{{ duration: "1s", rate: 200, timeout: "100ms" }});
               print(`target=${{m.target_rate}} achieved=${{m.achieved_rate > 0.0}}`);"#,
            s.url("/slowish")
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("target=200.0");
}

#[test]
fn a_healthy_monitor_stays_at_level_0() {
    let s = TestServer::start();
    Test::new()
        .script(&format!(
            r#"let m = monitor("{}", #{{ duration: "600ms", interval: "200ms", requests: 5,
                                         thresholds: #{{ p95_ms: 2000, error_rate: 0.01 }} }});
               print(`max=${{m.max_level}} ticks=${{m.ticks.len()}} phase=${{m.phase_score}} avail=${{m.availability}}`);"#,
            s.url("/health")
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("max=0 ticks=3 phase=5.0 avail=100.0");
}

#[test]
fn a_5xx_burst_raises_level_1_then_recovers_and_calls_on_alert() {
    let s = TestServer::start();
    let out = Test::new()
        .script(&format!(
            r#"let m = monitor("{}", #{{ duration: "800ms", interval: "200ms", requests: 4,
                                         thresholds: #{{ rate_5xx: 0.0 }} }});
               print(`max=${{m.max_level}} alerts=${{m.alerts.len()}}`);
               fn on_alert(level, info) {{
                   exec(["sh", "-c", "echo \"$1\" >> alerts.txt", "sh", `${{level}} ${{info.name}}`]);
               }}"#,
            s.url("/burst/4/4")
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("max=1 alerts=2")
        .assert_stderr_contains("alert level 1 (warning): ")
        .assert_stderr_contains("alert level 0 (ok)");
    let alerts = std::fs::read_to_string(out.path().join("alerts.txt")).unwrap();
    assert_eq!(alerts, "1 warning\n0 ok\n");
}

#[test]
fn a_sustained_latency_breach_reaches_critical_and_rolls_back() {
    let s = TestServer::start();
    s.set("/api", Behaviour::Delay(Duration::from_millis(120), 200));
    let out = Test::new()
        .script(&format!(
            r#"phase("Deploy", #{{ changes: true }}, || {{ exec(["true"]); }});
               phase("Monitoring", || {{
                   monitor("{}", #{{ duration: "5s", interval: "150ms", requests: 2,
                       thresholds: #{{ p95_ms: 50 }},
                       critical: #{{ p95_ms: 100, sustained: "400ms" }} }});
               }});
               fn rollback(ctx) {{ exec(["sh", "-c", "printf '%s' \"$1\" > rolled-back.txt", "sh", ctx.reason]); }}"#,
            s.url("/api")
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("alert level 3 (critical)")
        .assert_stderr_contains("━━ Rollback: monitoring reached critical");
    let reason = std::fs::read_to_string(out.path().join("rolled-back.txt")).unwrap();
    assert!(
        reason.starts_with("monitoring reached critical"),
        "{reason}"
    );
    let report = crate::support::newest_report(out.path());
    let monitor = &report["phases"][1]["metrics"]["monitor"];
    assert_eq!(monitor["max_level"], 3);
    assert_eq!(monitor["stopped"], "critical");
    assert!(monitor["ticks"].as_array().unwrap().len() >= 3);
    assert!(monitor["ticks"][0]["p95_ms"].as_f64().unwrap() >= 100.0);
}

#[test]
fn a_monitor_closure_and_a_thresholds_function() {
    Test::new()
        .script(
            r#"let n = 0;
               fn thresholds() { #{ error_rate: 0.5 } }
               let m = monitor(|| true, #{ duration: "300ms", interval: "100ms" });
               print(`max=${m.max_level}`);
               let f = monitor(|| false, #{ duration: "500ms", interval: "100ms", rollback_on_critical: false });
               print(`failing max=${f.max_level}`);"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("max=0")
        .assert_stdout_contains("failing max=3");
}

#[test]
fn a_monitor_closure_that_says_nothing_clear_fails_closed() {
    Test::new()
        .script(
            r#"let o = #{ duration: "300ms", interval: "100ms", rollback_on_critical: false };
               print(`string max=${monitor(|| "fine", o).max_level}`);
               print(`down map max=${monitor(|| #{ count: 10, ok: 0 }, o).max_level}`);
               print(`no latency max=${monitor(|| #{ count: 10, ok: 10 }, o + #{ thresholds: #{ p95_ms: 100 } }).max_level}`);
               print(`unit max=${monitor(|| (), o).max_level}`);"#,
        )
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("string max=3")
        .assert_stdout_contains("down map max=3")
        .assert_stdout_contains("no latency max=3")
        .assert_stdout_contains("unit max=0")
        .assert_stderr_contains(
            "the monitor closure returned string `fine`, which says neither healthy nor failing",
        )
        .assert_stderr_contains("error_rate 100.0 % > 5.0 % (critical limit)");
}

/// The ways a monitor ends that the other tests do not show, each with its console lines
/// and the summary kept in report.json: a dry run cut to one tick, a failing `on_alert`
/// hook that monitoring survives, and a closure that asks for a rollback.
#[test]
fn a_monitor_ends_as_its_record_says() {
    let s = TestServer::start();
    Test::new()
        .script(&format!(
            r#"phase("Monitoring", || {{
                   let m = monitor("{}", #{{ duration: "10m", interval: "200ms", requests: 2 }});
                   print(`ticks=${{m.ticks.len()}} stopped=${{m.stopped}}`);
               }});"#,
            s.url("/health")
        ))
        .args(["run", "deploy.rhai", "--dry-run"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("ticks=1 stopped=completed")
        .assert_stderr_contains("  dry run: one tick instead of monitoring for 10m")
        .assert_stderr_contains("monitoring http://")
        .assert_stderr_contains("for 200ms every 200ms (1 ticks)")
        .assert_stderr_contains("monitoring done: highest level 0 (ok), availability 100.0 %");

    let out = Test::new()
        .script(
            r#"let n = 0;
               let m = monitor(|| false, #{ duration: "300ms", interval: "100ms", rollback_on_critical: false });
               print(`max=${m.max_level} alerts=${m.alerts.len()}`);
               fn on_alert(level, info) { throw `pager down at level ${level}`; }"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("max=3 alerts=3")
        .assert_stderr_contains("on_alert hook failed (monitoring goes on): pager down at level 1")
        .assert_stderr_contains("on_alert hook failed (monitoring goes on): pager down at level 3");

    let out = Test::new()
        .script(
            r#"phase("Deploy", #{ changes: true }, || { exec(["true"]); });
               phase("Monitoring", || {
                   let n = 0;
                   monitor(|| { n += 1; if n == 2 { trigger_rollback("canary says no"); } true },
                           #{ duration: "2s", interval: "100ms" });
               });
               fn rollback(ctx) { print(`rolled back: ${ctx.reason}`); }"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stdout_contains("rolled back: canary says no");
    let report = crate::support::newest_report(out.path());
    let monitor = &report["phases"][1]["metrics"]["monitor"];
    assert_eq!(monitor["stopped"], "rollback", "{monitor}");
    assert_eq!(
        monitor["ticks"].as_array().map(Vec::len),
        Some(1),
        "{monitor}"
    );
    assert!(
        monitor["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("closure ")),
        "{monitor}"
    );
}

#[test]
fn ctrl_c_during_a_monitor_keeps_the_summary_so_far() {
    let s = TestServer::start();
    let running = Test::new()
        .script(&format!(
            r#"phase("Monitoring", || {{ monitor("{}", #{{ duration: "30s", interval: "100ms", requests: 2 }}); }});"#,
            s.url("/health")
        ))
        .args(["run", "deploy.rhai"])
        .spawn();
    running.wait_for_stderr("tick 3/", Duration::from_secs(10));
    running.interrupt();
    let out = running.wait(Duration::from_secs(5));
    out.assert_code(130);
    let report = crate::support::newest_report(out.path());
    let monitor = &report["phases"][0]["metrics"]["monitor"];
    assert_eq!(monitor["stopped"], "interrupted");
    assert!(monitor["ticks"].as_array().unwrap().len() >= 3, "{monitor}");
}

#[test]
fn collect_takes_rounds_at_offsets() {
    let s = TestServer::start();
    Test::new()
        .script(&format!(
            r#"let r = collect("{}", #{{ offsets: ["0s", "300ms"], requests: 5 }});
               print(`rounds=${{r.len()}} second=${{r[1].offset}} count=${{r[1].count}}`);"#,
            s.url("/health")
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("rounds=2 second=300ms count=5");
}

// ------------------------------------------- targets that do not answer (fail closed)

/// What a [`RawServer`] does with one request, after reading its head.
#[derive(Clone, Copy)]
enum Raw {
    /// Write these bytes, then close the connection normally.
    Bytes(&'static [u8]),
    /// Write these bytes, then close with a TCP RST (nothing, for a plain reset).
    BytesThenReset(&'static [u8]),
}

const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
/// A response head promising 100 bytes, then 10 of them, then a reset.
const CUT_BODY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
const NOT_HTTP: &[u8] = b"hello, this is not HTTP at all\r\n\r\n";

/// A raw TCP server on 127.0.0.1, one connection at a time: it reads a request head, then
/// does what `plan(n)` says for the n-th request (counted from 0).
struct RawServer {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RawServer {
    fn start(plan: fn(usize) -> Raw) -> RawServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, st) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if !head.ends_with(b"\r\n\r\n") {
                    continue; // closed without a request (a connection the client gave up)
                }
                let n = h.fetch_add(1, Ordering::SeqCst);
                match plan(n) {
                    Raw::Bytes(b) => {
                        let _ = stream.write_all(b);
                    }
                    Raw::BytesThenReset(b) => {
                        let _ = stream.write_all(b);
                        let _ = stream.flush();
                        std::thread::sleep(Duration::from_millis(20));
                        crate::support::server::reset(&stream);
                    }
                }
            }
        });
        RawServer { port, hits, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The exact repro of the issue: a monitor whose target refuses every connection, with
/// thresholds on p95 and 5xx only. It must go critical and roll back, every tick saying why.
#[test]
fn a_refused_target_goes_critical_and_rolls_back() {
    let url = format!("http://127.0.0.1:{}/health", free_port());
    let out = Test::new()
        .script(&format!(
            r#"phase("Deploy", #{{ changes: true }}, || {{ exec(["true"]); }});
               phase("Monitoring", || {{
                   monitor("{url}", #{{ duration: "2s", interval: "300ms",
                       thresholds: #{{ p95_ms: 1000, rate_5xx: 0.05 }},
                       critical: #{{ rate_5xx: 0.05, p95_ms: 1000 }} }});
               }});
               fn rollback(ctx) {{ exec(["sh", "-c", "printf '%s' \"$1\" > rolled-back.txt", "sh", ctx.reason]); }}"#
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("10 req (10 failed: 10 connect), p50 unknown, p95 unknown")
        .assert_stderr_contains(
            "level 1 (warning): failing tick 1 in a row (critical at 3): \
             p95_ms unknown (no successful response) > 1000 ms (critical limit); \
             error_rate 100.0 % > 5.0 % (critical limit)",
        )
        .assert_stderr_contains("alert level 3 (critical)")
        .assert_stderr_contains("━━ Rollback: monitoring reached critical")
        .assert_stderr_not_contains("> 0.05");
    // Never a level beside an unexplained breach: every non-ok tick line names its limits.
    for line in out
        .stderr
        .lines()
        .filter(|l| l.contains(" tick ") && l.contains("— level"))
    {
        assert!(
            line.contains("— level 0 (ok)") || line.contains("(critical limit)"),
            "{line}"
        );
        assert!(
            !line.contains("— level 0 (ok)"),
            "a dead target is never ok: {line}"
        );
    }
    let reason = std::fs::read_to_string(out.path().join("rolled-back.txt")).unwrap();
    assert!(
        reason.contains("p95_ms unknown (no successful response)"),
        "{reason}"
    );
    let report = crate::support::newest_report(out.path());
    let monitor = &report["phases"][1]["metrics"]["monitor"];
    assert_eq!(monitor["max_level"], 3);
    assert_eq!(monitor["stopped"], "critical");
    assert!(monitor["ticks"][0]["p95_ms"].is_null(), "{monitor}");
    assert_eq!(monitor["ticks"][0]["error_rate"], 1.0);
    crate::pipeline::validate(&report);
}

#[test]
fn collect_from_a_dead_target_records_unknown_latency_as_null() {
    let out = Test::new()
        .script(&format!(
            r#"phase("Rounds", || {{
                   let r = collect("http://127.0.0.1:{}/", #{{ offsets: ["0s"], requests: 3 }});
                   print(`p95=${{r[0].p95_ms}} kinds=${{r[0].error_kinds.connect}}`);
               }});"#,
            free_port()
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_stdout_contains("p95= kinds=3")
        .assert_stderr_contains("round 1/1 at +0ms: 3 req (3 failed: 3 connect), p50 unknown");
    let report = crate::support::newest_report(out.path());
    let round = &report["phases"][0]["metrics"]["rounds"][0];
    assert!(round["p95_ms"].is_null(), "{round}");
    assert_eq!(
        round["error_kinds"]["reset"], 0,
        "every kind is listed: {round}"
    );
    crate::pipeline::validate(&report);
}

/// A hanging server, a reset mid-body, a reply that is not HTTP and a 50 % failure mix all
/// reach critical and roll back, like a 5xx storm, with thresholds that name no failure metric.
#[test]
fn targets_that_fail_in_every_way_go_critical_like_a_5xx_storm() {
    let hanging = TestServer::start();
    let cut = RawServer::start(|_| Raw::BytesThenReset(CUT_BODY));
    let garbage = RawServer::start(|_| Raw::Bytes(NOT_HTTP));
    let half = RawServer::start(|n| {
        if n % 2 == 0 {
            Raw::Bytes(OK_CLOSE)
        } else {
            Raw::BytesThenReset(b"")
        }
    });
    let storm = TestServer::start();
    for (url, kind) in [
        (hanging.url("/slow/5000"), "timeout"),
        (cut.url("/"), "body"),
        (garbage.url("/"), "protocol"),
        (half.url("/"), "reset"),
        (storm.url("/status/503"), "5xx"),
    ] {
        let out = Test::new()
            .script(&format!(
                r#"phase("Deploy", #{{ changes: true }}, || {{ exec(["true"]); }});
                   phase("Monitoring", || {{
                       monitor("{url}", #{{ duration: "3s", interval: "200ms", requests: 4, timeout: "150ms",
                           thresholds: #{{ p99_ms: 2000 }}, critical: #{{ rate_5xx: 0.05 }} }});
                   }});
                   fn rollback(ctx) {{ print("rolled back"); }}"#
            ))
            .args(["run", "deploy.rhai"])
            .run();
        out.assert_code(1)
            .assert_stdout_contains("rolled back")
            .assert_stderr_contains("alert level 3 (critical)")
            .assert_stderr_contains("(critical limit)");
        if kind != "5xx" {
            out.assert_stderr_contains(&format!(" {kind}"));
        }
        let report = crate::support::newest_report(out.path());
        let monitor = &report["phases"][1]["metrics"]["monitor"];
        assert_eq!(monitor["stopped"], "critical", "{kind}: {monitor}");
        // Same schedule as the 5xx storm: critical on the 3rd failing tick.
        assert_eq!(
            monitor["ticks"].as_array().unwrap().len(),
            3,
            "{kind}: {monitor}"
        );
    }
}

/// The issue's repro against a server that hangs, with no `timeout`: each tick still fits
/// its interval, so critical comes on the 3rd tick, not after 3 × 10 requests × 10 s.
#[test]
fn a_hanging_target_goes_critical_on_schedule() {
    let hanging = TestServer::start();
    let started = std::time::Instant::now();
    let out = Test::new()
        .script(&format!(
            r#"phase("Deploy", #{{ changes: true }}, || {{ exec(["true"]); }});
               phase("Monitoring", || {{
                   monitor("{}", #{{ duration: "2s", interval: "300ms",
                       thresholds: #{{ p95_ms: 1000, rate_5xx: 0.05 }},
                       critical: #{{ rate_5xx: 0.05, p95_ms: 1000 }} }});
               }});
               fn rollback(ctx) {{ print("rolled back"); }}"#,
            hanging.url("/slow/30000")
        ))
        .args(["run", "deploy.rhai"])
        .timeout(Duration::from_secs(20))
        .run();
    out.assert_code(1)
        .assert_stdout_contains("rolled back")
        .assert_stderr_contains("1 req (1 failed: 1 timeout), p50 unknown")
        .assert_stderr_contains("alert level 3 (critical)");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

/// Fast refusals make a high request rate; `min_rps` counts only successful responses.
#[test]
fn a_throughput_floor_is_not_met_by_refusals() {
    Test::new()
        .script(&format!(
            r#"let m = monitor("http://127.0.0.1:{}/", #{{ duration: "600ms", interval: "200ms",
                   thresholds: #{{ min_rps: 1 }}, critical: #{{ error_rate: 1.0 }}, rollback_on_critical: false }});
               print(`max=${{m.max_level}}`);"#,
            free_port()
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("max=3")
        .assert_stderr_contains("min_rps 0 req/s < 1 req/s (warning limit)");
}

#[test]
fn a_failed_sample_has_unknown_latency_not_zero() {
    let hanging = TestServer::start();
    let cut = RawServer::start(|_| Raw::BytesThenReset(CUT_BODY));
    let half = RawServer::start(|n| {
        if n % 2 == 0 {
            Raw::Bytes(OK_CLOSE)
        } else {
            Raw::BytesThenReset(b"")
        }
    });
    Test::new()
        .script(&format!(
            r#"for u in ["http://127.0.0.1:{closed}/", "{hang}", "{cut}"] {{
                   let m = sample(u, #{{ requests: 4, timeout: "200ms" }});
                   print(`${{m.p95_ms == ()}} ${{m.p95_ms < 500}} ${{m.min_ms == ()}} rate=${{m.error_rate}} kinds=${{m.error_kinds.connect}}/${{m.error_kinds.timeout}}/${{m.error_kinds.body}}`);
               }}
               let m = sample("{half}", #{{ requests: 10 }});
               print(`half: rate=${{m.error_rate}} reset=${{m.error_kinds.reset}} ok=${{m.ok}} p95=${{m.p95_ms < 500}}`);"#,
            closed = free_port(),
            hang = hanging.url("/slow/5000"),
            cut = cut.url("/"),
            half = half.url("/"),
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("true false true rate=1.0 kinds=4/0/0")
        .assert_stdout_contains("true false true rate=1.0 kinds=0/4/0")
        .assert_stdout_contains("true false true rate=1.0 kinds=0/0/4")
        .assert_stdout_contains("half: rate=0.5 reset=5 ok=5 p95=true")
        .assert_stderr_contains("4 req (4 failed: 4 connect), p50 unknown, p95 unknown, p99 unknown, errors 100.0 %")
        .assert_stderr_not_contains("p95 0.0 ms");
}

/// `connect` means "nothing was sent": only a refused connection is `connect`; a reset after
/// the request was read, or a reply that is not HTTP, is not, so a retry on `connect` never
/// resends a POST the server already received.
#[test]
fn http_error_kinds_separate_could_not_connect_from_failed_after_sending() {
    let reset = TestServer::start();
    reset.set("/pay", crate::support::server::Behaviour::Reset);
    let garbage = RawServer::start(|_| Raw::Bytes(NOT_HTTP));
    let out = Test::new()
        .script(&format!(
            r#"for u in ["http://127.0.0.1:{closed}/pay", "{reset}", "{garbage}"] {{
                   try {{ http::post(u); }} catch (e) {{ print(`kind=${{e.kind}} sent=${{e.sent}}`); }}
               }}
               try {{
                   retry(#{{ attempts: 3, backoff: ["0s", "0s", "0s"], when: |e| e.kind == "connect" }},
                         || http::post("{reset}"));
               }} catch (e) {{ print(`retried: ${{e.kind}}`); }}
               try {{
                   retry(#{{ attempts: 3, backoff: ["0s", "0s", "0s"], when: |e| !e.sent }},
                         || http::post("{garbage}"));
               }} catch (e) {{ print(`retried: ${{e.kind}}`); }}"#,
            closed = free_port(),
            reset = reset.url("/pay"),
            garbage = garbage.url("/pay"),
        ))
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("kind=connect sent=false")
        .assert_stdout_contains("kind=reset sent=true")
        .assert_stdout_contains("kind=protocol sent=true")
        .assert_stdout_contains("retried: reset")
        .assert_stdout_contains("retried: protocol");
    // One POST from the loop and one from the retry: never resent.
    assert_eq!(reset.hits("/pay"), 2, "{}", out.stderr);
    assert_eq!(garbage.hits(), 2, "{}", out.stderr);
}

// ---------------------------------------------------------------- Prometheus

/// A ratio over no traffic is NaN in Prometheus; `value > limit` would be false and pass.
#[test]
fn prometheus_value_refuses_nan() {
    let s = TestServer::start();
    s.set(
        "/api/v1/query",
        Behaviour::Json(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}"#.into(),
        ),
    );
    Test::new()
        .script(&format!(
            r#"let r = prometheus::value("{}", "sum(rate(errors[5m])) / sum(rate(requests[5m]))");
               print(`passed with ${{r}}`);"#,
            s.url("")
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(1)
        .assert_stdout_not_contains("passed")
        .assert_stderr_contains("gave NaN, not a number a limit can judge");
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: crate::support::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Starts a real Prometheus that scrapes itself every second, or says why it cannot.
fn start_prometheus() -> Option<Prometheus> {
    let Some(bin) = prometheus_binary() else {
        crate::support::skip(
            "prometheus tests",
            "prometheus is not installed (apt-get install prometheus)",
        );
        return None;
    };
    let dir = crate::support::TempDir::new();
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let p = Prometheus {
        child,
        url,
        _dir: dir,
    };
    // Ready once it has scraped itself at least once.
    let ready = wait_until(Duration::from_secs(30), || {
        let out = Command::new("curl")
            .args(["-s", &format!("{}/api/v1/query?query=up", p.url)])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).contains("\"value\""))
            .unwrap_or(false)
    });
    assert!(ready, "prometheus did not scrape itself within 30 s");
    Some(p)
}

#[test]
fn prometheus_queries_against_a_real_server() {
    let Some(p) = start_prometheus() else { return };
    Test::new()
        .script(&format!(
            r#"let up = prometheus::query("{u}", "up");
               print(`series=${{up.len()}} job=${{up[0].labels.job}} value=${{up[0].value}}`);
               print(`scalar=${{prometheus::query("{u}", "1 + 1")}}`);
               print(`one=${{prometheus::value("{u}", "sum(up)")}}`);
               let r = prometheus::query_range("{u}", "up", "30s", "1s");
               print(`range=${{r.len()}} points=${{r[0].values.len() > 0}}`);
               try {{ prometheus::query("{u}", "sum(up"); }} catch (e) {{ print(`error=${{e.kind}}: ${{e.message}}`); }}"#,
            u = p.url
        ))
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains("series=1 job=prometheus value=1.0")
        .assert_stdout_contains("scalar=2.0")
        .assert_stdout_contains("one=1.0")
        .assert_stdout_contains("range=1 points=true")
        .assert_stdout_contains("error=prometheus: prometheus query failed (bad_data):");
}

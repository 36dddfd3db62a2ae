//! Sampling, monitoring, alert escalation and Prometheus, through the real binary against
//! real local servers (and a real Prometheus when it is installed; required with CI=true).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::server::{Behaviour, TestServer};
use crate::support::{wait_until, Test};

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

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
            closed_port(),
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

// ---------------------------------------------------------------- Prometheus

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
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but prometheus is not installed (.ci/run installs Debian's prometheus)"
        );
        eprintln!("SKIPPED: prometheus is not installed (apt-get install prometheus); this test runs in CI");
        return None;
    };
    let dir = crate::support::TempDir::new();
    let port = closed_port();
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

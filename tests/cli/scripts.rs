//! The ready scripts (`scripts/*.rhai`) and the quickstart, end to end through the real
//! binary: wrangler, php, pm2, composer, npm, pnpm, pg_dump and pg_restore are small
//! recording executables on PATH (some fail on purpose, to prove the retries); health,
//! E2E and monitoring hit real local HTTP servers; the quickstart builds and runs its real
//! demo app.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::server::{Behaviour, TestServer};
use crate::support::{write_executable, Output, Running, Test};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The text of a file of the repository.
fn shipped(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel))
        .unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Creates `DIR/bin` and returns it.
fn bin_dir(t: &Test) -> PathBuf {
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    bin
}

/// Installs a fake `name` in `bin` that appends `name ARGS` to `calls.log` beside `bin`,
/// fails (exit 1) its first `fail` calls whose arguments contain `fail_on` ("" for any),
/// and otherwise runs the shell code `then`.
fn fake(bin: &Path, name: &str, fail_on: &str, fail: usize, then: &str) {
    let dir = bin.parent().unwrap().display().to_string();
    write_executable(
        bin,
        name,
        &format!(
            r#"dir='{dir}'
echo "{name} $*" >> "$dir/calls.log"
case "$*" in
  *'{fail_on}'*)
    n=$(cat "$dir/{name}.failures" 2>/dev/null || echo 0)
    if [ "$n" -lt {fail} ]; then
      echo $((n + 1)) > "$dir/{name}.failures"
      echo "{name}: simulated failure $((n + 1))" >&2
      exit 1
    fi ;;
esac
{then}
"#
        ),
    );
}

/// The commands the fakes saw, in order.
fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The calls of one program.
fn calls_of(dir: &Path, program: &str) -> Vec<String> {
    let prefix = format!("{program} ");
    calls(dir)
        .into_iter()
        .filter(|c| c.starts_with(&prefix))
        .collect()
}

/// The newest run's report.json.
fn report(dir: &Path) -> serde_json::Value {
    let runs = dir.join(".deployer/runs");
    let newest = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("no runs in {}: {e}", runs.display()))
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(newest.join("report.json")).unwrap()).unwrap()
}

/// The phases of a report as `name status score` lines.
fn phases(r: &serde_json::Value) -> Vec<String> {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p["name"].as_str().unwrap(),
                p["status"].as_str().unwrap(),
                p["score"]
            )
        })
        .collect()
}

/// The checks of phase `index` as `name status` lines.
fn checks(r: &serde_json::Value, index: usize) -> Vec<String> {
    r["phases"][index]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect()
}

// ---------------------------------------------------------------- cloudflare.rhai

const API_ACCOUNT: &str = "acc-1";
const API_TOKEN: &str = "cf-token-0123456789abcdef";

/// The API path of a Pages rollback to `project`'s earlier deployment.
fn pages_rollback_path(project: &str) -> String {
    format!("/client/v4/accounts/{API_ACCOUNT}/pages/projects/{project}/deployments/old-{project}/rollback")
}

/// A Cloudflare project in a temp dir: the script, a deployer.toml pointing every URL at
/// `server`, fake `pnpm` and `wrangler` (wrangler fails its first `fail` calls that contain
/// `fail_on`), and Cloudflare API answers for the Pages rollbacks.
fn cloudflare(server: &TestServer, fail_on: &str, fail: usize) -> Test {
    let base = server.url("");
    let base = base.trim_end_matches('/');
    let t = Test::new()
        .file("cloudflare.rhai", shipped("scripts/cloudflare.rhai"))
        .file("apps/worker/wrangler.toml", "name = \"api\"\n")
        .file(
            "deployer.toml",
            format!(
                r#"default_env = "staging"
[env.staging]
api_url = "{base}"
booking_url = "{base}"
dashboard_url = "{base}/"
db_health_path = "/ready"
api_path = "/api"
booking_paths = "/health"
dashboard_paths = "/ready, /status/204"
security_path = "/secure"
backoff = "0s,50ms,50ms"
health_backoff = "0s,50ms,50ms"
e2e_requests = 10
monitor_duration = "800ms"
monitor_interval = "100ms"
monitor_requests = 4
sustained = "250ms"
cloudflare_api = "{base}/client/v4"
"#
            ),
        )
        .env("CLOUDFLARE_API_TOKEN", API_TOKEN)
        .env("CLOUDFLARE_ACCOUNT_ID", API_ACCOUNT);
    let bin = bin_dir(&t);
    fake(&bin, "pnpm", "\u{0}", 0, "echo ok");
    fake(
        &bin,
        "wrangler",
        fail_on,
        fail,
        r#"case "$1 $2" in
  "pages deploy") echo "✨ Deployment complete! Take a peek over at https://new.$5.pages.dev" ;;
  "pages deployment") echo "[{\"Id\": \"new-$5\", \"Environment\": \"Production\"}, {\"Id\": \"old-$5\", \"Environment\": \"Production\"}]" ;;
  "rollback "*) echo "Worker Version old has been deployed to 100% of traffic." ;;
  *) printf 'Deployed api triggers\n  https://api.example.workers.dev\nCurrent Version ID: v-42\n' ;;
esac"#,
    );
    server.set("/api", Behaviour::Status(200));
    for project in ["booking", "dashboard"] {
        server.set(
            &pages_rollback_path(project),
            Behaviour::Json(200, r#"{"success":true,"errors":[],"result":{}}"#.into()),
        );
    }
    t.path_prepend(bin)
}

const CF_CHECKS: [&str; 7] = [
    "pnpm run validate:openapi",
    "pnpm run db:check",
    "pnpm run validate:schemas",
    "pnpm exec tsc --noEmit",
    "pnpm test",
    "pnpm lint",
    "pnpm build",
];

const CF_DEPLOYS: [&str; 3] = [
    "wrangler deploy --env staging",
    "wrangler pages deploy apps/booking/dist --project-name booking --branch main",
    "wrangler pages deploy apps/dashboard/dist --project-name dashboard --branch main",
];

#[test]
fn cloudflare_deploys_checks_monitors_and_scores_100() {
    let server = TestServer::start();
    // The worker deploy fails twice: the third attempt of the 0 s / 30 s / 60 s schedule works.
    let out = cloudflare(&server, "deploy --env", 2)
        .args(["run", "cloudflare.rhai"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("wrangler deploy: succeeded on attempt 3/3")
        .assert_stderr_contains("100/100  PASS")
        .assert_stderr_not_contains(API_TOKEN);
    let mut expected: Vec<String> = CF_CHECKS.iter().map(|c| c.to_string()).collect();
    expected.extend(vec![CF_DEPLOYS[0].to_string(); 3]);
    expected.extend(CF_DEPLOYS[1..].iter().map(|c| c.to_string()));
    expected.push("pnpm run test:e2e".into());
    assert_eq!(calls(out.path()), expected);
    let r = report(out.path());
    assert_eq!(
        phases(&r),
        [
            "Pre-deployment validation passed 5.0",
            "Deploy passed 5.0",
            "Health validation passed 5.0",
            "E2E passed 5.0",
            "Monitoring passed 5.0",
        ]
    );
    assert_eq!(
        checks(&r, 2),
        [
            "Worker health 200 passed",
            "Database connectivity passed",
            "API availability passed",
            "Pages availability passed",
            "Security headers passed",
        ]
    );
    assert_eq!(r["score"], 100.0);
    assert_eq!(r["rollback"]["status"], "not_needed");
    assert_eq!(r["retries"].as_array().unwrap().len(), 2);
    let monitor = &r["phases"][4]["metrics"]["monitor"];
    assert_eq!(monitor["max_level"], 0);
    assert!(monitor["ticks"].as_array().unwrap().len() >= 4);
    assert!(server.hits("/api") >= 10 + 4 * 4);
    assert!(!out
        .path()
        .join(".deployer/cloudflare-staging.deployed")
        .exists());
}

#[test]
fn cloudflare_rolls_back_what_went_out_when_a_deploy_fails() {
    let server = TestServer::start();
    // Every attempt to deploy the dashboard fails: the worker and booking go back.
    let out = cloudflare(&server, "dashboard/dist", 3)
        .args(["run", "cloudflare.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("wrangler pages deploy: all 3 attempts failed")
        .assert_stderr_contains("━━ Rollback: required phase \"Deploy\" failed")
        .assert_stderr_contains("rollback succeeded");
    let wrangler = calls_of(out.path(), "wrangler");
    assert_eq!(
        wrangler,
        [
            CF_DEPLOYS[0],
            CF_DEPLOYS[1],
            CF_DEPLOYS[2],
            CF_DEPLOYS[2],
            CF_DEPLOYS[2],
            "wrangler rollback --message required phase \"Deploy\" failed --env staging --yes",
            "wrangler pages deployment list --project-name booking --environment production --json",
        ]
    );
    assert_eq!(server.hits(&pages_rollback_path("booking")), 1);
    assert_eq!(server.hits(&pages_rollback_path("dashboard")), 0);
    let r = report(out.path());
    assert_eq!(r["rollback"]["status"], "ok");
    assert_eq!(r["rollback"]["phase"], "Deploy");
    assert_eq!(
        phases(&r)[1..3],
        ["Deploy failed 0.0", "Health validation skipped 0.0"]
    );
    // No health probe ran: the pipeline stopped at the failed deploy.
    assert_eq!(server.hits("/health"), 0);
}

/// Starts a Cloudflare deployment and returns once its Monitoring phase began.
fn until_monitoring(t: &Test) -> Running {
    let run = t.spawn();
    run.wait_for_stderr("━━ [5/5] Monitoring", Duration::from_secs(30));
    run
}

#[test]
fn cloudflare_rolls_back_everything_on_5xx_during_monitoring() {
    let server = TestServer::start();
    let t = cloudflare(&server, "\u{0}", 0).args(["run", "cloudflare.rhai"]);
    let run = until_monitoring(&t);
    server.set("/api", Behaviour::Status(500));
    let out = run.wait(Duration::from_secs(30));
    out.assert_code(1)
        .assert_stderr_contains("alert level 3 (critical)")
        .assert_stderr_contains("━━ Rollback: monitoring reached critical")
        .assert_stderr_contains("rollback succeeded");
    let rollbacks = calls_of(out.path(), "wrangler rollback");
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert!(
        rollbacks[0].starts_with("wrangler rollback --message monitoring reached critical"),
        "{rollbacks:?}"
    );
    assert_eq!(server.hits(&pages_rollback_path("booking")), 1);
    assert_eq!(server.hits(&pages_rollback_path("dashboard")), 1);
    let r = report(out.path());
    assert_eq!(r["rollback"]["status"], "ok");
    assert_eq!(r["rollback"]["phase"], "Monitoring");
    assert_eq!(r["phases"][4]["metrics"]["monitor"]["max_level"], 3);
    assert_eq!(r["verdict"], "FAILED");
}

#[test]
fn cloudflare_rolls_back_when_the_health_endpoint_fails_three_checks() {
    let server = TestServer::start();
    let t = cloudflare(&server, "\u{0}", 0).args(["run", "cloudflare.rhai"]);
    let run = until_monitoring(&t);
    server.set("/health", Behaviour::Reset);
    let out = run.wait(Duration::from_secs(30));
    out.assert_code(1).assert_stderr_contains(&format!(
        "━━ Rollback: the health endpoint {} failed 3 checks in a row",
        server.url("/health")
    ));
    assert_eq!(calls_of(out.path(), "wrangler rollback").len(), 1);
    assert_eq!(server.hits(&pages_rollback_path("dashboard")), 1);
    let r = report(out.path());
    assert_eq!(r["rollback"]["status"], "ok");
    assert_eq!(r["phases"][4]["metrics"]["monitor"]["stopped"], "rollback");
}

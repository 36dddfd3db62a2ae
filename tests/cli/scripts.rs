//! The ready scripts (`scripts/*.rhai`) and the quickstart, end to end through the real
//! binary: wrangler, php, pm2, composer, npm, pnpm, pg_dump and pg_restore are small
//! recording executables on PATH (some fail on purpose, to prove the retries); health,
//! E2E and monitoring hit real local HTTP servers; the quickstart builds and runs its real
//! demo app.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::fake::Fake;
use crate::support::server::{Behaviour, TestServer};
use crate::support::{git, newest_report as report, write_executable, Running, Test};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The text of a file of the repository.
fn shipped(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel))
        .unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Creates `DIR/bin` and returns it.
fn bin_dir(t: &Test) -> PathBuf {
    crate::support::fake::bin_dir(t.path())
}

/// Installs a fake `name` in `bin` that appends `name ARGS` to `calls.log` beside `bin`,
/// fails (exit 1) its first `fail` calls whose arguments contain `fail_on` ("" for any),
/// and otherwise runs the shell code `then`.
fn fake(bin: &Path, name: &str, fail_on: &str, fail: usize, then: &str) {
    Fake::new(name)
        .fail_on(fail_on, fail)
        .then(then)
        .install(bin);
}

/// The commands the fakes saw, in order.
fn calls(dir: &Path) -> Vec<String> {
    crate::support::fake::calls(dir)
}

/// The calls of one program.
fn calls_of(dir: &Path, program: &str) -> Vec<String> {
    let prefix = format!("{program} ");
    calls(dir)
        .into_iter()
        .filter(|c| c.starts_with(&prefix))
        .collect()
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
    let t = cloudflare_project(
        format!(
            r#"default_env = "staging"
[env.staging]
[env.staging.vars]
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
        fail_on,
        fail,
    );
    server.set("/api", Behaviour::Status(200));
    for project in ["booking", "dashboard"] {
        server.set(
            &pages_rollback_path(project),
            Behaviour::Json(200, r#"{"success":true,"errors":[],"result":{}}"#.into()),
        );
    }
    t
}

/// The Cloudflare script in a project with `toml` as its deployer.toml, the API token and
/// account in the environment, and recording fake `pnpm` and `wrangler` on PATH (wrangler
/// fails its first `fail` calls that contain `fail_on`).
fn cloudflare_project(toml: String, fail_on: &str, fail: usize) -> Test {
    let t = Test::new()
        .file("cloudflare.rhai", shipped("scripts/cloudflare.rhai"))
        .file("apps/worker/wrangler.toml", "name = \"api\"\n")
        .file("deployer.toml", toml)
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

// ---------------------------------------------------------------- laravel.rhai

/// An app in `dir` on branch main with commits tagged by `tags` (None: untagged), and a
/// Laravel log holding an error from before the deployment.
fn laravel_repo(dir: &Path, tags: &[Option<&str>]) {
    std::fs::create_dir_all(dir.join("storage/logs")).unwrap();
    std::fs::write(dir.join(".gitignore"), "storage/logs/\n").unwrap();
    std::fs::write(
        dir.join("storage/logs/laravel.log"),
        "[2020-01-01 00:00:00] production.ERROR: an old failure\n",
    )
    .unwrap();
    git(dir, &["init", "-q"]);
    git(dir, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    git(dir, &["config", "user.name", "Deployer Test"]);
    git(dir, &["config", "user.email", "test@example.com"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
    git(dir, &["config", "tag.gpgsign", "false"]);
    for (i, tag) in tags.iter().enumerate() {
        std::fs::write(dir.join("VERSION"), format!("{i}\n")).unwrap();
        git(dir, &["add", "."]);
        git(dir, &["commit", "-q", "-m", &format!("release {i}")]);
        if let Some(tag) = tag {
            git(dir, &["tag", tag]);
        }
    }
}

/// A Laravel app in a temp dir (tags v1, v2, v3 on HEAD unless `tags` says otherwise), the
/// script, a production deployer.toml pointing at `server`, and fakes for php, composer,
/// npm, pm2 (its first reload fails), pg_dump and pg_restore; php fails its first
/// `php_fail` calls that contain `php_fail_on`.
fn laravel(server: &TestServer, tags: &[Option<&str>], php_fail_on: &str, php_fail: usize) -> Test {
    let base = server.url("");
    let t = Test::new()
        .file("laravel.rhai", shipped("scripts/laravel.rhai"))
        .file(
            "deployer.toml",
            format!(
                r#"default_env = "production"
[env.production]
[env.production.vars]
app_dir = "app"
base_url = "{}"
health_path = "/health"
endpoints = "/health,/ready,/secure,/insecure,/status/200,/status/204,/echo"
pages = ""
health_attempts = 3
health_interval = "50ms"
retry_backoff = "0s,50ms,50ms"
database_url = "postgres://app@127.0.0.1:5432/app"
restore_db = true
"#,
                base.trim_end_matches('/')
            ),
        );
    laravel_repo(&t.path().join("app"), tags);
    let bin = bin_dir(&t);
    fake(&bin, "php", php_fail_on, php_fail, "echo ok");
    fake(&bin, "composer", "\u{0}", 0, "echo ok");
    fake(&bin, "npm", "\u{0}", 0, "echo ok");
    fake(&bin, "pm2", "reload", 1, "echo ok");
    fake(
        &bin,
        "pg_dump",
        "\u{0}",
        0,
        r#"prev=""
for a in "$@"; do
  if [ "$prev" = "-f" ]; then head -c 4096 /dev/zero > "$a"; fi
  prev="$a"
done"#,
    );
    fake(&bin, "pg_restore", "\u{0}", 0, "echo ok");
    t.path_prepend(bin)
}

const RELEASE: [Option<&str>; 3] = [Some("v1"), Some("v2"), Some("v3")];

/// The calls with the backup's timestamp replaced by `T`.
fn calls_without_time(dir: &Path) -> Vec<String> {
    calls(dir)
        .into_iter()
        .map(|c| match c.find("backups/before-") {
            Some(i) => {
                let rest = &c[i + "backups/before-".len()..];
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                format!("{}backups/before-T{}", &c[..i], &rest[digits..])
            }
            None => c,
        })
        .collect()
}

const LARAVEL_BUILD: [&str; 3] = [
    "composer install --no-dev --optimize-autoloader --no-interaction",
    "npm ci",
    "npm run build",
];

const PG: &str = "-h 127.0.0.1 -p 5432 -U app -d app";

#[test]
fn laravel_deploys_a_tagged_release_with_a_verified_backup() {
    let server = TestServer::start();
    let out = laravel(&server, &RELEASE, "\u{0}", 0)
        .args(["run", "laravel.rhai"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("deploying v3")
        .assert_stderr_contains("pm2 reload laravel-queue: succeeded on attempt 2/3")
        .assert_stderr_contains("100/100  PASS");
    let mut expected: Vec<String> = [
        "php artisan test",
        "composer audit --no-interaction",
        "npm audit --audit-level=high",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(LARAVEL_BUILD.map(String::from));
    expected.extend([
        format!("pg_dump --no-password -Fc -f backups/before-T.dump {PG}"),
        "pg_restore --list backups/before-T.dump".into(),
    ]);
    expected.extend(
        [
            "php artisan down",
            "php artisan migrate --force",
            "php artisan cache:clear",
            "php artisan config:clear",
            "php artisan route:clear",
            "php artisan view:clear",
            "php artisan queue:restart",
            "pm2 reload laravel-queue",
            "pm2 reload laravel-queue",
            "php artisan up",
        ]
        .map(String::from),
    );
    assert_eq!(calls_without_time(out.path()), expected);
    let r = report(out.path());
    assert_eq!(
        phases(&r),
        [
            "Pre-deployment validation passed 5.0",
            "Build & backup passed 5.0",
            "Deploy passed 5.0",
            "Health validation passed 5.0",
            "Smoke tests passed 5.0",
        ]
    );
    assert_eq!(checks(&r, 4).len(), 8);
    assert_eq!(
        checks(&r, 4)[7],
        "No errors logged since the deploy began passed"
    );
    assert_eq!(r["score"], 100.0);
    assert_eq!(r["rollback"]["status"], "not_needed");
    for path in ["/ready", "/secure", "/insecure", "/status/204", "/echo"] {
        assert_eq!(server.hits(path), 1, "{path}");
    }
    let backups: Vec<_> = std::fs::read_dir(out.path().join("backups"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dump"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].metadata().unwrap().len(), 4096);
    // The marker that keeps the newest verified backup from retention.
    let mut marker = backups[0].path().into_os_string();
    marker.push(".verified");
    assert!(std::path::Path::new(&marker).is_file());
}

#[test]
fn laravel_checks_its_pages_in_a_real_browser_with_screenshots() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join("chromium").is_file()) {
        crate::support::skip(
            "laravel page checks",
            "no `chromium` on PATH (Debian: apt-get install chromium)",
        );
        return;
    }
    let server = TestServer::start();
    let out = laravel(&server, &RELEASE, "\u{0}", 0)
        .args([
            "run",
            "laravel.rhai",
            "--var",
            "pages=/page/good,/page/console-error",
        ])
        .timeout(Duration::from_secs(120))
        .run();
    out.assert_stderr_contains("boom from the page");
    let r = report(out.path());
    let smoke = checks(&r, 4);
    assert!(
        smoke.contains(&"/page/good works in a browser passed".to_string()),
        "{smoke:?}"
    );
    assert!(
        smoke.contains(&"/page/console-error works in a browser failed".to_string()),
        "{smoke:?}"
    );
    assert_eq!(r["screenshots"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["screenshots"][0]["ok"], true);
    assert_eq!(r["screenshots"][1]["ok"], false);
}

#[test]
fn laravel_rolls_back_a_failed_migration_to_the_previous_tag_and_restores_the_database() {
    let server = TestServer::start();
    let out = laravel(&server, &RELEASE, "migrate", 1)
        .args(["run", "laravel.rhai", "--yes"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("command failed with exit code 1: php artisan migrate --force")
        .assert_stderr_contains("━━ Rollback: required phase \"Deploy\" failed")
        .assert_stderr_contains("rolled back to v2")
        .assert_stderr_contains("rollback succeeded");
    let all = calls_without_time(out.path());
    let from = all
        .iter()
        .position(|c| c == "php artisan migrate --force")
        .unwrap();
    let mut expected: Vec<String> = vec![
        "php artisan migrate --force".into(),
        "php artisan down".into(),
    ];
    expected.extend(LARAVEL_BUILD.map(String::from));
    expected.extend([
        "pg_restore --list backups/before-T.dump".to_string(),
        format!("pg_restore --no-password --no-owner --exit-on-error --single-transaction --clean --if-exists {PG} backups/before-T.dump"),
    ]);
    expected.extend(
        [
            "php artisan cache:clear",
            "php artisan config:clear",
            "php artisan route:clear",
            "php artisan view:clear",
            "php artisan queue:restart",
            "pm2 reload laravel-queue",
            "pm2 reload laravel-queue",
            "php artisan up",
        ]
        .map(String::from),
    );
    assert_eq!(all[from..], expected);
    let app = out.path().join("app");
    assert_eq!(git(&app, &["describe", "--tags"]), "v2");
    assert_eq!(std::fs::read_to_string(app.join("VERSION")).unwrap(), "1\n");
    let r = report(out.path());
    assert_eq!(r["rollback"]["status"], "ok");
    assert_eq!(
        phases(&r)[2..],
        [
            "Deploy failed 0.0",
            "Health validation skipped 0.0",
            "Smoke tests skipped 0.0"
        ]
    );
    assert_eq!(server.hits("/health"), 1);
}

#[test]
fn laravel_refuses_an_untagged_production_release_and_asks_before_rolling_back() {
    let server = TestServer::start();
    // HEAD has no tag: production stops before anything changes.
    let out = laravel(&server, &[Some("v1"), None], "\u{0}", 0)
        .args(["run", "laravel.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("production deploys a tagged release");
    assert_eq!(
        calls(out.path()),
        [
            "php artisan test",
            "composer audit --no-interaction",
            "npm audit --audit-level=high"
        ]
    );
    assert_eq!(report(out.path())["rollback"]["status"], "not_needed");

    // Without --yes and without a terminal the rollback asks, gets no, and stops: exit 3.
    let out = laravel(&server, &RELEASE, "migrate", 1)
        .args(["run", "laravel.rhai"])
        .run();
    out.assert_code(3)
        .assert_stderr_contains("not confirmed: Check out v2 in app")
        .assert_stderr_contains("ACTION NEEDED");
    assert_eq!(git(&out.path().join("app"), &["describe", "--tags"]), "v3");
    assert!(!calls(out.path()).contains(&"php artisan up".to_string()));
    assert_eq!(report(out.path())["rollback"]["status"], "failed");
}

// ---------------------------------------------------------------- monitor.rhai

/// A monitoring setup in a temp dir: the script and a deployer.toml watching `path` of
/// `server` in seconds, with the webhook secret pointing at the server's /hook.
fn monitoring(t: Test, server: &TestServer, path: &str) -> Test {
    t.file("monitor.rhai", shipped("scripts/monitor.rhai"))
        .file(
            "deployer.toml",
            format!(
                r#"default_env = "production"
[env.production]
[env.production.vars]
url = "{}"
round_offsets = "0s,100ms,200ms"
round_requests = 5
duration = "1s"
interval = "100ms"
requests = 3
sustained = "200ms"
"#,
                server.url(path)
            ),
        )
        .env("MONITOR_WEBHOOK_URL", server.url("/hook"))
        .env_remove("SLACK_WEBHOOK_URL")
        .args(["run", "monitor.rhai"])
}

/// The JSON bodies posted to the server's /hook.
fn hooks(server: &TestServer) -> Vec<serde_json::Value> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/hook")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

#[test]
fn monitor_collects_rounds_compares_runs_and_alerts_through_the_webhook() {
    let server = TestServer::start();
    server.set("/hook", Behaviour::Status(200));
    let first = monitoring(Test::new(), &server, "/health").run();
    first
        .assert_code(0)
        .assert_stdout_contains("Monitoring report: production")
        .assert_stdout_contains("previous run: none with metrics rounds")
        .assert_stderr_not_contains(&server.url("/hook"));
    let r = report(first.path());
    assert_eq!(
        r["phases"][0]["metrics"]["rounds"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(checks(&r, 0).len(), 3);
    assert_eq!(
        checks(&r, 1),
        [
            "Compared with the previous run warning",
            "Trend over the last ten runs passed"
        ]
    );
    assert_eq!(r["phases"][2]["metrics"]["monitor"]["max_level"], 0);
    let sent = hooks(&server);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["event"], "finished");
    assert_eq!(sent[0]["verdict"], "PASS");

    // The same folder again, watching a URL that starts failing once the rounds are over
    // (15 requests): alerts rise to critical, each one notified, and the run fails.
    let t = Test::new();
    std::fs::create_dir_all(t.path().join(".deployer")).unwrap();
    copy_dir(&first.path().join(".deployer"), &t.path().join(".deployer"));
    let second = monitoring(t, &server, "/burst/15/1000").run();
    second
        .assert_code(1)
        .assert_stdout_contains("previous run 20")
        .assert_stdout_contains("scores of the last 1 runs: 100.0")
        .assert_stderr_contains("is at level 3 (critical)");
    let r = report(second.path());
    assert_eq!(r["phases"][2]["metrics"]["monitor"]["max_level"], 3);
    assert_eq!(r["verdict"], "FAILED");
    assert_eq!(r["rollback"]["status"], "not_needed");
    let levels: Vec<i64> = hooks(&server)[1..]
        .iter()
        .filter(|h| h["event"] == "alert")
        .map(|h| h["level"].as_i64().unwrap())
        .collect();
    assert_eq!(levels, [1, 2, 3]);
    assert_eq!(hooks(&server).last().unwrap()["verdict"], "FAILED");
}

/// Copies a folder tree (test setup).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------- the quickstart

/// Copies the quickstart into `to` as the repository lays it out, without what its runs
/// leave behind (the releases, the app's build).
pub(crate) fn copy_quickstart(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let name = e.file_name();
            if [".deploy", "target", "Cargo.lock"].contains(&name.to_str().unwrap()) {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(&name));
            } else {
                std::fs::copy(e.path(), to.join(&name)).unwrap();
            }
        }
    }
    copy(
        &Path::new(ROOT).join("examples/quickstart"),
        &to.join("examples/quickstart"),
    );
}

/// Runs deployer in `dir` with `args`; returns its exit code, stdout and stderr.
pub(crate) fn deployer_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(crate::support::BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("deployer {args:?} did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pid of the quickstart's live app (`.deploy/app.pid`).
fn live_app_pid(state: &Path) -> i32 {
    std::fs::read_to_string(state.join("app.pid"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {}", state.join("app.pid").display()))
}

/// Kills a pid when dropped: the quickstart's detached app must not outlive the test.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 1 && crate::support::pid_alive(self.0) {
            // SAFETY: kill(2) on the app this test deployed.
            unsafe { libc::kill(self.0, libc::SIGTERM) };
        }
    }
}

#[test]
fn quickstart_deploys_a_release_then_rolls_back_a_broken_one() {
    let t = Test::new();
    copy_quickstart(t.path());
    let script = "examples/quickstart/deploy.rhai";
    let state = t.path().join("examples/quickstart/.deploy");

    // A good release (the demo app is built here, once; the second run reuses the build).
    let (code, stdout, stderr) = deployer_in(
        t.path(),
        &[
            "run",
            script,
            "--var",
            "monitor=1s",
            "--var",
            "interval=200ms",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let good = std::fs::read_to_string(state.join("deploying")).unwrap();
    // The live app is detached: it keeps serving after the run, until the next deploy.
    let first_app = live_app_pid(&state);
    let _first = KillOnDrop(first_app);
    assert!(crate::support::pid_alive(first_app), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "quickstart: score 100/100 PASS; rollback not_needed; live release {good}"
        )),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("100/100  PASS"), "{stderr}");
    // No warning the user cannot act on (fn rollback(ctx) vs a std/releases function).
    assert!(!stderr.contains("warning"), "{stderr}");

    // A broken release: it passes health and E2E, fails under monitoring, and goes back.
    let (code, stdout, stderr) = deployer_in(
        t.path(),
        &[
            "run",
            script,
            "--var",
            "break=true",
            "--var",
            "monitor=10s",
            "--var",
            "interval=200ms",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    let bad = std::fs::read_to_string(state.join("deploying")).unwrap();
    assert_ne!(good, bad);
    for needle in [
        &format!("release {good} serves http://127.0.0.1:"),
        "━━ Rollback: monitoring reached critical",
        &format!("rolled back from {bad} to {good}"),
        &format!("{good} serves http://127.0.0.1:"),
        "rollback succeeded",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in\n{stderr}");
    }
    assert!(
        stderr.contains(&format!("{bad} is marked bad; {good} is live")),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("rollback ok; live release {good}")),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_link(state.join("current")).unwrap(),
        Path::new("releases").join(&good)
    );
    assert!(state
        .join("releases")
        .join(&bad)
        .join(".deployer-bad")
        .exists());
    let r = report(t.path());
    assert_eq!(r["rollback"]["status"], "ok");
    assert_eq!(
        phases(&r)[..4],
        [
            "Pre-deployment validation passed 5.0",
            "Build & deploy passed 5.0",
            "Health validation passed 5.0",
            "E2E passed 5.0",
        ]
    );
    assert_eq!(r["phases"][4]["status"], "failed");
    // The next deploy stopped the first app; the release put back serves, detached.
    let serving: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("serving.json")).unwrap())
            .unwrap();
    assert_eq!(serving["release"], good.as_str());
    let put_back = live_app_pid(&state);
    let _put_back = KillOnDrop(put_back);
    assert_eq!(serving["pid"].as_i64().unwrap() as i32, put_back);
    assert!(crate::support::pid_alive(put_back), "{stderr}");
    assert!(
        crate::support::wait_until(Duration::from_secs(5), || !crate::support::pid_alive(
            first_app
        )),
        "the first release's app {first_app} still runs"
    );
    let detached: Vec<i64> = r["detached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pid"].as_i64().unwrap())
        .collect();
    assert!(detached.contains(&(put_back as i64)), "{detached:?}");

    // Both runs in the history of the repository's root.
    let (code, stdout, _) = deployer_in(t.path(), &["history"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("FAILED") && lines[0].contains("ok"),
        "{stdout}"
    );
    assert!(lines[1].contains("PASS"), "{stdout}");
    // Which release went live, and which run rolled back from which release to which.
    assert!(lines[0].contains(&format!("{bad} -> {good}")), "{stdout}");
    assert!(
        lines[1].contains(" deploy ") && lines[1].contains(&format!(" {good} ")),
        "{stdout}"
    );
}

#[test]
fn the_example_deployer_toml_of_the_scripts_is_valid() {
    Test::new()
        .file("deployer.toml", shipped("scripts/deployer.toml"))
        .arg("history")
        .run()
        .assert_code(0)
        .assert_stdout_contains("no runs recorded");
    // Its environments and per-script variables, read by stand-ins named like the scripts
    // (the real ones would reach the placeholder URLs): no --env means staging.
    let probe = r#"print(`${env()} ${var("api_url", "-")} ${var("base_url", "-")} ${var("url", "-")} ${var("project_dir", "-")}`);"#;
    for (script, env, expected) in [
        (
            "cloudflare.rhai",
            None,
            "staging https://api-staging.example.com - - -",
        ),
        (
            "cloudflare.rhai",
            Some("production"),
            "production https://api.example.com - - -",
        ),
        (
            "laravel.rhai",
            Some("production"),
            "production - https://example.com - -",
        ),
        ("docker-compose.rhai", None, "staging - - - /srv/app"),
        (
            "monitor.rhai",
            Some("production"),
            "production - - https://api.example.com/health -",
        ),
    ] {
        let mut args = vec!["run", script];
        if let Some(env) = env {
            args.extend(["--env", env]);
        }
        Test::new()
            .file("deployer.toml", shipped("scripts/deployer.toml"))
            .file(script, probe)
            .args(args)
            .arg("--yes")
            .run()
            .assert_code(0)
            .assert_stdout_contains(expected);
    }
}

#[test]
fn cloudflare_dry_run_with_its_default_schedules_is_a_quick_plan() {
    // The URLs point at a loopback port where nothing listens; the retry and health
    // schedules are the script's defaults (0 s / 30 s / 60 s and more), which a dry run must
    // not wait out.
    let dead = "http://127.0.0.1:9";
    let out = cloudflare_project(
        format!(
            r#"default_env = "staging"
[env.staging]
[env.staging.vars]
api_url = "{dead}"
booking_url = "{dead}"
dashboard_url = "{dead}/"
cloudflare_api = "{dead}/client/v4"
"#
        ),
        "\u{0}",
        0,
    )
    .args(["run", "cloudflare.rhai", "--dry-run"])
    .timeout(std::time::Duration::from_secs(60))
    .run();
    out.assert_code(0)
        .assert_stderr_contains("Dry run plan")
        .assert_stderr_not_contains("; waiting ")
        .assert_stderr_not_contains("; next in ")
        .assert_stderr_contains("would run: wrangler deploy")
        .assert_stderr_not_contains(API_TOKEN);
    // Nothing ran: no fake tool was called.
    assert!(calls(out.path()).is_empty(), "{:?}", calls(out.path()));
    assert!(report(out.path())["verdict"].is_null());
}

// ---------------------------------------------------------------- laravel.rhai over SSH

/// Installs a fake `name` in `bin` for the test hosts: it appends `IP name ARGS (in DIR)`
/// to `log` (`hostname -I` tells which namespace, so which host, ran it), and fails when
/// the file `fail` exists and its arguments contain `fail_on`.
fn host_fake(bin: &Path, name: &str, log: &Path, then: &str) {
    write_executable(
        bin,
        name,
        &format!(
            "echo \"$(hostname -I | tr -d ' ') {name} $* (in $(pwd))\" >> '{}'\n{then}\n",
            log.display()
        ),
    );
}

/// A Laravel app (tags v1, v2) deployed over SSH to `net`'s two hosts, role `web`: each
/// host has its own deploy folder (`deploy_path` host variable) already running release
/// `old`, its own health URL on `server`, and recording fake php, pm2, pg_dump and
/// pg_restore on the PATH the script gives remote commands (`server_path`).
fn laravel_fleet(net: &crate::support::sshnet::SshNet, server: &TestServer) -> Test {
    let ips = net.ips();
    let t = Test::new().file("laravel.rhai", shipped("scripts/laravel.rhai"));
    let root = t.path().to_path_buf();
    let mut host_vars = String::new();
    for (i, ip) in ips.iter().enumerate() {
        let d = root.join(format!("srv-{i}"));
        std::fs::create_dir_all(d.join("releases/old")).unwrap();
        std::os::unix::fs::symlink("releases/old", d.join("current")).unwrap();
        host_vars.push_str(&format!(
            "[env.test.host_vars.\"{ip}\"]\ndeploy_path = \"{}\"\nurl = \"{}\"\n",
            d.display(),
            server.url(&format!("/host{i}")).trim_end_matches('/')
        ));
        server.set(&format!("/host{i}/up"), Behaviour::Status(200));
    }
    server.set("/up", Behaviour::Status(200));
    let rbin = root.join("rbin");
    std::fs::create_dir_all(&rbin).unwrap();
    let remote_log = root.join("remote.log");
    host_fake(&rbin, "php", &remote_log, "echo ok");
    host_fake(&rbin, "pm2", &remote_log, "echo ok");
    host_fake(
        &rbin,
        "pg_dump",
        &remote_log,
        r#"prev=""
for a in "$@"; do
  if [ "$prev" = "-f" ]; then head -c 4096 /dev/zero > "$a"; fi
  prev="$a"
done"#,
    );
    host_fake(&rbin, "pg_restore", &remote_log, "echo ok");
    let toml = net.toml(
        "",
        &format!(
            "[env.test.roles]\nweb = [{}]\n[env.test.vars]\napp_dir = \"app\"\nbase_url = \"{}\"\nbatch = 1\nbackup_dir = \"{}\"\nserver_path = \"{}\"\nhealth_attempts = 2\nhealth_interval = \"50ms\"\nretry_backoff = \"0s\"\nendpoints = \"/up\"\npages = \"\"\nrequire_tag = true\n{host_vars}",
            ips.iter().map(|ip| format!("\"{ip}\"")).collect::<Vec<_>>().join(", "),
            server.url("").trim_end_matches('/'),
            root.join("backups").display(),
            rbin.display(),
        ),
    );
    let t = t.file("deployer.toml", toml);
    laravel_repo(&t.path().join("app"), &[Some("v1"), Some("v2")]);
    let bin = bin_dir(&t);
    for tool in ["php", "composer", "npm"] {
        fake(&bin, tool, "\u{0}", 0, "echo ok");
    }
    t.path_prepend(bin)
}

/// The lines of the test hosts' log.
fn remote_calls(t: &Path) -> Vec<String> {
    std::fs::read_to_string(t.join("remote.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn laravel_deploys_over_ssh_in_batches_and_rolls_back_the_hosts_that_changed() {
    let Some(net) = crate::support::sshnet::SshNet::start(2) else {
        return;
    };
    let ips = net.ips();
    let server = TestServer::start();
    let out = laravel_fleet(&net, &server)
        .args(["run", "laravel.rhai", "--yes"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("deploying v2")
        .assert_stderr_contains(&format!("batch 2/2: {}", ips[1]));
    // Checks and build ran here, never on the hosts.
    assert_eq!(
        calls(out.path())[..3],
        [
            "php artisan test",
            "composer audit --no-interaction",
            "npm audit --audit-level=high"
        ]
    );
    let remote = remote_calls(out.path());
    let on = |ip: &str, what: &str| {
        remote
            .iter()
            .filter(|l| l.starts_with(&format!("{ip} ")) && l.contains(what))
            .count()
    };
    // The backup and the migration ran once, on the first host; the reload on both.
    assert_eq!(on(&ips[0], "pg_dump --no-password -Fc"), 1, "{remote:#?}");
    assert_eq!(on(&ips[0], "pg_restore --list"), 1, "{remote:#?}");
    assert_eq!(on(&ips[0], "php artisan migrate --force"), 1, "{remote:#?}");
    assert_eq!(on(&ips[1], "migrate"), 0, "{remote:#?}");
    assert_eq!(on(&ips[1], "pg_dump"), 0, "{remote:#?}");
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(on(ip, "php artisan queue:restart"), 1, "{remote:#?}");
        assert_eq!(on(ip, "pm2 reload laravel-queue"), 1, "{remote:#?}");
        let d = out.path().join(format!("srv-{i}"));
        let current = std::fs::read_link(d.join("current")).unwrap();
        assert!(current.starts_with("releases/") && current != Path::new("releases/old"));
        // The uploaded release is the checked-out app, and PM2 reloaded in it.
        assert_eq!(
            std::fs::read_to_string(d.join(&current).join("VERSION")).unwrap(),
            "1\n"
        );
        assert!(on(ip, &format!("(in {})", d.join("current").display())) >= 1);
        assert_eq!(server.hits(&format!("/host{i}/up")), 1);
        assert_eq!(net.logins(i), 1, "one connection to host {i}");
    }
    let dumps: Vec<_> = std::fs::read_dir(out.path().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        dumps.len(),
        2,
        "the dump and its .verified marker: {dumps:?}"
    );

    // The second host's health fails: the rollout stops (no failure budget) and both
    // hosts, which changed, go back to the release they ran before.
    let server = TestServer::start();
    let t = laravel_fleet(&net, &server);
    server.set("/host1/up", Behaviour::Status(503));
    let out = t.args(["run", "laravel.rhai", "--yes"]).run();
    out.assert_code(1)
        .assert_stderr_contains("rollback succeeded");
    for i in 0..2 {
        let d = out.path().join(format!("srv-{i}"));
        assert_eq!(
            std::fs::read_link(d.join("current")).unwrap(),
            Path::new("releases/old"),
            "host {i}"
        );
        assert!(!d.join("previous").exists());
    }
    let r = report(out.path());
    assert_eq!(r["rollback"]["status"], "ok");
}

#[test]
fn the_bare_cloudflare_command_deploys_to_staging_and_stops_at_the_first_missing_tool() {
    // The first command users are shown, in a copy of scripts/ on a machine without
    // pnpm and wrangler: staging by default, and a pre-flight message before anything ran.
    let t = Test::new()
        .file(
            "scripts/cloudflare.rhai",
            shipped("scripts/cloudflare.rhai"),
        )
        .file("scripts/deployer.toml", shipped("scripts/deployer.toml"));
    let empty = bin_dir(&t);
    let out = t
        .env("PATH", empty.display().to_string())
        .args(["run", "scripts/cloudflare.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("to staging")
        .assert_stderr_contains(
            "pnpm is not on PATH: install it (see scripts/README.md) or add its folder to PATH; nothing was run or deployed",
        )
        .assert_stderr_not_contains("$ pnpm")
        .assert_stderr_not_contains("wrangler is not on PATH");
    let r = report(&out.path().join("scripts"));
    assert_eq!(checks(&r, 0), ["Tools installed failed"]);
    assert_eq!(r["rollback"]["status"], "not_needed");
}

#[test]
fn the_ready_scripts_open_with_their_phases_stay_short_and_readme_says_so() {
    let readme = shipped("scripts/README.md");
    let code = |line: &str| {
        let t = line.trim();
        !t.is_empty() && !t.starts_with("//")
    };
    for name in [
        "cloudflare.rhai",
        "docker-compose.rhai",
        "laravel.rhai",
        "monitor.rhai",
    ] {
        let text = shipped(&format!("scripts/{name}"));
        let lines = text.lines().filter(|l| code(l)).count();
        let first_phase = text
            .lines()
            .filter(|l| code(l))
            .position(|l| l.starts_with("phase("))
            .unwrap_or_else(|| panic!("{name} has no phase"))
            + 1;
        assert!(lines <= 150, "{name}: {lines} lines without comments");
        assert!(
            first_phase <= 30,
            "{name}: first phase( at code line {first_phase}"
        );
        let row = format!("| {name} | {lines} | {first_phase} |");
        assert!(readme.contains(&row), "scripts/README.md lacks {row:?}");
        // Defaults have one home: one vars() call, no var() with a default elsewhere.
        assert_eq!(text.matches("vars(#{").count(), 1, "{name}");
        let plain_var = text.match_indices("var(\"").any(|(i, _)| {
            !text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        });
        assert!(!plain_var, "{name} reads a var() outside vars()");
    }
}

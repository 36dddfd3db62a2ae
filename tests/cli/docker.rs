//! std/postgres against a throwaway PostgreSQL cluster, and scripts/docker-compose.rhai
//! deploying, failing and rolling back a Compose stack built locally (no registry).
//!
//! Without a Docker engine or PostgreSQL these tests say they were skipped and pass; with
//! `CI=true` they fail instead (`.ci/run` installs what they need).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::server::TestServer;
use crate::support::{free_port, is_root, skip, TempDir, Test};

/// The reference Compose flow, copied into each test's folder.
const SCRIPT: &str = include_str!("../../scripts/docker-compose.rhai");

/// The password of the test clusters: it must never show in any output.
const PASSWORD: &str = "pw-Zk81-never-printed";

/// Runs a command; returns its stdout when it succeeds.
fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs a command and panics with its output when it fails.
#[track_caller]
fn must(program: &str, args: &[&str]) -> String {
    output(program, args).unwrap_or_else(|e| panic!("{e}"))
}

// ------------------------------------------------------------------ PostgreSQL

/// Finds a folder holding initdb, pg_ctl, psql and pg_dump: the newest
/// /usr/lib/postgresql/*/bin first (client and server of one version), then PATH.
fn postgres_bin() -> Option<PathBuf> {
    let tools = [
        "initdb",
        "pg_ctl",
        "postgres",
        "psql",
        "pg_dump",
        "pg_restore",
        "pg_isready",
    ];
    let has_all = |dir: &Path| tools.iter().all(|t| dir.join(t).is_file());
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Some(dir);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).find(|d| has_all(d))
}

/// A PostgreSQL cluster in a temp folder on 127.0.0.1 with password (SCRAM) auth; stopped
/// and removed on drop, panics included.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// The user the server runs as when the tests run as root (PostgreSQL refuses root).
    run_as: Option<String>,
    _dir: TempDir,
}

impl Postgres {
    fn start(bin: &Path) -> Postgres {
        let dir = TempDir::new();
        let run_as = is_root().then(|| {
            if output("id", &["-u", "postgres"]).is_ok() {
                "postgres".to_string()
            } else {
                "nobody".to_string()
            }
        });
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if let Some(user) = &run_as {
            must("chown", &["-R", user, &dir.path().display().to_string()]);
        }
        let data = dir.path().join("data");
        let port = free_port();
        let pg = Postgres {
            bin: bin.to_path_buf(),
            data: data.clone(),
            port,
            run_as,
            _dir: dir,
        };
        let (data_s, pw_s) = (data.display().to_string(), pwfile.display().to_string());
        pg.server_cmd(
            "initdb",
            &["-D", &data_s, "-U", "deployer", "--pwfile", &pw_s],
            &["--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
        );
        let socket_dir = pg._dir.path().display().to_string();
        let opts = format!(
            "-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        );
        let log = pg._dir.path().join("server.log").display().to_string();
        pg.server_cmd(
            "pg_ctl",
            &["-D", &data_s, "-l", &log, "-w", "-t", "60", "-o", &opts],
            &["start"],
        );
        pg
    }

    /// Runs a server tool (as the server's user when root).
    fn server_cmd(&self, tool: &str, args: &[&str], more: &[&str]) -> String {
        let exe = self.bin.join(tool).display().to_string();
        let mut all: Vec<&str> = Vec::new();
        if let Some(user) = &self.run_as {
            all.extend(["-u", user.as_str(), "--"]);
        }
        all.push(&exe);
        all.extend(args);
        all.extend(more);
        match &self.run_as {
            Some(_) => must("runuser", &all),
            None => must(&exe, &all[1..]),
        }
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://deployer@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL in `db` with psql; returns the unaligned, tuples-only output.
    #[track_caller]
    fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "deployer",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl").display().to_string();
        let data = self.data.display().to_string();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--", &exe])
                .args(args)
                .output(),
            None => Command::new(&exe).args(args).output(),
        };
    }
}

/// Starts a cluster, or says why it cannot (the test is then skipped).
fn postgres(test: &str) -> Option<(Postgres, PathBuf)> {
    let Some(bin) = postgres_bin() else {
        skip(
            test,
            "PostgreSQL is not installed (no initdb/pg_ctl/psql/pg_dump in /usr/lib/postgresql/*/bin or on PATH)",
        );
        return None;
    };
    Some((Postgres::start(&bin), bin))
}

#[test]
fn postgres_exports_backs_up_verifies_and_restores_real_rows() {
    let Some((pg, bin)) = postgres("postgres_exports_backs_up_verifies_and_restores_real_rows")
    else {
        return;
    };
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, item text, created_at timestamptz NOT NULL);
         CREATE TABLE signups (id serial PRIMARY KEY, email text, created_at timestamptz NOT NULL);
         INSERT INTO orders (item, created_at) VALUES
            ('old order', '2020-01-01T00:00:00Z'),
            ('new, \"quoted\" order', '2021-01-01T00:00:00Z'),
            ('newer order', '2021-02-01T00:00:00Z');
         INSERT INTO signups (email, created_at) VALUES
            ('old@example.com', '2020-01-02T00:00:00Z'),
            ('new@example.com', '2021-01-02T00:00:00Z');",
    );
    let script = r#"
import "std/postgres" as pg;
let db = pg::connection(var("url"));
pg::wait_ready(db, #{ attempts: 20, interval: "250ms" });
print(`env connection ready: ${pg::ready(())} ${pg::describe(())}`);
let files = pg::export_since(db, ["orders", "signups"], "2020-06-01T00:00:00Z", "exports");
for f in files { print(`exported ${f.table} ${f.rows} ${f.path}`); }
let b = pg::backup(db, "backups/app.dump", #{ verify_restore: true });
print(`backup ${b.format} ${b.verified}`);
pg::sql(db, "DELETE FROM orders; DROP TABLE signups");
pg::restore(db, "backups/app.dump");
print(`after restore: ${pg::value(db, "SELECT count(*) FROM orders")} orders, ${pg::value(db, "SELECT count(*) FROM signups")} signups`);
pg::backup(db, "backups/app.sql", #{ format: "plain", min_bytes: 100 });
pg::restore(db, "backups/app.sql", #{ database: "app_copy", create: true });
let copy = pg::connection(#{ host: "127.0.0.1", port: var("port"), user: "deployer", database: "app_copy" });
print(`copy: ${pg::value(copy, "SELECT string_agg(item, '/' ORDER BY id) FROM orders")}`);
print(`scratch databases left: ${pg::value(db, "SELECT count(*) FROM pg_database WHERE datname LIKE '%restore_check%'")}`);
try { pg::sql(db, "SELECT no_such_column FROM orders"); } catch (e) { print(`sql error: ${e.message}`); }
try { pg::export_since(db, ["orders; DROP TABLE orders"], "2020-01-01", "x"); } catch (e) { print(`bad name: ${e.message}`); }
"#;
    let out = Test::new()
        .script(script)
        .path_prepend(&bin)
        .env("PGPASSWORD", PASSWORD)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", "deployer")
        .env("PGDATABASE", "app")
        .args([
            "run",
            "deploy.rhai",
            "--var",
            &format!("url={}", pg.url("app")),
        ])
        .args(["--var", &format!("port={}", pg.port)])
        .run();
    out.assert_code(0)
        .assert_stdout_contains("env connection ready: true deployer@127.0.0.1:")
        .assert_stdout_contains("exported orders 2 exports/orders.csv")
        .assert_stdout_contains("exported signups 1 exports/signups.csv")
        .assert_stdout_contains("backup custom size, table of contents, restore test")
        .assert_stdout_contains("after restore: 3 orders, 2 signups")
        .assert_stdout_contains("copy: old order/new, \"quoted\" order/newer order")
        .assert_stdout_contains("scratch databases left: 0")
        .assert_stdout_contains("column \"no_such_column\" does not exist")
        .assert_stdout_contains("bad name: pg: \"orders; DROP TABLE orders\" is not a table name");
    let orders = std::fs::read_to_string(out.path().join("exports/orders.csv")).unwrap();
    let lines: Vec<&str> = orders.lines().collect();
    assert_eq!(lines[0], "id,item,created_at", "{orders}");
    assert!(
        lines[1].starts_with("2,\"new, \"\"quoted\"\" order\",2021-01-01"),
        "{orders}"
    );
    assert!(lines[2].starts_with("3,newer order,2021-02-01"), "{orders}");
    assert_eq!(lines.len(), 3, "{orders}");
    let signups = std::fs::read_to_string(out.path().join("exports/signups.csv")).unwrap();
    assert!(signups.contains("new@example.com") && !signups.contains("old@example.com"));
    // The dump really restores elsewhere too.
    must(
        &bin.join("pg_restore").display().to_string(),
        &[
            "--list",
            &out.path().join("backups/app.dump").display().to_string(),
        ],
    );
    assert_eq!(pg.sql("app_copy", "SELECT count(*) FROM signups"), "2");
    // The password went through the environment only.
    let log = std::fs::read_dir(out.path().join(".deployer/runs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("run.log")).unwrap_or_default())
        .collect::<String>();
    for (name, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("run.log", &log),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the password shows in {name}:\n{text}"
        );
    }
    assert!(
        out.stderr.contains("$ pg_dump --no-password"),
        "{}",
        out.stderr
    );
}

// ------------------------------------------------------------------ Docker

/// The Compose CLI of this machine, as the script detects it.
fn compose_cli() -> Option<Vec<&'static str>> {
    if output("docker", &["compose", "version"]).is_ok() {
        Some(vec!["docker", "compose"])
    } else if output("docker-compose", &["version"]).is_ok() {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

/// A statically linked busybox (it runs in an image with nothing else in it).
fn static_busybox() -> Option<PathBuf> {
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("busybox"))
        .collect::<Vec<_>>();
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| std::fs::read(p).is_ok_and(|elf| is_static_elf(&elf)))
}

/// Whether a 64-bit little-endian ELF file has no program interpreter (PT_INTERP), that
/// is, runs without a dynamic loader.
fn is_static_elf(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).all(|i| u32_at(phoff + i * size).is_some_and(|kind| kind != 3))
}

/// A Compose project and the images it was built from; `down`, volumes, networks and
/// images removed on drop, panics included.
struct Stack {
    compose: Vec<&'static str>,
    dir: PathBuf,
    project: String,
    images: Vec<String>,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Result<String, String> {
        let mut all: Vec<&str> = self.compose[1..].to_vec();
        all.extend(["-f", "docker-compose.yml", "-f", "docker-compose.prod.yml"]);
        all.extend(["-p", self.project.as_str()]);
        all.extend(args);
        let out = Command::new(self.compose[0])
            .args(&all)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The image the running container of `service` was created from.
    fn running_image(&self, service: &str) -> String {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={service}");
        must(
            "docker",
            &[
                "ps",
                "--filter",
                &project,
                "--filter",
                &service,
                "--format",
                "{{.Image}}",
            ],
        )
        .trim()
        .to_string()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Err(e) = self.compose(&["down", "--volumes", "--rmi", "all", "--remove-orphans"]) {
            eprintln!("compose down: {e}");
        }
        for image in &self.images {
            let _ = output("docker", &["rmi", "-f", image]);
        }
    }
}

/// Imports an image from a folder holding busybox: `docker import` of a tarball, no registry.
fn import_image(rootfs: &Path, name: &str) {
    let cmd = r#"tar -C "$1" -c . | docker import -c 'CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]' - "$2""#;
    must(
        "sh",
        &["-c", cmd, "sh", &rootfs.display().to_string(), name],
    );
}

/// A root file system with busybox and the files of /www.
fn rootfs(base: &Path, busybox: &Path, files: &[(&str, &str)]) -> PathBuf {
    let root = base.join("rootfs");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "www", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    for (name, text) in files {
        std::fs::write(root.join("www").join(name), text).unwrap();
    }
    root
}

/// GET http://127.0.0.1:port/path over HTTP/1.0; the status and body, or None.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

const COMPOSE_BASE: &str = r#"services:
  app:
    image: ${APP_IMAGE}
    depends_on: [db]
    secrets: [db_password]
  db:
    image: ${DB_IMAGE}
  worker:
    build: ./worker
    image: ${WORKER_IMAGE}
secrets:
  db_password:
    file: ./secrets/db_password
"#;

// busybox httpd as PID 1 ignores SIGTERM: a short grace keeps stops quick.
const COMPOSE_PROD: &str = r#"services:
  app:
    stop_grace_period: 1s
    ports: ["127.0.0.1:${APP_PORT}:8080"]
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 1s
      timeout: 2s
      retries: 2
  db:
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/ready"]
      interval: 1s
      timeout: 2s
      retries: 2
  worker:
    stop_grace_period: 1s
"#;

#[test]
fn docker_compose_deploys_then_rolls_a_broken_release_back() {
    let test = "docker_compose_deploys_then_rolls_a_broken_release_back";
    if let Err(e) = output("docker", &["info"]) {
        return skip(
            test,
            &format!("no Docker engine answers `docker info` ({})", e.trim()),
        );
    }
    let Some(compose) = compose_cli() else {
        return skip(
            test,
            "neither `docker compose` nor `docker-compose` is installed",
        );
    };
    let Some(busybox) = static_busybox() else {
        return skip(test, "no static busybox (apt-get install busybox-static)");
    };
    let Some((pg, bin)) = postgres(test) else {
        return;
    };
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, item text, created_at timestamptz NOT NULL DEFAULT now())",
    );

    // Two releases of the app, built here: v2 has no /health.
    let work = TempDir::new();
    let repo = format!("deployer-test-{}", std::process::id());
    let (v1, v2, worker) = (
        format!("{repo}/app:v1"),
        format!("{repo}/app:v2"),
        format!("{repo}/worker:latest"),
    );
    let project_dir = work.path().join("project");
    let stack = Stack {
        compose: compose.clone(),
        dir: project_dir.clone(),
        project: format!("deployertest{}", std::process::id()),
        images: vec![v1.clone(), v2.clone(), worker.clone()],
    };
    let ready = r#"{"status":"ready","database":"connected"}"#;
    let root = rootfs(
        work.path(),
        &busybox,
        &[
            ("health", r#"{"status":"healthy"}"#),
            ("ready", ready),
            ("version", "v1"),
        ],
    );
    import_image(&root, &v1);
    let root = rootfs(
        work.path(),
        &busybox,
        &[("ready", ready), ("version", "v2")],
    );
    import_image(&root, &v2);

    // The project: base and production compose files, secrets, env file, a built service.
    let app_port = free_port();
    let files = [
        ("docker-compose.yml", COMPOSE_BASE.to_string()),
        ("docker-compose.prod.yml", COMPOSE_PROD.to_string()),
        (
            ".env",
            format!(
                "APP_IMAGE={v1}\nDB_IMAGE={v1}\nWORKER_IMAGE={worker}\nAPP_PORT={app_port}\nPOSTGRES_DB=app\nPOSTGRES_USER=app\n"
            ),
        ),
        ("worker/Dockerfile", format!("FROM {v1}\nCOPY hello.txt /www/hello.txt\n")),
        ("worker/hello.txt", "hello\n".to_string()),
    ];
    for (name, text) in files {
        let path = project_dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for name in [
        "db_password",
        "db_user",
        "app_key",
        "jwt_secret",
        "redis_password",
    ] {
        let path = project_dir.join("secrets").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("value of {name}")).unwrap();
    }

    let hooks = TestServer::start();
    let rollback_dir = project_dir.join("rollback");
    let ports = format!(
        "{app_port},{},{},{},{}",
        free_port(),
        free_port(),
        free_port(),
        free_port()
    );
    let deploy = |image: &str| {
        Test::new()
            .file("docker-compose.rhai", SCRIPT)
            .path_prepend(&bin)
            .env("PGPASSWORD", PASSWORD)
            .timeout(Duration::from_secs(150))
            .args(["run", "docker-compose.rhai", "--yes"])
            .args(["--var", &format!("project_dir={}", project_dir.display())])
            .args(["--var", &format!("project={}", stack.project)])
            .args(["--var", &format!("image={image}")])
            .args(["--var", &format!("ports={ports}")])
            .args(["--var", "min_disk_gb=0", "--var", "pull=false"])
            .args(["--var", "migrate_cmd=echo migrating to $APP_IMAGE"])
            .args(["--var", &format!("base_url=http://127.0.0.1:{app_port}")])
            .args(["--var", "health_attempts=5", "--var", "health_interval=1s"])
            .args(["--var", &format!("database_url={}", pg.url("app"))])
            .args(["--var", "export_tables=orders"])
            .args(["--var", &format!("rollback_dir={}", rollback_dir.display())])
            .args(["--var", &format!("webhook_url={}", hooks.url("/echo"))])
    };

    // Release 1: everything passes.
    let out = deploy(&v1).run();
    out.assert_code(0)
        .assert_stderr_contains("passed, 0 failed")
        .assert_stderr_contains("100/100");
    assert_eq!(stack.running_image("app"), v1);
    assert_eq!(
        http_get(app_port, "/version").map(|r| r.1),
        Some("v1".into())
    );
    pg.sql(
        "app",
        "INSERT INTO orders (item) VALUES ('before the cutover')",
    );

    // Release 2: /health fails, so the pipeline stops and rolls back.
    let running = deploy(&v2).spawn();
    running.wait_for_stderr("━━ [7/8] Health", Duration::from_secs(90));
    pg.sql("app", "INSERT INTO orders (item) VALUES ('written by v2')");
    let out = running.wait(Duration::from_secs(150));
    out.assert_code(1)
        .assert_stderr_contains(&format!("✓ port {app_port}: in use by this project"))
        .assert_stderr_contains(&format!("release of app: {v2}"))
        .assert_stderr_contains(&format!("(previous: {v1})"))
        .assert_stderr_contains("━━ Rollback: required phase \"Health\" failed")
        .assert_stderr_contains("Stop app on default? yes (--yes)")
        .assert_stderr_contains("exported 1 rows of orders")
        .assert_stderr_contains("rollback succeeded");

    // Back on v1, serving again.
    assert_eq!(stack.running_image("app"), v1);
    let health = http_get(app_port, "/health").expect("the app answers after the rollback");
    assert_eq!(health.0, 200, "{health:?}");
    assert!(health.1.contains("healthy"), "{health:?}");

    // The rows written after the cutover were exported; the ones before were not.
    let csv = std::fs::read_to_string(rollback_dir.join("exports/orders.csv")).unwrap();
    assert!(csv.starts_with("id,item,created_at\n"), "{csv}");
    assert!(csv.contains("written by v2"), "{csv}");
    assert!(!csv.contains("before the cutover"), "{csv}");
    let dump = rollback_dir.join("full-backup.dump");
    must(
        &bin.join("pg_restore").display().to_string(),
        &["--list", &dump.display().to_string()],
    );
    let manifest = std::fs::read_to_string(rollback_dir.join("ROLLBACK_MANIFEST.md")).unwrap();
    for want in [
        "# Rollback manifest",
        "- Reason: required phase \"Health\" failed",
        &format!("- Service: app, from {v2} to {v1}"),
        "| Stop app | done |",
        &format!("| Switch back | done: {v2} -> {v1} |"),
        "| Notify | done |",
        &format!(
            "- orders: 1 rows in {}",
            rollback_dir.join("exports/orders.csv").display()
        ),
        &format!("- {}", dump.display()),
    ] {
        assert!(
            manifest.contains(want),
            "the manifest lacks {want:?}:\n{manifest}"
        );
    }
    let hook = hooks
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("the webhook was called");
    assert!(
        hook.body
            .contains(&format!("rolled back app from {v2} to {v1}")),
        "{}",
        hook.body
    );
    let release = std::fs::read_to_string(project_dir.join(".deployer-release.json")).unwrap();
    assert!(
        release.contains(&format!("\"image\":\"{v1}\"")),
        "{release}"
    );
    assert!(!out.stderr.contains(PASSWORD) && !out.stdout.contains(PASSWORD));

    // The module's smaller functions, on the stack as the rollback left it.
    let script = format!(
        r#"
import "std/docker" as docker;
let o = #{{ project_dir: "{}", project: "{}", files: ["docker-compose.yml", "docker-compose.prod.yml"] }};
print(`image: ${{docker::image_tag(o, "app")}}`);
print(`health: ${{docker::health(o, "app")}} ${{docker::health(o, "nope")}}`);
print(`version: ${{docker::exec(o, "app", ["busybox", "cat", "/www/version"]).stdout}}`);
print(`containers: ${{docker::ps(o).len()}}`);
print(`logs: ${{type_of(docker::logs(o, "app", 5))}}`);
try {{ docker::rollback_image(o, "app"); }} catch (e) {{ print(`again: ${{e.message}}`); }}
try {{ docker::up(o, [], #{{ no_biuld: true }}); }} catch (e) {{ print(`typo: ${{e.message}}`); }}
try {{ docker::ps(#{{ project_folder: "." }}); }} catch (e) {{ print(`option: ${{e.message}}`); }}
"#,
        project_dir.display(),
        stack.project
    );
    Test::new()
        .script(&script)
        .args(["run", "deploy.rhai"])
        .run()
        .assert_code(0)
        .assert_stdout_contains(&format!("image: {v1}"))
        .assert_stdout_contains("health: healthy missing")
        .assert_stdout_contains("version: v1")
        .assert_stdout_contains("containers: 3")
        .assert_stdout_contains("logs: string")
        .assert_stdout_contains("again: no previous image is recorded for service app")
        .assert_stdout_contains("typo: docker::up(): unknown flag `no_biuld`")
        .assert_stdout_contains("option: docker(): unknown option `project_folder`");
    drop(stack);
}

#[test]
fn docker_compose_preflight_runs_every_check_and_changes_nothing() {
    // Runs anywhere: a missing Docker engine is one more failed check.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Test::new()
        .file("docker-compose.rhai", SCRIPT)
        .file("secrets/db_password", "x")
        .file("secrets/app_key", "")
        .args(["run", "docker-compose.rhai", "--var", "min_disk_gb=1000000"])
        .args([
            "--var",
            &format!("ports={port}"),
            "--var",
            "project=deployerpreflight",
        ])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("✗ disk space on .: only ")
        .assert_stderr_contains("✗ ./docker-compose.yml: ./docker-compose.yml does not exist")
        .assert_stderr_contains("✗ ./docker-compose.prod.yml")
        .assert_stderr_contains("✓ secrets folder ./secrets")
        .assert_stderr_contains("✓ ./secrets/db_password")
        .assert_stderr_contains("✗ ./secrets/app_key: ./secrets/app_key is empty")
        .assert_stderr_contains("✗ ./secrets/jwt_secret")
        .assert_stderr_contains(&format!("✗ port {port}"))
        .assert_stderr_contains("✗ ./.env")
        .assert_stderr_contains(" failed")
        .assert_stderr_contains("skipped because Pre-flight failed")
        .assert_stderr_not_contains("━━ Rollback");
    drop(taken);
}

//! The run's headless Chromium: the system's own (`chromium` on PATH, or
//! `DEPLOYER_CHROMIUM`), started on the first visit in its own process group with a
//! private temporary profile, driven over the Chrome DevTools Protocol (chromiumoxide),
//! reused by every later visit, and stopped at the end of the run, on failure and on
//! Ctrl-C: its whole process group is killed and its profile removed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnable, EventRequestPaused, FailRequestParams,
    RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{
    EnableParams as NetworkEnable, ErrorReason, EventLoadingFailed, EventRequestWillBeSent,
    EventResponseReceived, Headers, ResourceType, SetCookieParams, SetExtraHttpHeadersParams,
};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, EventLoadEventFired, NavigateParams,
};
use chromiumoxide::cdp::browser_protocol::target::CloseTargetParams;
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown, RemoteObject,
};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures::stream::{BoxStream, StreamExt};

use crate::core::browser::{Viewport, Visit};

/// The environment variable that names the Chromium program to use.
pub const ENV: &str = "DEPLOYER_CHROMIUM";

/// The programs looked for on PATH, in order.
const NAMES: &[&str] = &["chromium", "chromium-browser"];

/// How long Chromium may take to start and open its DevTools port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the visit keeps listening after the load event, for errors thrown right after.
const SETTLE: Duration = Duration::from_millis(100);

/// Finds the Chromium program: `DEPLOYER_CHROMIUM` when set, else `chromium` on PATH.
pub fn find() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "{ENV}={} is not an executable file: point it at the Chromium program, or unset it to use `chromium` from PATH",
                p.display()
            ))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in NAMES {
            let p = dir.join(name);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "no Chromium found: browser:: needs the system's headless Chromium (nothing is downloaded). Install it (Debian: `apt-get install chromium`) or set {ENV} to its path"
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What one visit is asked to do.
#[derive(Debug, Clone)]
pub struct VisitSpec {
    pub url: String,
    pub timeout: Duration,
    pub wait_for: Option<String>,
    pub viewport: Viewport,
    /// Where to write the PNG, if a screenshot is wanted.
    pub screenshot: Option<PathBuf>,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<(String, String)>,
    /// A dry run: the page's non-GET requests are blocked and listed.
    pub block_mutations: bool,
    /// Read the page's visible text (for `expect_text`).
    pub read_text: bool,
}

/// Why a visit could not run at all (the page's own failures are in [`Visit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisitError {
    /// The browser is missing or would not start.
    Browser(String),
    /// The input is wrong (a selector that does not parse).
    Usage(String),
    /// The protocol failed mid-visit (the browser crashed).
    Protocol(String),
}

/// A running Chromium.
struct Running {
    browser: Browser,
    child: Mutex<std::process::Child>,
    pid: u32,
    profile: PathBuf,
    handler: tokio::task::JoinHandle<()>,
}

/// The run's browser, started on first use.
#[derive(Debug, Default)]
pub struct Session {
    running: Mutex<Option<Arc<Running>>>,
    /// The folder screenshots go to (the run's record folder's `screenshots/`).
    dir: Mutex<Option<PathBuf>>,
    shots: Mutex<Vec<Shot>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chromium (pid {})", self.pid)
    }
}

/// A screenshot the run took, for the record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shot {
    /// Where the file is (absolute).
    #[serde(skip)]
    pub file: PathBuf,
    /// Its path in the run's record folder (`screenshots/01-host-login.png`).
    pub path: String,
    /// The page (masked).
    pub url: String,
    pub viewport: String,
    /// Whether the visit passed its check (`None`: a plain visit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
}

impl Session {
    /// Sends screenshots to `dir` (the run folder's `screenshots/`, made on first use).
    pub fn set_dir(&self, dir: PathBuf) {
        if let Ok(mut d) = self.dir.lock() {
            *d = Some(dir);
        }
    }

    /// The folder screenshots go to: the one set, else a folder in the system's temporary
    /// folder (a REPL or an embedding program without a run record).
    pub fn dir(&self) -> PathBuf {
        self.dir
            .lock()
            .ok()
            .and_then(|d| d.clone())
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("deployer-screenshots-{}", std::process::id()))
            })
    }

    /// The next screenshot's number (1, 2, ...).
    pub fn next_number(&self) -> usize {
        self.shots.lock().map(|s| s.len() + 1).unwrap_or(1)
    }

    /// Adds a screenshot to the record.
    pub fn add_shot(&self, shot: Shot) {
        if let Ok(mut s) = self.shots.lock() {
            s.push(shot);
        }
    }

    /// The screenshots taken so far.
    pub fn shots(&self) -> Vec<Shot> {
        self.shots.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The running browser, started now if needed.
    async fn browser(&self, note: &dyn Fn(&str)) -> Result<Arc<Running>, VisitError> {
        if let Some(r) = self.running.lock().ok().and_then(|r| r.clone()) {
            return Ok(r);
        }
        let program = find().map_err(VisitError::Browser)?;
        let started = start(&program).await.map_err(VisitError::Browser)?;
        note(&format!(
            "started {} (pid {}) for browser checks",
            program.display(),
            started.pid
        ));
        let started = Arc::new(started);
        if let Ok(mut r) = self.running.lock() {
            if let Some(other) = r.clone() {
                // Another thread started one meanwhile: keep theirs.
                stop(&started);
                return Ok(other);
            }
            *r = Some(started.clone());
        }
        Ok(started)
    }

    /// Loads a page and reports what it saw. `note` receives progress lines.
    pub async fn visit(&self, spec: &VisitSpec, note: &dyn Fn(&str)) -> Result<Visit, VisitError> {
        let running = self.browser(note).await?;
        let page = running
            .browser
            .new_page("about:blank")
            .await
            .map_err(|e| VisitError::Protocol(format!("cannot open a tab: {e}")))?;
        let result = visit_page(&page, spec).await;
        // Closed by the browser: the page's own Page.close gets no answer once it is gone.
        let close = CloseTargetParams::new(page.target_id().clone());
        let _ = tokio::time::timeout(Duration::from_secs(5), running.browser.execute(close)).await;
        result
    }

    /// Stops the browser (its whole process group) and removes its profile. Safe to call
    /// more than once and when none runs.
    pub fn close(&self) {
        let taken = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = taken {
            stop(&r);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// Starts Chromium in its own process group with a private profile and connects to it.
async fn start(program: &Path) -> Result<Running, String> {
    let profile =
        private_dir().map_err(|e| format!("cannot make a profile folder for Chromium: {e}"))?;
    let log = profile.join("chromium.log");
    let mut cmd = std::process::Command::new(program);
    cmd.args([
        "--headless",
        "--remote-debugging-port=0",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--hide-scrollbars",
        "--mute-audio",
        "--password-store=basic",
        "--use-mock-keychain",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    // Chromium refuses to run as root with its sandbox; root (CI, containers) is the only
    // case where it is turned off.
    if crate::sys::identity::is_root() {
        cmd.arg("--no-sandbox");
    }
    cmd.arg("about:blank");
    let out =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    crate::sys::process::prepare(&mut cmd);
    // Started from a runtime thread, which lives as long as the run: the parent-death
    // signal `prepare` sets fires when the thread that started the child ends.
    let spawned = tokio::task::spawn(async move { cmd.spawn() })
        .await
        .map_err(|e| e.to_string())?;
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&profile);
            return Err(format!("cannot start {}: {e}", program.display()));
        }
    };
    let pid = child.id();
    // Until it is handed over, a start cut short (Ctrl-C while Chromium starts) kills it.
    let mut guard = StartGuard {
        pid,
        profile: profile.clone(),
        armed: true,
    };
    let fail = |child: &mut std::process::Child, why: String| {
        crate::sys::process::kill_group(pid, libc::SIGKILL);
        let _ = child.wait();
        let tail = crate::sys::spawn::log_tail(&log, 8);
        let _ = std::fs::remove_dir_all(&profile);
        let tail = if tail.trim().is_empty() {
            String::new()
        } else {
            format!("; its last lines:\n{tail}")
        };
        format!("{} did not start: {why}{tail}", program.display())
    };
    // Chromium writes its DevTools port and path to this file once it listens.
    let port_file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + START_TIMEOUT;
    let ws = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => return Err(fail(&mut child, format!("it exited ({status})"))),
            Ok(None) => {}
            Err(e) => return Err(fail(&mut child, e.to_string())),
        }
        if Instant::now() > deadline {
            return Err(fail(
                &mut child,
                format!("no DevTools port after {}s", START_TIMEOUT.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let config = HandlerConfig {
        // A deploy check must see certificate errors, not hide them.
        ignore_https_errors: false,
        ..HandlerConfig::default()
    };
    let (browser, mut handler) = match Browser::connect_with_config(ws.clone(), config).await {
        Ok(b) => b,
        Err(e) => return Err(fail(&mut child, format!("cannot connect to {ws}: {e}"))),
    };
    guard.armed = false;
    let handler = tokio::spawn(async move {
        while let Some(event) = handler.next().await {
            if let Err(e) = event {
                tracing::debug!("chromium protocol: {e}");
            }
        }
    });
    Ok(Running {
        browser,
        child: Mutex::new(child),
        pid,
        profile,
        handler,
    })
}

/// Kills a Chromium whose start did not finish (its future was dropped).
struct StartGuard {
    pid: u32,
    profile: PathBuf,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.armed {
            crate::sys::process::kill_group(self.pid, libc::SIGKILL);
            let mut status = 0;
            // SAFETY: waitpid on our own child, which was just killed.
            unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, 0) };
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }
}

/// Kills Chromium's process group, waits for it, removes its profile.
fn stop(r: &Running) {
    r.handler.abort();
    crate::sys::process::kill_group(r.pid, libc::SIGTERM);
    if let Ok(mut child) = r.child.lock() {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    // Its helpers (zygote, renderers) are in the same group: none may outlive it.
    crate::sys::process::kill_group(r.pid, libc::SIGKILL);
    let _ = std::fs::remove_dir_all(&r.profile);
}

/// Makes a private (0700) folder in the system's temporary folder for Chromium's profile.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for _ in 0..20 {
        let dir = base.join(format!(
            "deployer-chromium-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name"))
}

/// The events a visit listens to.
enum Ev {
    Console(Arc<EventConsoleApiCalled>),
    Exception(Arc<EventExceptionThrown>),
    Request(Arc<EventRequestWillBeSent>),
    Response(Arc<EventResponseReceived>),
    Failed(Arc<EventLoadingFailed>),
    Load,
    Paused(Arc<EventRequestPaused>),
}

fn protocol(what: &str) -> impl Fn(chromiumoxide::error::CdpError) -> VisitError + '_ {
    move |e| VisitError::Protocol(format!("{what}: {e}"))
}

async fn listen(page: &Page, block: bool) -> Result<BoxStream<'static, Ev>, VisitError> {
    let p = protocol("cannot listen to the page");
    let mut streams: Vec<BoxStream<'static, Ev>> = vec![
        page.event_listener::<EventConsoleApiCalled>()
            .await
            .map_err(&p)?
            .map(Ev::Console)
            .boxed(),
        page.event_listener::<EventExceptionThrown>()
            .await
            .map_err(&p)?
            .map(Ev::Exception)
            .boxed(),
        page.event_listener::<EventRequestWillBeSent>()
            .await
            .map_err(&p)?
            .map(Ev::Request)
            .boxed(),
        page.event_listener::<EventResponseReceived>()
            .await
            .map_err(&p)?
            .map(Ev::Response)
            .boxed(),
        page.event_listener::<EventLoadingFailed>()
            .await
            .map_err(&p)?
            .map(Ev::Failed)
            .boxed(),
        page.event_listener::<EventLoadEventFired>()
            .await
            .map_err(&p)?
            .map(|_| Ev::Load)
            .boxed(),
    ];
    if block {
        streams.push(
            page.event_listener::<EventRequestPaused>()
                .await
                .map_err(&p)?
                .map(Ev::Paused)
                .boxed(),
        );
    }
    Ok(futures::stream::select_all(streams).boxed())
}

/// The text of a console call's arguments, as the console shows them.
fn console_text(args: &[RemoteObject]) -> String {
    args.iter()
        .map(|a| match &a.value {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => a
                .description
                .clone()
                .or_else(|| a.unserializable_value.as_ref().map(|u| u.inner().clone()))
                .unwrap_or_else(|| format!("{:?}", a.r#type)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An uncaught exception or unhandled rejection as one line: `Uncaught Error: boom (url:3:9)`.
fn exception_text(e: &EventExceptionThrown) -> String {
    let d = &e.exception_details;
    let what = d
        .exception
        .as_ref()
        .and_then(|x| {
            x.description
                .clone()
                .or_else(|| x.value.as_ref().map(|v| v.to_string()))
        })
        .map(|desc| {
            // The description is the stack: its first line is the message.
            let first = desc.lines().next().unwrap_or_default().to_string();
            format!("{} {first}", d.text.trim_end_matches(':').trim())
        })
        .unwrap_or_else(|| d.text.clone());
    match &d.url {
        Some(u) if !u.is_empty() => {
            format!("{what} ({u}:{}:{})", d.line_number + 1, d.column_number + 1)
        }
        _ => what,
    }
}

/// Evaluates a JavaScript expression that returns JSON (it must catch its own errors).
async fn eval<T: serde::de::DeserializeOwned>(page: &Page, expr: &str) -> Result<T, VisitError> {
    page.evaluate_expression(expr)
        .await
        .map_err(protocol("cannot evaluate in the page"))?
        .into_value::<T>()
        .map_err(|e| VisitError::Protocol(format!("unexpected value from the page: {e}")))
}

/// Checks that a CSS selector parses (on the blank tab, before the visit).
async fn check_selector(page: &Page, sel: &str) -> Result<(), VisitError> {
    let quoted = serde_json::to_string(sel).unwrap_or_default();
    let expr = format!(
        "(() => {{ try {{ document.querySelector({quoted}); return ''; }} catch (e) {{ return String(e.message); }} }})()"
    );
    let err: String = eval(page, &expr).await?;
    if err.is_empty() {
        Ok(())
    } else {
        Err(VisitError::Usage(format!(
            "option `wait_for`: \"{sel}\" is not a CSS selector: {err}"
        )))
    }
}

async fn visit_page(page: &Page, spec: &VisitSpec) -> Result<Visit, VisitError> {
    if let Some(sel) = &spec.wait_for {
        check_selector(page, sel).await?;
    }
    let setup = protocol("cannot set the page up");
    page.execute(SetDeviceMetricsOverrideParams::new(
        spec.viewport.width as i64,
        spec.viewport.height as i64,
        1.0,
        false,
    ))
    .await
    .map_err(&setup)?;
    page.execute(NetworkEnable::default())
        .await
        .map_err(&setup)?;
    if !spec.headers.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        page.execute(SetExtraHttpHeadersParams::new(Headers::new(
            serde_json::Value::Object(map),
        )))
        .await
        .map_err(&setup)?;
    }
    for (name, value) in &spec.cookies {
        let mut c = SetCookieParams::new(name.clone(), value.clone());
        c.url = Some(spec.url.clone());
        page.execute(c).await.map_err(&setup)?;
    }
    let mut events = listen(page, spec.block_mutations).await?;
    if spec.block_mutations {
        let pattern = RequestPattern {
            url_pattern: Some("*".into()),
            request_stage: Some(RequestStage::Request),
            ..Default::default()
        };
        let enable = FetchEnable {
            patterns: Some(vec![pattern]),
            ..Default::default()
        };
        page.execute(enable).await.map_err(&setup)?;
    }

    let mut visit = Visit {
        timeout: spec.timeout,
        ..Visit::default()
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut requests: std::collections::HashMap<String, (String, String)> = Default::default();
    let mut blocked_ids: std::collections::HashSet<String> = Default::default();
    // The page's document response and the load events seen: events of different kinds
    // arrive on different streams, so their order here is not theirs; the page counts as
    // loaded once both came (the blank tab's own load ended before the tab was handed over).
    let mut document_at: Option<f64> = None;
    let mut loads: Vec<Instant> = Vec::new();
    let mut loaded_at: Option<tokio::time::Instant> = None;
    let mut navigated = false;
    let navigate = page.execute(NavigateParams::new(spec.url.clone()));
    tokio::pin!(navigate);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        if let (None, Some(_)) = (loaded_at, document_at) {
            if let Some(at) = loads.first() {
                visit.load_ms = Some(at.duration_since(started).as_millis() as u64);
                loaded_at = Some(tokio::time::Instant::from_std(*at));
            }
        }
        let settled = loaded_at.is_some_and(|t| t.elapsed() >= SETTLE);
        let waiting_selector = spec.wait_for.is_some() && visit.wait_for_found != Some(true);
        if settled && !waiting_selector {
            break;
        }
        if visit.load_error.is_some() {
            break;
        }
        tokio::select! {
            r = &mut navigate, if !navigated => {
                navigated = true;
                match r {
                    Ok(resp) => {
                        if let Some(err) = resp.result.error_text.clone().filter(|e| !e.is_empty()) {
                            visit.load_error = Some(err);
                        }
                    }
                    Err(e) => return Err(VisitError::Protocol(format!("cannot navigate to {}: {e}", spec.url))),
                }
            }
            ev = events.next() => {
                let Some(ev) = ev else {
                    return Err(VisitError::Protocol("the browser closed the page".into()));
                };
                match ev {
                    Ev::Console(c) => {
                        if matches!(c.r#type, ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert) {
                            visit.console_errors.push(console_text(&c.args));
                        }
                    }
                    Ev::Exception(e) => visit.console_errors.push(exception_text(&e)),
                    Ev::Request(r) => {
                        requests.insert(
                            r.request_id.inner().clone(),
                            (r.request.method.clone(), r.request.url.clone()),
                        );
                    }
                    Ev::Response(r) => {
                        let status = r.response.status;
                        if r.r#type == ResourceType::Document && document_at.is_none() {
                            document_at = Some(*r.timestamp.inner());
                            visit.status = u16::try_from(status).ok();
                            // The page's own status is judged as `status`.
                            continue;
                        }
                        if status >= 400 && !is_favicon(&r.response.url) {
                            let (method, url) = requests
                                .get(r.request_id.inner())
                                .cloned()
                                .unwrap_or_else(|| ("GET".into(), r.response.url.clone()));
                            visit.failed_requests.push(format!("{method} {url}: {status}"));
                        }
                    }
                    Ev::Failed(f) => {
                        let id = f.request_id.inner();
                        if blocked_ids.contains(id) || f.canceled == Some(true) {
                            continue;
                        }
                        let (method, url) = requests.get(id).cloned().unwrap_or_default();
                        if is_favicon(&url) {
                            continue;
                        }
                        visit.failed_requests.push(format!("{method} {url}: {}", f.error_text));
                    }
                    Ev::Load => loads.push(Instant::now()),
                    Ev::Paused(p) => {
                        let method = p.request.method.to_ascii_uppercase();
                        if method == "GET" {
                            let _ = page.execute(ContinueRequestParams::new(p.request_id.clone())).await;
                        } else {
                            if let Some(id) = &p.network_id {
                                blocked_ids.insert(id.inner().clone());
                            }
                            visit.blocked_requests.push(format!("{method} {}", p.request.url));
                            let _ = page
                                .execute(FailRequestParams::new(p.request_id.clone(), ErrorReason::BlockedByClient))
                                .await;
                        }
                    }
                }
            }
            _ = tick.tick(), if loaded_at.is_some() && waiting_selector => {
                if let Some(sel) = &spec.wait_for {
                    let quoted = serde_json::to_string(sel).unwrap_or_default();
                    let found: bool = eval(page, &format!(
                        "(() => {{ try {{ return document.querySelector({quoted}) !== null; }} catch (e) {{ return false; }} }})()"
                    )).await?;
                    visit.wait_for_found = Some(found);
                }
            }
            // Wakes the loop when the page has settled after its load event.
            _ = tokio::time::sleep_until(loaded_at.map_or(deadline, |t| t + SETTLE)), if loaded_at.is_some() && !settled => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if spec.wait_for.is_some() && visit.wait_for_found.is_none() {
        visit.wait_for_found = Some(false);
    }
    if visit.load_error.is_none() {
        visit.title = eval(
            page,
            "(() => { try { return String(document.title); } catch (e) { return ''; } })()",
        )
        .await
        .unwrap_or_default();
        if spec.read_text {
            visit.text = Some(
                eval(page, "(() => { try { return document.body ? document.body.innerText : ''; } catch (e) { return ''; } })()")
                    .await
                    .unwrap_or_default(),
            );
        }
    }
    if let Some(file) = &spec.screenshot {
        let params = CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            ..Default::default()
        };
        let shot = page
            .execute(params)
            .await
            .map_err(protocol("cannot take the screenshot"))?;
        let bytes = base64_decode(shot.result.data.as_ref())
            .map_err(|e| VisitError::Protocol(format!("the screenshot is not base64: {e}")))?;
        if let Some(parent) = file.parent() {
            crate::store::atomic::real_dir(parent)
                .map_err(|e| VisitError::Browser(format!("cannot save the screenshot: {e}")))?;
        }
        std::fs::write(file, bytes).map_err(|e| {
            VisitError::Browser(format!(
                "cannot write the screenshot {}: {e}",
                file.display()
            ))
        })?;
    }
    Ok(visit)
}

/// The icon Chromium asks every site for by itself: a missing one breaks no page.
fn is_favicon(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.path() == "/favicon.ico")
}

fn base64_decode(data: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| e.to_string())
}

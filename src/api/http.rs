//! `http::get/head/post/put/patch/delete` and `http::wait_healthy`: probes and requests
//! with typed transport errors; mutating requests are only described in a dry run.

use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{state, terminated, throw, throw_with, Error};
use super::opts::Opts;
use crate::core::duration::format_duration;
use crate::core::jsonmatch::subset_mismatch;
use crate::host::progress;
use crate::host::state::HostState;
use crate::sys::http::{HttpError, Request, Response, DEFAULT_TIMEOUT};

pub(crate) const REQUEST_OPTS: &[&str] =
    &["headers", "json", "body", "timeout", "follow_redirects"];
pub(crate) const WAIT_OPTS: &[&str] = &[
    "attempts",
    "interval",
    "timeout",
    "expect",
    "headers",
    "follow_redirects",
    "process",
];
pub(crate) const EXPECT_KEYS: &[&str] = &["status", "json", "body_contains", "headers"];

fn build(method: &str, url: &str, opts: &Opts) -> Result<Request, Error> {
    let mut headers = opts.string_pairs("headers")?;
    let mut body = opts.string("body")?.map(String::into_bytes);
    if let Some(json) = opts.get("json") {
        if body.is_some() {
            return Err(throw(
                "usage",
                "http: give either `json` or `body`, not both",
            ));
        }
        let value: serde_json::Value = rhai::serde::from_dynamic(json).map_err(|e| {
            throw(
                "usage",
                format!("http: option `json` cannot be sent as JSON: {e}"),
            )
        })?;
        body = Some(value.to_string().into_bytes());
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), "application/json".into()));
        }
    }
    Ok(Request {
        method: method.to_string(),
        url: url.to_string(),
        headers,
        body,
        timeout: opts.duration("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        follow_redirects: opts.boolean("follow_redirects")?.unwrap_or(false),
    })
}

/// Sends a request, turning transport failures into script errors with a `kind`.
fn send(st: &HostState, req: &Request) -> Result<Result<Response, HttpError>, Error> {
    st.block_on(st.http.send(req)).map_err(|_| terminated(st))
}

fn transport_error(e: &HttpError) -> Error {
    let mut extra = Map::new();
    extra.insert("url".into(), e.url.clone().into());
    extra.insert("method".into(), e.method.clone().into());
    extra.insert("elapsed_ms".into(), (e.elapsed.as_millis() as i64).into());
    // false only when the request never left deployer (`url`, `dns`, `connect`, `tls`):
    // then resending it cannot repeat an action on the server.
    extra.insert("sent".into(), e.kind.request_sent().into());
    throw_with(e.kind.as_str(), e.to_string(), extra)
}

fn response_map(r: &Response) -> Map {
    let mut headers = Map::new();
    for (k, v) in &r.headers {
        match headers.get_mut(k.as_str()) {
            Some(existing) => {
                let joined = format!("{existing}, {v}");
                *existing = joined.into();
            }
            None => {
                headers.insert(k.as_str().into(), v.clone().into());
            }
        }
    }
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let json = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| rhai::serde::to_dynamic(v).ok())
        .unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert("status".into(), (r.status as i64).into());
    m.insert("ok".into(), (200..300).contains(&r.status).into());
    m.insert("headers".into(), headers.into());
    m.insert("body".into(), body.into());
    m.insert("json".into(), json);
    m.insert("latency_ms".into(), latency_ms(r.latency).into());
    m
}

fn latency_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

use super::error::at_call as at;

fn request(ctx: &NativeCallContext, method: &str, url: &str, opts: Opts) -> Result<Map, Error> {
    request_inner(ctx, method, url, opts).map_err(|e| at(ctx, e))
}

fn request_inner(
    ctx: &NativeCallContext,
    method: &str,
    url: &str,
    opts: Opts,
) -> Result<Map, Error> {
    let st = state(ctx)?;
    let req = build(method, url, &opts)?;
    if method != "GET" && method != "HEAD" && st.dry_run() {
        let size = req
            .body
            .as_ref()
            .map(|b| format!(" ({} byte body)", b.len()))
            .unwrap_or_default();
        st.would(&format!("send: {method} {url}{size}"));
        let mut m = Map::new();
        m.insert("status".into(), 0i64.into());
        m.insert("ok".into(), true.into());
        m.insert("dry_run".into(), true.into());
        m.insert("headers".into(), Map::new().into());
        m.insert("body".into(), "".into());
        m.insert("json".into(), Dynamic::UNIT);
        m.insert("latency_ms".into(), 0.0f64.into());
        return Ok(m);
    }
    st.read_only(&format!("{method} {url}"));
    match send(&st, &req)? {
        Ok(r) => Ok(response_map(&r)),
        Err(e) => Err(transport_error(&e)),
    }
}

/// What `wait_healthy` expects of a response.
struct Expect {
    statuses: Vec<i64>,
    json: Option<serde_json::Value>,
    body_contains: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

impl Expect {
    fn parse(map: Option<Map>) -> Result<Expect, Error> {
        let opts = Opts::new("http::wait_healthy", map.unwrap_or_default(), EXPECT_KEYS)?;
        let statuses = match opts.get("status") {
            None => Vec::new(),
            Some(v) if v.is_int() => vec![v.as_int().unwrap_or(200)],
            Some(v) if v.is_array() => v
                .clone()
                .cast::<Array>()
                .iter()
                .map(|s| {
                    s.as_int().map_err(|_| {
                        throw("usage", format!("http::wait_healthy(): expect.status list must hold numbers, got {s}"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(v) => {
                return Err(throw(
                    "usage",
                    format!("http::wait_healthy(): expect.status must be a number or a list of numbers, got {v}"),
                ))
            }
        };
        let json =
            match opts.get("json") {
                None => None,
                Some(v) => Some(rhai::serde::from_dynamic(v).map_err(|e| {
                    throw("usage", format!("http::wait_healthy(): expect.json: {e}"))
                })?),
            };
        let headers = match opts.get("headers") {
            None => Vec::new(),
            Some(v) if v.is_array() => v
                .clone()
                .cast::<Array>()
                .iter()
                .map(|h| (h.to_string().to_lowercase(), None))
                .collect(),
            Some(_) => opts
                .string_pairs("headers")?
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), Some(v)))
                .collect(),
        };
        Ok(Expect {
            statuses,
            json,
            body_contains: opts.string("body_contains")?,
            headers,
        })
    }

    /// Returns `None` when the response is healthy, or what is wrong with it.
    fn mismatch(&self, r: &Response) -> Option<String> {
        let status = r.status as i64;
        if self.statuses.is_empty() {
            if !(200..300).contains(&status) {
                return Some(format!("status {status}, expected 2xx"));
            }
        } else if !self.statuses.contains(&status) {
            let want: Vec<String> = self.statuses.iter().map(|s| s.to_string()).collect();
            return Some(format!("status {status}, expected {}", want.join(" or ")));
        }
        let body = String::from_utf8_lossy(&r.body);
        if let Some(want) = &self.json {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Err(e) => return Some(format!("status {status}, body is not valid JSON: {e}")),
                Ok(have) => {
                    if let Some(m) = subset_mismatch(want, &have, "") {
                        return Some(format!("status {status}, {m}"));
                    }
                }
            }
        }
        if let Some(needle) = &self.body_contains {
            if !body.contains(needle.as_str()) {
                return Some(format!(
                    "status {status}, body does not contain \"{needle}\""
                ));
            }
        }
        for (name, value) in &self.headers {
            let found = r.headers.iter().find(|(k, _)| k == name);
            match (found, value) {
                (None, _) => return Some(format!("status {status}, header `{name}` missing")),
                (Some((_, have)), Some(want)) if have != want => {
                    return Some(format!(
                        "status {status}, header `{name}` is \"{have}\", expected \"{want}\""
                    ))
                }
                _ => {}
            }
        }
        None
    }
}

/// The error of `wait_healthy` when the process it waits for exits: its status and the
/// last lines of its log.
fn process_exited(
    url: &str,
    p: &super::exec::ProcessHandle,
    exit: &str,
    attempt: i64,
    attempts: i64,
) -> Error {
    let mut msg = format!(
        "{} exited ({exit}) while http::wait_healthy waited for {url} (after attempt {attempt}/{attempts}); it will not become healthy",
        p.describe()
    );
    if let Some(log) = p.log_file() {
        let tail = crate::sys::spawn::log_tail(log, 10);
        if tail.is_empty() {
            msg.push_str(&format!("\nits log {} is empty", log.display()));
        } else {
            msg.push_str(&format!("\nlast lines of its log {}:", log.display()));
            for line in tail.lines() {
                msg.push_str(&format!("\n  {line}"));
            }
        }
    }
    let mut extra = Map::new();
    extra.insert("url".into(), url.into());
    extra.insert("pid".into(), (p.pid_value() as i64).into());
    extra.insert("exit".into(), exit.into());
    throw_with("process_exited", msg, extra)
}

fn wait_healthy(ctx: &NativeCallContext, url: &str, opts: Opts) -> Result<Map, Error> {
    wait_healthy_inner(ctx, url, opts).map_err(|e| at(ctx, e))
}

fn wait_healthy_inner(ctx: &NativeCallContext, url: &str, opts: Opts) -> Result<Map, Error> {
    let st = state(ctx)?;
    let mut attempts = opts.int("attempts")?.unwrap_or(30);
    if attempts < 1 {
        return Err(throw(
            "usage",
            format!("http::wait_healthy(): attempts must be at least 1, got {attempts}"),
        ));
    }
    if st.dry_run() && attempts > 1 {
        st.console.info(&format!(
            "  dry run: one health probe instead of up to {attempts}"
        ));
        attempts = 1;
    }
    let interval = opts.duration("interval")?.unwrap_or(Duration::from_secs(2));
    let mut req = build("GET", url, &Opts::none("http::wait_healthy"))?;
    req.headers = opts.string_pairs("headers")?;
    req.timeout = opts.duration("timeout")?.unwrap_or(Duration::from_secs(5));
    req.follow_redirects = opts.boolean("follow_redirects")?.unwrap_or(false);
    let expect = Expect::parse(opts.map("expect")?)?;
    let process = match opts.get("process") {
        None => None,
        Some(v) => Some(v.clone().try_cast::<super::exec::ProcessHandle>().ok_or_else(|| {
            throw(
                "usage",
                format!("http::wait_healthy(): option `process` must be a process from spawn(), got {v} ({})", v.type_name()),
            )
        })?),
    };
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    let mut failed = Vec::new();
    // On a terminal one line says which attempt failed how and counts down to the next.
    let activity = st.console.progress(&format!("waiting for {url}"));
    let mut status = format!("attempt 1/{attempts}");
    activity.status(&status);
    for attempt in 1..=attempts {
        if attempt > 1 {
            let line =
                |left| progress::attempt_line((attempt - 1) as u64, attempts as u64, &status, left);
            match &process {
                // Wake at once when the process exits: no reason to keep polling.
                Some(p) => {
                    let until = std::time::Instant::now() + interval;
                    while std::time::Instant::now() < until && p.exited().is_none() {
                        let left = until.saturating_duration_since(std::time::Instant::now());
                        activity.status(&line(left));
                        st.sleep(left.min(Duration::from_millis(25)))
                            .map_err(|_| terminated(&st))?;
                    }
                }
                None => st
                    .sleep_counting(&activity, interval, line)
                    .map_err(|_| terminated(&st))?,
            }
            activity.status(&format!("attempt {attempt}/{attempts}"));
        }
        if let Some(exit) = process.as_ref().and_then(|p| p.exited()) {
            if let Some(p) = &process {
                return Err(process_exited(url, p, &exit, attempt - 1, attempts));
            }
        }
        let (problem, ms) = match send(&st, &req)? {
            Ok(r) => match expect.mismatch(&r) {
                None => {
                    activity.finish();
                    if attempt > 1 {
                        st.console
                            .info(&format!("{url} is healthy (attempt {attempt}/{attempts})"));
                    }
                    let mut m = response_map(&r);
                    m.insert("attempts".into(), attempt.into());
                    return Ok(m);
                }
                Some(p) => (p.to_string(), latency_ms(r.latency)),
            },
            Err(e) if e.kind == crate::sys::http::TransportKind::Url => {
                return Err(transport_error(&e));
            }
            Err(e) => (
                format!("{} error: {}", e.kind.as_str(), e.message),
                e.elapsed.as_millis() as f64,
            ),
        };
        failed.push(crate::core::attempts::Failed {
            number: attempt,
            problem: problem.clone(),
            ms: Some(ms),
        });
        let problem = format!("{problem} ({ms} ms)");
        if attempt < attempts {
            activity.info(&format!(
                "waiting for {url}: attempt {attempt}/{attempts}: {problem}; next in {}",
                format_duration(interval)
            ));
        }
        seen.push(format!("attempt {attempt}: {problem}"));
        status = problem;
    }
    activity.finish();
    let mut msg = format!(
        "{url} did not become healthy after {attempts} attempts over {}:",
        format_duration(started.elapsed())
    );
    // Attempts that failed the same way read as one line; long waits whose causes keep
    // changing keep the first and the last lines: enough to see the trend.
    let folded = crate::core::attempts::fold(&failed);
    let shown: Vec<&String> = if folded.len() > 12 {
        folded
            .iter()
            .take(3)
            .chain(folded.iter().skip(folded.len() - 9))
            .collect()
    } else {
        folded.iter().collect()
    };
    for (i, line) in shown.iter().enumerate() {
        if folded.len() > 12 && i == 3 {
            msg.push_str(&format!("\n  ... {} more lines ...", folded.len() - 12));
        }
        msg.push_str(&format!("\n  {line}"));
    }
    let mut extra = Map::new();
    extra.insert("url".into(), url.into());
    extra.insert(
        "attempts".into(),
        seen.into_iter()
            .map(Dynamic::from)
            .collect::<Array>()
            .into(),
    );
    Err(throw_with("unhealthy", msg, extra))
}

#[export_module]
pub mod http_api {
    use super::*;

    /// Sends a GET request and returns `#{status, ok, headers, body, json, latency_ms}`
    /// (`json` is the parsed body, or `()` when it is not JSON; `ok` is a 2xx status).
    /// Transport failures throw an error whose `kind` says what went wrong and whose `sent`
    /// says whether the server may have received the request. Nothing was sent (safe to
    /// retry): `connect` (refused, unreachable), `dns`, `tls`, `url`. Sent, so the server may
    /// have acted on it (retry only requests safe to repeat): `timeout`, `reset` (the
    /// connection broke before the response), `protocol` (the reply is not HTTP), `body`,
    /// `other`.
    ///
    /// ```rhai
    /// let res = retry(#{ attempts: 5, when: |e| !e.sent }, || http::post(url, #{ json: #{ id: 42 } }));
    /// ```
    ///
    /// ```rhai
    /// let res = http::get("http://127.0.0.1:8080/health");
    /// if res.json.status != "healthy" { throw "not healthy"; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn get(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        request(&ctx, "GET", url, Opts::none("http::get"))
    }

    /// Sends a GET request with options: `headers` (map), `timeout` (default 10 s),
    /// `follow_redirects` (default false).
    ///
    /// ```rhai
    /// let res = http::get(url, #{ timeout: "5s", headers: #{ "x-api-key": secret("API_KEY") } });
    /// ```
    #[rhai_fn(name = "get", return_raw)]
    pub fn get_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("http::get", options, REQUEST_OPTS)
            .and_then(|o| request(&ctx, "GET", url, o))
            .map_err(|e| at(&ctx, e))
    }

    /// Sends a HEAD request.
    ///
    /// ```rhai
    /// let res = http::head("http://127.0.0.1:8080/");
    /// print(res.headers["content-type"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn head(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        request(&ctx, "HEAD", url, Opts::none("http::head"))
    }

    /// Sends a HEAD request with options (as `http::get`).
    ///
    /// ```rhai
    /// let res = http::head(url, #{ follow_redirects: true });
    /// ```
    #[rhai_fn(name = "head", return_raw)]
    pub fn head_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("http::head", options, REQUEST_OPTS)
            .and_then(|o| request(&ctx, "HEAD", url, o))
            .map_err(|e| at(&ctx, e))
    }

    /// Sends a POST request. In a dry run it is only described.
    ///
    /// ```rhai
    /// http::post("http://127.0.0.1:9000/hooks/deployed");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn post(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        request(&ctx, "POST", url, Opts::none("http::post"))
    }

    /// Sends a POST request with options: `json` (any value, sent as JSON), or `body`
    /// (string), `headers`, `timeout`, `follow_redirects`. In a dry run it is only described.
    ///
    /// ```rhai
    /// http::post(secret("SLACK_WEBHOOK_URL"), #{ json: #{ text: "deployed" } });
    /// ```
    #[rhai_fn(name = "post", return_raw)]
    pub fn post_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("http::post", options, REQUEST_OPTS)
            .and_then(|o| request(&ctx, "POST", url, o))
            .map_err(|e| at(&ctx, e))
    }

    /// Sends a PUT request. In a dry run it is only described.
    ///
    /// ```rhai
    /// http::put("http://127.0.0.1:9000/flags/maintenance");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn put(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        request(&ctx, "PUT", url, Opts::none("http::put"))
    }

    /// Sends a PUT request with options (as `http::post`).
    ///
    /// ```rhai
    /// http::put(url + "/flags/maintenance", #{ json: #{ enabled: true } });
    /// ```
    #[rhai_fn(name = "put", return_raw)]
    pub fn put_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("http::put", options, REQUEST_OPTS)
            .and_then(|o| request(&ctx, "PUT", url, o))
            .map_err(|e| at(&ctx, e))
    }

    /// Sends a PATCH request. In a dry run it is only described.
    ///
    /// ```rhai
    /// http::patch("http://127.0.0.1:9000/releases/42");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn patch(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        request(&ctx, "PATCH", url, Opts::none("http::patch"))
    }

    /// Sends a PATCH request with options (as `http::post`).
    ///
    /// ```rhai
    /// http::patch(url + "/releases/42", #{ json: #{ state: "live" } });
    /// ```
    #[rhai_fn(name = "patch", return_raw)]
    pub fn patch_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("http::patch", options, REQUEST_OPTS)
            .and_then(|o| request(&ctx, "PATCH", url, o))
            .map_err(|e| at(&ctx, e))
    }

    /// Sends a DELETE request. In a dry run it is only described.
    ///
    /// ```rhai
    /// http::delete("http://127.0.0.1:9000/cache");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        request(&ctx, "DELETE", url, Opts::none("http::delete"))
    }

    /// Sends a DELETE request with options (as `http::post`).
    ///
    /// ```rhai
    /// http::delete(url + "/cache", #{ headers: #{ authorization: "Bearer " + secret("TOKEN") } });
    /// ```
    #[rhai_fn(name = "delete", return_raw)]
    pub fn delete_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("http::delete", options, REQUEST_OPTS)
            .and_then(|o| request(&ctx, "DELETE", url, o))
            .map_err(|e| at(&ctx, e))
    }

    /// Polls a URL until it answers with a 2xx status (30 attempts, 2 s apart, 5 s each)
    /// and returns the healthy response (with `attempts`). On failure the error lists what
    /// each attempt saw.
    ///
    /// ```rhai
    /// http::wait_healthy("http://127.0.0.1:8080/health");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_healthy(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        super::wait_healthy(&ctx, url, Opts::none("http::wait_healthy"))
    }

    /// Polls a URL with options: `attempts`, `interval`, `timeout` (per attempt),
    /// `headers`, `follow_redirects`, `expect`: `status` (a number or a list),
    /// `json` (a subset the body must contain), `body_contains`, `headers` (names that
    /// must be present, or a map of exact values), and `process`: a process from `spawn()`
    /// that should serve the URL; when it exits the wait stops at once with an error of
    /// kind `process_exited` holding its exit status and the last lines of its log.
    ///
    /// ```rhai
    /// http::wait_healthy(url + "/health", #{ attempts: 30, interval: "3s",
    ///     expect: #{ status: 200, json: #{ status: "healthy" } } });
    /// let app = spawn(["./server", "--port", "8080"]);
    /// http::wait_healthy("http://127.0.0.1:8080/health", #{ process: app });
    /// ```
    #[rhai_fn(name = "wait_healthy", return_raw)]
    pub fn wait_healthy_with(
        ctx: NativeCallContext,
        url: &str,
        options: Map,
    ) -> Result<Map, Error> {
        Opts::new("http::wait_healthy", options, WAIT_OPTS)
            .and_then(|o| super::wait_healthy(&ctx, url, o))
            .map_err(|e| at(&ctx, e))
    }
}

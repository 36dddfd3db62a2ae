//! A small real HTTP/1.1 server on loopback for probing, retry and rollback tests.
#![allow(dead_code, clippy::unwrap_used)] // test code: panicking is the error report

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Request target including any query string, e.g. `/health?x=1`.
    pub path: String,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (lossy UTF-8).
    pub body: String,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Behaviour that replaces the built-in route for one path (see [`TestServer::set`]).
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Reply with this status and a small text body.
    Status(u16),
    /// Reply with this status and this body as `application/json`.
    Json(u16, String),
    /// Wait, then reply with this status.
    Delay(Duration, u16),
    /// Read the request, then close the connection with a TCP RST.
    Reset,
    /// One status per request (counted from the `set` call); the last one repeats.
    Sequence(Vec<u16>),
    /// Reply with this status and this body as `text/html`.
    Html(u16, String),
}

#[derive(Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    /// Requests seen per path (without query), for `/flaky` and `/burst`.
    counts: HashMap<String, usize>,
    /// Overrides and the number of requests each has answered.
    overrides: HashMap<String, (Behaviour, usize)>,
    connections: usize,
    /// Clones of open connections, so that drop can wake their workers.
    streams: HashMap<usize, TcpStream>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    inner: Mutex<Inner>,
    stop: AtomicBool,
}

/// HTTP/1.1 server on `127.0.0.1:<random port>`, one thread per connection; stops on drop.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` and starts accepting.
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            inner: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, shared))
        };
        TestServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path` (a leading `/` is added if missing).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.addr)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of recorded requests whose path (with query) starts with `path_prefix`.
    pub fn hits(&self, path_prefix: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    /// All requests recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// Number of TCP connections accepted so far (shows keep-alive reuse).
    pub fn connections(&self) -> usize {
        self.shared.inner.lock().unwrap().connections
    }

    /// Overrides the route for exactly `path` (the query string is ignored unless `path` has one).
    pub fn set(&self, path: &str, behaviour: Behaviour) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.overrides.insert(path.to_string(), (behaviour, 0));
    }

    /// Removes an override set with [`TestServer::set`].
    pub fn clear(&self, path: &str) {
        self.shared.inner.lock().unwrap().overrides.remove(path);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // unblocks accept()
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let (streams, workers) = {
            let mut inner = self.shared.inner.lock().unwrap();
            (
                std::mem::take(&mut inner.streams),
                std::mem::take(&mut inner.workers),
            )
        };
        for stream in streams.values() {
            let _ = stream.shutdown(Shutdown::Both); // wakes workers blocked in read()
        }
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for (id, stream) in listener.incoming().enumerate() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let mut inner = shared.inner.lock().unwrap();
        inner.connections += 1;
        inner.streams.insert(id, clone);
        let shared = shared.clone();
        inner.workers.push(std::thread::spawn(move || {
            serve_connection(stream, &shared);
            // Dropping the last clone closes the socket (FIN, or RST after `reset`).
            shared.inner.lock().unwrap().streams.remove(&id);
        }));
    }
}

/// What to do with one request, decided while recording it.
enum Plan {
    Override(Behaviour, usize),
    Builtin(usize),
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some((req, close)) = read_request(&mut reader) else {
            return;
        };
        let route = req.path.split('?').next().unwrap_or("").to_string();
        let plan = {
            let mut inner = shared.inner.lock().unwrap();
            inner.requests.push(req.clone());
            let count = inner.counts.entry(route.clone()).or_insert(0);
            let index = *count;
            *count += 1;
            let key = if inner.overrides.contains_key(&req.path) {
                &req.path
            } else {
                &route
            };
            match inner.overrides.get_mut(key) {
                Some((behaviour, n)) => {
                    *n += 1;
                    Plan::Override(behaviour.clone(), *n - 1)
                }
                None => Plan::Builtin(index),
            }
        };
        let reply = match plan {
            Plan::Override(behaviour, n) => overridden(behaviour, n, shared),
            Plan::Builtin(index) => builtin(&req, &route, index, shared),
        };
        if shared.stop.load(Ordering::SeqCst) {
            return; // a delayed reply cut short by drop: send nothing
        }
        let stream = reader.get_mut();
        let Some(reply) = reply else {
            reset(stream);
            return;
        };
        if reply.write_to(stream, req.method == "HEAD", close).is_err() || close {
            return;
        }
    }
}

/// Reads one request; `None` on EOF or a malformed request. The flag says "close after reply".
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(RecordedRequest, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let len: usize = get("content-length").map_or(Some(0), |v| v.parse().ok())?;
    if get("expect").as_deref() == Some("100-continue") {
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .ok()?;
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let conn = get("connection").unwrap_or_default();
    let has = |token: &str| conn.split(',').any(|t| t.trim() == token);
    let close = has("close") || (version == "HTTP/1.0" && !has("keep-alive"));
    let req = RecordedRequest {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    Some((req, close))
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        let headers = vec![("content-type", "text/plain".to_string())];
        Reply {
            status,
            headers,
            body: body.into().into_bytes(),
        }
    }

    fn json(status: u16, body: impl Into<String>) -> Reply {
        let headers = vec![("content-type", "application/json".to_string())];
        Reply {
            status,
            headers,
            body: body.into().into_bytes(),
        }
    }

    fn html(status: u16, body: impl Into<String>) -> Reply {
        let headers = vec![("content-type", "text/html; charset=utf-8".to_string())];
        Reply {
            status,
            headers,
            body: body.into().into_bytes(),
        }
    }

    fn status(status: u16) -> Reply {
        Reply::text(status, format!("status {status}\n"))
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    fn write_to(mut self, stream: &mut TcpStream, head: bool, close: bool) -> std::io::Result<()> {
        if self.status < 200 || self.status == 204 || self.status == 304 {
            self.body.clear(); // these statuses never carry a body
        }
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out += &format!("{k}: {v}\r\n");
        }
        out += &format!("content-length: {}\r\n", self.body.len());
        if close {
            out += "connection: close\r\n";
        }
        out += "\r\n";
        stream.write_all(out.as_bytes())?;
        if !head {
            for chunk in self.body.chunks(64 * 1024) {
                stream.write_all(chunk)?;
            }
        }
        stream.flush()
    }
}

/// `None` means "reset the connection".
fn overridden(behaviour: Behaviour, n: usize, shared: &Shared) -> Option<Reply> {
    Some(match behaviour {
        Behaviour::Status(code) => Reply::status(code),
        Behaviour::Json(code, body) => Reply::json(code, body),
        Behaviour::Delay(d, code) => {
            nap(d, shared);
            Reply::status(code)
        }
        Behaviour::Reset => return None,
        Behaviour::Sequence(codes) => Reply::status(*codes.get(n).or(codes.last()).unwrap_or(&200)),
        Behaviour::Html(code, body) => Reply::html(code, body),
    })
}

/// `None` means "reset the connection".
fn builtin(req: &RecordedRequest, route: &str, index: usize, shared: &Shared) -> Option<Reply> {
    const HEALTHY: &str = r#"{"status":"healthy"}"#;
    let segs: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    let num = |i: usize| segs.get(i).and_then(|s| s.parse::<u64>().ok());
    let index = index as u64;
    Some(match (segs.as_slice(), num(1), num(2)) {
        (["health"], ..) => Reply::json(200, HEALTHY),
        (["ready"], ..) => Reply::json(200, r#"{"database":"connected"}"#),
        (["flaky", _], Some(n), _) if index < n => Reply::status(503),
        (["flaky", _], Some(_), _) => Reply::json(200, HEALTHY),
        (["slow", _], Some(ms), _) => {
            nap(Duration::from_millis(ms), shared);
            Reply::text(200, "ok")
        }
        (["status", _], Some(code @ 100..=999), _) => Reply::status(code as u16),
        (["redirect"], ..) => Reply::status(302).header("location", "/health"),
        (["huge"], ..) => Reply {
            status: 200,
            headers: vec![("content-type", "application/octet-stream".to_string())],
            body: vec![b'x'; 11 * 1024 * 1024],
        },
        (["reset"], ..) => return None,
        (["badjson"], ..) => Reply::json(200, r#"{"status": "healthy","#),
        (["secure"], ..) => Reply::text(200, "secure\n")
            .header("strict-transport-security", "max-age=31536000")
            .header("x-content-type-options", "nosniff")
            .header("x-frame-options", "DENY")
            .header("content-security-policy", "default-src 'self'")
            .header("referrer-policy", "no-referrer"),
        (["insecure"], ..) => Reply::text(200, "insecure\n"),
        (["echo"], ..) => Reply::json(200, echo_json(req)),
        (["page", "slow", _], _, Some(ms)) => {
            nap(Duration::from_millis(ms), shared);
            Reply::html(200, page("Slow page", ""))
        }
        (["page", "good"], ..) => Reply::html(200, page("Good page", "")),
        (["page", "console-error"], ..) => Reply::html(
            200,
            page("Console error", "<script>console.error('boom from the page');</script>"),
        ),
        (["page", "rejection"], ..) => Reply::html(
            200,
            page("Rejection", "<script>Promise.reject(new Error('nobody caught me'));</script>"),
        ),
        (["page", "missing-script"], ..) => Reply::html(
            200,
            page("Missing script", "<script src=\"/page/missing.js\"></script>"),
        ),
        (["page", "late-form"], ..) => Reply::html(
            200,
            page(
                "Late form",
                "<script>setTimeout(() => { const f = document.createElement('form'); f.id = 'late'; document.body.appendChild(f); }, 300);</script>",
            ),
        ),
        (["page", "posts"], ..) => Reply::html(
            200,
            page(
                "Posts on load",
                "<script>fetch('/echo', { method: 'POST', body: 'x' }).catch(() => {});</script>",
            ),
        ),
        (["page", "broken"], ..) => Reply::html(
            500,
            page("Broken", "<script>throw new Error('the app is broken');</script>"),
        ),
        (["burst", _, _], Some(start), Some(len)) if (start..start + len).contains(&index) => {
            Reply::status(500)
        }
        (["burst", _, _], Some(_), Some(_)) => Reply::json(200, HEALTHY),
        _ => Reply::status(404),
    })
}

/// A small HTML page: a coloured header, a form `#login`, the text "Sign in", and `extra`
/// at the end of the body.
fn page(title: &str, extra: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body {{ margin: 0; font: 16px sans-serif; background: #fff; }} \
         header {{ background: #1d4ed8; color: #fff; padding: 24px; }}</style></head>\
         <body><header><h1>{title}</h1></header><main><p>Sign in</p>\
         <form id=\"login\"><input name=\"email\"><button>Sign in</button></form></main>{extra}</body></html>"
    )
}

fn echo_json(req: &RecordedRequest) -> String {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in &req.headers {
        match merged.iter_mut().find(|(mk, _)| mk == k) {
            Some((_, mv)) => *mv = format!("{mv}, {v}"),
            None => merged.push((k.clone(), v.clone())),
        }
    }
    let headers: Vec<String> = merged
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
        .collect();
    format!(
        r#"{{"method":{},"path":{},"headers":{{{}}},"body":{}}}"#,
        json_str(&req.method),
        json_str(&req.path),
        headers.join(","),
        json_str(&req.body)
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

/// Sleeps for `d`, returning early once the server is stopping.
fn nap(d: Duration, shared: &Shared) {
    let deadline = std::time::Instant::now() + d;
    while !shared.stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
}

/// Arms `stream` so that its final close sends a TCP RST (SO_LINGER {on, 0}).
pub fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `stream`, pointer and length describe `linger`.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

//! Samples a service's latency and error rate over HTTP, closed loop (workers back to back)
//! or open loop (a fixed start schedule), over reused keep-alive connections, in flat memory.
//!
//! Plain `http://` targets go through hyper's HTTP/1.1 client on connections pooled by the
//! [`Sampler`] (the fast path: reqwest's per-request overhead cost too much throughput);
//! `https://` targets go through a reqwest client (rustls, HTTP/2 when the server offers
//! it) owned by the same `Sampler`. Requests run on the sampler's own threads, one
//! single-threaded runtime per CPU, so that a worker, its connection and its statistics
//! never leave one thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::core::stats::{SampleStats, StatsCollector, StatsError};
use crate::core::transport::{classify_hyper, classify_reqwest, TransportKind};

/// Response bodies are read up to this many bytes, then the rest is dropped (the response
/// still counts by its status, and its connection is closed rather than reused).
pub const MAX_BODY_READ: usize = 1024 * 1024;

/// The largest `concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 10_000;

/// In open loop, at most `max(concurrency, OPEN_LOOP_MIN_IN_FLIGHT)` requests are in flight.
pub const OPEN_LOOP_MIN_IN_FLIGHT: usize = 1000;

/// In open loop, a request started later than this after its intended time counts as late.
pub const LATE_START: Duration = Duration::from_millis(10);

/// The default time limit of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept per host between samples.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
/// Idle connections older than this are not reused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// When a sample stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// After this many requests have finished.
    Requests(u64),
    /// After this much time: no request starts later; those in flight finish (each within
    /// its timeout) and are counted.
    Duration(Duration),
}

/// What to measure and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSpec {
    /// The URL to request (`http://` or `https://`).
    pub url: String,
    /// The HTTP method; `GET` by default. Requests have no body.
    pub method: String,
    /// Extra request headers (a `Host` or `User-Agent` given here replaces the default).
    pub headers: Vec<(String, String)>,
    /// The time limit of one request, connection included.
    pub timeout: Duration,
    /// When to stop.
    pub mode: Mode,
    /// Closed loop: the number of workers sending back to back. Open loop: raises the
    /// in-flight cap above [`OPEN_LOOP_MIN_IN_FLIGHT`] when larger.
    pub concurrency: usize,
    /// Requests per second on a fixed schedule (open loop); `None` for closed loop.
    pub rate: Option<f64>,
    /// In `Mode::Requests`, no request starts later than this after the sample's start
    /// (those in flight finish within their timeout), so a target that hangs cannot stretch
    /// the sample to `requests × timeout`. `None`: no limit.
    #[serde(default)]
    pub start_within: Option<Duration>,
}

impl SampleSpec {
    /// Returns a closed-loop spec: `GET url`, one worker, the default timeout, no extra headers.
    pub fn new(url: impl Into<String>, mode: Mode) -> SampleSpec {
        SampleSpec {
            url: url.into(),
            method: "GET".into(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            mode,
            concurrency: 1,
            rate: None,
            start_within: None,
        }
    }

    /// Checks the spec: positive counts, durations, concurrency and rate, a usable URL,
    /// method and headers.
    pub fn validate(&self) -> Result<(), SampleError> {
        Target::parse(self, HeaderValue::from_static("deployer")).map(|_| ())
    }

    fn validate_numbers(&self) -> Result<(), SampleError> {
        match self.mode {
            Mode::Requests(0) => return Err(SampleError::ZeroRequests),
            Mode::Duration(d) if d.is_zero() => return Err(SampleError::ZeroDuration),
            _ => {}
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(SampleError::BadConcurrency(self.concurrency));
        }
        if self.timeout.is_zero() {
            return Err(SampleError::ZeroTimeout);
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(SampleError::BadRate(rate));
            }
        }
        Ok(())
    }
}

/// A sample that cannot start. A target that is down is not an error: its failures are
/// counted in the statistics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SampleError {
    /// The URL does not parse.
    #[error("sample URL \"{url}\" is invalid: {reason}; write it in full, such as http://127.0.0.1:8080/health")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme is neither http nor https.
    #[error("sample URL \"{url}\" uses the scheme \"{scheme}\": use http:// or https://")]
    UnsupportedScheme {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The method is not a valid HTTP method token.
    #[error("sample method \"{0}\" is not a valid HTTP method: use GET, HEAD, POST or another method name")]
    BadMethod(String),
    /// A header name or value cannot be sent.
    #[error("sample header \"{name}: {value}\" is invalid: {reason}")]
    BadHeader {
        /// The header name given.
        name: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `Mode::Requests(0)`.
    #[error("sample request count is 0: ask for at least 1 request")]
    ZeroRequests,
    /// `Mode::Duration` of zero.
    #[error("sample duration is 0s: give a positive duration such as 10s")]
    ZeroDuration,
    /// Concurrency 0 or above [`MAX_CONCURRENCY`].
    #[error("sample concurrency {0} is out of range: use 1 to {MAX_CONCURRENCY}")]
    BadConcurrency(usize),
    /// A zero request timeout.
    #[error("sample timeout is 0s: give each request a positive time limit such as 5s")]
    ZeroTimeout,
    /// A rate that is zero, negative, NaN or infinite.
    #[error("sample rate {0} requests/s is not a positive number: give a rate such as 50, or no rate for back-to-back requests")]
    BadRate(f64),
    /// The HTTPS client could not be built.
    #[error("cannot build the HTTPS client for sampling: {0}; check the TLS setup of this build")]
    Client(String),
    /// The sampling threads could not be started.
    #[error("cannot start the sampling threads: {0}; the system may be out of threads or memory")]
    Runtime(String),
    /// The statistics could not be set up.
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// The result of a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleReport {
    /// Counts, rates and latencies (see `SampleStats` for the definitions).
    pub stats: SampleStats,
    /// The rate asked for (open loop), if any.
    pub target_rate: Option<f64>,
    /// Open loop: requests started per second of the schedule. Closed loop: `stats.rps`.
    pub achieved_rate: f64,
    /// Open loop: why the offered rate fell short of the schedule, when it did: under 95 %
    /// of the rate, the in-flight cap reached, or 1 % of the starts or more later than
    /// [`LATE_START`]. `None` when the schedule was kept, and always in closed loop.
    pub rate_shortfall: Option<String>,
    /// True when the sample was cancelled; `stats` holds what finished before.
    pub cancelled: bool,
}

/// A reusable HTTP client for sampling: keeps connections alive across requests and across
/// calls to [`sample`]. Cheap to clone (clones share everything); create it once.
///
/// Requests are sent from the sampler's own threads ("lanes", one per CPU, at most
/// [`MAX_LANES`]), each running a single-threaded tokio runtime, started by the first
/// [`sample`] call and stopped when the last clone is dropped. Each worker and its
/// connection stay on one lane, so a request never hops threads, and the measurement does
/// not depend on how busy the caller's runtime is.
#[derive(Debug, Clone, Default)]
pub struct Sampler {
    inner: Arc<SamplerInner>,
}

/// The most sampling threads a [`Sampler`] starts.
pub const MAX_LANES: usize = 8;

#[derive(Debug, Default)]
struct SamplerInner {
    lanes: Mutex<Option<Arc<Lanes>>>,
    https: OnceLock<reqwest::Client>,
}

/// The sampler's threads: a runtime handle and an idle-connection pool per thread.
#[derive(Debug)]
struct Lanes {
    handles: Vec<tokio::runtime::Handle>,
    pools: Vec<Mutex<HashMap<String, Vec<Idle>>>>,
    /// Dropping these ends the threads (and their runtimes, closing their connections).
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Lanes {
    fn start() -> Result<Lanes, SampleError> {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_LANES);
        let mut handles = Vec::with_capacity(n);
        let mut stop = Vec::with_capacity(n);
        for i in 0..n {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("deployer-sampler-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match rt {
                        Ok(rt) => {
                            let _ = handle_tx.send(Ok(rt.handle().clone()));
                            rt.block_on(async {
                                let _ = stop_rx.await;
                            });
                        }
                        Err(e) => {
                            let _ = handle_tx.send(Err(e.to_string()));
                        }
                    }
                })
                .map_err(|e| SampleError::Runtime(format!("cannot start thread {i}: {e}")))?;
            let handle = handle_rx
                .recv()
                .map_err(|_| SampleError::Runtime(format!("thread {i} ended at start")))?
                .map_err(|e| SampleError::Runtime(format!("thread {i}: {e}")))?;
            handles.push(handle);
            stop.push(stop_tx);
        }
        Ok(Lanes {
            pools: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
            handles,
            _stop: stop,
        })
    }

    fn checkout(&self, lane: usize, key: &str) -> Option<Conn> {
        let mut pool = lock(&self.pools[lane]);
        let idle = pool.get_mut(key)?;
        while let Some(c) = idle.pop() {
            if !c.conn.sender.is_closed() && c.since.elapsed() < POOL_IDLE_TIMEOUT {
                return Some(c.conn);
            }
        }
        None
    }

    fn checkin(&self, lane: usize, key: &str, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut pool = lock(&self.pools[lane]);
        let idle = pool.entry(key.to_string()).or_default();
        if idle.len() >= POOL_MAX_IDLE_PER_HOST {
            idle.retain(|c| !c.conn.sender.is_closed() && c.since.elapsed() < POOL_IDLE_TIMEOUT);
        }
        if idle.len() < POOL_MAX_IDLE_PER_HOST {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }
}

impl Sampler {
    /// Returns a sampler with no thread and no connection yet.
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Returns how many idle plain-HTTP connections are kept for reuse.
    pub fn idle_connections(&self) -> usize {
        let lanes = lock(&self.inner.lanes).clone();
        lanes.map_or(0, |l| {
            l.pools
                .iter()
                .map(|p| {
                    lock(p)
                        .values()
                        .map(|v| v.iter().filter(|c| !c.conn.sender.is_closed()).count())
                        .sum::<usize>()
                })
                .sum()
        })
    }

    fn lanes(&self) -> Result<Arc<Lanes>, SampleError> {
        let mut slot = lock(&self.inner.lanes);
        if let Some(l) = slot.as_ref() {
            return Ok(Arc::clone(l));
        }
        let l = Arc::new(Lanes::start()?);
        *slot = Some(Arc::clone(&l));
        Ok(l)
    }

    fn https_client(&self) -> Result<reqwest::Client, SampleError> {
        if let Some(c) = self.inner.https.get() {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| SampleError::Client(e.to_string()))?;
        Ok(self.inner.https.get_or_init(|| client).clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One HTTP/1.1 connection: the request sender and the task driving the socket, which is
/// aborted (closing the socket) when the connection is dropped.
#[derive(Debug)]
struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
    task: AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Where and how to send, prepared once per sample.
#[derive(Debug)]
struct Target {
    method: Method,
    headers: HeaderMap,
    timeout: Duration,
    route: Route,
}

#[derive(Debug)]
enum Route {
    Http {
        pool_key: String,
        host: Host,
        port: u16,
        uri: Uri,
    },
    Https {
        url: reqwest::Url,
    },
}

#[derive(Debug, Clone)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Target {
    fn parse(spec: &SampleSpec, user_agent: HeaderValue) -> Result<Target, SampleError> {
        spec.validate_numbers()?;
        let bad_url = |reason: String| SampleError::BadUrl {
            url: spec.url.clone(),
            reason,
        };
        let url = reqwest::Url::parse(&spec.url).map_err(|e| bad_url(e.to_string()))?;
        let method = Method::from_bytes(spec.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| SampleError::BadMethod(spec.method.clone()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let bad = |reason: &str| SampleError::BadHeader {
                name: name.clone(),
                value: value.clone(),
                reason: reason.to_string(),
            };
            let n = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                bad("the name must be a token such as X-Request-Id (letters, digits, '-')")
            })?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| bad("the value must be visible ASCII text without line breaks"))?;
            headers.append(n, v);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, user_agent);
        }
        let route = match url.scheme() {
            "http" => {
                let host_str = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad_url("it has no host".into()))?;
                let port = url
                    .port_or_known_default()
                    .ok_or_else(|| bad_url("it has no port".into()))?;
                let bare = host_str.trim_start_matches('[').trim_end_matches(']');
                let host = match bare.parse::<IpAddr>() {
                    Ok(ip) => Host::Ip(ip),
                    Err(_) => Host::Name(bare.to_string()),
                };
                let authority = match url.port() {
                    Some(p) => format!("{host_str}:{p}"),
                    None => host_str.to_string(),
                };
                if !headers.contains_key(HOST) {
                    let v = HeaderValue::from_str(&authority)
                        .map_err(|_| bad_url(format!("its host \"{authority}\" is not valid")))?;
                    headers.insert(HOST, v);
                }
                let mut path = url.path().to_string();
                if let Some(q) = url.query() {
                    path.push('?');
                    path.push_str(q);
                }
                let uri = Uri::try_from(path.as_str())
                    .map_err(|e| bad_url(format!("its path \"{path}\" is not valid: {e}")))?;
                Route::Http {
                    pool_key: format!("{host_str}:{port}"),
                    host,
                    port,
                    uri,
                }
            }
            "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(bad_url("it has no host".into()));
                }
                Route::Https { url }
            }
            other => {
                return Err(SampleError::UnsupportedScheme {
                    url: spec.url.clone(),
                    scheme: other.to_string(),
                })
            }
        };
        Ok(Target {
            method,
            headers,
            timeout: spec.timeout,
            route,
        })
    }
}

/// What every request task of one sample shares.
struct Shared {
    lanes: Arc<Lanes>,
    target: Target,
    https: Option<reqwest::Client>,
    shards: Vec<Mutex<StatsCollector>>,
}

impl Shared {
    /// Records an outcome in the statistics of `lane` (one part per lane: never contended
    /// while the sample runs).
    fn record(&self, lane: usize, started: Instant, outcome: Result<u16, TransportKind>) {
        let latency = started.elapsed();
        let mut s = lock(&self.shards[lane]);
        match outcome {
            Ok(status) => s.record_response(status, latency),
            Err(kind) => s.record_error(kind),
        }
    }
}

/// Sends requests one after another from one lane, keeping its connection between them.
struct Requester {
    shared: Arc<Shared>,
    lane: usize,
    conn: Option<Conn>,
}

impl Requester {
    fn new(shared: Arc<Shared>, lane: usize) -> Requester {
        Requester {
            shared,
            lane,
            conn: None,
        }
    }

    /// Sends one request within the timeout: the status, or why there is none.
    async fn send(&mut self) -> Result<u16, TransportKind> {
        let timeout = self.shared.target.timeout;
        match tokio::time::timeout(timeout, self.send_untimed()).await {
            Ok(r) => r,
            Err(_) => Err(TransportKind::Timeout),
        }
    }

    async fn send_untimed(&mut self) -> Result<u16, TransportKind> {
        let shared = Arc::clone(&self.shared);
        match &shared.target.route {
            Route::Http {
                pool_key,
                host,
                port,
                uri,
            } => self.send_http(pool_key, host, *port, uri).await,
            Route::Https { url } => match &shared.https {
                Some(client) => send_https(client, &shared.target, url).await,
                None => Err(TransportKind::Other),
            },
        }
    }

    async fn send_http(
        &mut self,
        pool_key: &str,
        host: &Host,
        port: u16,
        uri: &Uri,
    ) -> Result<u16, TransportKind> {
        let mut retried = false;
        loop {
            // `self.conn` is empty while a request is in flight: a request dropped by the
            // timeout or by cancellation takes its connection with it.
            let kept = if retried {
                None
            } else {
                self.conn
                    .take()
                    .or_else(|| self.shared.lanes.checkout(self.lane, pool_key))
            };
            let (mut conn, reused) = match kept {
                Some(c) => (c, true),
                None => (dial(host, port).await?, false),
            };
            // A reused connection the server has closed meanwhile is replaced once, silently,
            // by a new one.
            if conn.sender.ready().await.is_err() {
                // Closed before the request was written: nothing was sent.
                if reused && !retried {
                    retried = true;
                    continue;
                }
                return Err(TransportKind::Connect);
            }
            let mut req = Request::new(Empty::<Bytes>::new());
            *req.method_mut() = self.shared.target.method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = self.shared.target.headers.clone();
            let resp = match conn.sender.send_request(req).await {
                Ok(r) => r,
                Err(e) => {
                    let kind = classify_hyper(&e);
                    // A kept-alive connection may have been closed or reset by the server
                    // just as the request went out: retry once on a new connection, if the
                    // request was never written or the method is safe to repeat. Errors on
                    // new connections are always counted.
                    let repeatable = kind == TransportKind::Connect
                        || (kind == TransportKind::Reset
                            && self.shared.target.method.is_idempotent());
                    if repeatable && reused && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(kind);
                }
            };
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut read = 0usize;
            loop {
                match body.frame().await {
                    None => {
                        self.conn = Some(conn);
                        return Ok(status);
                    }
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            read += data.len();
                            if read > MAX_BODY_READ {
                                // Stop reading; the connection is dropped (closed) with the rest.
                                return Ok(status);
                            }
                        }
                    }
                    Some(Err(_)) => return Err(TransportKind::Body),
                }
            }
        }
    }

    /// Puts the connection back in the sampler's pool.
    fn release(&mut self) {
        if let (Some(conn), Route::Http { pool_key, .. }) =
            (self.conn.take(), &self.shared.target.route)
        {
            self.shared.lanes.checkin(self.lane, pool_key, conn);
        }
    }
}

/// Opens an HTTP/1.1 connection to `host:port`.
async fn dial(host: &Host, port: u16) -> Result<Conn, TransportKind> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|_| TransportKind::Dns)?
            .collect(),
    };
    let mut last = TransportKind::Dns;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Latency is what is measured: do not let Nagle hold small writes back.
                let _ = stream.set_nodelay(true);
                // The handshake only sets the connection up (no I/O): nothing is sent yet.
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|_| TransportKind::Connect)?;
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                })
                .abort_handle();
                return Ok(Conn { sender, task });
            }
            // Whatever went wrong while connecting (refused, unreachable, timed out),
            // nothing was sent.
            Err(_) => last = TransportKind::Connect,
        }
    }
    Err(last)
}

/// Sends one request through reqwest (HTTPS), reading at most [`MAX_BODY_READ`] bytes.
async fn send_https(
    client: &reqwest::Client,
    target: &Target,
    url: &reqwest::Url,
) -> Result<u16, TransportKind> {
    let mut resp = client
        .request(target.method.clone(), url.clone())
        .headers(target.headers.clone())
        .send()
        .await
        .map_err(|e| classify_reqwest(&e))?;
    let status = resp.status().as_u16();
    let mut read = 0usize;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if read > MAX_BODY_READ {
                    return Ok(status);
                }
            }
            Ok(None) => return Ok(status),
            Err(_) => return Err(TransportKind::Body),
        }
    }
}

/// Measures `spec.url` as `spec` says, through `client`'s connections.
///
/// Closed loop (`rate` is `None`): `concurrency` workers each send requests back to back.
/// Open loop (`rate` set): request *i* is started at `i / rate` seconds, whether or not
/// earlier ones have finished, with at most `max(concurrency, 1000)` in flight; starts that
/// fall behind the schedule are reported in `rate_shortfall`. A request's latency runs from
/// its actual start to the end of its body (connecting included when it needs a new
/// connection); a kept-alive connection found closed by the server is replaced once without
/// counting an error.
///
/// A target that is down, slow or failing yields statistics with its errors counted by
/// kind; `Err` only means the spec is invalid. When `cancel` fires, in-flight requests are
/// dropped (not counted) and what finished is returned with `cancelled: true`.
pub async fn sample(
    client: &Sampler,
    spec: &SampleSpec,
    cancel: &CancellationToken,
) -> Result<SampleReport, SampleError> {
    let target = Target::parse(spec, default_user_agent())?;
    let https = match target.route {
        Route::Https { .. } => Some(client.https_client()?),
        Route::Http { .. } => None,
    };
    let lanes = client.lanes()?;
    let shards = (0..lanes.handles.len())
        .map(|_| StatsCollector::new().map(Mutex::new))
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(Shared {
        lanes,
        target,
        https,
        shards,
    });
    let start = Instant::now();
    if cancel.is_cancelled() {
        return Ok(SampleReport {
            stats: SampleStats::empty(),
            target_rate: spec.rate,
            achieved_rate: 0.0,
            rate_shortfall: None,
            cancelled: true,
        });
    }
    let deadline = match spec.mode {
        Mode::Duration(d) => start.checked_add(d),
        Mode::Requests(_) => spec.start_within.and_then(|d| start.checked_add(d)),
    };
    let (cancelled, schedule) = match spec.rate {
        None => (closed_loop(&shared, spec, deadline, cancel).await, None),
        Some(rate) => {
            // The schedule runs on the first lane, so that its timing does not depend on
            // the caller's runtime (which may be busy, or have no timer).
            let mut scheduler = JoinSet::new();
            let (sh, sp, ca) = (Arc::clone(&shared), spec.clone(), cancel.clone());
            scheduler.spawn_on(
                async move { open_loop(&sh, &sp, rate, start, deadline, &ca).await },
                &shared.lanes.handles[0],
            );
            match scheduler.join_next().await {
                Some(Ok((c, s))) => (c, Some(s)),
                // Only a panic in the scheduler gets here; report what was measured.
                _ => (cancel.is_cancelled(), None),
            }
        }
    };
    let elapsed = start.elapsed();
    let mut total = StatsCollector::new()?;
    for shard in &shared.shards {
        total.merge(&lock(shard));
    }
    let stats = total.finish(elapsed);
    let (achieved_rate, rate_shortfall) = match (spec.rate, schedule) {
        (Some(rate), Some(s)) => s.judge(rate),
        _ => (stats.rps, None),
    };
    Ok(SampleReport {
        stats,
        target_rate: spec.rate,
        achieved_rate,
        rate_shortfall,
        cancelled,
    })
}

fn default_user_agent() -> HeaderValue {
    HeaderValue::from_static(concat!("deployer/", env!("CARGO_PKG_VERSION")))
}

/// Runs the workers; returns true when cancelled.
async fn closed_loop(
    shared: &Arc<Shared>,
    spec: &SampleSpec,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> bool {
    let budget = match spec.mode {
        Mode::Requests(n) => Some(n),
        Mode::Duration(_) => None,
    };
    let workers = match budget {
        Some(n) => usize::try_from(n).map_or(spec.concurrency, |n| n.min(spec.concurrency)),
        None => spec.concurrency,
    };
    let issued = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    let lane_count = shared.lanes.handles.len();
    for w in 0..workers {
        let lane = w % lane_count;
        let handle = shared.lanes.handles[lane].clone();
        let shared = Arc::clone(shared);
        let issued = Arc::clone(&issued);
        let task = async move {
            let mut requester = Requester::new(Arc::clone(&shared), lane);
            loop {
                if let Some(n) = budget {
                    if issued.fetch_add(1, Ordering::Relaxed) >= n {
                        break;
                    }
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                let outcome = requester.send().await;
                shared.record(lane, now, outcome);
            }
            requester.release();
        };
        set.spawn_on(task, &handle);
    }
    run_to_end(&mut set, cancel).await
}

/// Waits for every task of `set`, or aborts them all when `cancel` fires first; returns
/// true when cancelled.
async fn run_to_end(set: &mut JoinSet<()>, cancel: &CancellationToken) -> bool {
    let cancelled = tokio::select! {
        _ = async { while set.join_next().await.is_some() {} } => false,
        _ = cancel.cancelled() => true,
    };
    if cancelled {
        set.shutdown().await;
    }
    cancelled
}

/// How well the open-loop schedule was kept.
#[derive(Debug, Default)]
struct Schedule {
    started: u64,
    late: u64,
    worst_late: Duration,
    cap: usize,
    cap_hits: u64,
    /// Time from the schedule's start to the last start.
    span: Duration,
}

impl Schedule {
    /// Returns the achieved rate and, when the schedule was not kept, why.
    fn judge(&self, rate: f64) -> (f64, Option<String>) {
        if self.started == 0 {
            return (0.0, None);
        }
        // n starts on schedule span (n - 1) periods; count the last period too.
        let window = self.span.as_secs_f64() + 1.0 / rate;
        let achieved = self.started as f64 / window;
        let mut why = Vec::new();
        if achieved < 0.95 * rate {
            why.push(format!(
                "offered {achieved:.1} requests/s of the {rate} asked ({:.0} %)",
                100.0 * achieved / rate
            ));
        }
        if self.cap_hits > 0 {
            why.push(format!(
                "the cap of {} requests in flight was reached {} times (responses, or this client, were too slow for the rate: lower the rate, or raise concurrency if the target can take more)",
                self.cap, self.cap_hits
            ));
        }
        if self.late > 0
            && (self.late * 100 >= self.started || self.cap_hits > 0 || !why.is_empty())
        {
            why.push(format!(
                "{} of {} requests started more than {} ms late (worst {:.1} ms){}",
                self.late,
                self.started,
                LATE_START.as_millis(),
                self.worst_late.as_secs_f64() * 1000.0,
                if self.cap_hits == 0 {
                    ": this machine cannot keep up with the rate; lower it"
                } else {
                    ""
                }
            ));
        }
        if why.is_empty() {
            (achieved, None)
        } else {
            why.push("latencies measured meanwhile may include waiting in this client".to_string());
            (achieved, Some(why.join("; ")))
        }
    }
}

/// Starts requests on the schedule; returns true when cancelled, and how the schedule went.
async fn open_loop(
    shared: &Arc<Shared>,
    spec: &SampleSpec,
    rate: f64,
    start: Instant,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> (bool, Schedule) {
    let cap = spec.concurrency.max(OPEN_LOOP_MIN_IN_FLIGHT);
    let slots = Arc::new(Semaphore::new(cap));
    let mut sched = Schedule {
        cap,
        ..Schedule::default()
    };
    let mut set = JoinSet::new();
    let mut i: u64 = 0;
    let cancelled = loop {
        if cancel.is_cancelled() {
            break true;
        }
        if let Mode::Requests(n) = spec.mode {
            if i >= n {
                break false;
            }
        }
        let Some(intended) = Duration::try_from_secs_f64(i as f64 / rate)
            .ok()
            .and_then(|offset| start.checked_add(offset))
        else {
            break false;
        };
        // The sample ends at its deadline on the clock, even when the schedule is behind.
        if deadline.is_some_and(|d| intended >= d || Instant::now() >= d) {
            break false;
        }
        // Forget finished tasks so that the set does not grow with the request count.
        while set.try_join_next().is_some() {}
        if intended > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(intended.into()) => {}
                _ = cancel.cancelled() => break true,
            }
        }
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                sched.cap_hits += 1;
                let at_deadline = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    p = Arc::clone(&slots).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break false,
                    },
                    _ = at_deadline => break false,
                    _ = cancel.cancelled() => break true,
                }
            }
        };
        let now = Instant::now();
        let late = now.saturating_duration_since(intended);
        if late > LATE_START {
            sched.late += 1;
        }
        sched.worst_late = sched.worst_late.max(late);
        sched.span = now.saturating_duration_since(start);
        sched.started += 1;
        let lane_count = shared.lanes.handles.len();
        let lane = usize::try_from(i % lane_count as u64).unwrap_or(0);
        let handle = shared.lanes.handles[lane].clone();
        let shared = Arc::clone(shared);
        let task = async move {
            let mut requester = Requester::new(Arc::clone(&shared), lane);
            let t0 = Instant::now();
            let outcome = requester.send().await;
            shared.record(lane, t0, outcome);
            requester.release();
            drop(permit);
        };
        set.spawn_on(task, &handle);
        i += 1;
    };
    if cancelled {
        set.shutdown().await;
        return (true, sched);
    }
    (run_to_end(&mut set, cancel).await, sched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SampleSpec {
        SampleSpec::new("http://127.0.0.1:8080/health?x=1", Mode::Requests(10))
    }

    #[test]
    fn a_good_spec_validates() {
        spec().validate().expect("valid");
        let mut s = spec();
        s.url = "https://example.test/".into();
        s.mode = Mode::Duration(Duration::from_secs(5));
        s.rate = Some(0.5);
        s.concurrency = MAX_CONCURRENCY;
        s.method = "head".into();
        s.headers = vec![("X-Trace".into(), "abc".into())];
        s.validate().expect("valid");
    }

    #[test]
    fn bad_numbers_are_rejected_with_the_value() {
        let mut s = spec();
        s.mode = Mode::Requests(0);
        assert!(matches!(s.validate(), Err(SampleError::ZeroRequests)));
        s.mode = Mode::Duration(Duration::ZERO);
        assert!(matches!(s.validate(), Err(SampleError::ZeroDuration)));
        let mut s = spec();
        s.concurrency = 0;
        let e = s.validate().expect_err("zero concurrency");
        assert_eq!(
            e.to_string(),
            "sample concurrency 0 is out of range: use 1 to 10000"
        );
        s.concurrency = MAX_CONCURRENCY + 1;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.timeout = Duration::ZERO;
        assert!(matches!(s.validate(), Err(SampleError::ZeroTimeout)));
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let mut s = spec();
            s.rate = Some(bad);
            let e = s.validate().expect_err("bad rate");
            assert!(
                e.to_string().starts_with(&format!("sample rate {bad} ")),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_urls_methods_and_headers_are_rejected() {
        let mut s = spec();
        s.url = "127.0.0.1:8080/health".into();
        assert!(matches!(
            s.validate(),
            Err(SampleError::UnsupportedScheme { .. }) | Err(SampleError::BadUrl { .. })
        ));
        s.url = "not a url".into();
        let e = s.validate().expect_err("bad url");
        assert!(e.to_string().contains("\"not a url\" is invalid"), "{e}");
        s.url = "ftp://127.0.0.1/x".into();
        let e = s.validate().expect_err("scheme");
        assert!(e.to_string().contains("scheme \"ftp\""), "{e}");
        let mut s = spec();
        s.method = "GE T".into();
        assert!(matches!(s.validate(), Err(SampleError::BadMethod(_))));
        let mut s = spec();
        s.headers = vec![("Bad Name".into(), "v".into())];
        let e = s.validate().expect_err("header");
        assert!(e.to_string().contains("\"Bad Name: v\" is invalid"), "{e}");
        s.headers = vec![("X-Ok".into(), "line\nbreak".into())];
        assert!(matches!(s.validate(), Err(SampleError::BadHeader { .. })));
    }

    #[test]
    fn the_target_carries_host_path_and_headers() {
        let mut s = spec();
        s.url = "http://[::1]:9000/a/b?q=2".into();
        s.headers = vec![("X-Id".into(), "7".into())];
        let t = Target::parse(&s, default_user_agent()).expect("valid");
        let Route::Http {
            pool_key,
            host,
            port,
            uri,
        } = &t.route
        else {
            panic!("expected the plain HTTP route");
        };
        assert_eq!(pool_key, "[::1]:9000");
        assert!(matches!(host, Host::Ip(ip) if ip.is_loopback()));
        assert_eq!(*port, 9000);
        assert_eq!(uri.to_string(), "/a/b?q=2");
        assert_eq!(t.headers[HOST], "[::1]:9000");
        assert_eq!(t.headers["x-id"], "7");
        assert!(t.headers[USER_AGENT]
            .to_str()
            .unwrap_or_default()
            .starts_with("deployer/"));
        s.url = "http://svc.internal/".into();
        s.headers = vec![("Host".into(), "other".into())];
        let t = Target::parse(&s, default_user_agent()).expect("valid");
        assert_eq!(t.headers[HOST], "other");
        assert!(
            matches!(&t.route, Route::Http { host: Host::Name(n), port: 80, .. } if n == "svc.internal")
        );
    }

    #[test]
    fn schedule_judgement() {
        let on_time = Schedule {
            started: 100,
            span: Duration::from_millis(990),
            cap: 1000,
            ..Schedule::default()
        };
        let (rate, why) = on_time.judge(100.0);
        assert!((rate - 100.0).abs() < 1e-9);
        assert_eq!(why, None);
        let behind = Schedule {
            started: 50,
            late: 40,
            worst_late: Duration::from_millis(480),
            span: Duration::from_millis(990),
            cap: 1000,
            cap_hits: 40,
        };
        let (rate, why) = behind.judge(100.0);
        assert!((rate - 50.0).abs() < 1e-9);
        let why = why.expect("shortfall reported");
        assert!(
            why.contains("offered 50.0 requests/s of the 100 asked (50 %)"),
            "{why}"
        );
        assert!(
            why.contains("cap of 1000 requests in flight was reached 40 times"),
            "{why}"
        );
        assert!(
            why.contains("40 of 50 requests started more than 10 ms late (worst 480.0 ms)"),
            "{why}"
        );
    }
}

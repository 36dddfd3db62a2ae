//! HTTP requests for probes and webhooks: one lazily built client, bounded bodies, and
//! transport failures sorted into kinds a script can act on.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::core::duration::format_duration;

/// Response bodies larger than this are refused.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// The default time limit of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    pub follow_redirects: bool,
}

impl Request {
    /// Returns a GET request with the default timeout.
    pub fn get(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: DEFAULT_TIMEOUT,
            follow_redirects: false,
        }
    }
}

/// A response that arrived.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub latency: Duration,
}

/// Why a request got no usable response: the program's one taxonomy of transport errors,
/// defined in `core::transport` (see there which kinds mean "nothing was sent").
pub use crate::core::transport::TransportKind;

/// A request that failed before a complete response arrived.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method} {url}: {message}")]
pub struct HttpError {
    pub kind: TransportKind,
    pub method: String,
    pub url: String,
    pub message: String,
    pub elapsed: Duration,
}

/// The two shared clients (following redirects or not), built on first use so that a
/// script that makes no HTTP call never pays for TLS setup.
#[derive(Debug, Default)]
pub struct Clients {
    follow: OnceLock<reqwest::Client>,
    no_follow: OnceLock<reqwest::Client>,
}

impl Clients {
    fn get(&self, follow: bool) -> Result<&reqwest::Client, String> {
        let cell = if follow {
            &self.follow
        } else {
            &self.no_follow
        };
        if let Some(c) = cell.get() {
            return Ok(c);
        }
        let policy = if follow {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        };
        let client = reqwest::Client::builder()
            .redirect(policy)
            .user_agent(concat!("deployer/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        tracing::debug!(follow, "built the HTTP client");
        Ok(cell.get_or_init(|| client))
    }

    /// Sends a request and reads the whole body (up to [`MAX_BODY`]).
    pub async fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let start = Instant::now();
        let fail = |kind: TransportKind, message: String| HttpError {
            kind,
            method: req.method.clone(),
            url: req.url.clone(),
            message,
            elapsed: start.elapsed(),
        };
        let url = reqwest::Url::parse(&req.url).map_err(|e| {
            fail(
                TransportKind::Url,
                format!(
                    "invalid URL: {e} (write it in full, such as http://127.0.0.1:8080/health)"
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(
                TransportKind::Url,
                format!(
                    "unsupported URL scheme \"{}\": use http or https",
                    url.scheme()
                ),
            ));
        }
        let method = reqwest::Method::from_bytes(req.method.to_uppercase().as_bytes())
            .map_err(|_| fail(TransportKind::Url, format!("invalid method {}", req.method)))?;
        let client = self
            .get(req.follow_redirects)
            .map_err(|m| fail(TransportKind::Other, m))?;
        let mut builder = client.request(method, url).timeout(req.timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        // No URL here: it may hold a secret, and tracing output is not masked.
        tracing::debug!(method = %req.method, "sending request");
        let mut resp = builder
            .send()
            .await
            .map_err(|e| classify(&e, req.timeout, &fail))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if let Some(len) = resp.content_length() {
            if len as usize > MAX_BODY {
                return Err(fail(TransportKind::Body, too_large(Some(len))));
            }
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(fail(TransportKind::Body, too_large(None)));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(classify(&e, req.timeout, &fail)),
            }
        }
        Ok(Response {
            status,
            headers,
            body,
            latency: start.elapsed(),
        })
    }
}

fn too_large(len: Option<u64>) -> String {
    let size = len.map(|l| format!(" ({l} bytes)")).unwrap_or_default();
    format!(
        "response body is larger than the 10 MiB limit{size}; it was cut off: probe a smaller endpoint or use http::head"
    )
}

/// Sorts a reqwest error into a kind, with the root cause as the message.
fn classify(
    e: &reqwest::Error,
    timeout: Duration,
    fail: &dyn Fn(TransportKind, String) -> HttpError,
) -> HttpError {
    let kind = crate::core::transport::classify_reqwest(e);
    let mut root = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        root = s.to_string();
        source = s.source();
    }
    let message = match kind {
        TransportKind::Timeout => format!(
            "timed out after {} (the request was sent; the server may have acted on it)",
            format_duration(timeout)
        ),
        TransportKind::Dns => format!("cannot resolve host: {root}"),
        TransportKind::Tls => format!("TLS error: {root}"),
        TransportKind::Connect => format!("could not connect (nothing was sent): {root}"),
        TransportKind::Reset => format!(
            "the connection broke after the request was sent (the server may have acted on it): {root}"
        ),
        TransportKind::Protocol => format!(
            "the reply is not valid HTTP (the request was sent): {root}"
        ),
        TransportKind::Body => format!("error reading the response body: {root}"),
        TransportKind::Url | TransportKind::Other => format!("request failed: {root}"),
    };
    fail(kind, message)
}

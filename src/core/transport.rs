//! Why a request got no usable response: the program's one taxonomy of transport errors
//! ([`TransportKind`]) and its one classifier of reqwest, hyper and I/O errors. Used by the
//! `http::*` probes (`sys::http`), the sampler (`metrics::sampler`) behind `sample()` and
//! `monitor()`, and sample statistics (`core::stats`). A leaf: it depends on nothing else in
//! the crate.

use serde::{Deserialize, Serialize};

/// Why a request got no usable response: the one taxonomy of transport failures, shared by
/// `http::*` probes (`sys::http`), the sampler (`metrics::sampler`) and sample statistics.
///
/// The kinds split on one question: *could the server have received the request?*
/// - nothing was sent, so resending is always safe: `url`, `dns`, `connect`, `tls`;
/// - the request was (or may have been) sent, so the server may have acted on it: `timeout`,
///   `reset`, `protocol`, `body`, `other`. Resend only requests that are safe to repeat
///   (GET, HEAD, or a POST the server deduplicates).
///
/// [`TransportKind::request_sent`] answers that question; scripts see it as `err.sent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// No complete response within the request's time limit (the request may have arrived).
    Timeout,
    /// No connection could be made (refused, unreachable, closed before the request was
    /// written): nothing was sent.
    Connect,
    /// The host name did not resolve: nothing was sent.
    Dns,
    /// The TLS handshake or certificate check failed: nothing was sent.
    Tls,
    /// The connection was reset or closed after the request was sent, before a complete
    /// response head arrived: the server may have processed the request.
    Reset,
    /// The reply was not valid HTTP: the server received the request.
    Protocol,
    /// The response head arrived but its body could not be read to its end (or was too large).
    Body,
    /// The URL or method is invalid: nothing was sent.
    Url,
    /// Anything else; counted as "may have been sent".
    Other,
}

/// The number of transport error kinds.
pub const TRANSPORT_KINDS: usize = 9;

impl TransportKind {
    /// Every kind, in the order they are reported.
    pub const ALL: [TransportKind; TRANSPORT_KINDS] = [
        TransportKind::Timeout,
        TransportKind::Connect,
        TransportKind::Dns,
        TransportKind::Tls,
        TransportKind::Reset,
        TransportKind::Protocol,
        TransportKind::Body,
        TransportKind::Url,
        TransportKind::Other,
    ];

    /// Returns the kind's name as reports and scripts see it (`timeout`, `connect`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Timeout => "timeout",
            TransportKind::Connect => "connect",
            TransportKind::Dns => "dns",
            TransportKind::Tls => "tls",
            TransportKind::Reset => "reset",
            TransportKind::Protocol => "protocol",
            TransportKind::Body => "body",
            TransportKind::Url => "url",
            TransportKind::Other => "other",
        }
    }

    /// Returns false when the request never left deployer (`url`, `dns`, `connect`, `tls`),
    /// so that sending it again cannot repeat an action; true when the server may have
    /// received it (every other kind, `other` included).
    pub fn request_sent(self) -> bool {
        !matches!(
            self,
            TransportKind::Url | TransportKind::Dns | TransportKind::Connect | TransportKind::Tls
        )
    }

    /// Returns the kind's position in [`TransportKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            TransportKind::Timeout => 0,
            TransportKind::Connect => 1,
            TransportKind::Dns => 2,
            TransportKind::Tls => 3,
            TransportKind::Reset => 4,
            TransportKind::Protocol => 5,
            TransportKind::Body => 6,
            TransportKind::Url => 7,
            TransportKind::Other => 8,
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sorts an I/O error met *after* the request was written (reading the response head):
/// never `connect`.
pub fn after_sending(e: &std::io::Error) -> TransportKind {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::TimedOut | Io::WouldBlock => TransportKind::Timeout,
        Io::ConnectionReset
        | Io::ConnectionAborted
        | Io::BrokenPipe
        | Io::UnexpectedEof
        | Io::NotConnected => TransportKind::Reset,
        Io::InvalidData => TransportKind::Protocol,
        _ => TransportKind::Other,
    }
}

/// What a reqwest error says about itself, gathered from it and its chain of sources; the
/// input of [`judge`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFacts {
    /// The request could not be built (bad URL or header).
    pub builder: bool,
    /// It failed while connecting (reqwest's `is_connect`).
    pub connect: bool,
    /// A time limit ran out.
    pub timeout: bool,
    /// Reading or decoding the body failed.
    pub body: bool,
    /// Every message in the chain, lowercased, joined by `: ` (TLS errors are only told
    /// apart by their text).
    pub chain: String,
    /// What the first hyper or I/O error of the chain says, judged as met after sending.
    pub after_sending: Option<TransportKind>,
}

fn says_dns(chain: &str) -> bool {
    chain.contains("dns error") || chain.contains("failed to lookup address")
}

fn says_tls(chain: &str) -> bool {
    [
        "certificate",
        "tls",
        "handshake",
        "invalidcontenttype",
        "corrupt message",
        "invalidmessage",
    ]
    .iter()
    .any(|w| chain.contains(w))
}

/// Sorts the facts of one error into a kind.
///
/// Failures while connecting are `dns`, `tls` or `connect` (a connect timeout too: nothing
/// was sent); once a connection carried the request, a failure is never `connect`: a time
/// limit is `timeout`, a body error `body`, and otherwise what hyper or the socket said
/// (`protocol` for a reply that is not HTTP, `reset` for a connection closed early).
pub fn judge(f: &ErrorFacts) -> TransportKind {
    if f.builder {
        return TransportKind::Url;
    }
    if f.connect {
        return if f.timeout {
            TransportKind::Connect
        } else if says_dns(&f.chain) {
            TransportKind::Dns
        } else if says_tls(&f.chain) {
            TransportKind::Tls
        } else {
            TransportKind::Connect
        };
    }
    if f.timeout {
        return TransportKind::Timeout;
    }
    if says_dns(&f.chain) {
        return TransportKind::Dns;
    }
    if f.body {
        return TransportKind::Body;
    }
    f.after_sending.unwrap_or(TransportKind::Other)
}

/// Gathers the [`ErrorFacts`] of a reqwest error.
pub fn facts(e: &reqwest::Error) -> ErrorFacts {
    let mut f = ErrorFacts {
        builder: e.is_builder(),
        connect: e.is_connect(),
        timeout: e.is_timeout(),
        body: e.is_body() || e.is_decode(),
        ..ErrorFacts::default()
    };
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        f.chain.push_str(&s.to_string().to_lowercase());
        f.chain.push_str(": ");
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            f.after_sending.get_or_insert(classify_hyper(h));
        } else if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                // rustls reports its failures as io errors wrapping a rustls error.
                f.chain.push_str(&format!("{inner:?}").to_lowercase());
            }
            f.after_sending.get_or_insert(after_sending(io));
        }
        source = s.source();
    }
    f
}

/// Sorts a reqwest error into a [`TransportKind`] (see [`judge`]). Used by `http::*` probes
/// and by the sampler's HTTPS path, so that both report the same kinds.
pub fn classify_reqwest(e: &reqwest::Error) -> TransportKind {
    judge(&facts(e))
}

/// Sorts a hyper error met on an open connection (sending the request or reading the
/// response head) into a [`TransportKind`]: `connect` only when hyper says the request was
/// never written (`is_canceled`), `protocol` for a reply that is not HTTP, `reset` for a
/// connection closed or reset before a complete response.
pub fn classify_hyper(e: &hyper::Error) -> TransportKind {
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    if e.is_canceled() {
        return TransportKind::Connect;
    }
    if e.is_parse() || e.is_parse_status() {
        return TransportKind::Protocol;
    }
    if e.is_incomplete_message() || e.is_closed() {
        return TransportKind::Reset;
    }
    if e.is_user() {
        return TransportKind::Other;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return after_sending(io);
        }
        source = s.source();
    }
    TransportKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(connect: bool, timeout: bool, chain: &str) -> ErrorFacts {
        ErrorFacts {
            connect,
            timeout,
            chain: chain.into(),
            ..ErrorFacts::default()
        }
    }

    #[test]
    fn failures_while_connecting_mean_nothing_was_sent() {
        for (f, kind) in [
            (
                facts(
                    true,
                    false,
                    "tcp connect error: connection refused (os error 111): ",
                ),
                TransportKind::Connect,
            ),
            (
                facts(true, true, "operation timed out: "),
                TransportKind::Connect,
            ),
            (
                facts(
                    true,
                    false,
                    "dns error: failed to lookup address information: ",
                ),
                TransportKind::Dns,
            ),
            (
                facts(true, false, "invalid peer certificate: unknownissuer: "),
                TransportKind::Tls,
            ),
            (
                facts(
                    true,
                    false,
                    "received corrupt message of type invalidcontenttype: ",
                ),
                TransportKind::Tls,
            ),
        ] {
            let k = judge(&f);
            assert_eq!(k, kind, "{f:?}");
            assert!(!k.request_sent(), "{f:?}");
        }
    }

    #[test]
    fn failures_after_sending_are_never_connect() {
        let reset = ErrorFacts {
            after_sending: Some(TransportKind::Reset),
            chain: "connection reset by peer: ".into(),
            ..ErrorFacts::default()
        };
        assert_eq!(judge(&reset), TransportKind::Reset);
        let not_http = ErrorFacts {
            after_sending: Some(TransportKind::Protocol),
            ..ErrorFacts::default()
        };
        assert_eq!(judge(&not_http), TransportKind::Protocol);
        assert_eq!(judge(&facts(false, true, "")), TransportKind::Timeout);
        let body = ErrorFacts {
            body: true,
            after_sending: Some(TransportKind::Reset),
            ..ErrorFacts::default()
        };
        assert_eq!(
            judge(&body),
            TransportKind::Body,
            "the head arrived: a body error"
        );
        assert_eq!(judge(&ErrorFacts::default()), TransportKind::Other);
        let built = ErrorFacts {
            builder: true,
            connect: true,
            ..ErrorFacts::default()
        };
        assert_eq!(judge(&built), TransportKind::Url);
    }

    /// Real errors from real sockets on 127.0.0.1, through reqwest, sorted by the one
    /// classifier.
    #[test]
    fn real_reqwest_errors_are_sorted() {
        use std::io::{Read, Write};
        use std::net::TcpListener;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(300))
            .build()
            .expect("client");
        let get = |url: String| {
            rt.block_on(async { client.get(url).send().await })
                .map(|r| r.status())
                .map_err(|e| classify_reqwest(&e))
        };
        // Refused: a port that was just free.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        assert_eq!(
            get(format!("http://127.0.0.1:{port}/")),
            Err(TransportKind::Connect)
        );
        // Not HTTP, a hang, a close without an answer: one connection each.
        let serve = |reply: &'static [u8], hold: bool| {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().expect("addr").port();
            let t = std::thread::spawn(move || {
                if let Ok((mut s, _)) = l.accept() {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(reply);
                    if hold {
                        std::thread::sleep(std::time::Duration::from_millis(800));
                    }
                }
            });
            (format!("http://127.0.0.1:{port}/"), t)
        };
        for (reply, hold, kind) in [
            (
                &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
                false,
                TransportKind::Protocol,
            ),
            (&b""[..], true, TransportKind::Timeout),
            (&b""[..], false, TransportKind::Reset),
        ] {
            let (url, t) = serve(reply, hold);
            assert_eq!(get(url), Err(kind), "reply {reply:?}, hold {hold}");
            let _ = t.join();
        }
        assert_eq!(get("http://[::1".into()), Err(TransportKind::Url));
    }

    #[test]
    fn which_kinds_mean_the_request_was_sent() {
        let unsent: Vec<&str> = TransportKind::ALL
            .iter()
            .filter(|k| !k.request_sent())
            .map(|k| k.as_str())
            .collect();
        assert_eq!(unsent, ["connect", "dns", "tls", "url"]);
        assert_eq!(
            serde_json::to_string(&TransportKind::Protocol).expect("serialize"),
            "\"protocol\""
        );
    }

    #[test]
    fn io_errors_after_sending_are_never_connect() {
        use std::io::{Error, ErrorKind as Io};
        for (io, kind) in [
            (Io::ConnectionReset, TransportKind::Reset),
            (Io::BrokenPipe, TransportKind::Reset),
            (Io::UnexpectedEof, TransportKind::Reset),
            (Io::TimedOut, TransportKind::Timeout),
            (Io::InvalidData, TransportKind::Protocol),
            (Io::PermissionDenied, TransportKind::Other),
        ] {
            let k = after_sending(&Error::from(io));
            assert_eq!(k, kind, "{io:?}");
            assert!(k.request_sent(), "{io:?}");
        }
    }
}

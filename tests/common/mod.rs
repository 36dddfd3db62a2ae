//! A small HTTP/1.1 keep-alive server on 127.0.0.1 for the sampler's tests (std threads only).
//!
//! Routes: `/ok` (200, "ok"), `/status/N` (status N), `/slow/MS` (200 after MS ms),
//! `/big` (200 with a 2 MiB body), `/close` (200 with `Connection: close`), `/drop` (200,
//! then the socket is closed without saying so); anything else is 404.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[path = "../support/ports.rs"]
mod ports;

/// A running server; stops accepting when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, c, r) = (stop.clone(), connections.clone(), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (s, r) = (s.clone(), r.clone());
                thread::spawn(move || serve(stream, &s, &r));
            }
        });
        TestServer {
            addr,
            stop,
            connections,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Returns a 127.0.0.1 port that nothing listens on, below the ephemeral range (so a test
/// server binding port 0 at the same moment cannot be given it).
pub fn closed_port() -> u16 {
    ports::free_port()
}

fn serve(stream: TcpStream, stop: &AtomicBool, requests: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = std::io::BufWriter::new(write_half);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let head = line.starts_with("HEAD ");
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let mut status = 200u16;
        let mut body: Vec<u8> = b"ok".to_vec();
        let mut close = false;
        let mut drop_after = false;
        if let Some(code) = path.strip_prefix("/status/") {
            status = code.parse().unwrap_or(500);
            body = format!("status {status}").into_bytes();
        } else if let Some(ms) = path.strip_prefix("/slow/") {
            let ms: u64 = ms.parse().unwrap_or(1000);
            // Sleep in steps so that a stopped server lets go.
            let mut left = ms;
            while left > 0 && !stop.load(Ordering::SeqCst) {
                let step = left.min(20);
                thread::sleep(Duration::from_millis(step));
                left -= step;
            }
        } else if path == "/big" {
            body = vec![b'x'; 2 * 1024 * 1024];
        } else if path == "/close" {
            close = true;
        } else if path == "/drop" {
            drop_after = true;
        } else if path != "/ok" {
            status = 404;
            body = b"not found".to_vec();
        }
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Other",
        };
        let conn_header = if close { "Connection: close\r\n" } else { "" };
        let header = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{conn_header}\r\n",
            body.len()
        );
        if out.write_all(header.as_bytes()).is_err() {
            return;
        }
        if !head && out.write_all(&body).is_err() {
            return;
        }
        if out.flush().is_err() || close || drop_after {
            return;
        }
    }
}

/// Resident set size of this process in bytes, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages in statm");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

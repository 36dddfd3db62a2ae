//! The quickstart's demo web app: a tiny HTTP/1.1 server on 127.0.0.1, standard library only.
//!
//!     quickstart-app --port 8080 --release 20261123191200 [--broken] [--broken-after 40]
//!                    [--listen 127.0.0.1]
//!
//! `GET /health` answers `{"status":"healthy","release":...}`, `GET /` a small page. With
//! `--broken` (or `QUICKSTART_BROKEN=1`) it works for its first requests (40 by default),
//! so that it passes the health checks and the E2E test, then answers every other request
//! with a 500, as a release with a leak would: only monitoring catches it. `--listen`
//! picks the address (examples/fleet serves on each test host's own address).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct App {
    release: String,
    broken_after: Option<u64>,
    served: AtomicU64,
}

fn main() {
    let mut port = 8080u16;
    let mut listen = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut release = String::from("dev");
    let mut broken = std::env::var("QUICKSTART_BROKEN").is_ok_and(|v| v == "1" || v == "true");
    let mut broken_after = 40u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = value(&mut args, "--port"),
            "--listen" => listen = value(&mut args, "--listen"),
            "--release" => release = value(&mut args, "--release"),
            "--broken" => broken = true,
            "--broken-after" => broken_after = value(&mut args, "--broken-after"),
            other => fail(&format!("unknown argument {other}; use --port N --release NAME [--broken] [--broken-after N] [--listen ADDR]")),
        }
    }
    let listener = TcpListener::bind((listen, port))
        .unwrap_or_else(|e| fail(&format!("cannot listen on {listen}:{port}: {e}")));
    println!(
        "quickstart-app release {release} listening on http://{listen}:{port}{}",
        if broken { " (broken)" } else { "" }
    );
    let app = Arc::new(App {
        release,
        broken_after: broken.then_some(broken_after),
        served: AtomicU64::new(0),
    });
    for stream in listener.incoming().flatten() {
        let app = app.clone();
        std::thread::spawn(move || serve(stream, &app));
    }
}

fn value<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, name: &str) -> T {
    args.next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fail(&format!("{name} needs a valid value")))
}

fn fail(message: &str) -> ! {
    eprintln!("quickstart-app: {message}");
    std::process::exit(2)
}

/// Answers the requests of one keep-alive connection.
fn serve(stream: TcpStream, app: &App) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, kind, text) = respond(app, method, path);
        let mut reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n{}\r\n",
            text.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if method != "HEAD" {
            reply.push_str(&text);
        }
        if out.write_all(reply.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn respond(app: &App, method: &str, path: &str) -> (&'static str, &'static str, String) {
    let n = app.served.fetch_add(1, Ordering::SeqCst) + 1;
    if app
        .broken_after
        .is_some_and(|after| n > after && n % 2 == 0)
    {
        return (
            "500 Internal Server Error",
            "text/plain",
            "simulated failure\n".into(),
        );
    }
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/health") => (
            "200 OK",
            "application/json",
            format!(r#"{{"status":"healthy","release":"{}"}}"#, app.release),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><title>quickstart</title><h1>Hello from release {}</h1>\n",
                app.release
            ),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

//! `deployer demo-server`: a tiny HTTP server on 127.0.0.1 so examples run on any machine
//! without network or accounts. Routes: `/` (hello), `/health` (JSON), `/flaky` (503 for
//! the first `--fail-first` requests, then 200).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::error::{CliError, CmdResult};

/// Arguments of `deployer demo-server`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// How many requests to /flaky fail with 503 before it succeeds.
    #[arg(long, default_value_t = 2)]
    pub fail_first: u64,
    /// The version reported by /health.
    #[arg(long, default_value = "1.0.0")]
    pub release: String,
}

/// Serves until killed.
pub fn serve(args: DemoArgs) -> CmdResult {
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))
        .map_err(CliError::Failed)?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(args.port);
    println!("listening on http://127.0.0.1:{port}");
    let flaky = Arc::new(AtomicU64::new(0));
    let args = Arc::new(args);
    for stream in listener.incoming().flatten() {
        let flaky = flaky.clone();
        let args = args.clone();
        std::thread::spawn(move || handle(stream, &args, &flaky));
    }
    Ok(())
}

fn handle(mut stream: TcpStream, args: &DemoArgs, flaky: &AtomicU64) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers; the demo routes take no body.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/health" => (
            "200 OK",
            format!(
                "{{\"status\":\"healthy\",\"version\":\"{}\"}}",
                args.release
            ),
        ),
        "/flaky" => {
            let n = flaky.fetch_add(1, Ordering::SeqCst);
            if n < args.fail_first {
                (
                    "503 Service Unavailable",
                    format!("{{\"status\":\"starting\",\"attempt\":{}}}", n + 1),
                )
            } else {
                ("200 OK", "{\"status\":\"ready\"}".to_string())
            }
        }
        "/" => (
            "200 OK",
            "{\"hello\":\"from the deployer demo server\"}".to_string(),
        ),
        _ => ("404 Not Found", "{\"error\":\"not found\"}".to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

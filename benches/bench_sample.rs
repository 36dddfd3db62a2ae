//! Measures `sample()` against a local URL: requests/s and the CPU time it took.
//!
//! cargo bench --bench bench_sample -- URL [CONCURRENCY] [SECONDS] [--rate R] [--threads N] [--reqwest]
//!
//! `--reqwest` runs a plain reqwest closed loop instead of `sample()`, for comparison.
//! Only send this to a server on 127.0.0.1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deployer::sampler::{sample, Mode, SampleSpec, Sampler};
use tokio_util::sync::CancellationToken;

fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF is valid and `u` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    (tv(u.ru_utime), tv(u.ru_stime))
}

struct Args {
    url: String,
    concurrency: usize,
    seconds: f64,
    rate: Option<f64>,
    threads: Option<usize>,
    reqwest: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut rate = None;
    let mut threads = None;
    let mut reqwest = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rate" => {
                let v = it.next().ok_or("--rate needs a value")?;
                rate = Some(v.parse::<f64>().map_err(|e| format!("--rate {v}: {e}"))?);
            }
            "--threads" => {
                let v = it.next().ok_or("--threads needs a value")?;
                threads = Some(
                    v.parse::<usize>()
                        .map_err(|e| format!("--threads {v}: {e}"))?,
                );
            }
            "--reqwest" => reqwest = true,
            // `cargo bench` passes this to benchmarks without a harness.
            "--bench" => {}
            _ => positional.push(a),
        }
    }
    let url = positional.first().cloned().ok_or(
        "usage: bench_sample URL [CONCURRENCY] [SECONDS] [--rate R] [--threads N] [--reqwest]",
    )?;
    let concurrency = match positional.get(1) {
        Some(c) => c.parse().map_err(|e| format!("concurrency {c}: {e}"))?,
        None => 1,
    };
    let seconds = match positional.get(2) {
        Some(s) => s.parse().map_err(|e| format!("seconds {s}: {e}"))?,
        None => 5.0,
    };
    Ok(Args {
        url,
        concurrency,
        seconds,
        rate,
        threads,
        reqwest,
    })
}

async fn reqwest_loop(url: &str, concurrency: usize, dur: Duration) -> u64 {
    let client = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.to_string();
        let done = done.clone();
        set.spawn(async move {
            while Instant::now() < deadline {
                if let Ok(r) = client.get(&url).send().await {
                    let _ = r.bytes().await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while set.join_next().await.is_some() {}
    done.load(Ordering::Relaxed)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut builder = match args.threads {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async {
        let dur = Duration::from_secs_f64(args.seconds);
        let (u0, s0) = cpu_time();
        let t0 = Instant::now();
        let (count, detail) = if args.reqwest {
            let n = reqwest_loop(&args.url, args.concurrency, dur).await;
            (n, "plain reqwest loop".to_string())
        } else {
            let sampler = Sampler::new();
            let mut spec = SampleSpec::new(args.url.clone(), Mode::Duration(dur));
            spec.concurrency = args.concurrency;
            spec.rate = args.rate;
            match sample(&sampler, &spec, &CancellationToken::new()).await {
                Ok(r) => {
                    let s = &r.stats;
                    (
                        s.count,
                        format!(
                            "ok {} errors {} p50 {:.3} ms p99 {:.3} ms max {:.3} ms achieved {:.0}/s{}",
                            s.ok,
                            s.errors,
                            s.p50_ms.unwrap_or(f64::NAN),
                            s.p99_ms.unwrap_or(f64::NAN),
                            s.max_ms.unwrap_or(f64::NAN),
                            r.achieved_rate,
                            r.rate_shortfall
                                .map(|w| format!(" shortfall: {w}"))
                                .unwrap_or_default()
                        ),
                    )
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(2);
                }
            }
        };
        let wall = t0.elapsed().as_secs_f64();
        let (u1, s1) = cpu_time();
        let user = (u1 - u0).as_secs_f64();
        let sys = (s1 - s0).as_secs_f64();
        let rps = count as f64 / wall;
        println!(
            "c={} {:.1}s: {} requests, {:.0} req/s; cpu user {:.2}s sys {:.2}s ({:.1} µs cpu/request); {}",
            args.concurrency,
            wall,
            count,
            rps,
            user,
            sys,
            if count > 0 { (user + sys) * 1e6 / count as f64 } else { 0.0 },
            detail
        );
    });
}

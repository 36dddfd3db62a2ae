//! The sampler against a real HTTP/1.1 keep-alive server on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::{closed_port, TestServer};
use deployer::sampler::{sample, Mode, SampleError, SampleSpec, Sampler};
use tokio_util::sync::CancellationToken;

fn spec(url: String, mode: Mode, concurrency: usize) -> SampleSpec {
    let mut s = SampleSpec::new(url, mode);
    s.concurrency = concurrency;
    s.timeout = Duration::from_secs(5);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_target_counts_and_reuses_connections() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    let cancel = CancellationToken::new();
    let s = spec(server.url("/ok"), Mode::Requests(200), 4);
    let r = sample(&sampler, &s, &cancel).await.expect("valid spec");
    assert!(!r.cancelled);
    assert_eq!(r.stats.count, 200);
    assert_eq!(r.stats.ok, 200);
    assert_eq!(r.stats.errors, 0);
    assert_eq!(r.stats.status_counts.get("200"), Some(&200));
    assert_eq!(r.stats.error_rate, 0.0);
    let (p50, p99, max) = (
        r.stats.p50_ms.expect("p50 of 200 successful responses"),
        r.stats.p99_ms.expect("p99"),
        r.stats.max_ms.expect("max"),
    );
    assert!(p50 > 0.0 && p50 <= p99);
    assert!(p99 <= max);
    assert!(r.stats.rps > 0.0);
    assert_eq!(r.target_rate, None);
    assert_eq!(r.achieved_rate, r.stats.rps);
    assert_eq!(server.requests(), 200);
    assert_eq!(
        server.connections(),
        4,
        "one keep-alive connection per worker"
    );
    assert_eq!(sampler.idle_connections(), 4);

    // A second call reuses the same connections.
    let r = sample(&sampler, &s, &cancel).await.expect("valid spec");
    assert_eq!(r.stats.ok, 200);
    assert_eq!(server.connections(), 4, "connections reused across calls");
    assert_eq!(server.requests(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_count_as_errors_but_not_transport_errors() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    let s = spec(server.url("/status/503"), Mode::Requests(20), 2);
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert_eq!(r.stats.count, 20);
    assert_eq!(r.stats.ok, 0);
    assert_eq!(r.stats.errors, 0);
    assert_eq!(r.stats.error_rate, 1.0);
    assert_eq!(r.stats.rate_5xx, 1.0);
    assert_eq!(r.stats.status_counts.get("503"), Some(&20));
    assert_eq!(
        r.stats.p95_ms, None,
        "5xx responses are not successful: no latency"
    );

    let s = spec(server.url("/missing"), Mode::Requests(10), 1);
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert_eq!(r.stats.status_counts.get("404"), Some(&10));
    assert_eq!(r.stats.error_rate, 1.0);
    assert_eq!(r.stats.rate_5xx, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_counts_connect_errors() {
    let port = closed_port();
    let sampler = Sampler::new();
    let s = spec(format!("http://127.0.0.1:{port}/ok"), Mode::Requests(10), 2);
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("a target that is down is not an Err");
    assert_eq!(r.stats.count, 10);
    assert_eq!(r.stats.errors, 10);
    assert_eq!(r.stats.error_kinds["connect"], 10);
    assert_eq!(r.stats.error_rate, 1.0);
    assert_eq!(
        r.stats.p99_ms, None,
        "no successful response: latency unknown, not 0"
    );
    assert!(r.stats.status_counts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_responses_count_as_timeouts() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    let mut s = spec(server.url("/slow/2000"), Mode::Requests(3), 3);
    s.timeout = Duration::from_millis(150);
    let t = Instant::now();
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.stats.count, 3);
    assert_eq!(r.stats.error_kinds["timeout"], 3);
    assert_eq!(r.stats.ok, 0);

    // The timed-out connections are not reused: the next sample is healthy.
    let s = spec(server.url("/ok"), Mode::Requests(5), 1);
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert_eq!(r.stats.ok, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_1_mib_are_cut_and_count_as_ok() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    let s = spec(server.url("/big"), Mode::Requests(3), 1);
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert_eq!(r.stats.ok, 3);
    assert_eq!(r.stats.errors, 0);
    // A cut body leaves its connection unusable, so each request had its own.
    assert_eq!(server.connections(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_server_are_replaced_without_errors() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    for path in ["/close", "/drop"] {
        let s = spec(server.url(path), Mode::Requests(20), 2);
        let r = sample(&sampler, &s, &CancellationToken::new())
            .await
            .expect("valid spec");
        assert_eq!(r.stats.ok, 20, "{path}: {:?}", r.stats.error_kinds);
        assert_eq!(r.stats.errors, 0, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_roughly_honours_the_rate() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    let mut s = spec(server.url("/ok"), Mode::Duration(Duration::from_secs(1)), 1);
    s.rate = Some(200.0);
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert_eq!(r.target_rate, Some(200.0));
    assert!(
        (150..=210).contains(&r.stats.count),
        "count {}",
        r.stats.count
    );
    assert!(
        r.achieved_rate > 150.0 && r.achieved_rate < 220.0,
        "{}",
        r.achieved_rate
    );
    assert_eq!(r.stats.ok, r.stats.count);

    // A request budget in open loop: exactly that many, spread over ~count/rate seconds.
    s.mode = Mode::Requests(50);
    let t = Instant::now();
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert_eq!(r.stats.count, 50);
    assert!(
        t.elapsed() >= Duration::from_millis(240),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_rate_does_not_drop_with_slow_responses() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    // Closed loop with one worker would manage about 3 requests in this second.
    let mut s = spec(
        server.url("/slow/300"),
        Mode::Duration(Duration::from_secs(1)),
        1,
    );
    s.rate = Some(50.0);
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert!(r.stats.count >= 40, "count {}", r.stats.count);
    assert!(r.achieved_rate > 40.0, "{}", r.achieved_rate);
    let p50 = r.stats.p50_ms.expect("successful responses");
    assert!(p50 >= 250.0, "p50 {p50}");
    assert!(server.connections() >= 10, "{}", server.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_returns_partial_stats_promptly() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    for rate in [None, Some(100.0)] {
        let mut s = spec(
            server.url("/ok"),
            Mode::Duration(Duration::from_secs(20)),
            4,
        );
        s.rate = rate;
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            c.cancel();
        });
        let t = Instant::now();
        let r = sample(&sampler, &s, &cancel).await.expect("valid spec");
        let took = t.elapsed();
        assert!(r.cancelled, "rate {rate:?}");
        assert!(
            took < Duration::from_millis(400 + 300),
            "rate {rate:?}: {took:?}"
        );
        assert!(r.stats.count > 0, "rate {rate:?}");
        assert_eq!(r.stats.ok, r.stats.count);
    }

    // Requests stuck on a slow target are dropped at once, not awaited.
    let s = spec(server.url("/slow/3000"), Mode::Requests(10), 2);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.cancel();
    });
    let t = Instant::now();
    let r = sample(&sampler, &s, &cancel).await.expect("valid spec");
    assert!(r.cancelled);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.stats.count, 0);

    // Cancelled before the start: nothing is sent.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let before = server.requests();
    let r = sample(
        &sampler,
        &spec(server.url("/ok"), Mode::Requests(10), 1),
        &cancel,
    )
    .await
    .expect("valid spec");
    assert!(r.cancelled);
    assert_eq!(r.stats.count, 0);
    assert_eq!(server.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_against_a_plain_server_counts_tls_errors() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    let s = spec(
        format!("https://127.0.0.1:{}/ok", server.addr.port()),
        Mode::Requests(3),
        1,
    );
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert_eq!(r.stats.count, 3);
    assert_eq!(r.stats.error_kinds["tls"], 3, "{:?}", r.stats.error_kinds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_is_an_error() {
    let sampler = Sampler::new();
    let cancel = CancellationToken::new();
    let s = spec("http//nowhere".into(), Mode::Requests(1), 1);
    let e = sample(&sampler, &s, &cancel).await.expect_err("bad url");
    assert!(matches!(e, SampleError::BadUrl { .. }), "{e}");
    let s = spec("http://127.0.0.1:1/".into(), Mode::Requests(0), 1);
    let e = sample(&sampler, &s, &cancel).await.expect_err("zero");
    assert!(matches!(e, SampleError::ZeroRequests), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_reports_the_in_flight_cap_instead_of_hiding_it() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    // 4000/s of 500 ms responses needs 2000 in flight: twice the cap of 1000.
    let mut s = spec(
        server.url("/slow/500"),
        Mode::Duration(Duration::from_millis(600)),
        1,
    );
    s.rate = Some(4000.0);
    let t = Instant::now();
    let r = sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let why = r.rate_shortfall.expect("the shortfall is reported");
    assert!(
        why.contains("the cap of 1000 requests in flight was reached"),
        "{why}"
    );
    assert!(r.achieved_rate < 3000.0, "{}", r.achieved_rate);
    assert!(r.stats.count <= 2000, "{}", r.stats.count);
    assert_eq!(r.stats.ok, r.stats.count);
}

#[test]
fn works_from_a_single_threaded_runtime_without_timers() {
    let server = TestServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sampler = Sampler::new();
        for rate in [None, Some(500.0)] {
            let mut s = spec(server.url("/ok"), Mode::Requests(50), 2);
            s.rate = rate;
            let r = sample(&sampler, &s, &CancellationToken::new())
                .await
                .expect("valid spec");
            assert_eq!(r.stats.ok, 50, "rate {rate:?}");
        }
    });
}

//! The sampler's threads start with the first sample and stop with the last clone (its own
//! test binary, so that no other sampler's threads are counted).

mod common;

use std::time::Duration;

use common::TestServer;
use deployer::sampler::{sample, Mode, SampleSpec, Sampler};
use tokio_util::sync::CancellationToken;

fn sampler_threads() -> usize {
    // An unreadable /proc counts no thread, which fails the first `>= 1` check.
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("deployer-sampl"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_sampler_stops_its_threads() {
    let server = TestServer::start();
    let sampler = Sampler::new();
    assert_eq!(sampler_threads(), 0, "no thread before the first sample");
    let s = SampleSpec::new(server.url("/ok"), Mode::Requests(10));
    sample(&sampler, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    assert!(sampler_threads() >= 1);
    let clone = sampler.clone();
    sample(&clone, &s, &CancellationToken::new())
        .await
        .expect("valid spec");
    drop(sampler);
    assert!(sampler_threads() >= 1, "a clone keeps the threads");
    drop(clone);
    let t = std::time::Instant::now();
    while sampler_threads() > 0 && t.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sampler_threads(), 0);
}

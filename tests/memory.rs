//! The sampler's memory does not grow with the number of requests (its own test binary, so
//! that no other test allocates meanwhile).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{rss_bytes, TestServer};
use deployer::sampler::{sample, Mode, SampleSpec, Sampler};
use tokio_util::sync::CancellationToken;

/// Watches the resident size from a thread, every 10 ms, keeping the highest seen.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                p.fetch_max(rss_bytes(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        PeakRss { peak, stop }
    }

    /// Returns the highest resident size seen since the last call, and starts again.
    fn take(&self) -> u64 {
        self.peak.swap(rss_bytes(), Ordering::SeqCst)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_over_longer_samples() {
    let peak = PeakRss::start();
    let server = TestServer::start();
    let sampler = Sampler::new();
    let cancel = CancellationToken::new();
    let run = |secs: u64, rate: Option<f64>| {
        let mut s = SampleSpec::new(server.url("/ok"), Mode::Duration(Duration::from_secs(secs)));
        s.concurrency = 8;
        s.rate = rate;
        s
    };
    // Closed loop, then open loop: a warm-up (connections, server threads, allocator
    // arenas), a 2 s sample and a 4 s sample, with the peak resident size of each.
    for (label, rate, limit) in [
        ("closed loop", None, 1024 * 1024),
        ("open loop", Some(10_000.0), 4 * 1024 * 1024),
    ] {
        sample(&sampler, &run(1, rate), &cancel)
            .await
            .expect("valid spec");
        peak.take();
        let r2 = sample(&sampler, &run(2, rate), &cancel)
            .await
            .expect("valid spec");
        let after_2s = peak.take();
        let r4 = sample(&sampler, &run(4, rate), &cancel)
            .await
            .expect("valid spec");
        let after_4s = peak.take();
        eprintln!(
            "{label} 2s: {} requests, peak rss {} KiB; 4s: {} requests, peak rss {} KiB",
            r2.stats.count,
            after_2s / 1024,
            r4.stats.count,
            after_4s / 1024
        );
        assert_eq!(r4.stats.errors, 0, "{label}");
        let extra_requests = r4.stats.count.saturating_sub(r2.stats.count);
        assert!(
            extra_requests > 5_000,
            "{label}: too few requests to tell: {} then {}",
            r2.stats.count,
            r4.stats.count
        );
        // Keeping as little as a task or a sample per request would add megabytes.
        let growth = after_4s.saturating_sub(after_2s);
        assert!(
            growth < limit,
            "{label}: peak rss grew by {growth} bytes for {extra_requests} more requests"
        );
    }
}

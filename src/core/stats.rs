//! Latency histograms and the summary of one metric sample (counts, rates, percentiles), in flat memory.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::core::transport::{TransportKind, TRANSPORT_KINDS};

/// The smallest latency the histogram tells apart, in microseconds.
pub const LOWEST_US: u64 = 1;
/// The largest latency the histogram records, in microseconds (120 s); larger values are
/// clamped to it and counted in [`LatencyHistogram::clamped`].
pub const HIGHEST_US: u64 = 120_000_000;
/// Significant decimal digits kept by the histogram (relative error at most 0.1 %).
pub const SIGNIFICANT_FIGURES: u8 = 3;

/// An error building statistics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StatsError {
    /// The histogram could not be created (only possible if the constant bounds were edited).
    #[error(
        "cannot create the latency histogram ({low} µs .. {high} µs, {sigfig} significant figures): {reason}; \
         the bounds in core/stats.rs must satisfy 1 <= low, 2 * low <= high and sigfig <= 5"
    )]
    Histogram {
        /// The lowest discernible value asked for.
        low: u64,
        /// The highest trackable value asked for.
        high: u64,
        /// The significant figures asked for.
        sigfig: u8,
        /// What hdrhistogram said.
        reason: String,
    },
}

/// A latency histogram in microseconds (1 µs .. 120 s, 3 significant figures), with exact
/// min, max and mean kept beside it. Its memory is fixed (about 150 KiB) whatever the count.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    min_us: u64,
    max_us: u64,
    sum_us: u128,
    clamped: u64,
}

impl LatencyHistogram {
    /// Returns an empty histogram.
    pub fn new() -> Result<LatencyHistogram, StatsError> {
        let hist = Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES).map_err(
            |e| StatsError::Histogram {
                low: LOWEST_US,
                high: HIGHEST_US,
                sigfig: SIGNIFICANT_FIGURES,
                reason: format!("{e:?}"),
            },
        )?;
        Ok(LatencyHistogram {
            hist,
            min_us: u64::MAX,
            max_us: 0,
            sum_us: 0,
            clamped: 0,
        })
    }

    /// Records one latency; a value above 120 s is recorded as 120 s and counted as clamped.
    pub fn record(&mut self, latency: Duration) {
        self.record_us(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one latency given in microseconds (see [`LatencyHistogram::record`]).
    pub fn record_us(&mut self, us: u64) {
        let v = if us > HIGHEST_US {
            self.clamped += 1;
            HIGHEST_US
        } else {
            us
        };
        self.hist.saturating_record(v);
        self.min_us = self.min_us.min(v);
        self.max_us = self.max_us.max(v);
        self.sum_us += u128::from(v);
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.count() == 0 {
            return;
        }
        if self.hist.add(&other.hist).is_err() {
            // Both sides have the same bounds, so this cannot fail; if it ever does, copy
            // value by value, saturating instead of losing counts.
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us += other.sum_us;
        self.clamped += other.clamped;
    }

    /// Returns how many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Returns how many recorded latencies were above 120 s and clamped to it.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// Returns the smallest latency recorded (exact), or zero when empty.
    pub fn min(&self) -> Duration {
        if self.count() == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.min_us)
        }
    }

    /// Returns the largest latency recorded (exact, after clamping), or zero when empty.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// Returns the exact mean latency, or zero when empty.
    pub fn mean(&self) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        let mean_ns = self.sum_us * 1000 / u128::from(n);
        Duration::from_nanos(u64::try_from(mean_ns).unwrap_or(u64::MAX))
    }

    /// Returns the latency at percentile `p` (0 ..= 100; out-of-range values are clamped,
    /// NaN reads as 0): the highest value equivalent to the one below which `p` % of the
    /// values fall, within 0.1 % and never outside the exact min .. max. Zero when empty.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.count() == 0 {
            return Duration::ZERO;
        }
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
        let us = self
            .hist
            .value_at_percentile(p)
            .clamp(self.min_us, self.max_us);
        Duration::from_micros(us)
    }
}

/// Collects the outcomes of requests: one histogram and a handful of counters, so its
/// memory stays the same however many requests it sees.
#[derive(Debug, Clone)]
pub struct StatsCollector {
    latency: LatencyHistogram,
    responses: u64,
    ok: u64,
    count_5xx: u64,
    errors: [u64; TRANSPORT_KINDS],
    status: BTreeMap<u16, u64>,
}

impl StatsCollector {
    /// Returns an empty collector.
    pub fn new() -> Result<StatsCollector, StatsError> {
        Ok(StatsCollector {
            latency: LatencyHistogram::new()?,
            responses: 0,
            ok: 0,
            count_5xx: 0,
            errors: [0; TRANSPORT_KINDS],
            status: BTreeMap::new(),
        })
    }

    /// Records a response that arrived with `status` after `latency`. Only successful
    /// responses (status < 400) enter the latency histogram: a fast 503 must not make a
    /// slow service look fast.
    pub fn record_response(&mut self, status: u16, latency: Duration) {
        self.responses += 1;
        if status < 400 {
            self.ok += 1;
            self.latency.record(latency);
        }
        if (500..600).contains(&status) {
            self.count_5xx += 1;
        }
        *self.status.entry(status).or_insert(0) += 1;
    }

    /// Records a request that got no response.
    pub fn record_error(&mut self, kind: TransportKind) {
        self.errors[kind.index()] += 1;
    }

    /// Adds everything `other` collected.
    pub fn merge(&mut self, other: &StatsCollector) {
        self.latency.merge(&other.latency);
        self.responses += other.responses;
        self.ok += other.ok;
        self.count_5xx += other.count_5xx;
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
        for (status, n) in &other.status {
            *self.status.entry(*status).or_insert(0) += n;
        }
    }

    /// Returns how many requests were recorded (responses and transport errors).
    pub fn count(&self) -> u64 {
        self.responses + self.errors.iter().sum::<u64>()
    }

    /// Summarises what was collected over `elapsed` (the wall time of the sample).
    pub fn finish(&self, elapsed: Duration) -> SampleStats {
        let count = self.count();
        let errors: u64 = self.errors.iter().sum();
        let ratio = |n: u64| {
            if count == 0 {
                0.0
            } else {
                n as f64 / count as f64
            }
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Latency is known only from successful responses; with none it is unknown, not 0.
        let known = self.latency.count() > 0;
        let lat = |d: Duration| known.then(|| ms(d));
        let secs = elapsed.as_secs_f64();
        SampleStats {
            count,
            ok: self.ok,
            errors,
            error_kinds: TransportKind::ALL
                .iter()
                .map(|k| (k.as_str().to_string(), self.errors[k.index()]))
                .collect(),
            status_counts: self
                .status
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            error_rate: ratio(count - self.ok),
            rate_5xx: ratio(self.count_5xx),
            min_ms: lat(self.latency.min()),
            mean_ms: lat(self.latency.mean()),
            p50_ms: lat(self.latency.percentile(50.0)),
            p90_ms: lat(self.latency.percentile(90.0)),
            p95_ms: lat(self.latency.percentile(95.0)),
            p99_ms: lat(self.latency.percentile(99.0)),
            max_ms: lat(self.latency.max()),
            latency_clamped: self.latency.clamped(),
            rps: if secs > 0.0 { count as f64 / secs } else { 0.0 },
            duration_ms: ms(elapsed),
        }
    }
}

/// The summary of one sample.
///
/// Definitions:
/// - `count`: requests that finished, with a response or a transport error (requests cut
///   short by cancellation are not counted);
/// - `ok`: responses with status < 400;
/// - `errors`: transport errors (no response), split by kind in `error_kinds`, which always
///   lists every [`TransportKind`] (`timeout`, `connect`, `dns`, `tls`, `reset`, `protocol`,
///   `body`, `url`, `other`), zeros included;
/// - `status_counts`: responses per status code, keyed by the code as text (`"200"`);
/// - `error_rate` = (count − ok) / count: transport errors and 4xx/5xx responses all count;
/// - `rate_5xx` = responses with status 500..=599 / count;
/// - `min_ms` .. `max_ms`: latency of the *successful* responses (status < 400), in
///   milliseconds; percentiles are within 0.1 %, min, mean and max are exact. With no
///   successful response they are `None` (`null` in JSON, `()` in scripts): unknown, never 0,
///   so that `p95_ms < 500` is false for a service that does not answer;
/// - `latency_clamped`: successful responses slower than 120 s, recorded as 120 s;
/// - `rps` = count / duration; `duration_ms`: wall time of the sample.
///
/// With `count` 0 every rate and `rps` is 0 and every latency is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleStats {
    /// Requests that finished (responses + transport errors).
    pub count: u64,
    /// Responses with status < 400.
    pub ok: u64,
    /// Transport errors (requests that got no response).
    pub errors: u64,
    /// Transport errors by kind; every kind is present.
    pub error_kinds: BTreeMap<String, u64>,
    /// Responses by status code (`"200"` → n).
    pub status_counts: BTreeMap<String, u64>,
    /// (count − ok) / count.
    pub error_rate: f64,
    /// 5xx responses / count.
    pub rate_5xx: f64,
    /// Fastest successful response, ms (`None`: no successful response).
    pub min_ms: Option<f64>,
    /// Mean successful response latency, ms.
    pub mean_ms: Option<f64>,
    /// Median successful response latency, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Slowest successful response, ms.
    pub max_ms: Option<f64>,
    /// Successful responses slower than 120 s (recorded as 120 s).
    pub latency_clamped: u64,
    /// Finished requests per second of wall time.
    pub rps: f64,
    /// Wall time of the sample, ms.
    pub duration_ms: f64,
}

impl SampleStats {
    /// Returns the statistics of a sample that saw nothing.
    pub fn empty() -> SampleStats {
        SampleStats {
            count: 0,
            ok: 0,
            errors: 0,
            error_kinds: TransportKind::ALL
                .iter()
                .map(|k| (k.as_str().to_string(), 0))
                .collect(),
            status_counts: BTreeMap::new(),
            error_rate: 0.0,
            rate_5xx: 0.0,
            min_ms: None,
            mean_ms: None,
            p50_ms: None,
            p90_ms: None,
            p95_ms: None,
            p99_ms: None,
            max_ms: None,
            latency_clamped: 0,
            rps: 0.0,
            duration_ms: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist() -> LatencyHistogram {
        LatencyHistogram::new().expect("constant bounds are valid")
    }

    fn close(actual: f64, expected: f64, rel: f64) {
        assert!(
            (actual - expected).abs() <= expected.abs() * rel,
            "{actual} is not within {rel} of {expected}"
        );
    }

    #[test]
    fn percentiles_of_1_to_1000_ms() {
        let mut h = hist();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.min(), Duration::from_millis(1));
        assert_eq!(h.max(), Duration::from_millis(1000));
        assert_eq!(h.mean(), Duration::from_micros(500_500));
        let ms = |p| h.percentile(p).as_secs_f64() * 1000.0;
        close(ms(50.0), 500.0, 0.001);
        close(ms(90.0), 900.0, 0.001);
        close(ms(95.0), 950.0, 0.001);
        close(ms(99.0), 990.0, 0.001);
        assert_eq!(ms(100.0), 1000.0);
        assert_eq!(ms(0.0), 1.0);
        assert_eq!(h.clamped(), 0);
    }

    #[test]
    fn a_single_value_is_every_percentile() {
        let mut h = hist();
        h.record(Duration::from_micros(12_345));
        for p in [0.0, 50.0, 90.0, 99.0, 100.0] {
            assert_eq!(h.percentile(p), Duration::from_micros(12_345), "p{p}");
        }
        assert_eq!(h.min(), h.max());
        assert_eq!(h.mean(), Duration::from_micros(12_345));
    }

    #[test]
    fn values_above_the_max_are_clamped_and_counted() {
        let mut h = hist();
        h.record(Duration::from_secs(500));
        h.record(Duration::from_secs(1));
        assert_eq!(h.clamped(), 1);
        assert_eq!(h.max(), Duration::from_secs(120));
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn merging_two_histograms() {
        let mut a = hist();
        let mut b = hist();
        for ms in 1..=500u64 {
            a.record(Duration::from_millis(ms));
        }
        for ms in 501..=1000u64 {
            b.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_secs(200));
        a.merge(&b);
        assert_eq!(a.count(), 1001);
        assert_eq!(a.min(), Duration::from_millis(1));
        assert_eq!(a.max(), Duration::from_secs(120));
        assert_eq!(a.clamped(), 1);
        close(a.percentile(50.0).as_secs_f64() * 1000.0, 501.0, 0.001);
        // Merging an empty histogram changes nothing.
        let before = a.percentile(90.0);
        a.merge(&hist());
        assert_eq!(a.percentile(90.0), before);
        assert_eq!(a.count(), 1001);
    }

    #[test]
    fn empty_stats_are_zero_safe() {
        let c = StatsCollector::new().expect("collector");
        let s = c.finish(Duration::ZERO);
        assert_eq!(s, SampleStats::empty());
        assert_eq!(s.error_kinds.len(), TRANSPORT_KINDS);
        assert_eq!(s.p95_ms, None);
    }

    #[test]
    fn all_errors() {
        let mut c = StatsCollector::new().expect("collector");
        for _ in 0..3 {
            c.record_error(TransportKind::Connect);
        }
        c.record_error(TransportKind::Timeout);
        let s = c.finish(Duration::from_secs(2));
        assert_eq!(s.count, 4);
        assert_eq!(s.ok, 0);
        assert_eq!(s.errors, 4);
        assert_eq!(s.error_rate, 1.0);
        assert_eq!(s.rate_5xx, 0.0);
        assert_eq!(s.error_kinds["connect"], 3);
        assert_eq!(s.error_kinds["timeout"], 1);
        assert_eq!(s.error_kinds["dns"], 0);
        // No successful response: latency is unknown, not 0.
        assert_eq!(s.p99_ms, None);
        assert_eq!(s.max_ms, None);
        let json = serde_json::to_value(&s).expect("serialize");
        assert!(json["p95_ms"].is_null(), "{json}");
        assert_eq!(s.rps, 2.0);
        assert!(s.status_counts.is_empty());
    }

    #[test]
    fn rates_count_4xx_5xx_and_transport_errors() {
        let mut c = StatsCollector::new().expect("collector");
        for _ in 0..6 {
            c.record_response(200, Duration::from_millis(10));
        }
        c.record_response(301, Duration::from_millis(10));
        c.record_response(404, Duration::from_millis(20));
        c.record_response(503, Duration::from_millis(30));
        c.record_error(TransportKind::Timeout);
        let mut other = StatsCollector::new().expect("collector");
        other.record_response(200, Duration::from_millis(40));
        c.merge(&other);
        let s = c.finish(Duration::from_millis(500));
        assert_eq!(s.count, 11);
        assert_eq!(s.ok, 8);
        assert_eq!(s.errors, 1);
        assert!((s.error_rate - 3.0 / 11.0).abs() < 1e-12);
        assert!((s.rate_5xx - 1.0 / 11.0).abs() < 1e-12);
        assert_eq!(s.status_counts["200"], 7);
        assert_eq!(s.status_counts["404"], 1);
        // Latency is over the 8 successful responses only (the 404 and 503 are left out).
        assert_eq!(s.max_ms, Some(40.0));
        assert_eq!(s.min_ms, Some(10.0));
        assert_eq!(s.rps, 22.0);
        assert_eq!(s.duration_ms, 500.0);
        let json = serde_json::to_value(&s).expect("serialize");
        assert_eq!(json["status_counts"]["503"], 1);
        assert_eq!(json["error_kinds"]["timeout"], 1);
    }

    #[test]
    fn error_responses_do_not_enter_the_latency() {
        let mut c = StatsCollector::new().expect("collector");
        for _ in 0..10 {
            c.record_response(503, Duration::from_millis(1));
        }
        let s = c.finish(Duration::from_secs(1));
        assert_eq!(s.p50_ms, None, "only 5xx: latency unknown");
        c.record_response(200, Duration::from_millis(900));
        let s = c.finish(Duration::from_secs(1));
        assert_eq!(s.p50_ms, Some(900.0));
        assert_eq!(s.min_ms, Some(900.0));
    }
}

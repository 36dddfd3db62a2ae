//! Metric limits (`p95_ms = 1000`, `error_rate = 0.05`, ...) and the breaches of a sample.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::stats::SampleStats;

/// The `error_rate` a monitor treats as critical when its `critical` limits name none:
/// more than 5 % of the requests failed (no response, 4xx or 5xx).
pub const IMPLICIT_CRITICAL_ERROR_RATE: f64 = 0.05;

/// A metric a threshold can be set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Median latency in ms; breached when above the limit.
    #[serde(rename = "p50_ms")]
    P50Ms,
    /// 95th percentile latency in ms; breached when above the limit.
    #[serde(rename = "p95_ms")]
    P95Ms,
    /// 99th percentile latency in ms; breached when above the limit.
    #[serde(rename = "p99_ms")]
    P99Ms,
    /// Share of requests without a status < 400 (0..1); breached when above the limit.
    #[serde(rename = "error_rate")]
    ErrorRate,
    /// Share of requests answered 5xx (0..1); breached when above the limit.
    #[serde(rename = "rate_5xx")]
    Rate5xx,
    /// Successful responses (status < 400) per second; breached when below the limit. A
    /// target that refuses connections fast has a high request rate but none of it counts.
    #[serde(rename = "min_rps")]
    MinRps,
}

impl Metric {
    /// Every metric, in the order limits and breaches are listed.
    pub const ALL: [Metric; 6] = [
        Metric::P50Ms,
        Metric::P95Ms,
        Metric::P99Ms,
        Metric::ErrorRate,
        Metric::Rate5xx,
        Metric::MinRps,
    ];

    /// Returns the metric's name as written in scripts (`p95_ms`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50Ms => "p50_ms",
            Metric::P95Ms => "p95_ms",
            Metric::P99Ms => "p99_ms",
            Metric::ErrorRate => "error_rate",
            Metric::Rate5xx => "rate_5xx",
            Metric::MinRps => "min_rps",
        }
    }

    /// Returns the metric with this exact name.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Returns true when the limit is a floor (`min_rps`), false when it is a ceiling.
    pub fn is_floor(self) -> bool {
        matches!(self, Metric::MinRps)
    }

    /// Returns true for the latency metrics (`p50_ms`, `p95_ms`, `p99_ms`).
    pub fn is_latency(self) -> bool {
        matches!(self, Metric::P50Ms | Metric::P95Ms | Metric::P99Ms)
    }

    /// Returns true for the rates (`error_rate`, `rate_5xx`), fractions 0..1 shown as %.
    pub fn is_rate(self) -> bool {
        matches!(self, Metric::ErrorRate | Metric::Rate5xx)
    }

    /// Returns the metric's value in `stats`; `None` for a latency with no successful
    /// response to measure it from.
    pub fn value(self, stats: &SampleStats) -> Option<f64> {
        match self {
            Metric::P50Ms => stats.p50_ms,
            Metric::P95Ms => stats.p95_ms,
            Metric::P99Ms => stats.p99_ms,
            Metric::ErrorRate => Some(stats.error_rate),
            Metric::Rate5xx => Some(stats.rate_5xx),
            Metric::MinRps => Some(if stats.count == 0 {
                0.0
            } else {
                stats.rps * stats.ok.min(stats.count) as f64 / stats.count as f64
            }),
        }
    }

    /// Returns true when `value` breaks `limit` (above a ceiling, below a floor). An unknown
    /// value (`None`, or NaN) breaks every limit: a gate fails closed.
    pub fn is_breached(self, value: Option<f64>, limit: f64) -> bool {
        match value {
            None => true,
            Some(v) if v.is_nan() => true,
            Some(v) if self.is_floor() => v < limit,
            Some(v) => v > limit,
        }
    }

    /// Formats a value of this metric with its unit: `1203.4 ms`, `20.0 %`, `8 req/s`,
    /// and `unknown (no successful response)` for a missing latency.
    pub fn format_value(self, value: Option<f64>) -> String {
        match value {
            None => "unknown (no successful response)".to_string(),
            Some(v) if self.is_rate() => format_percent(v),
            Some(v) if self.is_latency() => format!("{} ms", format_number(v)),
            Some(v) => format!("{} req/s", format_number(v)),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn known_names() -> String {
    Metric::ALL.map(Metric::name).join(", ")
}

/// A threshold that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// The name is not one of the known metrics.
    #[error(
        "unknown threshold metric \"{name}\"{}; known metrics: {}",
        .suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default(),
        known_names()
    )]
    UnknownMetric {
        /// The name given.
        name: String,
        /// The known name closest to it, when it looks like a typo.
        suggestion: Option<&'static str>,
    },
    /// The limit is below zero.
    #[error("threshold {metric} = {limit} is negative: limits are latencies in ms, rates in 0..1 or requests/s, all >= 0")]
    Negative {
        /// The metric.
        metric: Metric,
        /// The limit given.
        limit: f64,
    },
    /// A rate limit above 1 (rates are fractions: 0.05 is 5 %).
    #[error("threshold {metric} = {limit} is above 1: rates are fractions of the requests, so write 5 % as {}", format_number(.limit / 100.0))]
    RateAboveOne {
        /// The metric.
        metric: Metric,
        /// The limit given.
        limit: f64,
    },
    /// The limit is NaN or infinite.
    #[error("threshold {metric} = {limit} is not a finite number: give a plain number such as 1000 or 0.05")]
    NotFinite {
        /// The metric.
        metric: Metric,
        /// The limit given.
        limit: f64,
    },
    /// The same metric was given twice.
    #[error("threshold {metric} is given twice ({first} and {second}): keep one of them")]
    Duplicate {
        /// The metric.
        metric: Metric,
        /// The first limit.
        first: f64,
        /// The second limit.
        second: f64,
    },
}

/// One limit on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// The metric limited.
    pub metric: Metric,
    /// The limit (a ceiling, or a floor for `min_rps`).
    pub limit: f64,
}

/// A set of limits, at most one per metric, kept in [`Metric::ALL`] order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    limits: Vec<Limit>,
}

impl Thresholds {
    /// Parses `name → limit` pairs, such as `[("p95_ms", 1000.0), ("error_rate", 0.05)]`.
    pub fn from_pairs<I, K>(pairs: I) -> Result<Thresholds, ThresholdError>
    where
        I: IntoIterator<Item = (K, f64)>,
        K: AsRef<str>,
    {
        let mut limits: Vec<Limit> = Vec::new();
        for (name, limit) in pairs {
            let name = name.as_ref();
            let metric = Metric::from_name(name).ok_or_else(|| ThresholdError::UnknownMetric {
                name: name.to_string(),
                suggestion: nearest(name),
            })?;
            if !limit.is_finite() {
                return Err(ThresholdError::NotFinite { metric, limit });
            }
            if limit < 0.0 {
                return Err(ThresholdError::Negative { metric, limit });
            }
            if metric.is_rate() && limit > 1.0 {
                return Err(ThresholdError::RateAboveOne { metric, limit });
            }
            if let Some(prev) = limits.iter().find(|l| l.metric == metric) {
                return Err(ThresholdError::Duplicate {
                    metric,
                    first: prev.limit,
                    second: limit,
                });
            }
            limits.push(Limit { metric, limit });
        }
        limits.sort_by_key(|l| l.metric);
        Ok(Thresholds { limits })
    }

    #[cfg(test)]
    /// Returns the limits, in [`Metric::ALL`] order.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// Returns the limit set on `metric`, if any.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.limits
            .iter()
            .find(|l| l.metric == metric)
            .map(|l| l.limit)
    }

    /// Returns the limits by metric name (`{"p95_ms": 1000.0}`), as report.json keeps them.
    pub fn named(&self) -> std::collections::BTreeMap<&'static str, f64> {
        self.limits
            .iter()
            .map(|l| (l.metric.name(), l.limit))
            .collect()
    }

    /// Returns these limits plus `metric` at `limit` when no limit is set on `metric`.
    pub fn with_default(&self, metric: Metric, limit: f64) -> Thresholds {
        let mut t = self.clone();
        if t.get(metric).is_none() {
            t.limits.push(Limit { metric, limit });
            t.limits.sort_by_key(|l| l.metric);
        }
        t
    }

    /// Returns these critical limits as a monitor applies them: unless they name
    /// `error_rate`, `error_rate` above [`IMPLICIT_CRITICAL_ERROR_RATE`] (5 %), or above
    /// the script's warning `error_rate` when that is higher, is critical too. So a target
    /// that does not answer (every request failed, no 5xx) reaches critical on the same
    /// schedule as a 5xx storm whatever metrics the script chose. `user_warning`: the
    /// warning limits the script gave (`None` for the built-in default).
    pub fn with_failure_limit(&self, user_warning: Option<&Thresholds>) -> Thresholds {
        if self.get(Metric::ErrorRate).is_some() {
            return self.clone();
        }
        let warned = user_warning
            .and_then(|w| w.get(Metric::ErrorRate))
            .unwrap_or(0.0);
        self.with_default(Metric::ErrorRate, warned.max(IMPLICIT_CRITICAL_ERROR_RATE))
    }

    #[cfg(test)]
    /// Returns true when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Returns the limits that `stats` breaks, in [`Metric::ALL`] order.
    pub fn breaches(&self, stats: &SampleStats) -> Vec<Breach> {
        self.limits
            .iter()
            .filter_map(|l| {
                let value = l.metric.value(stats);
                l.metric.is_breached(value, l.limit).then_some(Breach {
                    metric: l.metric,
                    value,
                    limit: l.limit,
                })
            })
            .collect()
    }
}

/// A metric outside its limit. Displays with units, rates as percentages:
/// `p95_ms 1203.4 ms > 1000 ms`, `error_rate 100.0 % > 5.0 %`, `min_rps 8 req/s < 10 req/s`,
/// `p95_ms unknown (no successful response) > 1000 ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// The metric.
    pub metric: Metric,
    /// Its value in the sample; `None` for a latency that could not be measured.
    pub value: Option<f64>,
    /// The limit it broke.
    pub limit: f64,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.metric.is_floor() { "<" } else { ">" };
        write!(
            f,
            "{} {} {op} {}",
            self.metric,
            self.metric.format_value(self.value),
            self.metric.format_value(Some(self.limit))
        )
    }
}

/// Formats a number with at most 4 decimals and no trailing zeros (`1203.4`, `1000`, `0.0532`).
pub fn format_number(v: f64) -> String {
    let s = format!("{v:.4}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Formats a fraction as a percentage with one decimal, more when needed to stay exact
/// (`0.2` → `20.0 %`, `0.0005` → `0.05 %`).
pub fn format_percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    let one = format!("{p:.1}");
    if (one.parse::<f64>().unwrap_or(p) - p).abs() < 1e-9 {
        format!("{one} %")
    } else {
        format!("{} %", format_number(p))
    }
}

/// Returns the known metric name closest to `name` when it is likely a typo.
fn nearest(name: &str) -> Option<&'static str> {
    crate::core::suggest::nearest(name, Metric::ALL.iter().map(|m| m.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> SampleStats {
        let mut s = SampleStats::empty();
        s.count = 100;
        s.ok = 100;
        s.p50_ms = Some(120.0);
        s.p95_ms = Some(1203.4);
        s.p99_ms = Some(2000.0);
        s.error_rate = 0.02;
        s.rate_5xx = 0.01;
        s.rps = 8.0;
        s
    }

    #[test]
    fn parses_and_orders_limits() {
        let t = Thresholds::from_pairs([("min_rps", 5.0), ("p95_ms", 1000.0)]).expect("valid");
        assert_eq!(
            t.limits(),
            &[
                Limit {
                    metric: Metric::P95Ms,
                    limit: 1000.0
                },
                Limit {
                    metric: Metric::MinRps,
                    limit: 5.0
                }
            ]
        );
        assert_eq!(t.get(Metric::P95Ms), Some(1000.0));
        assert_eq!(t.get(Metric::P99Ms), None);
    }

    #[test]
    fn reports_breaches_with_direction() {
        let t = Thresholds::from_pairs([
            ("p50_ms", 200.0),
            ("p95_ms", 1000.0),
            ("p99_ms", 2000.0),
            ("error_rate", 0.05),
            ("rate_5xx", 0.0),
            ("min_rps", 10.0),
        ])
        .expect("valid");
        let b = t.breaches(&stats());
        let shown: Vec<String> = b.iter().map(|b| b.to_string()).collect();
        // p99 equal to its limit is not a breach; rate_5xx 0.01 > 0 is.
        assert_eq!(
            shown,
            [
                "p95_ms 1203.4 ms > 1000 ms",
                "rate_5xx 1.0 % > 0.0 %",
                "min_rps 8 req/s < 10 req/s"
            ]
        );
        assert_eq!(b[0].metric, Metric::P95Ms);
        assert_eq!(b[0].value, Some(1203.4));
        assert_eq!(b[0].limit, 1000.0);
    }

    #[test]
    fn no_limits_no_breaches() {
        let t = Thresholds::from_pairs(Vec::<(String, f64)>::new()).expect("valid");
        assert!(t.is_empty());
        assert!(t.breaches(&stats()).is_empty());
    }

    #[test]
    fn unknown_name_lists_the_known_ones_and_the_nearest() {
        let e = Thresholds::from_pairs([("p95ms", 1.0)]).expect_err("unknown");
        assert_eq!(
            e,
            ThresholdError::UnknownMetric {
                name: "p95ms".into(),
                suggestion: Some("p95_ms")
            }
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("unknown threshold metric \"p95ms\" (did you mean p95_ms?)"),
            "{msg}"
        );
        assert!(
            msg.contains("p50_ms, p95_ms, p99_ms, error_rate, rate_5xx, min_rps"),
            "{msg}"
        );
        let far = Thresholds::from_pairs([("throughput_total", 1.0)]).expect_err("unknown");
        assert!(!far.to_string().contains("did you mean"), "{far}");
        let typo = Thresholds::from_pairs([("eror_rate", 1.0)]).expect_err("unknown");
        assert!(typo.to_string().contains("did you mean error_rate?"));
    }

    #[test]
    fn rejects_negative_non_finite_and_duplicate_limits() {
        let e = Thresholds::from_pairs([("p95_ms", -1.0)]).expect_err("negative");
        assert!(e.to_string().contains("p95_ms = -1 is negative"), "{e}");
        let e = Thresholds::from_pairs([("error_rate", f64::NAN)]).expect_err("nan");
        assert!(matches!(e, ThresholdError::NotFinite { .. }));
        let e = Thresholds::from_pairs([("p95_ms", 1.0), ("p95_ms", 2.0)]).expect_err("duplicate");
        assert!(e.to_string().contains("given twice (1 and 2)"), "{e}");
        assert!(Thresholds::from_pairs([("min_rps", 0.0)]).is_ok());
    }

    #[test]
    fn formats_numbers_compactly() {
        assert_eq!(format_number(1000.0), "1000");
        assert_eq!(format_number(1203.4), "1203.4");
        assert_eq!(format_number(0.05321), "0.0532");
        assert_eq!(format_number(0.0), "0");
    }

    #[test]
    fn unknown_latency_breaches_every_latency_limit() {
        let mut s = SampleStats::empty();
        s.count = 10;
        s.errors = 10;
        s.error_rate = 1.0;
        let t = Thresholds::from_pairs([
            ("p50_ms", 100_000.0),
            ("p99_ms", 1000.0),
            ("rate_5xx", 0.05),
            ("error_rate", 0.05),
        ])
        .expect("valid");
        let shown: Vec<String> = t.breaches(&s).iter().map(|b| b.to_string()).collect();
        assert_eq!(
            shown,
            [
                "p50_ms unknown (no successful response) > 100000 ms",
                "p99_ms unknown (no successful response) > 1000 ms",
                "error_rate 100.0 % > 5.0 %"
            ]
        );
        let json = serde_json::to_value(t.breaches(&s)[0]).expect("serialize");
        assert!(json["value"].is_null(), "{json}");
        // Fast refusals make a high request rate, but no successful response per second.
        s.rps = 3000.0;
        let floor = Thresholds::from_pairs([("min_rps", 1.0)]).expect("valid");
        let shown: Vec<String> = floor.breaches(&s).iter().map(|b| b.to_string()).collect();
        assert_eq!(shown, ["min_rps 0 req/s < 1 req/s"]);
    }

    #[test]
    fn rates_above_one_are_refused_and_defaults_added() {
        let e = Thresholds::from_pairs([("error_rate", 5.0)]).expect_err("5 is not a fraction");
        assert!(
            e.to_string()
                .contains("error_rate = 5 is above 1: rates are fractions of the requests, so write 5 % as 0.05"),
            "{e}"
        );
        assert!(Thresholds::from_pairs([("rate_5xx", 1.0)]).is_ok());
        let t = Thresholds::from_pairs([("p95_ms", 1.0)]).expect("valid");
        let d = t.with_default(Metric::ErrorRate, 0.05);
        assert_eq!(d.get(Metric::ErrorRate), Some(0.05));
        assert_eq!(d.limits()[0].metric, Metric::P95Ms);
        let kept = d.with_default(Metric::ErrorRate, 0.5);
        assert_eq!(kept.get(Metric::ErrorRate), Some(0.05));
        assert_eq!(format_percent(0.0005), "0.05 %");
        assert_eq!(format_percent(0.2), "20.0 %");
    }

    #[test]
    fn critical_limits_always_judge_failures() {
        let t = |pairs: &[(&str, f64)]| Thresholds::from_pairs(pairs.to_vec()).expect("valid");
        // Names no failure metric: error_rate > 5 % is critical.
        let c = t(&[("rate_5xx", 0.05)]).with_failure_limit(None);
        assert_eq!(c.get(Metric::ErrorRate), Some(0.05));
        // A higher warning error_rate raises the implicit critical limit to it.
        let warn = t(&[("error_rate", 0.5)]);
        let c = t(&[("p95_ms", 1000.0)]).with_failure_limit(Some(&warn));
        assert_eq!(c.get(Metric::ErrorRate), Some(0.5));
        // A lower one does not lower it.
        let warn = t(&[("error_rate", 0.01)]);
        let c = t(&[]).with_failure_limit(Some(&warn));
        assert_eq!(c.get(Metric::ErrorRate), Some(0.05));
        // A critical error_rate given by the script is kept as it is.
        let c = t(&[("error_rate", 0.2)]).with_failure_limit(Some(&warn));
        assert_eq!(c.get(Metric::ErrorRate), Some(0.2));
        assert_eq!(c.limits().len(), 1);
    }
}

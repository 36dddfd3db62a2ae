//! Deployment scoring: phase scores 0-5, the 0-100 total, weighted totals and the PASS/WARNING/FAILED verdict.

use std::collections::BTreeSet;
use std::fmt;

/// The usual weights of a weighted score, by part name. They add up to 1.
pub const DEFAULT_WEIGHTS: &[(&str, f64)] = &[
    ("availability", 0.4),
    ("performance", 0.4),
    ("stability", 0.2),
];

/// The highest score one phase can get.
pub const PHASE_MAX: f64 = 5.0;

/// A scoring input that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error(
        "score thresholds are invalid: pass = {pass}, warn = {warn}; they must satisfy \
         0 ≤ warn ≤ pass ≤ 100, so lower warn or raise pass"
    )]
    Thresholds { pass: f64, warn: f64 },
    #[error("score part \"{name}\" is {value}, outside 0-100: give a number from 0 to 100")]
    PartOutOfRange { name: String, value: f64 },
    #[error("score weight \"{name}\" is {value}: weights must be numbers ≥ 0")]
    BadWeight { name: String, value: f64 },
    #[error(
        "score weights [{}] are all zero or missing: give at least one weight above 0",
        .names.join(", ")
    )]
    NoWeight { names: Vec<String> },
    #[error("score {kind} \"{name}\" is given twice: give each name once")]
    Duplicate { kind: &'static str, name: String },
    #[error("{}", mismatch_message(.weights_without_part, .parts_without_weight))]
    Mismatch {
        weights_without_part: Vec<String>,
        parts_without_weight: Vec<String>,
    },
}

fn mismatch_message(weights_without_part: &[String], parts_without_weight: &[String]) -> String {
    let mut msg = String::from("score weights and parts do not match:");
    if !weights_without_part.is_empty() {
        msg.push_str(&format!(
            " weights with no part: [{}];",
            weights_without_part.join(", ")
        ));
    }
    if !parts_without_weight.is_empty() {
        msg.push_str(&format!(
            " parts with no weight: [{}];",
            parts_without_weight.join(", ")
        ));
    }
    msg.push_str(" give exactly one weight for each part");
    msg
}

/// The outcome of a deployment, from its total score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Warning,
    Failed,
}

impl Verdict {
    /// Returns the verdict as written in reports: "PASS", "WARNING" or "FAILED".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warning => "WARNING",
            Verdict::Failed => "FAILED",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lowest total scores (0-100) for PASS and for WARNING.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    pub pass: f64,
    pub warn: f64,
}

impl Default for Thresholds {
    /// Returns PASS from 80 and WARNING from 60.
    fn default() -> Self {
        Thresholds {
            pass: 80.0,
            warn: 60.0,
        }
    }
}

impl Thresholds {
    /// Checks that 0 ≤ warn ≤ pass ≤ 100 (NaN fails).
    pub fn validate(&self) -> Result<(), ScoreError> {
        let ok = (0.0..=100.0).contains(&self.warn)
            && (0.0..=100.0).contains(&self.pass)
            && self.warn <= self.pass;
        if ok {
            Ok(())
        } else {
            Err(ScoreError::Thresholds {
                pass: self.pass,
                warn: self.warn,
            })
        }
    }

    /// Returns the verdict for a total score: PASS from `pass`, WARNING from `warn`, else FAILED (NaN is FAILED).
    pub fn verdict(&self, score: f64) -> Verdict {
        if score >= self.pass {
            Verdict::Pass
        } else if score >= self.warn {
            Verdict::Warning
        } else {
            Verdict::Failed
        }
    }
}

/// Rounds to one decimal.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Scores a phase 0-5 from its checks: 5 × passed / total, one decimal; no checks scores 5.
///
/// `passed` above `total` counts as `total`.
pub fn phase_score(passed: usize, total: usize) -> f64 {
    if total == 0 {
        return PHASE_MAX;
    }
    let passed = passed.min(total);
    round1(PHASE_MAX * passed as f64 / total as f64)
}

/// Totals phase scores to 0-100: sum / (5 × phases) × 100, rounded to the nearest integer.
///
/// Each score is clamped to 0-5 first; a NaN score counts as 0 (a phase with no valid score
/// earns nothing). No phases gives 0.
pub fn total_score(phase_scores: &[f64]) -> f64 {
    if phase_scores.is_empty() {
        return 0.0;
    }
    let sum: f64 = phase_scores
        .iter()
        .map(|s| {
            if s.is_nan() {
                0.0
            } else {
                s.clamp(0.0, PHASE_MAX)
            }
        })
        .sum();
    let pct = sum / (PHASE_MAX * phase_scores.len() as f64) * 100.0;
    // Cut float noise (e.g. 84.49999999) before rounding to the integer.
    ((pct * 1e6).round() / 1e6).round()
}

#[cfg(test)]
/// Returns the built-in weights as owned pairs, ready for [`weighted`].
pub fn default_weights() -> Vec<(String, f64)> {
    DEFAULT_WEIGHTS
        .iter()
        .map(|(n, w)| ((*n).to_string(), *w))
        .collect()
}

/// Combines named parts (each 0-100) with named weights, normalised by the weights' sum.
///
/// Every part needs exactly one weight and every weight exactly one part. Weights must be ≥ 0
/// and not all zero. The result (0-100) is not rounded.
pub fn weighted(parts: &[(String, f64)], weights: &[(String, f64)]) -> Result<f64, ScoreError> {
    let mut part_names = BTreeSet::new();
    for (name, value) in parts {
        if !part_names.insert(name.as_str()) {
            return Err(ScoreError::Duplicate {
                kind: "part",
                name: name.clone(),
            });
        }
        if !(0.0..=100.0).contains(value) {
            return Err(ScoreError::PartOutOfRange {
                name: name.clone(),
                value: *value,
            });
        }
    }
    let mut weight_names = BTreeSet::new();
    for (name, value) in weights {
        if !weight_names.insert(name.as_str()) {
            return Err(ScoreError::Duplicate {
                kind: "weight",
                name: name.clone(),
            });
        }
        if !(value.is_finite() && *value >= 0.0) {
            return Err(ScoreError::BadWeight {
                name: name.clone(),
                value: *value,
            });
        }
    }
    let weights_without_part: Vec<String> = weight_names
        .difference(&part_names)
        .map(|s| (*s).to_string())
        .collect();
    let parts_without_weight: Vec<String> = part_names
        .difference(&weight_names)
        .map(|s| (*s).to_string())
        .collect();
    if !weights_without_part.is_empty() || !parts_without_weight.is_empty() {
        return Err(ScoreError::Mismatch {
            weights_without_part,
            parts_without_weight,
        });
    }
    let weight_sum: f64 = weights.iter().map(|(_, w)| w).sum();
    if weight_sum <= 0.0 || !weight_sum.is_finite() {
        return Err(ScoreError::NoWeight {
            names: weights.iter().map(|(n, _)| n.clone()).collect(),
        });
    }
    let mut total = 0.0;
    for (name, value) in parts {
        // Every part has a weight: checked above.
        let w = weights
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, w)| *w);
        total += value * w;
    }
    Ok((total / weight_sum).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(n, x)| ((*n).to_string(), *x)).collect()
    }

    #[test]
    fn phase_scores() {
        assert_eq!(phase_score(3, 3), 5.0);
        assert_eq!(phase_score(0, 4), 0.0);
        assert_eq!(phase_score(2, 3), 3.3);
        assert_eq!(phase_score(1, 3), 1.7);
        assert_eq!(phase_score(7, 9), 3.9);
        assert_eq!(phase_score(0, 0), 5.0);
        assert_eq!(phase_score(5, 3), 5.0);
    }

    #[test]
    fn five_phases_total_is_sum_times_four() {
        // 5 + 5 + 4.5 + 3.3 + 2.5 = 20.3 → 81.2 → 81
        assert_eq!(total_score(&[5.0, 5.0, 4.5, 3.3, 2.5]), 81.0);
        assert_eq!(total_score(&[5.0; 5]), 100.0);
        assert_eq!(total_score(&[0.0; 5]), 0.0);
        // 21.4 × 4 = 85.6 → 86
        assert_eq!(total_score(&[5.0, 5.0, 5.0, 3.3, 3.1]), 86.0);
    }

    #[test]
    fn total_rounds_half_up_despite_float_noise() {
        // 0.1 / 20 × 100 = 0.5 exactly → 1
        assert_eq!(total_score(&[0.1, 0.0, 0.0, 0.0]), 1.0);
        // 3 phases, 12.7 / 15 × 100 = 84.666… → 85
        assert_eq!(total_score(&[5.0, 4.4, 3.3]), 85.0);
    }

    #[test]
    fn total_clamps_and_rejects_nan() {
        assert_eq!(total_score(&[]), 0.0);
        assert_eq!(total_score(&[9.0, -3.0]), 50.0);
        assert_eq!(total_score(&[f64::NAN, 5.0]), 50.0);
        assert_eq!(total_score(&[f64::INFINITY, 5.0]), 100.0);
    }

    #[test]
    fn verdicts_at_the_edges() {
        let t = Thresholds::default();
        assert_eq!(t.verdict(100.0), Verdict::Pass);
        assert_eq!(t.verdict(80.0), Verdict::Pass);
        assert_eq!(t.verdict(79.0), Verdict::Warning);
        assert_eq!(t.verdict(60.0), Verdict::Warning);
        assert_eq!(t.verdict(59.9), Verdict::Failed);
        assert_eq!(t.verdict(f64::NAN), Verdict::Failed);
    }

    #[test]
    fn verdict_text_and_serde() {
        assert_eq!(Verdict::Pass.to_string(), "PASS");
        assert_eq!(Verdict::Warning.to_string(), "WARNING");
        assert_eq!(Verdict::Failed.to_string(), "FAILED");
        assert_eq!(
            serde_json::to_string(&Verdict::Warning).expect("serialize"),
            "\"WARNING\""
        );
        let v: Verdict = serde_json::from_str("\"FAILED\"").expect("deserialize");
        assert_eq!(v, Verdict::Failed);
        assert!(serde_json::from_str::<Verdict>("\"pass\"").is_err());
    }

    #[test]
    fn thresholds_validate() {
        assert!(Thresholds::default().validate().is_ok());
        assert!(Thresholds {
            pass: 70.0,
            warn: 70.0
        }
        .validate()
        .is_ok());
        let err = Thresholds {
            pass: 50.0,
            warn: 60.0,
        }
        .validate()
        .expect_err("warn above pass");
        let msg = err.to_string();
        assert!(
            msg.contains("pass = 50") && msg.contains("warn = 60"),
            "{msg}"
        );
        assert!(Thresholds {
            pass: 101.0,
            warn: 60.0
        }
        .validate()
        .is_err());
        assert!(Thresholds {
            pass: 80.0,
            warn: -1.0
        }
        .validate()
        .is_err());
        assert!(Thresholds {
            pass: f64::NAN,
            warn: 60.0
        }
        .validate()
        .is_err());
    }

    #[test]
    fn weighted_with_default_weights() {
        let parts = pairs(&[
            ("availability", 100.0),
            ("performance", 50.0),
            ("stability", 80.0),
        ]);
        // 40 + 20 + 16 = 76
        let s = weighted(&parts, &default_weights()).expect("valid");
        assert!((s - 76.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn weighted_normalises_by_weight_sum() {
        let parts = pairs(&[("a", 100.0), ("b", 0.0)]);
        let s = weighted(&parts, &pairs(&[("a", 3.0), ("b", 1.0)])).expect("valid");
        assert!((s - 75.0).abs() < 1e-9, "{s}");
        let s = weighted(&parts, &pairs(&[("a", 0.0), ("b", 2.0)])).expect("valid");
        assert_eq!(s, 0.0);
    }

    #[test]
    fn weighted_rejects_mismatched_names() {
        let parts = pairs(&[("availability", 90.0), ("latency", 50.0)]);
        let err = weighted(&parts, &default_weights()).expect_err("mismatch");
        assert_eq!(
            err,
            ScoreError::Mismatch {
                weights_without_part: vec!["performance".into(), "stability".into()],
                parts_without_weight: vec!["latency".into()],
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("[performance, stability]"), "{msg}");
        assert!(msg.contains("parts with no weight: [latency]"), "{msg}");
    }

    #[test]
    fn weighted_rejects_bad_numbers() {
        let parts = pairs(&[("a", 50.0)]);
        assert!(matches!(
            weighted(&parts, &pairs(&[("a", -0.5)])),
            Err(ScoreError::BadWeight { .. })
        ));
        assert!(matches!(
            weighted(&parts, &pairs(&[("a", f64::NAN)])),
            Err(ScoreError::BadWeight { .. })
        ));
        assert!(matches!(
            weighted(&parts, &pairs(&[("a", 0.0)])),
            Err(ScoreError::NoWeight { .. })
        ));
        assert!(matches!(
            weighted(&[], &[]),
            Err(ScoreError::NoWeight { .. })
        ));
        assert!(matches!(
            weighted(&pairs(&[("a", 100.5)]), &pairs(&[("a", 1.0)])),
            Err(ScoreError::PartOutOfRange { .. })
        ));
        assert!(matches!(
            weighted(&pairs(&[("a", f64::NAN)]), &pairs(&[("a", 1.0)])),
            Err(ScoreError::PartOutOfRange { .. })
        ));
        assert!(matches!(
            weighted(&pairs(&[("a", 1.0), ("a", 2.0)]), &pairs(&[("a", 1.0)])),
            Err(ScoreError::Duplicate { kind: "part", .. })
        ));
    }
}

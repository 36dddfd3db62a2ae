//! Retry schedules: a fixed list of waits, or exponential growth with a cap and jitter.

use std::time::Duration;

/// When to try again after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// `waits[i]` is the wait before attempt `i + 1` (the first entry, before attempt 1, is
    /// usually `0s`). Attempts past the end of the list reuse the last wait.
    Fixed(Vec<Duration>),
    /// The wait before attempt `n` (n ≥ 2) is `base × factor^(n-2)`, capped at `max`.
    Exponential {
        base: Duration,
        factor: f64,
        max: Duration,
        jitter: bool,
    },
}

/// A retry schedule that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("retry factor must be a number ≥ 1, got {0}")]
    Factor(f64),
    #[error("retry backoff list is empty: give at least one wait, such as [\"0s\", \"30s\"]")]
    EmptyList,
}

impl Backoff {
    /// Checks that the schedule can be followed.
    pub fn validate(&self) -> Result<(), BackoffError> {
        match self {
            Backoff::Fixed(waits) if waits.is_empty() => Err(BackoffError::EmptyList),
            Backoff::Exponential { factor, .. } if !(*factor >= 1.0 && factor.is_finite()) => {
                Err(BackoffError::Factor(*factor))
            }
            _ => Ok(()),
        }
    }

    /// Returns the wait before `attempt` (1-based). `unit` in [0, 1) picks the jitter.
    pub fn wait_before(&self, attempt: u32, unit: f64) -> Duration {
        match self {
            Backoff::Fixed(waits) => {
                let i = (attempt.saturating_sub(1) as usize).min(waits.len().saturating_sub(1));
                waits.get(i).copied().unwrap_or_default()
            }
            Backoff::Exponential {
                base,
                factor,
                max,
                jitter,
            } => {
                if attempt <= 1 {
                    return Duration::ZERO;
                }
                let exp = factor.powi((attempt - 2).min(1000) as i32);
                let raw = (base.as_secs_f64() * exp).min(max.as_secs_f64());
                // "Equal jitter": half fixed, half random, so waits never collapse to zero
                // and concurrent deployers do not retry in lockstep.
                let secs = if *jitter {
                    raw / 2.0 + raw / 2.0 * unit.clamp(0.0, 1.0)
                } else {
                    raw
                };
                Duration::from_secs_f64(secs.max(0.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn fixed_schedule_follows_the_list_then_repeats_the_last() {
        let b = Backoff::Fixed(vec![s(0), s(30), s(60)]);
        assert_eq!(b.wait_before(1, 0.5), s(0));
        assert_eq!(b.wait_before(2, 0.5), s(30));
        assert_eq!(b.wait_before(3, 0.5), s(60));
        assert_eq!(b.wait_before(4, 0.5), s(60));
    }

    #[test]
    fn exponential_grows_and_caps() {
        let b = Backoff::Exponential {
            base: s(1),
            factor: 2.0,
            max: s(30),
            jitter: false,
        };
        let waits: Vec<u64> = (1..=8).map(|n| b.wait_before(n, 0.0).as_secs()).collect();
        assert_eq!(waits, vec![0, 1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let b = Backoff::Exponential {
            base: s(4),
            factor: 2.0,
            max: s(60),
            jitter: true,
        };
        assert_eq!(b.wait_before(3, 0.0), s(4));
        assert_eq!(b.wait_before(3, 1.0), s(8));
        let mid = b.wait_before(3, 0.5).as_secs_f64();
        assert!((mid - 6.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_schedules() {
        assert_eq!(
            Backoff::Fixed(vec![]).validate(),
            Err(BackoffError::EmptyList)
        );
        let b = Backoff::Exponential {
            base: s(1),
            factor: 0.5,
            max: s(1),
            jitter: false,
        };
        assert_eq!(b.validate(), Err(BackoffError::Factor(0.5)));
    }
}

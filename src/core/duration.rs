//! Parsing and formatting of human durations such as `250ms`, `30s`, `5m`, `1h30m`.

use std::time::Duration;

/// A duration string or number that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: write a number with a unit, such as \"30s\", \"250ms\" or \"5m\"")]
    Empty,
    #[error("bad duration \"{value}\": {reason}; write a number with a unit (ms, s, m, h, d), such as \"30s\", \"250ms\" or \"1h30m\"")]
    Invalid { value: String, reason: String },
    #[error("bad duration {value}: it must be zero or more seconds")]
    Negative { value: String },
    #[error("bad duration {value}: it is too large")]
    TooLarge { value: String },
}

/// Parses a duration string: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
///
/// Numbers may have a fraction (`1.5s`). A bare number without a unit is refused so that
/// `"5"` is never silently read as seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let value = text.trim();
    if value.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = |reason: &str| DurationError::Invalid {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    if value.starts_with('-') {
        return Err(DurationError::Negative {
            value: format!("\"{text}\""),
        });
    }
    let bytes = value.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    let mut last_rank = usize::MAX;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(invalid(&format!(
                "expected a number at \"{}\"",
                &value[start..]
            )));
        }
        let number: f64 = value[start..i]
            .parse()
            .map_err(|_| invalid(&format!("\"{}\" is not a number", &value[start..i])))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &value[unit_start..i];
        let (seconds, rank) = match unit {
            "ms" => (0.001, 0),
            "s" | "sec" | "secs" => (1.0, 1),
            "m" | "min" | "mins" => (60.0, 2),
            "h" | "hr" | "hrs" => (3600.0, 3),
            "d" => (86400.0, 4),
            "" => {
                return Err(invalid(&format!(
                    "\"{}\" has no unit (did you mean \"{}s\"?)",
                    &value[start..i],
                    &value[start..i]
                )))
            }
            other => return Err(invalid(&format!("unknown unit \"{other}\""))),
        };
        if rank >= last_rank {
            return Err(invalid("units must go from largest to smallest, each once"));
        }
        last_rank = rank;
        total += number * seconds;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
    }
    from_secs_checked(total, || format!("\"{text}\""))
}

/// Converts a number of seconds (from a script) into a duration.
pub fn from_secs_f64(seconds: f64) -> Result<Duration, DurationError> {
    from_secs_checked(seconds, || format!("{seconds}"))
}

fn from_secs_checked(seconds: f64, shown: impl Fn() -> String) -> Result<Duration, DurationError> {
    if seconds.is_nan() {
        return Err(DurationError::Invalid {
            value: shown(),
            reason: "not a number".into(),
        });
    }
    if seconds < 0.0 {
        return Err(DurationError::Negative { value: shown() });
    }
    // A hundred years is far beyond any deployment step.
    if seconds > 100.0 * 365.0 * 86400.0 {
        return Err(DurationError::TooLarge { value: shown() });
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Formats a duration the way a person writes it: `250ms`, `30s`, `1.5s`, `5m`, `1h30m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        if ms == 0 && !d.is_zero() {
            return format!("{}µs", d.as_micros());
        }
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        if ms.is_multiple_of(1000) {
            return format!("{}s", ms / 1000);
        }
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("30s"), Ok(ms(30_000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("0s"), Ok(ms(0)));
    }

    #[test]
    fn parses_compound_and_fractions() {
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1m 30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration(" 2m5s "), Ok(ms(125_000)));
    }

    #[test]
    fn refuses_bad_values_quoting_them() {
        for bad in ["5", "abc", "5 minutes", "10x", "s", "1s1m", "1s1s", "1..5s"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.to_string().contains(bad.trim()), "{bad}: {err}");
        }
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("-5s"),
            Err(DurationError::Negative { .. })
        ));
        assert!(parse_duration("5")
            .expect_err("no unit")
            .to_string()
            .contains("did you mean \"5s\""));
    }

    #[test]
    fn converts_seconds() {
        assert_eq!(from_secs_f64(1.5), Ok(ms(1500)));
        assert!(from_secs_f64(-1.0).is_err());
        assert!(from_secs_f64(f64::NAN).is_err());
        assert!(from_secs_f64(1e12).is_err());
    }

    #[test]
    fn formats_like_a_person() {
        assert_eq!(format_duration(ms(250)), "250ms");
        assert_eq!(format_duration(ms(30_000)), "30s");
        assert_eq!(format_duration(ms(1500)), "1.5s");
        assert_eq!(format_duration(ms(300_000)), "5m");
        assert_eq!(format_duration(ms(5_400_000)), "1h30m");
        assert_eq!(format_duration(ms(0)), "0ms");
    }
}

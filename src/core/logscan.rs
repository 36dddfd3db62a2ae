//! Finding error lines in application logs by time: Laravel/Monolog lines
//! (`[2026-11-23 19:12:00] production.ERROR: ...`) and lines that start with an ISO 8601
//! timestamp (`2026-11-23T19:12:00.123Z ERROR ...`).

/// The levels that count as errors (Monolog's, from ERROR up).
pub const ERROR_LEVELS: &[&str] = &["ERROR", "CRITICAL", "ALERT", "EMERGENCY"];

/// A point in time read from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Milliseconds since 1970-01-01 UTC. A time without an offset is taken as UTC.
    pub millis: i64,
    /// Whether the text had a fraction of a second (otherwise it is whole seconds).
    pub fractional: bool,
}

/// A `since` value that is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad time \"{0}\": write RFC 3339 such as \"2026-11-23T19:12:00Z\" (what now() returns) or \"2026-11-23 19:12:00\"")]
pub struct BadTime(pub String);

/// Reads a whole string as a time: RFC 3339 / ISO 8601 with `T` or a space, with or without
/// fraction and offset (UTC when absent).
pub fn parse_time(text: &str) -> Result<Stamp, BadTime> {
    let t = text.trim();
    match timestamp_prefix(t) {
        Some((stamp, used)) if used == t.len() => Ok(stamp),
        _ => Err(BadTime(text.to_string())),
    }
}

/// Returns the time a log line starts with (after blanks and an opening `[`), if any.
pub fn line_time(line: &str) -> Option<Stamp> {
    let t = line.trim_start();
    let t = t.strip_prefix('[').unwrap_or(t);
    timestamp_prefix(t).map(|(s, _)| s)
}

/// Returns true when the line names an error level as a whole upper-case word
/// (`production.ERROR:`, ` CRITICAL `, `[EMERGENCY]`, `level=ALERT`).
pub fn has_error_level(line: &str) -> bool {
    ERROR_LEVELS.iter().any(|level| {
        line.match_indices(level).any(|(i, _)| {
            let before = line[..i].chars().next_back();
            let after = line[i + level.len()..].chars().next();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        })
    })
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Returns true when a line written at `line` is at or after `since`, compared at the
/// line's precision (a line stamped `19:12:00` counts for any `since` within that second).
pub fn at_or_after(line: Stamp, since: Stamp) -> bool {
    let since = if line.fractional {
        since.millis
    } else {
        since.millis - since.millis.rem_euclid(1000)
    };
    line.millis >= since
}

/// Returns the error lines of a log (see [`has_error_level`]) stamped at or after `since`,
/// in file order. Lines without a time of their own (stack traces) are not returned.
pub fn errors_since(text: &str, since: Stamp) -> Vec<String> {
    text.lines()
        .filter(|line| has_error_level(line))
        .filter(|line| line_time(line).is_some_and(|t| at_or_after(t, since)))
        .map(str::to_string)
        .collect()
}

/// Parses a timestamp at the start of `s`; returns it and the number of bytes it used.
fn timestamp_prefix(s: &str) -> Option<(Stamp, usize)> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, want: &[u8]| b.get(at).is_some_and(|c| want.contains(c));
    let year = num(0, 4)?;
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"T ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (month, day) = (num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    let mut fractional = false;
    if sep(i, b".,") && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        fractional = true;
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = &s[start..i];
        let ms: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().unwrap_or(0);
    }
    let mut offset_secs = 0i64;
    match b.get(i) {
        Some(b'Z' | b'z') => i += 1,
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            let hours = num(i + 1, 2)?;
            let (minutes, used) = if sep(i + 3, b":") {
                (num(i + 4, 2)?, 6)
            } else if let Some(m) = num(i + 3, 2) {
                (m, 5)
            } else {
                (0, 3)
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            offset_secs = sign * (hours * 3600 + minutes * 60);
            i += used;
        }
        _ => {}
    }
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some((
        Stamp {
            millis: secs * 1000 + millis,
            fractional,
        },
        i,
    ))
}

/// Converts a date into days since 1970-01-01 (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Stamp {
        parse_time(s).expect("a valid time")
    }

    #[test]
    fn parses_rfc3339_and_laravel_times() {
        // 2026-11-23T19:12:00Z = 1_795_461_120 s.
        assert_eq!(t("2026-11-23T19:12:00Z").millis, 1_795_461_120_000);
        assert_eq!(t("2026-11-23 19:12:00").millis, 1_795_461_120_000);
        let precise = t("2026-11-23T19:12:00.123Z");
        assert_eq!(precise.millis, 1_795_461_120_123);
        assert!(precise.fractional);
        assert_eq!(t("2026-11-23T20:12:00+01:00").millis, 1_795_461_120_000);
        assert_eq!(t("2026-11-23T18:42:00-0030").millis, 1_795_461_120_000);
        assert_eq!(t("2026-11-23T19:12:00.5+00:00").millis, 1_795_461_120_500);
        assert_eq!(t("1970-01-01T00:00:00Z").millis, 0);
        assert_eq!(t("2000-02-29T00:00:00Z").millis, 951_782_400_000);
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "yesterday",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-11-23T19:12:00Zjunk",
            "2026-11-23T25:00:00",
        ] {
            let err = parse_time(bad).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn finds_error_levels_as_whole_words() {
        assert!(has_error_level(
            "[2026-11-23 19:12:00] production.ERROR: boom"
        ));
        assert!(has_error_level("2026-11-23T19:12:00Z CRITICAL disk"));
        assert!(has_error_level("x [EMERGENCY] y"));
        assert!(has_error_level("level=ALERT"));
        assert!(!has_error_level(
            "[2026-11-23 19:12:00] production.INFO: 0 errors"
        ));
        assert!(!has_error_level("ERRORS=0 NO_ERROR ERROR_CODE"));
        assert!(!has_error_level("production.WARNING: slow"));
    }

    #[test]
    fn keeps_error_lines_at_or_after_the_time() {
        let log = "\
[2026-11-23 19:11:59] production.ERROR: before
[2026-11-23 19:12:00] production.ERROR: same second
#0 /var/www/app.php(12): ERROR in a trace line
[2026-11-23 19:12:05] production.INFO: fine
[2026-11-23 19:12:06] production.CRITICAL: after
2026-11-23T19:12:00.100Z ERROR iso before
2026-11-23T19:12:00.600Z ERROR iso after
2026-11-23T20:12:01+01:00 EMERGENCY offset after
garbage ERROR without a time
";
        let since = t("2026-11-23T19:12:00.500Z");
        assert_eq!(
            errors_since(log, since),
            vec![
                "[2026-11-23 19:12:00] production.ERROR: same second",
                "[2026-11-23 19:12:06] production.CRITICAL: after",
                "2026-11-23T19:12:00.600Z ERROR iso after",
                "2026-11-23T20:12:01+01:00 EMERGENCY offset after",
            ]
        );
        assert!(errors_since(log, t("2030-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn days_round_trip_with_civil_from_days() {
        for days in [-1000i64, 0, 59, 10_957, 20_000, 50_000] {
            let (y, m, d) = crate::core::time::civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}

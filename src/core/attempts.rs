//! The list of failed attempts in a failure's message: runs of attempts that failed the same
//! way are folded into one line (`attempts 1-30: status 503 (2-4 ms)`), so thirty identical
//! refusals read as one fact and a change of cause stands out.

/// One failed attempt: its number, what went wrong, and how long it took (when known).
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub number: i64,
    pub problem: String,
    pub ms: Option<f64>,
}

fn span(first: i64, last: i64) -> String {
    if first == last {
        format!("attempt {first}")
    } else {
        format!("attempts {first}-{last}")
    }
}

fn took(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(a), Some(b)) if a == b => format!(" ({a} ms)"),
        (Some(a), Some(b)) => format!(" ({a}-{b} ms)"),
        _ => String::new(),
    }
}

/// Folds consecutive attempts with the same problem into one line each, in order.
pub fn fold(attempts: &[Failed]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < attempts.len() {
        let first = &attempts[i];
        let mut j = i;
        let (mut lo, mut hi) = (first.ms, first.ms);
        while j + 1 < attempts.len() && attempts[j + 1].problem == first.problem {
            j += 1;
            let ms = attempts[j].ms;
            lo = lo.zip(ms).map(|(a, b)| a.min(b));
            hi = hi.zip(ms).map(|(a, b)| a.max(b));
        }
        out.push(format!(
            "{}: {}{}",
            span(first.number, attempts[j].number),
            first.problem,
            took(lo, hi)
        ));
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(number: i64, problem: &str, ms: f64) -> Failed {
        Failed {
            number,
            problem: problem.into(),
            ms: Some(ms),
        }
    }

    #[test]
    fn identical_attempts_fold_into_one_line_with_their_range_of_times() {
        let a = [
            f(1, "status 503", 2.0),
            f(2, "status 503", 4.0),
            f(3, "status 503", 3.0),
        ];
        assert_eq!(fold(&a), ["attempts 1-3: status 503 (2-4 ms)"]);
    }

    #[test]
    fn a_change_of_cause_starts_a_new_line_and_order_is_kept() {
        let a = [
            f(1, "connect error: refused", 0.0),
            f(2, "connect error: refused", 0.0),
            f(3, "status 503", 5.0),
            f(4, "connect error: refused", 1.0),
        ];
        assert_eq!(
            fold(&a),
            [
                "attempts 1-2: connect error: refused (0 ms)",
                "attempt 3: status 503 (5 ms)",
                "attempt 4: connect error: refused (1 ms)"
            ]
        );
    }

    #[test]
    fn unknown_times_are_left_out_and_nothing_folds_from_nothing() {
        let a = [Failed {
            number: 1,
            problem: "exited".into(),
            ms: None,
        }];
        assert_eq!(fold(&a), ["attempt 1: exited"]);
        assert!(fold(&[]).is_empty());
        assert_eq!(
            fold(&[f(1, "status 503", 2.5), f(2, "status 503", 3.25)]),
            ["attempts 1-2: status 503 (2.5-3.25 ms)"]
        );
    }
}

//! Backup retention: which backups to delete, by age and by count, never the newest
//! verified one.

/// A backup file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub name: String,
    /// Last modification, in seconds since 1970-01-01 UTC.
    pub modified: i64,
    /// A verification marker (`NAME.verified`) sits beside it.
    pub verified: bool,
}

/// The retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Backups older than this many days go.
    pub keep_days: u32,
    /// At most this many backups stay (the newest).
    pub keep: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            keep_days: 14,
            keep: 30,
        }
    }
}

/// Returns the names of the backups to delete, oldest first: those older than
/// `keep_days` and those beyond the newest `keep`, except the newest verified backup,
/// which always stays (an unverified newer dump is no substitute for it).
pub fn plan(backups: &[Backup], now: i64, policy: Policy) -> Vec<String> {
    let mut sorted: Vec<&Backup> = backups.iter().collect();
    // Newest first; equal times by name, newest name first.
    sorted.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.name.cmp(&a.name)));
    let newest_verified = sorted.iter().find(|b| b.verified).map(|b| b.name.clone());
    let max_age = i64::from(policy.keep_days) * 86_400;
    let mut out: Vec<String> = sorted
        .iter()
        .enumerate()
        .filter(|(i, b)| *i >= policy.keep || now - b.modified > max_age)
        .filter(|(_, b)| Some(&b.name) != newest_verified.as_ref())
        .map(|(_, b)| b.name.clone())
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn b(name: &str, age_days: i64, verified: bool) -> Backup {
        Backup {
            name: name.into(),
            modified: 100 * DAY - age_days * DAY,
            verified,
        }
    }

    #[test]
    fn deletes_by_age_and_by_count() {
        let all = [
            b("d1", 20, true),
            b("d2", 15, true),
            b("d3", 3, true),
            b("d4", 2, true),
            b("d5", 1, true),
        ];
        let p = Policy {
            keep_days: 14,
            keep: 30,
        };
        assert_eq!(plan(&all, 100 * DAY, p), ["d1", "d2"]);
        let p = Policy {
            keep_days: 14,
            keep: 2,
        };
        assert_eq!(plan(&all, 100 * DAY, p), ["d1", "d2", "d3"]);
    }

    #[test]
    fn never_deletes_the_newest_verified_backup() {
        // Only old verified backups, then newer unverified ones: the newest verified stays.
        let all = [
            b("old", 40, true),
            b("older", 50, true),
            b("new1", 1, false),
            b("new2", 0, false),
        ];
        let p = Policy {
            keep_days: 14,
            keep: 1,
        };
        assert_eq!(plan(&all, 100 * DAY, p), ["older", "new1"]);
        // Everything is old: still the newest verified one stays.
        let all = [b("a", 30, true), b("b", 20, true), b("c", 15, false)];
        assert_eq!(plan(&all, 100 * DAY, Policy::default()), ["a", "c"]);
    }

    #[test]
    fn nothing_to_do_on_an_empty_or_young_folder() {
        assert!(plan(&[], 0, Policy::default()).is_empty());
        let all = [b("x", 0, false), b("y", 13, false)];
        assert!(plan(&all, 100 * DAY, Policy::default()).is_empty());
    }
}

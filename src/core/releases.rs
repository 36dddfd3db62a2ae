//! The release journal of a deploy root (`ROOT/releases.json`): which release went live
//! when, which were tried and failed, which were rolled back from and marked bad; and the
//! two decisions read from it: where a rollback goes and what pruning may remove.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The journal's file name inside a deploy root.
pub const FILE: &str = "releases.json";

/// What happened to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Its folder was created.
    Created,
    /// `current` was pointed at it.
    Live,
    /// It was tried and failed before going live (a failed trial).
    Failed,
    /// It was marked bad: never a rollback target again.
    Bad,
    /// A rollback left it (`to` names where `current` went).
    RolledBack,
    /// A rollback from it was attempted and did not complete (`error` says where).
    RollbackFailed,
    /// Its folder was removed by pruning.
    Removed,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UTC RFC 3339.
    pub at: String,
    pub release: String,
    pub event: EventKind,
    /// For `rolled_back` and `rollback_failed`: the release `current` went (or was to go) to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why (a failed trial's error, a reason for marking bad, where a rollback stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole journal, oldest event first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub events: Vec<Event>,
}

/// A release folder as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDisk {
    pub name: String,
    /// It holds the `.deployer-bad` marker (older roots, or a hand-marked release).
    pub marked_bad: bool,
}

/// Why no rollback target exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTarget {
    /// `current` points at nothing.
    NothingLive,
    /// The journal never saw `live` go live before (a root from before the journal, or
    /// `current` switched by hand).
    NoHistory { live: String },
    /// Releases were live before, but each is bad, gone, or `live` itself.
    AllExcluded {
        live: String,
        bad: Vec<String>,
        gone: Vec<String>,
    },
}

impl std::fmt::Display for NoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoTarget::NothingLive => write!(f, "no release is live"),
            NoTarget::NoHistory { live } => write!(
                f,
                "the journal records no release live before {live} (only releases that went live through releases::activate are rollback targets)"
            ),
            NoTarget::AllExcluded { live, bad, gone } => {
                let mut parts = Vec::new();
                if !bad.is_empty() {
                    parts.push(format!("marked bad: {}", bad.join(", ")));
                }
                if !gone.is_empty() {
                    parts.push(format!("removed: {}", gone.join(", ")));
                }
                if parts.is_empty() {
                    write!(f, "no release other than {live} was ever live")
                } else {
                    write!(
                        f,
                        "every release live before {live} is excluded ({})",
                        parts.join("; ")
                    )
                }
            }
        }
    }
}

impl Default for Journal {
    fn default() -> Journal {
        Journal::new()
    }
}

impl Journal {
    /// Parses a journal file's text; an empty text is an empty journal.
    pub fn parse(text: &str) -> Result<Journal, String> {
        if text.trim().is_empty() {
            return Ok(Journal::new());
        }
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// An empty journal of the current version.
    pub fn new() -> Journal {
        Journal {
            version: 1,
            events: Vec::new(),
        }
    }

    /// The journal as pretty JSON, ending with a newline.
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// Adds an event.
    pub fn push(&mut self, at: &str, release: &str, event: EventKind) -> &mut Event {
        self.events.push(Event {
            at: at.to_string(),
            release: release.to_string(),
            event,
            to: None,
            note: None,
        });
        let last = self.events.len() - 1;
        &mut self.events[last]
    }

    fn has(&self, release: &str, kind: EventKind) -> bool {
        self.events
            .iter()
            .any(|e| e.release == release && e.event == kind)
    }

    /// True when the release was marked bad in the journal.
    pub fn is_bad(&self, release: &str) -> bool {
        self.has(release, EventKind::Bad)
    }

    /// True when the release went live at least once.
    pub fn went_live(&self, release: &str) -> bool {
        self.has(release, EventKind::Live)
    }

    /// True when the release's trial failed (and it did not go live after).
    pub fn failed_trial(&self, release: &str) -> bool {
        self.has(release, EventKind::Failed) && !self.went_live(release)
    }

    /// Where a rollback from `live` goes: the release that was live before `live` most
    /// recently went live, skipping releases marked bad (in the journal or on disk), gone
    /// from disk, and `live` itself. A release that never went live is never a target.
    pub fn rollback_target(&self, live: Option<&str>, disk: &[OnDisk]) -> Result<String, NoTarget> {
        let live = live.ok_or(NoTarget::NothingLive)?;
        let lives: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.event == EventKind::Live)
            .collect();
        let Some(last_live) = lives.iter().rposition(|e| e.release == live) else {
            return Err(NoTarget::NoHistory {
                live: live.to_string(),
            });
        };
        let mut bad = Vec::new();
        let mut gone = Vec::new();
        for e in lives[..last_live].iter().rev() {
            let name = e.release.as_str();
            if name == live || bad.iter().chain(gone.iter()).any(|n| n == name) {
                continue;
            }
            match disk.iter().find(|d| d.name == name) {
                None => gone.push(name.to_string()),
                Some(d) if d.marked_bad || self.is_bad(name) => bad.push(name.to_string()),
                Some(_) => return Ok(name.to_string()),
            }
        }
        Err(NoTarget::AllExcluded {
            live: live.to_string(),
            bad,
            gone,
        })
    }

    /// The releases pruning removes so that `keep` good releases stay: never `live`, never
    /// the release a rollback from `live` would go to, and bad releases (marked bad, or a
    /// trial that failed) do not count toward `keep`. `disk` is sorted oldest first.
    /// Returns names oldest first.
    pub fn prune_plan(&self, live: Option<&str>, disk: &[OnDisk], keep: usize) -> Vec<String> {
        let mut protected: BTreeSet<&str> = BTreeSet::new();
        if let Some(l) = live {
            protected.insert(l);
        }
        let target = self.rollback_target(live, disk).ok();
        if let Some(t) = target.as_deref() {
            protected.insert(t);
        }
        let mut kept_good = 0usize;
        let mut remove = Vec::new();
        for d in disk.iter().rev() {
            let bad = d.marked_bad || self.is_bad(&d.name) || self.failed_trial(&d.name);
            if protected.contains(d.name.as_str()) {
                if !bad {
                    kept_good += 1;
                }
                continue;
            }
            if !bad && kept_good < keep {
                kept_good += 1;
                continue;
            }
            remove.push(d.name.clone());
        }
        remove.reverse();
        remove
    }
}

/// The last millisecond a release id of this process was made for (ids never share one).
static LAST_ID_MS: AtomicU64 = AtomicU64::new(0);

/// Makes a new release id such as `20261202T135501.123Z-4f2a`: the UTC time to the
/// millisecond, then 4 hex characters. Within one process each id takes a millisecond of
/// its own (the next free one when two are made in the same millisecond), so ids made one
/// after the other sort in the order they were made; the hex characters (from the time's
/// nanoseconds, the pid and a counter) keep ids of two processes apart.
pub fn new_id(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let wanted = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    let mut ms = wanted;
    let _ = LAST_ID_MS.fetch_update(AtomicOrdering::SeqCst, AtomicOrdering::SeqCst, |last| {
        ms = wanted.max(last.saturating_add(1));
        Some(ms)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
    let seed = ms.wrapping_mul(1_000_000_007)
        ^ u64::from(since.subsec_nanos())
        ^ (u64::from(std::process::id()) << 32)
        ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let tag = mix(seed) & 0xffff;
    let at = UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let stamp = crate::core::time::compact(at); // 20261202T135501Z
    let (secs, _) = stamp.split_at(stamp.len() - 1);
    format!("{secs}.{:03}Z-{tag:04x}", ms % 1000)
}

/// Mixes the bits of a 64-bit value (SplitMix64 finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The time a release name stands for, as 23 digits (`YYYYMMDDhhmmss` and nine digits of
/// the second's fraction), for the names deployer makes (`20261202T135501.123Z-4f2a`) and
/// those made before: 14 digits (`20261123191200`), 17 digits with milliseconds
/// (`20261123191200123`), and `20261123T191200Z`. Anything may follow after a `-`.
fn time_digits(name: &str) -> Option<String> {
    let (stamp, _) = name.split_once('-').unwrap_or((name, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (whole, frac) = if digits(stamp) && (stamp.len() == 14 || stamp.len() == 17) {
        stamp.split_at(14)
    } else {
        let rest = stamp.strip_suffix('Z')?;
        let (date, time) = rest.split_once('T')?;
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        if !(date.len() == 8 && digits(date) && hms.len() == 6 && digits(hms)) {
            return None;
        }
        let frac_ok = frac.is_empty() || (frac.len() <= 9 && digits(frac));
        if !frac_ok {
            return None;
        }
        return Some(format!("{date}{hms}{frac:0<9}"));
    };
    Some(format!("{whole}{frac:0<9}"))
}

/// Orders release names oldest first: names that carry a time (new ids and the older
/// digit forms, mixed) by that time, then by name; other names after them, by name.
pub fn compare_names(a: &str, b: &str) -> Ordering {
    match (time_digits(a), time_digits(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(names: &[&str]) -> Vec<OnDisk> {
        names
            .iter()
            .map(|n| OnDisk {
                name: n.to_string(),
                marked_bad: false,
            })
            .collect()
    }

    fn journal(events: &[(&str, EventKind)]) -> Journal {
        let mut j = Journal::new();
        for (i, (r, k)) in events.iter().enumerate() {
            j.push(&format!("t{i}"), r, *k);
        }
        j
    }

    use EventKind::*;

    #[test]
    fn rollback_goes_to_the_release_live_before_not_the_newest_older_name() {
        // r1 live, r2 tried and failed (never live), r3 live: back to r1, not r2.
        let j = journal(&[
            ("r1", Created),
            ("r1", Live),
            ("r2", Created),
            ("r2", Failed),
            ("r3", Created),
            ("r3", Live),
        ]);
        let d = disk(&["r1", "r2", "r3"]);
        assert_eq!(j.rollback_target(Some("r3"), &d), Ok("r1".into()));
    }

    #[test]
    fn rollback_skips_bad_and_removed_releases_and_says_so() {
        let j = journal(&[
            ("r1", Live),
            ("r2", Live),
            ("r3", Live),
            ("r2", Bad),
            ("r4", Live),
        ]);
        let d = disk(&["r2", "r3", "r4"]);
        assert_eq!(j.rollback_target(Some("r4"), &d), Ok("r3".into()));
        let mut d2 = disk(&["r2", "r4"]);
        d2.push(OnDisk {
            name: "r3".into(),
            marked_bad: true,
        });
        let err = j.rollback_target(Some("r4"), &d2).expect_err("no target");
        assert_eq!(
            err,
            NoTarget::AllExcluded {
                live: "r4".into(),
                bad: vec!["r3".into(), "r2".into()],
                gone: vec!["r1".into()],
            }
        );
        assert_eq!(
            err.to_string(),
            "every release live before r4 is excluded (marked bad: r3, r2; removed: r1)"
        );
    }

    #[test]
    fn after_a_rollback_the_next_rollback_does_not_return_to_the_bad_release() {
        let j = journal(&[
            ("r1", Live),
            ("r2", Live),
            ("r3", Live),
            ("r2", Live), // rolled back from r3
            ("r3", Bad),
        ]);
        let d = disk(&["r1", "r2", "r3"]);
        assert_eq!(j.rollback_target(Some("r2"), &d), Ok("r1".into()));
    }

    #[test]
    fn no_target_without_history_or_live_release() {
        let j = journal(&[("r1", Live)]);
        let d = disk(&["r1", "r2"]);
        assert_eq!(
            j.rollback_target(Some("r2"), &d),
            Err(NoTarget::NoHistory { live: "r2".into() })
        );
        assert_eq!(j.rollback_target(None, &d), Err(NoTarget::NothingLive));
        assert_eq!(
            j.rollback_target(Some("r1"), &d)
                .expect_err("no target")
                .to_string(),
            "no release other than r1 was ever live"
        );
    }

    #[test]
    fn prune_never_counts_bad_releases_and_keeps_live_and_previous() {
        // r1 good live, r2..r6 each live then bad (rolled back from); r7 a failed trial.
        let mut events = vec![("r1", Live)];
        for r in ["r2", "r3", "r4", "r5", "r6"] {
            events.push((r, Live));
            events.push(("r1", Live));
            events.push((r, Bad));
        }
        events.push(("r7", Created));
        events.push(("r7", Failed));
        events.push(("r8", Live));
        let j = journal(&events);
        let d = disk(&["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"]);
        // keep 1: r8 (live) counts; r1 is the rollback target and stays.
        assert_eq!(
            j.prune_plan(Some("r8"), &d, 1),
            ["r2", "r3", "r4", "r5", "r6", "r7"]
        );
        // keep 5: the bad ones still go, they do not fill the 5.
        assert_eq!(
            j.prune_plan(Some("r8"), &d, 5),
            ["r2", "r3", "r4", "r5", "r6", "r7"]
        );
    }

    #[test]
    fn prune_keeps_the_newest_good_releases() {
        let j = journal(&[("a", Live), ("b", Live), ("c", Live), ("d", Live)]);
        let d = disk(&["a", "b", "c", "d"]);
        assert_eq!(j.prune_plan(Some("d"), &d, 2), ["a", "b"]);
        assert_eq!(j.prune_plan(Some("d"), &d, 1), ["a", "b"]); // c: the rollback target
        assert!(j.prune_plan(Some("d"), &d, 10).is_empty());
        // A live release older than the kept ones stays too.
        assert_eq!(j.prune_plan(Some("a"), &d, 1), ["b", "c"]);
    }

    #[test]
    fn journal_round_trips_and_reads_empty_text() {
        let mut j = Journal::new();
        j.push("2026-01-01T00:00:00Z", "r1", RolledBack).to = Some("r0".into());
        let back = Journal::parse(&j.to_text()).expect("parses");
        assert_eq!(back, j);
        assert!(j.to_text().contains("\"event\": \"rolled_back\""));
        assert_eq!(Journal::parse("  \n").expect("parses"), Journal::new());
        assert!(Journal::parse("{").is_err());
    }

    #[test]
    fn new_ids_made_in_one_second_differ_and_sort_in_the_order_made() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_795_461_120, 5_000_000);
        let ids: Vec<String> = (0..50).map(|_| new_id(t)).collect();
        for w in ids.windows(2) {
            assert_eq!(compare_names(&w[0], &w[1]), Ordering::Less, "{ids:?}");
            assert!(w[0] < w[1], "plain string order agrees too: {ids:?}");
        }
        let first = &ids[0];
        assert!(first.starts_with("20261123T191200."), "{first}");
        assert_eq!(first.len(), "20261123T191200.005Z-4f2a".len(), "{first}");
        // A clock that goes back does not make an older-sorting id.
        let back = new_id(t - std::time::Duration::from_secs(5));
        assert_eq!(compare_names(&ids[49], &back), Ordering::Less, "{back}");
    }

    #[test]
    fn old_and_new_release_names_sort_by_their_time() {
        let mut names = vec![
            "20261202T135501.123Z-00ff".to_string(),
            "20261202135502".to_string(), // Capistrano's form, a second later
            "20261202135501122".to_string(), // digits of now(), a millisecond earlier
            "20261202T135500Z".to_string(),
            "20261202T135501.123Z-00aa".to_string(),
            "v2".to_string(),
            "20251231235959".to_string(),
            "v10".to_string(),
        ];
        names.sort_by(|a, b| compare_names(a, b));
        assert_eq!(
            names,
            [
                "20251231235959",
                "20261202T135500Z",
                "20261202135501122",
                "20261202T135501.123Z-00aa",
                "20261202T135501.123Z-00ff",
                "20261202135502",
                "v10",
                "v2",
            ]
        );
        assert_eq!(time_digits("2026120213550"), None);
        assert_eq!(time_digits("20261202T1355Z"), None);
        assert_eq!(time_digits("20261202T135501.1234567890Z"), None);
    }
}

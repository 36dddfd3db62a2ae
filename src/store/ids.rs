//! Run ids (`20250101T120000Z-staging-1a2b`): making them and choosing which run folders to
//! prune. Host and user names live in `sys::identity`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest environment name kept in a run id; longer ones are cut.
const MAX_ENV_IN_ID: usize = 64;

use crate::core::time::compact;

/// Mixes the bits of a 64-bit value (SplitMix64 finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Replaces every character outside `[A-Za-z0-9_-]` with `_`, cuts to 64 characters; empty gives `default`.
pub fn sanitize_env(env: &str) -> String {
    let s: String = env
        .chars()
        .take(MAX_ENV_IN_ID)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "default".to_string()
    } else {
        s
    }
}

/// Builds a run id such as `20261123T191200Z-staging-3fa9`: UTC time, sanitized env, 4 hex chars.
///
/// The 4 hex chars mix the time's nanoseconds, the pid and a per-process counter, so two runs
/// started in the same second (even by one process) get different ids in practice.
pub fn run_id(now: SystemTime, env: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = secs.wrapping_mul(1_000_000_007)
        ^ u64::from(nanos)
        ^ (u64::from(std::process::id()) << 32)
        ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let tag = mix(seed) & 0xffff;
    format!("{}-{}-{tag:04x}", compact(now), sanitize_env(env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn run_id_shape() {
        let id = run_id(at(1_795_461_120, 5), "staging");
        assert!(id.starts_with("20261123T191200Z-staging-"), "{id}");
        let tag = id.rsplit('-').next().expect("tag");
        assert_eq!(tag.len(), 4, "{id}");
        assert!(tag
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn run_id_sanitizes_env() {
        let id = run_id(at(0, 0), "prod/eu west.1");
        assert!(id.starts_with("19700101T000000Z-prod_eu_west_1-"), "{id}");
        let id = run_id(at(0, 0), "");
        assert!(id.starts_with("19700101T000000Z-default-"), "{id}");
        assert_eq!(sanitize_env("é-x_Y9"), "_-x_Y9");
        assert_eq!(sanitize_env(&"a".repeat(100)).len(), 64);
    }

    #[test]
    fn run_ids_at_the_same_instant_differ() {
        let t = at(1_795_461_120, 0);
        let ids: std::collections::BTreeSet<String> = (0..20).map(|_| run_id(t, "e")).collect();
        assert!(ids.len() >= 19, "{ids:?}");
    }
}

/// The run folders to remove so that at most `keep` runs of an environment stay: the
/// oldest of those whose id names `env`, never `current`, never a name that is not a run
/// id. `runs` pairs each id with when its folder was last written: ids order runs by the
/// second only (runs in the same second differ by a random tag), so that breaks ties.
pub fn runs_to_prune(
    runs: &[(String, SystemTime)],
    env: &str,
    keep: usize,
    current: &str,
) -> Vec<String> {
    let env = sanitize_env(env);
    let mut mine: Vec<(&str, SystemTime, &str)> = runs
        .iter()
        .filter(|(id, _)| env_of(id) == Some(env.as_str()) && id != current)
        .map(|(id, t)| (&id[..16], *t, id.as_str()))
        .collect();
    mine.sort();
    // The current run is the newest and always kept.
    let excess = (mine.len() + 1).saturating_sub(keep.max(1));
    mine.into_iter()
        .take(excess)
        .map(|(_, _, id)| id.to_string())
        .collect()
}

/// The environment part of a run id `YYYYMMDDTHHMMSSZ-ENV-abcd`, if it is one.
fn env_of(id: &str) -> Option<&str> {
    let (stamp, rest) = id.split_at_checked(16)?;
    let ok_stamp = stamp.len() == 16
        && stamp.as_bytes()[8] == b'T'
        && stamp.ends_with('Z')
        && stamp
            .chars()
            .enumerate()
            .all(|(i, c)| i == 8 || i == 15 || c.is_ascii_digit());
    let rest = rest.strip_prefix('-')?;
    let (env, tag) = rest.rsplit_once('-')?;
    let ok_tag = tag.len() == 4 && tag.chars().all(|c| c.is_ascii_hexdigit());
    (ok_stamp && ok_tag && !env.is_empty()).then_some(env)
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    #[test]
    fn keeps_the_newest_runs_of_one_environment_only() {
        let t = |s: u64| UNIX_EPOCH + std::time::Duration::from_secs(s);
        let runs: Vec<(String, SystemTime)> = [
            ("20261201T100000Z-staging-ffff", 1),
            ("20261201T100000Z-staging-0000", 2),
            ("20261201T120000Z-prod-uction-cccc", 3),
            ("20261201T130000Z-staging-dddd", 4),
            ("notes", 0),
            ("20261201T090000Z-staging-zzzz", 0),
        ]
        .iter()
        .map(|(id, s)| (id.to_string(), t(*s)))
        .collect();
        // Same second: the folder written first is older, whatever its tag.
        let gone = runs_to_prune(&runs, "staging", 2, "20261201T130000Z-staging-dddd");
        assert_eq!(gone, ["20261201T100000Z-staging-ffff"]);
        let gone = runs_to_prune(&runs, "staging", 1, "20261201T130000Z-staging-dddd");
        assert_eq!(
            gone,
            [
                "20261201T100000Z-staging-ffff",
                "20261201T100000Z-staging-0000"
            ]
        );
        assert!(runs_to_prune(&runs, "prod-uction", 1, "x").len() == 1);
        assert!(
            runs_to_prune(&runs, "prod-uction", 1, "20261201T120000Z-prod-uction-cccc").is_empty()
        );
        assert_eq!(env_of("20261201T100000Z-a-b-c-0f0f"), Some("a-b-c"));
        assert_eq!(env_of("20261201T100000Z-staging-xyz!"), None);
    }
}

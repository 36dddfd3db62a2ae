//! The run history `.deployer/history.jsonl`: one JSON object per finished run, appended, read back tolerantly.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::store::atomic::{context, open_nofollow, parent_dir, real_dir, sync_dir};

/// One finished (or interrupted) run, as one line of the history file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    pub run_id: String,
    /// UTC RFC 3339.
    pub started_at: String,
    /// UTC RFC 3339.
    pub finished_at: String,
    pub env: String,
    pub script: String,
    /// "PASS", "WARNING" or "FAILED"; `None` when the run stopped before it was scored.
    #[serde(default)]
    pub verdict: Option<String>,
    /// 0-100; `None` when the run stopped before it was scored.
    #[serde(default)]
    pub score: Option<f64>,
    pub duration_ms: u64,
    /// "ok", "failed", "declined", "never", "missing", "not_run" (interrupted after changes
    /// began) or "not_needed"; `None` when rollback never came up.
    #[serde(default)]
    pub rollback: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub interrupted: bool,
    /// "deploy" or "rollback" (`deployer rollback`); `None` in lines written before v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The run's `--var`s, masked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// What the script recorded (`release`, `rolled_back_from`, `version`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recorded: BTreeMap<String, String>,
    pub exit_code: i32,
    /// Path of this run's report.json.
    pub report: String,
    /// What the run did to its remote hosts; `None` when it ran on none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<crate::remote::HostsSummary>,
}

/// The entries that could be read, and a warning for each damaged line skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// In file order: oldest first.
    pub entries: Vec<HistoryEntry>,
    pub warnings: Vec<String>,
}

/// Appends `entry` as one line to the history file at `path`, creating it and its folders.
///
/// If a crash cut the file's last line (no final newline), a newline is written first so the
/// new entry starts on its own line. The line goes out in one write on an append-mode file and
/// is fsynced. A symlink at `path` or as its folder is refused, not followed.
pub fn append(path: &Path, entry: &HistoryEntry) -> io::Result<()> {
    let dir = parent_dir(path);
    real_dir(dir)?;
    let existed = path.exists();
    // A planted symlink must not make us append to another file.
    let file = open_nofollow(
        OpenOptions::new().read(true).append(true).create(true),
        path,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EISDIR) => io::Error::new(
            e.kind(),
            format!(
                "cannot append to history file {}: it is a folder, not a file; move it away",
                path.display()
            ),
        ),
        _ => context(e, "cannot open history file", path),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| context(e, "cannot read metadata of history file", path))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot append to history file {}: it is not a regular file; move it away",
                path.display()
            ),
        ));
    }
    let len = file
        .metadata()
        .map_err(|e| context(e, "cannot read metadata of history file", path))?
        .len();
    let mut line = Vec::with_capacity(256);
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)
            .map_err(|e| context(e, "cannot read the end of history file", path))?;
        if last[0] != b'\n' {
            line.push(b'\n');
        }
    }
    serde_json::to_writer(&mut line, entry).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot encode history entry for run {}: {e}", entry.run_id),
        )
    })?;
    line.push(b'\n');
    // One write(2) for a regular file; write_all only loops on the rare short write.
    (&file)
        .write_all(&line)
        .map_err(|e| context(e, "cannot append to history file", path))?;
    file.sync_data()
        .map_err(|e| context(e, "cannot fsync history file", path))?;
    if !existed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads the history file at `path`; a missing file is an empty history.
///
/// Lines that are not valid UTF-8, not JSON or not an entry are skipped, each with a warning
/// such as `history.jsonl line 7 is damaged and was skipped: <error>`. Blank lines are ignored.
pub fn read(path: &Path) -> io::Result<History> {
    use std::io::Read;
    let Some((mut file, len)) = open(path)? else {
        return Ok(History::default());
    };
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| context(e, "cannot read history file", path))?;
    Ok(parse(&bytes, path))
}

/// Opens the history file for reading, with its length; `None` when there is none yet.
fn open(path: &Path) -> io::Result<Option<(std::fs::File, u64)>> {
    let file = match open_nofollow(OpenOptions::new().read(true), path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(context(e, "cannot read history file", path)),
    };
    let len = file
        .metadata()
        .map_err(|e| context(e, "cannot read history file", path))?
        .len();
    Ok(Some((file, len)))
}

/// The file's name as warnings give it.
fn label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "history.jsonl".to_string())
}

/// One line of the file: `None` when blank, else the entry or why the line is damaged.
fn parse_line(raw: &[u8]) -> Option<Result<HistoryEntry, String>> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(
        std::str::from_utf8(raw)
            .map_err(|e| format!("invalid UTF-8: {e}"))
            .and_then(|s| serde_json::from_str::<HistoryEntry>(s).map_err(|e| e.to_string())),
    )
}

/// How much of the history file [`read_recent`] reads at a time, from the end.
const BLOCK: u64 = 16 * 1024;

/// Reads the history from its end, newest line first, until `n` entries match `like` or
/// `max_bytes` have been read: what a run needs to compare itself with the runs before it
/// (the previous one, the trend of ten), at a cost that depends on how far back those runs
/// are, not on the length of the file. Entries come back in file order, as from [`read`];
/// the lines read include every entry newer than the oldest match. Damaged lines are
/// skipped with a warning, with their line number when the scan reached the start of the
/// file.
pub fn read_recent(path: &Path, max_bytes: u64, like: Like<'_>, n: usize) -> io::Result<History> {
    let Some((file, len)) = open(path)? else {
        return Ok(History::default());
    };
    let floor = len.saturating_sub(max_bytes);
    let name = label(path);
    // Newest first; damaged lines as (segment counted from the end, error).
    let mut entries = Vec::new();
    let mut damaged: Vec<(usize, String)> = Vec::new();
    let mut matched = 0;
    let mut from_end = 0usize;
    let mut take = |raw: &[u8], from_end: usize| -> bool {
        let Some(parsed) = parse_line(raw) else {
            return false;
        };
        match parsed {
            Ok(entry) => {
                if like.matches(&entry) {
                    matched += 1;
                }
                entries.push(entry);
            }
            Err(e) => damaged.push((from_end, e)),
        }
        matched >= n
    };
    // `rest` holds the bytes before the lines already taken: the start of a line whose
    // beginning has not been read yet.
    let mut rest: Vec<u8> = Vec::new();
    let mut pos = len;
    let mut complete = false;
    'scan: while pos > floor {
        let from = pos.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0u8; (pos - from) as usize];
        file.read_exact_at(&mut block, from)
            .map_err(|e| context(e, "cannot read history file", path))?;
        block.extend_from_slice(&rest);
        pos = from;
        let mut end = block.len();
        while let Some(i) = block[..end].iter().rposition(|&b| b == b'\n') {
            let stop = take(&block[i + 1..end], from_end);
            from_end += 1;
            end = i;
            if stop {
                break 'scan;
            }
        }
        block.truncate(end);
        rest = block;
        if pos == 0 {
            // The file's first line: complete, since nothing comes before it.
            take(&rest, from_end);
            from_end += 1;
            complete = true;
        }
    }
    // Reaching the start, the number of lines is known, and so is each line's number.
    let warnings = damaged
        .into_iter()
        .rev()
        .map(|(k, e)| {
            if complete {
                format!(
                    "{name} line {} is damaged and was skipped: {e}",
                    from_end - k
                )
            } else {
                format!("{name}: a recent line is damaged and was skipped: {e}")
            }
        })
        .collect();
    entries.reverse();
    Ok(History { entries, warnings })
}

fn parse(bytes: &[u8], path: &Path) -> History {
    let name = label(path);
    let mut history = History::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        match parse_line(raw) {
            None => {}
            Some(Ok(entry)) => history.entries.push(entry),
            Some(Err(e)) => history.warnings.push(format!(
                "{name} line {} is damaged and was skipped: {e}",
                i + 1
            )),
        }
    }
    history
}

/// Returns up to `n` entries, newest first (last appended first), of `env` or of every env,
/// of `script` or of every script (see [`same_script`]).
pub fn recent<'a>(
    history: &'a History,
    env: Option<&str>,
    script: Option<&str>,
    n: usize,
) -> Vec<&'a HistoryEntry> {
    history
        .entries
        .iter()
        .rev()
        .filter(|e| env.is_none_or(|want| e.env == want))
        .filter(|e| script.is_none_or(|want| same_script(&e.script, want)))
        .take(n)
        .collect()
}

/// True when the recorded script `recorded` is the one the user named: the same path, the
/// same file name (`deploy.rhai`) or the same stem (`deploy`).
pub fn same_script(recorded: &str, named: &str) -> bool {
    let file = |s: &str| {
        std::path::Path::new(s)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let f = file(recorded);
    recorded == named || f == named || f.strip_suffix(".rhai") == Some(named)
}

/// How a run is shown in the history's mode column: `deploy`, `rollback`, `dry-run`
/// (`dry-run rollback`), or `-` for lines from before modes were recorded.
pub fn mode_label(e: &HistoryEntry) -> String {
    match (e.mode.as_deref(), e.dry_run) {
        (Some("rollback"), true) => "dry-run rollback".into(),
        (_, true) => "dry-run".into(),
        (Some(m), false) => m.into(),
        (None, false) => "-".into(),
    }
}

/// What went live, as shown in the history's release column: the `release` recorded (or
/// `version`), as `FROM -> TO` when the run rolled back from `FROM`; `-` when none.
pub fn release_label(e: &HistoryEntry) -> String {
    let live = e
        .recorded
        .get("release")
        .or_else(|| e.recorded.get("version"));
    match (e.recorded.get("rolled_back_from"), live) {
        (Some(from), Some(to)) => format!("{from} -> {to}"),
        (Some(from), None) => format!("{from} -> ?"),
        (None, Some(to)) => to.clone(),
        (None, None) => "-".into(),
    }
}

/// What a run is compared with: the same environment, script and mode (lines from before
/// modes were recorded count as deploys).
#[derive(Debug, Clone, Copy)]
pub struct Like<'a> {
    pub env: &'a str,
    pub script: &'a str,
    pub mode: &'a str,
}

impl Like<'_> {
    /// True when `e` is a real run (not dry, not interrupted) of the same kind.
    pub fn matches(&self, e: &HistoryEntry) -> bool {
        e.env == self.env
            && e.script == self.script
            && e.mode.as_deref().unwrap_or("deploy") == self.mode
            && !e.dry_run
            && !e.interrupted
    }
}

/// Returns the last run like `like` before run `before_run_id`.
///
/// If `before_run_id` is not in the history (the current run, not yet appended), every entry
/// counts as before it.
pub fn previous<'a>(
    history: &'a History,
    like: Like<'_>,
    before_run_id: &str,
) -> Option<&'a HistoryEntry> {
    let end = history
        .entries
        .iter()
        .position(|e| e.run_id == before_run_id)
        .unwrap_or(history.entries.len());
    history.entries[..end]
        .iter()
        .rev()
        .find(|e| like.matches(e))
}

#[cfg(test)]
mod tail_tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_only_whole_lines_of_the_tail() {
        let path = std::env::temp_dir().join(format!(
            "deployer-history-tail-{}.jsonl",
            std::process::id()
        ));
        let line = |n: u32| {
            format!(
                r#"{{"run_id":"r{n}","started_at":"t","finished_at":"t","env":"e","script":"s","duration_ms":1,"exit_code":0,"report":"x"}}"#
            )
        };
        let text: String = (0..100).map(|n| line(n) + "\n").collect();
        fs::write(&path, &text).expect("write");
        let all = read(&path).expect("read");
        assert_eq!(all.entries.len(), 100);
        // Within a byte bound and never stopped by a count: whole lines only.
        let tail =
            read_recent(&path, (line(99).len() * 3 + 10) as u64, LIKE, usize::MAX).expect("tail");
        let ids: Vec<&str> = tail.entries.iter().map(|e| e.run_id.as_str()).collect();
        assert_eq!(ids, ["r97", "r98", "r99"]);
        assert!(tail.warnings.is_empty(), "{:?}", tail.warnings);
        fs::remove_file(&path).expect("cleanup");
    }

    fn entry_line(n: usize, env: &str) -> String {
        // Lines of different lengths, so block edges fall anywhere in a line.
        let pad = "p".repeat(n % 97);
        format!(
            r#"{{"run_id":"r{n}","started_at":"t","finished_at":"t","env":"{env}","script":"s","score":{n}.0,"duration_ms":1,"exit_code":0,"report":"{pad}"}}"#
        )
    }

    const LIKE: Like<'static> = Like {
        env: "e",
        script: "s",
        mode: "deploy",
    };

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "deployer-history-{name}-{}.jsonl",
            std::process::id()
        ));
        fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn read_recent_reads_what_read_reads_when_it_reads_everything() {
        // Several blocks of lines, other environments, damaged and blank lines, with and
        // without a final newline: read_recent, asked for more than there is, must give
        // exactly what read gives, warnings and line numbers included.
        let mut lines: Vec<String> = (0..600)
            .map(|n| entry_line(n, if n % 3 == 0 { "other" } else { "e" }))
            .collect();
        lines[5] = "{not json".into();
        lines[300] = String::new();
        lines[301] = "  ".into();
        lines[598] = "{\"run_id\":".into();
        for (i, last_newline) in [true, false].into_iter().enumerate() {
            let mut text = lines.join("\n");
            if last_newline {
                text.push('\n');
            }
            let path = temp(&format!("recent-all-{i}"), &text);
            let all = read(&path).expect("read");
            let recent = read_recent(&path, u64::MAX, LIKE, usize::MAX).expect("recent");
            assert_eq!(recent, all, "final newline: {last_newline}");
            assert_eq!(all.warnings.len(), 2);
            assert!(
                all.warnings[0].contains("line 6 is damaged"),
                "{:?}",
                all.warnings
            );
            fs::remove_file(&path).expect("cleanup");
        }
        let first_only = temp("recent-one", "{not json");
        let h = read_recent(&first_only, u64::MAX, LIKE, 3).expect("recent");
        assert!(h.entries.is_empty());
        assert!(
            h.warnings[0].contains("line 1 is damaged"),
            "{:?}",
            h.warnings
        );
        fs::remove_file(&first_only).expect("cleanup");
    }

    #[test]
    fn read_recent_stops_at_the_nth_match_and_within_max_bytes() {
        let mut lines: Vec<String> = (0..2000)
            .map(|n| entry_line(n, if n % 2 == 0 { "other" } else { "e" }))
            .collect();
        // Far back: never read, so never warned about.
        lines[10] = "{not json".into();
        let text = lines.join("\n") + "\n";
        let path = temp("recent-stop", &text);
        let h = read_recent(&path, u64::MAX, LIKE, 9).expect("recent");
        let ids: Vec<&str> = h.entries.iter().map(|e| e.run_id.as_str()).collect();
        // From the 9th match back (r1983) to the end, in file order, others included.
        let want: Vec<String> = (1983..2000).map(|n| format!("r{n}")).collect();
        assert_eq!(ids, want);
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        // A damaged line among the recent ones has no known line number.
        lines[1995] = "{not json".into();
        let path2 = temp("recent-damaged", &(lines.join("\n") + "\n"));
        let h = read_recent(&path2, u64::MAX, LIKE, 9).expect("recent");
        assert_eq!(h.warnings.len(), 1);
        assert!(
            h.warnings[0].contains("a recent line is damaged"),
            "{:?}",
            h.warnings
        );
        // max_bytes bounds the scan whatever is found: whole lines only.
        // The last three lines and their newlines: the first of them may be cut, so it is
        // left out; one byte more takes the newline before it, so it is whole.
        let last3 = lines[1997..].join("\n").len() as u64 + 1;
        let ids = |max| {
            let h = read_recent(&path, max, LIKE, 9).expect("recent");
            h.entries.into_iter().map(|e| e.run_id).collect::<Vec<_>>()
        };
        assert_eq!(ids(last3), ["r1998", "r1999"]);
        assert_eq!(ids(last3 + 1), ["r1997", "r1998", "r1999"]);
        let missing = std::env::temp_dir().join("deployer-history-none.jsonl");
        assert_eq!(
            read_recent(&missing, 100, LIKE, 9).expect("missing"),
            History::default()
        );
        fs::remove_file(&path).expect("cleanup");
        fs::remove_file(&path2).expect("cleanup");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    use crate::sys::test_dir::TestDir;

    impl TestDir {
        fn file(&self) -> PathBuf {
            self.0.join(".deployer").join("history.jsonl")
        }
    }

    fn entry(run_id: &str, env: &str) -> HistoryEntry {
        HistoryEntry {
            run_id: run_id.into(),
            started_at: "2026-11-23T19:12:00.000Z".into(),
            finished_at: "2026-11-23T19:14:05.250Z".into(),
            env: env.into(),
            script: "deploy.rhai".into(),
            verdict: Some("PASS".into()),
            score: Some(86.0),
            duration_ms: 125_250,
            rollback: Some("not_needed".into()),
            dry_run: false,
            interrupted: false,
            mode: None,
            vars: BTreeMap::new(),
            recorded: BTreeMap::new(),
            exit_code: 0,
            report: format!(".deployer/runs/{run_id}/report.json"),
            hosts: None,
        }
    }

    fn line(e: &HistoryEntry) -> String {
        serde_json::to_string(e).expect("encode")
    }

    #[test]
    fn round_trip() {
        let d = TestDir::new("roundtrip");
        let p = d.file();
        let mut b = entry("r2", "prod");
        b.verdict = None;
        b.score = None;
        b.rollback = Some("failed".into());
        b.interrupted = true;
        b.exit_code = 130;
        append(&p, &entry("r1", "staging")).expect("append 1");
        append(&p, &b).expect("append 2");
        let h = read(&p).expect("read");
        assert_eq!(h.entries, vec![entry("r1", "staging"), b]);
        assert!(h.warnings.is_empty());
        let text = fs::read_to_string(&p).expect("text");
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn damaged_line_in_the_middle_is_skipped() {
        let d = TestDir::new("damaged");
        let p = d.file();
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let text = format!(
            "{}\n{{\"run_id\": \"x\", \"sta\n\n{{\"run_id\": \"only-id\"}}\n{}\n",
            line(&entry("r1", "prod")),
            line(&entry("r3", "prod"))
        );
        fs::write(&p, text).expect("write");
        let h = read(&p).expect("read");
        let ids: Vec<&str> = h.entries.iter().map(|e| e.run_id.as_str()).collect();
        assert_eq!(ids, vec!["r1", "r3"]);
        assert_eq!(h.warnings.len(), 2, "{:?}", h.warnings);
        assert!(
            h.warnings[0].starts_with("history.jsonl line 2 is damaged and was skipped: "),
            "{}",
            h.warnings[0]
        );
        assert!(
            h.warnings[1].starts_with("history.jsonl line 4 is damaged and was skipped: "),
            "{}",
            h.warnings[1]
        );
        assert!(h.warnings[1].contains("missing field"), "{}", h.warnings[1]);
    }

    #[test]
    fn truncated_last_line_then_append_keeps_new_entry() {
        let d = TestDir::new("truncated");
        let p = d.file();
        append(&p, &entry("r1", "prod")).expect("append");
        let cut = line(&entry("r2", "prod"));
        let mut f = OpenOptions::new().append(true).open(&p).expect("open");
        f.write_all(&cut.as_bytes()[..cut.len() / 2])
            .expect("write half");
        drop(f);
        append(&p, &entry("r3", "prod")).expect("append after crash");
        let h = read(&p).expect("read");
        let ids: Vec<&str> = h.entries.iter().map(|e| e.run_id.as_str()).collect();
        assert_eq!(ids, vec!["r1", "r3"]);
        assert_eq!(h.warnings.len(), 1);
        assert!(
            h.warnings[0].contains("line 2 is damaged"),
            "{}",
            h.warnings[0]
        );
        assert_eq!(h.entries[1], entry("r3", "prod"));
    }

    #[test]
    fn invalid_utf8_line_is_damaged_not_an_error() {
        let d = TestDir::new("utf8");
        let p = d.file();
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let mut bytes = line(&entry("r1", "prod")).into_bytes();
        bytes.extend_from_slice(b"\n{\"run_id\": \"\xff\xfe\"}\n");
        bytes.extend_from_slice(line(&entry("r2", "prod")).as_bytes());
        bytes.push(b'\n');
        fs::write(&p, bytes).expect("write");
        let h = read(&p).expect("read");
        assert_eq!(h.entries.len(), 2);
        assert_eq!(h.warnings.len(), 1);
        assert!(h.warnings[0].contains("line 2"), "{}", h.warnings[0]);
        assert!(h.warnings[0].contains("invalid UTF-8"), "{}", h.warnings[0]);
    }

    #[test]
    fn script_filter_and_mode_and_release_labels() {
        let mut a = entry("r1", "prod");
        a.script = "scripts/laravel.rhai".into();
        let mut b = entry("r2", "prod");
        b.mode = Some("rollback".into());
        b.recorded.insert("release".into(), "R1".into());
        b.recorded.insert("rolled_back_from".into(), "R2".into());
        let mut c = entry("r3", "prod");
        c.dry_run = true;
        c.mode = Some("deploy".into());
        let h = History {
            entries: vec![a.clone(), b.clone(), c.clone()],
            warnings: Vec::new(),
        };
        let ids = |v: Vec<&HistoryEntry>| v.iter().map(|e| e.run_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(recent(&h, None, Some("laravel"), 10)), ["r1"]);
        assert_eq!(ids(recent(&h, None, Some("laravel.rhai"), 10)), ["r1"]);
        assert_eq!(
            ids(recent(&h, None, Some("scripts/laravel.rhai"), 10)),
            ["r1"]
        );
        assert_eq!(ids(recent(&h, None, Some("deploy"), 10)), ["r3", "r2"]);
        assert!(recent(&h, None, Some("lara"), 10).is_empty());
        assert_eq!(mode_label(&a), "-");
        assert_eq!(mode_label(&b), "rollback");
        assert_eq!(mode_label(&c), "dry-run");
        assert_eq!(release_label(&a), "-");
        assert_eq!(release_label(&b), "R2 -> R1");
        c.recorded.insert("version".into(), "2.4.1".into());
        assert_eq!(release_label(&c), "2.4.1");
    }

    #[test]
    fn missing_file_is_empty() {
        let d = TestDir::new("missing");
        let h = read(&d.file()).expect("read");
        assert_eq!(h, History::default());
    }

    #[test]
    fn older_lines_without_optional_fields_load() {
        let d = TestDir::new("old");
        let p = d.file();
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(
            &p,
            "{\"run_id\":\"r0\",\"started_at\":\"a\",\"finished_at\":\"b\",\"env\":\"prod\",\
             \"script\":\"s.rhai\",\"duration_ms\":5,\"exit_code\":1,\"report\":\"r.json\"}\n",
        )
        .expect("write");
        let h = read(&p).expect("read");
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        let e = &h.entries[0];
        assert_eq!(
            (e.verdict.as_deref(), e.score, e.dry_run),
            (None, None, false)
        );
    }

    #[test]
    fn recent_and_previous() {
        let mut dry = entry("r4", "prod");
        dry.dry_run = true;
        let h = History {
            entries: vec![
                entry("r1", "prod"),
                entry("r2", "staging"),
                entry("r3", "prod"),
                dry,
                entry("r5", "prod"),
            ],
            warnings: vec![],
        };
        let ids = |v: Vec<&HistoryEntry>| v.iter().map(|e| e.run_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(recent(&h, None, None, 3)), vec!["r5", "r4", "r3"]);
        assert_eq!(
            ids(recent(&h, Some("prod"), None, 10)),
            vec!["r5", "r4", "r3", "r1"]
        );
        assert_eq!(ids(recent(&h, Some("qa"), None, 10)), Vec::<String>::new());
        assert_eq!(ids(recent(&h, None, None, 0)), Vec::<String>::new());

        let run = |e: Option<&HistoryEntry>| e.map(|e| e.run_id.clone());
        let like = |env| Like {
            env,
            script: "deploy.rhai",
            mode: "deploy",
        };
        assert_eq!(run(previous(&h, like("prod"), "r5")), Some("r3".into()));
        assert_eq!(run(previous(&h, like("prod"), "r3")), Some("r1".into()));
        assert_eq!(run(previous(&h, like("prod"), "r1")), None);
        assert_eq!(
            run(previous(&h, like("prod"), "r6-current")),
            Some("r5".into())
        );
        assert_eq!(run(previous(&h, like("staging"), "r5")), Some("r2".into()));
    }

    #[test]
    fn previous_compares_like_with_like() {
        let mut other = entry("r2", "prod");
        other.script = "other.rhai".into();
        let mut stopped = entry("r3", "prod");
        stopped.interrupted = true;
        let mut manual = entry("r4", "prod");
        manual.mode = Some("rollback".into());
        let h = History {
            entries: vec![entry("r1", "prod"), other, stopped, manual],
            warnings: vec![],
        };
        let like = Like {
            env: "prod",
            script: "deploy.rhai",
            mode: "deploy",
        };
        let found = previous(&h, like, "now").map(|e| e.run_id.as_str());
        assert_eq!(found, Some("r1"));
        let rollbacks = Like {
            mode: "rollback",
            ..like
        };
        let found = previous(&h, rollbacks, "now").map(|e| e.run_id.as_str());
        assert_eq!(found, Some("r4"));
    }
}

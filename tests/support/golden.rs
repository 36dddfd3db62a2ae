//! Golden files: compare a whole output with a committed expected text that may hold
//! wildcards, show a readable line diff when they differ, and rewrite the expected text
//! (keeping the wildcards of the lines that still match) when `DEPLOYER_BLESS=1`.
//!
//! Wildcards in an expected line (the syntax of cargo's snapbox, plus named kinds):
//!
//! | wildcard | matches |
//! |---|---|
//! | `[..]` | any text within the line, also none |
//! | `[DUR]` | a duration: `43ms`, `4µs`, `1.2s`, `23 ms`, `1m30s`, a range `0.87-80.58 ms` |
//! | `[ID]` | a run id: `20261202T095951Z-staging-493d` |
//! | `[TIME]` | a time stamp: `2026-12-02T09:59:51.751Z`, `2026-12-02 09:59:51`, `09:59:51` |
//! | `[HASH]` | six or more hex digits |
//! | `[N]` | a number: `7`, `2.5` |
//!
//! Before matching, the actual output is redacted: the test's folder becomes `[ROOT]`, the
//! local server's base URL `[URL]`, and the escape byte of ANSI styling `␛` (so a styled
//! output reads as text). Everything else is literal.

use regex::Regex;

/// The environment variable that rewrites expected files instead of comparing.
pub const BLESS: &str = "DEPLOYER_BLESS";

/// Whether this run rewrites expected files (`DEPLOYER_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var_os(BLESS).is_some_and(|v| v != "0" && !v.is_empty())
}

const DUR: &str = r"(?:[0-9]+(?:\.[0-9]+)?(?:-[0-9]+(?:\.[0-9]+)?)? ?(?:ns|µs|us|ms|s|m|h))+";
const ID: &str = r"[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9._-]+-[0-9a-f]{4}";
const TIME: &str = r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}[T ])?[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z?";
const HASH: &str = r"[0-9a-f]{6,}";
const NUM: &str = r"[0-9]+(?:\.[0-9]+)?";

/// The wildcards, each with the regex it stands for.
const WILDCARDS: [(&str, &str); 6] = [
    ("[..]", ".*?"),
    ("[DUR]", DUR),
    ("[ID]", ID),
    ("[TIME]", TIME),
    ("[HASH]", HASH),
    ("[N]", NUM),
];

/// One expected line, compiled.
struct Line {
    text: String,
    pattern: Option<Regex>,
}

impl Line {
    fn new(text: &str) -> Line {
        let mut regex = String::from("^");
        let mut rest = text;
        let mut wild = false;
        'scan: while !rest.is_empty() {
            for (token, re) in WILDCARDS {
                if let Some(after) = rest.strip_prefix(token) {
                    regex.push_str(re);
                    rest = after;
                    wild = true;
                    continue 'scan;
                }
            }
            // Up to the next `[` that might open a wildcard (at least one character).
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let next = rest[first..].find('[').map_or(rest.len(), |i| first + i);
            regex.push_str(&regex::escape(&rest[..next]));
            rest = &rest[next..];
        }
        regex.push('$');
        Line {
            text: text.to_string(),
            pattern: wild.then(|| Regex::new(&regex).expect("wildcard regex compiles")),
        }
    }

    fn matches(&self, actual: &str) -> bool {
        match &self.pattern {
            Some(re) => re.is_match(actual),
            None => self.text == actual,
        }
    }
}

/// One step of the alignment of expected lines with actual lines.
#[derive(Debug, PartialEq)]
enum Step {
    /// The expected line `.0` matches the actual line `.1`.
    Same(usize, usize),
    /// Expected line `.0` is missing from the output.
    Missing(usize),
    /// Actual line `.0` was not expected.
    Extra(usize),
}

/// Aligns expected and actual lines (longest common subsequence under `Line::matches`).
fn align(expected: &[Line], actual: &[&str]) -> Vec<Step> {
    let (n, m) = (expected.len(), actual.len());
    // best[i][j]: matches in expected[i..] and actual[j..].
    let mut best = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            best[i][j] = if expected[i].matches(actual[j]) {
                best[i + 1][j + 1] + 1
            } else {
                best[i + 1][j].max(best[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut steps) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && expected[i].matches(actual[j]) && best[i][j] == best[i + 1][j + 1] + 1
        {
            steps.push(Step::Same(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || best[i + 1][j] >= best[i][j + 1]) {
            steps.push(Step::Missing(i));
            i += 1;
        } else {
            steps.push(Step::Extra(j));
            j += 1;
        }
    }
    steps
}

fn compile(expected: &str) -> Vec<Line> {
    expected.lines().map(Line::new).collect()
}

/// Whether `actual` matches `expected` line by line (a missing last newline counts).
pub fn matches(expected: &str, actual: &str) -> bool {
    let lines = compile(expected);
    let actual: Vec<&str> = actual.lines().collect();
    lines.len() == actual.len() && lines.iter().zip(&actual).all(|(e, a)| e.matches(a))
}

/// A unified-style diff: `  ` a line that matches, `- ` expected but missing, `+ ` printed
/// but not expected; long runs of matching lines keep three lines of context by a change.
pub fn diff(expected: &str, actual: &str) -> String {
    let lines = compile(expected);
    let actual: Vec<&str> = actual.lines().collect();
    let steps = align(&lines, &actual);
    let mut out = String::new();
    let mut k = 0;
    while k < steps.len() {
        if let Step::Same(..) = steps[k] {
            let start = k;
            while k < steps.len() && matches!(steps[k], Step::Same(..)) {
                k += 1;
            }
            let run: Vec<usize> = steps[start..k]
                .iter()
                .filter_map(|s| match s {
                    Step::Same(_, j) => Some(*j),
                    _ => None,
                })
                .collect();
            // Three lines of context after a change and before the next one.
            let head = if start == 0 { 0 } else { 3 };
            let tail = if k == steps.len() { 0 } else { 3 };
            if run.len() > head + tail + 1 {
                for j in &run[..head] {
                    out.push_str(&format!("  {}\n", actual[*j]));
                }
                let cut = run.len() - head - tail;
                out.push_str(&format!("  ... ({cut} matching lines)\n"));
                for j in &run[run.len() - tail..] {
                    out.push_str(&format!("  {}\n", actual[*j]));
                }
            } else {
                for j in &run {
                    out.push_str(&format!("  {}\n", actual[*j]));
                }
            }
            continue;
        }
        match steps[k] {
            Step::Missing(i) => out.push_str(&format!("- {}\n", lines[i].text)),
            Step::Extra(j) => out.push_str(&format!("+ {}\n", actual[j])),
            Step::Same(..) => unreachable!(),
        }
        k += 1;
    }
    out
}

/// The new expected text for `actual`: the expected lines that still match are kept as they
/// are (with their wildcards); other lines are the actual ones with run ids, time stamps and
/// durations of timings replaced by their wildcards.
pub fn bless(expected: &str, actual: &str) -> String {
    let lines = compile(expected);
    let actual: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for step in align(&lines, &actual) {
        match step {
            Step::Same(i, _) => out.push_str(&lines[i].text),
            Step::Extra(j) => out.push_str(&wildcard(actual[j])),
            Step::Missing(_) => continue,
        }
        out.push('\n');
    }
    out
}

/// Replaces the volatile parts of one output line by wildcards: run ids, time stamps, hex
/// hashes after `sha256 `, and durations that follow `(`, `, `, `in `, `took `, `after ` or `over `.
fn wildcard(line: &str) -> String {
    let id = Regex::new(ID).expect("id regex");
    let time = Regex::new(&format!(r"\b{TIME}")).expect("time regex");
    let hash = Regex::new(&format!(r"sha256 `?{HASH}")).expect("hash regex");
    let dur =
        Regex::new(&format!(r"(\(|, |in |took |after |over ){DUR}\b")).expect("duration regex");
    let line = id.replace_all(line, "[ID]");
    let line = time.replace_all(&line, "[TIME]");
    let line = hash.replace_all(&line, |c: &regex::Captures| {
        if c[0].contains('`') {
            "sha256 `[HASH]".to_string()
        } else {
            "sha256 [HASH]".to_string()
        }
    });
    dur.replace_all(&line, "${1}[DUR]").into_owned()
}

/// Replaces `folder` by `[ROOT]`, `url` (when given) by `[URL]` and ESC by `␛` in `text`.
pub fn redact(text: &str, folder: &std::path::Path, url: Option<&str>) -> String {
    let mut text = text.replace(&folder.display().to_string(), "[ROOT]");
    if let Some(url) = url {
        text = text.replace(url, "[URL]");
    }
    text.replace('\u{1b}', "␛")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_lines_match_only_themselves() {
        assert!(matches("a [1/3] b\nc", "a [1/3] b\nc\n"));
        assert!(!matches("a b", "a  b"));
        assert!(!matches("a\nb", "a"));
        assert!(!matches("a", "a\nb"));
        // Regex characters in the expected text are literal.
        assert!(matches("x.*(y)+ $", "x.*(y)+ $"));
        assert!(!matches("x.y", "xzy"));
    }

    #[test]
    fn any_text_wildcard_stays_within_its_line() {
        assert!(matches("run [..] done", "run 42 things done"));
        assert!(matches("run [..] done", "run  done"));
        assert!(!matches("run [..] done", "run 42 things"));
        assert!(!matches("[..]", "a\nb"));
    }

    #[test]
    fn named_wildcards_match_their_kind_only() {
        assert!(matches("(took [DUR])", "(took 43ms)"));
        assert!(matches("(took [DUR])", "(took 4µs)"));
        assert!(matches("(took [DUR])", "(took 1.25s)"));
        assert!(matches("(took [DUR])", "(took 1m30s)"));
        assert!(matches("took [DUR]", "took 43 ms"));
        assert!(matches("(took [DUR])", "(took 0.87-80.58 ms)"));
        assert!(!matches("(took [DUR])", "(took soon)"));
        assert!(!matches("(took [DUR])", "(took 43)"));
        assert!(matches(
            "run [ID] ok",
            "run 20261202T095951Z-staging-493d ok"
        ));
        assert!(matches(
            "run [ID] ok",
            "run 20261202T095951Z-my-env-0a0f ok"
        ));
        assert!(!matches("run [ID] ok", "run 20261202-staging ok"));
        assert!(matches("at [TIME]", "at 2026-12-02T09:59:51.751Z"));
        assert!(matches("at [TIME]", "at 2026-12-02 09:59:51"));
        assert!(matches("at [TIME]", "at 09:59:51"));
        assert!(!matches("at [TIME]", "at noon"));
        assert!(matches("sha256 [HASH]", "sha256 7f368c69874d"));
        assert!(!matches("sha256 [HASH]", "sha256 7f36"));
        assert!(matches("[N]/100", "87.5/100"));
        assert!(!matches("[N]/100", "x/100"));
        // Brackets that are not wildcards stay literal.
        assert!(matches("[2/3] [DURATION]", "[2/3] [DURATION]"));
    }

    #[test]
    fn diff_marks_missing_and_extra_lines() {
        let d = diff("a\nb [DUR]\nc\n", "a\nb 3ms\nx\n");
        assert_eq!(d, "  a\n  b 3ms\n- c\n+ x\n");
    }

    #[test]
    fn diff_cuts_long_runs_of_matching_lines() {
        let same: String = (0..20).map(|i| format!("{i}\n")).collect();
        let d = diff(&format!("{same}end\n"), &format!("{same}END\n"));
        assert_eq!(
            d,
            "  ... (17 matching lines)\n  17\n  18\n  19\n- end\n+ END\n"
        );
    }

    #[test]
    fn bless_keeps_wildcards_of_matching_lines_and_redacts_new_ones() {
        let expected = "start [ID]\n  ✓ a ([DUR])\ngone\n";
        let actual = "start 20261202T095951Z-default-493d\n  ✓ a (4ms)\nnew (12ms) in 1.5s at 2026-12-02T09:59:51.751Z\n";
        let blessed = bless(expected, actual);
        assert_eq!(
            blessed,
            "start [ID]\n  ✓ a ([DUR])\nnew ([DUR]) in [DUR] at [TIME]\n"
        );
        assert!(matches(&blessed, actual));
        // Durations a script states (not timings) stay as written.
        assert_eq!(wildcard("sleep(\"30s\")"), "sleep(\"30s\")");
        assert_eq!(
            wildcard("- script: `d.rhai` (sha256 `7f368c69874d`)"),
            "- script: `d.rhai` (sha256 `[HASH]`)"
        );
    }

    #[test]
    fn redact_replaces_folder_url_and_escape() {
        let folder = std::path::Path::new("/tmp/t-1");
        let text = "in /tmp/t-1/x from http://127.0.0.1:4000/h \u{1b}[1mB\u{1b}[0m";
        assert_eq!(
            redact(text, folder, Some("http://127.0.0.1:4000")),
            "in [ROOT]/x from [URL]/h ␛[1mB␛[0m"
        );
    }
}

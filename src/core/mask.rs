//! Masking of secret values in any text that leaves the process: the one layer every
//! sink (terminal, run log, records, `--json`, hooks, the REPL) goes through.
//!
//! A secret is hidden in every form deployer or a common tool renders it in, not just
//! its literal bytes: each character may appear as itself or escaped (JSON, Rust/Rhai
//! debug, shell quoting, backslash, URL percent or form encoding, HTML entities, and
//! one such escape applied to another, as a debug string inside a JSON report). Each
//! line of a multi-line secret is hidden on its own (diagnostics indent the second
//! line, `-v` prints line by line), and so is its base64 text at all three byte
//! alignments (a secret inside `base64("user:" + secret)` for Basic auth). Every match
//! is replaced by [`MASK`].

use std::sync::RwLock;

/// The mask that replaces a secret value, in whatever form it was found.
pub const MASK: &str = "***";

/// The shortest secret accepted (in characters); also the shortest line of a multi-line
/// secret that is masked on its own: masking shorter text would garble ordinary output.
pub const MIN_SECRET_LEN: usize = 6;

/// A set of secret values to hide; shared by every writer of logs, errors and reports.
#[derive(Debug, Default)]
pub struct Masker {
    inner: RwLock<Compiled>,
}

#[derive(Debug, Default)]
struct Compiled {
    secrets: Vec<String>,
    patterns: Vec<Pattern>,
    /// For each byte, the patterns whose match can start with it: every other position
    /// is skipped at once, and only those patterns are tried at the others.
    by_first: Vec<Vec<usize>>,
    /// Bit set of the byte pairs a match can start with (every form is longer than one
    /// byte): most positions whose first byte fits are skipped on the second.
    pairs: Vec<u64>,
}

impl Compiled {
    fn may_start(&self, a: u8, b: u8) -> bool {
        let bit = usize::from(a) << 8 | usize::from(b);
        self.pairs
            .get(bit / 64)
            .is_some_and(|word| word >> (bit % 64) & 1 == 1)
    }
}

impl Masker {
    /// Adds a value to hide. Returns false (and hides nothing) when it is shorter than
    /// [`MIN_SECRET_LEN`] characters.
    pub fn add(&self, value: &str) -> bool {
        if value.chars().count() < MIN_SECRET_LEN {
            return false;
        }
        if let Ok(mut c) = self.inner.write() {
            if !c.secrets.iter().any(|s| s == value) {
                c.secrets.push(value.to_string());
                let mut forms = Vec::new();
                for text in texts_to_hide(value) {
                    forms.push(Pattern::new(&text));
                }
                for b64 in base64_cores(value.as_bytes()) {
                    forms.push(Pattern::new(&b64));
                }
                if c.by_first.is_empty() {
                    c.by_first = vec![Vec::new(); 256];
                    c.pairs = vec![0; 65536 / 64];
                }
                for p in forms {
                    let index = c.patterns.len();
                    for b in p.first_bytes() {
                        if !c.by_first[b as usize].contains(&index) {
                            c.by_first[b as usize].push(index);
                        }
                    }
                    for (a, b) in p.first_pairs() {
                        let bit = usize::from(a) << 8 | usize::from(b);
                        c.pairs[bit / 64] |= 1 << (bit % 64);
                    }
                    c.patterns.push(p);
                }
            }
        }
        true
    }

    /// Returns `text` with every form of every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let Ok(c) = self.inner.read() else {
            return text.to_string();
        };
        if c.patterns.is_empty() {
            return text.to_string();
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let (mut i, mut copied) = (0, 0);
        while i < bytes.len() {
            let next = bytes.get(i + 1).copied().unwrap_or(0);
            let candidates = match c.by_first.get(bytes[i] as usize) {
                Some(list) if !list.is_empty() && c.may_start(bytes[i], next) => list,
                _ => {
                    i += 1;
                    continue;
                }
            };
            // Leftmost-longest: of all the forms matching here, hide the longest.
            let end = candidates
                .iter()
                .filter_map(|&p| c.patterns.get(p)?.longest_at(bytes, i))
                .max();
            match (end, text.get(copied..i)) {
                (Some(end), Some(before)) if text.is_char_boundary(end) => {
                    out.push_str(before);
                    out.push_str(MASK);
                    i = end;
                    copied = end;
                }
                _ => i += 1,
            }
        }
        out.push_str(text.get(copied..).unwrap_or_default());
        out
    }

    #[cfg(test)]
    /// Masks every string (and every key) inside a JSON value, in place: for records
    /// that stay valid JSON once masked (report.json, `--json`, the hooks' report).
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        if !self.is_empty() {
            mask_json_with(value, &|s| self.mask(s));
        }
    }

    /// Returns true when no secret has been registered (masking is then free).
    pub fn is_empty(&self) -> bool {
        self.inner
            .read()
            .map(|c| c.patterns.is_empty())
            .unwrap_or(true)
    }
}

/// Applies `mask` to every string and every key inside a JSON value, in place.
pub fn mask_json_with(value: &mut serde_json::Value, mask: &dyn Fn(&str) -> String) {
    match value {
        serde_json::Value::String(s) => *s = mask(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_json_with(v, mask)),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                mask_json_with(&mut v, mask);
                map.insert(mask(&k), v);
            }
        }
        _ => {}
    }
}

/// The texts hidden for a secret: the value, and each line of a multi-line value that
/// is long enough (as is and trimmed), since output is often printed line by line.
fn texts_to_hide(value: &str) -> Vec<String> {
    let mut texts = vec![value.to_string()];
    let mut add = |t: &str| {
        if t.chars().count() >= MIN_SECRET_LEN && !texts.iter().any(|x| x == t) {
            texts.push(t.to_string());
        }
    };
    add(value.trim());
    if value.contains(['\n', '\r']) {
        for line in value.split(['\n', '\r']) {
            add(line);
            add(line.trim());
        }
    }
    texts
}

/// One form of a secret: a sequence of slots, each matching any of its alternatives.
#[derive(Debug)]
struct Pattern {
    slots: Vec<Slot>,
}

/// The alternatives of one slot, grouped by their first byte: at a position only the
/// group of the byte found there is tried.
#[derive(Debug)]
struct Slot {
    groups: Vec<(u8, Vec<Box<[u8]>>)>,
}

impl Slot {
    fn new(alternatives: Vec<String>) -> Slot {
        let mut groups: Vec<(u8, Vec<Box<[u8]>>)> = Vec::new();
        for alt in alternatives {
            let Some(&b) = alt.as_bytes().first() else {
                continue;
            };
            let alt: Box<[u8]> = alt.into_bytes().into_boxed_slice();
            match groups.iter_mut().find(|(g, _)| *g == b) {
                Some((_, list)) => list.push(alt),
                None => groups.push((b, vec![alt])),
            }
        }
        Slot { groups }
    }

    fn first_bytes(&self) -> Vec<u8> {
        self.groups.iter().map(|(b, _)| *b).collect()
    }

    /// The alternatives that may match at the start of `rest`.
    fn candidates(&self, rest: &[u8]) -> &[Box<[u8]>] {
        let Some(&b) = rest.first() else {
            return &[];
        };
        self.groups
            .iter()
            .find(|(g, _)| *g == b)
            .map(|(_, list)| list.as_slice())
            .unwrap_or_default()
    }
}

impl Pattern {
    /// Builds the pattern of `text`: runs of characters that are never escaped share a
    /// slot; every other character is a slot of its rendered forms.
    fn new(text: &str) -> Pattern {
        let mut slots = Vec::new();
        let mut run = String::new();
        for c in text.chars() {
            let forms = char_forms(c);
            if forms.len() == 1 {
                run.push(c);
                continue;
            }
            if !run.is_empty() {
                slots.push(Slot::new(vec![std::mem::take(&mut run)]));
            }
            slots.push(Slot::new(forms));
        }
        if !run.is_empty() {
            slots.push(Slot::new(vec![run]));
        }
        Pattern { slots }
    }

    fn first_bytes(&self) -> Vec<u8> {
        self.slots
            .first()
            .map(Slot::first_bytes)
            .unwrap_or_default()
    }

    /// The pairs of bytes a match can start with.
    fn first_pairs(&self) -> Vec<(u8, u8)> {
        let mut pairs = Vec::new();
        let Some(first) = self.slots.first() else {
            return pairs;
        };
        let second = self.slots.get(1).map(Slot::first_bytes).unwrap_or_default();
        for (a, alts) in &first.groups {
            for alt in alts {
                match alt.get(1) {
                    Some(&b) => pairs.push((*a, b)),
                    None => pairs.extend(second.iter().map(|&b| (*a, b))),
                }
            }
        }
        pairs
    }

    /// Returns the end of the longest match starting at `start`, if any. The set of
    /// reachable positions is tracked slot by slot, so overlapping forms (`'` and
    /// `'\''`) never make it backtrack.
    fn longest_at(&self, text: &[u8], start: usize) -> Option<usize> {
        // Most candidates fail on the first slot: decide that without allocating.
        let rest = text.get(start..).unwrap_or_default();
        let first = self.slots.first()?;
        if !first
            .candidates(rest)
            .iter()
            .any(|alt| rest.starts_with(alt))
        {
            return None;
        }
        let mut at = vec![start];
        for slot in &self.slots {
            let mut next: Vec<usize> = Vec::new();
            for &p in &at {
                let rest = text.get(p..).unwrap_or_default();
                for alt in slot.candidates(rest) {
                    let end = p + alt.len();
                    if rest.starts_with(alt) && !next.contains(&end) {
                        next.push(end);
                    }
                }
            }
            if next.is_empty() {
                return None;
            }
            at = next;
        }
        at.into_iter().max()
    }
}

/// Every form a character may take in rendered output. A letter or digit is only
/// itself; anything else may be escaped once or twice (a JSON-escaped debug string).
fn char_forms(c: char) -> Vec<String> {
    let mut forms = vec![c.to_string()];
    if c.is_ascii_alphanumeric() {
        return forms;
    }
    let once = escapes(c);
    for f in &once {
        push(&mut forms, f.clone());
    }
    for f in once {
        // The escaped form, escaped again: `\"` in a JSON string is `\\\"`.
        push(&mut forms, json_str(&f));
        push(&mut forms, debug_str(&f));
        push(&mut forms, percent_str(&f, true));
        push(&mut forms, percent_str(&f, false));
    }
    forms
}

fn push(forms: &mut Vec<String>, f: String) {
    if !forms.contains(&f) {
        forms.push(f);
    }
}

/// The single escapes of a character that is not a letter or digit.
fn escapes(c: char) -> Vec<String> {
    let mut out = Vec::new();
    let code = c as u32;
    // JSON (serde_json's own choice, then the others a JSON writer may make).
    out.push(json_str(&c.to_string()));
    if c == '/' {
        out.push("\\/".into());
    }
    // \uXXXX: for control and non-ASCII characters; HTML-safe writers use it for
    // punctuation too.
    // A character outside the BMP is a surrogate pair: two escapes in a row.
    let mut units = [0u16; 2];
    let units = c.encode_utf16(&mut units);
    out.push(units.iter().map(|u| format!("\\u{u:04x}")).collect());
    out.push(units.iter().map(|u| format!("\\u{u:04X}")).collect());
    // Rust and Rhai debug (`debug(s)`, a string inside a printed map).
    out.push(c.escape_debug().to_string());
    out.push(debug_str(&c.to_string()));
    // Shell: backslash escaping (`printf %q`) and a quote inside single quotes.
    if c.is_ascii_punctuation() || c == ' ' {
        out.push(format!("\\{c}"));
    }
    if c == '\'' {
        out.push(r"'\''".into());
        out.push(r#"'"'"'"#.into());
    }
    // URL: percent encoding (either case) and form encoding.
    out.push(percent_str(&c.to_string(), true));
    out.push(percent_str(&c.to_string(), false));
    if c == ' ' {
        out.push("+".into());
    }
    // HTML and XML (reports for browsers and CI: HTML, JUnit).
    match c {
        '&' => out.push("&amp;".into()),
        '<' => out.push("&lt;".into()),
        '>' => out.push("&gt;".into()),
        '"' => out.push("&quot;".into()),
        '\'' => out.push("&apos;".into()),
        _ => {}
    }
    out.push(format!("&#{code};"));
    out.push(format!("&#x{code:x};"));
    out.push(format!("&#x{code:X};"));
    out.retain(|f| f.chars().ne(std::iter::once(c)));
    out
}

/// A string's JSON form without the quotes, as serde_json writes it.
fn json_str(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

/// A string's Rust/Rhai debug form without the quotes.
fn debug_str(s: &str) -> String {
    let quoted = format!("{s:?}");
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

/// Percent-encodes every byte of `s` that is not an ASCII letter or digit.
fn percent_str(s: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

const B64_STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 of `bytes` (standard alphabet, no padding).
fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64_STANDARD[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The base64 text that `secret` produces wherever it sits in the encoded data: for each
/// of the three byte alignments, the characters that depend on the secret's bytes only
/// (standard and URL-safe alphabets).
fn base64_cores(secret: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for offset in 0..3usize {
        let mut data = vec![0u8; offset];
        data.extend_from_slice(secret);
        let encoded = base64(&data);
        // Character i holds bits [6i, 6i + 6); keep those inside the secret's bits.
        let first = (8 * offset).div_ceil(6);
        let end = 8 * (offset + secret.len()) / 6;
        let Some(core) = encoded.get(first..end) else {
            continue;
        };
        if core.len() < MIN_SECRET_LEN {
            continue;
        }
        let url_safe = core.replace('+', "-").replace('/', "_");
        for c in [core.to_string(), url_safe] {
            if !cores.contains(&c) {
                cores.push(c);
            }
        }
    }
    cores
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        let m = Masker::default();
        for s in secrets {
            assert!(m.add(s), "{s} refused");
        }
        m
    }

    #[test]
    fn masks_every_occurrence_longest_first() {
        let m = masker(&["hunter2", "hunter2-extended"]);
        assert_eq!(
            m.mask("token=hunter2-extended and hunter2"),
            "token=*** and ***"
        );
    }

    #[test]
    fn refuses_short_values() {
        let m = Masker::default();
        assert!(!m.add("abcde"));
        assert_eq!(m.mask("abcde"), "abcde");
        assert!(m.is_empty());
        assert!(m.add("abcdef"));
        assert_eq!(m.mask("x abcdef x"), "x *** x");
    }

    #[test]
    fn leaves_text_without_secrets_alone() {
        let m = masker(&["it's-a-secret"]);
        let text = "exit 1: 'it' is a secret? no, «ünïcode» stays";
        assert_eq!(m.mask(text), text);
        assert_eq!(Masker::default().mask(text), text);
    }

    #[test]
    fn masks_the_shell_quoted_form() {
        let m = masker(&["it's-a-secret"]);
        assert_eq!(m.mask(r"$ false 'it'\''s-a-secret'"), "$ false '***'");
        assert_eq!(m.mask(r#"'it'"'"'s-a-secret'"#), "'***'");
        assert_eq!(m.mask(r"it\'s-a-secret"), "***");
    }

    #[test]
    fn masks_json_and_debug_forms() {
        let secret = "q\"b\\s\tn\nc\u{1b}-end";
        let m = masker(&[secret]);
        let json = serde_json::to_string(secret).expect("a string serializes");
        assert_eq!(m.mask(&json), "\"***\"");
        assert_eq!(m.mask(&format!("{secret:?}")), "\"***\"");
        // Twice escaped: a debug string inside a JSON report.
        let twice = serde_json::to_string(&format!("v: {secret:?}")).expect("a string serializes");
        assert_eq!(m.mask(&twice), r#""v: \"***\"""#);
        // \u escapes in either case, as other JSON writers make them.
        assert_eq!(m.mask(r#"q\u0022b\\s\u0009n\u000Ac\u001B-end"#), "***");
        // Rust's debug form of a control character.
        assert_eq!(m.mask(r#"q\"b\\s\tn\nc\u{1b}-end"#), "***");
    }

    #[test]
    fn masks_url_and_html_encodings() {
        let m = masker(&["pa ss/w&rd"]);
        assert_eq!(m.mask("?p=pa%20ss%2Fw%26rd&x=1"), "?p=***&x=1");
        assert_eq!(m.mask("?p=pa+ss%2fw%26rd"), "?p=***");
        assert_eq!(m.mask("<td>pa ss/w&amp;rd</td>"), "<td>***</td>");
        let m = masker(&["naïve-secret"]);
        assert_eq!(m.mask("q=na%C3%AFve-secret"), "q=***");
        assert_eq!(m.mask(r#"{"q":"na\u00efve-secret"}"#), r#"{"q":"***"}"#);
        let m = masker(&["rocket-🚀-key"]);
        assert_eq!(m.mask(r"rocket-\ud83d\ude80-key"), "***");
        assert_eq!(m.mask("rocket-%F0%9F%9A%80-key"), "***");
    }

    #[test]
    fn masks_each_line_of_a_multi_line_secret() {
        let m = masker(&["first-line\nsecond-line\nab"]);
        assert_eq!(m.mask("first-line\nsecond-line\nab"), "***");
        assert_eq!(
            m.mask("error: first-line\n   | second-line"),
            "error: ***\n   | ***"
        );
        assert_eq!(m.mask("  | second-line"), "  | ***");
        // A line shorter than the minimum is not masked on its own.
        assert_eq!(m.mask("ab"), "ab");
    }

    #[test]
    fn base64_matches_a_reference_encoder() {
        // RFC 4648 test vectors.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn masks_base64_at_every_alignment() {
        let secret = "s3cr?t>>-value";
        let m = masker(&[secret]);
        for prefix in ["", "u", "us", "user:", "ab:"] {
            let encoded = base64(format!("{prefix}{secret}").as_bytes());
            let masked = m.mask(&format!("Authorization: Basic {encoded}=="));
            assert!(masked.contains(MASK), "{prefix}: {masked}");
            // What is left is the prefix's characters and at most 2 around the secret.
            let left = masked.len() - "Authorization: Basic ==".len() - MASK.len();
            assert!(left <= prefix.len() * 4 / 3 + 4, "{prefix}: {masked}");
            let url_safe = encoded.replace('+', "-").replace('/', "_");
            assert!(m.mask(&url_safe).contains(MASK), "{prefix}: url-safe");
        }
    }

    #[test]
    fn overlapping_forms_do_not_backtrack() {
        // Each `'\''` may be one quote or three: a search that tried every reading
        // of this near miss would take forever.
        let m = masker(&[&("'".repeat(20) + "z")]);
        let text = r"'\''".repeat(20) + "x";
        let started = std::time::Instant::now();
        assert_eq!(m.mask(&text), text);
        // Trying every reading would take minutes: a generous bound, not a speed test.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn masks_strings_and_keys_in_json_values() {
        let m = masker(&["tab\there"]);
        let mut v = serde_json::json!({"a": ["x tab\there"], "tab\there": 1, "n": 2});
        m.mask_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["x ***"], "***": 1, "n": 2}));
    }
}

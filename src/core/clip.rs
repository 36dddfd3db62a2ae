//! Clipping long messages for the console while keeping the part that names the cause.
//!
//! A failed command's message starts with what was run and ends with what the program said
//! (`error: disk full`), so clipping keeps the first lines and, above all, the last ones.

/// Lines of a message shown on the console: the first `head` lines, a marker saying how
/// many were left out, and the last `tail` lines; each line at most `width` characters,
/// cut in the middle so that its end stays visible.
pub fn head_and_tail(text: &str, head: usize, tail: usize, width: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    if lines.len() <= head + tail {
        out.extend(lines.iter().map(|l| clip_line(l, width)));
        return out;
    }
    out.extend(lines[..head].iter().map(|l| clip_line(l, width)));
    out.push(format!(
        "... {} more lines (the whole message is in run.log and report.json) ...",
        lines.len() - head - tail
    ));
    out.extend(
        lines[lines.len() - tail..]
            .iter()
            .map(|l| clip_line(l, width)),
    );
    out
}

/// Cuts a line longer than `width` characters in the middle, keeping its start and end.
pub fn clip_line(line: &str, width: usize) -> String {
    let n = line.chars().count();
    if n <= width || width < 20 {
        return line.to_string();
    }
    let keep_head = width / 3;
    let keep_tail = width - keep_head - 5;
    let head: String = line.chars().take(keep_head).collect();
    let tail: String = line.chars().skip(n - keep_tail).collect();
    format!("{head} ... {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_are_kept_whole() {
        assert_eq!(head_and_tail("a\nb", 2, 2, 80), vec!["a", "b"]);
        assert_eq!(head_and_tail("", 2, 2, 80), Vec::<String>::new());
    }

    #[test]
    fn long_messages_keep_their_end() {
        let text: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
        let shown = head_and_tail(&text.join("\n"), 2, 3, 80);
        assert_eq!(shown.len(), 6);
        assert_eq!(shown[0], "line 1");
        assert!(shown[2].contains("25 more lines"));
        assert_eq!(shown[5], "line 30");
    }

    #[test]
    fn long_lines_are_cut_in_the_middle() {
        let line = format!("start {} error: disk full", "x".repeat(500));
        let c = clip_line(&line, 60);
        assert!(c.chars().count() <= 60, "{c}");
        assert!(c.starts_with("start "));
        assert!(c.ends_with("error: disk full"));
        assert_eq!(clip_line("é".repeat(10).as_str(), 60), "é".repeat(10));
    }
}

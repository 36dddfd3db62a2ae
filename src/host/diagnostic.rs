//! Errors rendered like a compiler's: the message, `--> file:line:col`, the source line and
//! a caret, then where it was called from and what to do.

use rhai::{EvalAltResult, ParseError, Position};

use super::console::{Console, Style};
use super::sources::SourceMap;

/// A place in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub source: String,
    pub line: usize,
    pub col: usize,
}

impl Location {
    /// Returns the location of `pos` in `source`, if the position is known.
    pub fn of(source: &str, pos: Position) -> Option<Location> {
        Some(Location {
            source: source.to_string(),
            line: pos.line()?,
            col: pos.position().unwrap_or(1),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.col)
    }
}

/// One step outward from where the error happened.
#[derive(Debug, Clone)]
pub struct Frame {
    pub what: String,
    pub location: Location,
}

/// An error or warning about a script, with its place and hints.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub label: &'static str,
    pub message: String,
    pub location: Option<Location>,
    pub frames: Vec<Frame>,
    pub help: Vec<String>,
}

impl Diagnostic {
    /// Creates an error diagnostic.
    pub fn error(message: impl Into<String>, location: Option<Location>) -> Diagnostic {
        Diagnostic {
            label: "error",
            message: message.into(),
            location,
            frames: Vec::new(),
            help: Vec::new(),
        }
    }

    /// Adds a hint shown as `= help: ...`.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help.push(help.into());
        self
    }

    /// Builds a diagnostic from a compile error in `source`.
    pub fn from_parse(err: &ParseError, source: &str) -> Diagnostic {
        let message = err.err_type().to_string();
        Diagnostic::error(
            format!("syntax error: {message}"),
            Location::of(source, err.position()),
        )
    }

    /// Builds a diagnostic from a runtime error raised while running `source`.
    /// `describe` turns the innermost error into a message and hints.
    pub fn from_eval(
        err: &EvalAltResult,
        source: &str,
        describe: &dyn Fn(&EvalAltResult) -> (String, Vec<String>),
    ) -> Diagnostic {
        let mut frames = Vec::new();
        let mut current = source.to_string();
        let mut err = err;
        loop {
            match err {
                EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                    if let Some(location) = Location::of(&current, *pos) {
                        let what = if name.starts_with("anon$") {
                            "in a closure called here".to_string()
                        } else {
                            format!("in `{name}`, called here")
                        };
                        frames.push(Frame { what, location });
                    }
                    if !src.is_empty() {
                        current = src.to_string();
                    }
                    err = inner;
                }
                EvalAltResult::ErrorInModule(name, inner, pos) => {
                    if let Some(location) = Location::of(&current, *pos) {
                        frames.push(Frame {
                            what: format!("while loading module {name}, imported here"),
                            location,
                        });
                    }
                    current = name.to_string();
                    err = inner;
                }
                _ => break,
            }
        }
        let leaf_pos = match err {
            EvalAltResult::ErrorParsing(_, pos) => *pos,
            other => other.position(),
        };
        let (message, help) = match err {
            EvalAltResult::ErrorParsing(kind, _) => (format!("syntax error: {kind}"), vec![]),
            other => describe(other),
        };
        let mut location = Location::of(&current, leaf_pos);
        frames.reverse();
        if location.is_none() {
            // A native error without a position: the innermost call site is the best place.
            if let Some(first) = frames.first() {
                location = Some(first.location.clone());
                frames.remove(0);
            }
        }
        Diagnostic {
            label: "error",
            message,
            location,
            frames,
            help,
        }
    }

    /// Renders the diagnostic as (plain, styled) text, each ending with a newline.
    pub fn render(&self, sources: &SourceMap, console: &Console) -> (String, String) {
        let mut plain = String::new();
        let mut styled = String::new();
        let mut push = |p: &str, s: String| {
            plain.push_str(p);
            styled.push_str(&s);
        };
        let head = format!("{}: ", self.label);
        let style = if self.label == "error" {
            Style::Red
        } else {
            Style::Yellow
        };
        // Masked before clipping, so a cut never leaves part of a secret in clear.
        let message = console.mask(&self.message);
        let mut lines = message
            .lines()
            .map(|l| clip_middle(l, MAX_MESSAGE_LINE_CHARS));
        let first = lines.next().unwrap_or_default();
        let first = first.as_str();
        push(
            &format!("{head}{first}\n"),
            format!(
                "{}{}\n",
                console.paint(style, &head),
                console.paint(Style::Bold, first)
            ),
        );
        for more in lines {
            push(&format!("  {more}\n"), format!("  {more}\n"));
        }
        if let Some(loc) = &self.location {
            let (p, s) = snippet(loc, sources, console, "");
            push(&p, s);
        }
        for frame in &self.frames {
            let (p, s) = snippet(&frame.location, sources, console, &frame.what);
            push(&p, s);
        }
        for help in &self.help {
            let text = format!("  = help: {help}\n");
            push(&text, console.paint(Style::Cyan, &text));
        }
        (plain, styled)
    }
}

fn snippet(loc: &Location, sources: &SourceMap, console: &Console, what: &str) -> (String, String) {
    let arrow = if what.is_empty() {
        format!("  --> {loc}\n")
    } else {
        format!("  ::: {loc} ({what})\n")
    };
    let mut plain = arrow.clone();
    let mut styled = console.paint(Style::Cyan, &arrow);
    let Some(text) = sources.get(&loc.source) else {
        return (plain, styled);
    };
    let Some(line) = text.lines().nth(loc.line.saturating_sub(1)) else {
        return (plain, styled);
    };
    let num = loc.line.to_string();
    let pad = " ".repeat(num.len());
    let (line, caret) = clip(&console.mask(line), loc.col.saturating_sub(1));
    // Keep tabs under tabs so the caret lines up however the terminal renders them.
    let indent: String = line
        .chars()
        .take(caret)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let body = format!(" {pad} |\n {num} | {line}\n {pad} | {indent}");
    plain.push_str(&format!("{body}^\n"));
    styled.push_str(&format!("{body}{}\n", console.paint(Style::Red, "^")));
    (plain, styled)
}

/// Message lines longer than this many characters (a huge name in a parse error) are cut
/// in the middle.
const MAX_MESSAGE_LINE_CHARS: usize = 400;

/// Returns `line`, or its first and last `max / 2` characters around `…` when longer.
fn clip_middle(line: &str, max: usize) -> String {
    let len = line.chars().count();
    if len <= max {
        return line.to_string();
    }
    let half = max / 2;
    let head: String = line.chars().take(half).collect();
    let tail: String = line.chars().skip(len - half).collect();
    format!("{head}…{tail}")
}

/// Source lines longer than this many characters are shown clipped around the caret.
const MAX_SHOWN_CHARS: usize = 160;

/// Returns the part of `line` to show and the caret's character index in it: the whole line
/// when it is short, else [`MAX_SHOWN_CHARS`] characters around `caret` with `…` where
/// text was cut.
fn clip(line: &str, caret: usize) -> (String, usize) {
    let len = line.chars().count();
    if len <= MAX_SHOWN_CHARS {
        return (line.to_string(), caret);
    }
    let caret = caret.min(len);
    let start = caret
        .saturating_sub(MAX_SHOWN_CHARS / 2)
        .min(len - MAX_SHOWN_CHARS);
    let end = start + MAX_SHOWN_CHARS;
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(start).take(end - start));
    if end < len {
        shown.push('…');
    }
    (shown, caret - start + usize::from(start > 0))
}

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn long_message_lines_are_cut_in_the_middle() {
        let name = format!("unknown function: {}b()", "a".repeat(1_000_000));
        let cut = clip_middle(&name, 400);
        assert_eq!(cut.chars().count(), 401);
        assert!(cut.starts_with("unknown function: aaa") && cut.ends_with("aab()"));
        assert_eq!(clip_middle("short", 400), "short");
    }

    #[test]
    fn short_lines_are_whole() {
        assert_eq!(clip("let x = 1;", 4), ("let x = 1;".to_string(), 4));
    }

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let line = format!("{}X{}", "a".repeat(500_000), "b".repeat(500_000));
        let (shown, caret) = clip(&line, 500_000);
        assert!(
            shown.chars().count() <= MAX_SHOWN_CHARS + 2,
            "{}",
            shown.len()
        );
        assert_eq!(shown.chars().nth(caret), Some('X'));
        assert!(shown.starts_with('…') && shown.ends_with('…'));
        let (start, caret) = clip(&line, 3);
        assert!(start.starts_with("aaa") && start.ends_with('…'));
        assert_eq!(caret, 3);
        let (end, caret) = clip(&line, 1_000_000);
        assert!(end.starts_with('…') && !end.ends_with('…'));
        assert_eq!(end.chars().nth(caret - 1), Some('b'));
    }
}

//! The line editor's helper: completion of commands, functions, module functions and
//! variables; a hint with the signature of the function being called; input that goes on
//! to the next line while brackets or a string are open; matching brackets highlighted.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use rhai::{Engine, LexError, ParseErrorType};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter, MatchingBracketHighlighter};
use rustyline::hint::{Hint, Hinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::docs::{Vocabulary, KEYWORDS};
use super::session::COMMANDS;

/// Most overloads a hint shows.
const HINT_OVERLOADS: usize = 3;

/// Returns an engine that only parses: the script API's call-like syntax is registered, and
/// unknown variables are allowed (they may be in the session's scope).
pub fn parser() -> Engine {
    let mut engine = Engine::new_raw();
    crate::api::register_all(&mut engine);
    engine
}

/// Tells whether `input` is unfinished: a parse error of the "missing token / unexpected
/// end" kind at its very end (open brackets, an open string, `let x =`). Commands (`:`)
/// are always complete.
pub fn incomplete(parser: &Engine, input: &str) -> bool {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.starts_with(':') {
        return false;
    }
    let Err(err) = parser.compile(input) else {
        return false;
    };
    let at_end = || {
        let end = last_char_position(input);
        match (err.position().line(), err.position().position()) {
            (Some(l), Some(c)) => (l, c) >= end,
            (Some(l), None) => l >= end.0,
            _ => true,
        }
    };
    match err.err_type() {
        ParseErrorType::UnexpectedEOF => true,
        // Only backtick strings span lines; a `"` string left open is a mistake.
        ParseErrorType::BadInput(LexError::UnterminatedString) => {
            let (line, col) = (err.position().line(), err.position().position());
            let opening = line
                .and_then(|l| input.lines().nth(l.saturating_sub(1)))
                .and_then(|l| l.chars().nth(col.unwrap_or(1).saturating_sub(1)));
            opening == Some('`') || input.trim_end().ends_with('\\')
        }
        ParseErrorType::MissingToken(..)
        | ParseErrorType::MissingSymbol(..)
        | ParseErrorType::ExprExpected(..)
        | ParseErrorType::FnMissingBody(..)
        | ParseErrorType::FnMissingParams(..) => at_end(),
        _ => false,
    }
}

/// The 1-based line and column of the last character that is not white space.
fn last_char_position(input: &str) -> (usize, usize) {
    let mut pos = (1, 1);
    for (i, line) in input.lines().enumerate() {
        if !line.trim().is_empty() {
            pos = (i + 1, line.trim_end().chars().count());
        }
    }
    pos
}

/// The name of the function whose call encloses the end of `text`, or that `text` ends
/// with: `exec(["ls", ` → `exec`; `http::get` → `http::get`; `(1 + ` → none.
fn call_at_end(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    // Open brackets outside strings and comments, innermost last.
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' | '\'' => quote = Some(c),
                '/' if chars.get(i + 1) == Some(&'/') => {
                    while i < chars.len() && chars[i] != '\n' {
                        i += 1;
                    }
                }
                '(' | '[' | '{' => open.push((c, i)),
                ')' | ']' | '}' => {
                    open.pop();
                }
                _ => {}
            },
        }
        i += 1;
    }
    if quote.is_none() {
        let word = word_before(&chars, chars.len());
        if !word.is_empty() {
            return Some(word);
        }
    }
    // The nearest enclosing call, through arrays and maps being typed as its arguments.
    open.iter()
        .rev()
        .filter(|(c, _)| *c == '(')
        .find_map(|&(_, at)| {
            let mut end = at;
            while end > 0 && chars[end - 1] == ' ' {
                end -= 1;
            }
            let word = word_before(&chars, end);
            (!word.is_empty()).then_some(word)
        })
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == ':'
}

fn word_before(chars: &[char], end: usize) -> String {
    let mut start = end;
    while start > 0 && is_word_char(chars[start - 1]) {
        start -= 1;
    }
    let word: String = chars[start..end].iter().collect();
    word.trim_start_matches(':').to_string()
}

/// A signature shown after the cursor; never inserted into the line.
pub struct SignatureHint(String);

impl Hint for SignatureHint {
    fn display(&self) -> &str {
        &self.0
    }
    fn completion(&self) -> Option<&str> {
        None
    }
}

/// The REPL's rustyline helper.
pub struct ReplHelper {
    vocab: Arc<RwLock<Vocabulary>>,
    parser: Engine,
    brackets: MatchingBracketHighlighter,
    files: FilenameCompleter,
    color: bool,
}

impl ReplHelper {
    /// Creates the helper; `vocab` is kept current by the session.
    pub fn new(vocab: Arc<RwLock<Vocabulary>>, color: bool) -> ReplHelper {
        ReplHelper {
            vocab,
            parser: parser(),
            brackets: MatchingBracketHighlighter::new(),
            files: FilenameCompleter::new(),
            color,
        }
    }

    /// Completes the word that ends at `pos`; returns where it starts and the candidates.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        if before.starts_with(':') && !before.contains(' ') {
            let names = COMMANDS
                .iter()
                .map(|c| c.0.to_string())
                .filter(|c| c.starts_with(before))
                .collect();
            return (0, names);
        }
        let Ok(v) = self.vocab.read() else {
            return (pos, Vec::new());
        };
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !is_word_char(*c))
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        let word = &before[start..];
        if let Some(arg) = before.strip_prefix(":env ") {
            let names = v.envs.iter().filter(|e| e.starts_with(arg)).cloned();
            return (":env ".len(), names.collect());
        }
        if let Some(arg) = before.strip_prefix(":dry-run ") {
            let names = ["on", "off"].iter().filter(|e| e.starts_with(arg));
            return (":dry-run ".len(), names.map(|s| s.to_string()).collect());
        }
        if word.is_empty() || word.starts_with(|c: char| c.is_ascii_digit()) {
            return (pos, Vec::new());
        }
        let doc_arg = before.starts_with(":doc ") || before.starts_with(":functions ");
        let method = before[..start].ends_with('.');
        let mut out: Vec<String> = Vec::new();
        if word.contains("::") {
            out.extend(
                v.names()
                    .into_iter()
                    .filter(|n| n.starts_with(word))
                    .map(str::to_string),
            );
        } else {
            out.extend(
                v.names()
                    .into_iter()
                    .filter(|n| !n.contains("::") && n.starts_with(word))
                    .map(str::to_string),
            );
            if !method {
                out.extend(
                    v.modules
                        .iter()
                        .filter(|m| m.starts_with(word))
                        .map(|m| format!("{m}::")),
                );
            }
            if !method && !doc_arg {
                out.extend(v.vars.iter().filter(|n| n.starts_with(word)).cloned());
                out.extend(
                    KEYWORDS
                        .iter()
                        .filter(|k| k.starts_with(word))
                        .map(|k| k.to_string()),
                );
            }
        }
        out.sort();
        out.dedup();
        (start, out)
    }

    /// The signature hint for the text before the cursor.
    pub fn signature_hint(&self, before: &str) -> Option<String> {
        if before.trim_start().starts_with(':') {
            return None;
        }
        let name = call_at_end(before)?;
        let v = self.vocab.read().ok()?;
        let found = v.lookup(&name);
        if found.is_empty() {
            return None;
        }
        // The name is on the line already: show the parameters and the result.
        let mut sigs: Vec<&str> = found
            .iter()
            .map(|f| f.signature.strip_prefix(&f.name).unwrap_or(&f.signature))
            .collect();
        sigs.dedup();
        let more = sigs.len().saturating_sub(HINT_OVERLOADS);
        sigs.truncate(HINT_OVERLOADS);
        let mut text = format!("  {name}{}", sigs.join("  |  "));
        if more > 0 {
            text.push_str(&format!("  (+{more} more: :doc {name})"));
        }
        Some(text)
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        if line.starts_with(":load ") {
            return self.files.complete(line, pos, ctx);
        }
        let (start, names) = self.candidates(line, pos);
        let pairs = names
            .into_iter()
            .map(|n| Pair {
                display: n.clone(),
                replacement: n,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ReplHelper {
    type Hint = SignatureHint;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<SignatureHint> {
        if pos < line.len() {
            return None;
        }
        self.signature_hint(line).map(SignatureHint)
    }
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, pos: usize) -> Cow<'l, str> {
        if self.color {
            self.brackets.highlight(line, pos)
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color {
            Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, line: &str, pos: usize, kind: CmdKind) -> bool {
        self.color && self.brackets.highlight_char(line, pos, kind)
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if incomplete(&self.parser, ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::repl::docs::{FnInfo, Origin};

    #[test]
    fn open_brackets_and_strings_continue() {
        let p = parser();
        for open in [
            "fn f(x) {",
            "let m = #{",
            "exec([\"ls\",",
            "let s = `multi",
            "let x =",
            "if true { 1 } else {",
            "spawn([\"sleep\", \"1\"],",
        ] {
            assert!(incomplete(&p, open), "{open} should continue");
        }
        for done in [
            "1 + 1",
            "fn f(x) { x }",
            "foo(1 2)",
            "let m = #{ a: 1 };",
            ":help",
            "undefined_var",
            "let s = \"abc",
            "",
        ] {
            assert!(!incomplete(&p, done), "{done} should be complete");
        }
    }

    #[test]
    fn finds_the_call_being_typed() {
        assert_eq!(call_at_end("exec([\"a\", "), Some("exec".into()));
        assert_eq!(
            call_at_end("let r = http::get(url + \"(\", "),
            Some("http::get".into())
        );
        assert_eq!(
            call_at_end("http::wait_healthy"),
            Some("http::wait_healthy".into())
        );
        assert_eq!(call_at_end("exec([\"a\"]) + "), None);
        assert_eq!(call_at_end("f(#{ a: "), Some("f".into()));
        assert_eq!(call_at_end("(1 + "), None);
    }

    fn helper() -> ReplHelper {
        let vocab = Vocabulary {
            fns: vec![
                FnInfo {
                    name: "exec".into(),
                    signature: "exec(argv: Array) -> Map".into(),
                    doc: String::new(),
                    origin: Origin::Api,
                },
                FnInfo {
                    name: "http::wait_healthy".into(),
                    signature: "http::wait_healthy(url: String, opts: Map) -> Map".into(),
                    doc: String::new(),
                    origin: Origin::Api,
                },
            ],
            vars: vec!["executable".into()],
            modules: vec!["http".into()],
            ..Vocabulary::default()
        };
        ReplHelper::new(Arc::new(RwLock::new(vocab)), false)
    }

    #[test]
    fn completes_functions_modules_variables_and_commands() {
        let h = helper();
        assert_eq!(
            h.candidates("let r = exe", 11),
            (8, vec!["exec".to_string(), "executable".to_string()])
        );
        assert_eq!(h.candidates("ht", 2), (0, vec!["http::".to_string()]));
        assert_eq!(
            h.candidates("http::wa", 8),
            (0, vec!["http::wait_healthy".to_string()])
        );
        assert_eq!(h.candidates(":fu", 3), (0, vec![":functions".to_string()]));
        assert_eq!(
            h.signature_hint("exec(").as_deref(),
            Some("  exec(argv: Array) -> Map")
        );
    }
}

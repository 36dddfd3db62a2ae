//! What the REPL knows about callable names, for completion, hints, `:functions` and `:doc`:
//! signatures and documentation from Rhai's metadata (the doc comments of `src/api/*.rs`),
//! a table for the call-like syntax (`spawn`, `var`), the session's own functions and imported modules,
//! and Rhai's standard library.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// Where a function comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// deployer's script API.
    Api,
    /// A module the session imported.
    Module,
    /// A function defined in the session (typed or loaded).
    Session,
    /// Rhai's standard library.
    Std,
}

/// One callable function (one overload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnInfo {
    /// The name as called: `exec`, `http::get`, `checks::security_headers`.
    pub name: String,
    /// Such as `exec(argv: Array, opts: Map) -> Map`.
    pub signature: String,
    /// The documentation, without comment markers.
    pub doc: String,
    pub origin: Origin,
}

/// Everything completion and hints draw from; shared with the line editor.
#[derive(Debug, Default, Clone)]
pub struct Vocabulary {
    /// The script API, imported modules and session functions.
    pub fns: Vec<FnInfo>,
    /// Rhai's standard library (filled in the background at start).
    pub std: Vec<FnInfo>,
    /// Variables in the session's scope.
    pub vars: Vec<String>,
    /// Module names usable as `name::`.
    pub modules: Vec<String>,
    /// Environments of deployer.toml.
    pub envs: Vec<String>,
}

impl Vocabulary {
    /// Returns every overload named `name` (the API and session first, then Rhai's own).
    pub fn lookup(&self, name: &str) -> Vec<&FnInfo> {
        let mine: Vec<&FnInfo> = self.fns.iter().filter(|f| f.name == name).collect();
        if !mine.is_empty() {
            return mine;
        }
        self.std.iter().filter(|f| f.name == name).collect()
    }

    /// Returns every callable name.
    pub fn names(&self) -> BTreeSet<&str> {
        self.fns
            .iter()
            .chain(&self.std)
            .map(|f| f.name.as_str())
            .collect()
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    modules: BTreeMap<String, Meta>,
    #[serde(default)]
    functions: Vec<MetaFn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaFn {
    name: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    doc_comments: Vec<String>,
    #[serde(default)]
    access: String,
    #[serde(default)]
    is_anonymous: bool,
    #[serde(default, rename = "type")]
    kind: String,
}

/// Reads functions from Rhai's metadata JSON (`Engine::gen_fn_metadata_to_json`). Global
/// native functions get `global`; script functions are the session's; modules named in
/// `api_modules` are the API's, other modules were imported.
pub fn from_metadata(json: &str, global: Origin, api_modules: &BTreeSet<String>) -> Vec<FnInfo> {
    let Ok(meta) = serde_json::from_str::<Meta>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in &meta.functions {
        let origin = if f.kind == "script" {
            Origin::Session
        } else {
            global
        };
        push(&mut out, f, "", origin);
    }
    for (module, m) in &meta.modules {
        let origin = if api_modules.contains(module) {
            Origin::Api
        } else {
            Origin::Module
        };
        for f in &m.functions {
            push(&mut out, f, &format!("{module}::"), origin);
        }
    }
    out.sort_by(|a, b| (&a.name, &a.signature).cmp(&(&b.name, &b.signature)));
    out.dedup_by(|a, b| a.name == b.name && a.signature == b.signature);
    out
}

fn push(out: &mut Vec<FnInfo>, f: &MetaFn, prefix: &str, origin: Origin) {
    let callable = f
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && f.name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !callable || f.is_anonymous || f.access == "private" || f.name.starts_with("anon_") {
        return;
    }
    let signature = if f.signature.is_empty() {
        format!("{}()", f.name)
    } else {
        tidy_signature(&f.signature)
    };
    out.push(FnInfo {
        name: format!("{prefix}{}", f.name),
        signature: format!("{prefix}{signature}"),
        doc: doc_text(f.doc_comments.iter().map(String::as_str)),
        origin,
    });
}

/// Makes a Rust-flavoured signature read like Rhai: `&str` and `ImmutableString` are
/// strings, `Result<T, E>` returns `T`, and no `rhai::` paths.
fn tidy_signature(sig: &str) -> String {
    let mut s = sig
        .replace("rhai::", "")
        .replace("&mut ", "")
        .replace("&str", "String")
        .replace("ImmutableString", "String")
        .replace("INT", "i64")
        .replace("FLOAT", "f64");
    if let Some(at) = s.find("-> Result<") {
        let inner = &s[at + "-> Result<".len()..];
        let mut depth = 0usize;
        let mut end = inner.len();
        for (i, c) in inner.char_indices() {
            match c {
                '<' => depth += 1,
                '>' if depth > 0 => depth -= 1,
                ',' | '>' if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        s = format!("{}-> {}", &s[..at], inner[..end].trim());
    }
    s.trim_end_matches(" -> ()").to_string()
}

/// Joins doc comment lines (`/// text`, `/** text */`) into plain text.
fn doc_text<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        for l in line.lines() {
            let t = l.trim();
            let t = t
                .strip_prefix("///")
                .or_else(|| t.strip_prefix("/**"))
                .or_else(|| t.strip_prefix('*').filter(|r| !r.starts_with('/')))
                .unwrap_or(t);
            let t = t.strip_suffix("*/").unwrap_or(t);
            out.push(t.strip_prefix(' ').unwrap_or(t).trim_end().to_string());
        }
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// Reads a table of `(signature, documentation)` rows: the docs of call-like syntax that
/// has no metadata (`api::exec::SPAWN_DOC`, `api::env::VAR_DOC`). The name is the
/// signature up to its `(`.
pub fn from_table(rows: &[(&str, &str)]) -> Vec<FnInfo> {
    rows.iter()
        .map(|(signature, doc)| FnInfo {
            name: signature
                .split_once('(')
                .map_or(*signature, |(name, _)| name)
                .to_string(),
            signature: signature.to_string(),
            doc: doc.to_string(),
            origin: Origin::Api,
        })
        .collect()
}

/// Keywords that are called like functions and have no metadata.
pub fn keyword_functions() -> Vec<FnInfo> {
    let entries: [(&str, &str, &str); 6] = [
        (
            "Fn",
            "Fn(name: String) -> FnPtr",
            "Makes a function pointer from a function's name.",
        ),
        (
            "call",
            "call(f: FnPtr, args...)",
            "Calls a function pointer or closure.",
        ),
        (
            "curry",
            "curry(f: FnPtr, args...) -> FnPtr",
            "Binds the first arguments of a function pointer.",
        ),
        (
            "is_def_fn",
            "is_def_fn(name: String, params: i64) -> bool",
            "Tells whether a script function of that name and arity exists.",
        ),
        (
            "is_def_var",
            "is_def_var(name: String) -> bool",
            "Tells whether a variable of that name is in scope.",
        ),
        (
            "eval",
            "eval(script: String)",
            "Runs a script given as text, in the current scope.",
        ),
    ];
    entries
        .iter()
        .map(|(name, sig, doc)| FnInfo {
            name: name.to_string(),
            signature: sig.to_string(),
            doc: doc.to_string(),
            origin: Origin::Std,
        })
        .collect()
}

/// Rhai's keywords, for completion.
pub const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "do", "until", "return",
    "throw", "try", "catch", "break", "continue", "import", "export", "as", "true", "false",
    "private", "switch", "this", "global",
];

/// Renders `:doc` text: each overload's signature and documentation, examples indented.
pub fn render_doc(overloads: &[&FnInfo]) -> String {
    let mut out = String::new();
    let mut last_doc: Option<&str> = None;
    for f in overloads {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&f.signature);
        out.push('\n');
        if f.doc.is_empty() || last_doc == Some(f.doc.as_str()) {
            continue;
        }
        last_doc = Some(&f.doc);
        let mut in_code = false;
        for line in f.doc.lines() {
            let t = line.trim_start();
            if t.starts_with("```") {
                if !in_code {
                    out.push_str("\n  Example:\n");
                }
                in_code = !in_code;
                continue;
            }
            if in_code && line.trim().is_empty() {
                out.push('\n');
            } else if in_code {
                out.push_str(&format!("      {line}\n"));
            } else if matches!(t, "# Example" | "# Examples") {
                continue;
            } else if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    // Collapse runs of blank lines left by paragraph breaks before examples.
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_call_like_syntax_docs() {
        let fns = from_table(crate::api::exec::SPAWN_DOC);
        assert_eq!(fns.len(), 2, "{fns:?}");
        assert_eq!(fns[0].name, "spawn");
        assert_eq!(fns[0].signature, "spawn(command: Array) -> Process");
        assert_eq!(
            fns[1].signature,
            "spawn(command: Array, options: Map) -> Process"
        );
        assert!(fns[0].doc.contains("```rhai"), "{}", fns[0].doc);
        assert!(fns[0].doc.starts_with("Starts a program"), "{}", fns[0].doc);
        assert!(
            render_doc(&[&fns[0]]).contains("  Example:\n      let server = spawn("),
            "{}",
            render_doc(&[&fns[0]])
        );
        let vars = from_table(crate::api::env::VAR_DOC);
        assert_eq!(vars[0].signature, "var(name: String) -> String");
        assert_eq!(
            vars[1].signature,
            "var(name: String, default: Dynamic) -> Dynamic"
        );
    }

    #[test]
    fn tidies_signatures() {
        assert_eq!(
            tidy_signature("get(url: &str) -> Result<Map, Box<EvalAltResult>>"),
            "get(url: String) -> Map"
        );
        assert_eq!(
            tidy_signature("sleep(d: Dynamic) -> ()"),
            "sleep(d: Dynamic)"
        );
    }

    #[test]
    fn renders_examples_indented() {
        let f = FnInfo {
            name: "f".into(),
            signature: "f(x: i64)".into(),
            doc: "Does f.\n\n```rhai\nf(1);\n```".into(),
            origin: Origin::Api,
        };
        assert_eq!(
            render_doc(&[&f]),
            "f(x: i64)\n  Does f.\n\n  Example:\n      f(1);"
        );
    }
}

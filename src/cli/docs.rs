//! `deployer docs`: the script API's documentation outside the REPL: one function as the
//! REPL's `:doc` shows it, the list of functions, or the whole reference as Markdown
//! (docs/api.md, generated from the doc comments of `src/api/`).

use std::collections::BTreeMap;

use clap::Args;

use super::error::{CliError, CmdResult};
use super::repl::docs::{self, FnInfo, Origin, Vocabulary};
use crate::core::suggest::nearest;
use crate::host::console::{ColorChoice, Console, Verbosity};
use crate::host::state::HostOptions;
use crate::host::Host;

pub const EXAMPLES: &str = "\
Examples:
  deployer docs                      # every function of the script API, one line each
  deployer docs exec                 # what :doc exec shows in the REPL
  deployer docs http::wait_healthy
  deployer docs --markdown > docs/api.md";

/// Arguments of `deployer docs`.
#[derive(Debug, Args)]
pub struct DocsArgs {
    /// A function, such as `exec`, `http::get` or Rhai's `split`; none lists them all.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Print the whole API reference as Markdown (docs/api.md).
    #[arg(long, conflicts_with = "name")]
    pub markdown: bool,
}

/// What `:doc` knows in a fresh REPL that imported each module of the standard library
/// under its own name (`import "std/releases" as releases;`): the script API and its
/// call-like syntax, those modules, and Rhai's standard library.
pub fn vocabulary(console: &Console) -> Result<Vocabulary, String> {
    let host = Host::new(
        HostOptions::default(),
        console.clone(),
        crate::api::bindings(),
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    let api_modules = host.catalog().modules.keys().cloned().collect();
    let json = host
        .engine
        .gen_fn_metadata_to_json(false)
        .map_err(|e| format!("cannot read the API's metadata: {e}"))?;
    let mut fns = docs::from_metadata(&json, Origin::Api, &api_modules);
    fns.extend(docs::from_table(crate::api::exec::SPAWN_DOC));
    fns.extend(docs::from_table(crate::api::env::VAR_DOC));
    for (stem, text) in crate::host::sources::STDLIB {
        let ast = host
            .engine
            .compile(*text)
            .map_err(|e| format!("std/{stem} does not compile: {e}"))?;
        let json = host
            .engine
            .gen_fn_metadata_with_ast_to_json(&ast, false)
            .map_err(|e| format!("cannot read the metadata of std/{stem}: {e}"))?;
        fns.extend(
            docs::from_metadata(&json, Origin::Api, &api_modules)
                .into_iter()
                .filter(|f| f.origin == Origin::Session)
                .map(|f| FnInfo {
                    name: format!("{stem}::{}", f.name),
                    signature: format!("{stem}::{}", f.signature),
                    origin: Origin::Module,
                    ..f
                }),
        );
    }
    let std_json = rhai::Engine::new()
        .gen_fn_metadata_to_json(true)
        .unwrap_or_default();
    let mut std = docs::from_metadata(&std_json, Origin::Std, &Default::default());
    std.extend(docs::keyword_functions());
    Ok(Vocabulary {
        fns,
        std,
        ..Vocabulary::default()
    })
}

/// The documentation of `name` as `:doc NAME` shows it, or an error naming the nearest
/// function.
pub fn doc_of(v: &Vocabulary, name: &str) -> Result<String, String> {
    let name = name.trim().trim_end_matches("()");
    let found = v.lookup(name);
    if found.is_empty() {
        let names = v.names();
        // A typo of a module function's own name (`wait_healty`) finds it too, in each
        // module that has it (the native API's first).
        let hint = nearest(name, names.iter().copied())
            .map(|n| vec![n.to_string()])
            .or_else(|| {
                let short = |n: &'_ str| n.rsplit("::").next().unwrap_or(n).to_string();
                let shorts: Vec<String> = names.iter().map(|n| short(n)).collect();
                let found = nearest(&short(name), shorts.iter().map(String::as_str))?;
                let native = |n: &str| v.fns.iter().any(|f| f.name == n && f.origin == Origin::Api);
                let mut all: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| short(n) == found)
                    .collect();
                all.sort_by_key(|n| !native(n));
                Some(all.into_iter().map(str::to_string).collect())
            })
            .map(|all| {
                let quoted: Vec<String> = all.iter().map(|n| format!("`{n}`")).collect();
                format!("did you mean {}? ", quoted.join(" or "))
            })
            .unwrap_or_default();
        return Err(format!(
            "no function `{name}`; {hint}`deployer docs` lists them"
        ));
    }
    Ok(docs::render_doc(&found))
}

/// The script API's functions, one signature a line, grouped by module.
pub fn list(v: &Vocabulary) -> String {
    let mut out = String::from("The script API (deployer docs NAME explains one):\n");
    for (module, fns) in by_module(&v.fns) {
        out.push_str(&format!("\n{}\n", module_title(&module)));
        for f in fns {
            out.push_str(&format!("  {}\n", f.signature));
        }
    }
    out.push_str(
        "\nRhai's standard library (split, len, sort...) is documented too: deployer docs split\n",
    );
    out
}

fn module_title(module: &str) -> String {
    let module = module.trim_start_matches('~');
    if module.is_empty() {
        "Global functions".to_string()
    } else if let Some(stem) = module.strip_prefix("std/") {
        format!("std/{stem}")
    } else {
        format!("{module}::")
    }
}

/// The API's functions by module (`""` for global ones, `std/NAME` for the standard
/// library's modules, after the native ones), globals first.
fn by_module(fns: &[FnInfo]) -> BTreeMap<String, Vec<&FnInfo>> {
    let mut out: BTreeMap<String, Vec<&FnInfo>> = BTreeMap::new();
    for f in fns
        .iter()
        .filter(|f| matches!(f.origin, Origin::Api | Origin::Module))
    {
        let module = f.name.rsplit_once("::").map_or("", |(m, _)| m);
        let key = if f.origin == Origin::Module {
            // "~" sorts after every native module's name.
            format!("~std/{module}")
        } else {
            module.to_string()
        };
        out.entry(key).or_default().push(f);
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| (&a.name, &a.signature).cmp(&(&b.name, &b.signature)));
    }
    out
}

/// The whole API reference as Markdown: per module, per function, its signatures and
/// its documentation with examples.
pub fn markdown(v: &Vocabulary) -> String {
    let groups = by_module(&v.fns);
    let mut out = String::from(
        "# The script API\n\n\
         Generated from the doc comments of `src/api/` by `deployer docs --markdown`; do not edit.\n\
         Regenerate it with `cargo run -- docs --markdown > docs/api.md` (a test fails when it is\n\
         out of date). The native functions come first, then the modules of the standard library\n\
         (`std/releases`, ...: Rhai files in stdlib/), named as imported under their own name.\n\
         Rhai's own functions (`split`, `len`...): `deployer docs NAME` or https://rhai.rs/book/.\n\n",
    );
    for module in groups.keys() {
        let title = module_title(module);
        out.push_str(&format!("- [{title}](#{})\n", anchor(&title)));
    }
    for (module, fns) in &groups {
        out.push_str(&format!("\n## {}\n", module_title(module)));
        if let Some(stem) = module.strip_prefix("~std/") {
            out.push_str(&format!(
                "\n```rhai\nimport \"std/{stem}\" as {stem};\n```\n"
            ));
        }
        let mut i = 0;
        while i < fns.len() {
            let name = &fns[i].name;
            let same: Vec<&FnInfo> = fns[i..]
                .iter()
                .take_while(|f| &f.name == name)
                .copied()
                .collect();
            i += same.len();
            out.push_str(&format!("\n### `{name}`\n"));
            let mut last_doc: Option<&str> = None;
            for f in &same {
                out.push_str(&format!("\n```text\n{}\n```\n", f.signature));
                if f.doc.is_empty() || last_doc == Some(f.doc.as_str()) {
                    continue;
                }
                last_doc = Some(&f.doc);
                out.push('\n');
                out.push_str(&doc_markdown(&f.doc));
                out.push('\n');
            }
        }
    }
    out
}

/// A doc comment as Markdown: `# Example` headings become bold lines (they are not the
/// page's headings); code blocks stay as they are.
fn doc_markdown(doc: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for line in doc.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            in_code = !in_code;
        }
        if !in_code {
            if let Some(h) = t.strip_prefix("# ") {
                out.push_str(&format!("**{h}**\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// GitHub's anchor of a heading.
fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Runs `deployer docs`.
pub fn docs(args: DocsArgs, color: ColorChoice) -> CmdResult {
    let console = Console::new(Verbosity::Normal, color.enabled());
    let v = vocabulary(&console).map_err(CliError::failed)?;
    if args.markdown {
        print!("{}", markdown(&v));
        return Ok(());
    }
    match args.name {
        None => print!("{}", list(&v)),
        Some(name) => println!("{}", doc_of(&v, &name).map_err(CliError::usage)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, sig: &str, doc: &str) -> FnInfo {
        FnInfo {
            name: name.into(),
            signature: sig.into(),
            doc: doc.into(),
            origin: Origin::Api,
        }
    }

    #[test]
    fn markdown_groups_overloads_and_modules() {
        let v = Vocabulary {
            fns: vec![
                info(
                    "exec",
                    "exec(argv: Array)",
                    "Runs.\n\n# Example\n```rhai\nexec([\"true\"]);\n```",
                ),
                info(
                    "exec",
                    "exec(argv: Array, opts: Map)",
                    "Runs.\n\n# Example\n```rhai\nexec([\"true\"]);\n```",
                ),
                info("http::get", "http::get(url: String) -> Map", "Gets."),
            ],
            ..Vocabulary::default()
        };
        let md = markdown(&v);
        assert!(
            md.contains("- [Global functions](#global-functions)\n- [http::](#http)"),
            "{md}"
        );
        assert_eq!(md.matches("### `exec`").count(), 1, "{md}");
        assert_eq!(md.matches("Runs.").count(), 1, "{md}");
        assert!(
            md.contains("**Example**\n```rhai\nexec([\"true\"]);\n```"),
            "{md}"
        );
        assert!(md.contains("## http::\n\n### `http::get`\n\n```text\nhttp::get(url: String) -> Map\n```\n\nGets."), "{md}");
    }

    #[test]
    fn unknown_names_suggest_the_nearest() {
        let v = Vocabulary {
            fns: vec![info(
                "http::wait_healthy",
                "http::wait_healthy(url: String)",
                "",
            )],
            ..Vocabulary::default()
        };
        let e = doc_of(&v, "wait_healty").err().unwrap_or_default();
        assert!(e.contains("did you mean `http::wait_healthy`?"), "{e}");
        assert!(doc_of(&v, "http::wait_healthy()").is_ok());
    }
}

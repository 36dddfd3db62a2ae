//! `deployer repl`: try the script API interactively, with the same host as `deployer run`
//! (environments, `--dry-run`, secrets masked, `confirm()`), completion, signature hints,
//! multi-line input, `:` commands and hot reload of loaded files. Without a terminal it
//! reads one input per line and exits 2 if any failed.

pub(super) mod docs;
mod helper;
mod render;
mod session;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use clap::Args;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor, ExternalPrinter};

use anyhow::Context;

use super::error::{CliError, CmdResult};
use super::run::Setting;
use crate::host::console::{ColorChoice, Console, Verbosity};
use crate::watch::FileWatcher;
use docs::Vocabulary;
use helper::ReplHelper;
use session::{Outcome, Session, Settings};

pub const EXAMPLES: &str = "\
Examples:
  deployer repl
  deployer repl --env staging --dry-run
  deployer repl lib/helpers.rhai          # load a file, keep its functions, reload on save
  echo 'http::get(\"http://127.0.0.1:8080/health\").status' | deployer repl

In the REPL: :help, :functions [FILTER], :doc NAME, :scope, :load FILE, :reload,
:env [NAME], :dry-run on|off, :clear, :quit. History: $XDG_DATA_HOME/deployer/history
(or ~/.local/share/deployer/history).";

/// Arguments of `deployer repl`.
#[derive(Debug, Args)]
pub struct ReplArgs {
    /// A file to load first: it runs, its functions stay, and it reloads when it changes.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub setting: Setting,
}

/// Runs `deployer repl`; returns the exit code.
pub fn repl(args: ReplArgs, color: ColorChoice) -> CmdResult {
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let console = Console::new(Verbosity::Normal, color.enabled()).with_progress(
        crate::host::progress::allowed(color == ColorChoice::Never, false),
    );
    let settings = Settings {
        env: args.setting.env.clone(),
        vars: args.setting.vars.clone(),
        dry_run: args.setting.dry_run,
        yes: args.setting.yes,
        config_from: args
            .file
            .clone()
            .unwrap_or_else(|| PathBuf::from("repl.rhai")),
    };
    let vocab = Arc::new(RwLock::new(Vocabulary::default()));
    let std_docs = load_std_docs(vocab.clone());
    let session = match Session::new(&settings, console.clone(), vocab.clone()) {
        Ok(mut s) => {
            s.set_std_docs(std_docs);
            Arc::new(Mutex::new(s))
        }
        Err(e) => return Err(CliError::usage(e)),
    };
    let watcher = match FileWatcher::new() {
        Ok(w) => Some(w),
        Err(e) => {
            console.warn(&format!("{e}; loaded files will not reload by themselves"));
            None
        }
    };
    if let Some(w) = &watcher {
        lock(&session).set_watch(w.handle());
    }
    let mut failed = 0;
    if let Some(file) = &args.file {
        failed += usize::from(lock(&session).load(file) == Outcome::Failed);
    }
    let result = if terminal {
        interactive(session.clone(), vocab, watcher, console.color)
    } else {
        if let Some(w) = watcher {
            reload_on_change(w, session.clone(), Box::new(|m: String| eprintln!("{m}")));
        }
        piped(session.clone(), failed)
    };
    // The watcher thread shares the session, so it is never dropped: stop what it started.
    lock(&session).stop_processes();
    result
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads Rhai's standard library documentation in the background (it takes a moment):
/// completion and hints for it arrive shortly after start.
fn load_std_docs(vocab: Arc<RwLock<Vocabulary>>) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("deployer-std-docs".into())
        .spawn(move || {
            let json = rhai::Engine::new()
                .gen_fn_metadata_to_json(true)
                .unwrap_or_default();
            let mut std = docs::from_metadata(&json, docs::Origin::Std, &Default::default());
            std.extend(docs::keyword_functions());
            if let Ok(mut v) = vocab.write() {
                v.std = std;
            }
        })
        .ok()
}

/// Reloads the session's watched files when they change, and says so through `say`.
fn reload_on_change(
    watcher: FileWatcher,
    session: Arc<Mutex<Session>>,
    mut say: Box<dyn FnMut(String) + Send>,
) {
    let _ = std::thread::Builder::new()
        .name("deployer-repl-watch".into())
        .spawn(move || {
            while let Some(changed) = watcher.wait(None) {
                let message = lock(&session).files_changed(&changed);
                say(message.trim_end().to_string());
            }
        });
}

/// Returns where history is kept: `$XDG_DATA_HOME/deployer/history`, else
/// `~/.local/share/deployer/history`; never a relative path (not the current folder).
fn history_path() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = std::env::var_os("XDG_DATA_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local").join("share"))
        })?;
    Some(base.join("deployer").join("history"))
}

/// The terminal loop: rustyline with completion, hints, multi-line input and history.
fn interactive(
    session: Arc<Mutex<Session>>,
    vocab: Arc<RwLock<Vocabulary>>,
    watcher: Option<FileWatcher>,
    color: bool,
) -> CmdResult {
    let config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .bracketed_paste(true)
        .tab_stop(4)
        .indent_size(4)
        .build();
    let mut rl: Editor<ReplHelper, DefaultHistory> = Editor::with_config(config)
        .context("cannot use the terminal")
        .map_err(CliError::Failed)?;
    rl.set_helper(Some(ReplHelper::new(vocab, color)));
    let history = history_path();
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.load_history(path);
    }
    if let Some(w) = watcher {
        match rl.create_external_printer() {
            Ok(mut printer) => reload_on_change(
                w,
                session.clone(),
                Box::new(move |m: String| {
                    let _ = printer.print(m);
                }),
            ),
            Err(_) => reload_on_change(w, session.clone(), Box::new(|m: String| eprintln!("{m}"))),
        }
    }
    let banner = lock(&session).banner();
    lock(&session).note(&banner);
    let mut history_warned = false;
    loop {
        let prompt = lock(&session).prompt();
        match rl.readline(&prompt) {
            Ok(input) => {
                if input.trim().is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(input.as_str());
                if let Some(path) = &history {
                    if let Err(e) = rl.append_history(path) {
                        if !history_warned {
                            lock(&session)
                                .error(&format!("cannot save history in {}: {e}", path.display()));
                            history_warned = true;
                        }
                    }
                }
                if lock(&session).handle(&input) == Outcome::Quit {
                    break;
                }
            }
            // Ctrl-C at the prompt clears the line.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                return Err(CliError::Failed(
                    anyhow::Error::new(e).context("cannot read the terminal"),
                ))
            }
        }
    }
    Ok(())
}

/// Without a terminal: one input per line (continued while incomplete); exits 0, or 2 if
/// any input failed.
fn piped(session: Arc<Mutex<Session>>, mut failed: usize) -> CmdResult {
    let parser = helper::parser();
    let mut input = String::new();
    let handle = |input: &str, failed: &mut usize| -> bool {
        let outcome = lock(&session).handle(input);
        *failed += usize::from(outcome == Outcome::Failed);
        outcome == Outcome::Quit
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if !input.is_empty() {
            input.push('\n');
        }
        input.push_str(&line);
        if helper::incomplete(&parser, &input) {
            continue;
        }
        let quit = handle(&input, &mut failed);
        input.clear();
        if quit {
            break;
        }
    }
    if !input.trim().is_empty() {
        handle(&input, &mut failed);
    }
    if failed > 0 {
        return Err(CliError::Problems { count: failed });
    }
    Ok(())
}

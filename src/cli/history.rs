//! `deployer history`: recent runs from `.deployer/history.jsonl`.

use std::path::PathBuf;

use clap::Args;

use crate::config;
use anyhow::Context;

use super::error::{CliError, CmdResult};
use crate::host::console::{ColorChoice, Console, Verbosity};
use crate::store::history;

pub const EXAMPLES: &str = "\
Examples:
  deployer history
  deployer history --env production -n 20
  deployer history --script deploy
  deployer history --json | jq '.[0].score'";

/// Arguments of `deployer history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs of this environment.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Only runs of this script (its path, file name or file stem: `deploy`).
    #[arg(long, value_name = "NAME")]
    pub script: Option<String>,
    /// How many runs to show, newest first.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub count: usize,
    /// Print the entries as JSON.
    #[arg(long)]
    pub json: bool,
    /// The folder holding deployer.toml (or the runs); default: found from here upward.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The run id, marked when its run folder is gone (removed by `keep_runs`, or moved): the
/// history line stays, the report it points at does not.
fn run_cell(e: &history::HistoryEntry) -> String {
    if e.report.is_empty() || std::path::Path::new(&e.report).exists() {
        e.run_id.clone()
    } else {
        format!("{} (folder removed)", e.run_id)
    }
}

/// Runs `deployer history`.
pub fn history(args: HistoryArgs, color: ColorChoice) -> CmdResult {
    let console = Console::new(Verbosity::Normal, color.enabled());
    let start = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    // Resolved first, so the search upward passes through the real parent folders.
    let start = std::fs::canonicalize(&start).unwrap_or(start);
    let state_dir = match config::find(&start) {
        Some(path) => config::load(&path).map_err(CliError::usage)?.state_dir,
        None => start.join(".deployer"),
    };
    let path = state_dir.join("history.jsonl");
    let h = history::read(&path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(CliError::Failed)?;
    for w in &h.warnings {
        console.warn(w);
    }
    let entries = history::recent(&h, args.env.as_deref(), args.script.as_deref(), args.count);
    if args.json {
        let json = serde_json::to_string_pretty(&entries)
            .context("cannot write the history as JSON")
            .map_err(CliError::Failed)?;
        console.print(&json);
        return Ok(());
    }
    if entries.is_empty() {
        let filter = match (&args.env, &args.script) {
            (None, None) => String::new(),
            (e, s) => format!(
                " for{}{}",
                e.as_ref().map(|e| format!(" env {e}")).unwrap_or_default(),
                s.as_ref()
                    .map(|s| format!(" script {s}"))
                    .unwrap_or_default()
            ),
        };
        console.print(&format!("no runs recorded{filter} in {}", path.display()));
        return Ok(());
    }
    // A hosts column only when some run went to remote hosts.
    let with_hosts = entries.iter().any(|e| e.hosts.is_some());
    let hosts_cell = |e: &history::HistoryEntry| {
        if !with_hosts {
            return String::new();
        }
        let label = e
            .hosts
            .as_ref()
            .map(|h| h.label())
            .unwrap_or_else(|| "-".into());
        format!("{label:<34}  ")
    };
    console.print(&format!(
        "{:<20}  {:<12}  {:<8}  {:<8}  {:>5}  {:>9}  {:<10}  {:<20}  {}{}",
        "time",
        "env",
        "mode",
        "verdict",
        "score",
        "duration",
        "rollback",
        "release",
        if with_hosts {
            format!("{:<34}  ", "hosts")
        } else {
            String::new()
        },
        "run"
    ));
    for e in entries {
        let mut verdict = e.verdict.clone().unwrap_or_else(|| "-".into());
        if e.dry_run {
            // A dry run has no verdict of its own: its probes met the unchanged service.
            verdict = "-".into();
        }
        if e.interrupted {
            verdict = "INTERRUPTED".into();
        }
        console.print(&format!(
            "{:<20}  {:<12}  {:<8}  {:<8}  {:>5}  {:>9}  {:<10}  {:<20}  {}{}",
            e.started_at
                .get(..19)
                .unwrap_or(&e.started_at)
                .replace('T', " "),
            e.env,
            history::mode_label(e),
            verdict,
            e.score
                .map(|s| format!("{s:.0}"))
                .unwrap_or_else(|| "-".into()),
            crate::core::duration::format_duration(std::time::Duration::from_millis(e.duration_ms)),
            e.rollback.clone().unwrap_or_else(|| "-".into()),
            history::release_label(e),
            hosts_cell(e),
            run_cell(e)
        ));
    }
    Ok(())
}

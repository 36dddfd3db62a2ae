//! `release_journal::*` (the journal behind std/releases) and `record::*` (what a run
//! reports about itself into report.json and the history). Thin: the decisions live in
//! `core::releases`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{state, throw, Error};
use crate::core::releases::{EventKind, Journal, OnDisk, FILE};
use crate::report::atomic::write_atomic;

/// The marker file a bad release holds (kept for roots from before the journal).
const BAD_MARK: &str = ".deployer-bad";

fn journal_path(root: &str) -> PathBuf {
    Path::new(root).join(FILE)
}

fn at(ctx: &NativeCallContext, mut e: Error) -> Error {
    if e.position().is_none() {
        e.set_position(ctx.call_position());
    }
    e
}

/// Reads the journal of `root`; a missing file is an empty journal.
fn load(root: &str) -> Result<Journal, Error> {
    let path = journal_path(root);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::new()),
        Err(e) => {
            return Err(throw(
                "releases",
                format!("cannot read the release journal {}: {e}", path.display()),
            ))
        }
    };
    Journal::parse(&text).map_err(|e| {
        throw(
            "releases",
            format!(
                "the release journal {} is damaged ({e}); fix it or move it away (rollback targets are then unknown)",
                path.display()
            ),
        )
    })
}

/// The release folders of `root`, oldest (by name) first.
fn on_disk(root: &str) -> Vec<OnDisk> {
    let dir = Path::new(root).join("releases");
    let mut out: Vec<OnDisk> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .map(|name| OnDisk {
            marked_bad: dir.join(&name).join(BAD_MARK).exists(),
            name,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn kind_of(name: &str) -> Result<EventKind, Error> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        throw(
            "usage",
            format!("release_journal::add(): unknown event {name:?}; use one of created, live, failed, bad, rolled_back, rollback_failed, removed"),
        )
    })
}

fn opt_string(m: &Map, key: &str) -> Option<String> {
    m.get(key).filter(|v| !v.is_unit()).map(|v| v.to_string())
}

#[export_module]
pub mod journal_api {
    /// Adds an event to the release journal `ROOT/releases.json` (written atomically).
    /// Events: `created`, `live`, `failed`, `bad`, `rolled_back`, `rollback_failed`,
    /// `removed`; `extra` may hold `to` (a release) and `note` (why). Nothing is written
    /// in a dry run. std/releases calls this; scripts rarely need to.
    ///
    /// ```rhai
    /// release_journal::add("/srv/app", "20261123191200", "failed", #{ note: "trial did not start" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn add(
        ctx: NativeCallContext,
        root: &str,
        release: &str,
        event: &str,
        extra: Map,
    ) -> Result<(), Error> {
        let kind = kind_of(event).map_err(|e| at(&ctx, e))?;
        if state(&ctx)?.dry_run() {
            return Ok(());
        }
        let mut j = load(root).map_err(|e| at(&ctx, e))?;
        let now = crate::core::time::rfc3339(SystemTime::now());
        let ev = j.push(&now, release, kind);
        ev.to = opt_string(&extra, "to");
        ev.note = opt_string(&extra, "note");
        let path = journal_path(root);
        write_atomic(&path, j.to_text().as_bytes()).map_err(|e| {
            at(
                &ctx,
                throw(
                    "releases",
                    format!("cannot write the release journal {}: {e}", path.display()),
                ),
            )
        })
    }

    /// Returns the journal's events, oldest first: maps with `at`, `release`, `event` and,
    /// when set, `to` and `note`.
    ///
    /// ```rhai
    /// for e in release_journal::events("/srv/app") { print(`${e.at} ${e.release} ${e.event}`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn events(ctx: NativeCallContext, root: &str) -> Result<Array, Error> {
        let j = load(root).map_err(|e| at(&ctx, e))?;
        j.events
            .iter()
            .map(|e| {
                serde_json::to_value(e)
                    .map_err(|e| throw("internal", e.to_string()))
                    .and_then(|v| {
                        rhai::serde::to_dynamic(v).map_err(|e| throw("internal", e.to_string()))
                    })
            })
            .collect()
    }

    /// Returns the release a rollback from the live one goes to: the one live before it,
    /// never one that never went live, is marked bad or is gone. Throws an error of kind
    /// `rollback` saying why there is none.
    ///
    /// ```rhai
    /// let target = release_journal::rollback_target("/srv/app", "20261123191200");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn rollback_target(
        ctx: NativeCallContext,
        root: &str,
        live: Dynamic,
    ) -> Result<String, Error> {
        let j = load(root).map_err(|e| at(&ctx, e))?;
        let live = (!live.is_unit()).then(|| live.to_string());
        j.rollback_target(live.as_deref(), &on_disk(root))
            .map_err(|why| {
                at(
                    &ctx,
                    throw(
                        "rollback",
                        format!(
                            "cannot roll back{} in {}/releases: {why}",
                            live.as_deref()
                                .map(|l| format!(" from release {l}"))
                                .unwrap_or_default(),
                            root.trim_end_matches('/')
                        ),
                    ),
                )
            })
    }

    /// Returns the releases pruning removes to keep `keep` good ones (oldest first): never
    /// the live one or the rollback target; bad releases and failed trials do not count.
    ///
    /// ```rhai
    /// let old = release_journal::prune_plan("/srv/app", "20261123191200", 5);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn prune_plan(
        ctx: NativeCallContext,
        root: &str,
        live: Dynamic,
        keep: i64,
    ) -> Result<Array, Error> {
        let j = load(root).map_err(|e| at(&ctx, e))?;
        let live = (!live.is_unit()).then(|| live.to_string());
        let keep = usize::try_from(keep).unwrap_or(0);
        Ok(j.prune_plan(live.as_deref(), &on_disk(root), keep)
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }

    /// True when the release was marked bad (in the journal or with its marker file).
    ///
    /// ```rhai
    /// release_journal::is_bad("/srv/app", "20261123191200");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn is_bad(ctx: NativeCallContext, root: &str, release: &str) -> Result<bool, Error> {
        let j = load(root).map_err(|e| at(&ctx, e))?;
        Ok(j.is_bad(release)
            || Path::new(root)
                .join("releases")
                .join(release)
                .join(BAD_MARK)
                .exists())
    }
}

#[export_module]
pub mod record_api {
    /// Records a fact about this run in its report.json (`recorded`) and history line:
    /// `release` (what is live at the end), `rolled_back_from`, `version`, or any key.
    /// std/releases records `release` and `rolled_back_from` itself. Dry runs record
    /// nothing.
    ///
    /// ```rhai
    /// record::set("version", "2.4.1");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set(ctx: NativeCallContext, key: &str, value: Dynamic) -> Result<(), Error> {
        let st = state(&ctx)?;
        if key.is_empty() {
            return Err(at(
                &ctx,
                throw(
                    "usage",
                    "record::set(): the key is empty; give a name such as \"version\"",
                ),
            ));
        }
        if st.dry_run() {
            return Ok(());
        }
        if let Ok(mut r) = st.recorded.lock() {
            r.insert(key.to_string(), value.to_string());
        }
        Ok(())
    }

    /// Returns what this run recorded with `record::set`, as a map.
    ///
    /// ```rhai
    /// let live = record::get()["release"];
    /// ```
    #[rhai_fn(return_raw)]
    pub fn get(ctx: NativeCallContext) -> Result<Map, Error> {
        let st = state(&ctx)?;
        let r = st.recorded.lock().map(|r| r.clone()).unwrap_or_default();
        Ok(r.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

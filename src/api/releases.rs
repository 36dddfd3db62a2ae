//! `release_journal::*` (the journal behind std/releases) and `record::*` (what a run
//! reports about itself into report.json and the history). Thin: the decisions live in
//! `core::releases`, the same for a root on this machine and on the current host of
//! `on(...)` (read and written through `fs`'s host-aware helpers).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{state, throw, Error};
use crate::core::releases::{EventKind, Journal, OnDisk, FILE};
use crate::host::state::HostState;
use crate::remote::files::{self, Op};

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

/// Where the journal is, as the messages name it: `host:path` inside `on(...)`.
fn shown_path(st: &HostState, path: &Path) -> String {
    match st.remote.current() {
        Some(h) => format!("{h}:{}", path.display()),
        None => path.display().to_string(),
    }
}

/// Reads the journal of `root` (here, or on the current host); a missing file is an
/// empty journal.
fn load(st: &HostState, root: &str) -> Result<Journal, Error> {
    let path = journal_path(root);
    let text = match crate::api::fs::read_opt(st, &path.display().to_string()) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(Journal::new()),
        Err(e) => {
            return Err(throw(
                "releases",
                format!(
                    "cannot read the release journal {}: {}",
                    shown_path(st, &path),
                    crate::api::error::message_of(&e)
                ),
            ))
        }
    };
    Journal::parse(&text).map_err(|e| {
        throw(
            "releases",
            format!(
                "the release journal {} is damaged ({e}); fix it or move it away (rollback targets are then unknown)",
                shown_path(st, &path)
            ),
        )
    })
}

/// The release folders of `root` (here, or on the current host), oldest first
/// (`core::releases::compare_names`).
fn on_disk(st: &HostState, root: &str) -> Result<Vec<OnDisk>, Error> {
    let Some(host) = st.remote.current() else {
        return Ok(on_disk_here(root));
    };
    let op = Op::ReleaseDirs {
        root,
        mark: BAD_MARK,
    };
    let a = crate::api::fs::on_host(st, &host, &op, "cannot list the releases of", root)?;
    Ok(files::release_dirs(&a)
        .into_iter()
        .map(|(name, marked_bad)| OnDisk { name, marked_bad })
        .collect())
}

fn on_disk_here(root: &str) -> Vec<OnDisk> {
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
    out.sort_by(|a, b| crate::core::releases::compare_names(&a.name, &b.name));
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
        let st = state(&ctx)?;
        if st.dry_run() {
            return Ok(());
        }
        let mut j = load(&st, root).map_err(|e| at(&ctx, e))?;
        let now = crate::core::time::rfc3339(SystemTime::now());
        let ev = j.push(&now, release, kind);
        ev.to = opt_string(&extra, "to");
        ev.note = opt_string(&extra, "note");
        let path = journal_path(root);
        crate::api::fs::write_file(&st, &path.display().to_string(), &j.to_text()).map_err(|e| {
            at(
                &ctx,
                throw(
                    "releases",
                    format!(
                        "cannot write the release journal {}: {}",
                        shown_path(&st, &path),
                        crate::api::error::message_of(&e)
                    ),
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
        let j = load(&*state(&ctx)?, root).map_err(|e| at(&ctx, e))?;
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
        let st = state(&ctx)?;
        let j = load(&st, root).map_err(|e| at(&ctx, e))?;
        let live = (!live.is_unit()).then(|| live.to_string());
        let disk = on_disk(&st, root).map_err(|e| at(&ctx, e))?;
        j.rollback_target(live.as_deref(), &disk).map_err(|why| {
            at(
                &ctx,
                throw(
                    "rollback",
                    format!(
                        "cannot roll back{} in {}/releases: {why}",
                        live.as_deref()
                            .map(|l| format!(" from release {l}"))
                            .unwrap_or_default(),
                        shown_path(&st, Path::new(root.trim_end_matches('/')))
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
        let st = state(&ctx)?;
        let j = load(&st, root).map_err(|e| at(&ctx, e))?;
        let live = (!live.is_unit()).then(|| live.to_string());
        let keep = usize::try_from(keep).unwrap_or(0);
        let disk = on_disk(&st, root).map_err(|e| at(&ctx, e))?;
        Ok(j.prune_plan(live.as_deref(), &disk, keep)
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }

    /// Returns a new release id such as `20261202T135501.123Z-4f2a`: the UTC time to the
    /// millisecond and 4 hex characters. Two ids made by one run never share a
    /// millisecond, so they never collide and sort in the order they were made; std/releases
    /// (`releases::new_id()`) calls this.
    ///
    /// ```rhai
    /// let id = release_journal::new_id();
    /// ```
    pub fn new_id() -> String {
        crate::core::releases::new_id(SystemTime::now())
    }

    /// Returns release names sorted oldest first: ids of `new_id()` and the older digit
    /// forms (`20261123191200`, `20261123191200123`) by the time they carry, other names
    /// after them by name.
    ///
    /// ```rhai
    /// let names = release_journal::sort(["20261202T135501.123Z-4f2a", "20261123191200"]);
    /// ```
    pub fn sort(names: Array) -> Array {
        let mut v: Vec<(String, Dynamic)> = names.into_iter().map(|d| (d.to_string(), d)).collect();
        v.sort_by(|a, b| crate::core::releases::compare_names(&a.0, &b.0));
        v.into_iter().map(|(_, d)| d).collect()
    }

    /// True when the release was marked bad (in the journal or with its marker file).
    ///
    /// ```rhai
    /// release_journal::is_bad("/srv/app", "20261123191200");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn is_bad(ctx: NativeCallContext, root: &str, release: &str) -> Result<bool, Error> {
        let st = state(&ctx)?;
        let j = load(&st, root).map_err(|e| at(&ctx, e))?;
        if j.is_bad(release) {
            return Ok(true);
        }
        let mark = Path::new(root)
            .join("releases")
            .join(release)
            .join(BAD_MARK);
        Ok(match st.remote.current() {
            None => mark.exists(),
            Some(host) => {
                let m = mark.display().to_string();
                let a = crate::api::fs::on_host(
                    &st,
                    &host,
                    &Op::Probe { path: &m },
                    "cannot look at",
                    &m,
                )
                .map_err(|e| at(&ctx, e))?;
                files::probe(&a).exists
            }
        })
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

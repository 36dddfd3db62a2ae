//! `backups::*`: retention of backup folders (by age and count, never the newest verified
//! backup). Thin: the decision lives in `core::retention`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{state, throw, Error};
use crate::core::retention::{plan, Backup, Policy};

/// The suffix of the file that marks a backup verified (std/postgres writes it).
pub const VERIFIED_SUFFIX: &str = ".verified";

fn at(ctx: &NativeCallContext, mut e: Error) -> Error {
    if e.position().is_none() {
        e.set_position(ctx.call_position());
    }
    e
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn whole(opts: &Map, key: &str, default: i64) -> Result<i64, Error> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => match v.as_int() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(throw(
                "usage",
                format!("backups::prune(): {key} must be a whole number of at least 1, got {v}"),
            )),
        },
    }
}

#[export_module]
pub mod backups_api {
    /// Deletes old backups in `dir` after a successful deploy: those older than
    /// `keep_days` (14) and those beyond the newest `keep` (30), but never the newest
    /// verified backup (one with a `NAME.verified` file beside it, as `pg::backup` writes).
    /// `suffix` limits it to files ending so (such as ".dump"). Returns the names deleted;
    /// a dry run only says what it would delete.
    ///
    /// ```rhai
    /// let gone = backups::prune("backups", #{ keep_days: 14, keep: 30, suffix: ".dump" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn prune(ctx: NativeCallContext, dir: &str, opts: Map) -> Result<Array, Error> {
        crate::api::opts::check_keys("backups::prune", &opts, &["keep_days", "keep", "suffix"])
            .map_err(|e| at(&ctx, e))?;
        let policy = Policy {
            keep_days: u32::try_from(whole(&opts, "keep_days", 14).map_err(|e| at(&ctx, e))?)
                .unwrap_or(u32::MAX),
            keep: usize::try_from(whole(&opts, "keep", 30).map_err(|e| at(&ctx, e))?)
                .unwrap_or(usize::MAX),
        };
        let suffix = opts
            .get("suffix")
            .map(|s| s.to_string())
            .unwrap_or_default();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            at(
                &ctx,
                throw(
                    "fs",
                    format!("backups::prune(): cannot read the backup folder {dir}: {e}"),
                ),
            )
        })?;
        let mut found = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file()
                || name.starts_with('.')
                || name.ends_with(VERIFIED_SUFFIX)
                || !name.ends_with(&suffix)
            {
                continue;
            }
            found.push(Backup {
                verified: Path::new(dir)
                    .join(format!("{name}{VERIFIED_SUFFIX}"))
                    .exists(),
                modified: meta.modified().map(secs).unwrap_or(0),
                name,
            });
        }
        let doomed = plan(&found, secs(SystemTime::now()), policy);
        let st = state(&ctx)?;
        let mut out = Array::new();
        for name in doomed {
            let path = Path::new(dir).join(&name);
            if st.dry_run() {
                st.console
                    .info(&format!("would remove: {}", path.display()));
            } else {
                std::fs::remove_file(&path).map_err(|e| {
                    at(
                        &ctx,
                        throw(
                            "fs",
                            format!("backups::prune(): cannot remove {}: {e}", path.display()),
                        ),
                    )
                })?;
                let _ =
                    std::fs::remove_file(Path::new(dir).join(format!("{name}{VERIFIED_SUFFIX}")));
            }
            out.push(name.into());
        }
        if !out.is_empty() {
            st.console.info(&format!(
                "removed {} old backup(s) from {dir} (keep_days {}, keep {})",
                out.len(),
                policy.keep_days,
                policy.keep
            ));
        }
        Ok(out)
    }
}

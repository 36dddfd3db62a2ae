//! `fs::*`: files, folders, symlinks, disk and ports, for the standard library (releases,
//! preflight checks, log scans). Inside `on(...)` they act on the current host, through
//! `crate::remote::files` over its connection. Changes are only described in a dry run.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{state, throw, throw_with, Error};
use super::opts::show;
use crate::core::{dotenv, logscan};
use crate::host::state::HostState;
use crate::remote::files::{self, Failure, Op};
use crate::store::atomic::{clean_stale_temps, parent_dir, sync_dir, unique_sibling, write_atomic};

/// Logs bigger than this are scanned from their last this-many bytes only.
const LOG_TAIL_BYTES: u64 = 32 * 1024 * 1024;

/// The most `fs::read` and `fs::dotenv` read: Rhai's limit on a string's length.
pub(crate) const MAX_READ_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a whole file, refusing one larger than [`MAX_READ_BYTES`] (a device such as
/// `/dev/zero` never ends: it is cut there too).
fn read_bounded(path: &str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_READ_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is larger than {} MiB, the most a script can hold in a string; read it with a command instead (exec([\"head\", \"-c\", \"1000\", path]))",
                MAX_READ_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(bytes)
}

/// Builds an error of kind `fs` for a failed operation on `path`, with what to check.
fn io_error(what: &str, path: &str, e: &io::Error) -> Error {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => {
            "; check the path (a relative path starts in the folder deployer runs in)"
        }
        io::ErrorKind::PermissionDenied => "; check the permissions of the path and its folder",
        _ => "",
    };
    let mut extra = Map::new();
    extra.insert("path".into(), path.into());
    throw_with("fs", format!("{what} {path}: {e}{hint}"), extra)
}

/// Qualified calls (`fs::read`) get no position from Rhai: add the call site.
fn at(ctx: &NativeCallContext, mut e: Error) -> Error {
    if e.position().is_none() {
        e.set_position(ctx.call_position());
    }
    e
}

/// Returns true (after saying what would happen, and on which host) when the run is a
/// dry run.
fn dry(ctx: &NativeCallContext, what: &str) -> Result<bool, Error> {
    let st = state(ctx)?;
    if st.dry_run() {
        st.would(&super::remote::shown(&st, what.to_string()));
        return Ok(true);
    }
    Ok(false)
}

/// The run's state and the host of the surrounding `on(...)`, if any: where `fs::` acts.
fn host_of(ctx: &NativeCallContext) -> Result<(std::sync::Arc<HostState>, Option<String>), Error> {
    let st = state(ctx)?;
    let host = st.remote.current();
    Ok((st, host))
}

/// Runs a file operation on `host` and returns its answer; a failure is an error of kind
/// `fs` (or `usage` for a refused path) naming the host, the path and what to check.
pub(crate) fn on_host(
    st: &HostState,
    host: &str,
    op: &Op,
    what: &str,
    path: &str,
) -> Result<String, Error> {
    run_op(st, host, op, what)?.map_err(|f| failed(host, what, path, f))
}

/// Runs a file operation on `host`: its answer, or why it failed there.
fn run_op(
    st: &HostState,
    host: &str,
    op: &Op,
    what: &str,
) -> Result<Result<String, Failure>, Error> {
    let out = super::remote::script_on(st, host, &op.script(), op.changes(), what)?;
    if out.code == Some(0) {
        if let Some(a) = files::answer(&out.stdout) {
            return Ok(Ok(a.to_string()));
        }
    }
    Ok(Err(files::failure(out.code, &out.stderr)))
}

/// The error of a failed remote file operation.
fn failed(host: &str, what: &str, path: &str, failure: Failure) -> Error {
    let mut extra = Map::new();
    extra.insert("path".into(), path.into());
    extra.insert("host".into(), host.into());
    let (kind, msg) = match failure {
        Failure::NotFound(said) => ("fs", format!("{what} {host}:{path}: {said}; check the path (a relative path starts in the home folder of the remote user)")),
        Failure::Refused(said) => ("usage", format!("{what} {host}:{path}: refusing to touch {said}; nothing was changed. Give the path of what to change inside it")),
        Failure::WrongType(said) => ("fs", format!("{what} {host}:{path}: {said}")),
        Failure::Other { code: Some(0), .. } => ("fs", format!("{what} {host}:{path}: the host gave no answer (its shell stopped before the operation ran); try `ssh {host} true` to see what it prints")),
        Failure::Other { code, said } => ("fs", format!(
            "{what} {host}:{path}: {said} (exit code {}){}",
            code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
            if said.contains("Permission denied") { "; check the permissions of the path and its folder for the ssh user" } else { "" }
        )),
    };
    throw_with(kind, msg, extra)
}

/// Reads a file here or on the current host; `None` when it does not exist.
pub(crate) fn read_opt(st: &HostState, path: &str) -> Result<Option<String>, Error> {
    match st.remote.current() {
        Some(host) => {
            let op = Op::Read {
                path,
                limit: MAX_READ_BYTES,
            };
            match run_op(st, &host, &op, "cannot read")? {
                Ok(a) => Ok(Some(a)),
                Err(Failure::NotFound(_)) => Ok(None),
                Err(f) => Err(failed(&host, "cannot read", path, f)),
            }
        }
        None => match read_bounded(path) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", path, &e)),
        },
    }
}

/// Replaces a file's content atomically here or on the current host (no dry-run check:
/// the caller decides).
pub(crate) fn write_file(st: &HostState, path: &str, text: &str) -> Result<(), Error> {
    match st.remote.current() {
        Some(host) => {
            on_host(st, &host, &Op::Write { path, text }, "cannot write", path).map(|_| ())
        }
        None => {
            clean_stale_temps(parent_dir(Path::new(path)));
            write_atomic(Path::new(path), text.as_bytes())
                .map_err(|e| io_error("cannot write", path, &e))
        }
    }
}

fn probe_at(ctx: &NativeCallContext, path: &str) -> Result<Option<files::Probe>, Error> {
    let (st, host) = host_of(ctx)?;
    match host {
        None => Ok(None),
        Some(h) => on_host(&st, &h, &Op::Probe { path }, "cannot look at", path)
            .map(|a| Some(files::probe(&a)))
            .map_err(|e| at(ctx, e)),
    }
}

/// Folders a run registered as its project (the script's folder, deployer.toml's folder):
/// `fs::remove` and `fs::write` refuse them and every folder above them.
static PROJECT_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Registers `dir` as a project folder of this process (see [`protected_folders`]).
pub fn protect(dir: &Path) {
    let dir = resolve(
        dir,
        &std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    );
    if let Ok(mut dirs) = PROJECT_DIRS.lock() {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
}

/// Registers the folder of `script` and of the deployer.toml that applies to it as project
/// folders (see [`protect`]).
pub fn protect_project(script: &Path) {
    let dir = parent_dir(script);
    protect(dir);
    if let Some(toml) = crate::config::find(dir) {
        protect(parent_dir(&toml));
    }
}

/// Returns the path `path` names, absolute, with `.` and `..` folded the way the kernel
/// folds them: the longest existing prefix is resolved with `canonicalize` (symlinks
/// followed, so `link/..` is the parent of the link's target) and the rest is folded
/// lexically. A last component that is a plain name is kept as is, not followed: removing
/// a symlink removes the link, not its target. A trailing `/` resolves the whole path.
pub fn resolve(path: &Path, cwd: &Path) -> PathBuf {
    use std::path::Component;
    let text = path.as_os_str().as_encoded_bytes();
    // `dir/`, `dir/.` and `.` name the folder itself, through a symlink if it is one.
    let whole = text.ends_with(b"/") || text.ends_with(b"/.") || text == b".";
    let abs = cwd.join(path);
    let mut comps: Vec<Component> = abs.components().collect();
    let last = match comps.last() {
        Some(Component::Normal(name)) if !whole => {
            let name = PathBuf::from(name);
            comps.pop();
            Some(name)
        }
        _ => None,
    };
    // The longest prefix that exists, canonicalised; the rest folded lexically.
    let mut base = PathBuf::from("/");
    let mut rest_from = comps.len();
    for n in (0..=comps.len()).rev() {
        let prefix: PathBuf = comps[..n].iter().collect();
        if let Ok(c) = prefix.canonicalize() {
            base = c;
            rest_from = n;
            break;
        }
    }
    for c in &comps[rest_from..] {
        match c {
            Component::ParentDir => {
                base.pop();
            }
            Component::Normal(n) => base.push(n),
            _ => {}
        }
    }
    if let Some(name) = last {
        base.push(name);
    }
    base
}

/// The folders a script may never remove or replace, each with what it is: the root, the
/// home folder, the current folder, the project folders and every folder above them.
fn protected_folders(cwd: &Path, extra: &[PathBuf]) -> Vec<(PathBuf, String)> {
    let mut named: Vec<(PathBuf, String)> = vec![(PathBuf::from("/"), "the root folder".into())];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        named.push((
            resolve(Path::new(&home), cwd),
            "your home folder ($HOME)".into(),
        ));
    }
    named.push((resolve(cwd, cwd), "the current folder".into()));
    for dir in extra {
        named.push((
            dir.clone(),
            "the project folder (where deployer.toml or the script is)".into(),
        ));
    }
    let mut all = Vec::new();
    for (dir, what) in &named {
        all.push((dir.clone(), what.clone()));
        for up in dir.ancestors().skip(1) {
            all.push((
                up.to_path_buf(),
                format!("a folder above {what} {}", dir.display()),
            ));
        }
    }
    all
}

/// Returns why `resolved` must not be removed or replaced, if it is a protected folder.
fn protected_reason(resolved: &Path, protected: &[(PathBuf, String)]) -> Option<String> {
    protected
        .iter()
        .find(|(dir, _)| dir == resolved)
        .map(|(_, what)| what.clone())
}

/// The project folders for this run: those registered with [`protect`], the folder of the
/// nearest deployer.toml above the current folder, and the folders of loaded script files.
fn project_dirs(ctx: &NativeCallContext, cwd: &Path) -> Vec<PathBuf> {
    let mut dirs = PROJECT_DIRS.lock().map(|d| d.clone()).unwrap_or_default();
    if let Some(toml) = crate::config::find(cwd) {
        dirs.push(resolve(parent_dir(&toml), cwd));
    }
    if let Ok(st) = state(ctx) {
        for file in st.sources.files() {
            dirs.push(resolve(parent_dir(&file), cwd));
        }
    }
    dirs
}

/// Refuses paths whose removal or replacement is never what a script meant: an empty path,
/// a `~` path (not expanded), and whatever resolves to the root, the home folder, the
/// current folder, a project folder or a folder above one of them.
fn guard_folders(ctx: &NativeCallContext, func: &str, path: &str) -> Result<(), Error> {
    guard(func, path)?;
    let cwd = std::env::current_dir().map_err(|e| {
        throw(
            "fs",
            format!("{func}(): cannot read the current folder to check {path}: {e}; run deployer from a folder that exists"),
        )
    })?;
    let resolved = resolve(Path::new(path), &cwd);
    let protected = protected_folders(&cwd, &project_dirs(ctx, &cwd));
    if let Some(what) = protected_reason(&resolved, &protected) {
        return Err(throw(
            "usage",
            format!(
                "{func}(): refusing to touch {} (resolves to {}, {what}); nothing was changed. Give the path of what to change inside it",
                show(&path.into()),
                resolved.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses paths that name no one thing: an empty path, `.`, `..`, `/` and `~` paths.
fn guard(func: &str, path: &str) -> Result<(), Error> {
    let trimmed = path.trim_end_matches('/');
    if matches!(trimmed, "" | "." | "..") {
        return Err(throw(
            "usage",
            format!("{func}(): refusing to touch {} (an empty path, `.`, `..` or `/`); give the path of what to change", show(&path.into())),
        ));
    }
    if trimmed == "~" || path.starts_with("~/") {
        return Err(throw(
            "usage",
            format!("{func}(): refusing to touch {}: `~` is not expanded (it would name a folder called `~`); write the full path, e.g. env_var(\"HOME\") + \"/...\"", show(&path.into())),
        ));
    }
    Ok(())
}

fn append_impl(path: &str, text: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn remove_impl(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).map(|_| true),
        Ok(_) => std::fs::remove_file(path).map(|_| true),
    }
}

/// Points `link` at `target` atomically: a new symlink beside it, renamed over it.
fn symlink_swap_impl(target: &str, link: &str) -> Result<(), Error> {
    let link_path = Path::new(link);
    let Some(base) = link_path.file_name().and_then(|n| n.to_str()) else {
        return Err(throw(
            "usage",
            format!("fs::symlink_swap(): the link {link} has no file name; give a path such as \"app/current\""),
        ));
    };
    let dir = parent_dir(link_path);
    if !dir.join(target).exists() {
        let seen = if dir == Path::new(".") || Path::new(target).is_absolute() {
            format!("{target} does not exist")
        } else {
            format!(
                "{} does not exist (a relative target is read from the link's folder)",
                dir.join(target).display()
            )
        };
        return Err(throw(
            "fs",
            format!("cannot point {link} at {target}: {seen}"),
        ));
    }
    if let Ok(meta) = std::fs::symlink_metadata(link_path) {
        if !meta.file_type().is_symlink() {
            return Err(throw(
                "fs",
                format!("cannot replace {link} with a symlink: it is a real {}, not a symlink; move it away first", if meta.is_dir() { "folder" } else { "file" }),
            ));
        }
    }
    clean_stale_temps(dir);
    let temp = unique_sibling(dir, base, "link");
    std::os::unix::fs::symlink(target, &temp)
        .map_err(|e| io_error("cannot create symlink", &temp.display().to_string(), &e))?;
    if let Err(e) = std::fs::rename(&temp, link_path) {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error(
            &format!("cannot rename {} over", temp.display()),
            link,
            &e,
        ));
    }
    sync_dir(dir).map_err(|e| io_error("cannot sync folder", &dir.display().to_string(), &e))
}

/// `fs::copy` on this machine: see its documentation.
fn copy_impl(from: &Path, to: &Path) -> Result<(), Error> {
    let shown = |p: &Path| p.display().to_string();
    let meta = std::fs::metadata(from).map_err(|e| io_error("cannot copy", &shown(from), &e))?;
    let mut dest = to.to_path_buf();
    if to.is_dir()
        && !to
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    {
        if let Some(name) = from.file_name() {
            dest = to.join(name);
        }
    }
    if meta.is_dir() {
        if dest.exists() && !dest.is_dir() {
            return Err(throw(
                "fs",
                format!(
                    "cannot copy folder {} to {}: {} is a file; remove it first, or give another path",
                    shown(from),
                    shown(to),
                    shown(&dest)
                ),
            ));
        }
        if dest.starts_with(from) {
            return Err(throw(
                "usage",
                format!(
                    "cannot copy folder {} into itself ({}); give a path outside it",
                    shown(from),
                    shown(&dest)
                ),
            ));
        }
        return copy_tree(from, &dest);
    }
    if dest.is_dir() {
        return Err(throw(
            "fs",
            format!(
                "cannot copy {} to {}: it is a folder; give the path of the copy",
                shown(from),
                shown(&dest)
            ),
        ));
    }
    copy_file(from, &dest)
}

/// Copies one file to a temp file beside `to`, then renames it over `to`.
fn copy_file(from: &Path, to: &Path) -> Result<(), Error> {
    let shown = to.display().to_string();
    let base = to
        .file_name()
        .map_or_else(|| "copy".into(), |n| n.to_string_lossy().into_owned());
    let tmp = unique_sibling(parent_dir(to), &base, "tmp");
    let done = std::fs::copy(from, &tmp).and_then(|_| std::fs::rename(&tmp, to));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(
            &format!("cannot copy {} to", from.display()),
            &shown,
            &e,
        ));
    }
    Ok(())
}

/// Copies a folder's content into `to` (created when missing), symlinks as symlinks.
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    let shown = |p: &Path| p.display().to_string();
    std::fs::create_dir_all(to).map_err(|e| io_error("cannot create folder", &shown(to), &e))?;
    let entries = std::fs::read_dir(from).map_err(|e| io_error("cannot list", &shown(from), &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", &shown(from), &e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(|e| io_error("cannot copy", &shown(&src), &e))?;
        if kind.is_symlink() {
            let target =
                std::fs::read_link(&src).map_err(|e| io_error("cannot copy", &shown(&src), &e))?;
            if dst.symlink_metadata().is_ok() {
                remove_impl(&dst).map_err(|e| io_error("cannot replace", &shown(&dst), &e))?;
            }
            std::os::unix::fs::symlink(&target, &dst)
                .map_err(|e| io_error("cannot create the symlink", &shown(&dst), &e))?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            copy_file(&src, &dst)?;
        }
    }
    Ok(())
}

fn free_bytes_impl(path: &str) -> io::Result<u64> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))?;
    // SAFETY: statvfs only writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the duration of the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn which_impl(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        return executable(Path::new(name)).then(|| name.to_string());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
        .map(|p| p.display().to_string())
}

/// Reads the last `LOG_TAIL_BYTES` of a file (from the start of a line).
fn read_tail(path: &str) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut bytes = Vec::new();
    if len > LOG_TAIL_BYTES {
        f.seek(SeekFrom::Start(len - LOG_TAIL_BYTES))?;
        f.read_to_end(&mut bytes)?;
        let first_line = bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.drain(..first_line);
    } else {
        // A device reports length 0 and may never end: read at most the tail's size.
        f.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads a whole file of `host`, refusing one larger than [`MAX_READ_BYTES`].
fn read_remote(st: &HostState, host: &str, path: &str) -> Result<String, Error> {
    let op = Op::Read {
        path,
        limit: MAX_READ_BYTES,
    };
    let a = on_host(st, host, &op, "cannot read", path)?;
    if a.len() as u64 > MAX_READ_BYTES {
        return Err(throw("fs", format!(
            "cannot read {host}:{path}: it is larger than {} MiB, the most a script can hold in a string; read it with a command instead (sh(\"head -c 1000 {path}\"))",
            MAX_READ_BYTES / (1024 * 1024)
        )));
    }
    Ok(a)
}

fn since_stamp(func: &str, since: &Dynamic) -> Result<logscan::Stamp, Error> {
    if since.is_string() {
        return logscan::parse_time(&since.to_string())
            .map_err(|e| throw("usage", format!("{func}(): {e}")));
    }
    if let Ok(secs) = since.as_int() {
        return Ok(logscan::Stamp {
            millis: secs.saturating_mul(1000),
            fractional: false,
        });
    }
    Err(throw(
        "usage",
        format!(
            "{func}(): `since` must be a time such as now() returns or Unix seconds such as timestamp() returns, got {} ({})",
            show(since),
            since.type_name()
        ),
    ))
}

#[export_module]
pub mod fs_api {
    use super::*;

    /// Returns the text of a file (invalid UTF-8 is replaced). Throws an error of kind
    /// `fs` naming the path when it cannot be read or is larger than 64 MiB. Inside
    /// `on(...)` it reads the file on the current host (and the error names `host:path`);
    /// so do all `fs::` functions but `port_free`, which refuses there.
    ///
    /// ```rhai
    /// let version = fs::read("VERSION");
    /// version.trim();
    /// on("web", || print(fs::read("/srv/app/current/REVISION")));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn read(ctx: NativeCallContext, path: &str) -> Result<String, Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            return read_remote(&st, &host, path).map_err(|e| at(&ctx, e));
        }
        read_bounded(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| at(&ctx, io_error("cannot read", path, &e)))
    }

    /// Replaces a file's content atomically (readers see the old or the new text, never a
    /// mix). Its folder must exist. In a dry run it prints `would write: PATH` only. Like
    /// `fs::remove`, it refuses paths that resolve to a protected folder (`"sub/.."`).
    /// Inside `on(...)` it writes on the current host: the text goes over the connection
    /// on stdin (never in a command's arguments), into a temp file renamed over `path`.
    ///
    /// ```rhai
    /// fs::write("releases/REVISION", git::current_commit());
    /// on(hosts(), || fs::write("/srv/app/shared/.env", secret("APP_ENV_FILE")));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write(ctx: NativeCallContext, path: &str, text: &str) -> Result<(), Error> {
        let (st, host) = host_of(&ctx)?;
        match host {
            // The host checks its own folders (the root, the ssh user's home and above).
            Some(_) => guard("fs::write", path),
            None => guard_folders(&ctx, "fs::write", path),
        }
        .map_err(|e| at(&ctx, e))?;
        if dry(&ctx, &format!("write: {path}"))? {
            return Ok(());
        }
        // Temp files a killed run left beside the target go first (both here and there).
        write_file(&st, path, text).map_err(|e| at(&ctx, e))
    }

    /// Adds text at the end of a file, creating it if needed. In a dry run it prints
    /// `would append: PATH` only.
    ///
    /// ```rhai
    /// fs::append("deploys.log", `${now()} ${env()} deployed\n`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn append(ctx: NativeCallContext, path: &str, text: &str) -> Result<(), Error> {
        guard("fs::append", path).map_err(|e| at(&ctx, e))?;
        if dry(&ctx, &format!("append: {path}"))? {
            return Ok(());
        }
        if let (st, Some(host)) = host_of(&ctx)? {
            return on_host(
                &st,
                &host,
                &Op::Append { path, text },
                "cannot append to",
                path,
            )
            .map(|_| ())
            .map_err(|e| at(&ctx, e));
        }
        append_impl(path, text).map_err(|e| at(&ctx, io_error("cannot append to", path, &e)))
    }

    /// Returns true when the path exists (a symlink counts when its target exists).
    ///
    /// ```rhai
    /// if !fs::exists(".env") { abort("no .env file"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, path: &str) -> Result<bool, Error> {
        Ok(match probe_at(&ctx, path)? {
            Some(p) => p.exists,
            None => Path::new(path).exists(),
        })
    }

    /// Returns true when the path is a folder (or a symlink to one).
    ///
    /// ```rhai
    /// if fs::is_dir("vendor") { log::info("dependencies installed"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn is_dir(ctx: NativeCallContext, path: &str) -> Result<bool, Error> {
        Ok(match probe_at(&ctx, path)? {
            Some(p) => p.dir,
            None => Path::new(path).is_dir(),
        })
    }

    /// Returns true when the path is a regular file (or a symlink to one).
    ///
    /// ```rhai
    /// if fs::is_file("artisan") { log::info("a Laravel app"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn is_file(ctx: NativeCallContext, path: &str) -> Result<bool, Error> {
        Ok(match probe_at(&ctx, path)? {
            Some(p) => p.file,
            None => Path::new(path).is_file(),
        })
    }

    /// Returns true when the path itself is a symlink (whether or not its target exists).
    ///
    /// ```rhai
    /// if fs::is_link("/srv/app/current") { log::info(fs::read_link("/srv/app/current")); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn is_link(ctx: NativeCallContext, path: &str) -> Result<bool, Error> {
        Ok(match probe_at(&ctx, path)? {
            Some(p) => p.link,
            None => std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()),
        })
    }

    /// Returns the size of a file in bytes.
    ///
    /// ```rhai
    /// if fs::size("dist/app.js") > 5_000_000 { log::warn("bundle larger than 5 MB"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn size(ctx: NativeCallContext, path: &str) -> Result<i64, Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            let a = on_host(
                &st,
                &host,
                &Op::Size { path },
                "cannot read the size of",
                path,
            )
            .map_err(|e| at(&ctx, e))?;
            return Ok(files::number(&a).map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)));
        }
        std::fs::metadata(path)
            .map(|m| i64::try_from(m.len()).unwrap_or(i64::MAX))
            .map_err(|e| at(&ctx, io_error("cannot read the size of", path, &e)))
    }

    /// Returns the names of the entries of a folder, sorted (names only, not paths).
    ///
    /// ```rhai
    /// for name in fs::list("/srv/app/releases") { print(name); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn list(ctx: NativeCallContext, path: &str) -> Result<Array, Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            let a = on_host(&st, &host, &Op::List { path }, "cannot list", path)
                .map_err(|e| at(&ctx, e))?;
            return Ok(files::names(&a).into_iter().map(Dynamic::from).collect());
        }
        let entries =
            std::fs::read_dir(path).map_err(|e| at(&ctx, io_error("cannot list", path, &e)))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| at(&ctx, io_error("cannot list", path, &e)))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names.into_iter().map(Dynamic::from).collect())
    }

    /// Creates a folder and any missing parents (nothing happens when it exists). In a dry
    /// run it prints `would create folder: PATH` only.
    ///
    /// ```rhai
    /// fs::mkdir("/srv/app/shared/storage");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn mkdir(ctx: NativeCallContext, path: &str) -> Result<(), Error> {
        guard("fs::mkdir", path).map_err(|e| at(&ctx, e))?;
        if dry(&ctx, &format!("create folder: {path}"))? {
            return Ok(());
        }
        if let (st, Some(host)) = host_of(&ctx)? {
            return on_host(
                &st,
                &host,
                &Op::Mkdir { path },
                "cannot create folder",
                path,
            )
            .map(|_| ())
            .map_err(|e| at(&ctx, e));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| at(&ctx, io_error("cannot create folder", path, &e)))
    }

    /// Removes a file, a symlink (not its target) or a whole folder; returns false when
    /// there was nothing to remove. In a dry run it prints `would remove: PATH` only.
    /// The path is resolved first (`.`, `..` and symlinked folders followed) and the root,
    /// the home folder, the current folder, the project folder and every folder above them
    /// are refused with an error of kind `usage`, deleting nothing. Inside `on(...)` the
    /// host resolves the path and refuses its root and the ssh user's home (where relative
    /// paths start) and every folder above it.
    ///
    /// ```rhai
    /// fs::remove("/srv/app/releases/20261101120000");
    /// try { fs::remove("releases/.."); } catch (e) { log::warn(e.message); }  // refused
    /// ```
    #[rhai_fn(return_raw)]
    pub fn remove(ctx: NativeCallContext, path: &str) -> Result<bool, Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            guard("fs::remove", path).map_err(|e| at(&ctx, e))?;
            if dry(&ctx, &format!("remove: {path}"))? {
                return probe_at(&ctx, path).map(|p| p.is_some_and(|p| p.exists || p.link));
            }
            let a = on_host(&st, &host, &Op::Remove { path }, "cannot remove", path)
                .map_err(|e| at(&ctx, e))?;
            return Ok(files::number(&a) == Some(1));
        }
        guard_folders(&ctx, "fs::remove", path).map_err(|e| at(&ctx, e))?;
        if dry(&ctx, &format!("remove: {path}"))? {
            return Ok(Path::new(path).symlink_metadata().is_ok());
        }
        remove_impl(Path::new(path)).map_err(|e| at(&ctx, io_error("cannot remove", path, &e)))
    }

    /// Points the symlink `link` at `target` atomically: it creates a new symlink beside
    /// `link` and renames it over `link`, so `link` always exists and always points at a
    /// complete target. A relative `target` is read from the link's folder; it must exist.
    /// Refuses to replace a real file or folder. In a dry run it prints `would link: ...`.
    /// Inside `on(...)` the host does it: `ln -sfn` to a temp name beside `link`, then
    /// `mv -T` over it.
    ///
    /// ```rhai
    /// fs::symlink_swap("releases/20261123191200", "/srv/app/current");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn symlink_swap(ctx: NativeCallContext, target: &str, link: &str) -> Result<(), Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            guard("fs::symlink_swap", link).map_err(|e| at(&ctx, e))?;
            if dry(&ctx, &format!("link: {link} -> {target}"))? {
                return Ok(());
            }
            let what = format!("cannot point {link} at {target}:");
            return on_host(&st, &host, &Op::SymlinkSwap { target, link }, &what, link)
                .map(|_| ())
                .map_err(|e| at(&ctx, e));
        }
        guard_folders(&ctx, "fs::symlink_swap", link).map_err(|e| at(&ctx, e))?;
        if dry(&ctx, &format!("link: {link} -> {target}"))? {
            return Ok(());
        }
        symlink_swap_impl(target, link).map_err(|e| at(&ctx, e))
    }

    /// Copies a file or a whole folder, as `cp -R` does: `to` is the copy's path, or a
    /// folder that exists, which the copy goes into (`to/NAME`). A file is copied to a
    /// temp file beside the copy and renamed over it (readers see the old or the new file,
    /// never half of one), keeping its permissions; a folder is copied file by file into
    /// the copy (created when missing, its other files left), symlinks inside kept as
    /// symlinks. In a dry run it prints `would copy: FROM -> TO` only. Like `fs::write`,
    /// it refuses a `to` that resolves to a protected folder. Inside `on(...)` both paths
    /// are on the current host (`upload` copies from here to there).
    ///
    /// ```rhai
    /// fs::copy("dist", "/srv/app/releases/20261202T135501.123Z-4f2a/public");
    /// fs::copy("/srv/app/shared/.env.example", "/srv/app/shared/.env");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn copy(ctx: NativeCallContext, from: &str, to: &str) -> Result<(), Error> {
        let (st, host) = host_of(&ctx)?;
        match host {
            Some(_) => guard("fs::copy", to),
            None => guard_folders(&ctx, "fs::copy", to),
        }
        .map_err(|e| at(&ctx, e))?;
        if dry(&ctx, &format!("copy: {from} -> {to}"))? {
            return Ok(());
        }
        if let Some(host) = host {
            let what = format!("cannot copy {from} to");
            return on_host(&st, &host, &Op::Copy { from, to }, &what, to)
                .map(|_| ())
                .map_err(|e| at(&ctx, e));
        }
        copy_impl(Path::new(from), Path::new(to)).map_err(|e| at(&ctx, e))
    }

    /// Returns where a symlink points, as written in the link.
    ///
    /// ```rhai
    /// let live = fs::read_link("/srv/app/current");   // "releases/20261123191200"
    /// ```
    #[rhai_fn(return_raw)]
    pub fn read_link(ctx: NativeCallContext, path: &str) -> Result<String, Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            let a = on_host(
                &st,
                &host,
                &Op::ReadLink { path },
                "cannot read the symlink",
                path,
            )
            .map_err(|e| at(&ctx, e))?;
            return Ok(a.strip_suffix('\n').unwrap_or(&a).to_string());
        }
        std::fs::read_link(path)
            .map(|p| p.display().to_string())
            .map_err(|e| at(&ctx, io_error("cannot read the symlink", path, &e)))
    }

    /// Returns the bytes free for unprivileged users on the file system that holds `path`.
    ///
    /// ```rhai
    /// let gb = fs::free_bytes("/srv") / 1_000_000_000;
    /// if gb < 5 { abort(`only ${gb} GB free on /srv`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn free_bytes(ctx: NativeCallContext, path: &str) -> Result<i64, Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            let what = "cannot read the free space of";
            let a = on_host(&st, &host, &Op::FreeBytes { path }, what, path)
                .map_err(|e| at(&ctx, e))?;
            return files::number(&a)
                .map(|kb| i64::try_from(kb.saturating_mul(1024)).unwrap_or(i64::MAX))
                .ok_or_else(|| {
                    at(
                        &ctx,
                        throw(
                            "fs",
                            format!(
                                "{what} {host}:{path}: df printed {:?}, not a number of blocks",
                                a.trim()
                            ),
                        ),
                    )
                });
        }
        free_bytes_impl(path)
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
            .map_err(|e| at(&ctx, io_error("cannot read the free space of", path, &e)))
    }

    /// Returns the full path of a program found on `PATH`, or `()` when there is none.
    ///
    /// ```rhai
    /// if fs::which("wrangler") == () { abort("install wrangler: npm i -g wrangler"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn which(ctx: NativeCallContext, name: &str) -> Result<Dynamic, Error> {
        if let (st, Some(host)) = host_of(&ctx)? {
            if name.is_empty() {
                return Ok(Dynamic::UNIT);
            }
            let a = on_host(
                &st,
                &host,
                &Op::Which { name },
                "cannot look for the program",
                name,
            )
            .map_err(|e| at(&ctx, e))?;
            let found = a.lines().map(str::trim).find(|l| l.starts_with('/'));
            return Ok(found
                .map(|p| Dynamic::from(p.to_string()))
                .unwrap_or(Dynamic::UNIT));
        }
        Ok(which_impl(name).map(Dynamic::from).unwrap_or(Dynamic::UNIT))
    }

    /// Returns true when nothing listens on `127.0.0.1:port` of this machine (no
    /// connection is accepted and the port can be bound). Inside `on(...)` it refuses
    /// (it cannot look at the host's ports): use `local(|| fs::port_free(..))` or
    /// `sh("ss -ltn")` there.
    ///
    /// ```rhai
    /// if !fs::port_free(8080) { abort("port 8080 is taken"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn port_free(ctx: NativeCallContext, port: i64) -> Result<bool, Error> {
        let Ok(port) =
            u16::try_from(port)
                .map_err(|_| ())
                .and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
        else {
            return Err(at(
                &ctx,
                throw(
                    "usage",
                    format!("fs::port_free(): the port must be between 1 and 65535, got {port}"),
                ),
            ));
        };
        let st = state(&ctx)?;
        if let Some(host) = st.remote.current() {
            return Err(at(
                &ctx,
                throw(
                    "usage",
                    format!("fs::port_free({port}) looks at this machine's ports, not at {host}'s (inside on(...)): check the host with sh(\"! ss -ltn | grep -q ':{port} '\"), or wrap it in local(|| ...) to mean this machine"),
                ),
            ));
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
            .is_ok()
        {
            return Ok(false);
        }
        Ok(!matches!(
            std::net::TcpListener::bind(addr),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse
        ))
    }

    /// Reads a dotenv file (`KEY=value` lines, comments, quotes, `export`) into a map.
    /// Throws an error of kind `dotenv` naming the file and line that cannot be read.
    ///
    /// ```rhai
    /// let env_file = fs::dotenv("/srv/app/shared/.env");
    /// if env_file?.APP_DEBUG == "true" { log::warn("APP_DEBUG is on"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn dotenv(ctx: NativeCallContext, path: &str) -> Result<Map, Error> {
        let text = match host_of(&ctx)? {
            (st, Some(host)) => read_remote(&st, &host, path).map_err(|e| at(&ctx, e))?,
            (_, None) => read_bounded(path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| at(&ctx, io_error("cannot read", path, &e)))?,
        };
        let pairs =
            dotenv::parse(&text).map_err(|e| at(&ctx, throw("dotenv", format!("{path} {e}"))))?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    /// Returns the lines of a log file that name an error level (ERROR, CRITICAL, ALERT,
    /// EMERGENCY) and are stamped at or after `since` (RFC 3339 such as `now()` returns,
    /// `"2026-11-23 19:12:00"`, or Unix seconds). Reads Laravel lines
    /// (`[2026-11-23 19:12:00] production.ERROR: ...`) and lines starting with an ISO
    /// time; a time without an offset is UTC. Large logs are read from their last 32 MB.
    ///
    /// ```rhai
    /// let started = now();
    /// // ... deploy ...
    /// let errors = fs::log_errors("storage/logs/laravel.log", started);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn log_errors(ctx: NativeCallContext, path: &str, since: Dynamic) -> Result<Array, Error> {
        let since = since_stamp("fs::log_errors", &since).map_err(|e| at(&ctx, e))?;
        let text = match host_of(&ctx)? {
            (st, Some(host)) => {
                let op = Op::Tail {
                    path,
                    bytes: LOG_TAIL_BYTES,
                };
                let a = on_host(&st, &host, &op, "cannot read the log", path)
                    .map_err(|e| at(&ctx, e))?;
                // A cut tail starts mid-line: from the first whole line.
                match a.find('\n') {
                    Some(i) if a.len() as u64 >= LOG_TAIL_BYTES => a[i + 1..].to_string(),
                    _ => a,
                }
            }
            (_, None) => {
                read_tail(path).map_err(|e| at(&ctx, io_error("cannot read the log", path, &e)))?
            }
        };
        Ok(logscan::errors_since(&text, since)
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("deployer-fs-guard-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        d.canonicalize().expect("canonical")
    }

    #[test]
    fn folds_dots_and_parents_to_the_folder_they_name() {
        let d = temp("fold");
        assert_eq!(resolve(Path::new("sub/.."), &d), d);
        assert_eq!(resolve(Path::new("."), &d), d);
        assert_eq!(resolve(Path::new("./"), &d), d);
        assert_eq!(resolve(Path::new("sub/./.."), &d), d);
        assert_eq!(resolve(Path::new("/."), &d), Path::new("/"));
        assert_eq!(resolve(Path::new("/.."), &d), Path::new("/"));
        assert_eq!(resolve(Path::new("//."), &d), Path::new("/"));
        assert_eq!(resolve(Path::new("/tmp/.."), &d), Path::new("/"));
        assert_eq!(
            resolve(Path::new("missing/../.."), &d),
            d.parent().expect("parent")
        );
        assert_eq!(resolve(Path::new("sub/new"), &d), d.join("sub/new"));
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn follows_symlinks_except_a_last_plain_name() {
        let d = temp("links");
        std::os::unix::fs::symlink("/", d.join("root-link")).expect("symlink");
        // Removing the link removes the link: not the root.
        assert_eq!(resolve(Path::new("root-link"), &d), d.join("root-link"));
        // Through the link, `.`, `/` and `..` name what the kernel would reach.
        assert_eq!(resolve(Path::new("root-link/."), &d), Path::new("/"));
        assert_eq!(resolve(Path::new("root-link/"), &d), Path::new("/"));
        assert_eq!(resolve(Path::new("root-link/tmp/.."), &d), Path::new("/"));
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn protects_root_current_project_and_every_folder_above() {
        let d = temp("protect");
        let project = d.join("sub");
        let p = protected_folders(&d, std::slice::from_ref(&project));
        let reason = |x: &Path| protected_reason(x, &p);
        assert_eq!(reason(Path::new("/")).as_deref(), Some("the root folder"));
        assert_eq!(reason(&d).as_deref(), Some("the current folder"));
        assert!(reason(&project)
            .expect("project")
            .contains("project folder"));
        assert!(reason(d.parent().expect("parent"))
            .expect("above")
            .starts_with("a folder above"));
        assert_eq!(reason(&project.join("releases")), None);
        assert_eq!(reason(&d.join("other")), None);
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}

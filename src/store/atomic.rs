//! Atomic file replacement: write a temp file beside the target, fsync it, rename it over the target.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Returns a name for a temp file in `dir` that no other thread or process of ours uses:
/// `.<base>.<tag>.<pid>.<counter>`.
pub(crate) fn unique_sibling(dir: &Path, base: &str, tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{base}.{tag}.{}.{n}", std::process::id()))
}

/// Returns the folder that holds `path` ("." for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Adds what failed and on which path to an I/O error, keeping its kind.
pub(crate) fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Flushes a folder's entries (new names, renames) to disk.
///
/// File systems that cannot fsync a folder (EINVAL, unsupported) are not an error.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let result = File::open(dir).and_then(|d| d.sync_all());
    match result {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(context(e, "cannot fsync folder", dir)),
        Ok(()) => Ok(()),
    }
}

/// The error for a symlink found where deployer keeps its own files.
pub(crate) fn symlink_refused(path: &Path) -> io::Error {
    let target = fs::read_link(path)
        .map(|t| format!(" (to {})", t.display()))
        .unwrap_or_default();
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link{target}: deployer does not follow symlinks among its state files (history.jsonl, runs/, lock/), since a planted link would make it write anywhere; remove the link, or set state_dir in deployer.toml to a real folder",
            path.display()
        ),
    )
}

/// Opens `path` with `opts`, refusing to follow a symlink in its last component
/// (`O_NOFOLLOW`): a symlink there is an error from [`symlink_refused`].
pub(crate) fn open_nofollow(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match opts.custom_flags(libc::O_NOFOLLOW).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(symlink_refused(path)),
        other => other,
    }
}

/// Creates the folder `dir` (and its parents) if missing and checks that `dir` itself is a
/// real folder, not a symlink to one.
pub(crate) fn real_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => return Err(symlink_refused(dir)),
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                "{} is a file, not a folder: deployer keeps its records there; move the file away",
                dir.display()
            ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(context(e, "cannot read", dir)),
    }
    fs::create_dir_all(dir).map_err(|e| context(e, "cannot create folder", dir))?;
    // A rival could have planted a link between the check and the creation.
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_refused(dir)),
        Ok(_) => Ok(()),
        Err(e) => Err(context(e, "cannot read", dir)),
    }
}

/// Removes the temp files ([`unique_sibling`] names: `.<base>.<tag>.<pid>.<n>`) in `dir` that
/// a process of ours left when it was killed: those whose pid no longer runs on this host.
/// Returns how many were removed. Never follows symlinks; errors are ignored (best effort).
pub fn clean_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if pid_is_dead(pid) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Returns the pid in a temp name `.<base>.<tag>.<pid>.<n>` (tag `tmp`, `stale` or `link`).
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let mut parts = rest.rsplitn(4, '.');
    let n = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    let base = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (!base.is_empty() && matches!(tag, "tmp" | "stale" | "link") && digits(n) && digits(pid))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Removes a temp file when dropped, unless disarmed.
pub(crate) struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    /// Takes charge of removing `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        TempFile { path: Some(path) }
    }

    /// Returns the temp file's path.
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Stops the removal: the file was renamed or linked into place.
    pub(crate) fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Creates a new temp file in `dir` (named after `base`) holding `bytes`, fsynced; removed
/// again on error or when the returned [`TempFile`] is dropped without being disarmed.
pub(crate) fn write_temp(dir: &Path, base: &str, bytes: &[u8]) -> io::Result<TempFile> {
    write_temp_synced(dir, base, bytes, true)
}

/// Writes a temp file like [`write_temp`] without fsyncing it: for files that need not
/// survive a crash (locks).
pub(crate) fn write_temp_unsynced(dir: &Path, base: &str, bytes: &[u8]) -> io::Result<TempFile> {
    write_temp_synced(dir, base, bytes, false)
}

/// Writes a temp file like [`write_temp`]; `sync` says whether to fsync its data.
fn write_temp_synced(dir: &Path, base: &str, bytes: &[u8], sync: bool) -> io::Result<TempFile> {
    let mut attempt = 0;
    let (mut file, temp) = loop {
        let candidate = unique_sibling(dir, base, "tmp");
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(f) => break (f, TempFile::new(candidate)),
            // A file left by a crashed process that had our pid: take the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(context(e, "cannot create temp file", &candidate)),
        }
    };
    file.write_all(bytes)
        .map_err(|e| context(e, "cannot write temp file", temp.path()))?;
    if sync {
        file.sync_all()
            .map_err(|e| context(e, "cannot fsync temp file", temp.path()))?;
    }
    Ok(temp)
}

/// Writes several files into one folder, each atomically (temp file + rename), and
/// fsyncs the folder once at the end. Files whose flag is true have their data fsynced
/// before the rename; the others (derived, human-readable copies) only get the rename, so
/// a crash leaves them old or new, never mixed, but possibly empty.
pub fn write_atomic_all(dir: &Path, files: &[(&str, &[u8], bool)]) -> io::Result<()> {
    for (name, bytes, sync) in files {
        let mut temp = write_temp_synced(dir, name, bytes, *sync)?;
        let target = dir.join(name);
        fs::rename(temp.path(), &target).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot rename {} to {}: {e}",
                    temp.path().display(),
                    target.display()
                ),
            )
        })?;
        temp.disarm();
    }
    sync_dir(dir)
}

/// Writes `bytes` to `path` so that readers see the old content or the new, never a mix.
///
/// Writes a temp file in the same folder (named with the pid and a counter), fsyncs it,
/// renames it over `path` and fsyncs the folder. The temp file is removed on any error.
/// The folder must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot write {} atomically: the path has no file name; give a file path",
                path.display()
            ),
        ));
    };
    // A non-UTF-8 name only affects the temp file's name.
    let base = name.to_str().unwrap_or("file");
    let dir = parent_dir(path);
    let mut temp = write_temp(dir, base, bytes)?;
    fs::rename(temp.path(), path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot rename {} to {}: {e}",
                temp.path().display(),
                path.display()
            ),
        )
    })?;
    temp.disarm();
    sync_dir(dir)
}

/// Returns true if no process `pid` exists on this host (kill(pid, 0) fails with ESRCH).
///
/// Pids that cannot name one process (0, or beyond `i32`) count as dead.
pub(crate) fn pid_is_dead(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return true;
    };
    if p <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled; nothing is sent.
    let rc = unsafe { libc::kill(p, 0) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn writes_every_file_of_a_batch() {
        let dir =
            std::env::temp_dir().join(format!("deployer-atomic-batch-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        write_atomic_all(&dir, &[("a.json", b"{}", true), ("b.md", b"# b", false)]).expect("write");
        assert_eq!(fs::read(dir.join("a.json")).expect("read a"), b"{}");
        assert_eq!(fs::read(dir.join("b.md")).expect("read b"), b"# b");
        let leftovers = fs::read_dir(&dir).expect("list").count();
        assert_eq!(leftovers, 2, "temp files left behind");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sys::test_dir::{names, TestDir};

    #[test]
    fn writes_new_and_replaces_existing() {
        let d = TestDir::new("replace");
        let p = d.0.join("report.json");
        write_atomic(&p, b"{\"a\":1}").expect("first write");
        assert_eq!(fs::read(&p).expect("read"), b"{\"a\":1}");
        write_atomic(&p, b"second").expect("second write");
        assert_eq!(fs::read(&p).expect("read"), b"second");
        assert_eq!(names(&d.0), vec!["report.json".to_string()]);
    }

    #[test]
    fn missing_folder_fails_and_leaves_nothing() {
        let d = TestDir::new("missing");
        let p = d.0.join("no-such-dir").join("x.json");
        let err = write_atomic(&p, b"x").expect_err("folder is missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        assert!(names(&d.0).is_empty());
    }

    #[test]
    fn failed_rename_removes_the_temp_file() {
        let d = TestDir::new("rename");
        // A non-empty folder in the way: rename of a file over it fails.
        let p = d.0.join("target");
        fs::create_dir(&p).expect("mkdir");
        fs::write(p.join("inside"), b"x").expect("write");
        let err = write_atomic(&p, b"data").expect_err("target is a folder");
        assert!(err.to_string().contains("cannot rename"), "{err}");
        assert_eq!(names(&d.0), vec!["target".to_string()]);
    }

    #[test]
    fn temp_names_are_unique() {
        let d = Path::new("/x");
        let a = unique_sibling(d, "f", "tmp");
        let b = unique_sibling(d, "f", "tmp");
        assert_ne!(a, b);
        let pid = std::process::id().to_string();
        assert!(a.to_string_lossy().contains(&pid));
    }

    #[test]
    fn rejects_path_without_file_name() {
        let err = write_atomic(Path::new("/"), b"x").expect_err("no file name");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    #[test]
    fn reads_the_owner_of_temp_names() {
        assert_eq!(temp_owner(".report.json.tmp.123.4"), Some(123));
        assert_eq!(temp_owner(".prod.stale.9.0"), Some(9));
        assert_eq!(temp_owner(".current.link.77.12"), Some(77));
        assert_eq!(temp_owner("report.json"), None);
        assert_eq!(temp_owner(".x.tmp.abc.1"), None);
        assert_eq!(temp_owner(".x.other.1.1"), None);
    }

    #[test]
    fn removes_temps_of_dead_processes_only() {
        let dir = std::env::temp_dir().join(format!("deployer-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        // A pid above the kernel's maximum never runs.
        let dead = dir.join(".report.json.tmp.2147483646.0");
        let mine = unique_sibling(&dir, "report.json", "tmp");
        fs::write(&dead, b"x").expect("write");
        fs::write(&mine, b"x").expect("write");
        fs::write(dir.join("report.json"), b"x").expect("write");
        assert_eq!(clean_stale_temps(&dir), 1);
        assert!(!dead.exists() && mine.exists() && dir.join("report.json").exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn refuses_symlinked_folders_and_files() {
        let dir = std::env::temp_dir().join(format!("deployer-nofollow-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).expect("symlink");
        let err = real_dir(&dir.join("link")).expect_err("a symlink");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        real_dir(&dir.join("new/inner")).expect("created");
        std::os::unix::fs::symlink(dir.join("real/f"), dir.join("f")).expect("symlink");
        let err = open_nofollow(OpenOptions::new().append(true).create(true), &dir.join("f"))
            .expect_err("a symlink");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(!dir.join("real/f").exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}

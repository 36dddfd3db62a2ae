//! Hot reload: watching a script and the modules it imports, and `deployer run --watch`.
//!
//! Files are watched through their folders, so editors that save by writing a temporary
//! file and renaming it over the original are seen like in-place writes. Changes are
//! debounced and compared by content, so one save is one change.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

use crate::host::console::Console;
use crate::host::present;
use crate::host::slot::ScriptSlot;
use crate::host::state::HostOptions;
use crate::host::Host;
use crate::runner::{execute, RunRequest};

/// How long the files must stay quiet after an event before a change is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// The longest a stream of events can delay a report.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The files could not be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path} for changes: {reason}")]
pub struct WatchError {
    pub path: String,
    pub reason: String,
}

struct Watched {
    watcher: notify::RecommendedWatcher,
    /// Watched files (absolute folder + file name) → fingerprint of their last content.
    files: HashMap<PathBuf, Option<u64>>,
    dirs: HashSet<PathBuf>,
}

/// Watches files for changes; see the module documentation.
pub struct FileWatcher {
    inner: Arc<Mutex<Watched>>,
    events: Receiver<PathBuf>,
}

/// Adds files to a [`FileWatcher`] from any thread, even while it waits.
#[derive(Clone)]
pub struct WatchHandle(Arc<Mutex<Watched>>);

impl FileWatcher {
    /// Starts a watcher with no files.
    pub fn new() -> Result<FileWatcher, WatchError> {
        let (tx, events) = mpsc::channel::<PathBuf>();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            for path in event.paths {
                let _ = tx.send(path);
            }
        })
        .map_err(|e| WatchError {
            path: "files".into(),
            reason: e.to_string(),
        })?;
        Ok(FileWatcher {
            inner: Arc::new(Mutex::new(Watched {
                watcher,
                files: HashMap::new(),
                dirs: HashSet::new(),
            })),
            events,
        })
    }

    /// Returns a handle that adds files to this watcher.
    pub fn handle(&self) -> WatchHandle {
        WatchHandle(self.inner.clone())
    }

    /// Adds files to watch (see [`WatchHandle::watch`]).
    pub fn watch<I: IntoIterator<Item = PathBuf>>(&self, files: I) -> Result<(), WatchError> {
        self.handle().watch(files)
    }

    /// Waits until the content of a watched file changes, debounced, and returns the files
    /// that changed; `None` when `timeout` passes first (or the watcher stopped).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Vec<PathBuf>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let first = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    match self.events.recv_timeout(left) {
                        Ok(p) => p,
                        Err(_) => return None,
                    }
                }
                None => self.events.recv().ok()?,
            };
            let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
            seen.insert(first);
            // Editors write in several steps (truncate, write, rename): wait until quiet.
            let started = Instant::now();
            loop {
                match self.events.recv_timeout(DEBOUNCE) {
                    Ok(p) => {
                        seen.insert(p);
                        if started.elapsed() > MAX_DELAY {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return None,
                }
            }
            let changed = self.changed(seen);
            if !changed.is_empty() {
                return Some(changed);
            }
        }
    }

    /// Keeps the watched files among `paths` whose content differs from the last seen.
    fn changed(&self, paths: BTreeSet<PathBuf>) -> Vec<PathBuf> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for path in paths {
            let Some(last) = inner.files.get_mut(&path) else {
                continue;
            };
            // A file missing now is mid-save (renamed away); its new version comes next.
            let Some(now) = fingerprint(&path) else {
                continue;
            };
            if *last != Some(now) {
                *last = Some(now);
                out.push(path);
            }
        }
        out
    }
}

impl WatchHandle {
    /// Watches more files (their folders are watched, so renames onto them count).
    /// Files already watched keep their last seen content.
    pub fn watch<I: IntoIterator<Item = PathBuf>>(&self, files: I) -> Result<(), WatchError> {
        let Ok(mut inner) = self.0.lock() else {
            return Ok(());
        };
        for file in files {
            let Some(key) = absolute(&file) else {
                continue;
            };
            if inner.files.contains_key(&key) {
                continue;
            }
            let Some(dir) = key.parent().map(Path::to_path_buf) else {
                continue;
            };
            if !inner.dirs.contains(&dir) {
                inner
                    .watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(|e| WatchError {
                        path: dir.display().to_string(),
                        reason: e.to_string(),
                    })?;
                inner.dirs.insert(dir);
            }
            let print = fingerprint(&key);
            inner.files.insert(key, print);
        }
        Ok(())
    }
}

/// Returns the path with its folder made absolute and symlinks in the folder resolved (the
/// form watch events carry), keeping the file name itself.
fn absolute(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some(dir.canonicalize().ok()?.join(name))
}

fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// What the watching threads tell the run loop.
enum Msg {
    /// The script (or a module) changed; `true` when the new version passed the checks.
    Changed(bool),
    /// Ctrl-C or SIGTERM: end the watch.
    Stop,
}

/// Runs `deployer run --watch`: runs the script, then again each time it or a module it
/// imports changes, until Ctrl-C. A change during a run never interrupts it: the run
/// finishes, then the script runs again; meanwhile a version that compiles becomes the one
/// hooks (`on_alert`, `thresholds`) use. An edit that does not compile is reported with
/// its position and ignored until the next good save.
pub fn run_watch(req: &RunRequest, console: Console) -> i32 {
    let name = req.script.display().to_string();
    if let Err(e) = crate::host::input::read_script(&req.script) {
        console.error(&format!("cannot read script {name}: {e}"));
        return crate::exit::USAGE;
    }
    let watcher = match FileWatcher::new() {
        Ok(w) => w,
        Err(e) => {
            console.error(&e.to_string());
            return crate::exit::USAGE;
        }
    };
    // One slot for every run: each new version that passes the checks goes in, and the
    // hooks of a run in progress look their functions up there.
    let slot = ScriptSlot::new();
    let running = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Msg>();
    if let Err(e) = listen_for_stop(tx.clone()) {
        console.error(&format!("cannot listen for Ctrl-C: {e}"));
        return crate::exit::FAILED;
    }
    // The first check happens before the first run so the files it imports are watched.
    let checker = match Host::new(
        HostOptions::default(),
        console.clone(),
        crate::api::bindings(),
        ScriptSlot::new(),
    ) {
        Ok(h) => h,
        Err(e) => {
            console.error(&e.to_string());
            return crate::exit::FAILED;
        }
    };
    let mut first_ok = check_and_watch(&checker, &req.script, &watcher, &console, None);
    {
        let (console, script) = (console.clone(), req.script.clone());
        let (slot, running) = (slot.clone(), running.clone());
        let report = console.clone();
        std::thread::Builder::new()
            .name("deployer-watch".into())
            .spawn(move || loop {
                if watcher.wait(None).is_none() {
                    return;
                }
                let live = (&slot, running.load(Ordering::SeqCst));
                let ok = check_and_watch(&checker, &script, &watcher, &console, Some(live));
                if tx.send(Msg::Changed(ok)).is_err() {
                    return;
                }
            })
            .map_err(|e| report.error(&format!("cannot start the file watcher: {e}")))
            .ok();
    }

    let mut req = req.clone();
    req.script_slot = slot;
    let mut runs = 0u32;
    let mut code = crate::exit::OK;
    loop {
        if first_ok {
            runs += 1;
            if runs > 1 {
                console.show(&present::rerun(&name, runs));
            }
            running.store(true, Ordering::SeqCst);
            code = execute(&req, console.clone());
            running.store(false, Ordering::SeqCst);
        }
        // What happened during the run: the latest change decides whether to run again.
        let mut again = None;
        for msg in rx.try_iter() {
            match msg {
                Msg::Stop => return code,
                Msg::Changed(ok) => again = Some(ok),
            }
        }
        if again == Some(true) {
            first_ok = true;
            continue;
        }
        console.info(&format!(
            "watching {name} and the modules it imports; it runs again when one changes (Ctrl-C to stop)"
        ));
        loop {
            match rx.recv() {
                Ok(Msg::Changed(true)) => break,
                Ok(Msg::Changed(false)) => continue,
                // Ending the watch between runs is the normal way out.
                Ok(Msg::Stop) | Err(_) => return crate::exit::OK,
            }
        }
        first_ok = true;
    }
}

/// Checks the script; watches it and every file it imports; when the new version passes,
/// puts it in the slot the runs share (`live`: the slot, and whether a run is in progress).
/// Prints the problems of a version that does not pass. Returns whether it passed.
fn check_and_watch(
    checker: &Host,
    script: &Path,
    watcher: &FileWatcher,
    console: &Console,
    live: Option<(&ScriptSlot, bool)>,
) -> bool {
    let name = script.display().to_string();
    let text = match crate::host::input::read_script(script) {
        Ok(t) => t,
        Err(e) => {
            console.error(&format!("cannot read script {name}: {e}"));
            return false;
        }
    };
    let result = checker.check(&name, &text);
    let mut files = vec![script.to_path_buf()];
    files.extend(checker.state.sources.files());
    if let Err(e) = watcher.watch(files) {
        console.warn(&e.to_string());
    }
    match result {
        Ok(checked) => {
            if let Some((slot, _)) = live {
                slot.replace(checked.ast);
            }
            if let Some((_, true)) = live {
                console.info(&format!(
                    "{name} changed: the new version compiles; hooks use it from now on and the script runs again when this run ends"
                ));
            }
            true
        }
        Err(diags) => {
            for d in &diags {
                checker.print(d);
            }
            let running = matches!(live, Some((_, true)));
            console.warn(&format!(
                "{name}: this version has {} problem{}; {}; fix it and save again",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" },
                if running {
                    "the run goes on with the last good version"
                } else {
                    "not running it"
                }
            ));
            false
        }
    }
}

/// Sends [`Msg::Stop`] on every SIGINT and SIGTERM, from a thread of its own. (During a run,
/// the run's own handlers also see the signal and stop the run.)
fn listen_for_stop(tx: Sender<Msg>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Register before returning, so a Ctrl-C right after start is not missed.
    let signals = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("deployer-signals".into())
        .spawn(move || {
            let (mut int, mut term) = signals;
            rt.block_on(async move {
                loop {
                    tokio::select! {
                        _ = int.recv() => {},
                        _ = term.recv() => {},
                    }
                    if tx.send(Msg::Stop).is_err() {
                        return;
                    }
                }
            });
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("deployer-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn sees_in_place_writes_and_renames_but_not_identical_saves() {
        let dir = temp_dir("unit");
        let file = dir.join("a.rhai");
        std::fs::write(&file, "1").expect("write");
        let w = FileWatcher::new().expect("watcher");
        w.watch([file.clone()]).expect("watch");
        let wait = || w.wait(Some(Duration::from_secs(5)));

        std::fs::write(&file, "2").expect("write");
        assert_eq!(wait().map(|v| v.len()), Some(1));

        let tmp = dir.join(".a.rhai.tmp");
        std::fs::write(&tmp, "3").expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        assert_eq!(wait().map(|v| v.len()), Some(1));

        std::fs::write(&file, "3").expect("write");
        assert_eq!(w.wait(Some(Duration::from_millis(600))), None);

        std::fs::write(dir.join("other.rhai"), "x").expect("write");
        assert_eq!(w.wait(Some(Duration::from_millis(600))), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

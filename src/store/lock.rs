//! The per-environment deployment lock: one file `<dir>/<env>` holding JSON about its holder.
//!
//! A lock is taken by hard-linking a fully written temp file to the lock path, so the lock file
//! is never seen half-written by its creator's rivals. A lock whose holder process is gone
//! (same host, `kill(pid, 0)` gives ESRCH), or that is unreadable and older than 10 s, is stale
//! and is taken over; take-overs are serialised by a short-lived `<dir>/.<env>.takeover` file so
//! two processes racing for one stale lock cannot both win.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::core::time::rfc3339;
use crate::store::atomic::{
    clean_stale_temps, open_nofollow, parent_dir, pid_is_dead, real_dir, symlink_refused,
    unique_sibling, write_temp_unsynced,
};
use crate::sys::identity::{hostname, username};

/// An unreadable lock file younger than this may still be being written: it counts as held.
pub const DAMAGED_GRACE: Duration = Duration::from_secs(10);

/// A lock file is a few hundred bytes; a bigger one is read only this far (and is damaged).
const MAX_LOCK_BYTES: u64 = 64 * 1024;

/// How often [`acquire_wait`] tries again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How many rounds one attempt makes (each a link, or a take-over, or a 10 ms pause while a
/// rival takes over) before giving up with [`LockError::Contended`].
const MAX_ROUNDS: usize = 50;

/// Who holds a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    pub host: String,
    pub user: String,
    /// UTC RFC 3339, from [`rfc3339`].
    pub started_at: String,
    pub script: String,
    pub run_id: String,
}

impl LockInfo {
    /// Describes this process as a lock holder: its pid, host, user and the current time.
    pub fn for_this_process(script: &str, run_id: &str) -> LockInfo {
        LockInfo {
            pid: std::process::id(),
            host: hostname(),
            user: username(),
            started_at: rfc3339(SystemTime::now()),
            script: script.to_string(),
            run_id: run_id.to_string(),
        }
    }
}

/// Why a lock could not be taken or released.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "environment name {env:?} cannot name a lock file: use letters, digits, '_', '-' or '.', \
         not starting with '.'"
    )]
    InvalidEnv { env: String },
    #[error("{}", held_message(.holder, .path, *.waited))]
    Held {
        /// Boxed to keep `Result<_, LockError>` small.
        holder: Box<LockInfo>,
        path: PathBuf,
        /// How long we waited before giving up; `None` when we did not wait.
        waited: Option<Duration>,
    },
    #[error("{}", unreadable_message(.path, *.age, *.waited))]
    Unreadable {
        path: PathBuf,
        /// How old the unreadable lock file is.
        age: Duration,
        waited: Option<Duration>,
    },
    #[error("gave up waiting for the lock {}: cancelled", .path.display())]
    Cancelled { path: PathBuf },
    #[error(
        "lock file {} is stale and other deployer processes are taking it over right now: \
         try again, or pass --lock-wait <duration>",
        .path.display()
    )]
    Contended { path: PathBuf },
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn waited_text(waited: Option<Duration>) -> String {
    match waited {
        Some(w) => format!(" (waited {:.1}s)", w.as_secs_f64()),
        None => String::new(),
    }
}

fn held_message(holder: &LockInfo, path: &Path, waited: Option<Duration>) -> String {
    format!(
        "another deployment holds the lock for this environment{}: pid {} ({}@{}), started {}, \
         script {}, run {}. Wait for it to finish, or pass --lock-wait <duration> to wait for it; \
         if you are sure it is no longer running, remove {}",
        waited_text(waited),
        holder.pid,
        holder.user,
        holder.host,
        holder.started_at,
        holder.script,
        holder.run_id,
        path.display()
    )
}

fn unreadable_message(path: &Path, age: Duration, waited: Option<Duration>) -> String {
    format!(
        "lock file {} exists but cannot be read yet{} (written {:.1}s ago): another deployment \
         may be creating it. Try again, or pass --lock-wait <duration>; after {}s an unreadable \
         lock counts as stale and is taken over; if you are sure no deployment is running, remove it",
        path.display(),
        waited_text(waited),
        age.as_secs_f64(),
        DAMAGED_GRACE.as_secs()
    )
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> LockError {
    LockError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A held lock. Dropping it (or [`LockGuard::release`]) removes the lock file if it is still ours.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    info: LockInfo,
    stale_takeover: Option<LockInfo>,
    damaged_takeover: Option<Duration>,
    released: bool,
}

impl LockGuard {
    #[cfg(test)]
    /// Returns what we wrote in the lock file.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Returns the lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the holder whose stale lock (dead process on this host) we took over, if any.
    pub fn stale_takeover(&self) -> Option<&LockInfo> {
        self.stale_takeover.as_ref()
    }

    /// Returns the age of the unreadable lock file we took over, if any.
    pub fn damaged_takeover(&self) -> Option<Duration> {
        self.damaged_takeover
    }

    #[cfg(test)]
    /// Releases the lock now. Returns `true` if our lock file was removed, `false` if it was
    /// already gone or now belongs to someone else (then it is left alone).
    pub fn release(mut self) -> Result<bool, LockError> {
        self.released = true;
        release_file(&self.path, &self.info.run_id)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            let _ = release_file(&self.path, &self.info.run_id);
        }
    }
}

/// Removes the lock file at `path` only if it holds `run_id`.
fn release_file(path: &Path, run_id: &str) -> Result<bool, LockError> {
    let read = open_nofollow(fs::OpenOptions::new().read(true), path).and_then(|f| {
        let mut b = Vec::new();
        f.take(MAX_LOCK_BYTES).read_to_end(&mut b).map(|_| b)
    });
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("read lock file", path, e)),
    };
    match serde_json::from_slice::<LockInfo>(&bytes) {
        Ok(holder) if holder.run_id == run_id => match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove lock file", path, e)),
        },
        _ => Ok(false),
    }
}

/// Checks that `env` is usable as a file name in the lock folder.
fn check_env(env: &str) -> Result<(), LockError> {
    let ok = !env.is_empty()
        && !env.starts_with('.')
        && env.len() <= 200
        && env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(LockError::InvalidEnv {
            env: env.to_string(),
        })
    }
}

/// A lock file as read: its holder (`None` if unreadable) and age.
struct Seen {
    holder: Option<LockInfo>,
    age: Duration,
}

impl Seen {
    /// Returns true if a lock file in this state may be removed by someone else:
    /// its holder is a dead process on `host`, or it is unreadable and older than [`DAMAGED_GRACE`].
    fn is_stale(&self, host: &str) -> bool {
        match &self.holder {
            Some(h) => h.host == host && pid_is_dead(h.pid),
            None => self.age >= DAMAGED_GRACE,
        }
    }
}

/// Reads the file at `path`; `None` if there is none.
fn read_seen(path: &Path) -> Result<Option<Seen>, LockError> {
    let mut file = match open_nofollow(fs::OpenOptions::new().read(true), path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open lock file", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_err("read metadata of lock file", path, e))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_LOCK_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err("read lock file", path, e))?;
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO);
    Ok(Some(Seen {
        holder: serde_json::from_slice::<LockInfo>(&bytes).ok(),
        age,
    }))
}

/// Moves the file at `path` out of the way if, once moved, it still passes `stale`.
///
/// Renames it to a unique name and reads it there: if it is not stale after all (a rival
/// replaced it since it was judged), it is linked back into place. Returns the removed file.
fn move_aside(
    path: &Path,
    dir: &Path,
    env: &str,
    stale: &dyn Fn(&Seen) -> bool,
) -> Result<Option<Seen>, LockError> {
    let aside = unique_sibling(dir, env, "stale");
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("move stale lock file", path, e)),
    }
    let moved = match read_seen(&aside) {
        Ok(Some(m)) if stale(&m) => Some(m),
        Ok(_) => None,
        Err(e) => {
            let _ = fs::hard_link(&aside, path);
            let _ = fs::remove_file(&aside);
            return Err(e);
        }
    };
    if moved.is_none() {
        // Not stale after all: put it back (fails only if the path was taken meanwhile).
        let _ = fs::hard_link(&aside, path);
    }
    let _ = fs::remove_file(&aside);
    Ok(moved)
}

/// How a take-over attempt ended.
enum TakeOver {
    /// This stale lock file was removed; link again.
    Done(Seen),
    /// The lock file changed or vanished meanwhile; look again.
    Changed,
    /// Another process is taking over right now; wait a moment and look again.
    Busy,
}

/// Creates `path` from a fully written temp file with `content`; `false` if it already exists.
///
/// Nothing here is fsynced: a lock guards against other live processes, which see the
/// page cache, and no lock has to survive a crash. After one, a lock file that lost its
/// name is simply free, and one that lost its content is unreadable and older than
/// [`DAMAGED_GRACE`] by the time the machine is back, so it is taken over.
fn link_new(dir: &Path, env: &str, path: &Path, content: &[u8]) -> Result<bool, LockError> {
    let temp = write_temp_unsynced(dir, env, content)
        .map_err(|e| io_err("write lock temp file", dir, e))?;
    let linked = fs::hard_link(temp.path(), path);
    drop(temp); // removes the temp name; `path` keeps the content
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("create lock file", path, e)),
    }
}

/// Removes the lock file at `path` if it is stale, one process at a time.
///
/// Take-overs are serialised by the file `<dir>/.<env>.takeover` (created like the lock itself).
/// Only its holder may remove a lock file, and a live holder's lock is never stale, so under it
/// the lock file cannot change between being judged stale again and being moved aside: a process
/// that judged the old file stale cannot remove a fresh lock that a rival has just made.
fn take_over(
    dir: &Path,
    env: &str,
    path: &Path,
    content: &[u8],
    me: &LockInfo,
) -> Result<TakeOver, LockError> {
    let host = me.host.as_str();
    let guard_path = dir.join(format!(".{env}.takeover"));
    if !link_new(dir, env, &guard_path, content)? {
        // Stale if its process died, or if it is older than any take-over takes.
        let guard_stale = |g: &Seen| g.is_stale(host) || g.age >= DAMAGED_GRACE;
        return match read_seen(&guard_path)? {
            None => Ok(TakeOver::Changed),
            Some(g) if guard_stale(&g) => {
                move_aside(&guard_path, dir, env, &guard_stale)?;
                Ok(TakeOver::Changed)
            }
            Some(_) => Ok(TakeOver::Busy),
        };
    }
    let lock_stale = |s: &Seen| s.is_stale(host);
    let result = match read_seen(path) {
        Ok(Some(now)) if lock_stale(&now) => match move_aside(path, dir, env, &lock_stale) {
            Ok(Some(removed)) => Ok(TakeOver::Done(removed)),
            Ok(None) => Ok(TakeOver::Changed),
            Err(e) => Err(e),
        },
        Ok(_) => Ok(TakeOver::Changed),
        Err(e) => Err(e),
    };
    let _ = release_file(&guard_path, &me.run_id);
    result
}

/// Makes one attempt (with take-overs of stale locks) to create the lock file.
fn try_acquire(dir: &Path, env: &str, info: &LockInfo) -> Result<LockGuard, LockError> {
    check_env(env)?;
    // The state folder and lock/ must be real folders: a planted symlink is refused.
    real_dir(parent_dir(dir)).map_err(|e| io_err("use state folder", parent_dir(dir), e))?;
    real_dir(dir).map_err(|e| io_err("use lock folder", dir, e))?;
    clean_stale_temps(dir);
    let path = dir.join(env);
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io_err("use lock file", &path, symlink_refused(&path)));
    }
    let mut content =
        serde_json::to_vec_pretty(info).map_err(|e| io_err("encode lock info", &path, e.into()))?;
    content.push(b'\n');
    let mut stale_takeover = None;
    let mut damaged_takeover = None;
    for _ in 0..MAX_ROUNDS {
        if link_new(dir, env, &path, &content)? {
            return Ok(LockGuard {
                path,
                info: info.clone(),
                stale_takeover,
                damaged_takeover,
                released: false,
            });
        }
        let Some(seen) = read_seen(&path)? else {
            continue; // released meanwhile
        };
        if !seen.is_stale(&info.host) {
            return Err(match seen.holder {
                Some(holder) => LockError::Held {
                    holder: Box::new(holder),
                    path,
                    waited: None,
                },
                None => LockError::Unreadable {
                    path,
                    age: seen.age,
                    waited: None,
                },
            });
        }
        match take_over(dir, env, &path, &content, info)? {
            TakeOver::Done(removed) => match removed.holder {
                Some(h) => stale_takeover = Some(h),
                None => damaged_takeover = Some(removed.age),
            },
            TakeOver::Changed => {}
            TakeOver::Busy => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    Err(LockError::Contended { path })
}

/// Takes the lock for `env` in `dir` (created if missing), or fails at once if it is held.
///
/// `info.host` should be this host ([`LockInfo::for_this_process`]): only locks from the same
/// host can be judged stale. A stale lock is taken over and reported by
/// [`LockGuard::stale_takeover`] or [`LockGuard::damaged_takeover`].
pub fn acquire(dir: &Path, env: &str, info: &LockInfo) -> Result<LockGuard, LockError> {
    try_acquire(dir, env, info)
}

/// Takes the lock for `env`, trying every 100 ms for up to `wait` while it is held.
///
/// Held, unreadable-young and contended locks are retried. Stops with [`LockError::Cancelled`]
/// as soon as `cancelled()` returns true between tries, and on timeout with the last
/// [`LockError::Held`] (or [`LockError::Unreadable`], [`LockError::Contended`]), the first two
/// saying how long it waited. A zero `wait` makes one try, like [`acquire`].
pub fn acquire_wait(
    dir: &Path,
    env: &str,
    info: &LockInfo,
    wait: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<LockGuard, LockError> {
    let start = Instant::now();
    loop {
        let err = match try_acquire(dir, env, info) {
            Ok(guard) => return Ok(guard),
            Err(
                e @ (LockError::Held { .. }
                | LockError::Unreadable { .. }
                | LockError::Contended { .. }),
            ) => e,
            Err(e) => return Err(e),
        };
        let elapsed = start.elapsed();
        if elapsed >= wait {
            return Err(match err {
                LockError::Held { holder, path, .. } => LockError::Held {
                    holder,
                    path,
                    waited: Some(elapsed),
                },
                LockError::Unreadable { path, age, .. } => LockError::Unreadable {
                    path,
                    age,
                    waited: Some(elapsed),
                },
                other => other,
            });
        }
        if cancelled() {
            return Err(LockError::Cancelled {
                path: dir.join(env),
            });
        }
        std::thread::sleep(POLL_INTERVAL.min(wait - elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::fs::File;

    use crate::sys::test_dir::{names, TestDir};

    impl TestDir {
        fn lock_dir(&self) -> PathBuf {
            self.0.join(".deployer").join("lock")
        }
    }

    fn info(run_id: &str) -> LockInfo {
        LockInfo {
            pid: std::process::id(),
            host: hostname(),
            user: "alice".into(),
            started_at: "2026-11-23T19:12:00.000Z".into(),
            script: "deploy.rhai".into(),
            run_id: run_id.into(),
        }
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait for true");
        pid
    }

    fn write_lock(path: &Path, holder: &LockInfo) {
        fs::write(path, serde_json::to_vec(holder).expect("encode")).expect("write lock");
    }

    fn age_file(path: &Path, by: Duration) {
        let f = File::options().write(true).open(path).expect("open");
        f.set_modified(SystemTime::now() - by).expect("set mtime");
    }

    #[test]
    fn acquire_writes_info_and_release_removes_it() {
        let d = TestDir::new("basic");
        let dir = d.lock_dir();
        let g = acquire(&dir, "staging", &info("r1")).expect("acquire");
        assert_eq!(g.path(), dir.join("staging"));
        assert_eq!(g.info().run_id, "r1");
        assert!(g.stale_takeover().is_none());
        let on_disk: LockInfo =
            serde_json::from_slice(&fs::read(g.path()).expect("read")).expect("parse");
        assert_eq!(on_disk, info("r1"));
        assert_eq!(names(&dir), vec!["staging".to_string()]);
        assert!(g.release().expect("release"));
        assert!(names(&dir).is_empty());
        // Free again.
        let g = acquire(&dir, "staging", &info("r2")).expect("acquire again");
        drop(g);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn second_acquire_fails_naming_the_holder() {
        let d = TestDir::new("held");
        let dir = d.lock_dir();
        let _g = acquire(&dir, "prod", &info("first")).expect("acquire");
        let err = acquire(&dir, "prod", &info("second")).expect_err("held");
        let msg = err.to_string();
        match &err {
            LockError::Held {
                holder,
                path,
                waited,
            } => {
                assert_eq!(holder.run_id, "first");
                assert_eq!(path, &dir.join("prod"));
                assert!(waited.is_none());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&format!("alice@{}", hostname())), "{msg}");
        assert!(msg.contains("2026-11-23T19:12:00.000Z"), "{msg}");
        assert!(msg.contains("deploy.rhai"), "{msg}");
        assert!(msg.contains("--lock-wait"), "{msg}");
        // Another environment is independent.
        let _other = acquire(&dir, "staging", &info("third")).expect("other env");
        assert_eq!(names(&dir), vec!["prod".to_string(), "staging".to_string()]);
    }

    #[test]
    fn stale_lock_of_dead_pid_is_taken_over() {
        let d = TestDir::new("stale");
        let dir = d.lock_dir();
        fs::create_dir_all(&dir).expect("mkdir");
        let mut old = info("dead-run");
        old.pid = dead_pid();
        write_lock(&dir.join("prod"), &old);
        let g = acquire(&dir, "prod", &info("new-run")).expect("take over");
        assert_eq!(g.stale_takeover(), Some(&old));
        assert_eq!(g.info().run_id, "new-run");
        assert_eq!(names(&dir), vec!["prod".to_string()]);
        let on_disk: LockInfo =
            serde_json::from_slice(&fs::read(dir.join("prod")).expect("read")).expect("parse");
        assert_eq!(on_disk.run_id, "new-run");
    }

    #[test]
    fn dead_pid_on_another_host_is_not_stale() {
        let d = TestDir::new("otherhost");
        let dir = d.lock_dir();
        fs::create_dir_all(&dir).expect("mkdir");
        let mut old = info("remote-run");
        old.pid = dead_pid();
        old.host = format!("not-{}", hostname());
        write_lock(&dir.join("prod"), &old);
        let err = acquire(&dir, "prod", &info("new-run")).expect_err("held");
        assert!(matches!(err, LockError::Held { holder, .. } if *holder == old));
    }

    #[test]
    fn old_damaged_lock_is_taken_over() {
        let d = TestDir::new("damaged-old");
        let dir = d.lock_dir();
        fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("prod");
        fs::write(&p, b"{\"pid\": 12").expect("write");
        age_file(&p, Duration::from_secs(60));
        let g = acquire(&dir, "prod", &info("new-run")).expect("take over");
        assert!(g.stale_takeover().is_none());
        let age = g.damaged_takeover().expect("damaged takeover reported");
        assert!(age >= Duration::from_secs(59), "{age:?}");
        assert_eq!(names(&dir), vec!["prod".to_string()]);
    }

    #[test]
    fn young_damaged_lock_counts_as_held() {
        let d = TestDir::new("damaged-young");
        let dir = d.lock_dir();
        fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("prod");
        fs::write(&p, b"").expect("write");
        let err = acquire(&dir, "prod", &info("new-run")).expect_err("young");
        assert!(matches!(err, LockError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot be read yet"), "{err}");
        assert_eq!(fs::read(&p).expect("still there"), b"");
    }

    #[test]
    fn wait_succeeds_when_holder_releases() {
        let d = TestDir::new("wait");
        let dir = d.lock_dir();
        let g = acquire(&dir, "prod", &info("holder")).expect("acquire");
        let start = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(g);
        });
        let g2 = acquire_wait(
            &dir,
            "prod",
            &info("waiter"),
            Duration::from_secs(10),
            &|| false,
        )
        .expect("acquired after release");
        t.join().expect("join");
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert_eq!(g2.info().run_id, "waiter");
    }

    #[test]
    fn wait_times_out_saying_it_waited() {
        let d = TestDir::new("timeout");
        let dir = d.lock_dir();
        let _g = acquire(&dir, "prod", &info("holder")).expect("acquire");
        let err = acquire_wait(
            &dir,
            "prod",
            &info("waiter"),
            Duration::from_millis(250),
            &|| false,
        )
        .expect_err("times out");
        match &err {
            LockError::Held { waited, .. } => {
                assert!(waited.expect("waited set") >= Duration::from_millis(250))
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(err.to_string().contains("(waited 0."), "{err}");
    }

    #[test]
    fn cancel_stops_the_wait() {
        let d = TestDir::new("cancel");
        let dir = d.lock_dir();
        let _g = acquire(&dir, "prod", &info("holder")).expect("acquire");
        let calls = Cell::new(0);
        let start = Instant::now();
        let err = acquire_wait(
            &dir,
            "prod",
            &info("waiter"),
            Duration::from_secs(30),
            &|| {
                calls.set(calls.get() + 1);
                calls.get() >= 3
            },
        )
        .expect_err("cancelled");
        assert!(matches!(err, LockError::Cancelled { .. }), "{err:?}");
        assert_eq!(calls.get(), 3);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn guard_does_not_delete_a_foreign_lock() {
        let d = TestDir::new("foreign");
        let dir = d.lock_dir();
        let g = acquire(&dir, "prod", &info("mine")).expect("acquire");
        let theirs = info("theirs");
        write_lock(g.path(), &theirs);
        let path = g.path().to_path_buf();
        assert!(!g.release().expect("release"));
        let on_disk: LockInfo =
            serde_json::from_slice(&fs::read(&path).expect("still there")).expect("parse");
        assert_eq!(on_disk, theirs);
        // Same on drop.
        fs::remove_file(&path).expect("clear");
        let g = acquire(&dir, "prod", &info("mine2")).expect("acquire");
        write_lock(&path, &theirs);
        drop(g);
        assert!(path.exists());
    }

    #[test]
    fn rejects_env_names_that_are_not_file_names() {
        let d = TestDir::new("env");
        for bad in ["", "../x", "a/b", ".hidden", "."] {
            let err = acquire(&d.lock_dir(), bad, &info("r")).expect_err(bad);
            assert!(
                matches!(err, LockError::InvalidEnv { .. }),
                "{bad}: {err:?}"
            );
        }
        assert!(acquire(&d.lock_dir(), "eu-west.prod_2", &info("r")).is_ok());
    }

    #[test]
    fn takeover_file_of_a_dead_process_is_cleared() {
        let d = TestDir::new("guard-dead");
        let dir = d.lock_dir();
        fs::create_dir_all(&dir).expect("mkdir");
        let mut old = info("dead-run");
        old.pid = dead_pid();
        write_lock(&dir.join("prod"), &old);
        write_lock(&dir.join(".prod.takeover"), &old);
        let g = acquire(&dir, "prod", &info("new-run")).expect("take over");
        assert_eq!(g.stale_takeover(), Some(&old));
        assert_eq!(names(&dir), vec!["prod".to_string()]);
    }

    #[test]
    fn live_takeover_in_progress_gives_contended() {
        let d = TestDir::new("guard-live");
        let dir = d.lock_dir();
        fs::create_dir_all(&dir).expect("mkdir");
        let mut old = info("dead-run");
        old.pid = dead_pid();
        write_lock(&dir.join("prod"), &old);
        write_lock(&dir.join(".prod.takeover"), &info("busy-taker"));
        // Written "in a minute": a disk stall of several seconds between writing it and
        // acquiring (seen on a loaded machine) must not age it past the grace.
        let f = File::options()
            .write(true)
            .open(dir.join(".prod.takeover"))
            .expect("open");
        f.set_modified(SystemTime::now() + Duration::from_secs(60))
            .expect("set mtime");
        let err = acquire(&dir, "prod", &info("new-run")).expect_err("contended");
        assert!(matches!(err, LockError::Contended { .. }), "{err:?}");
        assert!(err.to_string().contains("try again"), "{err}");
        // The stale lock was left alone for the process taking it over.
        let on_disk: LockInfo =
            serde_json::from_slice(&fs::read(dir.join("prod")).expect("read")).expect("parse");
        assert_eq!(on_disk, old);
    }

    #[test]
    fn racing_threads_get_one_lock() {
        let d = TestDir::new("race");
        let dir = d.lock_dir();
        fs::create_dir_all(&dir).expect("mkdir");
        let mut old = info("dead-run");
        old.pid = dead_pid();
        for round in 0..30 {
            write_lock(&dir.join("prod"), &old);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let dir = dir.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        acquire(&dir, "prod", &info(&format!("r{round}-t{i}")))
                    })
                })
                .collect();
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect();
            let winners: Vec<&LockGuard> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let on_disk: LockInfo =
                serde_json::from_slice(&fs::read(dir.join("prod")).expect("read")).expect("parse");
            assert_eq!(on_disk, *winners[0].info(), "round {round}");
            assert_eq!(names(&dir), vec!["prod".to_string()], "round {round}");
            drop(results);
            assert!(names(&dir).is_empty(), "round {round}");
        }
    }
}

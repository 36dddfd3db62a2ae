//! `deployer unlock`: show who holds an environment's locks (the local lock file and the
//! remote lock on each host), then remove them after confirmation.

use std::path::{Path, PathBuf};

use clap::Args;

use super::error::{CliError, CmdResult};
use crate::config::{self, Config};
use crate::host::console::{ColorChoice, Console, Verbosity};
use crate::remote::lock::{self as remote_lock, Seen, Settings};
use crate::remote::{Fleet, Inventory};
use crate::store::lock::LockInfo;

pub const EXAMPLES: &str = "\
Examples:
  deployer unlock --env production                 # shows the holders, asks, removes
  deployer unlock --env staging deploy.rhai --yes  # deployer.toml found from the script
  deployer unlock --env production --config ops/deployer.toml

Removes the local lock file of the environment (in the state folder) and the remote lock
on each of its hosts ([env.NAME] lock_path), each only if it is still held by the run it
showed. Use it when a run died on another machine and you do not want to wait for its
lease to expire.

Exit codes: 0 removed (or nothing was locked), 1 not confirmed, or a lock could not be
checked or removed, 2 usage error (bad deployer.toml, unknown environment).";

/// Arguments of `deployer unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// A script of the project: its deployer.toml is used (default: the nearest
    /// deployer.toml from the current folder upward).
    pub script: Option<PathBuf>,
    /// The environment whose locks to remove (default: default_env of deployer.toml).
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// The deployer.toml to use.
    #[arg(long, value_name = "FILE", conflicts_with = "script")]
    pub config: Option<PathBuf>,
    /// Remove without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

fn load(args: &UnlockArgs) -> Result<Config, String> {
    let config = match (&args.config, &args.script) {
        (Some(path), _) => config::load(path).map_err(|e| e.to_string())?,
        (None, Some(script)) => config::for_script(script).map_err(|e| e.to_string())?,
        (None, None) => {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the current folder: {e}"))?;
            match config::find(&cwd) {
                Some(path) => config::load(&path).map_err(|e| e.to_string())?,
                None => Config {
                    state_dir: cwd.join(".deployer"),
                    ..Config::default()
                },
            }
        }
    };
    config.check_state_dir().map_err(|e| e.to_string())?;
    Ok(config)
}

/// The local lock file as read: its holder, or why it cannot be read.
enum Local {
    Free,
    Held(LockInfo),
    Damaged(String),
}

fn read_local(path: &Path) -> Local {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Local::Free,
        Err(e) => Local::Damaged(format!("cannot be read: {e}")),
        Ok(bytes) => match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(info) => Local::Held(info),
            Err(e) => Local::Damaged(format!("is damaged: {e}")),
        },
    }
}

fn asks_yes(question: &str) -> Option<bool> {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return None;
    }
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    Some(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Runs `deployer unlock`.
pub fn unlock(args: UnlockArgs, color: ColorChoice) -> CmdResult {
    let console = Console::new(Verbosity::Normal, color.enabled());
    let config = load(&args).map_err(|e| CliError::usage(format!("{e}; nothing was removed")))?;
    let env = config
        .select(args.env.as_deref())
        .map_err(|e| CliError::usage(format!("{e}; nothing was removed")))?
        .env;
    let inventory = Inventory::from_env(&env)
        .map_err(|e| CliError::usage(format!("deployer.toml: {e}; nothing was removed")))?
        .relative_to(config.path.as_deref().and_then(Path::parent));
    let name = env.name.clone();
    let mut held = 0;
    let mut unknown = 0;

    let local_path = config.state_dir.join("lock").join(&name);
    let local = read_local(&local_path);
    match &local {
        Local::Free => console.info(&format!(
            "local lock of {name} ({}): not locked",
            local_path.display()
        )),
        Local::Held(h) => {
            held += 1;
            let alive = h.host == crate::sys::identity::hostname()
                && !crate::store::atomic::pid_is_dead(h.pid);
            console.info(&format!(
                "local lock of {name} ({}): held by run {} ({}@{}, pid {}{}, script {}, started {})",
                local_path.display(),
                h.run_id,
                h.user,
                h.host,
                h.pid,
                if alive { ", STILL RUNNING on this machine" } else { "" },
                h.script,
                h.started_at
            ));
        }
        Local::Damaged(why) => {
            held += 1;
            console.info(&format!(
                "local lock of {name} ({}): the lock file {why}",
                local_path.display()
            ));
        }
    }

    let settings = Settings::of(&env);
    let fleet = Fleet::default();
    let remote = if inventory.hosts.is_empty() {
        Vec::new()
    } else {
        fleet.configure(inventory);
        let seen = remote_lock::show_all(&fleet, &settings, &|| false);
        console.info(&format!(
            "remote lock of {name} ({} on each host, lease {}):",
            settings.path,
            crate::core::duration::format_duration(settings.lease)
        ));
        for (host, s, _) in &seen {
            console.info(&format!("  {}", s.describe(host)));
            match s {
                Seen::Held { .. } => held += 1,
                Seen::Unknown(_) => unknown += 1,
                Seen::Free => {}
            }
        }
        seen
    };

    if held == 0 {
        if unknown > 0 {
            return Err(CliError::failed(format!(
                "{unknown} host(s) of {name} could not be checked; nothing else is locked"
            )));
        }
        console.success(&format!("{name} is not locked: nothing to remove"));
        return Ok(());
    }
    let yes = args.yes
        || {
            let q = format!("Remove {held} lock(s) of {}?", name.to_uppercase());
            match asks_yes(&q) {
                Some(answer) => answer,
                None => {
                    return Err(CliError::failed(
                        "not removed: no terminal to ask on and --yes was not given; pass --yes to remove them",
                    ));
                }
            }
        };
    if !yes {
        return Err(CliError::failed("not removed: not confirmed"));
    }

    let mut failed = unknown;
    match local {
        Local::Free => {}
        Local::Held(shown) => match read_local(&local_path) {
            Local::Held(now) if now.run_id == shown.run_id => {
                match std::fs::remove_file(&local_path) {
                    Ok(()) => console.success(&format!(
                        "removed the local lock of {name} (run {})",
                        shown.run_id
                    )),
                    Err(e) => {
                        failed += 1;
                        console.error(&format!("cannot remove {}: {e}", local_path.display()));
                    }
                }
            }
            Local::Free => console.info("the local lock was released meanwhile"),
            _ => {
                failed += 1;
                console.error(&format!(
                    "the local lock {} changed since it was shown; run deployer unlock again to see it",
                    local_path.display()
                ));
            }
        },
        Local::Damaged(_) => match std::fs::remove_file(&local_path) {
            Ok(()) => console.success(&format!("removed the damaged local lock of {name}")),
            Err(e) => {
                failed += 1;
                console.error(&format!("cannot remove {}: {e}", local_path.display()));
            }
        },
    }
    for (host, seen, argv) in &remote {
        let (Seen::Held { holder, .. }, Some(argv)) = (seen, argv) else {
            continue;
        };
        let run_id = holder.as_ref().map(|h| h.run_id.as_str()).unwrap_or("");
        match remote_lock::remove(host, argv, &settings, run_id) {
            Ok(true) => console.success(&format!(
                "removed the remote lock of {name} on {host}{}",
                if run_id.is_empty() {
                    String::new()
                } else {
                    format!(" (run {run_id})")
                }
            )),
            Ok(false) => console.info(&format!(
                "the remote lock of {name} on {host} was released meanwhile"
            )),
            Err(e) => {
                failed += 1;
                console.error(&e);
            }
        }
    }
    fleet.close_all();
    if failed > 0 {
        return Err(CliError::failed(format!(
            "{failed} lock(s) of {name} could not be checked or removed (see above)"
        )));
    }
    Ok(())
}

//! `deployer.toml`: settings apart from variables. Top-level settings (`default_env`,
//! `state_dir`, `keep_runs`, `[score]`), variables for every script (`[vars]`), for one
//! script (`[scripts.STEM]`), per environment (`[env.NAME]` settings and
//! `[env.NAME.vars]`). Found beside the script or upward from its resolved folder. A key
//! that is not a known setting is an error with the nearest known one, never a variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::core::score::Thresholds;
use crate::core::suggest::nearest;

/// The shortest lease accepted (renewals every lease/3 need some room).
pub const MIN_LEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// Run folders kept per environment when deployer.toml sets no `keep_runs`: older run
/// folders (report, log, screenshots) are removed after each run; history.jsonl keeps
/// every run's line, so `deployer history` still lists them.
pub const DEFAULT_KEEP_RUNS: u32 = 50;

/// The configuration file name.
pub const FILE_NAME: &str = "deployer.toml";

/// Top-level keys.
pub const TOP_KEYS: &[&str] = &[
    "default_env",
    "state_dir",
    "keep_runs",
    "score",
    "vars",
    "scripts",
    "env",
];
/// Keys of an `[env.NAME]` table (`hosts`, `roles`, `ssh`, `host_vars`: remote hosts, see
/// `crate::remote`).
pub const ENV_KEYS: &[&str] = &[
    "confirm",
    "rollback",
    "on_interrupt",
    "vars",
    "scripts",
    "hosts",
    "roles",
    "ssh",
    "host_vars",
    "lock_lease",
    "lock_path",
];
/// Keys of `[score]`.
pub const SCORE_KEYS: &[&str] = &["pass", "warn"];
/// Keys of `[env.NAME.ssh]` (passed to OpenSSH).
pub const SSH_KEYS: &[&str] = &[
    "user",
    "port",
    "identity",
    "known_hosts",
    "connect_timeout",
    "host_key_checking",
];
/// Values of `rollback`.
pub const ROLLBACK_VALUES: &[&str] = &["auto", "confirm", "never"];

/// The environment variable that lists folders whose deployer.toml and state folder are
/// trusted even when another user owns them or they are world-writable (`*` for all).
pub const TRUSTED_DIRS_VAR: &str = "DEPLOYER_TRUSTED_DIRS";

/// Variables: name → value as text (`var()` converts it like the default it is given).
pub type Vars = BTreeMap<String, String>;

/// What to do when a rollback is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackPolicy {
    /// Roll back without asking.
    #[default]
    Auto,
    /// Ask first (`--yes` answers yes; no terminal means no).
    Confirm,
    /// Never roll back automatically: a person decides (schema migrations and the like).
    Never,
}

/// `[env.NAME.ssh]`: OpenSSH settings for the environment's hosts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SshConfig {
    pub user: Option<String>,
    pub port: Option<i64>,
    pub identity: Option<String>,
    pub known_hosts: Option<String>,
    pub connect_timeout: Option<String>,
    /// `"strict"` (the default: an unknown host key fails) or `"accept-new"`.
    pub host_key_checking: Option<String>,
}

/// One environment.
#[derive(Debug, Clone, Default)]
pub struct EnvConfig {
    pub name: String,
    /// Ask before deploying.
    pub confirm: bool,
    pub rollback: RollbackPolicy,
    /// Roll back when a run is interrupted after changes began (`on_interrupt =
    /// "rollback"`); by default an interrupted run stops and says how to roll back.
    pub rollback_on_interrupt: bool,
    /// `[env.NAME.vars]`: variables for this environment.
    pub vars: Vars,
    /// `[env.NAME.scripts.STEM]`: variables for one script in this environment.
    pub scripts: BTreeMap<String, Vars>,
    /// Remote hosts (`on(...)`, `hosts()`).
    pub hosts: Vec<String>,
    /// Roles: name → hosts (`hosts("web")`).
    pub roles: BTreeMap<String, Vec<String>>,
    /// OpenSSH settings.
    pub ssh: SshConfig,
    /// Per-host variables, read with `host_var()` inside `on(...)`.
    pub host_vars: BTreeMap<String, Vars>,
    /// How long a run's remote lock lasts without renewal (`lock_lease = "120s"`; none:
    /// `remote::lock::DEFAULT_LEASE`).
    pub lock_lease: Option<std::time::Duration>,
    /// The lock folder on each host (`lock_path`; none: `/tmp/deployer-lock-NAME`).
    pub lock_path: Option<String>,
}

/// The whole file (or the defaults when there is none).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub default_env: Option<String>,
    pub envs: BTreeMap<String, EnvConfig>,
    pub thresholds: Thresholds,
    /// Where runs, history and locks are kept.
    pub state_dir: PathBuf,
    /// Run folders kept per environment, as `keep_runs` sets it (none: the default,
    /// [`DEFAULT_KEEP_RUNS`]; see [`Config::keep_runs`]).
    pub keep_runs: Option<u32>,
    /// `[vars]`: variables for every script and environment.
    pub vars: Vars,
    /// `[scripts.STEM]`: variables for one script (by file stem).
    pub scripts: BTreeMap<String, Vars>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}:{line}:{col}: {message}")]
    Syntax {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Invalid {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unknown environment \"{name}\": {known}")]
    UnknownEnv { name: String, known: String },
    #[error("refusing {what} {path}: {why}; if you trust it, add its folder to {TRUSTED_DIRS_VAR} (colon-separated folders, `*` for all), such as {TRUSTED_DIRS_VAR}={dir}")]
    Untrusted {
        what: &'static str,
        path: String,
        why: String,
        dir: String,
    },
}

/// Finds `deployer.toml` in `start` or the nearest folder above it.
pub fn find(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(FILE_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    None
}

/// Returns the folder a script's configuration is searched from: the script's folder after
/// resolving the path (symlinks, `..`, the current folder), so `deploy.rhai` run from
/// `repo/scripts` and `scripts/deploy.rhai` run from `repo` find the same file.
pub fn script_dir(script: &Path) -> PathBuf {
    let resolved = std::fs::canonicalize(script).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|cwd| cwd.join(script))
            .unwrap_or_else(|_| script.to_path_buf())
    });
    resolved
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Loads the configuration that applies to a script: the nearest `deployer.toml` from the
/// script's resolved folder upward, or defaults with runs kept beside the script. Refuses
/// a file or state folder that someone else could have planted (see [`check_trusted`]).
pub fn for_script(script: &Path) -> Result<Config, ConfigError> {
    let dir = script_dir(script);
    let config = match find(&dir) {
        Some(path) => load(&path)?,
        None => Config {
            state_dir: dir.join(".deployer"),
            ..Config::default()
        },
    };
    config.check_state_dir()?;
    Ok(config)
}

/// Loads a configuration file after checking that it can be trusted.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    check_trusted("deployer.toml", path)?;
    let shown = path.display().to_string();
    let text = read_limited(path).map_err(|source| ConfigError::Io {
        path: shown.clone(),
        source,
    })?;
    parse(&text, path)
}

/// The largest deployer.toml read: far above any real one, and a device or a runaway file
/// is an error instead of an endless read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

fn read_limited(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB: is this the right file?",
            MAX_CONFIG_BYTES / 1024
        )));
    }
    Ok(text)
}

/// Refuses a file or folder that is world-writable or owned by someone other than the
/// current user or root, unless its folder is listed in `DEPLOYER_TRUSTED_DIRS`: a
/// deployer.toml planted in a shared parent folder must not steer root's deploy.
pub fn check_trusted(what: &'static str, path: &Path) -> Result<(), ConfigError> {
    let trusted = std::env::var(TRUSTED_DIRS_VAR).unwrap_or_default();
    check_trusted_with(what, path, &trusted, current_uid())
}

#[cfg(unix)]
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn current_uid() -> u32 {
    0
}

/// [`check_trusted`] with the trusted list and the user given (for tests).
pub fn check_trusted_with(
    what: &'static str,
    path: &Path,
    trusted: &str,
    uid: u32,
) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(()); // absent: nothing to trust yet (reading it reports the error)
        };
        let link_owner = std::fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.file_type().is_symlink())
            .map(|m| m.uid())
            .filter(|owner| *owner != uid && *owner != 0);
        let why = if let Some(owner) = link_owner {
            format!("it is a symbolic link owned by uid {owner}, not by you (uid {uid}) or root")
        } else if meta.mode() & 0o002 != 0 {
            format!(
                "it is world-writable (mode {:o}), so any user could have changed it; run `chmod o-w {}`",
                meta.mode() & 0o7777,
                path.display()
            )
        } else if meta.uid() != uid && meta.uid() != 0 {
            format!(
                "it is owned by uid {}, not by you (uid {uid}) or root",
                meta.uid()
            )
        } else {
            return Ok(());
        };
        let folder = if meta.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let folder = std::fs::canonicalize(&folder).unwrap_or(folder);
        if is_trusted(&folder, trusted) {
            return Ok(());
        }
        Err(ConfigError::Untrusted {
            what,
            path: path.display().to_string(),
            why,
            dir: folder.display().to_string(),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (what, path, trusted, uid);
        Ok(())
    }
}

/// True when `folder` is one of the `:`-separated folders of `trusted` (or below one of
/// them), or `trusted` lists `*`.
pub fn is_trusted(folder: &Path, trusted: &str) -> bool {
    trusted.split(':').filter(|s| !s.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = Path::new(entry);
        let entry = std::fs::canonicalize(entry).unwrap_or_else(|_| entry.to_path_buf());
        folder.starts_with(&entry)
    })
}

/// Where a key sits in the file: the key path (`["env", "production", "confrim"]`).
struct Doc<'a> {
    text: &'a str,
    shown: String,
    spans: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl Doc<'_> {
    /// Returns the line and column of the deepest key of `keys` that is in the file.
    fn position(&self, keys: &[&str]) -> (usize, usize) {
        let Some(root) = &self.spans else {
            return (1, 1);
        };
        let mut table = root.get_ref();
        let mut at = 0;
        for key in keys {
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key) else {
                break;
            };
            at = k.span().start;
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        line_col(self.text, at)
    }

    fn error(&self, keys: &[&str], message: String) -> ConfigError {
        let (line, col) = self.position(keys);
        ConfigError::Invalid {
            path: self.shown.clone(),
            line,
            col,
            message,
        }
    }

    /// An unknown key: names the table, the nearest known key and all of them.
    fn unknown(&self, keys: &[&str], table: &str, known: &[&str], extra: &str) -> ConfigError {
        let key = keys.last().copied().unwrap_or_default();
        let hint = nearest(key, known.iter().copied())
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        self.error(
            keys,
            format!(
                "unknown setting `{key}` in {table}; {hint}the settings there are: {}{extra}",
                known.join(", ")
            ),
        )
    }
}

/// Parses configuration text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax {
            path: shown.clone(),
            line,
            col,
            message: e.message().to_string(),
        }
    })?;
    let doc = Doc {
        text,
        shown,
        spans: toml::de::DeTable::parse(text).ok(),
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut config = Config {
        path: Some(path.to_path_buf()),
        state_dir: base.join(".deployer"),
        ..Config::default()
    };
    for (key, value) in &table {
        let at = [key.as_str()];
        match (key.as_str(), value) {
            ("default_env", toml::Value::String(s)) => config.default_env = Some(s.clone()),
            ("state_dir", toml::Value::String(s)) => config.state_dir = base.join(s),
            ("keep_runs", toml::Value::Integer(n)) if *n >= 1 => {
                config.keep_runs = u32::try_from(*n).ok();
            }
            ("keep_runs", v) => {
                return Err(doc.error(
                    &at,
                    format!(
                        "keep_runs must be a whole number of at least 1, got {}",
                        show(v)
                    ),
                ))
            }
            ("default_env" | "state_dir", v) => {
                return Err(doc.error(&at, format!("{key} must be a string, got {}", show(v))))
            }
            ("score", toml::Value::Table(t)) => {
                for (k, v) in t {
                    let at = ["score", k.as_str()];
                    if !SCORE_KEYS.contains(&k.as_str()) {
                        return Err(doc.unknown(&at, "[score]", SCORE_KEYS, ""));
                    }
                    let n = number(v).ok_or_else(|| {
                        doc.error(
                            &at,
                            format!("[score] {k} must be a number, got {}", show(v)),
                        )
                    })?;
                    if k == "pass" {
                        config.thresholds.pass = n;
                    } else {
                        config.thresholds.warn = n;
                    }
                }
                config
                    .thresholds
                    .validate()
                    .map_err(|e| doc.error(&at, format!("[score]: {e}")))?;
            }
            ("vars", toml::Value::Table(t)) => {
                config.vars = vars(&doc, &["vars"], "[vars]", t)?;
            }
            ("scripts", toml::Value::Table(t)) => {
                config.scripts = script_vars(&doc, &["scripts"], "scripts", t)?;
            }
            ("env", toml::Value::Table(envs)) => {
                for (name, env) in envs {
                    let toml::Value::Table(env) = env else {
                        return Err(doc.error(
                            &["env", name],
                            format!("[env.{name}] must be a table, got {}", show(env)),
                        ));
                    };
                    config
                        .envs
                        .insert(name.clone(), env_config(&doc, name, env)?);
                }
            }
            ("score" | "vars" | "scripts" | "env", v) => {
                return Err(doc.error(
                    &at,
                    format!("`{key}` must be a table ([{key}]), got {}", show(v)),
                ))
            }
            (other, v) => {
                let extra = if is_scalar(v) {
                    format!("; if `{other}` is a variable, move it to [vars]")
                } else {
                    String::new()
                };
                return Err(doc.unknown(&[other], "the top level", TOP_KEYS, &extra));
            }
        }
    }
    if let Some(d) = &config.default_env {
        if !config.envs.is_empty() && !config.envs.contains_key(d) {
            return Err(doc.error(
                &["default_env"],
                format!(
                    "default_env = \"{d}\" names no [env.{d}] table; environments: {}",
                    config.envs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(config)
}

fn is_scalar(v: &toml::Value) -> bool {
    matches!(
        v,
        toml::Value::String(_)
            | toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
    )
}

/// Reads a table of variables: strings, numbers and booleans, kept as text.
fn vars(doc: &Doc, at: &[&str], shown: &str, table: &toml::Table) -> Result<Vars, ConfigError> {
    let mut out = Vars::new();
    for (k, v) in table {
        if !is_scalar(v) {
            let mut keys = at.to_vec();
            keys.push(k);
            return Err(doc.error(
                &keys,
                format!(
                    "{shown} {k}: variables must be strings, numbers or booleans, got {}",
                    show(v)
                ),
            ));
        }
        let text = match v {
            toml::Value::String(s) => s.clone(),
            other => show(other),
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

/// Reads `[scripts.STEM]` tables (or `[env.E.scripts.STEM]`, `[env.E.host_vars.HOST]`).
fn script_vars(
    doc: &Doc,
    at: &[&str],
    shown: &str,
    table: &toml::Table,
) -> Result<BTreeMap<String, Vars>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, v) in table {
        let mut keys = at.to_vec();
        keys.push(name);
        let toml::Value::Table(t) = v else {
            return Err(doc.error(
                &keys,
                format!(
                    "{shown}.{name} must be a table of variables ([{shown}.{name}]), got {}",
                    show(v)
                ),
            ));
        };
        out.insert(
            name.clone(),
            vars(doc, &keys, &format!("[{shown}.{name}]"), t)?,
        );
    }
    Ok(out)
}

fn strings(
    doc: &Doc,
    at: &[&str],
    shown: &str,
    v: &toml::Value,
) -> Result<Vec<String>, ConfigError> {
    let bad = || {
        doc.error(
            at,
            format!("{shown} must be an array of strings, got {}", show(v)),
        )
    };
    let toml::Value::Array(items) = v else {
        return Err(bad());
    };
    items
        .iter()
        .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

fn env_config(doc: &Doc, name: &str, table: &toml::Table) -> Result<EnvConfig, ConfigError> {
    let mut env = EnvConfig {
        name: name.to_string(),
        ..EnvConfig::default()
    };
    for (key, value) in table {
        let at = ["env", name, key.as_str()];
        let shown = format!("[env.{name}] {key}");
        match (key.as_str(), value) {
            ("confirm", toml::Value::Boolean(b)) => env.confirm = *b,
            ("confirm", v) => {
                return Err(doc.error(
                    &at,
                    format!("{shown} must be true or false, got {}", show(v)),
                ))
            }
            ("on_interrupt", toml::Value::String(s)) if s == "stop" || s == "rollback" => {
                env.rollback_on_interrupt = s == "rollback";
            }
            ("on_interrupt", v) => {
                return Err(doc.error(
                    &at,
                    format!(
                        "{shown} must be \"stop\" (the default: stop and say how to roll back) or \"rollback\" (roll back when interrupted after changes began), got {}",
                        show(v)
                    ),
                ))
            }
            ("rollback", toml::Value::String(s)) => {
                env.rollback = match s.as_str() {
                    "auto" => RollbackPolicy::Auto,
                    "confirm" => RollbackPolicy::Confirm,
                    "never" => RollbackPolicy::Never,
                    other => {
                        let hint = nearest(other, ROLLBACK_VALUES.iter().copied())
                            .map(|s| format!("did you mean \"{s}\"? "))
                            .unwrap_or_default();
                        return Err(doc.error(
                            &at,
                            format!(
                                "[env.{name}] rollback = \"{other}\": {hint}use \"auto\", \"confirm\" or \"never\""
                            ),
                        ));
                    }
                }
            }
            ("rollback", v) => {
                return Err(doc.error(&at, format!("{shown} must be a string, got {}", show(v))))
            }
            ("vars", toml::Value::Table(t)) => {
                env.vars = vars(doc, &at, &format!("[env.{name}.vars]"), t)?;
            }
            ("scripts", toml::Value::Table(t)) => {
                env.scripts = script_vars(doc, &at, &format!("env.{name}.scripts"), t)?;
            }
            ("host_vars", toml::Value::Table(t)) => {
                env.host_vars = script_vars(doc, &at, &format!("env.{name}.host_vars"), t)?;
            }
            ("hosts", v) => env.hosts = strings(doc, &at, &shown, v)?,
            ("roles", toml::Value::Table(t)) => {
                for (role, hosts) in t {
                    let keys = ["env", name, "roles", role.as_str()];
                    let list = strings(doc, &keys, &format!("[env.{name}.roles] {role}"), hosts)?;
                    env.roles.insert(role.clone(), list);
                }
            }
            ("ssh", toml::Value::Table(t)) => env.ssh = ssh(doc, name, t)?,
            ("lock_lease", toml::Value::String(t)) => {
                let d = crate::core::duration::parse_duration(t)
                    .map_err(|e| doc.error(&at, format!("{shown}: {e}")))?;
                if d < MIN_LEASE {
                    return Err(doc.error(
                        &at,
                        format!("{shown} = \"{t}\" is too short: a lease is renewed every third of it; use at least 1s (the default is 120s)"),
                    ));
                }
                env.lock_lease = Some(d);
            }
            ("lock_path", toml::Value::String(p)) => {
                let ok = p.starts_with('/')
                    && p.len() > 1
                    && !p.ends_with('/')
                    && !p.split('/').any(|part| part == "..")
                    && !p.chars().any(char::is_control);
                if !ok {
                    return Err(doc.error(
                        &at,
                        format!("{shown} = \"{p}\" must be an absolute path of a folder of its own on the hosts, such as \"/tmp/deployer-lock-{name}\" (not /, no trailing /, no ..)"),
                    ));
                }
                env.lock_path = Some(p.clone());
            }
            ("lock_lease" | "lock_path", v) => {
                return Err(doc.error(&at, format!("{shown} must be a string, got {}", show(v))))
            }
            ("vars" | "scripts" | "host_vars" | "roles" | "ssh", v) => {
                return Err(doc.error(
                    &at,
                    format!(
                        "{shown} must be a table ([env.{name}.{key}]), got {}",
                        show(v)
                    ),
                ))
            }
            (other, v) => {
                let extra = if is_scalar(v) {
                    // Name every variable to move at once, not one per run.
                    let others: Vec<&str> = table
                        .iter()
                        .filter(|(k, v)| {
                            k.as_str() != other && is_scalar(v) && !ENV_KEYS.contains(&k.as_str())
                        })
                        .map(|(k, _)| k.as_str())
                        .collect();
                    format!(
                        "; variables now live in their own table: if `{other}` is a variable, move `{other} = {}` to [env.{name}.vars]{}",
                        show(v),
                        if others.is_empty() {
                            String::new()
                        } else {
                            format!(" (with {})", others.join(", "))
                        }
                    )
                } else {
                    String::new()
                };
                return Err(doc.unknown(&at, &format!("[env.{name}]"), ENV_KEYS, &extra));
            }
        }
    }
    Ok(env)
}

fn ssh(doc: &Doc, env: &str, table: &toml::Table) -> Result<SshConfig, ConfigError> {
    let mut out = SshConfig::default();
    for (key, v) in table {
        let at = ["env", env, "ssh", key.as_str()];
        let shown = format!("[env.{env}.ssh] {key}");
        let text = || {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| doc.error(&at, format!("{shown} must be a string, got {}", show(v))))
        };
        match key.as_str() {
            "user" => out.user = Some(text()?),
            "identity" => out.identity = Some(text()?),
            "known_hosts" => out.known_hosts = Some(text()?),
            "host_key_checking" => {
                let t = text()?;
                if t != "strict" && t != "accept-new" {
                    return Err(doc.error(
                        &at,
                        format!("{shown} must be \"strict\" (the default) or \"accept-new\" (trust a new host's key on first use), got \"{t}\""),
                    ));
                }
                out.host_key_checking = Some(t);
            }
            "connect_timeout" => {
                let t = text()?;
                crate::core::duration::parse_duration(&t)
                    .map_err(|e| doc.error(&at, format!("{shown}: {e}")))?;
                out.connect_timeout = Some(t);
            }
            "port" => match v {
                toml::Value::Integer(p) if (1..=65535).contains(p) => out.port = Some(*p),
                _ => {
                    return Err(doc.error(
                        &at,
                        format!("{shown} must be a port number (1-65535), got {}", show(v)),
                    ))
                }
            },
            _ => return Err(doc.unknown(&at, &format!("[env.{env}.ssh]"), SSH_KEYS, "")),
        }
    }
    Ok(out)
}

/// Shows a TOML value the way it is written.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Returns the 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// The environment chosen for a run and whether the choice deserves a warning.
#[derive(Debug, Clone)]
pub struct Selected {
    pub env: EnvConfig,
    /// Set when an environment was named but the configuration defines none.
    pub warning: Option<String>,
}

impl Config {
    /// Returns how many run folders of an environment are kept: `keep_runs`, else
    /// [`DEFAULT_KEEP_RUNS`].
    pub fn keep_runs(&self) -> u32 {
        self.keep_runs.unwrap_or(DEFAULT_KEEP_RUNS)
    }

    /// Picks the environment: `--env`, else `default_env`, else `default` when the file
    /// defines no environments. A name the file does not define is an error with the
    /// nearest name; with no environments defined any name is accepted, with a warning.
    pub fn select_env(&self, requested: Option<&str>) -> Result<EnvConfig, ConfigError> {
        self.select(requested).map(|s| s.env)
    }

    /// [`Config::select_env`] with the warning to print when the name cannot be checked.
    pub fn select(&self, requested: Option<&str>) -> Result<Selected, ConfigError> {
        let name = match (requested, &self.default_env) {
            (Some(n), _) => n.to_string(),
            (None, Some(d)) => d.clone(),
            (None, None) if self.envs.is_empty() => "default".to_string(),
            (None, None) => {
                return Err(ConfigError::UnknownEnv {
                    name: String::new(),
                    known: format!(
                        "no --env given and no default_env set in {}; pass --env with one of: {}, or set default_env",
                        self.shown_path(),
                        self.envs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })
            }
        };
        if self.envs.is_empty() {
            let warning = requested.map(|n| match &self.path {
                None => format!(
                    "no deployer.toml found, so no environments are defined: \"{n}\" is used as given (create deployer.toml with [env.{n}] to have typos caught)"
                ),
                Some(p) => format!(
                    "{} defines no environments: \"{n}\" is used as given (add [env.{n}] to have typos caught)",
                    p.display()
                ),
            });
            return Ok(Selected {
                env: EnvConfig {
                    name,
                    ..EnvConfig::default()
                },
                warning,
            });
        }
        let env = self.envs.get(&name).cloned().ok_or_else(|| {
            let names: Vec<&str> = self.envs.keys().map(String::as_str).collect();
            let hint = nearest(&name, names.iter().copied())
                .map(|s| format!("did you mean \"{s}\"? "))
                .unwrap_or_default();
            ConfigError::UnknownEnv {
                name: name.clone(),
                known: format!(
                    "{hint}the environments in {} are {}",
                    self.shown_path(),
                    names.join(", ")
                ),
            }
        })?;
        Ok(Selected { env, warning: None })
    }

    fn shown_path(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| FILE_NAME.to_string())
    }

    /// The variables a script sees in an environment, before `--var`: `[env.E.scripts.S]`
    /// over `[env.E.vars]` over `[scripts.S]` over `[vars]` (`S` is the script's file stem).
    pub fn vars_for(&self, script: &Path, env: &EnvConfig) -> Vars {
        let stem = script
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut out = self.vars.clone();
        if let Some(v) = self.scripts.get(&stem) {
            out.extend(v.clone());
        }
        out.extend(env.vars.clone());
        if let Some(v) = env.scripts.get(&stem) {
            out.extend(v.clone());
        }
        out
    }

    /// Refuses a state folder that is world-writable or owned by someone else (see
    /// [`check_trusted`]); an absent one is created later with the right owner.
    pub fn check_state_dir(&self) -> Result<(), ConfigError> {
        check_trusted("state folder", &self.state_dir)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
default_env = "staging"
keep_runs = 20
[score]
pass = 85
warn = 65
[vars]
health_path = "/health"
base_url = "http://everywhere"
[scripts.deploy]
worker_dir = "apps/worker"
base_url = "http://deploy-script"
[env.staging]
rollback = "auto"
hosts = ["deploy@web1"]
[env.staging.vars]
base_url = "http://127.0.0.1:8080"
replicas = 2
[env.production]
confirm = true
rollback = "confirm"
hosts = ["web1", "web2"]
[env.production.roles]
web = ["web1", "web2"]
[env.production.ssh]
identity = "~/.ssh/deploy"
connect_timeout = "10s"
[env.production.host_vars.web1]
url = "http://web1:8080"
[env.production.vars]
base_url = "https://api.example.com"
[env.production.scripts.deploy]
base_url = "https://deploy.example.com"
"#;

    #[test]
    fn parses_settings_and_variables_apart() {
        let c = parse(GOOD, Path::new("proj/deployer.toml")).expect("valid");
        assert_eq!(c.default_env.as_deref(), Some("staging"));
        assert_eq!(c.thresholds.pass, 85.0);
        assert_eq!(c.keep_runs, Some(20));
        assert_eq!(c.keep_runs(), 20);
        assert_eq!(
            Config::default().keep_runs(),
            DEFAULT_KEEP_RUNS,
            "a default, not keep-all"
        );
        assert_eq!(c.state_dir, Path::new("proj/.deployer"));
        let prod = c.select_env(Some("production")).expect("known");
        assert!(prod.confirm);
        assert_eq!(prod.rollback, RollbackPolicy::Confirm);
        assert_eq!(prod.roles["web"], ["web1", "web2"]);
        assert_eq!(prod.ssh.identity.as_deref(), Some("~/.ssh/deploy"));
        assert_eq!(prod.host_vars["web1"]["url"], "http://web1:8080");
        let staging = c.select_env(None).expect("default");
        assert_eq!(staging.vars["replicas"], "2");
        assert_eq!(staging.hosts, ["deploy@web1"]);
    }

    #[test]
    fn variables_are_looked_up_from_the_most_specific_table() {
        let c = parse(GOOD, Path::new("deployer.toml")).expect("valid");
        let staging = c.select_env(Some("staging")).expect("known");
        let prod = c.select_env(Some("production")).expect("known");
        let other = Path::new("other.rhai");
        let deploy = Path::new("sub/deploy.rhai");
        assert_eq!(
            c.vars_for(other, &staging)["base_url"],
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            c.vars_for(deploy, &prod)["base_url"],
            "https://deploy.example.com"
        );
        assert_eq!(
            c.vars_for(other, &prod)["base_url"],
            "https://api.example.com"
        );
        let none = EnvConfig::default();
        assert_eq!(
            c.vars_for(deploy, &none)["base_url"],
            "http://deploy-script"
        );
        assert_eq!(c.vars_for(other, &none)["base_url"], "http://everywhere");
        assert_eq!(c.vars_for(deploy, &staging)["worker_dir"], "apps/worker");
        assert!(!c.vars_for(other, &staging).contains_key("worker_dir"));
    }

    #[test]
    fn unknown_environment_lists_the_known_ones() {
        let c = parse(GOOD, Path::new("deployer.toml")).expect("valid");
        let e = c.select_env(Some("prod")).expect_err("unknown").to_string();
        assert!(e.contains("production, staging"), "{e}");
        assert!(e.contains("did you mean \"production\""), "{e}");
    }

    #[test]
    fn any_environment_is_accepted_with_a_warning_when_none_are_defined() {
        let c = Config::default();
        let s = c.select(Some("anything")).expect("accepted");
        assert_eq!(s.env.name, "anything");
        assert!(s
            .warning
            .expect("warned")
            .contains("no environments are defined"));
        assert!(c.select(None).expect("default").warning.is_none());
    }

    #[test]
    fn bad_toml_has_line_and_column() {
        let e = parse(
            "default_env = \"a\"\n[env.a]\nx = \n",
            Path::new("deployer.toml"),
        )
        .expect_err("bad");
        let s = e.to_string();
        assert!(s.starts_with("deployer.toml:3:"), "{s}");
    }

    #[test]
    fn unknown_keys_are_errors_with_the_nearest_key_and_position() {
        for (text, needle) in [
            (
                "[env.production]\nconfrim = true\n",
                "deployer.toml:2:1: unknown setting `confrim` in [env.production]; did you mean `confirm`?",
            ),
            (
                "[env.production]\nconfirm = true\nbase_url = \"x\"\n",
                "move `base_url = \"x\"` to [env.production.vars]",
            ),
            (
                "[env.p]\na = 1\nb = 2\nc = true\n",
                "move `a = 1` to [env.p.vars] (with b, c)",
            ),
            ("colour = 1\n", "deployer.toml:1:1: unknown setting `colour` in the top level"),
            ("defualt_env = \"a\"\n", "did you mean `default_env`?"),
            ("[score]\npas = 50\n", "deployer.toml:2:1: unknown setting `pas` in [score]; did you mean `pass`?"),
            (
                "[env.a.ssh]\nidentiy = \"k\"\n",
                "unknown setting `identiy` in [env.a.ssh]; did you mean `identity`?",
            ),
            ("[env.a]\nrollback = \"nevr\"\n", "did you mean \"never\"?"),
            ("[env.a]\nhosts = \"web1\"\n", "must be an array of strings"),
            ("[vars]\nlist = [1]\n", "variables must be strings, numbers or booleans"),
            ("[scripts]\nx = 1\n", "scripts.x must be a table of variables"),
            ("keep_runs = 0\n", "keep_runs must be a whole number of at least 1"),
            ("[env.a.ssh]\nconnect_timeout = \"soon\"\n", "connect_timeout"),
            (
                "[env.a.ssh]\nhost_key_checking = \"no\"\n",
                "must be \"strict\" (the default) or \"accept-new\"",
            ),
            ("[env.a]\nlock_lease = \"soon\"\n", "deployer.toml:2:1: [env.a] lock_lease"),
            ("[env.a]\nlock_lease = \"500ms\"\n", "is too short"),
            ("[env.a]\nlock_lease = 120\n", "lock_lease must be a string, got 120"),
            ("[env.a]\nlock_path = \"locks/x\"\n", "must be an absolute path"),
            ("[env.a]\nlock_path = \"/\"\n", "must be an absolute path"),
            ("[env.a]\nlock_leas = \"1m\"\n", "did you mean `lock_lease`?"),
        ] {
            let e = parse(text, Path::new("deployer.toml"))
                .expect_err(text)
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (text, needle) in [
            (
                "[env.a]\nrollback = \"sometimes\"\n",
                "rollback = \"sometimes\"",
            ),
            ("[score]\npass = 50\nwarn = 70\n", "[score]"),
            ("default_env = \"x\"\n[env.a]\n", "names no [env.x]"),
        ] {
            let e = parse(text, Path::new("deployer.toml"))
                .expect_err(text)
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn trusted_folders_follow_the_list() {
        let dir = Path::new("/srv/app");
        assert!(is_trusted(dir, "*"));
        assert!(is_trusted(dir, "/opt:/srv/app"));
        assert!(is_trusted(Path::new("/srv/app/scripts"), "/srv/app"));
        assert!(!is_trusted(dir, "/srv/other"));
        assert!(!is_trusted(dir, ""));
    }
}

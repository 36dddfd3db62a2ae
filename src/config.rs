//! `deployer.toml`: environments and their variables, confirmation and rollback policy,
//! score thresholds, and where runs are recorded. Found beside the script or upward.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::core::score::Thresholds;

/// The configuration file name.
pub const FILE_NAME: &str = "deployer.toml";

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

/// One environment.
#[derive(Debug, Clone, Default)]
pub struct EnvConfig {
    pub name: String,
    /// Ask before deploying.
    pub confirm: bool,
    pub rollback: RollbackPolicy,
    /// Variables read with `var()`; `--var` overrides them.
    pub vars: BTreeMap<String, String>,
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
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unknown environment \"{name}\": {known}")]
    UnknownEnv { name: String, known: String },
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

/// Loads the configuration that applies to a script: the nearest `deployer.toml` from the
/// script's folder upward, or defaults with runs kept beside the script.
pub fn for_script(script: &Path) -> Result<Config, ConfigError> {
    let dir = script
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match find(dir) {
        Some(path) => load(&path),
        None => Ok(Config {
            state_dir: dir.join(".deployer"),
            ..Config::default()
        }),
    }
}

/// Loads a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: shown.clone(),
        source,
    })?;
    parse(&text, path)
}

/// Parses configuration text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let invalid = |message: String| ConfigError::Invalid {
        path: shown.clone(),
        message,
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax {
            path: shown.clone(),
            line,
            col,
            message: e.message().to_string(),
        }
    })?;
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
        match (key.as_str(), value) {
            ("default_env", toml::Value::String(s)) => config.default_env = Some(s.clone()),
            ("state_dir", toml::Value::String(s)) => config.state_dir = base.join(s),
            ("score", toml::Value::Table(t)) => {
                for (k, v) in t {
                    let n = number(v).ok_or_else(|| {
                        invalid(format!("[score] {k} must be a number, got {}", show(v)))
                    })?;
                    match k.as_str() {
                        "pass" => config.thresholds.pass = n,
                        "warn" => config.thresholds.warn = n,
                        other => {
                            return Err(invalid(format!(
                                "[score] has no setting \"{other}\": use pass and warn"
                            )))
                        }
                    }
                }
                config
                    .thresholds
                    .validate()
                    .map_err(|e| invalid(format!("[score]: {e}")))?;
            }
            ("env", toml::Value::Table(envs)) => {
                for (name, env) in envs {
                    let toml::Value::Table(env) = env else {
                        return Err(invalid(format!("[env.{name}] must be a table")));
                    };
                    config
                        .envs
                        .insert(name.clone(), env_config(name, env).map_err(invalid)?);
                }
            }
            (other, _) => {
                return Err(invalid(format!(
                    "unknown setting \"{other}\": the top level takes default_env, state_dir, [score] and [env.NAME]"
                )))
            }
        }
    }
    if let Some(d) = &config.default_env {
        if !config.envs.is_empty() && !config.envs.contains_key(d) {
            return Err(invalid(format!(
                "default_env = \"{d}\" names no [env.{d}] table; environments: {}",
                config.envs.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(config)
}

fn env_config(name: &str, table: &toml::Table) -> Result<EnvConfig, String> {
    let mut env = EnvConfig {
        name: name.to_string(),
        ..EnvConfig::default()
    };
    for (key, value) in table {
        match (key.as_str(), value) {
            ("confirm", toml::Value::Boolean(b)) => env.confirm = *b,
            ("confirm", v) => {
                return Err(format!(
                    "[env.{name}] confirm must be true or false, got {}",
                    show(v)
                ))
            }
            ("rollback", toml::Value::String(s)) => {
                env.rollback = match s.as_str() {
                    "auto" => RollbackPolicy::Auto,
                    "confirm" => RollbackPolicy::Confirm,
                    "never" => RollbackPolicy::Never,
                    other => {
                        return Err(format!(
                    "[env.{name}] rollback = \"{other}\": use \"auto\", \"confirm\" or \"never\""
                ))
                    }
                }
            }
            ("rollback", v) => {
                return Err(format!(
                    "[env.{name}] rollback must be a string, got {}",
                    show(v)
                ))
            }
            (k, toml::Value::String(s)) => {
                env.vars.insert(k.to_string(), s.clone());
            }
            (
                k,
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => {
                env.vars.insert(k.to_string(), show(v));
            }
            (k, v) => {
                return Err(format!(
                    "[env.{name}] {k}: variables must be strings, numbers or booleans, got {}",
                    show(v)
                ))
            }
        }
    }
    Ok(env)
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
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

impl Config {
    /// Picks the environment: `--env`, else `default_env`, else `default` when the file
    /// defines no environments. A name the file does not define is an error listing them.
    pub fn select_env(&self, requested: Option<&str>) -> Result<EnvConfig, ConfigError> {
        let name = match (requested, &self.default_env) {
            (Some(n), _) => n.to_string(),
            (None, Some(d)) => d.clone(),
            (None, None) if self.envs.is_empty() => "default".to_string(),
            (None, None) => {
                return Err(ConfigError::UnknownEnv {
                    name: String::new(),
                    known: format!(
                        "no --env given and no default_env set; choose one of: {}",
                        self.envs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })
            }
        };
        if self.envs.is_empty() {
            return Ok(EnvConfig {
                name,
                ..EnvConfig::default()
            });
        }
        self.envs.get(&name).cloned().ok_or_else(|| {
            let names: Vec<&str> = self.envs.keys().map(String::as_str).collect();
            let hint = crate::core::suggest::nearest(&name, names.iter().copied())
                .map(|s| format!("did you mean \"{s}\"? "))
                .unwrap_or_default();
            ConfigError::UnknownEnv {
                name: name.clone(),
                known: format!(
                    "{hint}the environments in {} are {}",
                    self.path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    names.join(", ")
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
default_env = "staging"
[score]
pass = 85
warn = 65
[env.staging]
base_url = "http://127.0.0.1:8080"
replicas = 2
[env.production]
base_url = "https://api.example.com"
confirm = true
rollback = "confirm"
"#;

    #[test]
    fn parses_environments_and_thresholds() {
        let c = parse(GOOD, Path::new("proj/deployer.toml")).expect("valid");
        assert_eq!(c.default_env.as_deref(), Some("staging"));
        assert_eq!(c.thresholds.pass, 85.0);
        assert_eq!(c.state_dir, Path::new("proj/.deployer"));
        let prod = c.select_env(Some("production")).expect("known");
        assert!(prod.confirm);
        assert_eq!(prod.rollback, RollbackPolicy::Confirm);
        let staging = c.select_env(None).expect("default");
        assert_eq!(staging.vars["replicas"], "2");
    }

    #[test]
    fn unknown_environment_lists_the_known_ones() {
        let c = parse(GOOD, Path::new("deployer.toml")).expect("valid");
        let e = c.select_env(Some("prod")).expect_err("unknown").to_string();
        assert!(e.contains("production, staging"), "{e}");
        assert!(e.contains("did you mean \"production\""), "{e}");
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
    fn bad_values_are_named() {
        for (text, needle) in [
            (
                "[env.a]\nrollback = \"sometimes\"\n",
                "rollback = \"sometimes\"",
            ),
            ("[score]\npass = 50\nwarn = 70\n", "[score]"),
            ("colour = 1\n", "unknown setting \"colour\""),
            ("default_env = \"x\"\n[env.a]\n", "names no [env.x]"),
        ] {
            let e = parse(text, Path::new("deployer.toml"))
                .expect_err(text)
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}

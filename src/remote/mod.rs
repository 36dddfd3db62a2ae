//! Remote hosts over the system's OpenSSH client: the inventory of an environment, the
//! plan of a rollout (batches, failure budget) and one master connection per host.

pub mod files;
pub mod lock;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{EnvConfig, Vars};

pub use ssh::Fleet;

/// A mistake in the inventory or in the arguments of `on(...)`, found before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// The hosts of one environment (`[env.NAME] hosts`, `[env.NAME.roles]`, host variables).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub env: String,
    pub hosts: Vec<String>,
    pub roles: BTreeMap<String, Vec<String>>,
    pub vars: BTreeMap<String, Vars>,
    pub ssh: crate::config::SshConfig,
    /// The environment's rollback policy, for hosts rolled back on their own.
    pub rollback: crate::config::RollbackPolicy,
}

impl Inventory {
    /// Checks an environment's inventory: no duplicate host, every role's host is one of
    /// `hosts`, no empty role, host variables only for known hosts.
    pub fn from_env(env: &EnvConfig) -> Result<Inventory, UsageError> {
        let name = &env.name;
        no_duplicates(&env.hosts, &format!("[env.{name}] hosts"))?;
        for h in &env.hosts {
            if h.trim().is_empty() || h.starts_with('-') || h.chars().any(char::is_whitespace) {
                return Err(usage(format!(
                    "[env.{name}] hosts: `{h}` is not a host: write what `ssh` accepts as a destination, such as \"web1\" or \"deploy@web1.example.com\""
                )));
            }
        }
        for (role, list) in &env.roles {
            let at = format!("[env.{name}.roles] {role}");
            if list.is_empty() {
                return Err(usage(format!(
                    "{at} is empty: list at least one of the hosts, or remove the role"
                )));
            }
            no_duplicates(list, &at)?;
            if let Some(h) = list.iter().find(|h| !env.hosts.contains(h)) {
                return Err(usage(format!(
                    "{at} lists `{h}`, which is not in [env.{name}] hosts ({}): add it to hosts or fix the name",
                    env.hosts.join(", ")
                )));
            }
        }
        if let Some(h) = env.host_vars.keys().find(|h| !env.hosts.contains(h)) {
            return Err(usage(format!(
                "[env.{name}.host_vars.{h}]: `{h}` is not in [env.{name}] hosts ({}): add it to hosts or fix the name",
                env.hosts.join(", ")
            )));
        }
        Ok(Inventory {
            env: name.clone(),
            hosts: env.hosts.clone(),
            roles: env.roles.clone(),
            vars: env.host_vars.clone(),
            ssh: env.ssh.clone(),
            rollback: env.rollback,
        })
    }

    /// Resolves relative `identity` and `known_hosts` paths against deployer.toml's
    /// folder (not the folder deployer runs in); `~/` and absolute paths stay as written.
    pub fn relative_to(mut self, base: Option<&std::path::Path>) -> Inventory {
        let Some(base) = base else { return self };
        for p in [&mut self.ssh.identity, &mut self.ssh.known_hosts]
            .into_iter()
            .flatten()
        {
            if !p.starts_with('/') && !p.starts_with('~') {
                *p = base.join(&*p).display().to_string();
            }
        }
        self
    }

    /// The hosts of a role.
    pub fn role(&self, role: &str) -> Result<Vec<String>, UsageError> {
        match self.roles.get(role) {
            Some(list) => Ok(list.clone()),
            None if self.roles.is_empty() => Err(usage(format!(
                "unknown role `{role}`: environment {} has no roles; add [env.{}.roles] {role} = [...] to deployer.toml, or pass a list of hosts",
                self.env, self.env
            ))),
            None => Err(usage(format!(
                "unknown role `{role}` in environment {}: its roles are {}",
                self.env,
                self.roles.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Checks a list of hosts given to `on(...)`: not empty, no duplicate, each known.
    pub fn check_list(&self, list: &[String]) -> Result<Vec<String>, UsageError> {
        if list.is_empty() {
            return Err(usage(
                "on(): the list of hosts is empty: give hosts() or a role name, such as on(\"web\", || ...)",
            ));
        }
        no_duplicates(list, "on()")?;
        if let Some(h) = list.iter().find(|h| !self.hosts.contains(h)) {
            return Err(usage(if self.hosts.is_empty() {
                format!(
                    "on(): unknown host `{h}`: environment {} has no hosts; add [env.{}] hosts = [...] to deployer.toml",
                    self.env, self.env
                )
            } else {
                format!(
                    "on(): unknown host `{h}`: the hosts of environment {} are {}",
                    self.env,
                    self.hosts.join(", ")
                )
            }));
        }
        Ok(list.to_vec())
    }

    /// A host's variable.
    pub fn var(&self, host: &str, name: &str) -> Option<&String> {
        self.vars.get(host).and_then(|v| v.get(name))
    }
}

fn no_duplicates(list: &[String], at: &str) -> Result<(), UsageError> {
    let mut seen = BTreeSet::new();
    for h in list {
        if !seen.insert(h) {
            return Err(usage(format!(
                "{at} lists host `{h}` twice: each host may appear once"
            )));
        }
    }
    Ok(())
}

/// A number of hosts or a share of them (`3`, `"30%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    Count(u64),
    Percent(f64),
}

impl Share {
    /// Parses `batch`/`max_fail` given as text (`"30%"`, `"3"`).
    pub fn parse(option: &str, text: &str) -> Result<Share, UsageError> {
        let t = text.trim();
        let bad = || {
            usage(format!(
                "on(): `{option}` must be a number of hosts or a percentage such as \"30%\", got \"{text}\""
            ))
        };
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !p.is_finite() || !(0.0..=100.0).contains(&p) {
                return Err(usage(format!(
                    "on(): `{option}` must be a percentage between 0% and 100%, got \"{text}\""
                )));
            }
            Ok(Share::Percent(p))
        } else {
            let n: i64 = t.parse().map_err(|_| bad())?;
            Share::count(option, n)
        }
    }

    /// A number of hosts (not negative).
    pub fn count(option: &str, n: i64) -> Result<Share, UsageError> {
        if n < 0 {
            return Err(usage(format!(
                "on(): `{option}` must not be negative, got {n}"
            )));
        }
        Ok(Share::Count(n as u64))
    }

    /// How many of `total` hosts this is: percentages round down (a budget never grows).
    pub fn of(self, total: usize) -> usize {
        match self {
            Share::Count(n) => n as usize,
            Share::Percent(p) => ((total as f64) * p / 100.0 + 1e-9).floor() as usize,
        }
    }
}

/// How a rollout proceeds: batch size and the number of hosts that may fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub hosts: Vec<String>,
    /// Hosts per batch (at least 1).
    pub batch: usize,
    /// Hosts that may fail before the rollout stops.
    pub max_fail: usize,
}

impl Plan {
    /// Builds the plan; `batch` defaults to every host at once, `max_fail` to 0.
    pub fn new(
        hosts: Vec<String>,
        batch: Option<Share>,
        max_fail: Option<Share>,
    ) -> Result<Plan, UsageError> {
        let n = hosts.len();
        let batch = match batch {
            None => n.max(1),
            Some(Share::Count(0)) | Some(Share::Percent(0.0)) => {
                return Err(usage(
                    "on(): `batch` must be at least 1 host (or a percentage above 0%), got 0",
                ))
            }
            // A percentage of a few hosts still makes batches of at least one host.
            Some(s @ Share::Percent(_)) => {
                let p = match s {
                    Share::Percent(p) => p,
                    Share::Count(_) => 100.0,
                };
                (((n as f64) * p / 100.0) - 1e-9).ceil().max(1.0) as usize
            }
            Some(s) => s.of(n).max(1),
        };
        let max_fail = max_fail.map(|s| s.of(n)).unwrap_or(0);
        Ok(Plan {
            hosts,
            batch,
            max_fail,
        })
    }

    /// The batches, in order.
    pub fn batches(&self) -> Vec<Vec<String>> {
        self.hosts.chunks(self.batch).map(|c| c.to_vec()).collect()
    }
}

/// Quotes a word for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Builds the text sent over the connection to `sh -s` for one command: its environment
/// and working folder first (so secrets never appear in an argv), the command run with
/// stdin from /dev/null, and a watcher that kills the whole remote session when the
/// connection closes (Ctrl-C, `--timeout`, a cut connection), since without a terminal
/// sshd does not signal the command.
///
/// With what the command reads on stdin (`exec`'s `stdin` option), if any: the
/// bytes travel inside the script, base64-encoded, decoded on the host by `base64 -d` into
/// the command's stdin, so they are in no argv either.
pub fn remote_script_with_input(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    input: Option<&[u8]>,
) -> String {
    let mut s = String::from("{\nexec 3<&0\n");
    if let Some(bytes) = input {
        s.push_str(&format!("printf '%s' '{}' | base64 -d | ", base64(bytes)));
    }
    s.push_str("(\n");
    for (k, v) in env {
        s.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    if let Some(dir) = cwd {
        s.push_str(&format!(
            "cd {} || {{ echo \"deployer: no such folder on this host: \"{} >&2; exit 1; }}\n",
            sh_quote(dir),
            sh_quote(dir)
        ));
    }
    let words: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
    s.push_str(&words.join(" "));
    watched(s, input.is_some())
}

/// Wraps shell text (a command, or a file operation of [`files`]) in the watcher that
/// kills the whole remote session when the connection closes; see [`remote_script_with_input`].
pub fn remote_shell(body: &str) -> String {
    watched(format!("{{\nexec 3<&0\n(\n{}", body.trim_end()), false)
}

/// Ends the subshell opened by the script (its stdin from /dev/null unless `piped`: fed
/// by the input decoded before it) and adds the watcher.
fn watched(mut s: String, piped: bool) -> String {
    s.push_str(if piped {
        "\n) 3<&- &\nc=$!\n"
    } else {
        "\n) </dev/null 3<&- &\nc=$!\n"
    });
    s.push_str("{ while read -r _ <&3; do :; done; kill -TERM 0; } >/dev/null 2>&1 &\nw=$!\n");
    s.push_str("wait \"$c\"\nr=$?\nkill \"$w\" 2>/dev/null\nexit \"$r\"\n}\n");
    s
}

/// Standard base64 with padding (RFC 4648), as `base64 -d` reads it.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a run did to its remote hosts, as its history line keeps it: `deployer history`
/// shows it, and `deployer rollback` takes the hosts to roll back from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostsSummary {
    /// Hosts that `on(...)` ran on in a phase.
    pub total: usize,
    /// Hosts the run changed, in the order they changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Hosts that failed (or were stopped) in some phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// Hosts rolled back on their own after failing within the failure budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rolled_back_alone: Vec<String>,
}

impl HostsSummary {
    /// Sums up the per-host records of a run's phases; `None` when no phase ran on a host.
    pub fn of(phases: &[crate::pipeline::PhaseRecord], changed: &[String]) -> Option<HostsSummary> {
        let mut seen: Vec<&str> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        let mut alone: Vec<String> = Vec::new();
        for h in phases.iter().flat_map(|p| &p.hosts) {
            if !seen.contains(&h.host.as_str()) {
                seen.push(&h.host);
            }
            if h.status != "passed" && !failed.contains(&h.host) {
                failed.push(h.host.clone());
            }
            if h.rollback == Some("ok") && !alone.contains(&h.host) {
                alone.push(h.host.clone());
            }
        }
        if seen.is_empty() && changed.is_empty() {
            return None;
        }
        Some(HostsSummary {
            total: seen.len().max(changed.len()),
            changed: changed.to_vec(),
            failed,
            rolled_back_alone: alone,
        })
    }

    /// The hosts `deployer rollback` gives `fn rollback(ctx)`: those the run changed, in
    /// order, less those already rolled back on their own.
    pub fn to_roll_back(&self) -> Vec<String> {
        self.changed
            .iter()
            .filter(|h| !self.rolled_back_alone.contains(h))
            .cloned()
            .collect()
    }

    /// One cell of `deployer history`: `3: 2 changed, 1 failed, 1 rolled back alone`.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if !self.changed.is_empty() {
            parts.push(format!("{} changed", self.changed.len()));
        }
        if !self.failed.is_empty() {
            parts.push(format!("{} failed", self.failed.len()));
        }
        if !self.rolled_back_alone.is_empty() {
            parts.push(format!(
                "{} rolled back alone",
                self.rolled_back_alone.len()
            ));
        }
        if parts.is_empty() {
            self.total.to_string()
        } else {
            format!("{}: {}", self.total, parts.join(", "))
        }
    }
}

/// The line a command's script prints on stdout and stderr before the command runs, so
/// whatever the remote shell's start-up files printed first can be told apart from the
/// command's own output.
pub const BEGIN: &str = "::deployer-output-begins::";

/// [`remote_script_with_input`] preceded by the [`BEGIN`] lines.
pub fn marked_script(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    input: Option<&[u8]>,
) -> String {
    format!(
        "printf '%s\\n' '{BEGIN}'; printf '%s\\n' '{BEGIN}' >&2\n{}",
        remote_script_with_input(argv, env, cwd, input)
    )
}

/// Splits captured output at the [`BEGIN`] line: (what came before it, what came after).
/// Without the line (the shell failed first, or the start was cut off) everything is the
/// command's.
pub fn split_noise(text: &str) -> (&str, &str) {
    let line = format!("{BEGIN}\n");
    if text.starts_with(&line) {
        return ("", &text[line.len()..]);
    }
    match text.find(&format!("\n{line}")) {
        Some(i) => (&text[..=i], &text[i + 1 + line.len()..]),
        None => ("", text),
    }
}

/// The source and destination rsync is given so that a copy lands where `scp -r -p` would
/// put it: a folder copied to a path that is not a folder becomes that path; copied to a
/// folder, it goes inside it under its own name; a file goes to the path, or inside the
/// folder the path names.
pub fn rsync_paths(src: &str, src_is_dir: bool, dst: &str, dst_is_dir: bool) -> (String, String) {
    let bare = |p: &str| {
        let t = p.trim_end_matches('/');
        if t.is_empty() {
            "/".to_string()
        } else {
            t.to_string()
        }
    };
    match (src_is_dir, dst_is_dir) {
        (true, true) => (bare(src), format!("{}/", bare(dst))),
        (true, false) => (format!("{}/", bare(src)), bare(dst)),
        (false, true) => (src.to_string(), format!("{}/", bare(dst))),
        (false, false) => (src.to_string(), dst.to_string()),
    }
}

/// Checks an environment variable name for `export`.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(hosts: &[&str], roles: &[(&str, &[&str])]) -> EnvConfig {
        EnvConfig {
            name: "prod".into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            roles: roles
                .iter()
                .map(|(r, l)| (r.to_string(), l.iter().map(|s| s.to_string()).collect()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn inventory_checks() {
        let inv = Inventory::from_env(&env(&["a", "b", "c"], &[("web", &["a", "b"])])).unwrap();
        assert_eq!(inv.role("web").unwrap(), ["a", "b"]);
        let e = inv.role("wbe").unwrap_err().0;
        assert!(e.contains("unknown role `wbe`") && e.contains("web"), "{e}");
        let e = Inventory::from_env(&env(&["a", "a"], &[])).unwrap_err().0;
        assert!(e.contains("lists host `a` twice"), "{e}");
        let e = Inventory::from_env(&env(&["a"], &[("web", &[])]))
            .unwrap_err()
            .0;
        assert!(e.contains("[env.prod.roles] web is empty"), "{e}");
        let e = Inventory::from_env(&env(&["a"], &[("web", &["z"])]))
            .unwrap_err()
            .0;
        assert!(e.contains("lists `z`, which is not in"), "{e}");
        let e = Inventory::from_env(&env(&["-oProxyCommand=x"], &[]))
            .unwrap_err()
            .0;
        assert!(e.contains("is not a host"), "{e}");
        assert!(inv.check_list(&[]).unwrap_err().0.contains("empty"));
        let e = inv.check_list(&["a".into(), "a".into()]).unwrap_err().0;
        assert!(e.contains("twice"), "{e}");
        let e = inv.check_list(&["x".into()]).unwrap_err().0;
        assert!(
            e.contains("unknown host `x`") && e.contains("a, b, c"),
            "{e}"
        );
    }

    #[test]
    fn key_paths_are_relative_to_the_config_folder() {
        let mut e = env(&["a"], &[]);
        e.ssh.identity = Some("keys/deploy".into());
        e.ssh.known_hosts = Some("~/.ssh/known_hosts".into());
        let inv = Inventory::from_env(&e)
            .unwrap()
            .relative_to(Some(std::path::Path::new("/srv/project")));
        assert_eq!(
            inv.ssh.identity.as_deref(),
            Some("/srv/project/keys/deploy")
        );
        assert_eq!(inv.ssh.known_hosts.as_deref(), Some("~/.ssh/known_hosts"));
    }

    #[test]
    fn shares_and_batches() {
        assert_eq!(Share::parse("batch", "30%").unwrap(), Share::Percent(30.0));
        assert_eq!(Share::parse("batch", "2").unwrap(), Share::Count(2));
        let e = Share::parse("max_fail", "150%").unwrap_err().0;
        assert!(
            e.contains("between 0% and 100%") && e.contains("150%"),
            "{e}"
        );
        assert!(Share::parse("batch", "lots")
            .unwrap_err()
            .0
            .contains("\"lots\""));
        assert!(Share::count("max_fail", -1).is_err());
        let hosts: Vec<String> = (1..=10).map(|i| format!("h{i}")).collect();
        let p = Plan::new(hosts.clone(), Some(Share::Percent(30.0)), None).unwrap();
        assert_eq!((p.batch, p.max_fail), (3, 0));
        assert_eq!(
            p.batches().iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        let p = Plan::new(hosts[..3].to_vec(), Some(Share::Percent(10.0)), None).unwrap();
        assert_eq!(p.batch, 1);
        let p = Plan::new(hosts.clone(), None, Some(Share::Percent(25.0))).unwrap();
        assert_eq!((p.batch, p.max_fail), (10, 2));
        let e = Plan::new(hosts, Some(Share::Count(0)), None).unwrap_err().0;
        assert!(e.contains("`batch` must be at least 1"), "{e}");
    }

    #[test]
    fn a_summary_counts_hosts_once_and_knows_what_to_roll_back() {
        use crate::pipeline::{HostRecord, PhaseRecord};
        let host = |h: &str, status: &'static str, rollback: Option<&'static str>| HostRecord {
            host: h.into(),
            status,
            batch: 1,
            duration_ms: 0,
            changed: false,
            rollback,
            error: None,
        };
        let phase = |name: &str, hosts: Vec<HostRecord>| PhaseRecord {
            index: 0,
            name: name.into(),
            required: false,
            skippable: false,
            status: crate::pipeline::PhaseStatus::Passed,
            score: 5.0,
            checks: Vec::new(),
            duration_ms: 0,
            started_at: None,
            error: None,
            reason: None,
            metrics: None,
            hosts,
        };
        let check = phase(
            "Check",
            vec![
                host("a", "passed", None),
                host("b", "passed", None),
                host("c", "passed", None),
            ],
        );
        let switch = phase(
            "Switch",
            vec![
                host("a", "passed", None),
                host("b", "failed", Some("ok")),
                host("c", "stopped", None),
            ],
        );
        let changed = vec!["a".to_string(), "b".to_string()];
        let s = HostsSummary::of(&[check, switch], &changed).unwrap();
        assert_eq!(s.total, 3);
        assert_eq!(s.failed, ["b", "c"]);
        assert_eq!(s.rolled_back_alone, ["b"]);
        assert_eq!(s.to_roll_back(), ["a"]);
        assert_eq!(s.label(), "3: 2 changed, 2 failed, 1 rolled back alone");
        assert_eq!(HostsSummary::of(&[], &[]), None);
    }

    #[test]
    fn base64_is_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0, 255, 10]), "AP8K");
        let s = remote_script_with_input(&["cat".into()], &[], None, Some(b"hi"));
        assert!(
            s.contains("printf '%s' 'aGk=' | base64 -d | (\ncat\n) 3<&- &"),
            "{s}"
        );
    }

    #[test]
    fn rsync_lands_where_scp_would() {
        assert_eq!(
            rsync_paths("art", true, "/srv/up", false),
            ("art/".into(), "/srv/up".into())
        );
        assert_eq!(
            rsync_paths("art/", true, "/srv/up/", true),
            ("art".into(), "/srv/up/".into())
        );
        assert_eq!(
            rsync_paths("a.txt", false, "/srv", true),
            ("a.txt".into(), "/srv/".into())
        );
        assert_eq!(
            rsync_paths("a.txt", false, "/srv/b.txt", false),
            ("a.txt".into(), "/srv/b.txt".into())
        );
        assert_eq!(rsync_paths("/", true, "/", true), ("/".into(), "//".into()));
    }

    #[test]
    fn noise_before_the_begin_line_is_split_off() {
        let b = BEGIN;
        assert_eq!(split_noise(&format!("{b}\nout\n")), ("", "out\n"));
        assert_eq!(
            split_noise(&format!("Welcome!\nmotd\n{b}\nout\n")),
            ("Welcome!\nmotd\n", "out\n")
        );
        assert_eq!(split_noise("sh: not found\n"), ("", "sh: not found\n"));
        // The command printing the marker itself later changes nothing before it.
        assert_eq!(
            split_noise(&format!("{b}\nx\n{b}\n")),
            ("", &*format!("x\n{b}\n"))
        );
        assert!(marked_script(&["true".into()], &[], None, None).starts_with("printf '%s\\n'"));
    }

    #[test]
    fn script_keeps_values_quoted() {
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("/srv/app"), "/srv/app");
        let s = remote_script_with_input(
            &["echo".into(), "a b".into()],
            &[("TOKEN".into(), "s3 'x".into())],
            Some("/srv"),
            None,
        );
        assert!(s.contains("export TOKEN='s3 '\\''x'\n"), "{s}");
        assert!(s.contains("echo 'a b'\n) </dev/null"), "{s}");
        assert!(valid_env_name("A_1") && !valid_env_name("1A") && !valid_env_name("A-B"));
    }
}

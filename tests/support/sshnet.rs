//! Test hosts for remote work: each a Linux network namespace (a veth pair on a bridge in
//! the root namespace, an address in 10.231.N.0/24 or a subnet a test file picks, which exists only inside the test
//! machine) running its own `sshd` with default settings, a generated host key and an
//! authorized test key. The guard removes namespaces, bridge and sshd processes on drop,
//! also when the test fails. Needs root; without it `SshNet::start` prints SKIPPED and
//! returns `None`, or panics when `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{wait_until, TempDir};

/// One test host.
pub struct NetHost {
    /// The namespace name.
    pub ns: String,
    /// Its address: what deployer.toml lists as the host.
    pub ip: String,
    sshd: Option<Child>,
    config: PathBuf,
    log: PathBuf,
}

/// A bridge with test hosts behind it.
pub struct SshNet {
    pub dir: TempDir,
    /// When the hosts were created (folders older than this belong to other runs).
    pub started: std::time::SystemTime,
    pub hosts: Vec<NetHost>,
    bridge: String,
    /// Names this net's interfaces and namespaces apart from other test modules' nets.
    tag: &'static str,
    subnet: u32,
    /// Holds the subnet for this net (see [`claim_subnet`]); released on drop, last.
    _claim: std::fs::File,
}

/// Claims a free 10.231.N.0/24 for this process with an exclusive `flock` on
/// /tmp/deployer-sshnet-N.lock, so test binaries running at the same time (two checkouts,
/// two CI jobs) never share a subnet or remove each other's bridge; a lock dies with its
/// process, so a killed run frees its subnet.
pub fn claim_subnet(octet: u32) -> Option<(u32, std::fs::File)> {
    use std::os::fd::AsRawFd;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() * 7;
    for _ in 0..250 {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let subnet = 1 + (base + k) % 250;
        let path = format!("/tmp/deployer-sshnet-{octet}-{subnet}.lock");
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        // SAFETY: flock on a descriptor we own; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Some((subnet, file));
        }
    }
    None
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn skip(why: &str) -> Option<SshNet> {
    super::skip(
        "remote tests",
        &format!("they need root, network namespaces and OpenSSH: {why}"),
    );
    None
}

impl SshNet {
    /// Starts `n` hosts, or returns `None` (after printing SKIPPED) where that is not
    /// possible.
    pub fn start(n: usize) -> Option<SshNet> {
        SshNet::start_in(n, "", 231)
    }

    /// [`SshNet::start_in`] with a one-letter tag.
    pub fn start_on(n: usize, octet: u8, tag: char) -> Option<SshNet> {
        let tag: &'static str = Box::leak(tag.to_string().into_boxed_str());
        SshNet::start_in(n, tag, u32::from(octet))
    }

    /// [`SshNet::start`] in `10.OCTET.N.0/24` with interface and namespace names marked by
    /// `tag`, so test modules with nets of their own never meet (other test binaries may
    /// run at the same time).
    pub fn start_in(n: usize, tag: &'static str, octet: u32) -> Option<SshNet> {
        if !super::is_root() {
            return skip("not running as root");
        }
        for tool in ["/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/ssh"] {
            if !Path::new(tool).exists() {
                return skip(&format!(
                    "{tool} is missing (apt-get install openssh-server openssh-client)"
                ));
            }
        }
        let Some((subnet, claim)) = claim_subnet(octet) else {
            return skip(&format!(
                "no free subnet 10.{octet}.N.0/24: every /tmp/deployer-sshnet-{octet}-N.lock is held"
            ));
        };
        let mut net = SshNet {
            dir: TempDir::new(),
            started: std::time::SystemTime::now(),
            hosts: Vec::new(),
            bridge: format!("d{tag}br{subnet}"),
            tag,
            subnet,
            _claim: claim,
        };
        match net.build(n, subnet, octet) {
            Ok(()) => Some(net),
            Err(e) => {
                drop(net);
                skip(&e)
            }
        }
    }

    fn build(&mut self, n: usize, subnet: u32, octet: u32) -> Result<(), String> {
        let tag = self.tag;
        let d = self.dir.path().to_path_buf();
        let p = |f: &str| d.join(f).display().to_string();
        // A leftover of an earlier, killed run with the same subnet (claimed: no live
        // net of another process uses it).
        let _ = sh(&["ip", "link", "del", &self.bridge]);
        sh(&["ip", "link", "add", &self.bridge, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.{octet}.{subnet}.1/24"),
            "dev",
            &self.bridge,
        ])?;
        sh(&["ip", "link", "set", &self.bridge, "up"])?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        for key in ["client_key", "other_key"] {
            sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", &p(key)])?;
        }
        std::fs::copy(p("client_key.pub"), p("authorized_keys")).map_err(|e| e.to_string())?;
        let mut known = String::new();
        for i in 0..n {
            let ns = format!("d{tag}pl{subnet}h{i}");
            let ip = format!("10.{octet}.{subnet}.{}", 11 + i);
            let (vh, vn) = (
                format!("d{tag}v{subnet}h{i}"),
                format!("d{tag}v{subnet}n{i}"),
            );
            let _ = sh(&["ip", "netns", "del", &ns]);
            sh(&["ip", "netns", "add", &ns])?;
            self.hosts.push(NetHost {
                ns: ns.clone(),
                ip: ip.clone(),
                sshd: None,
                config: d.join(format!("sshd_{i}.conf")),
                log: d.join(format!("sshd_{i}.log")),
            });
            sh(&[
                "ip", "link", "add", &vh, "type", "veth", "peer", "name", &vn,
            ])?;
            sh(&["ip", "link", "set", &vh, "master", &self.bridge, "up"])?;
            sh(&["ip", "link", "set", &vn, "netns", &ns])?;
            let inns = |args: &[&str]| {
                let mut a = vec!["ip", "netns", "exec", &ns];
                a.extend_from_slice(args);
                sh(&a)
            };
            inns(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &vn])?;
            inns(&["ip", "link", "set", &vn, "up"])?;
            inns(&["ip", "link", "set", "lo", "up"])?;
            let key = p(&format!("host_key_{i}"));
            sh(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", &key])?;
            let pubkey =
                std::fs::read_to_string(format!("{key}.pub")).map_err(|e| e.to_string())?;
            known.push_str(&format!("{ip} {}", pubkey));
            // sshd's defaults otherwise (MaxSessions 10, MaxStartups 10:30:100). SetEnv
            // SHLVL=1: the hosts share this machine's users, and bash started by sshd reads
            // ~/.bashrc only as a top-level shell; a ~/.bashrc written for this machine's
            // terminals (pyenv init, whose lock stalls every login for a minute once a killed
            // test leaves it behind) must not run on the test hosts. Noisy start-up files are
            // tested on purpose with a forced command (remote::a_noisy_remote_shell...).
            let conf = format!(
                "ListenAddress {ip}\nHostKey {key}\nPidFile {pid}\nAuthorizedKeysFile {auth}\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nSubsystem sftp /usr/lib/openssh/sftp-server\nLogLevel VERBOSE\nSetEnv SHLVL=1\n",
                pid = p(&format!("sshd_{i}.pid")),
                auth = p("authorized_keys"),
            );
            std::fs::write(&self.hosts[i].config, conf).map_err(|e| e.to_string())?;
            self.start_sshd(i)?;
        }
        std::fs::write(d.join("known_hosts"), known).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Starts (or restarts) the sshd of host `i` and waits until it accepts connections.
    pub fn start_sshd(&mut self, i: usize) -> Result<(), String> {
        let h = &mut self.hosts[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&h.log)
            .map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&h.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting sshd: {e}"))?;
        h.sshd = Some(child);
        let addr: std::net::SocketAddr = format!("{}:22", h.ip).parse().unwrap();
        if !wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        }) {
            return Err(format!(
                "sshd on {} did not start: {}",
                h.ip,
                std::fs::read_to_string(&h.log).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Stops the sshd of host `i` (connections are refused from then on).
    pub fn stop_sshd(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Cuts host `i` off the network (packets are dropped: connections time out).
    pub fn cut(&self, i: usize) {
        let h = &self.hosts[i];
        let vn = format!("d{}v{}n{i}", self.tag, self.subnet);
        sh(&[
            "ip", "netns", "exec", &h.ns, "ip", "link", "set", &vn, "down",
        ])
        .unwrap();
    }

    /// The ips of the hosts.
    pub fn ips(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.ip.clone()).collect()
    }

    /// How many logins host `i`'s sshd accepted.
    pub fn logins(&self, i: usize) -> usize {
        std::fs::read_to_string(&self.hosts[i].log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// A file in the folder of keys and configs.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// deployer.toml for environment `test` with these hosts (`extra_ssh` is added to
    /// `[env.test.ssh]`, `extra` to the end).
    pub fn toml(&self, extra_ssh: &str, extra: &str) -> String {
        let hosts: Vec<String> = self.ips().iter().map(|ip| format!("\"{ip}\"")).collect();
        let ssh = if extra_ssh.contains("identity") {
            extra_ssh.to_string()
        } else {
            format!("identity = \"{}\"\n{extra_ssh}", self.file("client_key"))
        };
        let ssh = if ssh.contains("known_hosts") {
            ssh
        } else {
            format!("known_hosts = \"{}\"\n{ssh}", self.file("known_hosts"))
        };
        format!(
            "default_env = \"test\"\n[env.test]\nhosts = [{}]\nlock_path = \"{}\"\n[env.test.ssh]\nuser = \"root\"\nconnect_timeout = \"2s\"\n{ssh}\n{extra}",
            hosts.join(", "),
            self.lock_path()
        )
    }

    /// The remote lock folder of [`SshNet::toml`]'s environment: one per net, since the
    /// hosts share the filesystem with each other and with other tests' hosts.
    pub fn lock_path(&self) -> String {
        self.file("remote-lock")
    }
}

impl Drop for SshNet {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.stop_sshd(i);
        }
        for h in &self.hosts {
            // sshd's session processes outlive the listener (a cut host's sessions never
            // see their client go): kill whatever still runs in the namespace.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &h.ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill has no memory effects; the pid is in our namespace.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = sh(&["ip", "netns", "del", &h.ns]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

/// Processes whose command line contains `needle` (the namespaces share the process
/// table, so this sees remote commands too).
pub fn processes_with(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) {
                out.push((pid, cmd));
            }
        }
    }
    out
}

/// Runs that a test SIGKILLs on purpose: they cannot remove their control-socket folders,
/// and the test that killed one removes them itself, a moment later. Tests run in
/// parallel, so [`assert_no_masters`] of another test must not take such a folder, seen in
/// that moment, for a leak.
static KILLED_ON_PURPOSE: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Notes that the test is about to SIGKILL deployer `pid` (call it before the signal).
pub fn killing_on_purpose(pid: i32) {
    if let Ok(mut k) = KILLED_ON_PURPOSE.lock() {
        k.push(pid);
    }
}

fn killed_on_purpose(pid: i32) -> bool {
    KILLED_ON_PURPOSE
        .lock()
        .map(|k| k.contains(&pid))
        .unwrap_or(false)
}

/// No ssh master of `net`'s hosts is left running, and no control-socket folder of a run
/// this test binary started outlived it.
#[track_caller]
pub fn assert_no_masters(net: &SshNet) {
    for ip in net.ips() {
        let left: Vec<_> = processes_with(&ip)
            .into_iter()
            .filter(|(_, c)| c.starts_with("ssh "))
            .collect();
        assert!(left.is_empty(), "ssh processes left for {ip}: {left:?}");
    }
    // Control-socket folders (/tmp/dpl-PID-N) of runs that ended are removed.
    for e in std::fs::read_dir("/tmp").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let created = e.metadata().and_then(|m| m.modified());
        if created.map(|t| t < net.started).unwrap_or(true) {
            continue;
        }
        if let Some(pid) = name.strip_prefix("dpl-").and_then(|r| r.split('-').next()) {
            let pid: i32 = pid.parse().unwrap_or(0);
            // Only this test binary's runs: other processes on the machine are not ours.
            if super::spawned_here(pid) && !killed_on_purpose(pid) {
                assert!(
                    super::pid_alive(pid),
                    "/tmp/{name} outlived deployer pid {pid}"
                );
            }
        }
    }
}

//! File operations on a remote host (`fs::*` and the release journal inside `on(...)`): each
//! one is a short POSIX shell text sent over the host's master connection on stdin (so
//! file contents, which may hold secrets, never appear in any argv), and its answer is
//! read back from stdout after a marker line (a start-up file that prints text does not
//! confuse it). Pure: building the text and reading the answer; running it is the
//! caller's (`api::remote::script_on`).

use super::sh_quote;

/// The line printed before an operation's answer.
pub const MARKER: &str = "@@deployer-files-answer@@";

/// Exit status of an operation whose path does not exist.
pub const NOT_FOUND: i32 = 4;
/// Exit status of an operation refused because its path is a protected folder.
pub const REFUSED: i32 = 5;
/// Exit status of an operation refused because the path is of the wrong type.
pub const WRONG_TYPE: i32 = 6;

/// One file operation on a remote host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    /// The whole file (at most `limit` bytes plus one, to tell a larger one).
    Read { path: &'a str, limit: u64 },
    /// The last `bytes` of a file.
    Tail { path: &'a str, bytes: u64 },
    /// Replace a file's content atomically (a temp file beside it, renamed over it).
    Write { path: &'a str, text: &'a str },
    /// Add text at the end of a file, creating it.
    Append { path: &'a str, text: &'a str },
    /// What the path is: `e` exists, `d` folder, `f` file, `l` symlink.
    Probe { path: &'a str },
    /// A file's size in bytes.
    Size { path: &'a str },
    /// The names in a folder, NUL-separated.
    List { path: &'a str },
    /// A folder and its parents.
    Mkdir { path: &'a str },
    /// A file, symlink or whole folder; answers `1` when something was removed.
    Remove { path: &'a str },
    /// Copy a file (atomically: a temp file beside the copy, renamed over it) or a whole
    /// folder (symlinks inside kept as symlinks); into `to` when it is a folder, as `cp`.
    Copy { from: &'a str, to: &'a str },
    /// Point `link` at `target` atomically: `ln -sfn` to a temp name, then `mv -T`.
    SymlinkSwap { target: &'a str, link: &'a str },
    /// Where a symlink points.
    ReadLink { path: &'a str },
    /// Bytes free for unprivileged users on the file system holding `path`.
    FreeBytes { path: &'a str },
    /// The full path of a program on the host's PATH (empty when none).
    Which { name: &'a str },
    /// The release folders of `ROOT/releases`, NUL-separated, each followed by `1` when it
    /// holds the file `mark` (marked bad) or `0`.
    ReleaseDirs { root: &'a str, mark: &'a str },
}

impl Op<'_> {
    /// True when the operation changes the host (a dry run does not send it).
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Op::Write { .. }
                | Op::Append { .. }
                | Op::Mkdir { .. }
                | Op::Remove { .. }
                | Op::Copy { .. }
                | Op::SymlinkSwap { .. }
        )
    }

    /// The shell text that performs the operation and prints its answer after [`MARKER`].
    pub fn script(&self) -> String {
        let q = |s: &str| sh_quote(s);
        let mut s = String::new();
        let answer = format!("printf '%s\\n' '{MARKER}'\n");
        let exists = |p: &str| {
            format!(
                "[ -e {p} ] || [ -L {p} ] || {{ echo 'No such file or directory' >&2; exit {NOT_FOUND}; }}\n",
                p = q(p)
            )
        };
        match *self {
            Op::Read { path, limit } => {
                s += &exists(path);
                s += &format!(
                    "[ -d {p} ] && {{ echo 'Is a directory' >&2; exit {WRONG_TYPE}; }}\n",
                    p = q(path)
                );
                s += &answer;
                s += &format!("head -c {} -- {}\n", limit + 1, q(path));
            }
            Op::Tail { path, bytes } => {
                s += &exists(path);
                s += &answer;
                s += &format!("tail -c {bytes} -- {}\n", q(path));
            }
            Op::Write { path, text } => {
                s += GUARD;
                s += &format!("deployer_guard {}\n", q(path));
                s += &format!(
                    "[ -d {p} ] && {{ echo 'Is a directory' >&2; exit {WRONG_TYPE}; }}\n",
                    p = q(path)
                );
                s += &format!(
                    "d=$(dirname -- {p}); b=$(basename -- {p}); t=\"$d/.$b.deployer-$$.tmp\"\n",
                    p = q(path)
                );
                s += "rm -f -- \"$d\"/.\"$b\".deployer-*.tmp 2>/dev/null\n";
                s += &format!(
                    "base64 -d > \"$t\" <<'{HEREDOC}'\n{}{HEREDOC}\n",
                    base64_lines(text.as_bytes())
                );
                s += "[ $? -eq 0 ] || { rm -f -- \"$t\"; exit 1; }\n";
                s += &format!(
                    "mv -f -- \"$t\" {} || {{ rm -f -- \"$t\"; exit 1; }}\n",
                    q(path)
                );
                s += &answer;
            }
            Op::Append { path, text } => {
                s += &format!(
                    "base64 -d >> {} <<'{HEREDOC}' || exit 1\n{}{HEREDOC}\n",
                    q(path),
                    base64_lines(text.as_bytes())
                );
                s += &answer;
            }
            Op::Probe { path } => {
                s += &answer;
                s += &format!(
                    "p={}\n[ -e \"$p\" ] && printf e; [ -d \"$p\" ] && printf d; [ -f \"$p\" ] && printf f; [ -L \"$p\" ] && printf l; echo\n",
                    q(path)
                );
            }
            Op::Size { path } => {
                s += &exists(path);
                s += &format!(
                    "[ -f {p} ] || {{ echo 'Not a regular file' >&2; exit {WRONG_TYPE}; }}\nn=$(wc -c < {p}) || exit 1\n",
                    p = q(path)
                );
                s += &answer;
                s += "echo $n\n";
            }
            Op::List { path } => {
                s += &exists(path);
                s += &format!("cd -- {} || exit 1\n", q(path));
                s += &answer;
                s += "for f in * .*; do\n  case \"$f\" in .|..) continue;; esac\n  [ -e \"$f\" ] || [ -L \"$f\" ] || continue\n  printf '%s\\0' \"$f\"\ndone\n";
            }
            Op::Mkdir { path } => {
                s += &format!("mkdir -p -- {} || exit 1\n", q(path));
                s += &answer;
            }
            Op::Remove { path } => {
                s += GUARD;
                s += &format!("deployer_guard {}\n", q(path));
                s += &format!(
                    "if [ -e {p} ] || [ -L {p} ]; then rm -rf -- {p} || exit 1; r=1; else r=0; fi\n",
                    p = q(path)
                );
                s += &answer;
                s += "echo $r\n";
            }
            Op::Copy { from, to } => {
                s += &exists(from);
                s += GUARD;
                s += &format!("deployer_guard {}\n", q(to));
                s += &format!(
                    "f={f}; d={t}\n\
                     if [ -d \"$d\" ] && [ ! -L \"$d\" ]; then d=\"$d/$(basename -- \"$f\")\"; fi\n\
                     if [ -d \"$f\" ]; then\n\
                     \x20 if [ -e \"$d\" ] && [ ! -d \"$d\" ]; then echo \"$d is a file, the copy of folder $f cannot replace it; remove it first\" >&2; exit {WRONG_TYPE}; fi\n\
                     \x20 mkdir -p -- \"$d\" && cp -R -P -p -- \"$f\"/. \"$d\" || exit 1\n\
                     else\n\
                     \x20 [ -d \"$d\" ] && {{ echo \"$d is a folder\" >&2; exit {WRONG_TYPE}; }}\n\
                     \x20 tmp=\"$(dirname -- \"$d\")/.$(basename -- \"$d\").deployer-$$.tmp\"\n\
                     \x20 cp -p -- \"$f\" \"$tmp\" && mv -f -- \"$tmp\" \"$d\" || {{ rm -f -- \"$tmp\"; exit 1; }}\n\
                     fi\n",
                    f = q(from),
                    t = q(to)
                );
                s += &answer;
            }
            Op::SymlinkSwap { target, link } => {
                s += GUARD;
                s += &format!("deployer_guard {}\n", q(link));
                s += &format!(
                    "l={l}; d=$(dirname -- \"$l\"); b=$(basename -- \"$l\")\n\
                     case {t} in /*) c={t};; *) c=\"$d\"/{t};; esac\n\
                     [ -e \"$c\" ] || {{ echo \"$c does not exist (a relative target is read from the link's folder)\" >&2; exit {NOT_FOUND}; }}\n\
                     if [ -e \"$l\" ] && [ ! -L \"$l\" ]; then echo \"it is a real file or folder, not a symlink; move it away first\" >&2; exit {WRONG_TYPE}; fi\n\
                     t=\"$d/.$b.deployer-link-$$\"\n\
                     ln -sfn -- {t} \"$t\" || exit 1\n\
                     mv -T -- \"$t\" \"$l\" || {{ rm -f -- \"$t\"; exit 1; }}\n",
                    l = q(link),
                    t = q(target)
                );
                s += &answer;
            }
            Op::ReadLink { path } => {
                s += &exists(path);
                s += &format!(
                    "[ -L {p} ] || {{ echo 'Not a symlink' >&2; exit {WRONG_TYPE}; }}\nr=$(readlink -- {p}) || exit 1\n",
                    p = q(path)
                );
                s += &answer;
                s += "printf '%s\\n' \"$r\"\n";
            }
            Op::FreeBytes { path } => {
                s += &exists(path);
                s += &format!(
                    "r=$(df -Pk -- {} | awk 'NR==2 {{ print $4 }}') || exit 1\n",
                    q(path)
                );
                s += &answer;
                s += "echo \"$r\"\n";
            }
            Op::Which { name } => {
                s += &answer;
                s += &format!("command -v -- {} || true\n", q(name));
            }
            Op::ReleaseDirs { root, mark } => {
                s += &answer;
                s += &format!(
                    "cd -- {}/releases 2>/dev/null || exit 0\nfor f in *; do\n  case \"$f\" in .*) continue;; esac\n  [ -d \"$f\" ] || continue\n  if [ -e \"$f\"/{} ]; then m=1; else m=0; fi\n  printf '%s\\0%s\\0' \"$f\" \"$m\"\ndone\n",
                    q(root.trim_end_matches('/')),
                    q(mark)
                );
            }
        }
        s
    }
}

/// The end of a here-document holding base64 (which never contains it).
const HEREDOC: &str = "DEPLOYER_EOF";

/// Refuses (exit [`REFUSED`]) a path that resolves to the root, the home folder of the
/// remote user (where relative paths start) or a folder above it: never what a script
/// meant to remove or replace.
const GUARD: &str = r#"deployer_guard() {
  case "$1" in
    */|*/.|*/..|.|..) r=$(cd -P -- "$1" 2>/dev/null && pwd -P) || return 0 ;;
    *) d=$(dirname -- "$1"); b=$(basename -- "$1")
       r=$(cd -P -- "$d" 2>/dev/null && pwd -P) || return 0
       r="${r%/}/$b" ;;
  esac
  h=$(cd -P -- "${HOME:-/}" 2>/dev/null && pwd -P)
  if [ "$r" = / ]; then echo "the root folder" >&2; exit 5; fi
  case "$h/" in "$r"/*) echo "$r (the home folder of the remote user, where relative paths start, or a folder above it)" >&2; exit 5 ;; esac
}
"#;

/// Base64 of `bytes` in lines of 76 characters, each ending with a newline.
fn base64_lines(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + bytes.len() / 57 + 4);
    for line in bytes.chunks(57) {
        for c in line.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            out.push(T[(n >> 18) as usize & 63] as char);
            out.push(T[(n >> 12) as usize & 63] as char);
            out.push(if c.len() > 1 {
                T[(n >> 6) as usize & 63] as char
            } else {
                '='
            });
            out.push(if c.len() > 2 {
                T[n as usize & 63] as char
            } else {
                '='
            });
        }
        out.push('\n');
    }
    out
}

/// What an operation printed after [`MARKER`], or `None` when the marker never came (the
/// operation stopped before answering).
pub fn answer(stdout: &str) -> Option<&str> {
    let at = stdout.find(MARKER)?;
    let rest = &stdout[at + MARKER.len()..];
    Some(rest.strip_prefix('\n').unwrap_or(rest))
}

/// What `Probe` answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probe {
    pub exists: bool,
    pub dir: bool,
    pub file: bool,
    pub link: bool,
}

/// Reads `Probe`'s answer.
pub fn probe(answer: &str) -> Probe {
    let a = answer.lines().next().unwrap_or("");
    Probe {
        exists: a.contains('e'),
        dir: a.contains('d'),
        file: a.contains('f'),
        link: a.contains('l'),
    }
}

/// Reads `List`'s answer: the names, sorted.
pub fn names(answer: &str) -> Vec<String> {
    let mut v: Vec<String> = answer
        .split('\0')
        .filter(|n| !n.is_empty() && !n.contains('\n'))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Reads `ReleaseDirs`' answer: (name, marked bad), oldest first
/// (`core::releases::compare_names`).
pub fn release_dirs(answer: &str) -> Vec<(String, bool)> {
    let parts: Vec<&str> = answer.split('\0').collect();
    let mut v: Vec<(String, bool)> = parts
        .chunks(2)
        .filter(|c| c.len() == 2 && !c[0].is_empty())
        .map(|c| (c[0].to_string(), c[1] == "1"))
        .collect();
    v.sort_by(|a, b| crate::core::releases::compare_names(&a.0, &b.0).then(a.1.cmp(&b.1)));
    v
}

/// Reads a whole number answer (`Size`, `FreeBytes`, `Remove`).
pub fn number(answer: &str) -> Option<u64> {
    answer.trim().parse().ok()
}

/// Why an operation failed, from its exit status and what it printed on stderr: the last
/// line that is not the shell's noise.
pub fn failure(code: Option<i32>, stderr: &str) -> Failure {
    let said = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string();
    match code {
        Some(NOT_FOUND) => Failure::NotFound(said),
        Some(REFUSED) => Failure::Refused(said),
        Some(WRONG_TYPE) => Failure::WrongType(said),
        _ => Failure::Other {
            code,
            said: if said.is_empty() {
                "(the host printed nothing)".into()
            } else {
                said
            },
        },
    }
}

/// A failed remote file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    NotFound(String),
    Refused(String),
    WrongType(String),
    Other { code: Option<i32>, said: String },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Runs an operation's text with the local `sh`, as the host's `sh -s` would.
    fn run(op: &Op, home: &str) -> (Option<i32>, String, String) {
        use std::io::Write;
        let mut c = Command::new("sh")
            .arg("-s")
            .env("HOME", home)
            .current_dir(home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(op.script().as_bytes())
            .unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }

    fn temp(name: &str) -> String {
        let d = std::env::temp_dir().join(format!(
            "deployer-remote-files-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("home/sub")).unwrap();
        d.canonicalize().unwrap().display().to_string()
    }

    #[test]
    fn base64_matches_the_reference() {
        assert_eq!(base64_lines(b""), "");
        assert_eq!(base64_lines(b"f"), "Zg==\n");
        assert_eq!(base64_lines(b"fo"), "Zm8=\n");
        assert_eq!(base64_lines(b"foo"), "Zm9v\n");
        assert_eq!(base64_lines(&[0u8; 58]).lines().count(), 2);
    }

    #[test]
    fn answers_are_read_after_the_marker() {
        let noisy = format!("Welcome to web1!\n{MARKER}\nhello\n");
        assert_eq!(answer(&noisy), Some("hello\n"));
        assert_eq!(answer("nothing"), None);
        assert_eq!(
            probe("edl\n"),
            Probe {
                exists: true,
                dir: true,
                file: false,
                link: true
            }
        );
        assert_eq!(names("b\0a\0.env\0"), [".env", "a", "b"]);
        assert_eq!(
            release_dirs("r2\x000\x00r1\x001\x00"),
            [("r1".to_string(), true), ("r2".to_string(), false)]
        );
        assert_eq!(
            failure(Some(4), "sh: noise\nNo such file or directory\n"),
            Failure::NotFound("No such file or directory".into())
        );
    }

    #[test]
    fn operations_do_what_they_say_through_sh() {
        let d = temp("ops");
        let home = format!("{d}/home");
        let f = format!("{d}/home/sub/a.txt");
        let text = "line 1\nsecret 'quoted' $HOME `x`\nno newline at the end";
        assert_eq!(run(&Op::Write { path: &f, text }, &home).0, Some(0));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), text);
        let (c, out, _) = run(
            &Op::Read {
                path: &f,
                limit: 1000,
            },
            &home,
        );
        assert_eq!((c, answer(&out)), (Some(0), Some(text)));
        run(
            &Op::Append {
                path: &f,
                text: "!",
            },
            &home,
        );
        assert!(std::fs::read_to_string(&f).unwrap().ends_with("end!"));
        let (_, out, _) = run(&Op::Probe { path: &f }, &home);
        assert!(probe(answer(&out).unwrap()).file);
        let (_, out, _) = run(
            &Op::List {
                path: &format!("{d}/home/sub"),
            },
            &home,
        );
        assert_eq!(names(answer(&out).unwrap()), ["a.txt"]);
        let (c, _, err) = run(
            &Op::Read {
                path: "missing",
                limit: 10,
            },
            &home,
        );
        assert!(matches!(failure(c, &err), Failure::NotFound(_)), "{err}");
        // The link swap: a relative target, read from the link's folder.
        let rel = format!("{d}/home/rel");
        std::fs::create_dir_all(format!("{rel}/releases/r1")).unwrap();
        std::fs::create_dir_all(format!("{rel}/releases/r2")).unwrap();
        let cur = format!("{rel}/current");
        for r in ["releases/r1", "releases/r2"] {
            let (c, _, e) = run(
                &Op::SymlinkSwap {
                    target: r,
                    link: &cur,
                },
                &home,
            );
            assert_eq!(c, Some(0), "{e}");
            assert_eq!(std::fs::read_link(&cur).unwrap().to_str(), Some(r));
        }
        let (c, _, _) = run(
            &Op::SymlinkSwap {
                target: "releases/r9",
                link: &cur,
            },
            &home,
        );
        assert_eq!(c, Some(NOT_FOUND));
        std::fs::write(format!("{rel}/releases/r1/.bad"), "").unwrap();
        let (_, out, _) = run(
            &Op::ReleaseDirs {
                root: &rel,
                mark: ".bad",
            },
            &home,
        );
        assert_eq!(
            release_dirs(answer(&out).unwrap()),
            [("r1".to_string(), true), ("r2".to_string(), false)]
        );
        let (_, out, _) = run(&Op::ReadLink { path: &cur }, &home);
        assert_eq!(answer(&out), Some("releases/r2\n"));
        // Remove refuses the home folder and above, removes the rest.
        for p in [home.as_str(), "sub/..", "/", d.as_str()] {
            let (c, _, e) = run(&Op::Remove { path: p }, &home);
            assert_eq!(c, Some(REFUSED), "{p}: {e}");
        }
        let (c, out, _) = run(&Op::Remove { path: "sub" }, &home);
        assert_eq!((c, answer(&out).and_then(number)), (Some(0), Some(1)));
        assert!(!std::path::Path::new(&f).exists());
        let (_, out, _) = run(&Op::Remove { path: "sub" }, &home);
        assert_eq!(answer(&out).and_then(number), Some(0));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

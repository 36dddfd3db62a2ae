//! Fake programs for tests of scripts that drive real tools (wrangler, php, pm2, systemctl):
//! shell scripts in a test's `bin/` folder, put in front of `PATH`, that record each call in
//! `calls.log` beside `bin/`, can fail their first calls, and then do what the test says.

use std::path::{Path, PathBuf};

use super::write_executable;

/// Creates `root/bin` (the folder for fakes) and returns it.
pub fn bin_dir(root: &Path) -> PathBuf {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("creating {}: {e}", bin.display()));
    bin
}

/// The calls the fakes of `root/bin` saw, in order, one `NAME ARGS` line each.
pub fn calls(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A fake program: by default it records `NAME ARGS` and exits 0.
pub struct Fake {
    name: String,
    in_folder: bool,
    fail_on: String,
    fail_first: usize,
    then: String,
}

impl Fake {
    /// A fake `name` that records its calls and succeeds.
    pub fn new(name: &str) -> Fake {
        Fake {
            name: name.to_string(),
            in_folder: false,
            fail_on: String::new(),
            fail_first: 0,
            then: String::new(),
        }
    }

    /// Records `NAME ARGS (in FOLDER)`, FOLDER being the base name of its working folder.
    pub fn in_folder(mut self) -> Fake {
        self.in_folder = true;
        self
    }

    /// Fails (exit 1, `NAME: simulated failure N` on stderr) its first `n` calls.
    pub fn fail_first(self, n: usize) -> Fake {
        self.fail_on("", n)
    }

    /// Fails its first `n` calls whose arguments contain `text`; other calls go on.
    pub fn fail_on(mut self, text: &str, n: usize) -> Fake {
        assert!(
            !text.contains('\''),
            "fail_on text {text:?} must not hold a quote"
        );
        self.fail_on = text.to_string();
        self.fail_first = n;
        self
    }

    /// Runs the shell code `code` on the calls that do not fail.
    pub fn then(mut self, code: &str) -> Fake {
        self.then = code.to_string();
        self
    }

    /// Prints `stdout` (and a newline) on the calls that do not fail.
    pub fn prints(self, stdout: &str) -> Fake {
        self.then(&format!("cat <<'OUT'\n{stdout}\nOUT\n"))
    }

    /// Writes the fake to `bin/NAME` (mode 0755); its log and counters go beside `bin`.
    pub fn install(&self, bin: &Path) -> PathBuf {
        let dir = bin
            .parent()
            .unwrap_or_else(|| panic!("{} has no parent folder", bin.display()))
            .display()
            .to_string();
        let Fake {
            name,
            fail_on,
            fail_first,
            then,
            ..
        } = self;
        let folder = if self.in_folder {
            r#" (in $(basename "$PWD"))"#
        } else {
            ""
        };
        write_executable(
            bin,
            name,
            &format!(
                r#"dir='{dir}'
echo "{name} $*{folder}" >> "$dir/calls.log"
case "$*" in
  *'{fail_on}'*)
    n=$(cat "$dir/{name}.failures" 2>/dev/null || echo 0)
    if [ "$n" -lt {fail_first} ]; then
      echo $((n + 1)) > "$dir/{name}.failures"
      echo "{name}: simulated failure $((n + 1))" >&2
      exit 1
    fi ;;
esac
{then}
"#
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::TempDir;
    use std::process::Command;

    fn call(bin: &Path, cwd: &Path, name: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin.join(name))
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn a_fake_records_fails_its_first_calls_then_prints() {
        let root = TempDir::new();
        let bin = bin_dir(root.path());
        Fake::new("tool")
            .in_folder()
            .fail_first(2)
            .prints("v1.2")
            .install(&bin);
        let (code, _, err) = call(&bin, root.path(), "tool", &["a"]);
        assert_eq!((code, err.as_str()), (1, "tool: simulated failure 1\n"));
        assert_eq!(call(&bin, root.path(), "tool", &["b"]).0, 1);
        assert_eq!(
            call(&bin, root.path(), "tool", &["c", "d"]),
            (0, "v1.2\n".to_string(), String::new())
        );
        let folder = root.path().file_name().unwrap().to_string_lossy();
        assert_eq!(
            calls(root.path()),
            [
                format!("tool a (in {folder})"),
                format!("tool b (in {folder})"),
                format!("tool c d (in {folder})")
            ]
        );
    }

    #[test]
    fn fail_on_counts_only_matching_calls() {
        let root = TempDir::new();
        let bin = bin_dir(root.path());
        Fake::new("wrangler")
            .fail_on("deploy", 1)
            .then("echo done")
            .install(&bin);
        assert_eq!(call(&bin, root.path(), "wrangler", &["whoami"]).0, 0);
        assert_eq!(call(&bin, root.path(), "wrangler", &["deploy"]).0, 1);
        assert_eq!(call(&bin, root.path(), "wrangler", &["deploy"]).1, "done\n");
        assert_eq!(
            calls(root.path()),
            ["wrangler whoami", "wrangler deploy", "wrangler deploy"]
        );
    }
}

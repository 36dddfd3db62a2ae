//! The git state of a folder (commit and branch), read from the repository's files.

use std::path::Path;

use serde::Serialize;

/// The git state of the script's folder.
#[derive(Debug, Clone, Serialize)]
pub struct GitInfo {
    pub commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// Reads the git commit and branch of `dir` from the repository's files (no `git`
/// process: it would cost more than the rest of a short run).
pub fn git_info(dir: &Path) -> Option<GitInfo> {
    let start = dir.canonicalize().ok()?;
    let git_dir = start
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.exists())?;
    // A worktree or submodule has a `.git` file pointing at the real folder.
    let git_dir = if git_dir.is_file() {
        let text = std::fs::read_to_string(&git_dir).ok()?;
        let target = text.strip_prefix("gitdir:")?.trim();
        git_dir.parent()?.join(target)
    } else {
        git_dir
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let (commit, branch) = match head.strip_prefix("ref: ") {
        Some(reference) => {
            let branch = reference.strip_prefix("refs/heads/").map(str::to_string);
            let loose = std::fs::read_to_string(git_dir.join(reference)).ok();
            let commit = match loose {
                Some(c) => c.trim().to_string(),
                None => {
                    // The ref may only be in packed-refs (or, in a worktree, the common dir).
                    let common = std::fs::read_to_string(git_dir.join("commondir"))
                        .ok()
                        .map(|c| git_dir.join(c.trim()))
                        .unwrap_or_else(|| git_dir.clone());
                    let packed = std::fs::read_to_string(common.join("packed-refs"))
                        .or_else(|_| std::fs::read_to_string(common.join(reference)))
                        .ok()?;
                    packed
                        .lines()
                        .find_map(|l| {
                            let (hash, name) = l.split_once(' ')?;
                            (name == reference).then(|| hash.to_string())
                        })
                        .or_else(|| {
                            let t = packed.trim();
                            (t.len() >= 40 && t.chars().all(|c| c.is_ascii_hexdigit()))
                                .then(|| t.to_string())
                        })?
                }
            };
            (commit, branch)
        }
        None => (head.to_string(), None),
    };
    let valid = commit.len() >= 40 && commit.chars().all(|c| c.is_ascii_hexdigit());
    valid.then_some(GitInfo { commit, branch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::test_dir::TestDir;
    use std::fs;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn repo(d: &TestDir) -> std::path::PathBuf {
        let git = d.0.join(".git");
        fs::create_dir_all(git.join("refs/heads")).expect("mkdir");
        fs::create_dir_all(d.0.join("deploy/sub")).expect("mkdir");
        git
    }

    #[test]
    fn reads_a_branch_from_a_loose_ref_above_the_folder() {
        let d = TestDir::new("git-loose");
        let git = repo(&d);
        fs::write(git.join("HEAD"), "ref: refs/heads/main\n").expect("write");
        fs::write(git.join("refs/heads/main"), format!("{A}\n")).expect("write");
        let info = git_info(&d.0.join("deploy/sub")).expect("git info");
        assert_eq!(info.commit, A);
        assert_eq!(info.branch.as_deref(), Some("main"));
    }

    #[test]
    fn reads_packed_refs_and_a_detached_head() {
        let d = TestDir::new("git-packed");
        let git = repo(&d);
        fs::write(git.join("HEAD"), "ref: refs/heads/release\n").expect("write");
        fs::write(
            git.join("packed-refs"),
            format!("# pack-refs with: peeled\n{B} refs/heads/main\n{A} refs/heads/release\n"),
        )
        .expect("write");
        let info = git_info(&d.0).expect("git info");
        assert_eq!(
            (info.commit.as_str(), info.branch.as_deref()),
            (A, Some("release"))
        );
        fs::write(git.join("HEAD"), format!("{B}\n")).expect("write");
        let info = git_info(&d.0).expect("git info");
        assert_eq!((info.commit.as_str(), info.branch), (B, None));
    }

    #[test]
    fn follows_a_worktree_git_file_and_refuses_garbage() {
        let d = TestDir::new("git-worktree");
        let real = d.0.join("main-repo/.git/worktrees/wt");
        fs::create_dir_all(&real).expect("mkdir");
        fs::create_dir_all(d.0.join("wt")).expect("mkdir");
        fs::write(d.0.join("wt/.git"), format!("gitdir: {}\n", real.display())).expect("write");
        fs::write(real.join("HEAD"), "ref: refs/heads/feature\n").expect("write");
        fs::write(real.join("commondir"), "../..\n").expect("write");
        fs::write(
            d.0.join("main-repo/.git/packed-refs"),
            format!("{A} refs/heads/feature\n"),
        )
        .expect("write");
        let info = git_info(&d.0.join("wt")).expect("git info");
        assert_eq!(
            (info.commit.as_str(), info.branch.as_deref()),
            (A, Some("feature"))
        );
        fs::write(real.join("HEAD"), "not a commit\n").expect("write");
        assert!(
            git_info(&d.0.join("wt")).is_none(),
            "a HEAD that is no commit"
        );
        let none = TestDir::new("git-none");
        assert!(
            git_info(&none.0).is_none(),
            "no repository above the temp dir"
        );
    }
}

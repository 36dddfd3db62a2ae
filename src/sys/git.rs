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

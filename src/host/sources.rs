//! The text of every script and module a run loaded, by source name, for error rendering,
//! plus the standard library compiled into the binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The embedded standard library: `import "std/NAME" as x;`.
pub const STDLIB: &[(&str, &str)] = &[
    ("checks", include_str!("../../stdlib/checks.rhai")),
    ("cloudflare", include_str!("../../stdlib/cloudflare.rhai")),
    ("docker", include_str!("../../stdlib/docker.rhai")),
    ("git", include_str!("../../stdlib/git.rhai")),
    ("laravel", include_str!("../../stdlib/laravel.rhai")),
    ("notify", include_str!("../../stdlib/notify.rhai")),
    ("postgres", include_str!("../../stdlib/postgres.rhai")),
    ("preflight", include_str!("../../stdlib/preflight.rhai")),
    ("releases", include_str!("../../stdlib/releases.rhai")),
    ("service", include_str!("../../stdlib/service.rhai")),
];

/// Returns the source of the embedded module `std/NAME`.
pub fn stdlib(name: &str) -> Option<&'static str> {
    STDLIB.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Loaded sources by name (the name errors and `--> file:line:col` show).
#[derive(Debug, Default)]
pub struct SourceMap {
    texts: Mutex<HashMap<String, Arc<str>>>,
    files: Mutex<Vec<PathBuf>>,
}

impl SourceMap {
    /// Remembers a source's text under `name`; `file` is its path on disk, if any.
    pub fn insert(&self, name: &str, text: &str, file: Option<&Path>) {
        if let Ok(mut t) = self.texts.lock() {
            t.insert(name.to_string(), Arc::from(text));
        }
        if let (Some(file), Ok(mut files)) = (file, self.files.lock()) {
            let file = file.to_path_buf();
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }

    /// Returns a source's text.
    pub fn get(&self, name: &str) -> Option<Arc<str>> {
        self.texts.lock().ok()?.get(name).cloned()
    }

    /// Returns every file on disk that was loaded (the script and its imports), for `--watch`.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// What an import path refers to.
#[derive(Debug, Clone)]
pub struct Located {
    /// The source name shown in errors: `std/checks`, or the file path as the user wrote it.
    pub name: String,
    pub text: String,
    pub file: Option<PathBuf>,
}

/// An import that cannot be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocateError {
    #[error("no standard module \"{path}\": the standard modules are {known}")]
    NoStd { path: String, known: String },
    #[error("module \"{path}\" not found: looked for {file}")]
    NotFound { path: String, file: String },
    #[error("cannot read module {file}: {reason}")]
    Unreadable { file: String, reason: String },
}

/// Finds an import: `std/NAME` in the embedded library, anything else relative to the
/// folder of the importing script (`importer`), with `.rhai` added when missing.
pub fn locate(importer: Option<&str>, path: &str) -> Result<Located, LocateError> {
    if let Some(name) = path.strip_prefix("std/") {
        let name = name.trim_end_matches(".rhai");
        return match stdlib(name) {
            Some(text) => Ok(Located {
                name: format!("std/{name}"),
                text: text.to_string(),
                file: None,
            }),
            None => Err(LocateError::NoStd {
                path: path.to_string(),
                known: STDLIB
                    .iter()
                    .map(|(n, _)| format!("std/{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        };
    }
    let base = importer
        .filter(|s| !s.starts_with("std/"))
        .and_then(|s| Path::new(s).parent())
        .unwrap_or(Path::new(""));
    let mut file = base.join(path);
    if file.extension().is_none() {
        file.set_extension("rhai");
    }
    let name = clean(&file);
    if let Err(e) = std::fs::metadata(&file) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Err(LocateError::NotFound {
                path: path.to_string(),
                file: name,
            });
        }
    }
    // The same bounds as the main script: size cap, regular files only, a BOM accepted.
    match super::input::read_script(&file) {
        Ok(text) => Ok(Located {
            name: name.clone(),
            text,
            file: Some(file),
        }),
        Err(reason) => Err(LocateError::Unreadable { file: name, reason }),
    }
}

/// Removes `.` components and folds `dir/..` so names read the way people write them.
pub fn clean(path: &Path) -> String {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    let p: PathBuf = out.iter().collect();
    if p.as_os_str().is_empty() {
        ".".into()
    } else {
        p.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean(Path::new("./a/../b/c.rhai")), "b/c.rhai");
        assert_eq!(clean(Path::new("../x.rhai")), "../x.rhai");
    }

    #[test]
    fn finds_the_standard_library() {
        assert!(locate(None, "std/checks").is_ok());
        let err = locate(None, "std/nope").expect_err("missing module");
        assert!(err.to_string().contains("std/checks"), "{err}");
    }
}

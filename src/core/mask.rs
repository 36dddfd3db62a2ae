//! Masking of secret values in any text that leaves the process.

use std::sync::RwLock;

/// The mask that replaces a secret value.
pub const MASK: &str = "***";

/// Secrets shorter than this are not masked: masking "ab" would garble every line.
pub const MIN_SECRET_LEN: usize = 4;

/// A set of secret values to hide; shared by every writer of logs, errors and reports.
#[derive(Debug, Default)]
pub struct Masker {
    secrets: RwLock<Vec<String>>,
}

impl Masker {
    /// Adds a value to hide. Returns false when it is too short to be masked reliably.
    pub fn add(&self, value: &str) -> bool {
        if value.chars().count() < MIN_SECRET_LEN {
            return false;
        }
        if let Ok(mut list) = self.secrets.write() {
            if !list.iter().any(|s| s == value) {
                list.push(value.to_string());
                // Longest first, so a secret containing another is masked whole.
                list.sort_by_key(|s| std::cmp::Reverse(s.len()));
            }
        }
        true
    }

    /// Returns `text` with every secret value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let Ok(list) = self.secrets.read() else {
            return text.to_string();
        };
        let mut out = text.to_string();
        for secret in list.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// Returns true when no secret has been registered (masking is then free).
    pub fn is_empty(&self) -> bool {
        self.secrets.read().map(|l| l.is_empty()).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let m = Masker::default();
        assert!(m.add("hunter2"));
        assert!(m.add("hunter2-extended"));
        assert_eq!(
            m.mask("token=hunter2-extended and hunter2"),
            "token=*** and ***"
        );
    }

    #[test]
    fn refuses_short_values() {
        let m = Masker::default();
        assert!(!m.add("ab"));
        assert_eq!(m.mask("abc"), "abc");
        assert!(m.is_empty());
    }
}

//! How the pipeline itself ends a script early: typed, never read back from an error's
//! `kind`. The error that carries it is a map (`#{ kind, message }`) scripts can read like
//! any other, with the control attached as the value's tag; the runner, `retry` and
//! `monitor` read the tag.

/// Why the pipeline ended the script early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// A required phase failed (or a phase failed after a rollback was asked for).
    Stopped,
    /// `trigger_rollback()` or a monitor that reached critical asked for the rollback.
    RollbackRequested,
}

impl Control {
    const ALL: [Control; 2] = [Control::Stopped, Control::RollbackRequested];

    /// The tag the control's error value carries (fits both widths of Rhai's tag).
    pub fn tag(self) -> i16 {
        match self {
            Control::Stopped => 0x7d01,
            Control::RollbackRequested => 0x7d02,
        }
    }

    /// The control a tag stands for, if any.
    pub fn from_tag(tag: i64) -> Option<Control> {
        Control::ALL.into_iter().find(|c| i64::from(c.tag()) == tag)
    }

    /// The `kind` scripts see when they catch the error (for their messages only).
    pub fn kind(self) -> &'static str {
        match self {
            Control::Stopped => "pipeline_stopped",
            Control::RollbackRequested => "rollback_requested",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_other_tags_mean_nothing() {
        for c in Control::ALL {
            assert_eq!(Control::from_tag(i64::from(c.tag())), Some(c));
        }
        assert_eq!(Control::from_tag(0), None);
        assert_eq!(Control::from_tag(1), None);
    }

    /// Control flow is never read back from an error's `kind`: outside this file no source
    /// names the kinds (the runner, `retry` and `monitor` read the tag).
    #[test]
    fn no_source_outside_this_file_names_a_control_kind() {
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs" || e == "rhai")
                    && !path.ends_with("pipeline/control.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for c in Control::ALL {
                        if text.contains(c.kind()) {
                            found.push(format!("{} names {}", path.display(), c.kind()));
                        }
                    }
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = Vec::new();
        for dir in ["src", "stdlib", "scripts"] {
            walk(&root.join(dir), &mut found);
        }
        assert!(found.is_empty(), "{found:#?}");
    }
}

//! A run's verdict and exit code, decided from how it ended: pure, unit-tested with fixed
//! inputs (as `core/score.rs` is), and used by `finish.rs`.

use crate::core::score::Verdict;
use crate::exit;
use crate::host::diagnostic::Diagnostic;
use crate::report::record::{ErrorRecord, RollbackStatus, RunStatus};

/// What decides a run's verdict and exit code, gathered when it ends.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub(super) dry_run: bool,
    pub(super) rollback_only: bool,
    pub(super) strict: bool,
    pub(super) status: RunStatus,
    /// The verdict the score gives, when the run has phases.
    pub(super) scored: Option<Verdict>,
    /// The required phase that stopped the pipeline.
    pub(super) stopped_by: Option<String>,
    pub(super) rollback: RollbackStatus,
    /// A dry run in which the script itself failed (not a probe of the unchanged service).
    pub(super) broken_dry_run: bool,
}

/// The verdict, why it is not the score's, and the exit code.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decision {
    pub(super) verdict: Option<Verdict>,
    pub(super) reason: Option<String>,
    pub(super) code: i32,
}

/// Decides a run's verdict and exit code from how it ended. Pure: see the tests below.
pub(super) fn decide(f: &Facts) -> Decision {
    if f.dry_run {
        // A dry run changes nothing and is not judged; it fails only when the script is
        // broken (exit 2) or interrupted.
        let code = match f.status {
            RunStatus::Interrupted => exit::INTERRUPTED,
            _ if f.broken_dry_run => exit::USAGE,
            _ => exit::OK,
        };
        return Decision {
            verdict: None,
            reason: None,
            code,
        };
    }
    let scored = f.scored.unwrap_or(if f.status == RunStatus::Completed {
        Verdict::Pass
    } else {
        Verdict::Failed
    });
    let rolled = f.rollback != RollbackStatus::NotNeeded && !f.rollback_only;
    let reason = match f.status {
        RunStatus::Interrupted => Some("interrupted".to_string()),
        RunStatus::Declined => Some("declined".to_string()),
        _ if rolled => Some(match f.rollback {
            RollbackStatus::Failed => "rollback failed".to_string(),
            RollbackStatus::Declined => "rollback declined".to_string(),
            RollbackStatus::Never => "not rolled back (rollback = \"never\")".to_string(),
            RollbackStatus::Missing => "no fn rollback(ctx) to roll back".to_string(),
            RollbackStatus::NotRun => "not rolled back".to_string(),
            RollbackStatus::Ok | RollbackStatus::NotNeeded => "rolled back".to_string(),
        }),
        _ => f
            .stopped_by
            .as_ref()
            .map(|p| format!("required phase \"{p}\" failed"))
            .or_else(|| (f.status == RunStatus::Failed).then(|| "the script failed".to_string())),
    };
    let verdict = if reason.is_some() {
        Verdict::Failed
    } else {
        scored
    };
    let code = match f.status {
        RunStatus::Interrupted => exit::INTERRUPTED,
        RunStatus::Declined if f.rollback_only => exit::FAILED,
        _ if f.rollback_only => {
            if f.rollback == RollbackStatus::Ok {
                exit::OK
            } else {
                exit::ROLLBACK_FAILED
            }
        }
        _ if f.rollback.needs_a_person() => exit::ROLLBACK_FAILED,
        RunStatus::Declined => exit::FAILED,
        _ => match verdict {
            Verdict::Pass => exit::OK,
            Verdict::Warning if f.strict => exit::WARNING_STRICT,
            Verdict::Warning => exit::OK,
            Verdict::Failed => exit::FAILED,
        },
    };
    Decision {
        verdict: Some(verdict),
        reason,
        code,
    }
}

pub(super) fn error_record(d: &Diagnostic) -> ErrorRecord {
    ErrorRecord {
        message: d.message.clone(),
        location: d.location.as_ref().map(|l| l.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            dry_run: false,
            rollback_only: false,
            strict: false,
            status: RunStatus::Completed,
            scored: Some(Verdict::Pass),
            stopped_by: None,
            rollback: RollbackStatus::NotNeeded,
            broken_dry_run: false,
        }
    }

    #[test]
    fn a_passing_run_passes_with_the_scores_verdict() {
        let d = decide(&facts());
        assert_eq!(d.verdict, Some(Verdict::Pass));
        assert_eq!(d.reason, None);
        assert_eq!(d.code, exit::OK);
        let warn = decide(&Facts {
            scored: Some(Verdict::Warning),
            ..facts()
        });
        assert_eq!(
            (warn.verdict, warn.code),
            (Some(Verdict::Warning), exit::OK)
        );
        let strict = decide(&Facts {
            scored: Some(Verdict::Warning),
            strict: true,
            ..facts()
        });
        assert_eq!(strict.code, exit::WARNING_STRICT);
    }

    #[test]
    fn a_rollback_forces_failed_and_says_why() {
        let d = decide(&Facts {
            rollback: RollbackStatus::Ok,
            ..facts()
        });
        assert_eq!(d.verdict, Some(Verdict::Failed));
        assert_eq!(d.reason.as_deref(), Some("rolled back"));
        assert_eq!(d.code, exit::FAILED);
        for (status, code, why) in [
            (
                RollbackStatus::Failed,
                exit::ROLLBACK_FAILED,
                "rollback failed",
            ),
            (
                RollbackStatus::Declined,
                exit::ROLLBACK_FAILED,
                "rollback declined",
            ),
            (
                RollbackStatus::Missing,
                exit::ROLLBACK_FAILED,
                "no fn rollback(ctx) to roll back",
            ),
        ] {
            let d = decide(&Facts {
                rollback: status,
                status: RunStatus::Failed,
                ..facts()
            });
            assert_eq!((d.code, d.reason.as_deref()), (code, Some(why)));
        }
    }

    #[test]
    fn stopped_interrupted_and_declined_runs_fail_with_their_reason() {
        let d = decide(&Facts {
            stopped_by: Some("Build".into()),
            status: RunStatus::Failed,
            ..facts()
        });
        assert_eq!(d.reason.as_deref(), Some("required phase \"Build\" failed"));
        assert_eq!(d.code, exit::FAILED);
        let d = decide(&Facts {
            status: RunStatus::Interrupted,
            ..facts()
        });
        assert_eq!(
            (d.code, d.reason.as_deref()),
            (exit::INTERRUPTED, Some("interrupted"))
        );
        let d = decide(&Facts {
            status: RunStatus::Declined,
            scored: None,
            ..facts()
        });
        assert_eq!((d.code, d.verdict), (exit::FAILED, Some(Verdict::Failed)));
    }

    #[test]
    fn a_dry_run_has_no_verdict_and_fails_only_when_the_script_is_broken() {
        let d = decide(&Facts {
            dry_run: true,
            scored: Some(Verdict::Failed),
            ..facts()
        });
        assert_eq!((d.verdict, d.code), (None, exit::OK));
        let d = decide(&Facts {
            dry_run: true,
            broken_dry_run: true,
            ..facts()
        });
        assert_eq!(d.code, exit::USAGE);
        let d = decide(&Facts {
            dry_run: true,
            status: RunStatus::Interrupted,
            ..facts()
        });
        assert_eq!(d.code, exit::INTERRUPTED);
    }

    #[test]
    fn manual_rollback_exit_codes() {
        let ok = decide(&Facts {
            rollback_only: true,
            rollback: RollbackStatus::Ok,
            scored: None,
            ..facts()
        });
        assert_eq!((ok.code, ok.verdict), (exit::OK, Some(Verdict::Pass)));
        let failed = decide(&Facts {
            rollback_only: true,
            rollback: RollbackStatus::Failed,
            status: RunStatus::Failed,
            scored: None,
            ..facts()
        });
        assert_eq!(failed.code, exit::ROLLBACK_FAILED);
    }
}

//! One cancellation signal for a run: a signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT),
//! `--timeout`, the bound of the rollback or of a hook, or a reload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Why a run was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// A signal from the operator or the system (`SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`).
    Signal(&'static str),
    /// The run exceeded `--timeout`.
    Timeout(Duration),
    /// `fn rollback(ctx)` exceeded `--rollback-timeout`.
    RollbackTimeout(Duration),
    /// A hook (`fn on_finish`) exceeded its bound after the run was interrupted.
    HookTimeout(Duration),
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelReason::Signal("SIGINT") => write!(f, "interrupted (Ctrl-C)"),
            CancelReason::Signal(name) => write!(f, "interrupted ({name})"),
            CancelReason::Timeout(d) => write!(
                f,
                "timed out after {} (--timeout)",
                crate::core::duration::format_duration(*d)
            ),
            CancelReason::RollbackTimeout(d) => write!(
                f,
                "the rollback timed out after {} (--rollback-timeout) and was stopped",
                crate::core::duration::format_duration(*d)
            ),
            CancelReason::HookTimeout(d) => write!(
                f,
                "the hook was stopped after {} (hooks after an interrupt are bounded; DEPLOYER_HOOK_TIMEOUT sets the bound)",
                crate::core::duration::format_duration(*d)
            ),
        }
    }
}

/// A cancellation signal shared by the engine (checked between operations) and by every
/// native sleep, probe and child process (which wait on the token).
#[derive(Debug)]
pub struct Cancel {
    flag: AtomicBool,
    /// A second signal: the run ends as fast as it can and nothing resets the cancellation.
    hurry: AtomicBool,
    token: Mutex<CancellationToken>,
    reason: Mutex<Option<CancelReason>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel {
            flag: AtomicBool::new(false),
            hurry: AtomicBool::new(false),
            token: Mutex::new(CancellationToken::new()),
            reason: Mutex::new(None),
        }
    }
}

impl Cancel {
    /// Cancels the run; the first reason given wins.
    pub fn cancel(&self, reason: CancelReason) {
        if let Ok(mut r) = self.reason.lock() {
            if r.is_none() {
                *r = Some(reason.clone());
            }
        }
        tracing::debug!(?reason, "cancelling the run");
        self.flag.store(true, Ordering::SeqCst);
        self.token().cancel();
    }

    /// Cancels the run for good (a second signal): later [`Cancel::reset`]s keep it
    /// cancelled, so hooks and the rollback stop at once too.
    pub fn hurry(&self, reason: CancelReason) {
        self.hurry.store(true, Ordering::SeqCst);
        self.cancel(reason);
    }

    /// Returns true after [`Cancel::hurry`].
    pub fn hurried(&self) -> bool {
        self.hurry.load(Ordering::SeqCst)
    }

    /// Returns true once the run has been cancelled. Cheap: called between script operations.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Returns why the run was cancelled, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Returns the token that async waits select on.
    pub fn token(&self) -> CancellationToken {
        match self.token.lock() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Clears a cancellation so the next evaluation can run (REPL, watch mode, hooks);
    /// does nothing after [`Cancel::hurry`].
    pub fn reset(&self) {
        if self.hurried() {
            return;
        }
        if let Ok(mut t) = self.token.lock() {
            *t = CancellationToken::new();
        }
        if let Ok(mut r) = self.reason.lock() {
            *r = None;
        }
        self.flag.store(false, Ordering::SeqCst);
    }
}

/// The error of an operation that stopped because the run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Runs `fut` until it completes or the run is cancelled.
pub async fn or_cancel<F: std::future::Future>(
    token: &CancellationToken,
    fut: F,
) -> Result<F::Output, Cancelled> {
    tokio::select! {
        biased;
        _ = token.cancelled() => Err(Cancelled),
        out = fut => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hurry_survives_reset_and_a_plain_cancel_does_not() {
        let c = Cancel::default();
        c.cancel(CancelReason::Signal("SIGHUP"));
        assert_eq!(
            c.reason().map(|r| r.to_string()).as_deref(),
            Some("interrupted (SIGHUP)")
        );
        c.reset();
        assert!(!c.is_cancelled());
        c.hurry(CancelReason::Signal("SIGINT"));
        c.reset();
        assert!(c.is_cancelled());
        assert!(c.token().is_cancelled());
    }
}

//! How a command ends: `Ok(())`, or a [`CliError`] whose [`code`](CliError::code) is the
//! process's exit code (the table in README "Exit codes", constants in `crate::exit`).
//!
//! `anyhow` lives here, at the edge only: a command adds context to what failed
//! (`.context("cannot read history.jsonl")`) and `cli::main` prints the chain once. The
//! library below returns typed errors.

use crate::exit;

/// What a command returns.
pub type CmdResult = Result<(), CliError>;

/// Why a command did not end with exit 0.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments, a bad deployer.toml or a script that does not compile: nothing was
    /// done. Exit 2.
    #[error("{0:#}")]
    Usage(anyhow::Error),
    /// The command could not do its work (a file it cannot read, a port it cannot bind,
    /// a lock it cannot remove). Exit 1.
    #[error("{0:#}")]
    Failed(anyhow::Error),
    /// Problems that were already printed where they were found, each with its position
    /// (the diagnostics of `check`, failed inputs of a piped REPL). Exit 2.
    #[error("{count} problem{} found", if *.count == 1 { "" } else { "s" })]
    Problems {
        /// How many problems were printed.
        count: usize,
    },
    /// A run (`run`, `rollback`, `run --watch`) ended with this non-zero code; its console
    /// output and its record already say why.
    #[error("the run ended with exit code {0}")]
    Run(i32),
}

impl CliError {
    /// The exit code of the process.
    pub fn code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Problems { .. } => exit::USAGE,
            CliError::Failed(_) => exit::FAILED,
            CliError::Run(code) => *code,
        }
    }

    /// Whether `cli::main` prints the error; a run's ending was already reported.
    pub fn should_print(&self) -> bool {
        !matches!(self, CliError::Run(_))
    }

    /// A usage error from a message.
    pub fn usage(msg: impl std::fmt::Display) -> CliError {
        CliError::Usage(anyhow::anyhow!("{msg}"))
    }

    /// A failure from a message.
    pub fn failed(msg: impl std::fmt::Display) -> CliError {
        CliError::Failed(anyhow::anyhow!("{msg}"))
    }
}

/// Turns a run's exit code into a command result.
pub fn from_code(code: i32) -> CmdResult {
    if code == exit::OK {
        Ok(())
    } else {
        Err(CliError::Run(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_error_has_the_published_code() {
        assert_eq!(CliError::usage("bad").code(), 2);
        assert_eq!(CliError::failed("bad").code(), 1);
        assert_eq!(CliError::Problems { count: 3 }.code(), 2);
        for code in [1, 3, 4, 5, 6, 130] {
            assert_eq!(CliError::Run(code).code(), code);
        }
    }

    #[test]
    fn a_run_that_passed_is_ok_and_others_keep_their_code() {
        assert!(from_code(exit::OK).is_ok());
        let e = from_code(exit::ROLLBACK_FAILED).err();
        assert_eq!(e.as_ref().map(CliError::code), Some(exit::ROLLBACK_FAILED));
        assert_eq!(e.map(|e| e.should_print()), Some(false));
    }

    #[test]
    fn the_context_chain_is_printed_in_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = Err::<(), _>(io)
            .context("cannot read .deployer/history.jsonl")
            .map_err(CliError::Failed)
            .err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some("cannot read .deployer/history.jsonl: No such file or directory".into())
        );
        assert_eq!(
            CliError::Problems { count: 1 }.to_string(),
            "1 problem found"
        );
        assert_eq!(
            CliError::Problems { count: 2 }.to_string(),
            "2 problems found"
        );
    }
}

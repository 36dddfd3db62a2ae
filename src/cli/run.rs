//! `deployer run`: run a script as a deployment (see `runner`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::error::{from_code, CliError, CmdResult};
use crate::host::console::{ColorChoice, Console, Verbosity};
use crate::runner::{execute, RunRequest};

pub const EXAMPLES: &str = "\
Examples:
  deployer run examples/hello.rhai
  deployer run deploy.rhai --env production --yes
  deployer run deploy.rhai --var base_url=http://127.0.0.1:8080 --var break=true
  deployer run deploy.rhai --dry-run        # print commands and mutating requests, run none
  deployer run deploy.rhai --skip-e2e --strict --json > report.json
  deployer run deploy.rhai --junit reports/deploy.xml   # JUnit XML for the CI's test view
  deployer run deploy.rhai --html deploy-report.html  # a copy of the run's report.html
  deployer run deploy.rhai --timeout 20m -v # stop after 20 minutes; stream command output
  deployer run deploy.rhai --rollback-timeout 5m  # stop a rollback that hangs after 5 minutes
  deployer run deploy.rhai --watch          # run again on each save of it or its modules";

/// Where a script runs and with what: the options shared by `run`, `rollback` and `repl`.
#[derive(Debug, Args)]
pub struct Setting {
    /// The environment ([env.NAME] in deployer.toml; scripts read env()).
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// A script variable, read with var("KEY"); repeatable; overrides deployer.toml. In
    /// `run` and `rollback`, a KEY that no var("KEY") in the script or its modules reads is
    /// an error.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = super::var_arg)]
    pub vars: Vec<(String, String)>,
    /// Run no command and send no mutating request; print what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to every confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Options shared by `run` and `rollback`.
#[derive(Debug, Args)]
pub struct Common {
    /// The script to run.
    pub script: PathBuf,
    #[command(flatten)]
    pub setting: Setting,
    /// Stop the run after this long, such as 20m or 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = super::duration_arg)]
    pub timeout: Option<Duration>,
    /// Stop fn rollback(ctx) after this long (default 10m; env DEPLOYER_ROLLBACK_TIMEOUT);
    /// a stopped rollback ends the run with exit 3. --timeout does not bound the rollback.
    #[arg(long, value_name = "DURATION", value_parser = super::duration_arg)]
    pub rollback_timeout: Option<Duration>,
    /// Wait up to this long for another run of the environment to finish.
    #[arg(long, value_name = "DURATION", value_parser = super::duration_arg)]
    pub lock_wait: Option<Duration>,
    /// Print the final report as JSON on stdout, and nothing else there: script print()
    /// output and GitHub workflow commands go to stderr.
    #[arg(long)]
    pub json: bool,
    /// Also write the run's report as JUnit XML to PATH (one testsuite per phase, one
    /// testcase per check), even when the run fails or is interrupted.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Also write the run's HTML report (report.html of its run folder) to PATH.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Print more: stream command output live.
    #[arg(long, short, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print less: only warnings, errors and script output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Common {
    /// Builds the console these options ask for.
    pub fn console(&self, color: ColorChoice) -> Console {
        let verbosity = if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        let progress = crate::host::progress::allowed(color == ColorChoice::Never, self.quiet);
        Console::new(verbosity, color.enabled())
            .for_ci(self.json, crate::report::github::enabled())
            .with_progress(progress)
    }

    /// Refuses a `--junit PATH` whose folder does not exist, before anything runs.
    pub fn check_paths(&self) -> Result<(), String> {
        if let Some(path) = &self.junit {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if path.is_dir() {
                return Err(format!(
                    "--junit {}: this is a folder; give a file path such as {}/junit.xml; nothing was run",
                    path.display(),
                    path.display()
                ));
            }
            if let Some(dir) = parent.filter(|d| !d.is_dir()) {
                return Err(format!(
                    "--junit {}: the folder {} does not exist; create it first; nothing was run",
                    path.display(),
                    dir.display()
                ));
            }
        }
        Ok(())
    }

    /// Builds the run request these options ask for.
    pub fn request(&self) -> RunRequest {
        RunRequest {
            script: self.script.clone(),
            env: self.setting.env.clone(),
            vars: self.setting.vars.clone(),
            dry_run: self.setting.dry_run,
            yes: self.setting.yes,
            timeout: self.timeout,
            rollback_timeout: self.rollback_timeout,
            json: self.json,
            junit: self.junit.clone(),
            html: self.html.clone(),
            lock_wait: self.lock_wait,
            ..RunRequest::default()
        }
    }
}

/// Arguments of `deployer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Skip a skippable phase by name; repeatable. Required phases cannot be skipped.
    #[arg(long, value_name = "PHASE")]
    pub skip: Vec<String>,
    /// Skip the end-to-end phases (skippable phases marked e2e or named E2E/end-to-end).
    #[arg(long)]
    pub skip_e2e: bool,
    /// Exit 4 when the verdict is WARNING.
    #[arg(long)]
    pub strict: bool,
    /// Run again each time the script or a module it imports changes; Ctrl-C stops.
    #[arg(long)]
    pub watch: bool,
}

/// Runs `deployer run`.
pub fn run(args: RunArgs, color: ColorChoice) -> CmdResult {
    args.common.check_paths().map_err(CliError::usage)?;
    let mut req = args.common.request();
    req.skip = args.skip;
    req.skip_e2e = args.skip_e2e;
    req.strict = args.strict;
    if args.watch {
        return from_code(crate::watch::run_watch(&req, args.common.console(color)));
    }
    from_code(execute(&req, args.common.console(color)))
}

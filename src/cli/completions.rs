//! `deployer completions SHELL` (clap_complete) and `deployer man` (clap_mangen): shell
//! completion scripts and man pages generated from the command line's own definition, so
//! they never fall behind it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use anyhow::Context;

use super::error::{CliError, CmdResult};
use crate::host::console::{ColorChoice, Console, Verbosity};

pub const COMPLETION_EXAMPLES: &str = "\
Examples:
  deployer completions bash > ~/.local/share/bash-completion/completions/deployer
  deployer completions zsh > ~/.zfunc/_deployer      # with fpath+=(~/.zfunc) before compinit
  deployer completions fish > ~/.config/fish/completions/deployer.fish
  source <(deployer completions bash)                 # this shell only";

pub const MAN_EXAMPLES: &str = "\
Examples:
  deployer man | man -l -
  deployer man --dir /usr/local/share/man/man1        # deployer.1 and deployer-SUBCOMMAND.1";

/// The shells `deployer completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Arguments of `deployer completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Arguments of `deployer man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write deployer.1 and one page per subcommand (deployer-run.1, ...) into this folder
    /// instead of printing deployer.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the completion script for `shell` to `out`.
pub fn completion_script(shell: CompletionShell, out: &mut dyn Write) {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "deployer", out);
}

/// Runs `deployer completions`.
pub fn completions(args: CompletionsArgs) -> CmdResult {
    let mut out = std::io::stdout().lock();
    completion_script(args.shell, &mut out);
    out.flush()
        .context("cannot write the completion script")
        .map_err(CliError::Failed)
}

/// Renders the man page of `cmd` (roff).
fn page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    Ok(buf)
}

/// Writes deployer.1 and deployer-SUBCOMMAND.1 for each visible subcommand into `dir`;
/// returns the paths written.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the folder {}: {e}", dir.display()))?;
    let mut cmd = super::Cli::command();
    cmd.build();
    let mut pages = vec![("deployer.1".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("deployer-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(name.replace('-', " "));
        pages.push((format!("{name}.1"), sub));
    }
    let mut written = Vec::new();
    for (file, cmd) in pages {
        let path = dir.join(&file);
        let bytes = page(cmd).map_err(|e| format!("cannot render {file}: {e}"))?;
        crate::store::atomic::write_atomic(&path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Runs `deployer man`.
pub fn man(args: ManArgs, color: ColorChoice) -> CmdResult {
    let console = Console::new(Verbosity::Normal, color.enabled());
    if let Some(dir) = &args.dir {
        for p in write_pages(dir).map_err(CliError::failed)? {
            console.success(&format!("wrote {}", p.display()));
        }
        return Ok(());
    }
    page(super::Cli::command())
        .and_then(|bytes| {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()
        })
        .context("cannot write the man page")
        .map_err(CliError::Failed)
}

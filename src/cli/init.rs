//! `deployer init`: start a project from a template: a deploy script and its deployer.toml
//! for a common stack (files under `templates/NAME/`, built into the binary), which pass
//! `deployer check` and `deployer run --dry-run` as written.

use std::path::{Path, PathBuf};

use clap::Args;

use super::error::{CliError, CmdResult};
use crate::core::suggest::nearest;
use crate::host::console::{ColorChoice, Console, Verbosity};

pub const EXAMPLES: &str = "\
Examples:
  deployer init --list
  deployer init                              # the systemd template, here
  deployer init --template laravel deploy/   # into deploy/ (created when missing)
  deployer init --template static-ssh --force";

/// Arguments of `deployer init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The template (see --list).
    #[arg(long, short, value_name = "NAME", default_value = "systemd")]
    pub template: String,
    /// Overwrite files that exist already.
    #[arg(long)]
    pub force: bool,
    /// List the templates, one line each, and write nothing.
    #[arg(long)]
    pub list: bool,
    /// The folder to write into (created when missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// A project template: the files it writes and what to edit next.
pub struct Template {
    pub name: &'static str,
    pub summary: &'static str,
    /// `(file name, contents)`.
    pub files: &'static [(&'static str, &'static str)],
    pub next: &'static str,
}

macro_rules! template {
    ($name:literal, $summary:literal) => {
        Template {
            name: $name,
            summary: $summary,
            files: &[
                (
                    "deploy.rhai",
                    include_str!(concat!("../../templates/", $name, "/deploy.rhai")),
                ),
                (
                    "deployer.toml",
                    include_str!(concat!("../../templates/", $name, "/deployer.toml")),
                ),
            ],
            next: include_str!(concat!("../../templates/", $name, "/NEXT.txt")),
        }
    };
}

/// Every template, in the order `--list` shows them.
pub const TEMPLATES: &[Template] = &[
    template!(
        "systemd",
        "a Node or binary app behind systemd, as releases (std/releases), here or over SSH"
    ),
    template!(
        "laravel",
        "a Laravel app on its server: artisan, migrations, caches, queue, PM2"
    ),
    template!(
        "docker-compose",
        "a Docker Compose stack: new image, migrations, health, back to the previous image"
    ),
    template!(
        "cloudflare",
        "a Cloudflare Worker and Pages site through wrangler, rolled back on failure"
    ),
    template!(
        "static-ssh",
        "a static site uploaded over SSH to the hosts, one release folder per deploy"
    ),
];

/// Finds a template by name, or says which ones exist (and the nearest name).
pub fn find(name: &str) -> Result<&'static Template, String> {
    if let Some(t) = TEMPLATES.iter().find(|t| t.name == name) {
        return Ok(t);
    }
    let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
    let hint = nearest(name, names.iter().copied())
        .map(|n| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    Err(format!(
        "unknown template `{name}`; {hint}the templates are: {} (deployer init --list describes them)",
        names.join(", ")
    ))
}

/// The `--list` text: one line per template.
pub fn list_text() -> String {
    let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
    TEMPLATES
        .iter()
        .map(|t| format!("{:width$}  {}\n", t.name, t.summary))
        .collect()
}

/// The files a template would write into `dir` that exist already.
fn existing(template: &Template, dir: &Path) -> Vec<PathBuf> {
    template
        .files
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Writes `template` into `dir` (creating it); refuses, writing nothing, when one of its
/// files exists and `force` is false. Returns the paths written.
pub fn write(template: &Template, dir: &Path, force: bool) -> Result<Vec<PathBuf>, String> {
    let there = existing(template, dir);
    if !force && !there.is_empty() {
        let names: Vec<String> = there.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "{} exist{} already; nothing was written. Use --force to overwrite {}, or init into another folder",
            names.join(" and "),
            if names.len() == 1 { "s" } else { "" },
            if names.len() == 1 { "it" } else { "them" }
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the folder {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in template.files {
        let path = dir.join(name);
        crate::store::atomic::write_atomic(&path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Runs `deployer init`.
pub fn init(args: InitArgs, color: ColorChoice) -> CmdResult {
    let console = Console::new(Verbosity::Normal, color.enabled());
    if args.list {
        print!("{}", list_text());
        return Ok(());
    }
    let template = find(&args.template).map_err(CliError::usage)?;
    let written = write(template, &args.dir, args.force).map_err(CliError::usage)?;
    for p in &written {
        console.success(&format!("wrote {}", p.display()));
    }
    let script = args.dir.join("deploy.rhai");
    let next = template.next.replace(
        "deployer check deploy.rhai && deployer run deploy.rhai --dry-run",
        &format!(
            "deployer check {s} && deployer run {s} --dry-run",
            s = script.display()
        ),
    );
    println!(
        "\nTemplate {}: {}.\n{}",
        template.name, template.summary, next
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_a_script_and_a_config_within_150_lines() {
        for t in TEMPLATES {
            let names: Vec<&str> = t.files.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, ["deploy.rhai", "deployer.toml"], "{}", t.name);
            let lines = t.files[0].1.lines().count();
            assert!(lines <= 150, "{}: deploy.rhai has {lines} lines", t.name);
            assert!(t.files[0].1.contains("vars(#{"), "{}", t.name);
            assert!(
                t.files[1].1.contains("default_env = \"staging\""),
                "{}",
                t.name
            );
            assert!(t.next.contains("deployer check"), "{}", t.name);
        }
    }

    #[test]
    fn unknown_template_names_the_nearest_and_all() {
        let e = find("laravle").err().unwrap_or_default();
        assert!(e.contains("did you mean `laravel`?"), "{e}");
        assert!(
            e.contains("systemd, laravel, docker-compose, cloudflare, static-ssh"),
            "{e}"
        );
        assert_eq!(list_text().lines().count(), TEMPLATES.len());
    }
}

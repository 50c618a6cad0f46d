//! `lvrepo init`: create an empty repository.

use anyhow::{Context, Result};

use crate::cli::Cli;

pub fn run(cli: &Cli, append_only: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let repo = lvrepo_fs::Repository::init(&p).with_context(|| format!("creating repository {}", p.display()))?;
    if append_only {
        repo.set_append_only()?;
    }
    if !cli.quiet {
        eprintln!("initialised repository {}", p.display());
    }
    Ok(())
}

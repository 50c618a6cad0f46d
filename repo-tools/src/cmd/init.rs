//! `lvrepo init`: create an empty repository.

use anyhow::{Context, Result};

use crate::cli::Cli;

pub fn run(cli: &Cli) -> Result<()> {
    let p = super::repo_path(cli)?;
    lvrepo_fs::Repository::init(&p).with_context(|| format!("creating repository {}", p.display()))?;
    if !cli.quiet {
        eprintln!("initialised repository {}", p.display());
    }
    Ok(())
}

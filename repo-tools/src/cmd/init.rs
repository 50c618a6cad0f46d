//! `lvrepo init`: create an empty repository.

use anyhow::{Context, Result};

use crate::cli::Cli;

pub fn run(cli: &Cli, append_only: bool) -> Result<()> {
    let arg = cli.repo.clone().ok_or_else(|| crate::Exit(crate::exit::USAGE, "no repository: pass --repo PATH or set LVREPO_REPO".into()))?;
    if lvrepo_fs::remote::url::is_remote(arg.as_os_str()) {
        // The repository is made in the bucket; this host gets its cache.
        let cache = super::remote_cache(&arg, cli.cache.clone(), true)?;
        if append_only {
            lvrepo_fs::Repository::open(&cache, true)?.set_append_only()?;
        }
        if !cli.quiet {
            eprintln!("initialised repository {} (cache {})", arg.display(), cache.display());
        }
        return Ok(());
    }
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

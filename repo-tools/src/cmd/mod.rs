//! One file per command; `run` dispatches. Shared helpers open the repository
//! and split `IMAGE:PATH` arguments.

mod cat;
mod completions;
mod diff;
mod export;
mod gc;
mod images;
mod import;
mod init;
mod ls;
mod man;
mod stats;
mod verify;

use std::path::PathBuf;

use anyhow::{Context, Result};
use lvrepo_fs::{ImageRecord, ImageRef, Repository};

use crate::cli::{Cli, Command};

pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Init => init::run(cli),
        Command::Import { source, image, message, parent, json } => import::run(cli, source, image, message, parent.as_deref(), *json),
        Command::Images { json } => images::run(cli, *json),
        Command::Ls { target, recursive, json } => ls::run(cli, target, *recursive, *json),
        Command::Cat { target } => cat::run(cli, target),
        Command::Export { image, dest } => export::run(cli, image, dest),
        Command::Diff { from, to, json } => diff::run(cli, from, to, *json),
        Command::Verify { json } => verify::run(cli, *json),
        Command::Gc { json } => gc::run(cli, *json),
        Command::Stats { json } => stats::run(cli, *json),
        Command::Man { out } => man::run(out),
        Command::Completions { shell } => completions::run(*shell),
    }
}

pub fn repo_path(cli: &Cli) -> Result<PathBuf> {
    cli.repo.clone().ok_or_else(|| crate::Exit(crate::exit::USAGE, "no repository: pass --repo PATH or set LVREPO_REPO".into()).into())
}

pub fn open(cli: &Cli, writable: bool) -> Result<Repository> {
    let p = repo_path(cli)?;
    Repository::open(&p, writable).with_context(|| format!("opening repository {}", p.display()))
}

/// Split `IMAGE[:VERSION][:PATH]`: the part after the second colon (or after
/// the first, when what follows it is not a version number) is the path.
pub fn split_target(s: &str) -> Result<(ImageRef, String)> {
    let mut parts = s.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let (version, path) = match (parts.next(), parts.next()) {
        (Some(v), rest) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => (Some(v), rest.unwrap_or("/").to_string()),
        (Some(p), Some(rest)) => (None, format!("{p}:{rest}")),
        (Some(p), None) => (None, p.to_string()),
        (None, _) => (None, "/".to_string()),
    };
    let r: ImageRef = match version {
        Some(v) => format!("{name}:{v}").parse()?,
        None => name.parse()?,
    };
    Ok((r, if path.is_empty() { "/".into() } else { path }))
}

pub fn resolve(repo: &Repository, image: &str) -> Result<ImageRecord> {
    let r: ImageRef = image.parse()?;
    Ok(repo.resolve(&r)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_targets() {
        let (r, p) = super::split_target("deb:2:/etc/passwd").unwrap();
        assert_eq!((r.name.as_str(), r.version, p.as_str()), ("deb", Some(2), "/etc/passwd"));
        let (r, p) = super::split_target("deb:/etc").unwrap();
        assert_eq!((r.version, p.as_str()), (None, "/etc"));
        let (_, p) = super::split_target("deb").unwrap();
        assert_eq!(p, "/");
        let (r, p) = super::split_target("deb:3").unwrap();
        assert_eq!((r.version, p.as_str()), (Some(3), "/"));
    }
}

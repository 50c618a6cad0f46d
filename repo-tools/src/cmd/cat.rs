//! `lvrepo cat IMAGE:PATH`: a file's bytes on stdout. Every chunk is verified
//! before a byte of it is written, so damage stops the output with exit 4.

use std::io::Write;

use anyhow::Result;
use lvrepo_fs::walk::escape_path;
use lvrepo_fs::{Error, Kind};

use crate::cli::Cli;

pub fn run(cli: &Cli, target: &std::ffi::OsStr) -> Result<()> {
    let (r, path) = super::split_target(target)?;
    let repo = super::open(cli, false)?;
    let img = repo.resolve(&r)?;
    let store = repo.objects();
    let e = lvrepo_fs::tree::lookup(store, &img.root_tree(), &path)?
        .ok_or_else(|| Error::PathNotFound { image: img.label(), path: escape_path(&path) })?;
    if e.kind != Kind::File {
        anyhow::bail!("{}:{} is not a regular file", img.label(), escape_path(&path));
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    lvrepo_fs::tree::file::read_all(store, &e.content, e.size, &mut |d| {
        out.write_all(d).map_err(|er| Error::io("writing", "stdout", er))
    })?;
    out.flush()?;
    Ok(())
}

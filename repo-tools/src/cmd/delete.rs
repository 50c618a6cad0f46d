//! `lvrepo delete NAME:VERSION`: remove an image ref. The version must be
//! named explicitly, so a typo cannot delete "the latest" by accident.

use anyhow::{bail, Result};
use lvrepo_fs::ImageRef;

use crate::cli::Cli;

pub fn run(cli: &Cli, image: &str) -> Result<()> {
    let r: ImageRef = image.parse()?;
    if r.version.is_none() {
        bail!(crate::Exit(crate::exit::USAGE, format!("name the version to delete: {image}:VERSION")));
    }
    let repo = super::open(cli, true)?;
    let rec = repo.delete_image(&r)?;
    if !cli.quiet {
        eprintln!("deleted {}; run `lvrepo gc` to reclaim its space", rec.label());
    }
    Ok(())
}

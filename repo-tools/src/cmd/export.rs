//! `lvrepo export IMAGE DEST`: to a directory (absent or empty), a `.tar` file,
//! or `-` (tar on stdout).

use std::path::Path;

use anyhow::{Context, Result};
use lvrepo_fs::export::{export_dir, export_tar};
use lvrepo_fs::Progress;

use crate::cli::Cli;
use crate::progress::Bar;

pub fn run(cli: &Cli, image: &str, dest: &Path) -> Result<()> {
    let repo = super::open(cli, false)?;
    let img = super::resolve(&repo, image)?;
    let bar = Bar::bytes(cli.quiet || dest == Path::new("-"), "exporting");
    bar.set_total(img.logical_bytes);
    let root = img.root_tree();
    let stats = if dest == Path::new("-") {
        export_tar(repo.objects(), &root, std::io::stdout().lock(), &bar)?
    } else if dest.extension().is_some_and(|e| e == "tar") {
        if dest.symlink_metadata().is_ok() {
            return Err(lvrepo_fs::Error::DestinationNotEmpty(dest.to_path_buf()).into());
        }
        // Only a complete archive gets the requested name.
        let tmp = dest.with_extension("tar.partial");
        let write = || -> Result<lvrepo_fs::export::ExportStats> {
            let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let s = export_tar(repo.objects(), &root, &mut w, &bar)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, dest)?;
            Ok(s)
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?
    } else {
        export_dir(repo.objects(), &root, dest, &bar).with_context(|| format!("exporting {} to {}", img.label(), dest.display()))?
    };
    bar.finish();
    if !cli.quiet && dest != Path::new("-") {
        eprintln!("exported {} ({} entries, {} bytes) to {}", img.label(), stats.entries, stats.bytes, dest.display());
    }
    Ok(())
}

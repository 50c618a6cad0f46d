//! `lvrepo export IMAGE[:PATH] DEST`: the image, or its directory PATH as
//! the root of what is written, to a directory (absent or empty), a `.tar` or
//! `.tar.zst` file, or `-` (tar on stdout, refused to a terminal); other
//! compressed names are refused rather than taken for a directory. A volume (image or volume guest) is written as a
//! raw disk (sparse: its holes are not written) to a file or `-`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use lvrepo_fs::export::{export_dir, export_tar};
use lvrepo_fs::guest::GuestHandle;
use lvrepo_fs::nbd::volume::{OverlayVolume, TreeVolume};
use lvrepo_fs::nbd::Export;
use lvrepo_fs::object::{Layered, MemStore};
use lvrepo_fs::tree::{lookup, store_root};
use lvrepo_fs::{Entry, Kind, Progress};

use crate::cli::Cli;
use crate::progress::Bar;

pub fn run(cli: &Cli, target: &std::ffi::OsStr, dest: &Path) -> Result<()> {
    let repo = super::open(cli, false)?;
    let p = super::repo_path(cli)?;
    // A volume guest, as it is now: its disk through its overlay.
    if let Some(rec) = target.to_str().and_then(|t| lvrepo_fs::guest::find(&p, t).ok()) {
        let image = rec.name.as_str();
        if !rec.volume {
            bail!(crate::Exit(crate::exit::USAGE, format!("{image} is a filesystem guest: checkpoint it and export the checkpoint, or mount it")));
        }
        let g = GuestHandle::open(&p, image, true)?;
        let ov = g.overlay(g.store(super::shared(&repo)))?;
        let v = OverlayVolume::new(std::sync::Arc::new(ov), true)?;
        return export_raw(cli, &v, image, dest);
    }
    let (r, path) = super::split_target(target)?;
    let img = repo.resolve(&r)?;
    if img.volume {
        let v = TreeVolume::open(super::shared(&repo), &img.root_tree())?;
        return export_raw(cli, &v, &img.label(), dest);
    }
    let bar = Bar::bytes(cli.quiet || dest == Path::new("-"), "exporting");
    bar.set_total(img.logical_bytes);
    // A subtree: its directory becomes the root of a tree in a scratch
    // store over the repository (nothing is written to the repository).
    let scratch = Layered::new(MemStore::new(), repo.shared_store());
    let root = if path == b"/" {
        img.root_tree()
    } else {
        let shown = lvrepo_fs::walk::escape_path(&path);
        let e = lookup(repo.objects(), &img.root_tree(), &path)?.ok_or_else(|| lvrepo_fs::Error::PathNotFound { image: img.label(), path: shown.clone() })?;
        if e.kind != Kind::Dir {
            bail!(crate::Exit(crate::exit::USAGE, format!("{shown} in {} is not a directory: write a file with `lvrepo cat`", img.label())));
        }
        store_root(&scratch, Entry { name: Vec::new(), ..e })?
    };
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let zst = name.ends_with(".tar.zst") || name.ends_with(".tzst");
    if let Some(ext) = [".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2"].iter().find(|e| name.ends_with(*e)) {
        bail!(crate::Exit(crate::exit::USAGE, format!("{ext} is not written by lvrepo: name a .tar or .tar.zst file, or pipe `lvrepo export IMAGE - | gzip`")));
    }
    let stats = if dest == Path::new("-") {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            bail!(crate::Exit(crate::exit::USAGE, "refusing to write a tar archive to a terminal: redirect stdout or name a file".into()));
        }
        export_tar(&scratch, &root, std::io::stdout().lock(), &bar)?
    } else if name.ends_with(".tar") || zst {
        if dest.symlink_metadata().is_ok() {
            return Err(lvrepo_fs::Error::DestinationNotEmpty(dest.to_path_buf()).into());
        }
        // Only a complete archive gets the requested name.
        let tmp = dest.with_file_name(format!("{name}.partial"));
        let write = || -> Result<lvrepo_fs::export::ExportStats> {
            let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let s = if zst {
                // zstd-compressed tar (`tar --zstd -xf`, `zstd -d`).
                let mut z = zstd::Encoder::new(&mut w, 3)?;
                let s = export_tar(&scratch, &root, &mut z, &bar)?;
                z.finish()?;
                s
            } else {
                export_tar(&scratch, &root, &mut w, &bar)?
            };
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, dest)?;
            Ok(s)
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?
    } else {
        export_dir(&scratch, &root, dest, &bar).with_context(|| format!("exporting {} to {}", img.label(), dest.display()))?
    };
    bar.finish();
    if !cli.quiet && dest != Path::new("-") {
        eprintln!("exported {} ({} entries, {} bytes) to {}", img.label(), stats.entries, stats.bytes, dest.display());
    }
    Ok(())
}

/// Write a volume's disk to `dest` (a new file, complete or absent) or `-`.
fn export_raw(cli: &Cli, v: &dyn Export, what: &str, dest: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let bar = Bar::bytes(cli.quiet || dest == Path::new("-"), "exporting");
    bar.set_total(v.size());
    let size = v.size();
    if dest == Path::new("-") {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            bail!(crate::Exit(crate::exit::USAGE, "refusing to write a disk to a terminal; redirect stdout".into()));
        }
        let mut out = std::io::stdout().lock();
        let mut p = 0;
        while p < size {
            let n = (size - p).min(1 << 20) as u32;
            out.write_all(&v.read(p, n)?)?;
            bar.advance(u64::from(n));
            p += u64::from(n);
        }
        return Ok(out.flush()?);
    }
    if dest.symlink_metadata().is_ok() {
        return Err(lvrepo_fs::Error::DestinationNotEmpty(dest.to_path_buf()).into());
    }
    let tmp = dest.with_extension("partial");
    let write = || -> Result<()> {
        let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.set_len(size)?;
        let mut p = 0;
        while p < size {
            let runs = v.allocation(p, size - p)?;
            if runs.is_empty() {
                bail!("no allocation map at offset {p} of {what}");
            }
            for run in runs {
                if !run.hole {
                    let mut q = p;
                    while q < p + run.len {
                        let n = (p + run.len - q).min(1 << 20) as u32;
                        f.write_all_at(&v.read(q, n)?, q)?;
                        q += u64::from(n);
                    }
                }
                bar.advance(run.len);
                p += run.len;
            }
        }
        f.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    bar.finish();
    if !cli.quiet {
        eprintln!("exported {what} ({size} bytes) to {}", dest.display());
    }
    Ok(())
}
